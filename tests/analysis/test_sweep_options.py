"""Options as objects end to end (`RunOptions`, `SolverOptions` given to `cp.sweep`,
`cp.dose_ranging` and `cp.gsa.sobol` instead of loose keywords), and doses per kg of body
weight in `cp.sweep`, checked against `cp.simulate` subject by subject."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MODELS

import cellpkpd as cp
from cellpkpd.analysis.sweep import RunOptions
from cellpkpd.engine.options import SolverOptions

# the library's one_cmt_iv with body weight WT [kg] as a covariate: linear (exact solver)
WEIGHT = '\n[covariates]\nWT = { value = 70.0, unit = "kg" }\n'

TIMES = np.linspace(0.0, 48.0, 13)
METRICS = {"cmax": cp.metrics.cmax("conc"), "c48": cp.metrics.value_at("conc", 48.0)}
AUC = {"auc": cp.metrics.auc("conc", 0.0, 48.0)}
# a per-kg loading dose and an absolute maintenance dose (amounts linear in the weight)
PER_KG = cp.Regimen([cp.Dose(0.0, 2.0, "central", per="kg"), cp.Dose(12.0, 50.0, "central")])


@pytest.fixture(scope="module")
def weighed(tmp_path_factory: pytest.TempPathFactory) -> cp.ModelSpec:
    path = tmp_path_factory.mktemp("weighed") / "weighed.toml"
    path.write_text((MODELS / "one_cmt_iv.toml").read_text("utf-8") + WEIGHT, encoding="utf-8")
    return cp.load_model(path)


@pytest.fixture(scope="module")
def one_cmt() -> cp.ModelSpec:
    return cp.load_model("one_cmt_iv")


def _simulated(spec, regimens, params, covariates):
    """Each metric per subject from cp.simulate (which resolves per-kg doses itself)."""
    res = cp.simulate(spec, regimens, TIMES, params=params, covariates=covariates)
    return {k: np.asarray(m(res).values, dtype=float) for k, m in METRICS.items()}


# ---------------------------------------------------------------------- per-kg doses
def test_sweep_resolves_per_kg_doses_per_set_like_simulate(weighed: cp.ModelSpec) -> None:
    # the same compiled solve of the same inputs as cp.simulate: only round-off may differ
    # (a result of cp.simulate has no AUC across the 12-h jump: a closed form checks it)
    samples = {"WT": np.array([50.0, 70.0, 95.0]), "CL": np.array([1.5, 2.0, 3.0])}
    out = cp.sweep(weighed, PER_KG, TIMES, samples, {**METRICS, **AUC}, progress=False)
    want = _simulated(weighed, PER_KG, {"CL": samples["CL"]}, {"WT": samples["WT"]})
    for k in METRICS:
        np.testing.assert_allclose(out[k].values, want[k], rtol=1e-9)
    # closed forms (boluses into one compartment): the peak is the loading dose's,
    # 2 mg/kg * WT / V (the 50 mg at 12 h adds less than the decay took), and the AUC
    # over [0, 48] is sum D / CL * (1 - exp(-CL/V * (48 - t_dose))); the running integral is
    # exact to solver precision (exact path: matrix exponential, ~1e-12)
    WT, CL, V = samples["WT"], samples["CL"], 10.0
    np.testing.assert_allclose(out["cmax"].values, 2.0 * WT / V, rtol=1e-12)
    auc = (2.0 * WT * (1 - np.exp(-CL / V * 48.0)) + 50.0 * (1 - np.exp(-CL / V * 36.0))) / CL
    np.testing.assert_allclose(out["auc"].values, auc, rtol=1e-9)


def test_sweep_per_kg_with_one_regimen_per_set_and_a_fixed_weight(weighed: cp.ModelSpec) -> None:
    other = cp.Regimen([cp.Dose(0.0, 1.0, "central", per="kg", duration=2.0)])
    regimens = [PER_KG, other, PER_KG]
    samples = {"CL": np.array([1.0, 2.0, 4.0])}
    out = cp.sweep(weighed, regimens, TIMES, samples, METRICS, covariates={"WT": 80.0},
                   progress=False)  # fmt: skip
    want = _simulated(weighed, regimens, samples, {"WT": 80.0})
    for k in METRICS:
        np.testing.assert_allclose(out[k].values, want[k], rtol=1e-9)
    # no weight given: the model's (70 kg), as cp.simulate takes it
    out = cp.sweep(weighed, PER_KG, TIMES, samples, METRICS, progress=False)
    want = _simulated(weighed, PER_KG, samples, None)
    for k in METRICS:
        np.testing.assert_allclose(out[k].values, want[k], rtol=1e-9)


def test_sweep_per_kg_needs_a_positive_body_weight(weighed, one_cmt) -> None:
    with pytest.raises(cp.DosingError, match=r"^sweep: a dose per kg, but sample 1 has WT = 0 kg"):
        cp.sweep(weighed, PER_KG, TIMES, {"WT": [70.0, 0.0]}, METRICS, progress=False)
    reg = cp.Regimen([cp.Dose(0.0, 1.0, "central", per="kg")])
    with pytest.raises(cp.DosingError, match=r"^sweep: a dose per kg of body weight, but "
                       "one_cmt_iv has no body weight"):  # fmt: skip
        cp.sweep(one_cmt, reg, TIMES, {"CL": [1.0]}, METRICS, progress=False)


# ---------------------------------------------------------------------- options objects
def test_sweep_takes_its_options_as_objects(one_cmt: cp.ModelSpec) -> None:
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    samples = {"CL": np.array([1.0, 2.0, 4.0])}
    a = cp.sweep(one_cmt, reg, TIMES, samples, METRICS, chunk_size=2, progress=False,
                 solver="exact")  # fmt: skip
    b = cp.sweep(one_cmt, reg, TIMES, samples, METRICS,
                 run=RunOptions(chunk_size=2, progress=False),
                 solver_options=SolverOptions(solver="exact"))  # fmt: skip
    for k in METRICS:
        np.testing.assert_array_equal(a[k].values, b[k].values)
    assert np.all(np.isfinite(a["c48"].values)) and a["c48"].values[0] > a["c48"].values[2]
    assert a.attrs == b.attrs and a.attrs["chunk_size"] == 2 and a.attrs["solver"] == "exact"
    # a keyword equal to the object's field is no conflict
    c = cp.sweep(one_cmt, reg, TIMES, samples, METRICS, chunk_size=2,
                 run=RunOptions(chunk_size=2, progress=False))  # fmt: skip
    np.testing.assert_array_equal(a["cmax"].values, c["cmax"].values)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"run": RunOptions(chunk_size=2), "chunk_size": 3},
         r"^sweep: chunk_size=3 conflicts with run.chunk_size = 2; give it once"),
        ({"solver_options": SolverOptions(rtol=1e-6), "rtol": 1e-10},
         r"^sweep: rtol=1e-10 conflicts with solver_options.rtol = 1e-06"),
        ({"run": {"chunk_size": 2}},
         r"^sweep: run = .* must be a RunOptions \(or None\), got dict"),
        ({"solver_options": "exact"},
         r"^sweep: solver_options = 'exact' must be a SolverOptions \(or None\), got str"),
    ],
    ids=["run-conflict", "solver-conflict", "run-type", "solver-type"],
)  # fmt: skip
def test_sweep_option_object_and_a_conflicting_keyword(one_cmt, kw, match) -> None:
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    with pytest.raises(cp.SpecError, match=match):
        cp.sweep(one_cmt, reg, TIMES, {"CL": [1.0]}, METRICS, **kw)


def test_dose_ranging_and_sobol_pass_option_objects_on(one_cmt: cp.ModelSpec) -> None:
    reg = cp.Regimen([cp.Dose(0.0, 1.0, "central")])
    pop = cp.VirtualPopulation(one_cmt, 4, random_effects={"CL": 0.3}, seed=1)
    arms = {"dose": [10.0, 100.0]}
    a = cp.dose_ranging(one_cmt, arms, pop, TIMES, METRICS, regimen=reg, chunk_size=3,
                        rtol=1e-10)  # fmt: skip
    b = cp.dose_ranging(one_cmt, arms, pop, TIMES, METRICS, regimen=reg,
                        run=RunOptions(chunk_size=3, progress=False),
                        solver_options=SolverOptions(rtol=1e-10))  # fmt: skip
    np.testing.assert_array_equal(a["median"].to_numpy(), b["median"].to_numpy())
    with pytest.raises(cp.SpecError, match=r"^dose_ranging: rtol=1e-06 conflicts with "
                       r"solver_options.rtol = 1e-10"):  # fmt: skip
        cp.dose_ranging(one_cmt, arms, pop, TIMES, METRICS, regimen=reg, rtol=1e-6,
                        solver_options=SolverOptions(rtol=1e-10))  # fmt: skip
    bounds = {"CL": (1.0, 3.0), "V": (5.0, 20.0)}
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    s1 = cp.gsa.sobol(one_cmt, reg, TIMES, bounds, AUC, n=8, chunk_size=16)
    s2 = cp.gsa.sobol(one_cmt, reg, TIMES, bounds, AUC, n=8,
                      run=RunOptions(chunk_size=16, progress=False),
                      solver_options=SolverOptions())  # fmt: skip
    np.testing.assert_array_equal(s1["S1"].to_numpy(), s2["S1"].to_numpy())
    with pytest.raises(cp.SpecError, match=r"^gsa.sobol: progress=True conflicts with "
                       r"run.progress = False"):  # fmt: skip
        cp.gsa.sobol(one_cmt, reg, TIMES, bounds, AUC, n=8, progress=True,
                     run=RunOptions(progress=False))  # fmt: skip


def test_evaluate_metrics_passes_a_run_object_on(one_cmt: cp.ModelSpec) -> None:
    # its own progress=False default gives way to the object (no conflict with it)
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    a = cp.evaluate_metrics(one_cmt, METRICS, reg, TIMES, {"CL": [1.0, 2.0]})
    b = cp.evaluate_metrics(one_cmt, METRICS, reg, TIMES, {"CL": [1.0, 2.0]},
                            run=RunOptions(chunk_size=1, progress=False))  # fmt: skip
    np.testing.assert_array_equal(a["cmax"].to_numpy(), b["cmax"].to_numpy())
