"""Metrics (`cp.metrics`) against closed forms of the one-compartment model, on the device
(inside `cp.sweep`) and on `cp.simulate` results."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import ROOT, bolus_amount, infusion_amount

import cellpkpd as cp
from cellpkpd.metrics import integral_name
from cellpkpd.sweeps import augment_spec

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
    table = cp.metrics.evaluate(one_cmt, m, bolus, TIMES, params={"CL": CL, "V": V})
    assert list(table.index) == [0, 1, 2]
    np.testing.assert_array_equal(table["auc"].to_numpy(), out["auc"].values)


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


@pytest.mark.slow
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
