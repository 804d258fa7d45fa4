"""Exact path on uncoupled groups of states: a linear model whose states fall into groups that
exchange nothing (msc_pbk: the cells and their radiolabel) is exponentiated group by group,
and groups that no requested output reads are not solved at all. Both are exact rewrites, so
the results must equal those of the whole system to rounding; the reference is scipy's
matrix exponential of the whole matrix (rtol 1e-10: two different exponential algorithms on
the same matrix agree to ~1e-13 relative; 1e-10 leaves room for the sums of a scan)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.linalg

import cellpkpd as cp
from cellpkpd.engine.compile import CompiledModel

TIMES = np.array([0.0, 0.5, 1.0, 2.0, 5.0, 12.0, 24.0])


def two_groups(t1_initial: float | str = 0.0) -> cp.ModelSpec:
    """A drug (depot -> central -> peripheral, elimination) and, uncoupled from it, a tracer
    (t1 -> t2 -> loss) whose decay rate is set by a covariate (t1 starts at `t1_initial`)."""
    return cp.ModelSpec.from_dict(
        {
            "model": {"name": "groups", "time_unit": "h", "amount_unit": "mg"},
            "parameters": {
                "ka": {"value": 1.3},
                "CL": {"value": 2.0},
                "V": {"value": 10.0},
                "Q": {"value": 1.5},
                "V2": {"value": 20.0},
                "kt": {"value": 0.4},
            },
            "covariates": {"scale": {"value": 1.0}},
            "states": {
                s: {"initial": t1_initial if s == "t1" else 0.0}
                for s in ("depot", "central", "periph", "t1", "t2")
            },
            "derived": {"k12": "Q / V", "ktr": "kt * scale"},
            "flows": {
                "depot -> central": "ka",
                "central -> periph": "k12",
                "periph -> central": "Q / V2",
                "central ->": "CL / V",
                "t1 -> t2": "ktr",
                "t2 ->": "0.1 * ktr",
            },
            "observations": {
                "conc": {"expr": "central / V", "unit": "mg/L", "error": "proportional"},
                "tracer": {"expr": "t1 + t2", "unit": "mg", "error": "none"},
            },
        }
    )


def reference(spec: cp.ModelSpec, x0: np.ndarray, times: np.ndarray, **values) -> np.ndarray:
    """x(t) = expm(A t) x0 with A of the whole model (scipy), one bolus at 0."""
    cm = CompiledModel(spec.with_values(**values) if values else spec)
    p = {k: np.asarray(v) for k, v in cm.spec.defaults().items()}
    A = np.asarray(cm.linear_system(p)[0])
    return np.stack([scipy.linalg.expm(A * t) @ x0 for t in times])


def test_blocks_are_the_uncoupled_groups_of_states() -> None:
    assert [b.tolist() for b in CompiledModel(two_groups()).blocks] == [[0, 1, 2], [3, 4]]
    pbk = CompiledModel(cp.load_model("msc_pbk"))
    names = [[pbk.state_names[i] for i in b] for b in pbk.blocks]
    assert len(names) == 2
    assert all(not s.startswith("lab_") for s in names[0])
    assert all(s.startswith("lab_") for s in names[1])
    # an [odes] term that reads another group's state joins the groups
    d = two_groups()
    coupled = cp.ModelSpec.from_dict({**_as_dict(d), "odes": {"t1": "0.01 * central"}})
    assert len(CompiledModel(coupled).blocks) == 1


def _as_dict(spec: cp.ModelSpec) -> dict:
    return {
        "model": {"name": "groups", "time_unit": "h", "amount_unit": "mg"},
        "parameters": {k: {"value": p.value} for k, p in spec.parameters.items()},
        "covariates": {k: {"value": c.value} for k, c in spec.covariates.items()},
        "states": {s: {"initial": 0.0} for s in spec.states},
        "derived": {k: e.source for k, e in spec.derived.items()},
        "flows": {f"{f.source} -> {f.target or ''}".rstrip(): f.rate.source for f in spec.flows},
        "observations": {
            k: {"expr": o.expr.source, "unit": o.unit, "error": o.error}
            for k, o in spec.observations.items()
        },
    }


def test_split_solve_equals_the_whole_system_exponential() -> None:
    spec = two_groups()
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "depot"), cp.Dose(0.0, 5.0, "t1")])
    res = cp.simulate(spec, reg, TIMES, outputs=list(spec.states))
    got = np.stack([res[s].values[0] for s in spec.states], axis=1)
    ref = reference(spec, np.array([100.0, 0, 0, 5.0, 0]), TIMES)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_outputs_of_one_group_leave_the_other_unsolved_with_the_same_results() -> None:
    """Asking only for the drug's concentration solves the drug's group alone (the tracer's
    states are not propagated); the values equal those of a full solve to rounding, with a
    bolus, an infusion, a steady-state dose and per-subject covariates."""
    spec = two_groups()
    reg = cp.Regimen(
        [
            cp.Dose(0.0, 100.0, "depot", ss=1, ii=12.0),
            cp.Dose(1.0, 30.0, "central", duration=2.0),
            cp.Dose(0.5, 5.0, "t1", duration=1.0),
        ]
    )
    covs = {"scale": np.array([0.5, 2.0])}
    sim_one = cp.Simulator(spec, TIMES, outputs=("conc",), solver="exact")
    sim_all = cp.Simulator(spec, TIMES, outputs=("conc", "tracer"), solver="exact")
    assert sim_one.options.keep == (0, 1, 2)
    assert sim_all.options.keep is None
    a = cp.simulate(spec, [reg, reg], TIMES, covariates=covs, outputs=["conc"])
    b = cp.simulate(spec, [reg, reg], TIMES, covariates=covs, outputs=["conc", "tracer"])
    np.testing.assert_allclose(a["conc"].values, b["conc"].values, rtol=1e-12, atol=0)
    assert np.all(a["conc"].values > 0)


def test_split_gradient_equals_the_whole_system_gradient() -> None:
    """d conc(24 h) / d ka through the split exact path equals scipy's expm of the whole
    matrix differentiated by central differences (rtol 1e-6: the difference quotient's
    truncation error)."""
    spec = two_groups()
    sim = cp.Simulator(spec, np.array([24.0]), outputs=("conc",), solver="exact")
    doses = sim.doses(cp.Regimen([cp.Dose(0.0, 100.0, "depot")]))
    g = jax.jit(jax.grad(lambda ka: sim({"ka": ka}, doses)["conc"][0]))(1.3)
    x0 = np.array([100.0, 0, 0, 0, 0])
    conc = lambda ka: reference(spec, x0, np.array([24.0]), ka=ka)[0, 1] / 10.0
    h = 1e-5
    fd = (conc(1.3 + h) - conc(1.3 - h)) / (2 * h)
    assert float(g) == pytest.approx(fd, rel=1e-6)


@pytest.mark.parametrize("name", ["two_cmt_iv", "one_cmt_oral", "cart_ck", "msc_pbk"])
def test_flow_model_matrix_is_the_jacobian_of_the_right_hand_side(name: str) -> None:
    """For a model of flows alone, A is assembled from the flow rates; it must equal the
    Jacobian of the right-hand side (how A is obtained when [odes] terms exist) exactly."""
    spec = cp.load_model(name)
    cm = CompiledModel(spec)
    p = {k: np.asarray(v) for k, v in spec.defaults().items()}
    p.update({d: np.asarray(1.0) for d in spec.dosed_names})
    for b in cm.breakpoint_names:
        p[b] = np.asarray(1.0)
    A, b = cm.linear_system(p)
    x0 = np.zeros(cm.n_states)
    J = jax.jacfwd(lambda x: cm.rhs(0.0, x, p))(x0)
    np.testing.assert_array_equal(np.asarray(A), np.asarray(J))
    np.testing.assert_array_equal(np.asarray(b), 0.0)


@pytest.mark.parametrize("model", ["two_cmt_iv", "cart_ck"])
def test_planned_batch_equals_unplanned(model: str, monkeypatch) -> None:
    """`Simulator.batch` plans one exponential per distinct segment length (per region
    between breakpoints) from PLAN_MIN_SUBJECTS subjects on, and takes one per output gap or
    segment below. Both must give the same numbers (rtol 1e-12) on a regimen with a bolus,
    an infusion, a lagged dose, a steady-state dose (two_cmt_iv) and on cart_ck's Tmax
    breakpoint, per-subject parameters."""
    import importlib

    S = importlib.import_module("cellpkpd.engine.simulator")

    spec = cp.load_model(model)
    if model == "two_cmt_iv":
        times = np.linspace(0.0, 48.0, 25)
        reg = cp.Regimen([
            cp.Dose(0.0, 100.0, "central", ss=1, ii=12.0),
            cp.Dose(5.0, 50.0, "central", duration=2.0),
            cp.Dose(20.0, 30.0, "central", lag=0.7),
        ])  # fmt: skip
        params = {"CL": np.array([1.0, 2.0, 4.0])}
    else:
        times = np.arange(0.0, 91.0)
        reg = cp.Regimen([cp.Dose(0.0, 1e8, "effector")])
        params = {"Tmax": spec.parameters["Tmax"].value * np.array([0.5, 1.0, 1.7])}
    runs = []
    for threshold in (1, 10**9):
        monkeypatch.setattr(S, "PLAN_MIN_SUBJECTS", threshold)
        res = cp.simulate(spec, reg, times, params=params, solver="exact")
        runs.append(np.stack([res[s].values for s in spec.states]))
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-12, atol=1e-12 * np.abs(runs[1]).max())


def test_a_plan_sizes_the_program_and_leaves_the_numbers_unchanged() -> None:
    """The public seam fits use (`Simulator.plan`, then `Simulator.solve(plan=)` under
    vmap): a plan counted at the subjects' parameters takes one exponential per distinct
    segment length (here 4 doses every 12 h and outputs every 6 h: every segment is 6 h
    long) and leaves out the states no dose reaches; its results equal
    the unplanned solve (rtol 1e-12: only the number of squarings differs). Traced inputs
    get the Simulator's own options (no plan can be counted under jit)."""
    spec = two_groups()
    times = np.arange(0.0, 49.0, 6.0)
    sim = cp.Simulator(spec, times, outputs=list(spec.states), solver="exact")
    doses = sim.doses([cp.Regimen.repeat(cp.Dose(0.0, 100.0, "depot"), 12.0, 4)] * 3)
    params = {"scale": np.array([0.5, 1.0, 2.0])}
    plan = sim.plan(doses, params)
    assert plan.size == 1 and plan.options.keep == (0, 1, 2)
    assert plan.options.squarings < sim.options.squarings
    assert sim.plan(doses).size is None  # no params: pruned, not counted
    # compiled (one program each; an eager vmap runs and compiles every operation alone)
    one = lambda plan: jax.vmap(lambda p, d: sim.solve(p, d, plan=plan)[0])
    solve = lambda plan: jax.jit(one(plan))(params, doses)
    planned, whole = solve(plan), solve(None)
    for s in spec.states:
        np.testing.assert_allclose(planned[s], whole[s], rtol=1e-12, atol=1e-12)
    inside = []
    jax.jit(lambda a: inside.append(sim.plan(doses, {"scale": a})) or a)(np.ones(3))
    assert inside[0].options == sim.options and inside[0].size is None


