"""cp.plots: every plot drawn on real results (library-model simulations, a fit of the
bundled theophylline data), checking that the axes carry the expected lines, labels and
units, and that the plotted numbers are the ones of the result."""

from __future__ import annotations

import copy
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.patches import FancyArrowPatch

import cellpkpd as cp
from cellpkpd.plots._diagram import rate_tags

TIMES = np.linspace(0.0, 48.0, 97)


def _visible(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


@pytest.fixture(scope="module")
def two_cmt():
    spec = cp.load_model("two_cmt_iv")
    reg = cp.Regimen.repeat(
        cp.Dose(0.0, 100.0, cmt="central", duration=1.0), interval=24.0, count=2
    )
    rng = np.random.default_rng(0)
    cl = 2.0 * np.exp(0.3 * rng.standard_normal(40))
    return spec, cp.simulate(spec, reg, TIMES, params={"CL": cl})


@pytest.fixture(scope="module")
def pbk():
    spec = cp.load_model("msc_pbk")
    times = np.concatenate([[0.0], np.geomspace(0.01, 168.0, 60)])
    return spec, cp.simulate(spec, cp.Regimen([cp.Dose(0.0, 1e6, cmt="venous")]), times)


def test_timecourse_lines_carry_each_subject_and_units(two_cmt):
    spec, res = two_cmt
    sub = res.isel(subject=slice(0, 3))
    fig = cp.plots.timecourse(sub, ["conc", "central"], spec=spec)
    axes = _visible(fig)
    assert [ax.get_ylabel() for ax in axes] == ["conc [mg/L]", "central [mg]"]
    assert axes[-1].get_xlabel() == "time [h]"
    assert len(axes[0].get_lines()) == 3
    # the drawn curves are the simulated values (exact copies)
    np.testing.assert_array_equal(axes[0].get_lines()[1].get_ydata(), sub["conc"].values[1])
    assert axes[0].get_title(loc="left") == spec.observations["conc"].description
    assert axes[0].get_legend().get_texts()[0].get_text() == "subject 0"
    # one name as a plain string is one panel (not one per character)
    one = _visible(cp.plots.timecourse(sub, "conc", spec=spec))
    assert [ax.get_ylabel() for ax in one] == ["conc [mg/L]"]


def test_timecourse_bands_median_and_percentiles_log(two_cmt):
    spec, res = two_cmt
    fig = cp.plots.timecourse(res, ["conc", "central", "peripheral", "conc"], spec=spec, log=True)
    axes = _visible(fig)
    assert len(axes) == 4  # 4 panels on a 2 x 2 grid
    ax = axes[0]
    assert ax.get_yscale() == "log"
    (median,) = ax.get_lines()
    np.testing.assert_allclose(median.get_ydata(), np.median(res["conc"].values, axis=0))
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2  # 5-95 and 25-75
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["5-95th percentile", "25-75th percentile", "median"]
    # the 5-95 band's upper edge is the 95th percentile at each time
    upper = bands[0].get_paths()[0].vertices[:, 1]
    assert np.isclose(upper.max(), np.percentile(res["conc"].values, 95, axis=0).max())


def test_timecourse_bad_input(two_cmt):
    _, res = two_cmt
    with pytest.raises(cp.SpecError, match="'AUC' is not a variable"):
        cp.plots.timecourse(res, ["AUC"])
    with pytest.raises(cp.SpecError, match="labels has 1 entries; expected 40"):
        cp.plots.timecourse(res, ["conc"], labels=["a"], bands=False)


def _synthetic(times, **kw):
    """A cp.simulate-like result: one subject, the given (values, unit) per variable."""
    import xarray as xr

    return xr.Dataset(
        {k: (("subject", "time"), np.atleast_2d(v), {"unit": u}) for k, (v, u) in kw.items()},
        coords={"subject": [0], "time": ("time", np.asarray(times, float), {"unit": "h"})},
        attrs={"model": "synthetic"},
    )


def test_timecourse_log_time_drops_times_up_to_zero_quietly():
    times = np.array([-1.0, 0.0, 0.01, 0.1, 1.0, 10.0, 100.0])
    res = _synthetic(times, conc=(np.exp(-0.05 * times), "mg/L"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for the dropped times
        fig = cp.plots.timecourse(res, "conc", log_time=True, log=True)
        fig.canvas.draw()
    (ax,) = _visible(fig)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_xdata(), times[2:])
    np.testing.assert_array_equal(line.get_ydata(), np.exp(-0.05 * times[2:]))
    # the default keeps every time on a linear axis
    (line,) = _visible(cp.plots.timecourse(res, "conc"))[0].get_lines()
    assert line.get_xdata().size == times.size
    with pytest.raises(cp.SpecError, match=r"^timecourse: log_time=True needs times > 0"):
        cp.plots.timecourse(res.isel(time=[0, 1]), "conc", log_time=True)


def test_fractions_of_the_dose_in_percent_in_timecourse_and_biodistribution():
    """A frac_* output (unit 1) reads % of dose in timecourse, 100 x the fraction, the
    numbers biodistribution draws."""
    times = np.linspace(0.0, 24.0, 7)
    res = _synthetic(
        times, frac_lung=(0.9 * np.exp(-0.1 * times), "1"), lung=(9e5 * np.exp(-times), "cells")
    )
    panels = _visible(cp.plots.timecourse(res, ["frac_lung", "lung"]))
    assert [ax.get_ylabel() for ax in panels] == ["frac_lung [% of dose]", "lung [cells]"]
    percent = panels[0].get_lines()[0].get_ydata()
    np.testing.assert_allclose(percent, 90.0 * np.exp(-0.1 * times))
    np.testing.assert_array_equal(panels[1].get_lines()[0].get_ydata(), res["lung"].values[0])
    (bio,) = cp.plots.biodistribution(res).axes
    np.testing.assert_array_equal(bio.get_lines()[0].get_ydata(), percent)
    assert bio.get_ylabel() == "fraction of dose [%]"


def test_timecourse_long_panel_titles_fit_their_panel(pbk):
    """msc_pbk's descriptions run to 70 characters: on a 2 x 2 grid they are wrapped, not
    cut, and each line fits the width of its panel."""
    spec, res = pbk
    names = ["frac_lung", "frac_liver", "frac_blood", "frac_target"]
    fig = cp.plots.timecourse(res, names, spec=spec, log=True)
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    for ax, name in zip(_visible(fig), names, strict=True):
        title = ax._left_title  # timecourse writes the description at the left
        assert " ".join(title.get_text().split()) == spec.observations[name].description
        assert title.get_window_extent(renderer).width <= ax.get_window_extent(renderer).width


def _labels(axis):
    """The major tick labels inside the axis's range, as drawn."""
    lo, hi = sorted(axis.get_view_interval())
    ticks = zip(axis.get_majorticklocs(), axis.get_ticklabels(), strict=True)
    return [t.get_text() for x, t in ticks if lo <= x <= hi]


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        # at most two decades: 1, 2, 5 x 10^k, all as mantissa and exponent
        (1.2e7, 2.4e8, ["1e7", "2e7", "5e7", "1e8", "2e8"]),
        # plain numbers where every label is between 1e-3 and 1e4
        (0.012, 0.6, ["0.01", "0.02", "0.05", "0.1", "0.2", "0.5"]),
        # more than two decades: powers of ten, one style for all (not 0.0001 beside 1e-05)
        (2e-5, 0.6, ["1e-4", "1e-3", "1e-2", "1e-1"]),
        (300.0, 5e5, ["1e3", "1e4", "1e5"]),
    ],
)
def test_log_axis_labels_in_one_style(low, high, expected):
    """The axis runs from low / 1.5 to high x 1.5 (log_axis's margin)."""
    from cellpkpd.plots._common import log_axis, new_figure

    fig = new_figure(5.0, 4.0)
    ax = fig.subplots()
    ax.plot([1.0, 2.0], [low, high])
    log_axis(ax, np.array([low, high]))
    fig.canvas.draw()
    assert _labels(ax.yaxis) == expected


