"""Plots of batch results (dose-response, target attainment, Sobol indices, histograms),
drawn on real results of cp.dose_ranging, cp.gsa and cp.sweep."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import cellpkpd as cp
from cellpkpd import plots


@pytest.fixture(scope="module")
def table():
    spec = cp.load_model("one_cmt_iv")
    single = cp.Regimen([cp.Dose(0.0, 1.0, "central")])
    daily = cp.Regimen.repeat(cp.Dose(0.0, 1.0, "central", duration=1.0), interval=24.0, count=3)
    pop = cp.VirtualPopulation(spec, 40, random_effects={"CL": 0.3}, seed=0)
    return cp.dose_ranging(
        spec,
        {"dose": [10.0, 100.0, 1000.0], "regimen": {"single": single, "daily x3": daily},
         "V": [5.0, 10.0]},
        pop,
        np.linspace(0.0, 240.0, 61),
        {"auc": cp.metrics.auc("conc"), "cmax": cp.metrics.cmax("conc")},
        target={"auc": (">=", 100.0)},
    )  # fmt: skip


def test_dose_response_lines_bands_and_labels(table, tmp_path):
    fig = plots.dose_response(table, "auc")
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.get_lines() if line.get_gid() is None]
    # one line per regimen x V level (4), with the dose from which its median meets the
    # target (test_dose_response_reads_off_the_dose_meeting_the_target), plus the target
    assert [lab.split("\n")[0] for lab in labels] == [
        "single, V = 5",
        "single, V = 10",
        "daily x3, V = 5",
        "daily x3, V = 10",
        "target >= 100 mg/L*h",
    ]
    assert all("\ntarget met from " in lab and lab.endswith(" mg") for lab in labels[:4])
    assert len(ax.collections) == 4  # 5-95% bands
    assert ax.get_xlabel() == "dose [mg]" and ax.get_ylabel() == "auc [mg/L*h]"
    assert ax.get_xscale() == "log"  # doses span three decades
    assert ax.get_yscale() == "log"  # AUC is proportional to dose
    line = ax.get_lines()[0]
    rows = table[(table.metric == "auc") & (table.regimen == "single") & (table.V == 5.0)]
    np.testing.assert_allclose(line.get_ydata(), rows["median"])
    np.testing.assert_allclose(line.get_xdata(), rows["dose"])
    fig.savefig(tmp_path / "dose_response.png", dpi=80)
    assert (tmp_path / "dose_response.png").stat().st_size > 10_000


def test_dose_response_reads_off_the_dose_meeting_the_target():
    """A median proportional to dose (dose / 2) meets ">= 100" at 200 exactly on log axes
    (interpolated in log dose and log median); one falling as -dose/10 meets "<= -50" at
    10^2.444 between 100 and 1000 (linear metric axis: linear in the median, log in dose);
    a group that never meets it says so."""
    doses = np.array([10.0, 100.0, 1000.0])

    def table(medians, target):
        rows = [
            {"dose": d, "product": name, "metric": "m", "unit": "u", "median": m,
             "p05": m * 0.9 if m > 0 else m * 1.1, "p95": m * 1.1 if m > 0 else m * 0.9,
             "n": 10, "target": target, "pta": 0.5}
            for name, values in medians.items() for d, m in zip(doses, values, strict=True)
        ]  # fmt: skip
        out = pd.DataFrame(rows)
        out.attrs["dose_unit"] = "mg"
        return out

    up = table({"a": doses / 2, "b": doses / 1000}, ">= 100")
    (ax,) = plots.dose_response(up, "m").axes
    assert ax.get_xscale() == ax.get_yscale() == "log"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [
        "product = a\ntarget met from 200 mg",
        "product = b\ntarget not met",
        "target >= 100 u",
    ]
    (marker,) = [ln for ln in ax.get_lines() if ln.get_gid() == "target dose"]
    np.testing.assert_allclose(marker.get_xdata(), [200.0, 200.0], rtol=1e-12)
    assert marker.get_ydata()[1] == 100.0
    assert [t.get_text() for t in ax.texts] == ["200"]
    down = table({"a": -doses / 10}, "<= -50")
    (ax,) = plots.dose_response(down, "m", log_y=False).axes
    expected = 100.0 * 10 ** (40.0 / 90.0)  # -10 -> -100 crosses -50 at 4/9 of the way
    (marker,) = [ln for ln in ax.get_lines() if ln.get_gid() == "target dose"]
    np.testing.assert_allclose(marker.get_xdata()[0], expected, rtol=1e-12)
    assert ax.get_legend().get_texts()[0].get_text() == "median\ntarget met from 278 mg"


def test_dose_response_linear_axes_when_doses_are_close(table):
    rows = table[table.dose <= 100.0]
    fig = plots.dose_response(rows, "cmax", by=["regimen"], log_y=False, dose_unit="mg")
    (ax,) = fig.axes
    assert ax.get_xscale() == "linear" and ax.get_yscale() == "linear"  # 10-100: one decade
    assert ax.get_ylabel() == "cmax [mg/L]"
    # 1.5 decades (30x, e.g. 1e7-3e8 cells) already get a log dose axis
    wide = rows.assign(dose=rows.dose.map({10.0: 1e7, 100.0: 3e8}))
    assert plots.dose_response(wide, "cmax", by=["regimen"]).axes[0].get_xscale() == "log"
    with pytest.raises(cp.SpecError, match="pick metric="):
        plots.dose_response(table)
    with pytest.raises(cp.SpecError, match="metric 'tmax' not in the table"):
        plots.dose_response(table, "tmax")


def _curves(ax):
    """The PTA lines (not the target line nor the dose markers)."""
    return [ln for ln in ax.get_lines() if ln.get_gid() is None and "PTA" not in ln.get_label()]


def test_target_attainment_in_percent(table):
    fig = plots.target_attainment(table)  # the only metric with a target: auc
    (ax,) = fig.axes
    assert ax.get_ylabel() == "probability of target attainment [%]"
    assert "auc >= 100 mg/L*h" in ax.get_title()
    assert len(_curves(ax)) == 4
    y = np.concatenate([line.get_ydata() for line in _curves(ax)])
    assert y.min() >= 0.0 and y.max() <= 100.0
    rows = table[(table.metric == "auc") & (table.regimen == "single") & (table.V == 5.0)]
    np.testing.assert_allclose(_curves(ax)[0].get_ydata(), 100 * rows["pta"])
    with pytest.raises(cp.SpecError, match="metric 'cmax' has no target"):
        plots.target_attainment(table, "cmax")


def _pta_table(pta, doses=(1e7, 2e7, 4e7, 1e8, 3e8)):
    """A cp.dose_ranging-like table: one metric with a target, PTA per dose and arm."""
    rows = [
        {"dose": d, "viability": v, "metric": "suppression", "unit": "%", "median": 50.0,
         "p05": 20.0, "p95": 80.0, "n": 100, "target": ">= 50", "pta": p}
        for v, values in pta.items() for d, p in zip(doses, values, strict=True)
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    table.attrs["dose_unit"] = "cells"
    return table


def test_target_attainment_marks_the_lowest_dose_reaching_the_target():
    """PTA 0.6 at 4e7 and 1.0 at 1e8 cells: 90 % is reached 3/4 of the way from 4e7 to
    1e8 in log(dose) on the log dose axis (4e7 x 2.5^0.75 = 7.95e7), linearly on a linear
    one (8.5e7); an arm that stays under 90 % says so in the legend; every dose given is
    a tick label on the log axis (notebook 05's doses)."""
    table = _pta_table({0.95: [0.0, 0.2, 0.6, 1.0, 1.0], 0.7: [0.0, 0.1, 0.3, 0.5, 0.8]})
    (ax,) = plots.target_attainment(table).axes
    assert ax.get_xscale() == "log"
    ax.figure.canvas.draw()
    lo, hi = ax.get_xlim()
    ticks = zip(ax.get_xticks(), ax.get_xticklabels(), strict=True)
    assert [t.get_text() for x, t in ticks if lo <= x <= hi] == ["1e7", "2e7", "4e7", "1e8", "3e8"]
    (level,) = [ln for ln in ax.get_lines() if ln.get_label() == "target PTA 90%"]
    assert set(level.get_ydata()) == {90.0}
    (marker,) = [ln for ln in ax.get_lines() if ln.get_gid() == "target dose"]
    dose = 4e7 * 2.5**0.75
    np.testing.assert_allclose(marker.get_xdata(), [dose, dose], rtol=1e-12)
    assert marker.get_ydata()[1] == 90.0
    assert [t.get_text() for t in ax.texts] == ["7.95e7"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [
        "viability = 0.95: 90% from 7.95e7 cells",
        "viability = 0.7: 90% not reached (highest 80%)",
        "target PTA 90%",
    ]
    (ax,) = plots.target_attainment(table, log_x=False, target=0.8).axes
    markers = [ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_gid() == "target dose"]
    # 0.95: 0.6 -> 1.0 between 4e7 and 1e8, half way; 0.7: 0.8 reached at 3e8 itself
    np.testing.assert_allclose(markers, [7e7, 3e8], rtol=1e-12)


def test_target_attainment_without_target_line_and_bad_target():
    table = _pta_table({0.9: [0.95, 1.0, 1.0, 1.0, 1.0]})
    (ax,) = plots.target_attainment(table).axes
    # reached at the lowest dose already: the marker sits there
    (marker,) = [ln for ln in ax.get_lines() if ln.get_gid() == "target dose"]
    assert marker.get_xdata()[0] == 1e7
    assert ax.get_legend().get_texts()[0].get_text() == "PTA: 90% from 1e7 cells"
    (ax,) = plots.target_attainment(table, target=None).axes
    assert len(ax.get_lines()) == 1 and not ax.texts and ax.get_legend() is None
    with pytest.raises(cp.SpecError, match=r"target = 90; expected a probability in \(0, 1\]"):
        plots.target_attainment(table, target=90)


def test_sobol_bars_with_confidence_intervals():
    def ishigami(x):
        return np.sin(x[:, 0]) + 7 * np.sin(x[:, 1]) ** 2 + 0.1 * x[:, 2] ** 4 * np.sin(x[:, 0])

    box = {name: (-math.pi, math.pi) for name in ("x1", "x2", "x3")}
    gsa = cp.gsa.sobol_function(ishigami, box, n=512, seed=0)
    fig = plots.sobol(gsa)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x1", "x2", "x3"]
    assert len(ax.patches) == 6  # S1 and ST per input
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights[:3], gsa["S1"])
    np.testing.assert_allclose(heights[3:], gsa["ST"])
    assert ax.get_ylabel() == "Sobol index [1]"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["first order S1", "total ST"]
    assert len(ax.containers) == 4  # two bar containers and two error-bar containers
    assert all(t.get_rotation() == 0 for t in ax.get_xticklabels())
    # long parameter names are slanted so that they do not run into each other
    long = gsa.assign(parameter=["k_death_target", "inflammation", "E_target_max"])
    (ax,) = plots.sobol(long).axes
    assert [t.get_text() for t in ax.get_xticklabels()] == list(long["parameter"])
    assert all(t.get_rotation() == 30 for t in ax.get_xticklabels())


def test_metric_histograms_of_a_sweep():
    spec = cp.load_model("one_cmt_iv")
    cl = np.linspace(1.0, 4.0, 50)
    ds = cp.sweep(
        spec, cp.Regimen([cp.Dose(0.0, 100.0, "central")]), np.linspace(0.0, 48.0, 13),
        {"CL": cl}, {"auc": cp.metrics.auc("conc"), "tmax": cp.metrics.tmax("conc")},
        progress=False,
    )  # fmt: skip
    fig = plots.metric_histograms(ds, units={"auc": "mg/L*h"})
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_xlabel() for ax in axes] == ["auc [mg/L*h]", "tmax [h]"]
    counts = sum(p.get_height() for p in axes[0].patches)
    assert counts == 50
    # tmax of a bolus is 0 h in every sample: the panel says so instead of one bare bar
    assert [t.get_text() for t in axes[1].texts] == ["all 50 samples = 0"]
    assert len(axes[0].texts) == 0
