"""Issue 18's figure review, measured: each plotting function, drawn on a library model's
results and rendered to PNG, is checked for what a reader sees.

- every text (titles, axis and tick labels, legend entries, keys) lies inside the figure;
- no two tick labels of an axis overlap, nor two titles;
- every line named in a legend has a point inside its axes' view, or its entry says it
  lies below the axis;
- no two named lines of one axes coincide (closer than a pixel everywhere) unless their
  legend entry says so;
- text is readable at the width a notebook page gives a figure (900 px): at least 6 px high
  once the figure is scaled to that width.

The fits of gof, vpc and posterior are built by hand (fast); cp.explore's figures are
driven in test_explore.py."""

from __future__ import annotations

import io
import itertools

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.legend import Legend
from matplotlib.lines import Line2D

import cellpkpd as cp

#: width [px] of a notebook page's output column in the docs site at 1280 px (issue 18)
PAGE_PX = 900.0
#: smallest readable text height [px] on the page
MIN_TEXT_PX = 6.0
DPI = 100.0


def _tick_texts(axis):
    """(position along the axis, label) of the tick labels drawn: ticks inside the view."""
    lo, hi = sorted(axis.get_view_interval())
    out = []
    for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
        loc = tick.get_loc()
        if loc is None or not lo <= loc <= hi:
            continue
        out += [(loc, t) for t in (tick.label1, tick.label2) if t.get_visible() and t.get_text()]
    return out


def _texts(fig):
    """Every text a reader sees: visible, not empty, and for tick labels inside the view."""
    ticks = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
             for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]
             for t in (tick.label1, tick.label2)}  # fmt: skip
    out = [
        t
        for t in fig.findobj(matplotlib.text.Text)
        if id(t) not in ticks and t.get_visible() and t.get_text().strip()
    ]
    for ax in fig.axes:
        if ax.get_visible():
            out += [t for axis in (ax.xaxis, ax.yaxis) for _, t in _tick_texts(axis)]
    return out


def _overlap(a, b, tol=0.5):
    return min(a.x1, b.x1) - max(a.x0, b.x0) > tol and min(a.y1, b.y1) - max(a.y0, b.y0) > tol


def _labels_overlap(ta, tb, renderer) -> bool:
    """Two tick labels overlap: their boxes do, or for labels turned by an angle theta,
    their baselines are closer than the text height across the text's direction."""
    angle = np.deg2rad(ta.get_rotation())
    ba, bb = ta.get_window_extent(renderer), tb.get_window_extent(renderer)
    if np.isclose(np.sin(2 * angle), 0.0):  # 0 or 90 degrees: the boxes are the glyphs'
        return _overlap(ba, bb)
    (xa, ya), (xb, yb) = (t.get_transform().transform(t.get_position()) for t in (ta, tb))
    across = abs(-(xb - xa) * np.sin(angle) + (yb - ya) * np.cos(angle))
    return across < 0.9 * ta.get_fontsize() * DPI / 72.0


def _legend_lines(fig):
    """(axes, line, label) for each Line2D named in a legend of the figure or its axes."""
    if not fig.findobj(Legend):
        return []
    named = []
    for ax in fig.axes:
        handles, labels = ax.get_legend_handles_labels()
        for h, lab in zip(handles, labels, strict=True):
            if isinstance(h, Line2D) and h.axes is ax:
                named.append((ax, h, lab))
    return named


def _pixels(line) -> np.ndarray:
    """The line's points on the canvas [px] (NaN where undefined or on a log axis <= 0)."""
    xy = np.column_stack([np.asarray(v, dtype=float) for v in line.get_data()])
    with np.errstate(all="ignore"):
        return line.get_transform().transform(xy)


def _inside(ax, line) -> bool:
    p = _pixels(line)
    b = ax.bbox
    ok = np.isfinite(p).all(1)
    p = p[ok]
    return bool(
        ((p[:, 0] >= b.x0 - 1) & (p[:, 0] <= b.x1 + 1)
         & (p[:, 1] >= b.y0 - 1) & (p[:, 1] <= b.y1 + 1)).any()
    )  # fmt: skip