def test_biodistribution_fraction_of_dose_per_organ(pbk):
    spec, res = pbk
    fig = cp.plots.biodistribution(res, spec, log_time=True)
    (ax,) = fig.axes
    assert ax.get_ylabel() == "fraction of dose [%]"
    assert ax.get_xlabel() == "time [h]"
    assert ax.get_xscale() == "log"
    # lung (~90 %) and blood (< 0.01 %) span decades: the fraction axis is logarithmic
    assert ax.get_yscale() == "log"
    frac = [v for v in res.data_vars if v.startswith("frac_")]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert len(lines) == len(frac) == 9
    t = res["time"].values
    np.testing.assert_allclose(lines["lung"].get_ydata(), 100 * res["frac_lung"].values[0][t > 0])
    np.testing.assert_allclose(lines["bone marrow"].get_xdata(), t[t > 0])


def _area_inside(ax, collection):
    """Area [px^2] of a filled collection (a stacked area) inside its axes, as drawn."""
    from matplotlib.path import Path

    area = 0.0
    for path in collection.get_paths():
        shown = Path(ax.transData.transform(path.vertices), path.codes).clip_to_bbox(ax.bbox)
        for x, y in (poly.T for poly in shown.to_polygons()):
            area += 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    return area


@pytest.mark.parametrize("log_time", [False, True])
def test_biodistribution_stacked_shows_every_organ(pbk, log_time):
    """kind="stacked": the lung holds ~90 % of the dose and the other organs 1e-6 to
    2e-4 of it, so on one linear axis only the lung could be seen (the others' areas were
    under a pixel high). Every organ's area must cover at least 200 px^2 (e.g. 2 px x
    100 px at 100 dpi) in some panel."""
    spec, res = pbk
    fig = cp.plots.biodistribution(res, spec, kind="stacked", log_time=log_time)
    fig.canvas.draw()
    area: dict[str, float] = {}
    for ax in fig.axes:
        assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0.0
        assert ax.get_ylabel() == "fraction of dose [%]"
        for c in ax.collections:
            area[c.get_label()] = max(area.get(c.get_label(), 0.0), _area_inside(ax, c))
    organs = [v[5:].replace("_", " ") for v in res.data_vars if v.startswith("frac_")]
    assert sorted(area) == sorted(organs)
    small = {o: round(a) for o, a in area.items() if a < 200.0}
    assert not small, f"organs that cannot be seen: {small}"
    # the first panel stacks every organ to the total in % of the dose at each time
    top = fig.axes[0].collections
    assert len(top) == 9
    t = res["time"].values
    keep = t > 0 if log_time else np.ones(t.size, bool)
    total = 100 * sum(res[f"frac_{o.replace(' ', '_')}"].values[0] for o in organs)[keep]
    upper = np.concatenate([c.get_paths()[0].vertices[:, 1] for c in top])
    assert np.isclose(upper.max(), total.max())


