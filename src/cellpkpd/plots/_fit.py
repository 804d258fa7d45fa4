"""Plots of fits: goodness of fit, visual predictive check, posterior (ArviZ)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.errors import DataError, SpecError
from ..infer import sites
from ..population.error import error_model_of, residual_sd
from ._common import _show_in_ipython, label, log_axis, new_figure

if TYPE_CHECKING:
    import arviz as az
    from matplotlib.figure import Figure

    from ..data.nonmem import Dataset
    from ..population.population import Population
    from ..spec.model import ModelSpec


def _check_idata(idata: Any, where: str) -> None:
    groups = getattr(idata, "groups", None)
    if groups is None or "observed_data" not in idata.groups():
        raise SpecError(
            f"{where}: expected the arviz.InferenceData of cp.fit (with observed_data), "
            f"got {type(idata).__name__}"
        )


def _spec_of(idata: az.InferenceData, spec: ModelSpec | str | None) -> ModelSpec | None:
    from ..spec.model import ModelSpec, list_models, load_model

    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, str):
        return load_model(spec)
    name = idata.posterior.attrs.get("model") if "posterior" in idata.groups() else None
    return load_model(name) if name in list_models() else None


def _outputs(idata: az.InferenceData, spec: ModelSpec | None) -> list[str]:
    """Observations the fit used: as recorded in its attrs (`sites.FitDesign`), else from
    its residual-error parameters (``sigma_<kind>_<obs>``)."""
    has_posterior = "posterior" in idata.groups()
    recorded = sites.FitDesign.from_attrs(idata.posterior.attrs).outputs if has_posterior else None
    if recorded:
        return list(recorded)
    outs: list[str] = []
    for v in idata.posterior.data_vars if has_posterior else []:
        parsed = sites.parse_sigma(str(v))
        if parsed and parsed[1] not in outs:
            outs.append(parsed[1])
    if not outs and spec is not None and len(spec.observations) == 1:
        outs = list(spec.observations)
    return outs


def _predictions(idata: az.InferenceData) -> tuple[np.ndarray | None, np.ndarray]:
    """Posterior means of PRED (population, eta = 0; None when the fit has none) and
    IPRED (individual) per (subject, record)."""
    pp = idata.posterior_predictive
    lower = {str(k).lower(): k for k in pp.data_vars}
    ipred_name = lower.get("ipred", lower.get("obs"))
    if ipred_name is None:
        raise SpecError("gof: posterior_predictive has neither 'ipred' nor 'obs'")
    ipred = pp[ipred_name].mean(("chain", "draw")).values
    pred = pp[lower["pred"]].mean(("chain", "draw")).values if "pred" in lower else None
    return pred, np.asarray(ipred, dtype=float)


def _iwres(
    idata: az.InferenceData, obs: np.ndarray, ipred: np.ndarray, output: str
) -> np.ndarray | None:
    """Individual weighted residuals (obs - IPRED) / SD(IPRED), with the fit's residual
    error model and the posterior means of its sigmas; None when they are not known."""
    post = idata.posterior
    sigma = {
        kind: float(post[name].mean())
        for kind in ("add", "prop", "log")
        if (name := sites.sigma(kind, output)) in post
    }
    model = "lognormal" if "log" in sigma else error_model_of(sigma)
    with np.errstate(all="ignore"):
        if model == "lognormal":
            return (np.log(obs) - np.log(ipred)) / sigma["log"]
        if model is None:
            return None
        sd = residual_sd(model, ipred, sigma)
        return (obs - ipred) / np.maximum(sd, 1e-300)


def gof(
    idata: az.InferenceData,
    *,
    spec: ModelSpec | str | None = None,
    log: bool = False,
    unit: str | None = None,
    title: str | None = None,
    outputs: Sequence[str] | None = None,
) -> Figure:
    """Goodness-of-fit panels of a `cp.fit` result.

    Observed against the population prediction (PRED, typical values with eta = 0, when
    the fit stored it as ``posterior_predictive["pred"]``) and against the individual
    prediction (IPRED: ``posterior_predictive["ipred"]`` or ``["obs"]``), each with the
    line of identity; and residuals against time and against IPRED. The residuals are
    IWRES, (obs - IPRED) / SD (log-normal error: (log obs - log IPRED) / sigma), with each
    observation type's residual-error model and posterior-mean ``sigma_*``; obs - IPRED
    when those are not known. With several observation types (e.g. organs) each has its
    own colour. Predictions are posterior means. Censored (below-LLOQ) records are drawn
    as red crosses at the LLOQ and left out of the residuals.

    Parameters
    ----------
    idata : arviz.InferenceData
        Result of `cp.fit`.
    spec : ModelSpec or str, optional
        The fitted model, for units (default: the library model named in the fit).
    log : bool
        Logarithmic axes for observed and predicted values.
    unit : str, optional
        Unit of the observations (default: from the model).
    title : str, optional
        Figure title.
    outputs : sequence of str, optional
        Observation types to draw (default: every one the fit used). Choose observations
        that share a unit (e.g. the qPCR assays of every organ, then the radiolabel ones in
        a second figure): one axis cannot show genome equivalents and fractions at once.

    Returns
    -------
    matplotlib.figure.Figure
        Three panels (four with PRED): observed vs PRED, observed vs IPRED, residual vs
        time, residual vs IPRED.

    Raises
    ------
    SpecError
        If `idata` is not a fit result, or `outputs` names an observation it did not fit.
    """
    _check_idata(idata, "gof")
    model = _spec_of(idata, spec)
    obs, times, cens, lloq = _observed(idata)
    pred, ipred = _predictions(idata)
    outs, rec_out, obs = _gof_outputs(idata, model, obs, outputs)
    if unit is None:
        units = {model.observations[o].unit for o in outs} if model is not None else set()
        unit = units.pop() if len(units) == 1 else ""
    name = outs[0] if len(outs) == 1 else "observation"
    seen = np.isfinite(obs) & ~cens
    res = _residuals(idata, obs, ipred, outs, rec_out)
    res_label = "IWRES [1]" if res is not None else label(f"{name} - IPRED", unit)
    if res is None:
        res = obs - ipred
    # one colour per observation type: C0, C1, C2, C4, ... (C3, red, marks censored records)
    if len(outs) > 1:
        groups = [(o, rec_out == o, f"C{k + (k >= 3)}") for k, o in enumerate(outs)]
    else:
        groups = [("observed", np.ones(obs.shape, bool), "C0")]
    panels = [("PRED", pred)] if pred is not None else []
    panels.append(("IPRED", ipred))
    fig = new_figure(9.0, 7.6 if len(panels) == 2 else 7.0)
    if len(panels) == 2:
        axes = fig.subplots(2, 2).ravel()
    else:
        mosaic = fig.subplot_mosaic([["a", "a"], ["b", "c"]], height_ratios=[1.2, 1.0])
        axes = np.array([mosaic["a"], mosaic["b"], mosaic["c"]])
    blq = cens & np.isfinite(obs)
    y_blq = np.where(lloq > 0, lloq, obs)
    for ax, (pname, p) in zip(axes, panels, strict=False):
        _identity_panel(ax, pname, p, obs, seen, blq, y_blq, groups, log)
        ax.set_xlabel(label(pname, unit))
        ax.set_ylabel(label(f"observed {name}", unit))
    ax_t, ax_p = axes[len(panels)], axes[len(panels) + 1]
    ok = seen & np.isfinite(res)
    time_unit = model.time_unit if model is not None else ""
    for ax, x, xl in ((ax_t, times, label("time", time_unit)), (ax_p, ipred, label("IPRED", unit))):
        for _, sel, color in groups:
            ax.scatter(x[ok & sel], res[ok & sel], s=14, alpha=0.7, color=color)
        ax.axhline(0.0, color="k", lw=1)
        if res_label.startswith("IWRES"):
            for v in (-2.0, 2.0):
                ax.axhline(v, color="k", lw=0.8, ls="--")
        ax.set_xlabel(xl)
        ax.set_ylabel(res_label)
        ax.grid(True, alpha=0.3)
    if log:
        log_axis(ax_p, ipred[ok], "x", decades=5)
    ax_t.set_title("residuals vs time", loc="left", fontsize=10)
    ax_p.set_title("residuals vs prediction", loc="left", fontsize=10)
    heading = f"{model.name if model is not None else ''} goodness of fit".strip()
    fig.suptitle(heading if title is None else title, fontsize=11)
    return fig


def _observed(idata: az.InferenceData) -> tuple[np.ndarray, ...]:
    """Observations, times, censoring flags and LLOQs (subject, record) of a fit's
    observed_data (no censoring and LLOQ 0 where it has none)."""
    od = idata.observed_data
    obs = np.asarray(od["obs"].values, dtype=float)
    times = np.asarray(od["time"].values, dtype=float)
    cens = (
        np.asarray(od["censored"].values, dtype=bool)
        if "censored" in od
        else np.zeros_like(obs, bool)
    )
    lloq = np.asarray(od["lloq"].values, dtype=float) if "lloq" in od else np.zeros_like(obs)
    return obs, times, cens, lloq


def _gof_outputs(
    idata: az.InferenceData,
    model: ModelSpec | None,
    obs: np.ndarray,
    outputs: Sequence[str] | str | None,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The observation types `gof` draws, which one each record measures, and the
    observations with those of the other types left out (NaN)."""
    od = idata.observed_data
    outs = _outputs(idata, model)
    record_output = np.asarray(od["output"].values).astype(str) if "output" in od else None
    if record_output is not None:  # only the observation types that the data hold, in order
        in_data = list(dict.fromkeys(record_output.ravel()))
        outs = [o for o in in_data if o in outs] or outs
    if outputs is not None:
        outputs = [outputs] if isinstance(outputs, str) else list(outputs)
        unknown = [o for o in outputs if o not in outs]
        if unknown or not outputs:
            raise SpecError(
                f"gof: outputs = {list(outputs)}; expected some of the fitted observations {outs}"
            )
        if record_output is not None:  # the other observation types' records are left out
            obs = np.where(np.isin(record_output, outputs), obs, np.nan)
        outs = list(outputs)
    rec_out = (
        record_output
        if record_output is not None and len(outs) > 1
        else np.full(obs.shape, outs[0] if outs else "", dtype=object)
    )
    return outs, rec_out, obs


