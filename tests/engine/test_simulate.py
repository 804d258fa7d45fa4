"""The engine: exact vs ODE paths, nonlinear model vs scipy, gradients vs finite
differences, batches vs single calls, failure reporting, time-varying covariates."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import DESIGN_EXAMPLE as MM_IDR
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

import cellpkpd as cp


@pytest.fixture(scope="module")
def mm_idr(tmp_path_factory: pytest.TempPathFactory) -> cp.ModelSpec:
    path = tmp_path_factory.mktemp("models") / "mm_idr.toml"
    path.write_text(MM_IDR)
    return cp.load_model(path)


def test_float64_by_default() -> None:
    res = cp.simulate("one_cmt_iv", cp.Regimen([cp.Dose(0.0, 100.0, "central")]), [0.0, 1.0])
    assert res["conc"].dtype == np.float64
    assert jnp.zeros(1).dtype == jnp.float64


def test_exact_and_ode_paths_agree_on_two_compartment_infusions() -> None:
    # two independent numerical methods; the ODE path runs at rtol 1e-8, so 1e-6 is
    # comfortably above its accumulated error and far below any modelling difference
    spec = cp.load_model("two_cmt_iv")
    reg = cp.Regimen.repeat(cp.Dose(0.5, 100.0, "central", duration=2.0), 12.0, 4)
    times = np.linspace(0.0, 60.0, 241)
    exact = cp.simulate(spec, reg, times, solver="exact")
    ode = cp.simulate(spec, reg, times, solver="tsit5")
    stiff = cp.simulate(spec, reg, times, solver="kvaerno5")
    for name in ("central", "peripheral"):
        ref = exact[name].values
        mask = ref > 1e-8 * ref.max()
        np.testing.assert_allclose(ode[name].values[mask], ref[mask], rtol=1e-6)
        np.testing.assert_allclose(stiff[name].values[mask], ref[mask], rtol=1e-6)
    assert exact.attrs["solver"] == "exact" and ode.attrs["solver"] == "tsit5"


def test_nonlinear_model_matches_scipy_radau(mm_idr: cp.ModelSpec) -> None:
    times = np.linspace(0.0, 72.0, 145)
    doses = [(0.0, 100.0), (24.0, 100.0), (48.0, 50.0)]
    reg = cp.Regimen([cp.Dose(t, a, "central") for t, a in doses])
    res = cp.simulate(mm_idr, reg, times, covariates={"inflammation": 1.5})
    V, Vmax, Km, kin, kout, IC50, infl = 10.0, 5.0, 2.0, 10.0, 0.5, 1.0, 1.5

    def rhs(t: float, y: np.ndarray) -> list[float]:
        C = y[0] / V
        return [-Vmax * C / (Km + C), kin * infl * (1 - C / (IC50 + C)) - kout * y[1]]

    y = np.array([0.0, kin * infl / kout])
    ref = np.zeros((times.size, 2))
    bounds = [t for t, _ in doses] + [times[-1] + 1.0]
    for i, (t_dose, amount) in enumerate(doses):
        y = y + np.array([amount, 0.0])
        mask = (times >= t_dose) & (times < bounds[i + 1])
        sol = solve_ivp(
            rhs,
            (t_dose, bounds[i + 1]),
            y,
            method="Radau",
            rtol=1e-10,
            atol=1e-12,
            t_eval=times[mask],
            dense_output=True,
        )
        ref[mask] = sol.y.T
        y = sol.sol(bounds[i + 1])
    # Radau at 1e-10 is ~100x tighter than the Tsit5 run at 1e-8: 1e-6 tests the engine
    np.testing.assert_allclose(res["central"].values[0], ref[:, 0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(res["marker"].values[0], ref[:, 1], rtol=1e-6)
    np.testing.assert_allclose(res["conc"].values[0], ref[:, 0] / V, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("solver", ["exact", pytest.param("tsit5", marks=pytest.mark.extended)])
def test_gradients_match_finite_differences(solver: str) -> None:
    spec = cp.load_model("one_cmt_iv")
    times = np.array([0.5, 2.0, 3.7, 6.0, 12.0])
    sim = cp.Simulator(spec, times, outputs=("conc",), solver=solver, rtol=1e-12, atol=1e-12)
    reg = cp.Regimen([cp.Dose(0.3, 100.0, "central"), cp.Dose(1.1, 50.0, "central", duration=1.7)])
    doses = sim.doses(reg)
    params = {"V": 10.0}

    names = ("CL", "amount", "dose time", "infusion start", "duration")
    x0 = jnp.array([2.0, 100.0, 0.3, 1.1, 1.7])

    @jax.jit
    def f(x: jax.Array) -> jax.Array:
        d = eqx.tree_at(
            lambda d: (d.amount, d.time, d.duration),
            doses,
            (
                doses.amount.at[0].set(x[1]),
                doses.time.at[0].set(x[2]).at[1].set(x[3]),
                doses.duration.at[1].set(x[4]),
            ),
        )
        return jnp.sum(sim({**params, "CL": x[0]}, d)["conc"][2:4])

    grad = np.asarray(jax.jit(jax.grad(f))(x0))
    for i, name in enumerate(names):
        h = 1e-5 * max(abs(float(x0[i])), 1.0)
        e = jnp.zeros(5).at[i].set(h)
        fd = (float(f(x0 + e)) - float(f(x0 - e))) / (2 * h)
        # central differences carry O(h^2) ~ 1e-10 truncation and ~1e-11 round-off
        # relative error, so 1e-5 checks the derivative, not the arithmetic
        assert grad[i] == pytest.approx(fd, rel=1e-5), name


def test_gradient_nonlinear_model(mm_idr: cp.ModelSpec) -> None:
    times = np.linspace(1.0, 30.0, 30)
    sim = cp.Simulator(mm_idr, times, outputs=("biomarker",), rtol=1e-11, atol=1e-11)
    doses = sim.doses(cp.Regimen.repeat(cp.Dose(0.0, 80.0, "central"), 12.0, 2))
    f = jax.jit(lambda vmax: jnp.sum(sim({"Vmax": vmax}, doses)["biomarker"]))
    g = float(jax.jit(jax.grad(f))(5.0))
    fd = (float(f(5.0 + 1e-4)) - float(f(5.0 - 1e-4))) / 2e-4
    assert g == pytest.approx(fd, rel=1e-5)


@pytest.mark.parametrize("solver", ["exact", "tsit5"])
def test_batch_equals_single_subject_calls(solver: str) -> None:
    spec = cp.load_model("two_cmt_iv")
    n = 1000 if solver == "exact" else 100
    rng = np.random.default_rng(1)
    times = np.linspace(0.0, 48.0, 25)
    CL = 2.0 * np.exp(0.3 * rng.standard_normal(n))
    V1 = 10.0 * np.exp(0.3 * rng.standard_normal(n))
    regimens = [
        cp.Regimen.repeat(
            cp.Dose(float(rng.uniform(0, 6)), 100.0, "central", duration=float(rng.uniform(0, 2))),
            float(rng.uniform(6, 24)),
            int(rng.integers(1, 4)),
        )
        for _ in range(n)
    ]
    batch = cp.simulate(spec, regimens, times, params={"CL": CL, "V1": V1}, solver=solver)
    sim = cp.Simulator(spec, times, outputs=("conc",), solver=solver)
    single = jax.jit(lambda p, d: sim(p, d)["conc"])
    for i in range(0, n, 1 if solver == "exact" else 7):
        doses = regimens[i].to_arrays(3, spec)
        one = single({"CL": CL[i], "V1": V1[i]}, doses)
        # same arithmetic up to padding and vmap: agreement to round-off
        np.testing.assert_allclose(batch["conc"].values[i], one, rtol=1e-9, atol=1e-12)


def test_failed_subject_is_reported_by_index(mm_idr: cp.ModelSpec) -> None:
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    times = np.linspace(0.0, 24.0, 5)
    # V = 0 gives an infinite concentration for subject 1 only
    with pytest.raises(cp.SimulationError, match=r"1 of 2 subjects failed: subject 1: non-finite"):
        cp.simulate(mm_idr, reg, times, params={"V": [10.0, 0.0]})
    with pytest.warns(RuntimeWarning, match="step limit"):
        res = cp.simulate(mm_idr, reg, times, max_steps=3, on_failure="nan")
    assert res["status"].values.tolist() == [1]
    assert np.all(np.isnan(res["conc"].values))


def test_simulator_vmap_and_jit_over_parameters() -> None:
    spec = cp.load_model("one_cmt_iv")
    times = np.linspace(0.0, 10.0, 11)
    sim = cp.Simulator(spec, times, outputs=("conc",))
    doses = sim.doses(cp.Regimen([cp.Dose(0.0, 100.0, "central")]))
    CL = jnp.array([1.0, 2.0, 4.0])
    y = jax.jit(jax.vmap(lambda c: sim({"CL": c}, doses)["conc"]))(CL)
    expected = 10.0 * np.exp(-np.asarray(CL)[:, None] / 10.0 * times[None, :])
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_time_varying_covariate_follows_the_data_sets_convention(tmp_path) -> None:
    # CL depends on body weight, which the records change at t = 5 h: piecewise exponential
    # decay, changing at 5 h under LOCF and at 2 h under NOCB (the 5-h record's value holds
    # back to the previous record, as in NONMEM)
    model = tmp_path / "wt.toml"
    model.write_text(
        """