def test_biodistribution_stacked_and_amounts(pbk):
    spec, res = pbk
    fig = cp.plots.biodistribution(res, spec, kind="stacked", percent=False)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "fraction of dose [1]"
    assert len(ax.collections) == 9
    # states are amounts [cells]: they need the dose to become fractions
    with pytest.raises(cp.SpecError, match="pass dose="):
        cp.plots.biodistribution(res, spec, organs=["lung", "liver"])
    fig = cp.plots.biodistribution(res, spec, organs=["lung", "liver"], dose=1e6, log=False)
    lung = fig.axes[0].get_lines()[0].get_ydata()
    np.testing.assert_allclose(lung, 100 * res["lung"].values[0] / 1e6)
    with pytest.raises(cp.SpecError, match="kind"):
        cp.plots.biodistribution(res, kind="pie")


def test_diagram_msc_pbk_boxes_arrows_and_key():
    spec = cp.load_model("msc_pbk")
    fig = cp.plots.diagram(spec)
    ax = fig.axes[0]
    texts = {t.get_text(): t for t in ax.texts}
    assert set(spec.states) <= set(texts)
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == len(spec.flows) + len(spec.dosing)
    x = {s: texts[s].get_position()[0] for s in spec.states}
    # the dose enters venous blood on the left; flows run venous -> lung -> arterial ->
    # organs -> dead cells -> cleared
    assert x["venous"] < x["lung"] < x["arterial"] < x["liver"] < x["dead_spleen"] < x["cleared"]
    key = "\n".join(t.get_text() for t in fig.texts)
    assert "E_lung * cardiac_output / volume_venous_blood" in key
    # the key's tags are the ones the library page's flow table lists
    tags = rate_tags(spec)
    assert len(tags) > 10
    assert all(f"{tag} = {rate}" in key for rate, tag in tags.items())
    assert "k_rel" in texts  # short rates are written on the arrows
    assert "1/h" in fig.get_suptitle()