def _residuals(
    idata: az.InferenceData,
    obs: np.ndarray,
    ipred: np.ndarray,
    outs: list[str],
    rec_out: np.ndarray,
) -> np.ndarray | None:
    """IWRES of every record, each with its own output's error model; None when some
    output's is not known."""
    res = np.full(obs.shape, np.nan)
    for o in outs:
        r = _iwres(idata, obs, ipred, o)
        if r is None:
            return None
        res = np.where(rec_out == o, r, res)
    return res


def _identity_panel(
    ax: Any,
    pname: str,
    p: np.ndarray,
    obs: np.ndarray,
    seen: np.ndarray,
    blq: np.ndarray,
    y_blq: np.ndarray,
    groups: list[tuple[str, np.ndarray, str]],
    log: bool,
) -> None:
    """Observed against prediction `p` (PRED or IPRED), one colour per group, censored
    records as red crosses at the LLOQ, with the line of identity."""
    for gname, sel, color in groups:
        ax.scatter(p[seen & sel], obs[seen & sel], s=14, alpha=0.7, color=color, label=gname)
    if blq.any():
        ax.scatter(p[blq], y_blq[blq], s=26, marker="x", color="C3", label="below LLOQ (at LLOQ)")
    both = np.concatenate([p[seen | blq], obs[seen], y_blq[blq]])
    both = both[np.isfinite(both) & ((both > 0) if log else True)]
    if both.size:
        lo, hi = both.min(), both.max()
        ax.plot([lo, hi], [lo, hi], color="k", lw=1, label="identity")
    if log:
        log_axis(ax, both, "x", decades=5)
        log_axis(ax, both, "y", decades=5)
    ax.set_title(f"observed vs {pname}", loc="left", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, alpha=0.3)


