"""Plots of batch results (dose-response, target attainment, Sobol indices, histograms),
drawn on real results of cp.dose_ranging, cp.gsa and cp.sweep."""

from __future__ import annotations

import math

import numpy as np
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
    labels = [line.get_label() for line in ax.get_lines()]
    # one line per regimen x V level (4) plus the target line
    assert labels == [
        "single, V = 5",
        "single, V = 10",
        "daily x3, V = 5",
        "daily x3, V = 10",
        "target >= 100 mg/L*h",
    ]
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


def test_target_attainment_in_percent(table):
    fig = plots.target_attainment(table)  # the only metric with a target: auc
    (ax,) = fig.axes
    assert ax.get_ylabel() == "probability of target attainment [%]"
    assert "auc >= 100 mg/L*h" in ax.get_title()
    assert len(ax.get_lines()) == 4
    y = np.concatenate([line.get_ydata() for line in ax.get_lines()])
    assert y.min() >= 0.0 and y.max() <= 100.0
    rows = table[(table.metric == "auc") & (table.regimen == "single") & (table.V == 5.0)]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), 100 * rows["pta"])
    with pytest.raises(cp.SpecError, match="metric 'cmax' has no target"):
        plots.target_attainment(table, "cmax")


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