@pytest.mark.parametrize("name", ["msc_pbk", "msc_pkpd_host", "two_cmt_iv"])
def test_diagram_rate_labels_stay_off_the_boxes(name):
    """Arrows bend round the boxes they skip: no rate label sits on a state's box (it
    used to cover 'lung' in msc_pbk, where venous -> arterial passes the lung)."""
    spec = cp.load_model(name)
    fig = cp.plots.diagram(spec)
    ax = fig.axes[0]
    boxes = [p.get_bbox() for p in ax.patches if not isinstance(p, FancyArrowPatch)]
    assert len(boxes) == len(spec.states)
    labels = [t for t in ax.texts if t.get_text() not in spec.states and t.get_text() != "dose"]
    assert labels
    for t in labels:
        x, y = t.get_position()
        on = [b for b in boxes if b.x0 <= x <= b.x1 and b.y0 <= y <= b.y1]
        assert not on, f"label {t.get_text()!r} at ({x:.2f}, {y:.2f}) lies on a box"


def test_diagram_odes_only_states_and_bad_input():
    spec = cp.load_model("msc_pkpd_host")
    fig = cp.plots.diagram(spec, rates=False)
    texts = {t.get_text(): t for t in fig.axes[0].texts}
    assert set(spec.states) <= set(texts)
    assert "dashed border: terms in [odes]" in [t.get_text() for t in fig.texts]
    # 'marker' has no flows: it sits in a column of its own, right of the cell states
    assert texts["marker"].get_position()[0] > texts["cleared"].get_position()[0]
    with pytest.raises(cp.SpecError, match=r"must be a cp\.ModelSpec"):
        cp.plots.diagram("msc_pbk")


# ------------------------------------------------------------------ fits
@pytest.fixture(scope="module")
def theo_fit():
    data = cp.datasets.theophylline()
    pop = cp.Population(random_effects={"ka": 0.5, "CL": 0.5, "V": 0.5}, error={"conc": "combined"})
    idata = cp.fit(
        "one_cmt_oral", data, pop, method="svi", steps=200, draws=30, progress=False, seed=1
    )
    return data, pop, idata


def _replicates(idata, data, n=40, seed=3):
    """Replicate studies simulated with cp.simulate(data=): new etas and residual errors
    from posterior draws of the fit (what cellpkpd.infer.run.simulate_study provides)."""
    spec = cp.load_model("one_cmt_oral")
    post = idata.posterior
    rng = np.random.default_rng(seed)
    n_sub = post.sizes["subject"]
    reps = []
    for _ in range(n):
        d = rng.integers(post.sizes["draw"])
        p = {
            k: float(post[k][0, d])
            * np.exp(float(post[f"omega_{k}"][0, d]) * rng.standard_normal(n_sub))
            for k in ("ka", "CL", "V")
        }
        ip = cp.simulate(spec, data=data, params=p)["conc"].values
        sd = np.hypot(
            float(post["sigma_add_conc"][0, d]), float(post["sigma_prop_conc"][0, d]) * ip
        )
        reps.append(ip + sd * rng.standard_normal(ip.shape))
    return np.array(reps)


