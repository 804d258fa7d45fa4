"""Gaps found by a notebook review: per-kg doses in `cp.dose_ranging`, the varying columns
of a virtual population, and the dose that reaches a target PTA as a library function."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cellpkpd as cp
from cellpkpd.analysis.doseranging import attainment_dose, dose_for_attainment


@pytest.fixture(scope="module")
def one_cmt():
    return cp.load_model("one_cmt_iv")


# ---------------------------------------------------------------------- per-kg doses
def test_dose_ranging_resolves_per_kg_doses_per_subject_like_simulate():
    """The notebook's call (msc_pkpd_host, 1e6 cells/kg IV to 70-kg patients whose weight
    varies) runs, and each subject's metric equals cp.simulate's with that subject's
    weight (which resolves per kg doses the same way)."""
    spec = cp.load_model("msc_pkpd_host")
    pop = cp.VirtualPopulation(
        spec, 3, covariates={"body_weight": "lognormal(log(70), 0.2)"}, seed=2
    )
    times = np.linspace(0.0, 96.0, 25)
    metric = cp.metrics.max_pct_change("biomarker")
    reg = cp.Regimen([cp.Dose(0.0, 1.0, per="kg", route="iv")])
    table, samples = cp.dose_ranging(
        spec, {"dose": [1e6]}, pop, times, {"s": metric}, regimen=reg, return_samples=True
    )
    assert table.attrs["dose_unit"] == f"{spec.amount_unit}/kg"
    res = cp.simulate(
        spec,
        cp.Regimen([cp.Dose(0.0, 1e6, per="kg", route="iv")]),
        times,
        params=pop.params,
        covariates=pop.model_covariates(),
    )
    # the same compiled solve of the same inputs: only round-off may differ
    np.testing.assert_allclose(samples["s"].values, metric(res).values, rtol=1e-9)
    given = res["amount_given"].values
    np.testing.assert_allclose(given, 1e6 * pop.covariates["body_weight"], rtol=1e-12)


def test_dose_ranging_per_kg_needs_a_body_weight(one_cmt):
    reg = cp.Regimen([cp.Dose(0.0, 1.0, "central", per="kg")])
    with pytest.raises(cp.DosingError, match="dose_ranging: a dose per kg of body weight"):
        cp.dose_ranging(
            one_cmt, {"dose": [1.0]}, None, [0.0, 1.0], {"c": cp.metrics.cmax("conc")},
            regimen=reg,
        )  # fmt: skip


# ---------------------------------------------------------------------- to_frame
def test_to_frame_varying_only_keeps_the_columns_that_differ():
    spec = cp.load_model("msc_pkpd_host")
    pop = cp.VirtualPopulation(spec, 20, covariates={"body_weight": "lognormal(log(70), 0.2)"})
    frame = pop.to_frame()
    constant = [c for c in frame.columns if c != "body_weight"]
    # every other column is exactly one value (no float noise), so varying_only drops it
    assert (frame[constant].max() == frame[constant].min()).all()
    varying = pop.to_frame(varying_only=True)
    assert list(varying.columns) == ["body_weight"] and varying.index.name == "subject"
    np.testing.assert_array_equal(varying["body_weight"], pop.covariates["body_weight"])
    assert "varying: body_weight)" in repr(pop)


# ---------------------------------------------------------------------- dose for a PTA
def test_attainment_dose_interpolates_in_log_dose():
    # PTA 0.5 at 10, 1.0 at 1000: 0.9 is reached 80% of the way in log10(dose): 10**2.6
    assert attainment_dose([10.0, 1000.0], [0.5, 1.0], 0.9) == pytest.approx(10**2.6, rel=1e-12)
    assert attainment_dose([10.0, 1000.0], [0.5, 1.0], 0.9, log=False) == pytest.approx(802.0)
    assert attainment_dose([1.0, 2.0], [0.95, 1.0], 0.9) == 1.0  # the lowest dose reaches it
    assert np.isnan(attainment_dose([1.0, 2.0], [0.1, 0.2], 0.9))


def test_dose_for_attainment_per_regimen_group():
    rows = []
    for reg, ptas in (("single", [0.2, 0.6, 1.0]), ("weekly", [0.0, 0.1, 0.3])):
        for dose, p in zip([1.0, 10.0, 100.0], ptas, strict=True):
            rows.append({"arm": len(rows), "dose": dose, "regimen": reg, "metric": "m",
                         "target": ">= 1", "pta": p})  # fmt: skip
    table = pd.DataFrame(rows)
    table.attrs["dose_unit"] = "cells/kg"
    out = dose_for_attainment(table, "m", pta=0.8)
    assert list(out.columns) == ["regimen", "dose", "max_pta"]
    kept = {k: out.attrs[k] for k in ("metric", "pta", "dose_unit")}
    assert kept == {"metric": "m", "pta": 0.8, "dose_unit": "cells/kg"}
    assert out.attrs["units"] == {"dose": "cells/kg"}  # shown as "dose [cells/kg]"
    single, weekly = out.to_dict("records")
    assert single["regimen"] == "single" and single["dose"] == pytest.approx(10**1.5)
    assert weekly["regimen"] == "weekly" and np.isnan(weekly["dose"])
    assert weekly["max_pta"] == pytest.approx(0.3)
    with pytest.raises(cp.SpecError, match=r"pta = 1\.5; expected a probability"):
        dose_for_attainment(table, "m", pta=1.5)


def test_dose_for_attainment_matches_the_plot_marker(one_cmt):
    """cp.plots.target_attainment draws its marker at the dose dose_for_attainment gives."""
    pop = cp.VirtualPopulation(one_cmt, 40, random_effects={"CL": 0.4}, seed=3)
    times = np.linspace(0.0, 48.0, 49)
    reg = cp.Regimen([cp.Dose(0.0, 1.0, "central")])
    table = cp.dose_ranging(
        one_cmt, {"dose": [10.0, 30.0, 100.0, 300.0]}, pop, times,
        {"auc": cp.metrics.auc("conc")}, {"auc": (">=", 20.0)}, regimen=reg,
    )  # fmt: skip
    (dose,) = dose_for_attainment(table, pta=0.9)["dose"]
    fig = cp.plots.target_attainment(table, "auc", target=0.9)
    (marker,) = [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "target dose"]
    assert marker.get_xdata()[0] == pytest.approx(dose, rel=1e-12)


# ---------------------------------------------------------------------- options objects
def test_run_sweep_with_option_objects_equals_sweep(one_cmt):
    from cellpkpd.analysis.sweep import RunOptions, SolverOptions, run_sweep

    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    samples = {"CL": np.array([1.0, 2.0, 4.0])}
    metrics = {"auc": cp.metrics.auc("conc")}
    a = cp.sweep(one_cmt, reg, [0.0, 400.0], samples, metrics, chunk_size=2, progress=False)
    b = run_sweep(one_cmt, reg, [0.0, 400.0], samples, metrics,
                  run=RunOptions(chunk_size=2, progress=False),
                  solver_options=SolverOptions())  # fmt: skip
    np.testing.assert_array_equal(a["auc"].values, b["auc"].values)
    assert a.attrs == b.attrs
    with pytest.raises(cp.SpecError, match="sweep: chunk_size = 0 must be > 0"):
        run_sweep(one_cmt, reg, [0.0, 1.0], samples, metrics, run=RunOptions(chunk_size=0))


# ---------------------------------------------------------------------- samplers
def test_samplers_grid_random_sobol():
    from cellpkpd.analysis.sampling import Range, sample

    grid = sample("grid", {"CL": [1, 2, 4], "V": Range(5.0, 20.0, log=True, num=2)})
    assert list(zip(grid["CL"], grid["V"], strict=True)) == [
        (c, v) for c in (1.0, 2.0, 4.0) for v in (5.0, 20.0)
    ]
    for kind in ("random", "sobol"):
        s = sample(kind, {"CL": Range(1.0, 4.0), "V": Range(5.0, 20.0, log=True)}, n=64, seed=1)
        assert s["CL"].shape == (64,) and (s["CL"] >= 1).all() and (s["CL"] <= 4).all()
        assert (s["V"] >= 5).all() and (s["V"] <= 20).all()
        again = sample(kind, {"CL": Range(1.0, 4.0), "V": Range(5.0, 20.0, log=True)}, 64, 1)
        np.testing.assert_array_equal(s["V"], again["V"])
    # a scrambled Sobol sequence of 64 points: one point in each of 64 equal strata
    u = np.log(s["V"] / 5.0) / np.log(4.0)
    assert np.unique(np.floor(u * 64)).size == 64
    d = sample("random", {"CL": "lognormal(log(2), 0.3)"}, n=2000, seed=0)
    assert np.median(d["CL"]) == pytest.approx(2.0, rel=0.05)
    with pytest.raises(cp.SpecError, match="only the random sampler takes distributions"):
        sample("sobol", {"CL": "lognormal(log(2), 0.3)"}, n=4)