def test_states_no_dose_reaches_are_not_solved_and_stay_zero(monkeypatch) -> None:
    """A dose into the depot alone cannot reach the tracer's states (nothing flows into them):
    the exact path of a large batch (here from one subject on) leaves them out
    (`CompiledModel.pruned_keep`) and returns 0 for them; a state with a nonzero initial
    value is a source of its own and is solved. Both against scipy's exponential of the whole
    matrix (rtol 1e-10, see the module docstring)."""
    import importlib

    monkeypatch.setattr(
        importlib.import_module("cellpkpd.engine.simulator"), "PLAN_MIN_SUBJECTS", 1
    )
    spec = two_groups()
    sim = cp.Simulator(spec, TIMES, outputs=list(spec.states), solver="exact")
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "depot")])
    assert sim.plan(reg).options.keep == (0, 1, 2)
    res = cp.simulate(spec, reg, TIMES, outputs=list(spec.states))
    got = np.stack([res[s].values[0] for s in spec.states], axis=1)
    ref = reference(spec, np.array([100.0, 0, 0, 0, 0]), TIMES)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    assert np.all(got[:, 3:] == 0.0)

    spec2 = two_groups(t1_initial="2.5 * scale")  # not dosed, nonzero from the start
    sim2 = cp.Simulator(spec2, TIMES, outputs=list(spec2.states), solver="exact")
    assert sim2.plan(reg).options.keep is None
    res = cp.simulate(spec2, reg, TIMES, outputs=list(spec2.states))
    got = np.stack([res[s].values[0] for s in spec2.states], axis=1)
    ref = reference(spec2, np.array([100.0, 0, 0, 2.5, 0]), TIMES)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("route", ["iv", "im"])