@pytest.mark.slow
def test_gof_panels_units_and_iwres(theo_fit):
    _, _, idata = theo_fit
    fig = cp.plots.gof(idata)
    has_pred = "pred" in idata.posterior_predictive
    axes = fig.axes
    assert len(axes) == (4 if has_pred else 3)
    ax_ipred = axes[1 if has_pred else 0]
    assert ax_ipred.get_xlabel() == "IPRED [mg/L]"
    assert ax_ipred.get_ylabel() == "observed conc [mg/L]"
    assert "identity" in [ln.get_label() for ln in ax_ipred.get_lines()]
    ax_t, ax_p = axes[-2], axes[-1]
    assert ax_t.get_xlabel() == "time [h]" and ax_t.get_ylabel() == "IWRES [1]"
    assert ax_p.get_xlabel() == "IPRED [mg/L]"
    # IWRES recomputed here: (obs - IPRED) / sqrt(sigma_add^2 + (sigma_prop IPRED)^2)
    obs = idata.observed_data["obs"].values
    ipred = idata.posterior_predictive["obs"].mean(("chain", "draw")).values
    sa = float(idata.posterior["sigma_add_conc"].mean())
    sp = float(idata.posterior["sigma_prop_conc"].mean())
    ok = np.isfinite(obs)
    iwres = ((obs - ipred) / np.hypot(sa, sp * ipred))[ok]
    plotted = ax_t.collections[0].get_offsets()[:, 1]
    np.testing.assert_allclose(np.sort(plotted), np.sort(iwres), rtol=1e-12)
    # a fit that describes the data: 95 % of IWRES within +-3 (loose: 30-draw SVI)
    assert np.mean(np.abs(iwres) < 3) > 0.95
    fig = cp.plots.gof(idata, log=True)
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_yscale() == "log"


def _censor(idata, lloq):
    """The same fit with every observation below `lloq` marked censored at the LLOQ."""
    cens = copy.deepcopy(idata)
    od = cens.observed_data
    below = np.isfinite(od["obs"].values) & (od["obs"].values < lloq)
    od["censored"].values[:] = below
    od["lloq"].values[:] = np.where(np.isfinite(od["obs"].values), lloq, 0.0)
    return cens, below


@pytest.mark.slow
def test_gof_shows_blq_distinctly(theo_fit):
    _, _, idata = theo_fit
    cens, below = _censor(idata, 1.0)
    assert below.sum() >= 5
    fig = cp.plots.gof(cens)
    ax = fig.axes[0]
    labels = [c.get_label() for c in ax.collections]
    assert "below LLOQ (at LLOQ)" in labels
    blq = ax.collections[labels.index("below LLOQ (at LLOQ)")]
    assert len(blq.get_offsets()) == below.sum()
    np.testing.assert_allclose(blq.get_offsets()[:, 1], 1.0)  # drawn at the LLOQ
    # censored records are left out of the residuals
    assert (
        len(fig.axes[-2].collections[0].get_offsets())
        == np.isfinite(idata.observed_data["obs"].values).sum() - below.sum()
    )