def _coincide(a, b) -> bool:
    """Whether two lines are drawn within a pixel of each other at every point."""
    pa, pb = _pixels(a), _pixels(b)
    if pa.shape != pb.shape:
        return False
    ok = np.isfinite(pa).all(1) & np.isfinite(pb).all(1)
    return bool(ok.sum() > 1 and np.abs(pa[ok] - pb[ok]).max() < 1.0)


def review(fig) -> list[str]:
    """What a reader would stumble on in `fig`, as one line each (empty: nothing)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)  # renders: the positions below are the PNG's
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    problems = []
    scale = min(1.0, PAGE_PX / box.width)
    for t in _texts(fig):
        e = t.get_window_extent(renderer)
        if e.x0 < box.x0 - 1 or e.x1 > box.x1 + 1 or e.y0 < box.y0 - 1 or e.y1 > box.y1 + 1:
            problems.append(f"text {t.get_text()[:40]!r} leaves the figure")
        px = t.get_fontsize() * DPI / 72.0 * scale
        if px < MIN_TEXT_PX:
            problems.append(f"text {t.get_text()[:40]!r} is {px:.1f} px high on the page")
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for axis in (ax.xaxis, ax.yaxis):
            labs = [t for _, t in _tick_texts(axis)]
            for ta, tb in itertools.combinations(labs, 2):
                if _labels_overlap(ta, tb, renderer):
                    problems.append(f"tick labels {ta.get_text()!r} and {tb.get_text()!r} overlap")
        titles = [t for t in (ax.title, ax._left_title, ax._right_title) if t.get_text()]
        if fig._suptitle is not None and fig._suptitle.get_text():
            titles.append(fig._suptitle)
        for a, b in itertools.combinations(titles, 2):
            if _overlap(a.get_window_extent(renderer), b.get_window_extent(renderer)):
                problems.append(f"titles {a.get_text()[:30]!r} and {b.get_text()[:30]!r} overlap")
    for a, b in itertools.combinations([t for t in fig.texts if t.get_text().strip()], 2):
        if _overlap(a.get_window_extent(renderer), b.get_window_extent(renderer)):
            problems.append(f"texts {a.get_text()[:30]!r} and {b.get_text()[:30]!r} overlap")
    named = _legend_lines(fig)
    for ax, line, lab in named:
        if not _inside(ax, line) and "below the axis" not in lab:
            problems.append(f"legend entry {lab!r} has no point inside its axes")
    for (ax, a, la), (bx, b, lb) in itertools.combinations(named, 2):
        if ax is bx and _coincide(a, b) and "same" not in la + lb:
            problems.append(f"lines {la!r} and {lb!r} coincide")
    return sorted(set(problems))


# ------------------------------------------------------------------ the figures
@pytest.fixture(scope="module")
def pbk_mouse():
    spec = cp.load_model("msc_pbk")
    times = np.concatenate([[0.0], np.geomspace(0.01, 168.0, 60)])
    return spec, cp.simulate(spec, cp.Regimen([cp.Dose(0.0, 1e6, cmt="venous")]), times)


@pytest.fixture(scope="module")
def pbk_human():
    """Notebook 02's patient: 2e6 cells/kg IV, one week on a log time grid."""
    spec = cp.load_model("msc_pbk", species="human")
    times = np.concatenate([[0.0], np.geomspace(0.01, 168.0, 60)])
    reg = cp.Regimen([cp.Dose(0.0, 2e6, per="kg", route="iv")])
    return spec, cp.simulate(spec, reg, times)


def test_the_review_finds_what_it_looks_for():
    """The review is not blind: a title outside the figure, overlapping tick labels, a
    legend entry out of view and two coinciding lines are each reported."""
    from cellpkpd.plots._common import new_figure

    fig = new_figure(4.0, 3.0)
    ax = fig.subplots()
    x = np.linspace(0.0, 1.0, 11)
    ax.plot(x, x, label="a")
    ax.plot(x, x, label="b")  # on top of a
    ax.plot(x, x + 50.0, label="c")  # above the view
    ax.set_ylim(0.0, 1.0)
    ax.set_xticks(np.linspace(0.0, 1.0, 30))  # crowded
    ax.legend()
    fig.text(1.2, 0.5, "outside")
    found = "\n".join(review(fig))
    assert "'outside' leaves the figure" in found
    assert "tick labels" in found and "overlap" in found
    assert "legend entry 'c' has no point inside its axes" in found
    assert "lines 'a' and 'b' coincide" in found