def test_msc_pbk_pruned_to_the_dosed_route_equals_the_whole_model(route: str, monkeypatch) -> None:
    """msc_pbk by one route reaches only part of the cell states (after IV not the
    intra-arterial transit states, the portal vein or the depots): the planned batch that
    leaves them out gives the same amounts in every state as the whole model (rtol 1e-10;
    fewer squarings on the smaller matrix change only rounding)."""
    import importlib

    S = importlib.import_module("cellpkpd.engine.simulator")
    C = importlib.import_module("cellpkpd.engine.compile")

    spec = cp.load_model("msc_pbk")
    times = np.arange(0.0, 49.0, 4.0)
    reg = cp.Regimen([cp.Dose(0.0, 1e6, route=route), cp.Dose(24.0, 5e5, route=route)])
    params = {"k_death_lung": spec.parameters["k_death_lung"].value * np.array([0.5, 1.0, 2.0])}
    monkeypatch.setattr(S, "PLAN_MIN_SUBJECTS", 1)
    sim = cp.Simulator(spec, times, outputs=list(spec.states), solver="exact")
    keep = sim.plan(reg).options.keep
    assert keep is not None and len(keep) < len(spec.states)
    runs = []
    for prune in (True, False):
        if not prune:
            monkeypatch.setattr(C.CompiledModel, "pruned_keep", lambda self, keep, dosed: keep)
        res = cp.simulate(spec, reg, times, params=params, outputs=list(spec.states))
        runs.append(np.stack([res[s].values for s in spec.states]))
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-10, atol=1e-10 * np.abs(runs[1]).max())
    unreached = [i for i in range(len(spec.states)) if i not in keep]
    assert unreached and np.all(runs[0][unreached] == 0.0)