@pytest.mark.slow
def test_vpc_percentiles_over_prediction_intervals(theo_fit):
    data, _, idata = theo_fit
    reps = _replicates(idata, data)
    fig = cp.plots.vpc(idata, data, simulated=reps, bins=6)
    assert len(fig.axes) == 1  # no censored data: no BLQ panel
    ax = fig.axes[0]
    assert ax.get_ylabel() == "conc [mg/L]" and ax.get_xlabel() == "time [h]"
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert {
        "observed 5th percentile",
        "observed 50th percentile",
        "observed 95th percentile",
    } <= set(lines)
    # observed medians per time bin, recomputed from the data
    od = idata.observed_data
    obs, t = od["obs"].values, od["time"].values
    ok = np.isfinite(obs)
    edges = np.quantile(t[ok], np.linspace(0, 1, 7))
    edges[0] -= 1e-9
    edges[-1] += 1e-9
    which = np.clip(np.searchsorted(edges, t[ok], side="right") - 1, 0, 5)
    med = [np.median(obs[ok][which == b]) for b in range(6) if np.any(which == b)]
    np.testing.assert_allclose(lines["observed 50th percentile"].get_ydata(), med)
    # the model describes the data: observed medians fall in the simulated 90 % PI of the
    # median in most bins (5 of 6 allowed for a 30-draw SVI fit and 40 replicates)
    pi = next(c for c in ax.collections if c.get_label() == "simulated 50th percentile: 90% PI")
    x_obs = lines["observed 50th percentile"].get_xdata()
    inside = [pi.get_paths()[0].contains_point((x, y)) for x, y in zip(x_obs, med, strict=True)]
    assert sum(inside) >= 5
    with pytest.raises(cp.DataError, match="expected \\(replicate, 12, 12\\)"):
        cp.plots.vpc(idata, data, simulated=reps[:, :3])
    if not hasattr(cp.infer, "simulate_study"):
        with pytest.raises(cp.SpecError, match="pass simulated="):
            cp.plots.vpc(idata, data)


@pytest.mark.slow
def test_vpc_blq_panel(theo_fit):
    data, _, idata = theo_fit
    cens, _ = _censor(idata, 1.0)
    reps = _replicates(idata, data, n=20)
    fig = cp.plots.vpc(cens, data, simulated=reps)
    assert len(fig.axes) == 2
    ax_b = fig.axes[1]
    assert ax_b.get_ylabel() == "below LLOQ [%]"
    (observed,) = [ln for ln in ax_b.get_lines() if ln.get_label() == "observed"]
    # observed BLQ fraction per bin: 100 x censored / records; its mean over records
    # weighted by bin size is the overall censored share
    assert observed.get_ydata().max() > 0
    assert "LLOQ" in [ln.get_label() for ln in fig.axes[0].get_lines()]


@pytest.mark.slow
def test_posterior_trace_and_pair(theo_fit):
    _, _, idata = theo_fit
    fig = cp.plots.posterior(idata)
    titles = [ax.get_title() for ax in fig.axes]
    assert "CL [L/h]" in titles and "omega_CL [1]" in titles
    assert len(fig.axes) == 2 * 6  # density + trace for ka, CL, V and their omegas
    plt.close(fig)
    fig = cp.plots.posterior(idata, kind="pair", var_names=["CL", "V"])
    assert "CL [L/h]" in [ax.get_xlabel() for ax in fig.axes]
    plt.close(fig)
    with pytest.raises(cp.SpecError, match="kind"):
        cp.plots.posterior(idata, kind="forest")
    with pytest.raises(cp.SpecError, match="'eta' is not a posterior variable"):
        cp.plots.posterior(idata, var_names=["eta"])


def test_every_library_model_has_its_docs_page():
    # docs/make_figures.py writes them; rerun it after adding a model to models/
    from pathlib import Path

    library = Path(__file__).resolve().parents[2] / "docs" / "library"
    for name in cp.list_models():
        page = library / f"{name}.md"
        assert page.exists() and (library / f"{name}.png").exists(), name
        text = page.read_text(encoding="utf-8")
        assert f"# {name}" in text and "## Parameters" in text
        spec = cp.load_model(name)
        assert all(f"| {p} |" in text for p in spec.parameters)
        # the flow table gives each flow's label on the diagram: a long rate's tag rN
        # (explained nowhere else on the page), a short rate as written on its arrow
        tags = rate_tags(spec)
        for f in spec.flows:
            rate = f.rate.source.strip()
            row = f"| {f.source} | {f.target or '(lost)'} | `{rate}` |"
            assert f"| {tags.get(rate, f'`{rate}`')} {row}" in text, (name, row)


