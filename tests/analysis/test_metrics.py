"""Metrics (`cp.metrics`) against closed forms of the one-compartment model, on the device
(inside `cp.sweep`) and on `cp.simulate` results."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import ROOT, bolus_amount, infusion_amount

import cellpkpd as cp
from cellpkpd.analysis.metrics import integral_name
from cellpkpd.analysis.sweep import augment_spec

DOSE = 100.0  # mg
CL = np.array([1.0, 2.0, 3.5])  # L/h
V = np.array([10.0, 12.0, 8.0])  # L
K = CL / V  # 1/h
# 0..240 h: exp(-k 240) <= exp(-24) ~ 4e-11, so the AUC to the last time equals the AUC to
# infinity (dose / CL) to far better than 1e-6
TIMES = np.linspace(0.0, 240.0, 121)
# the exact (matrix-exponential) path with a running-integral state leaves only float64
# round-off (~1e-14); crossings and the half-life are log-linear, exact for a
# mono-exponential. 1e-6 is the requirement and far above the round-off.
RTOL = 1e-6

one_cmt = cp.load_model("one_cmt_iv")
bolus = cp.Regimen([cp.Dose(time=0.0, amount=DOSE, cmt="central")])


def _sweep(regimen, metrics, times=TIMES):
    return cp.sweep(one_cmt, regimen, times, {"CL": CL, "V": V}, metrics, progress=False)


def test_bolus_metrics_match_closed_forms():
    thr = 2.0  # mg/L, below every C0 = DOSE / V
    m = {
        "auc": cp.metrics.auc("conc"),
        "auc_window": cp.metrics.auc("conc", start=1.3, end=7.7),
        "half_life": cp.metrics.half_life("conc"),
        "above": cp.metrics.time_above("conc", thr),
        "to": cp.metrics.time_to("conc", thr, direction="below"),
        "at": cp.metrics.value_at("conc", 3.3),
        "cells": cp.metrics.cell_days("central", end=48.0),
        "drop": cp.metrics.max_pct_change("conc", "decrease"),
        "cmax": cp.metrics.cmax("conc"),
    }
    out = _sweep(bolus, m)
    c0 = DOSE / V
    expected = {
        "auc": DOSE / CL,
        "auc_window": DOSE / CL * (np.exp(-K * 1.3) - np.exp(-K * 7.7)),
        "half_life": np.log(2.0) * V / CL,
        "above": np.log(c0 / thr) / K,
        "to": np.log(c0 / thr) / K,
        "at": c0 * np.exp(-K * 3.3),
        # integral of the amount over 0..48 h, converted from mg*h to mg*day
        "cells": DOSE / K * (1.0 - np.exp(-K * 48.0)) / 24.0,
        "drop": 100.0 * (1.0 - np.exp(-K * TIMES[-1])),
        "cmax": c0,
    }
    for name, want in expected.items():
        np.testing.assert_allclose(out[name].values, want, rtol=RTOL, err_msg=name)
    assert out["auc"].attrs["unit"] == "mg/L*h"
    assert out["cells"].attrs["unit"] == "mg*day"
    assert out["half_life"].attrs["unit"] == "h"
    assert out["drop"].attrs["unit"] == "%"
    assert out["auc"].dtype == np.float64
    # the DataFrame convenience runs the same compiled sweep
    table = cp.evaluate_metrics(one_cmt, m, bolus, TIMES, params={"CL": CL, "V": V})
    assert list(table.index) == [0, 1, 2]
    np.testing.assert_array_equal(table["auc"].to_numpy(), out["auc"].values)
    # its former name forwards, with a DeprecationWarning
    with pytest.warns(DeprecationWarning, match="cp.evaluate_metrics"):
        assert cp.metrics.evaluate is cp.evaluate_metrics


def test_infusion_cmax_tmax_auc_match_closed_forms():
    T = 2.0  # h; the infusion end is on the output grid, where the peak is
    reg = cp.Regimen([cp.Dose(time=0.0, amount=DOSE, cmt="central", duration=T)])
    m = {
        "cmax": cp.metrics.cmax("conc"),
        "tmax": cp.metrics.tmax("conc"),
        "auc": cp.metrics.auc("conc"),
        "rise": cp.metrics.time_to("conc", 1.0, direction="above"),
    }
    out = _sweep(reg, m, times=np.union1d(TIMES, [T]))
    peak = infusion_amount(T, DOSE, T, CL, V) / V
    np.testing.assert_allclose(out["cmax"].values, peak, rtol=RTOL)
    np.testing.assert_allclose(out["tmax"].values, T, rtol=RTOL)
    np.testing.assert_allclose(out["auc"].values, DOSE / CL, rtol=RTOL)
    # the rising side is interpolated linearly between grid points (2 h apart): only a
    # sanity check that the crossing lies in the right interval
    rate = DOSE / T
    t_cross = -np.log(1.0 - 1.0 * V * K / rate) / K
    assert np.all(np.abs(out["rise"].values - t_cross) < 2.0)
    assert out["tmax"].attrs["unit"] == "h"


@pytest.mark.extended
def test_metrics_on_a_result_agree_with_on_device_ones_on_a_fine_grid():
    spec = cp.load_model(ROOT / "benchmarks" / "models" / "mm_idr.toml")
    times = np.linspace(0.0, 48.0, 961)  # 0.05 h grid
    reg = cp.Regimen([cp.Dose(time=0.0, amount=50.0, cmt="central", duration=1.0)])
    params = {"V": np.array([8.0, 12.0]), "Vmax": np.array([3.0, 6.0])}
    m = {
        "auc": cp.metrics.auc("conc", end=24.0),
        "cmax": cp.metrics.cmax("conc"),
        "tmax": cp.metrics.tmax("conc"),
        "hl": cp.metrics.half_life("conc", start=30.0),
        "above": cp.metrics.time_above("conc", 1.0),
        "to": cp.metrics.time_to("biomarker", 15.0, direction="below"),
        "drop": cp.metrics.max_pct_change("biomarker"),
        "at": cp.metrics.value_at("biomarker", 10.0),
    }
    dev = cp.sweep(spec, reg, times, params, m, progress=False)
    res = cp.simulate(spec, reg, times, params=params)
    for name, metric in m.items():
        on_result = metric(res)
        assert on_result.dims == ("subject",)
        assert on_result.attrs["unit"] == dev[name].attrs["unit"]
        # the AUC on the result is a linear-up/log-down trapezoid, O(dt^2) ~ 1e-6 relative on
        # a 0.05 h grid; the rest read the grid, but the on-device solve carries the integral
        # state, so its adaptive steps differ: both lie within the solver tolerance (1e-8,
        # absolute 1e-8 dominating at low concentrations), hence 1e-6
        rtol = 1e-5 if name == "auc" else 1e-6
        np.testing.assert_allclose(on_result.values, dev[name].values, rtol=rtol, err_msg=name)


def test_result_trapezoid_is_exact_for_a_bolus_and_uses_an_integral_state_when_present():
    res = cp.simulate(one_cmt, bolus, TIMES, params={"CL": CL, "V": V})
    # log-down trapezoid: exact for a mono-exponential decline (round-off only)
    np.testing.assert_allclose(
        cp.metrics.auc("conc", 2.0, 9.0)(res).values,
        DOSE / CL * (np.exp(-K * 2.0) - np.exp(-K * 9.0)),
        rtol=1e-10,
    )
    cells = cp.metrics.cell_days("central")(res)
    assert cells.attrs["unit"] == "mg*day"  # the result's time unit (h) converted to days
    np.testing.assert_allclose(cells.values, DOSE / K * (1 - np.exp(-K * 240.0)) / 24, rtol=1e-10)
    aug, got = augment_spec(one_cmt, ["conc"])
    assert got == ("conc",) and aug.is_linear  # still solved exactly
    res2 = cp.simulate(aug, bolus, TIMES, params={"CL": CL, "V": V})
    assert integral_name("conc") in res2
    np.testing.assert_allclose(cp.metrics.auc("conc")(res2).values, DOSE / CL, rtol=RTOL)


def test_reduce_is_differentiable_under_jit():
    aug, _ = augment_spec(one_cmt, ["conc"])
    sim = cp.Simulator(aug, TIMES, outputs=("conc", integral_name("conc")))
    doses = bolus.to_arrays(None, aug)
    metric = cp.metrics.auc("conc")

    @jax.jit
    def f(cl):
        return metric.reduce(sim.times, sim({"CL": cl, "V": 10.0}, doses))

    g = jax.grad(f)(2.0)
    # d(dose / CL)/dCL = -dose / CL^2 (exact path: round-off only)
    np.testing.assert_allclose(float(g), -DOSE / 4.0, rtol=RTOL)


def test_closed_form_helper_agrees_with_metric_on_result():
    res = cp.simulate(one_cmt, bolus, TIMES, params={"CL": 2.0, "V": 10.0})
    a = bolus_amount(TIMES, DOSE, 2.0, 10.0)
    assert cp.metrics.cmax("central")(res).values[0] == pytest.approx(a.max(), rel=1e-12)
    assert cp.metrics.tmax("central")(res).values[0] == 0.0


def test_bad_metric_inputs_give_one_line_errors():
    cases = [
        (lambda: cp.metrics.auc("conc", start=5.0, end=1.0), "end = 1.0 must be > start"),
        (lambda: cp.metrics.max_pct_change("conc", "down"), "direction = 'down'"),
        (lambda: cp.metrics.time_to("conc", float("nan")), "threshold = nan"),
        (lambda: cp.metrics.value_at(3, 1.0), "output must be the name"),
        (lambda: _sweep(bolus, {"x": cp.metrics.auc("nope")}), "unknown output 'nope'"),
        (lambda: cp.metrics.auc("nope")(cp.simulate(one_cmt, bolus, TIMES)), "'nope' is not in"),
        (lambda: _sweep(bolus, {"x": "auc"}), "'x' is a str"),
    ]
    for call, match in cases:
        with pytest.raises(cp.SpecError, match=match) as info:
            call()
        assert "\n" not in str(info.value)


def test_steady_state_regimen_falls_back_to_the_log_down_trapezoid():
    # an SS=1 bolus every 12 h: the AUC over one interval at steady state is dose / CL; the
    # running integral has no steady state, so the trapezoid is used, exact for this
    # mono-exponential decline (round-off only)
    reg = cp.Regimen([cp.Dose(time=0.0, amount=DOSE, cmt="central", ss=1, ii=12.0)])
    out = _sweep(reg, {"auc": cp.metrics.auc("conc", 0.0, 12.0)}, times=np.linspace(0, 12, 13))
    np.testing.assert_allclose(out["auc"].values, DOSE / CL, rtol=1e-9)


# ---------------------------------------------------------------- own points (issue 14, item 12)
@pytest.mark.slow
def test_a_metric_reads_only_its_own_points_in_a_sweep_and_on_a_result():
    # outputs 1..24 h; value_at(conc, 0) used to put t = 0 on every metric's grid (AUC 40.53
    # -> 49.59, cmax 8.19 -> 10.0, time_to 1.0 -> 0.53). Each metric now reads the user's
    # times plus its own: the same alone, next to value_at(0) and on a cp.simulate result.
    times = np.arange(1.0, 25.0)
    cl, v = np.array([2.0]), np.array([10.0])
    k = cl / v
    m = {
        "auc": cp.metrics.auc("conc"),
        "cmax": cp.metrics.cmax("conc"),
        "to": cp.metrics.time_to("conc", 9.0, direction="below"),
        "above": cp.metrics.time_above("conc", 3.0),
        "peak": cp.metrics.cmax("conc", start=1.3, end=1.7),
    }
    alone = cp.sweep(one_cmt, bolus, times, {"CL": cl, "V": v}, m, progress=False)
    with_c0 = {**m, "c0": cp.metrics.value_at("conc", 0.0)}
    both = cp.sweep(one_cmt, bolus, times, {"CL": cl, "V": v}, with_c0, progress=False)
    res = cp.simulate(one_cmt, bolus, times, params={"CL": cl, "V": v})
    c0 = DOSE / v
    want = {
        "auc": DOSE / cl * (np.exp(-k * 1.0) - np.exp(-k * 24.0)),  # 40.525 mg/L*h
        "cmax": c0 * np.exp(-k * 1.0),  # 8.187 mg/L at the first output time
        "to": np.array([1.0]),  # never above 9 mg/L on 1..24 h: below from the start
        "above": np.log(c0 / 3.0) / k - 1.0,
        "peak": c0 * np.exp(-k * 1.3),  # the window's own bound (interpolated on the result)
    }
    for name, metric in m.items():
        # the same compiled values per set whatever the neighbours: round-off at most
        np.testing.assert_allclose(both[name].values, alone[name].values, rtol=1e-12, err_msg=name)
        # on the result: the same points; the log-down trapezoid and log-linear crossings and
        # bound values are exact for this mono-exponential decline (round-off, 1e-10)
        np.testing.assert_allclose(metric(res).values, alone[name].values, rtol=1e-10)
        np.testing.assert_allclose(alone[name].values, want[name], rtol=1e-10, err_msg=name)
    np.testing.assert_allclose(both["c0"].values, c0, rtol=1e-12)


@pytest.mark.slow
def test_half_life_in_a_sweep_equals_half_life_on_the_result():
    # two-compartment: the log-linear regression depends on which points it sees (a t = 0
    # point added by value_at made it 8.28 h in the sweep vs 9.75 h on the result)
    two = cp.load_model("two_cmt_iv")
    reg = cp.Regimen([cp.Dose(time=0.0, amount=DOSE, cmt="central")])
    times = np.arange(1.0, 25.0)
    m = {"hl": cp.metrics.half_life("conc"), "c0": cp.metrics.value_at("conc", 0.0)}
    out = cp.sweep(two, reg, times, {"CL": np.array([2.0])}, m, progress=False)
    res = cp.simulate(two, reg, times, params={"CL": 2.0})
    # both solve exactly (matrix exponential) at the same times: round-off only
    np.testing.assert_allclose(out["hl"].values, m["hl"](res).values, rtol=1e-10)
    conc = res["conc"].values[0]
    slope = np.polyfit(times, np.log(conc), 1)[0]  # numpy's least squares on the same points
    np.testing.assert_allclose(out["hl"].values, -np.log(2.0) / slope, rtol=1e-10)


# ---------------------------------------------------------------- jumps (issue 14, item 15)
def _two_boluses_truth(thr, cl=2.0, v=10.0, t_end=24.0):
    """Time above `thr` of boluses of DOSE at 0 and 12 h (closed form, one compartment)."""
    k = cl / v
    c0, c12 = DOSE / v, DOSE / v * (1.0 + np.exp(-12.0 * k))
    return min(np.log(c0 / thr) / k, 12.0) + min(np.log(c12 / thr) / k, t_end - 12.0)


@pytest.mark.slow
def test_time_above_and_time_to_do_not_interpolate_across_a_bolus():
    reg = cp.Regimen([cp.Dose(time=t, amount=DOSE, cmt="central") for t in (0.0, 12.0)])
    thr = 3.0  # mg/L: C falls below it before 12 h and jumps above it at 12 h
    m = {
        "above": cp.metrics.time_above("conc", thr),
        "auc": cp.metrics.auc("conc", end=24.0),
        # C0 = 10 >= 9 at t = 0 already; 10.5 only by the jump at 12 h (to 10.91 mg/L)
        "rise9": cp.metrics.time_to("conc", 9.0, direction="above"),
        "rise": cp.metrics.time_to("conc", 10.5, direction="above"),
    }
    k = 0.2
    auc = 50.0 * (1 - np.exp(-24 * k)) + 50.0 * (1 - np.exp(-12 * k))  # dose / CL pieces
    # the dose time is on the grid (2 h) or not (5 h): both see the jump from both sides
    for step in (2.0, 5.0):
        times = np.arange(0.0, 24.0 + 1e-9, step)
        out = cp.sweep(one_cmt, reg, times, {"CL": [2.0], "V": [10.0]}, m, progress=False)
        # 12.474 h (linear interpolation across the jump gave 14.13 h on the 2 h grid);
        # log-linear pieces are exact for this mono-exponential: round-off, 1e-9
        np.testing.assert_allclose(out["above"].values, _two_boluses_truth(thr), rtol=1e-9)
        np.testing.assert_allclose(out["auc"].values, auc, rtol=1e-9)
        assert out["rise9"].values[0] == 0.0
        assert out["rise"].values[0] == 12.0  # at the jump, not interpolated before it


def test_reset_jump_and_trapezoid_fallback_are_exact():
    # a reset at 6 h (EVID 3) zeroes the state; the integral state is not used with resets,
    # so the AUC is the log-down trapezoid, which must not bridge the drop to 0
    reg = cp.Regimen(
        [cp.Dose(time=0.0, amount=DOSE, cmt="central"), cp.Reset(time=6.0),
         cp.Dose(time=12.0, amount=DOSE, cmt="central")]
    )  # fmt: skip
    times = np.arange(0.0, 25.0, 4.0)  # 6 h is not an output time
    m = {"auc": cp.metrics.auc("conc"), "to": cp.metrics.time_to("conc", 2.0, "below")}
    out = cp.sweep(one_cmt, reg, times, {"CL": [2.0]}, m, progress=False)
    k = 0.2
    np.testing.assert_allclose(
        out["auc"].values, 50.0 * (1 - np.exp(-6 * k)) + 50.0 * (1 - np.exp(-12 * k)), rtol=1e-9
    )
    # C(6-) = 3.01 > 2 falls to 0 at the reset: 6 h (not interpolated over 4..8 h)
    np.testing.assert_allclose(out["to"].values, 6.0, rtol=1e-12)


@pytest.mark.slow
def test_a_result_refuses_to_interpolate_across_a_dose_when_it_knows_the_regimen():
    reg = cp.Regimen([cp.Dose(time=t, amount=DOSE, cmt="central") for t in (0.0, 12.0)])
    times = np.arange(0.0, 25.0, 2.0)
    res = cp.simulate(one_cmt, reg, times)
    c = lambda t: 10.0 * np.exp(-0.2 * t) + 10.0 * np.exp(-0.2 * (t - 12.0)) * (t >= 12.0)
    # between grid points without a dose: log-linear, exact here (round-off, 1e-12)
    np.testing.assert_allclose(
        cp.metrics.value_at("conc", 13.0)(res, regimen=reg).values, c(13.0), rtol=1e-12
    )
    # on the grid at the dose time: the value after the dose
    np.testing.assert_allclose(
        cp.metrics.value_at("conc", 12.0)(res, regimen=reg).values, c(12.0), rtol=1e-12
    )
    cases = [
        (cp.metrics.value_at("conc", 11.5), "jumps at t = 12 between the result's output times 10"),
        (cp.metrics.time_above("conc", 3.0), "jumps at t = 12 inside"),
        (cp.metrics.time_to("conc", 3.0, "below"), "jumps at t = 12 inside"),
    ]
    for metric, match in cases:
        with pytest.raises(cp.SpecError, match=match) as info:
            metric(res, regimen=reg)
        assert "\n" not in str(info.value)
    # a window that ends before the second dose holds no jump
    early = cp.metrics.time_above("conc", 3.0, end=10.0)(res, regimen=reg)
    np.testing.assert_allclose(early.values, np.log(10.0 / 3.0) / 0.2, rtol=1e-10)


def test_a_simulate_result_records_its_jumps_so_metrics_refuse_them_without_regimen():
    """cp.simulate records its regimens' jump times (union over subjects), so a metric on
    its result refuses to read across a bolus without regimen=; infusions do not jump, and
    a result without the record (made by hand) keeps reading between its points."""
    bolus = cp.Regimen([cp.Dose(time=t, amount=DOSE, cmt="central") for t in (0.0, 12.0)])
    infusion = cp.Regimen(
        [cp.Dose(time=t, amount=DOSE, cmt="central", duration=1.0) for t in (0.0, 12.0)]
    )
    times = np.arange(0.0, 25.0, 4.0)  # 10 h and 12 h are not output times
    res = cp.simulate(one_cmt, bolus, times)
    assert res.attrs["jump_times"] == [0.0, 12.0]
    with pytest.raises(cp.SpecError, match="jumps at t = 12 between the result's output times 8"):
        cp.metrics.value_at("conc", 10.0)(res)
    with pytest.raises(cp.SpecError, match="jumps at t = 12 inside"):
        cp.metrics.auc("conc")(res)
    # before the second dose: log-linear between 4 and 8 h, exact for one exponential
    # (round-off, rtol 1e-12)
    np.testing.assert_allclose(
        cp.metrics.value_at("conc", 6.0)(res).values, 10.0 * np.exp(-0.2 * 6.0), rtol=1e-12
    )
    # per-subject regimens: the union of their jumps
    two = cp.simulate(one_cmt, [bolus, infusion], times)
    assert two.attrs["jump_times"] == [0.0, 12.0]
    # infusion only: nothing jumps, value_at reads between the grid points as before
    inf = cp.simulate(one_cmt, infusion, times)
    assert inf.attrs["jump_times"] == []
    assert np.isfinite(cp.metrics.value_at("conc", 10.0)(inf).values).all()
    by_hand = res.copy()
    del by_hand.attrs["jump_times"]
    assert np.isfinite(cp.metrics.value_at("conc", 10.0)(by_hand).values).all()


@pytest.mark.slow
def test_time_to_below_counts_a_fall_from_above_not_a_start_at_zero():
    from scipy.optimize import brentq

    oral = cp.load_model("one_cmt_oral")
    reg = cp.Regimen([cp.Dose(time=0.0, amount=DOSE, cmt="depot")])
    times = np.linspace(0.0, 48.0, 193)  # 0.25 h
    res = cp.simulate(oral, reg, times)
    conc = res["conc"].values[0]
    assert conc[0] == 0.0 and conc.max() > 1.0  # starts at 0, rises above 1 mg/L
    got = float(cp.metrics.time_to("conc", 1.0, "below")(res).values[0])  # was 0.0
    # the same log-linear interpolation in numpy on the first fall (round-off, 1e-12)
    j = int(np.flatnonzero((conc[:-1] > 1.0) & (conc[1:] <= 1.0))[0])
    frac = np.log(conc[j] / 1.0) / np.log(conc[j] / conc[j + 1])
    np.testing.assert_allclose(got, times[j] + frac * 0.25, rtol=1e-12)
    # closed form C = D ka / (V (ka - k)) (e^-kt - e^-ka t): the grid's log-linear crossing
    # is within 1e-3 h of the true one on a 0.25 h grid near 14 h (e^-ka t ~ 1e-9 there)
    ka, k, v = 1.5, 2.8 / 32.0, 32.0
    true_c = lambda t: DOSE * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t)) - 1.0
    assert abs(got - brentq(true_c, 5.0, 48.0)) < 1e-3
    out = cp.sweep(oral, reg, times, {"CL": [2.8]}, {"to": cp.metrics.time_to("conc", 1.0)},
                   progress=False)  # fmt: skip
    np.testing.assert_allclose(out["to"].values, got, rtol=1e-10)
    # never above the threshold: below from the first output time; never falling: +inf
    assert cp.metrics.time_to("conc", 50.0, "below")(res).values[0] == 0.0
    assert cp.metrics.time_to("conc", 1e-9, "below")(res).values[0] == np.inf