def test_timecourse_figures(pbk_mouse):
    spec, res = pbk_mouse
    two = cp.load_model("two_cmt_iv")
    reg = cp.Regimen.repeat(cp.Dose(0.0, 100.0, cmt="central", duration=1.0), 24.0, 2)
    cl = 2.0 * np.exp(0.3 * np.random.default_rng(0).standard_normal(40))
    pop = cp.simulate(two, reg, np.linspace(0.0, 48.0, 97), params={"CL": cl})
    three = cp.simulate(two, [reg] * 3, np.linspace(0.0, 48.0, 97), params={"CL": [1.0, 2.0, 4.0]})
    figures = {
        "bands, log": cp.plots.timecourse(pop, ["conc"], spec=two, log=True),
        "three subjects": cp.plots.timecourse(three, ["conc", "peripheral"], spec=two),
        "msc 2x2 log": cp.plots.timecourse(
            res, ["frac_lung", "frac_liver", "frac_blood", "frac_target"], spec=spec, log=True
        ),
        "log time": cp.plots.timecourse(res, ["frac_lung"], spec=spec, log=True, log_time=True),
    }
    found = {k: review(f) for k, f in figures.items()}
    assert found == {k: [] for k in figures}


@pytest.mark.parametrize("kind", ["lines", "stacked"])
def test_biodistribution_figures(pbk_mouse, pbk_human, kind):
    found = {}
    for name, (spec, res) in {"mouse": pbk_mouse, "human": pbk_human}.items():
        fig = cp.plots.biodistribution(res, spec, kind=kind, log_time=True)
        found[name] = review(fig)
    assert found == {"mouse": [], "human": []}


@pytest.mark.parametrize("name", cp.list_models())
def test_diagrams(name):
    """Readable at page width, or (msc_pbk: 26 states, 18 inches wide) with its flows
    listed beside it: the library page's flow table names each rate and its tag."""
    from pathlib import Path

    from cellpkpd.plots._diagram import rate_tags

    spec = cp.load_model(name)
    fig = cp.plots.diagram(spec)
    found = review(fig)
    if fig.get_figwidth() * DPI > 1.5 * PAGE_PX:
        found = [p for p in found if not p.endswith("high on the page")]
        page = Path(__file__).resolve().parents[2] / "docs" / "library" / f"{name}.md"
        text = page.read_text(encoding="utf-8")
        assert "| diagram | from | to | rate |" in text
        rows = [line for line in text.splitlines() if line.startswith("| r")]
        for rate, tag in rate_tags(spec).items():
            assert any(r.startswith(f"| {tag} |") and f"`{rate}`" in r for r in rows), tag
    assert found == []


def test_biodistribution_names_an_organ_below_the_axis():
    """An organ whose curve lies wholly under the log axis (5 decades below the largest)
    is named in the legend with its peak and "below the axis"; the others by name."""
    import xarray as xr

    t = np.geomspace(0.01, 100.0, 30)
    res = xr.Dataset(
        {
            "frac_lung": (("subject", "time"), [0.9 * np.exp(-0.01 * t)], {"unit": "1"}),
            "frac_liver": (("subject", "time"), [0.01 * (1 - np.exp(-t))], {"unit": "1"}),
            "frac_blood": (("subject", "time"), [4e-8 * np.exp(-t)], {"unit": "1"}),
        },
        coords={"time": ("time", t, {"unit": "h"})},
    )
    fig = cp.plots.biodistribution(res, log_time=True)
    labels = [x.get_text() for x in fig.axes[0].get_legend().get_texts()]
    # 4e-8 x 100 % x exp(-0.01) = 3.96e-6 % at the first time, under the 9e-4 % floor
    assert labels == ["lung", "liver", "blood (peak 4e-6: below the axis)"]
    assert review(fig) == []