def _two_organ_fit():
    """A biodistribution fit result (two organs, log-normal error with its own sigma each,
    one censored record), built by hand: (idata, obs, ipred, organ, cens, sigma per organ)."""
    import arviz as az

    rng = np.random.default_rng(0)
    n_sub, n_rec = 6, 4
    organ = np.array([["lung", "liver"] * 2] * n_sub)
    ipred = np.where(organ == "lung", 1e9, 1e6) * rng.uniform(0.5, 2.0, (n_sub, n_rec))
    sig = {"lung": 0.3, "liver": 0.6}
    obs = ipred * np.exp(np.vectorize(sig.get)(organ) * rng.standard_normal((n_sub, n_rec)))
    cens = np.zeros_like(obs, bool)
    cens[0, 1] = True
    lloq = np.where(cens, 1e6, 0.0)
    obs[cens] = 1e6
    idata = az.from_dict(
        posterior={"sigma_log_lung": np.full((1, 5), 0.3), "sigma_log_liver": np.full((1, 5), 0.6)},
        posterior_predictive={"ipred": np.broadcast_to(ipred, (1, 5, n_sub, n_rec))},
        observed_data={"obs": obs},
        dims={"ipred": ["subject", "record"], "obs": ["subject", "record"]},
    )
    od = idata.observed_data
    od["time"] = (("subject", "record"), np.tile([1.0, 1.0, 24.0, 24.0], (n_sub, 1)))
    od["censored"] = (("subject", "record"), cens)
    od["lloq"] = (("subject", "record"), lloq)
    od["output"] = (("subject", "record"), organ)
    return idata, obs, ipred, organ, cens, sig


def test_gof_two_organs_colours_and_log_iwres_per_organ():
    """A biodistribution fit (two organs, log-normal error with its own sigma each): one
    colour per organ, residuals are IWRES = (log obs - log IPRED) / sigma of the record's
    organ (not raw obs - IPRED, which spans decades), censored records are red crosses."""
    idata, obs, ipred, organ, cens, sig = _two_organ_fit()
    fig = cp.plots.gof(idata, log=True, unit="copies/mg", title="two organs")
    ax_obs, ax_t = fig.axes[0], fig.axes[1]
    labels = [c.get_label() for c in ax_obs.collections]
    assert labels == ["lung", "liver", "below LLOQ (at LLOQ)"]
    colours = {c.get_label(): tuple(c.get_facecolor()[0]) for c in ax_obs.collections}
    assert colours["lung"] != colours["liver"]
    assert ax_t.get_ylabel() == "IWRES [1]"
    expected = (np.log(obs) - np.log(ipred)) / np.vectorize(sig.get)(organ)
    for k, name in enumerate(["lung", "liver"]):
        sel = (organ == name) & ~cens
        got = ax_t.collections[k].get_offsets()[:, 1]
        np.testing.assert_allclose(np.sort(got), np.sort(expected[sel]), rtol=1e-12)


def test_gof_outputs_draws_only_the_chosen_observation_types():
    """gof(outputs=[...]) draws the records of those observation types only (observations
    in other units, e.g. radiolabel fractions beside qPCR genome equivalents, go in a
    figure of their own); an observation the fit did not use is a one-line error."""
    idata, obs, _, organ, cens, _ = _two_organ_fit()
    fig = cp.plots.gof(idata, log=True, outputs=["liver"])
    ax_obs, ax_t = fig.axes[0], fig.axes[1]
    # the censored record is a liver record: its cross stays
    assert [c.get_label() for c in ax_obs.collections] == ["observed", "below LLOQ (at LLOQ)"]
    drawn = np.sort(ax_obs.collections[0].get_offsets()[:, 1])
    np.testing.assert_allclose(drawn, np.sort(obs[(organ == "liver") & ~cens]), rtol=1e-12)
    assert ax_t.collections[0].get_offsets().shape[0] == drawn.size
    with pytest.raises(cp.SpecError, match=r"gof: outputs = \['spleen'\]; expected some of"):
        cp.plots.gof(idata, outputs=["spleen"])