[model]
name = "wt"
time_unit = "h"
amount_unit = "mg"
[parameters]
CLw = { value = 0.05, unit = "L/h/kg" }
V = { value = 10.0, unit = "L" }
[covariates]
WT = { value = 70.0, unit = "kg" }
[states]
central = { initial = 0.0 }
[flows]
"central ->" = "CLw * WT / V"
"""
    )
    import pandas as pd

    df = pd.DataFrame(
        {
            "ID": [1, 1, 1, 1, 1],
            "TIME": [0.0, 2.0, 5.0, 7.0, 10.0],
            "AMT": [100.0, 0, 0, 0, 0],
            "EVID": [1, 0, 0, 0, 0],
            "CMT": [1, 1, 1, 1, 1],
            "DV": [None, 1.0, 1.0, 1.0, 1.0],
            "WT": [40.0, 40.0, 80.0, 80.0, 80.0],
        }
    )
    k1, k2 = 0.05 * 40 / 10, 0.05 * 80 / 10
    t = np.array([0.0, 2.0, 5.0, 7.0, 10.0])
    for convention, change in (("locf", 5.0), ("nocb", 2.0)):
        data = cp.read_nonmem(df, covariates=convention)
        expected = np.where(
            t <= change,
            100 * np.exp(-k1 * t),
            100 * np.exp(-k1 * change - k2 * (t - change)),
        )
        for solver in ("exact", "tsit5"):
            res = cp.simulate(cp.load_model(model), data=data, solver=solver)
            rtol = 1e-10 if solver == "exact" else 1e-6
            np.testing.assert_allclose(res["central"].values[0], expected, rtol=rtol)


def test_exact_path_handles_fast_rates_over_long_gaps() -> None:
    # ||A h|| = 500/h * 1000 h: far beyond a fixed 16-squaring expm; must stay finite
    spec = cp.load_model("one_cmt_iv")
    res = cp.simulate(
        spec,
        cp.Regimen([cp.Dose(0.0, 100.0, "central")]),
        [0.0, 1e-3, 1000.0],
        params={"CL": 5000.0},
    )
    np.testing.assert_allclose(res["central"].values[0], [100.0, 100 * np.exp(-0.5), 0.0])


MASS_BALANCE = """
[model]
name = "mass_balance"
time_unit = "h"
amount_unit = "mg"
[parameters]
ka = { value = 1.0, unit = "1/h" }
k = { value = 0.2, unit = "1/h" }
k12 = { value = 0.5, unit = "1/h" }
k21 = { value = 0.3, unit = "1/h" }
[states]
depot = { initial = 0.0 }
central = { initial = 0.0 }
peripheral = { initial = 0.0 }
eliminated = { initial = 0.0 }
[flows]
"depot -> central" = "ka"
"central -> peripheral" = "k12"
"peripheral -> central" = "k21"
"central -> eliminated" = "k"
"""


@pytest.fixture(scope="module")
def mass_balance_sim(tmp_path_factory: pytest.TempPathFactory) -> cp.Simulator:
    path = tmp_path_factory.mktemp("models") / "mass_balance.toml"
    path.write_text(MASS_BALANCE)
    sim = cp.Simulator(cp.load_model(path), np.linspace(0.0, 50.0, 26), max_doses=4)
    sim.run = jax.jit(lambda d: sim(None, d))  # one compiled program per dose-flag set
    return sim


_dose = st.tuples(
    st.floats(0.0, 40.0, allow_subnormal=False),  # XLA on CPU flushes subnormals to 0
    st.floats(0.0, 1000.0),
    st.sampled_from(["depot", "central", "peripheral"]),
    st.sampled_from([0.0, 0.5, 7.0]),
)


@settings(max_examples=25, deadline=None)
@given(doses=st.lists(_dose, min_size=1, max_size=4), scale=st.floats(0.1, 10.0))
def test_mass_balance_nonnegativity_and_dose_linearity(
    mass_balance_sim: cp.Simulator, doses: list, scale: float
) -> None:
    sim = mass_balance_sim
    reg = cp.Regimen([cp.Dose(t, a, c, duration=d) for t, a, c, d in doses])
    run = sim.run
    out = run(sim.doses(reg))
    total = sum(np.asarray(out[s]) for s in ("depot", "central", "peripheral", "eliminated"))
    times = sim.times
    given_so_far = sum(
        a * np.clip((times - t) / d, 0.0, 1.0) if d > 0 else a * (times >= t)
        for t, a, _, d in doses
    )
    # conservation holds to round-off of the matrix exponential (1e-12 of the dose)
    scale_amt = max(1.0, sum(a for _, a, _, _ in doses))
    np.testing.assert_allclose(total, given_so_far, atol=1e-10 * scale_amt)
    for s in ("depot", "central", "peripheral", "eliminated"):
        assert np.all(np.asarray(out[s]) >= -1e-10 * scale_amt)
    scaled = cp.Regimen([cp.Dose(t, a * scale, c, duration=d) for t, a, c, d in doses])
    out2 = run(sim.doses(scaled))
    np.testing.assert_allclose(
        np.asarray(out2["central"]),
        scale * np.asarray(out["central"]),
        rtol=1e-9,
        atol=1e-10 * scale_amt * scale,
    )


def test_design_example_to_arrays_without_model_resolves_names_in_simulator() -> None:
    spec = cp.load_model("one_cmt_iv")
    times = np.linspace(0.0, 24.0, 5)
    sim = cp.Simulator(spec, times, outputs=("conc",), max_doses=8)
    dose = cp.Dose(time=0.0, amount=100.0, cmt="central")
    doses = cp.Regimen.repeat(dose, interval=12.0, count=2).to_arrays(max_doses=8)
    y = jax.jit(sim)({"CL": 2.0}, doses)["conc"]
    k = 0.2
    expected = 10.0 * (np.exp(-k * times) + np.where(times >= 12, np.exp(-k * (times - 12)), 0))
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    wrong = cp.Regimen([cp.Dose(0.0, 1.0, "depot")]).to_arrays(8)
    with pytest.raises(cp.DosingError, match="unknown state 'depot'; states: central"):
        sim({"CL": 2.0}, wrong)


def test_auto_solver_choice(mm_idr: cp.ModelSpec) -> None:
    from cellpkpd.engine.simulator import resolve_solver

    assert resolve_solver(cp.load_model("two_cmt_iv"), "auto") == "exact"
    assert resolve_solver(mm_idr, "auto") == "tsit5"
    stiff = dataclasses.replace(mm_idr, stiff=True)
    assert resolve_solver(stiff, "auto") == "kvaerno5"
    # a stiff system (fast and slow rates 1e4 apart) solved by the implicit solver
    res = cp.simulate(
        stiff,
        cp.Regimen([cp.Dose(0.0, 100.0, "central")]),
        [0.0, 1.0, 10.0],
        params={"kout": 5000.0, "kin": 1e4},
    )
    assert res.attrs["solver"] == "kvaerno5"
    assert np.all(np.isfinite(res["marker"].values))


BREAKPOINT_MODEL = {
    "model": {
        "name": "expand_contract",
        "time_unit": "day",
        "amount_unit": "cells",
        "breakpoints": {"peak": "Tmax"},
    },
    "parameters": {"rho": 0.8, "Tmax": 9.7, "alpha": 0.3, "kmem": 0.02, "beta": 0.005},
    "states": {"effector": {"initial": 0.0}, "memory": {"initial": 0.0}},
    "odes": {
        "effector": "rho * effector * (1 - peak) - (alpha + kmem) * effector * peak",
        "memory": "kmem * effector * peak - beta * memory",
    },
    "observations": {"total": {"expr": "effector + memory"}},
}


@pytest.mark.parametrize("solver", ["exact", pytest.param("tsit5", marks=pytest.mark.extended)])
def test_parameter_dependent_breakpoint_is_exact_and_differentiable(solver: str) -> None:
    spec = cp.ModelSpec.from_dict(BREAKPOINT_MODEL)
    times = np.array([0.0, 1.0, 5.0, 9.7, 10.0, 20.0, 50.0])
    reg = cp.Regimen([cp.Dose(0.0, 1.0, "effector")])
    res = cp.simulate(spec, reg, times, solver=solver, rtol=1e-10, atol=1e-12)
    rho, T, k = 0.8, 9.7, 0.32
    expected = np.where(times < T, np.exp(rho * times), np.exp(rho * T - k * (times - T)))
    # exact path: round-off only; the ODE path at rtol 1e-10 stays well inside 1e-8
    np.testing.assert_allclose(res["effector"].values[0], expected, rtol=1e-8)
    sim = cp.Simulator(spec, times, outputs=("total",), solver=solver, rtol=1e-11, atol=1e-14)
    doses = sim.doses(reg)
    f = jax.jit(lambda tmax: sim({"Tmax": tmax}, doses)["total"][5])
    grad = float(jax.jit(jax.grad(f))(9.7))
    fd = (float(f(9.7 + 1e-5)) - float(f(9.7 - 1e-5))) / 2e-5
    assert grad == pytest.approx(fd, rel=1e-6)


@pytest.mark.parametrize("solver", ["exact", "tsit5"])
def test_simulate_shares_inputs_given_once_and_varies_the_others(solver: str) -> None:
    """`cp.simulate` passes only the inputs that differ between subjects per subject (the
    others are shared by the compiled program): a parameter given once (V1) is used for every
    subject, one not given keeps the model's value, and each subject equals its own
    one-subject simulation (rtol 1e-9: the same arithmetic batched or not)."""
    spec = cp.load_model("two_cmt_iv")
    times = np.linspace(0.0, 24.0, 13)
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central", duration=1.0)])
    CL = np.array([1.0, 2.0, 4.0])
    res = cp.simulate(spec, reg, times, params={"CL": CL, "V1": 5.0}, solver=solver)
    for i, cl in enumerate(CL):
        one = cp.simulate(spec, reg, times, params={"CL": cl, "V1": 5.0}, solver=solver)
        np.testing.assert_allclose(res["conc"].values[i], one["conc"].values[0], rtol=1e-9)
    default_V1 = cp.simulate(spec, reg, times, params={"CL": CL}, solver=solver)
    each_V1 = cp.simulate(
        spec, reg, times, params={"CL": CL, "V1": np.full(3, 10.0)}, solver=solver
    )
    np.testing.assert_allclose(default_V1["conc"].values, each_V1["conc"].values, rtol=1e-12)
    assert not np.allclose(default_V1["conc"].values, res["conc"].values, rtol=1e-3)