def test_outputs_keep_only_the_states_upstream_of_what_they_read() -> None:
    """`CompiledModel.kept_states`: the states the outputs read and those that can change
    them; a state only downstream (t2 after t1; msc_pbk's dead cells of other organs and the
    cleared pool) is not solved. `linear_system(p, keep)` is the kept rows and columns of the
    whole matrix, exactly."""
    spec = two_groups()
    cm = CompiledModel(spec)
    assert cm.kept_states(("t1",)) == (3,)
    assert cm.kept_states(("tracer",)) == (3, 4)
    assert cm.kept_states(("conc",)) == (0, 1, 2)  # the peripheral returns to central
    msc = CompiledModel(cp.load_model("msc_pbk"))
    keep = msc.kept_states(("viable_total", "dna_lung"))
    names = {msc.state_names[i] for i in keep}
    assert {"lung", "dead_lung", "liver"} <= names
    assert not names & {"dead_liver", "cleared", "lab_lung"}
    p = {k: np.asarray(v) for k, v in msc.spec.defaults().items()}
    p.update({d: np.asarray(1.0) for d in msc.spec.dosed_names})
    A, b = msc.linear_system(p)
    A_k, b_k = msc.linear_system(p, keep)
    np.testing.assert_array_equal(np.asarray(A_k), np.asarray(A)[np.ix_(keep, keep)])
    np.testing.assert_array_equal(np.asarray(b_k), np.asarray(b)[list(keep)])


def test_msc_pbk_outputs_of_a_few_states_equal_the_whole_model(monkeypatch) -> None:
    """msc_pbk by IV with two outputs (viable cells in the body, DNA in the lung) solves 12 of
    its 62 states (upstream of what the outputs read, and reached by the dose); the outputs
    equal those of a solve of every state (rtol 1e-10, see the module docstring: fewer
    squarings on the smaller matrix change only rounding), planned and unplanned."""
    import importlib

    S = importlib.import_module("cellpkpd.engine.simulator")
    spec = cp.load_model("msc_pbk")
    times = np.arange(0.0, 49.0, 4.0)
    reg = cp.Regimen([cp.Dose(0.0, 1e6, route="iv"), cp.Dose(24.0, 5e5, route="iv")])
    params = {"k_death_lung": spec.parameters["k_death_lung"].value * np.array([0.5, 1.0, 2.0])}
    outputs = ["viable_total", "dna_lung"]
    sim = cp.Simulator(spec, times, outputs=outputs, solver="exact")
    assert len(sim.plan(reg).options.keep) == 12
    whole = cp.simulate(spec, reg, times, params=params, outputs=outputs + list(spec.states))
    for threshold in (1, 10**9):
        monkeypatch.setattr(S, "PLAN_MIN_SUBJECTS", threshold)
        few = cp.simulate(spec, reg, times, params=params, outputs=outputs)
        for o in outputs:
            np.testing.assert_allclose(few[o].values, whole[o].values, rtol=1e-10, atol=0)
            assert np.all(few[o].values[:, 1:] > 0)