def _bin_edges(t: np.ndarray, bins: int | Sequence[float] | None) -> np.ndarray:
    if bins is not None and not isinstance(bins, int):
        edges = np.asarray(bins, dtype=float)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise SpecError("vpc: bins must be an int or increasing bin edges [time]")
        return edges
    distinct = np.unique(t)
    if bins is None and distinct.size <= 12:  # nominal times: one bin each
        mids = (distinct[1:] + distinct[:-1]) / 2
        return np.concatenate([[distinct[0] - 1e-9], mids, [distinct[-1] + 1e-9]])
    if bins is None:  # sampling times scattered round nominal ones: cut at the 9 widest gaps
        gaps = np.diff(distinct)
        cut = np.sort(np.argsort(gaps)[-9:])
        mids = (distinct[cut] + distinct[cut + 1]) / 2
        edges = np.concatenate([[distinct[0] - 1e-9], mids, [distinct[-1] + 1e-9]])
        # merge bins holding fewer than 5% of the observations into their smaller neighbour
        while edges.size > 2:
            counts = np.histogram(t, edges)[0]
            i = int(np.argmin(counts))
            if counts[i] >= max(3, 0.05 * t.size):
                break
            if i == 0 or (i < counts.size - 1 and counts[i + 1] < counts[i - 1]):
                edges = np.delete(edges, i + 1)
            else:
                edges = np.delete(edges, i)
        return edges
    k = int(bins)
    if k < 1:
        raise SpecError(f"vpc: bins = {bins}; expected at least 1")
    edges = np.unique(np.quantile(t, np.linspace(0.0, 1.0, k + 1)))
    edges[-1] += 1e-9
    edges[0] -= 1e-9
    return edges