def _table():
    """A dose-ranging table as cp.dose_ranging writes it (three products, seven doses per
    kg, a target on the largest biomarker fall), without running the model."""
    doses = np.array([1e6, 3e6, 1e7, 2e7, 3e7, 5e7, 1e8])
    rows = []
    for i, (product, d50) in enumerate(
        {"fresh": 2.5e7, "70% viable": 3.2e7, "thawed": 2.9e7}.items()
    ):
        for j, d in enumerate(doses):
            med = 60.0 * d / (d + d50)
            rows.append(
                {"arm": 7 * i + j, "dose": d, "regimen": "single", "product": product,
                 "metric": "fall", "unit": "%", "median": med, "p05": 0.5 * med,
                 "p95": 1.3 * med, "n": 200, "n_failed": 0, "target": ">= 20",
                 "pta": float(np.clip((d / d50) ** 1.5 / (1 + (d / d50) ** 1.5) * 1.6, 0, 1))}
            )  # fmt: skip
    table = pd.DataFrame(rows)
    table.attrs.update(model="msc_pkpd_host", dose_unit="cells/kg", time_unit="h")
    return table


def _sweep():
    """A cp.sweep-like result: 400 samples of three metrics spanning decades, units and
    one constant metric (whose panel says so)."""
    import xarray as xr

    rng = np.random.default_rng(0)
    n = 400
    return xr.Dataset(
        {
            "auc": ("sample", np.exp(rng.normal(np.log(3e4), 1.0, n)),
                    {"unit": "cells*h", "metric": "auc"}),
            "cmax": ("sample", rng.uniform(0.5, 0.9, n), {"unit": "1", "metric": "cmax"}),
            "tmax": ("sample", np.full(n, 0.25), {"unit": "h", "metric": "tmax"}),
            "status": ("sample", np.zeros(n, dtype=np.int32)),
        },
        coords={"sample": np.arange(n)},
    )  # fmt: skip


def test_batch_figures():
    table = _table()
    indices = pd.DataFrame(
        {"metric": "auc", "parameter": ["diameter", "inflammation", "E_target_max",
                                        "k_death_target", "k_death_lung"],
         "S1": [0.01, 0.08, 0.05, 0.26, 0.36], "S1_conf": [0.04, 0.11, 0.10, 0.20, 0.26],
         "ST": [0.02, 0.12, 0.18, 0.32, 0.43], "ST_conf": [0.02, 0.11, 0.13, 0.24, 0.27]}
    )  # fmt: skip
    figures = {
        "dose_response": cp.plots.dose_response(table, "fall", by=["product"], log_y=False),
        "target_attainment": cp.plots.target_attainment(table, "fall", by=["product"], target=0.9),
        "sobol": cp.plots.sobol(indices),
        "metric_histograms": cp.plots.metric_histograms(_sweep()),
    }
    found = {k: review(f) for k, f in figures.items()}
    assert found == {k: [] for k in figures}


def test_posterior_figure_is_shown_once():
    """cp.plots.posterior draws with ArviZ (pyplot): the figure is closed in pyplot, so
    Jupyter's inline backend does not show it at the end of the cell besides the returned
    value (notebook 03 showed the trace plot twice); it still renders."""
    az = pytest.importorskip("arviz")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    post = {k: rng.normal(v, 0.05 * v, (2, 30)) for k, v in {"CL": 2.0, "V": 10.0}.items()}
    post["omega_CL"] = rng.normal(0.3, 0.02, (2, 30))
    idata = az.from_dict(posterior=post)
    idata.posterior.attrs.update(model="one_cmt_iv", method="svi")
    before = set(plt.get_fignums())
    fig = cp.plots.posterior(idata)
    assert set(plt.get_fignums()) == before
    assert "CL [L/h]" in [ax.get_title() for ax in fig.axes]
    assert review(fig) == []


def test_fit_figures():
    """gof and vpc on a biodistribution fit built by hand (two organs, one censored record;
    test_plots._two_organ_fit), the replicates drawn around the observations."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("test_plots.py")
    spec = importlib.util.spec_from_file_location("plots_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    idata, obs, _, _, _, _ = module._two_organ_fit()
    rng = np.random.default_rng(1)
    simulated = obs[None] * np.exp(0.4 * rng.standard_normal((50, *obs.shape)))
    figures = {
        "gof": cp.plots.gof(idata, log=True, unit="copies/mg", title="two organs"),
        "vpc": cp.plots.vpc(idata, simulated=simulated, log=True, unit="copies/mg"),
    }
    found = {k: review(f) for k, f in figures.items()}
    assert found == {k: [] for k in figures}
