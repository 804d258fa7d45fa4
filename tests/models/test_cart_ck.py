"""models/cart_ck.toml: CAR-T cellular kinetics after Stein et al. 2019 (CPT Pharmacometrics
Syst Pharmacol 8:285-295, doi:10.1002/psp4.12388).

Published numbers checked here: Cmax 24,000 copies/ug at Tmax 9.3 days (typical values of
Stein et al. 2019 Table 1, transcribed from nlmixr2lib's Stein_2019_Tisagenlecleucel model),
and the expansion doubling time 0.78 days and contraction half-lives 4.3 days (ln2/alpha) and
220 days (ln2/beta) that the article's abstract reports.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import cellpkpd as cp

# Stein et al. 2019, Table 1: typical values, and omega^2 of the log-normal random effects
TABLE1 = {
    "Cmax": 24000.0,
    "foldx": 3900.0,
    "Tmax": 9.3,
    "alpha": 0.16,
    "FB": 0.0079,
    "beta": 0.0032,
}
OMEGA2 = {"Cmax": 0.65, "foldx": 2.4, "Tmax": 0.38, "alpha": 0.91, "FB": 0.8, "beta": 0.86}
# Stein et al. 2019, Discussion
REPORTED = {"doubling_time": 0.78, "t_half_fast": 4.3, "t_half_slow": 220.0}

NO_DOSE = cp.Regimen([])  # the level starts at Cmax / foldx: the model needs no dose record


@pytest.fixture(scope="module")
def spec() -> cp.ModelSpec:
    return cp.load_model("cart_ck")


def closed_form(t, Cmax, foldx, Tmax, alpha, FB, beta):
    """Stein et al. 2019 (Figure 2; supplement's analytical solution): transgene level
    [copies/ug] R0 exp(rho t) before Tmax, Cmax ((1 - FB) e^{-alpha tau} + FB e^{-beta tau})
    from Tmax on (tau = t - Tmax), with R0 = Cmax / foldx and rho = log(foldx) / Tmax."""
    t = np.asarray(t, dtype=float)
    rho = np.log(foldx) / Tmax
    tau = np.maximum(t - Tmax, 0.0)
    before = Cmax / foldx * np.exp(rho * np.minimum(t, Tmax))
    after = Cmax * ((1.0 - FB) * np.exp(-alpha * tau) + FB * np.exp(-beta * tau))
    return np.where(t < Tmax, before, after)


def test_model_file_is_complete(spec: cp.ModelSpec) -> None:
    assert "cart_ck" in cp.list_models()
    assert spec.time_unit == "day" and spec.amount_unit == "copies/ug"
    assert any("10.1002/psp4.12388" in r for r in spec.references)
    assert set(spec.breakpoints) == {"peak"} and spec.breakpoints["peak"].source == "Tmax"
    assert spec.is_linear  # solved by the exact (matrix exponential) path by default
    assert spec.defaults() == pytest.approx(TABLE1, rel=0)
    for p in spec.parameters.values():
        assert p.unit and p.prior and p.description and p.source, p.name
        assert p.bounds[0] <= p.value <= p.bounds[1]
        assert "Table 1" in p.source
    assert spec.observations["transgene"].unit == "copies/ug"


def test_published_cmax_tmax_and_half_lives(spec: cp.ModelSpec) -> None:
    """Simulated typical profile vs Table 1 (Cmax, Tmax) and the Discussion's half-lives.

    The half-lives are read off the simulated curve: the slow one from the log-slope of
    the terminal phase (days 300-400), the fast one by the method of residuals (subtract
    the back-extrapolated terminal phase, take the log-slope of what is left over the
    first week after the peak), the doubling time from the log-slope during expansion.
    """
    times = np.round(np.arange(0.0, 400.0 + 1e-9, 0.05), 10)
    c = cp.simulate(spec, NO_DOSE, times)["transgene"].values[0]
    a, b, T = TABLE1["alpha"], TABLE1["beta"], TABLE1["Tmax"]
    np.testing.assert_allclose(c, closed_form(times, **TABLE1), rtol=1e-9)

    # Cmax and Tmax of the simulated profile
    k = int(np.argmax(c))
    assert times[k] == pytest.approx(T, abs=1e-9)
    assert c[k] == pytest.approx(TABLE1["Cmax"], rel=1e-9)
    assert np.all(np.diff(c[: k + 1]) > 0) and np.all(np.diff(c[k:]) < 0)

    def log_slope(t1: float, t2: float, y: np.ndarray = c) -> float:
        i, j = np.searchsorted(times, [t1, t2])
        return float(np.polyfit(times[i : j + 1], np.log(y[i : j + 1]), 1)[0])

    # expansion: doubling time ln2/rho = 0.78 days
    doubling = math.log(2) / log_slope(1.0, 8.0)
    assert doubling == pytest.approx(math.log(2) * T / math.log(TABLE1["foldx"]), rel=1e-9)
    assert doubling == pytest.approx(REPORTED["doubling_time"], abs=0.005)

    # slow phase: terminal log-slope -> ln2/beta (217 d; reported as ~220 d, beta rounded)
    slope_slow = log_slope(300.0, 400.0)
    t_half_slow = -math.log(2) / slope_slow
    assert t_half_slow == pytest.approx(math.log(2) / b, rel=1e-9)
    assert t_half_slow == pytest.approx(REPORTED["t_half_slow"], rel=0.02)
    # the terminal phase back-extrapolated to the peak holds the fraction FB of Cmax
    i = np.searchsorted(times, 300.0)
    slow = c[i] * np.exp(slope_slow * (times - times[i]))
    assert slow[k] / c[k] == pytest.approx(TABLE1["FB"], rel=1e-8)

    # fast phase by residuals -> ln2/alpha (4.33 d; reported 4.3 d)
    resid = c - slow
    t_half_fast = -math.log(2) / log_slope(T, T + 7.0, resid)
    assert t_half_fast == pytest.approx(math.log(2) / a, rel=1e-8)
    assert t_half_fast == pytest.approx(REPORTED["t_half_fast"], abs=0.05)
    # the raw curve just after the peak already falls with about that half-life (within 1%)
    assert -math.log(2) / log_slope(T, T + 1.0) == pytest.approx(math.log(2) / a, rel=0.01)


def scipy_two_pieces(times: np.ndarray, p: dict[str, float]) -> np.ndarray:
    """Reference (n_times, 2) [effector, memory]: DOP853 at rtol 1e-12 over 0..Tmax with
    the expansion equations, then from Tmax with the contraction equations."""
    rho = math.log(p["foldx"]) / p["Tmax"]
    kmem = p["FB"] * (p["alpha"] - p["beta"])
    T = p["Tmax"]

    def expansion(t, y):
        return [rho * y[0], -p["beta"] * y[1]]

    def contraction(t, y):
        return [-p["alpha"] * y[0], kmem * y[0] - p["beta"] * y[1]]

    opts = {"method": "DOP853", "rtol": 1e-12, "atol": 1e-20}
    y0 = [p["Cmax"] / p["foldx"], 0.0]
    before = times[times < T]
    first = solve_ivp(expansion, (0.0, T), y0, t_eval=[*before, T], **opts)
    after = times[times >= T]
    second = solve_ivp(contraction, (T, after[-1]), first.y[:, -1], t_eval=after, **opts)
    assert first.success and second.success
    return np.concatenate([first.y[:, :-1], second.y], axis=1).T


@pytest.mark.parametrize("solver", ["exact", "tsit5"])
def test_breakpoint_restart_matches_scipy_in_two_pieces(spec: cp.ModelSpec, solver: str) -> None:
    times = np.unique(np.r_[np.linspace(0.0, 28.0, 57), 9.3, 11.37, np.arange(30.0, 400.0, 10.0)])
    sim = cp.Simulator(
        spec,
        times,
        outputs=("effector", "memory", "transgene"),
        solver=solver,
        rtol=1e-11,
        atol=1e-14,
    )
    run = jax.jit(sim)
    doses = sim.doses(NO_DOSE)
    other = {
        "Cmax": 51000.0,
        "foldx": 800.0,
        "Tmax": 11.37,
        "alpha": 0.23,
        "FB": 0.021,
        "beta": 0.006,
    }
    for p in (TABLE1, other):
        out = run({k: jnp.asarray(v) for k, v in p.items()}, doses)
        ref = scipy_two_pieces(times, p)
        ref = {"effector": ref[:, 0], "memory": ref[:, 1], "transgene": ref.sum(axis=1)}
        for name, r in ref.items():
            got = np.asarray(out[name])
            big = r > 1e-6 * r.max()
            np.testing.assert_allclose(got[big], r[big], rtol=1e-8, err_msg=f"{solver} {name}")
        # no memory before the peak, and the switch is exact: nothing leaks across Tmax
        np.testing.assert_array_equal(np.asarray(out["memory"])[times < p["Tmax"]], 0.0)


@pytest.mark.parametrize("solver", ["exact", pytest.param("tsit5", marks=pytest.mark.extended)])
def test_gradient_wrt_tmax_and_every_parameter(spec: cp.ModelSpec, solver: str) -> None:
    """Gradient of the transgene level at day 28 (cp.Simulator under jax.jit(jax.grad)):
    with respect to Tmax (through the restart time) vs central differences and the closed
    form; with respect to every parameter finite and equal to central differences."""
    sim = cp.Simulator(spec, [28.0], outputs=("transgene",), solver=solver, rtol=1e-11, atol=1e-14)
    doses = sim.doses(NO_DOSE)

    def level28(p):  # transgene level at day 28 [copies/ug]
        return sim(p, doses)["transgene"][0]

    p0 = {k: jnp.asarray(v) for k, v in TABLE1.items()}
    f = jax.jit(level28)
    g = jax.jit(jax.grad(level28))(p0)  # one compiled gradient, every parameter at once
    assert set(g) == set(TABLE1)
    assert all(bool(jnp.isfinite(v)) for v in g.values()), g

    def central(name: str, h: float) -> float:
        up, dn = dict(p0), dict(p0)
        up[name], dn[name] = p0[name] + h, p0[name] - h
        return (float(f(up)) - float(f(dn))) / (2 * h)

    T = TABLE1["Tmax"]
    assert float(g["Tmax"]) == pytest.approx(central("Tmax", 1e-5), rel=1e-6)
    # closed form: d/dTmax of Cmax ((1-FB) e^{-alpha (28-Tmax)} + FB e^{-beta (28-Tmax)})
    C, a, FB, b = TABLE1["Cmax"], TABLE1["alpha"], TABLE1["FB"], TABLE1["beta"]
    exact = C * ((1 - FB) * a * math.exp(-a * (28 - T)) + FB * b * math.exp(-b * (28 - T)))
    assert float(g["Tmax"]) == pytest.approx(exact, rel=1e-7)
    # day 28 is after the peak, so the level does not depend on foldx (E(Tmax) = Cmax)
    assert abs(float(g["foldx"])) * TABLE1["foldx"] < 1e-6 * float(f(p0))
    for name, v in TABLE1.items():
        if name != "foldx":
            assert float(g[name]) == pytest.approx(central(name, 1e-5 * v), rel=1e-5), name


def test_simulates_defaults_for_1_and_1000_subjects(spec: cp.ModelSpec) -> None:
    times = np.array([0.0, 1.0, 3.0, 7.0, 9.3, 14.0, 28.0, 90.0, 180.0, 365.0])
    one = cp.simulate(spec, None, times)
    assert one["transgene"].dims == ("subject", "time") and one["transgene"].shape == (1, 10)
    assert one["transgene"].attrs["unit"] == "copies/ug"
    np.testing.assert_allclose(one["transgene"].values[0], closed_form(times, **TABLE1), rtol=1e-9)

    # 1,000 virtual patients with the between-subject variability of Table 1
    rng = np.random.default_rng(2019)
    n = 1000
    params = {
        k: v * np.exp(math.sqrt(OMEGA2[k]) * rng.standard_normal(n)) for k, v in TABLE1.items()
    }
    params["FB"] = np.minimum(params["FB"], 1.0)
    res = cp.simulate(spec, None, times, params=params)
    y = res["transgene"].values
    assert y.shape == (n, 10) and np.all(np.isfinite(y)) and np.all(y > 0)
    assert np.all(res["status"].values == 0)
    expected = np.stack(
        [closed_form(times, **{k: v[i] for k, v in params.items()}) for i in range(n)]
    )
    np.testing.assert_allclose(y, expected, rtol=1e-8)