def _simulated(
    idata: az.InferenceData,
    data: Dataset | None,
    simulated: Any,
    spec: ModelSpec | str | None,
    population: Population | None,
    n: int,
    seed: int,
    omega: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Replicates (replicate, subject, record) of the observations."""
    if simulated is None:
        from ..infer.posterior import simulate_study

        if spec is None or population is None or data is None:
            raise SpecError(
                "vpc: pass simulated= (replicates, dims replicate x subject x record) or "
                "data=, spec= and population= to simulate them with "
                "cellpkpd.infer.posterior.simulate_study"
            )
        simulated = simulate_study(idata, spec, data, population, n, seed, omega=omega)
    if hasattr(simulated, "data_vars"):  # an xarray.Dataset from simulate_study
        names = [v for v in ("dv", "obs", "DV") if v in simulated.data_vars]
        names = names or list(simulated.data_vars)
        simulated = simulated[names[0]]
    if hasattr(simulated, "dims") and "replicate" in simulated.dims:
        simulated = simulated.transpose("replicate", ...)
    return np.asarray(simulated, dtype=float)


def vpc(
    idata: az.InferenceData,
    data: Dataset | None = None,
    *,
    simulated: Any = None,
    spec: ModelSpec | str | None = None,
    population: Population | None = None,
    n: int = 200,
    seed: int = 0,
    omega: Mapping[str, float] | None = None,
    bins: int | Sequence[float] | None = None,
    percentiles: tuple[float, float, float] = (5.0, 50.0, 95.0),
    interval: float = 90.0,
    log: bool = False,
    unit: str | None = None,
    title: str | None = None,
) -> Figure:
    """Visual predictive check of a `cp.fit` result.

    Per time bin, the observed 5th, 50th and 95th percentiles (lines) are drawn over the
    `interval` % prediction intervals (shaded) of the same percentiles in replicate
    simulations of the study design (each replicate: new etas and residual errors, same
    subjects, doses and record times). Censored (below-LLOQ) values, observed or
    simulated, enter the percentiles at 0 and a percentile below the bin's LLOQ is not
    drawn; a second panel then compares the observed fraction below the LLOQ with its
    prediction interval.

    Parameters
    ----------
    idata : arviz.InferenceData
        Result of `cp.fit`; its observed_data holds the observations, times and LLOQs.
    data : Dataset, optional
        The data set that was fitted (needed to simulate replicates).
    simulated : array or xarray, optional
        Replicate observations, shape (replicate, subject, record) like the fit's
        observed_data (e.g. the Dataset from ``cellpkpd.infer.posterior.simulate_study``).
        Default: simulated with ``cellpkpd.infer.posterior.simulate_study(idata, spec, data,
        population, n, seed)``.
    spec, population : optional
        Model and Population of the fit, to simulate the replicates.
    n, seed : int
        Number of replicates and random seed, when simulating.
    omega : dict str -> float, optional
        Between-subject SDs of the log-parameters for the replicates instead of the fit's
        ``omega_<p>`` (passed to ``simulate_study``); required for a MAP fit with random
        effects, whose omegas are not estimates.
    bins : int or sequence of float, optional
        Number of time bins (quantiles of the observation times) or bin edges [time].
        Default: one bin per distinct time when there are at most 12, else 10 bins cut at
        the widest gaps between sampling times (times scattered round nominal times).
    percentiles : (low, mid, high)
        Percentiles of the observations [%].
    interval : float
        Width of the prediction intervals [%].
    log : bool
        Logarithmic y axis.
    unit : str, optional
        Unit of the observations (default: the model's).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The VPC axes (and, with censored data, the below-LLOQ fraction axes).

    Raises
    ------
    SpecError
        Neither `simulated` nor what is needed to simulate; bad `bins`.
    DataError
        `simulated` does not match the observed (subject, record) shape.
    """
    _check_idata(idata, "vpc")
    model = _spec_of(idata, spec)
    obs, times, cens, lloq = _observed(idata)
    sims = _simulated(
        idata, data, simulated, model if model is not None else spec, population, n, seed, omega
    )
    if sims.ndim != 3 or sims.shape[1:] != obs.shape:
        raise DataError(
            f"vpc: simulated has shape {sims.shape}; expected (replicate, {obs.shape[0]}, "
            f"{obs.shape[1]}) (replicate, subject, record) like the fit's observed_data"
        )
    use = np.isfinite(obs) | cens
    t = times[use]
    y_obs = np.where(cens, 0.0, obs)[use]
    lim = lloq[use]
    edges = _bin_edges(t, bins)
    x, op, sp, blq_obs, blq_sim = _vpc_bins(
        t, y_obs, lim, cens[use], sims[:, use], edges, percentiles, interval
    )
    has_blq = bool((lim > 0).any())
    outs = _outputs(idata, model)
    if unit is None:
        unit = model.observations[outs[0]].unit if model is not None and len(outs) == 1 else ""
    fig = new_figure(8.6, 6.6 if has_blq else 4.8)
    if has_blq:
        ax, ax_b = fig.subplots(2, 1, sharex=True, height_ratios=[2.6, 1.0])
    else:
        ax, ax_b = fig.subplots(), None
    ax.scatter(
        t[~cens[use]], y_obs[~cens[use]], s=9, color="0.55", alpha=0.6, label="observed", zorder=1
    )
    _percentile_bands(ax, x, op, sp, percentiles, interval)
    if (lim > 0).any():
        ax.axhline(lim[lim > 0].max(), color="k", lw=0.8, ls=":", label="LLOQ")
    ax.set_ylabel(label(outs[0] if len(outs) == 1 else "observation", unit))
    if log:
        log_axis(ax, np.concatenate([y_obs, sp.ravel()]), decades=4)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    for e in edges[1:-1]:
        ax.axvline(e, color="0.85", lw=0.6, zorder=0)
    last = ax
    if ax_b is not None:
        _below_lloq_panel(ax_b, x, blq_obs, blq_sim, interval)
        last = ax_b
    last.set_xlabel(label("time", model.time_unit if model is not None else ""))
    heading = f"{model.name if model is not None else ''} visual predictive check"
    heading += f" ({sims.shape[0]} replicates)"
    fig.suptitle(heading.strip() if title is None else title, fontsize=11)
    return fig


def _vpc_bins(
    t: np.ndarray,
    y_obs: np.ndarray,
    lim: np.ndarray,
    cens: np.ndarray,
    y_sim: np.ndarray,
    edges: np.ndarray,
    percentiles: tuple[float, float, float],
    interval: float,
) -> tuple[np.ndarray, ...]:
    """Per non-empty time bin: the median time, the observed percentiles (bins, 3), the
    simulated percentiles' (low, median, high) quantiles over replicates (bins, 3, 3), the
    observed fraction below the LLOQ (bins,) and its simulated quantiles (bins, 3).
    Censored values, observed (`cens`) or simulated, count as 0."""
    sim_blq = (y_sim < lim[None, :]) & (lim[None, :] > 0)
    y_sim = np.where(sim_blq, 0.0, y_sim)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, edges.size - 2)
    lo_q, hi_q = (100.0 - interval) / 2, (100.0 + interval) / 2
    xs, obs_p, sim_p, blq_obs, blq_sim = [], [], [], [], []
    for b in range(edges.size - 1):
        sel = which == b
        if not sel.any():
            continue
        xs.append(np.median(t[sel]))
        floor = lim[sel].max()
        o = np.percentile(y_obs[sel], percentiles)
        obs_p.append(np.where(o < floor, np.nan, o) if floor > 0 else o)
        s = np.percentile(y_sim[:, sel], percentiles, axis=1)  # (3, replicate)
        band = np.percentile(s, [lo_q, 50.0, hi_q], axis=1)  # (3 quantiles, 3 percentiles)
        if floor > 0:
            band = np.where(band < floor, floor, band)
        sim_p.append(band)
        blq_obs.append(cens[sel].mean())
        blq_sim.append(np.percentile(sim_blq[:, sel].mean(axis=1), [lo_q, 50.0, hi_q]))
    return np.array(xs), np.array(obs_p), np.array(sim_p), np.array(blq_obs), np.array(blq_sim)


def _percentile_bands(
    ax: Any,
    x: np.ndarray,
    op: np.ndarray,
    sp: np.ndarray,
    percentiles: tuple[float, float, float],
    interval: float,
) -> None:
    """The simulated percentiles' prediction intervals (shaded) and the observed
    percentiles (lines) per bin."""
    colours = ("C0", "C3", "C0")
    names = [f"{p:g}th percentile" for p in percentiles]
    for j in range(3):
        ax.fill_between(
            x,
            sp[:, 0, j],
            sp[:, 2, j],
            color=colours[j],
            alpha=0.22 if j != 1 else 0.3,
            lw=0,
            label=f"simulated {names[j]}: {interval:g}% PI",
        )
        ax.plot(
            x,
            op[:, j],
            color=colours[j],
            lw=1.8,
            ls="-" if j == 1 else "--",
            marker="o",
            ms=3,
            label=f"observed {names[j]}",
        )


def _below_lloq_panel(
    ax: Any, x: np.ndarray, blq_obs: np.ndarray, blq_sim: np.ndarray, interval: float
) -> None:
    """The observed fraction below the LLOQ per bin over its prediction interval."""
    ax.fill_between(
        x,
        100 * blq_sim[:, 0],
        100 * blq_sim[:, 2],
        color="C2",
        alpha=0.3,
        lw=0,
        label=f"simulated {interval:g}% PI",
    )
    ax.plot(x, 100 * blq_obs, color="C2", marker="o", ms=3, lw=1.6, label="observed")
    ax.set_ylabel(label("below LLOQ", "%"))
    ax.set_ylim(-3, 103)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def posterior(
    idata: az.InferenceData,
    kind: str = "trace",
    var_names: Sequence[str] | None = None,
) -> Figure:
    """Trace or pair plot of a fit's typical values and omegas, drawn by ArviZ.

    Parameters
    ----------
    idata : arviz.InferenceData
        Result of `cp.fit` with more than one draw (NUTS or SVI).
    kind : {"trace", "pair"}
        ``arviz.plot_trace`` (density and trace per chain) or ``arviz.plot_pair``
        (scatter of every pair, with divergences marked).
    var_names : sequence of str, optional
        Posterior variables (default: the typical values and ``omega_*``; not the etas,
        individual values or residual-error sigmas).

    Returns
    -------
    matplotlib.figure.Figure
        The figure ArviZ drew on, closed in pyplot (so Jupyter shows it once, as the
        cell's value; ``fig.savefig`` writes it).

    Raises
    ------
    SpecError
        An unknown `kind` or variable, or a posterior with a single draw (MAP).
    """
    import arviz as az

    if kind not in ("trace", "pair"):
        raise SpecError(f"posterior: kind = {kind!r}; expected 'trace' or 'pair'")
    if "posterior" not in getattr(idata, "groups", lambda: [])():
        raise SpecError(
            f"posterior: expected the arviz.InferenceData of cp.fit, got {type(idata).__name__}"
        )
    post = idata.posterior
    if post.sizes.get("draw", 0) < 2:
        raise SpecError("posterior: the fit has one draw (MAP); use method='nuts' or 'svi'")
    if var_names is None:
        var_names = [
            str(v)
            for v in post.data_vars
            if not sites.is_subject_site(str(v))
            and not sites.parse_sigma(str(v))
            and post[v].dims == ("chain", "draw")
            and str(v) != "data"
        ]
    var_names = list(var_names)
    for v in var_names:
        if v not in post:
            raise SpecError(
                f"posterior: '{v}' is not a posterior variable "
                f"(have: {', '.join(map(str, post.data_vars))})"
            )
    if kind == "trace":
        axes = az.plot_trace(
            idata, var_names=var_names, compact=False, figsize=(9.0, 1.7 * len(var_names) + 0.6)
        )
    else:
        k = len(var_names)
        axes = az.plot_pair(
            idata,
            var_names=var_names,
            kind="scatter",
            divergences="diverging" in idata.get("sample_stats", {}),
            marginals=True,
            figsize=(1.8 * k + 1.5, 1.8 * k + 1.5),
            scatter_kwargs={"alpha": 0.5, "s": 14, "marker": "o"},
        )
    fig = next(a for a in np.ravel(axes) if a is not None).figure
    fig.set_layout_engine("constrained")
    # ArviZ draws with pyplot, whose inline backend shows the figure at the end of a Jupyter
    # cell, and the returned Figure was then shown a second time as the cell's value
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    plt.close(fig)
    FigureCanvasAgg(fig)  # closing left a bare canvas: an Agg one draws, as new_figure's do
    _show_in_ipython()
    model = _spec_of(idata, None)
    if model is not None:  # units on the titles and axis labels ArviZ wrote
        units = {}
        for v in var_names:
            of = sites.parse_omega(v)
            if (of or v) in model.parameters:
                units[v] = "1" if of else model.parameters[v].unit
        for ax in (a for a in np.ravel(axes) if a is not None):
            if ax.get_title() in units:
                ax.set_title(label(ax.get_title(), units[ax.get_title()]), fontsize=10)
            if ax.get_xlabel() in units:
                ax.set_xlabel(label(ax.get_xlabel(), units[ax.get_xlabel()]))
            if ax.get_ylabel() in units:
                ax.set_ylabel(label(ax.get_ylabel(), units[ax.get_ylabel()]))
    fig.suptitle(
        f"{post.attrs.get('model', '')} posterior ({post.attrs.get('method', '')})".strip(),
        fontsize=11,
    )
    return fig
