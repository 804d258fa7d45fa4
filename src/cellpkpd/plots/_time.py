"""Time courses and biodistribution of `cp.simulate` results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import SpecError
from ._common import grid_shape, label, log_axis, new_figure, unit_of

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure

    from ..model import ModelSpec

# band colours of the percentile intervals, widest first
_BAND_ALPHA = (0.18, 0.35, 0.5)


def _time_unit(res: xr.Dataset, spec: ModelSpec | None) -> str:
    unit = res["time"].attrs.get("unit", res.attrs.get("time_unit", ""))
    return unit or (spec.time_unit if spec is not None else "")


def _check_outputs(res: xr.Dataset, names: Sequence[str], where: str) -> None:
    for name in names:
        if name not in res.data_vars:
            raise SpecError(
                f"{where}: '{name}' is not a variable of the result "
                f"(have: {', '.join(map(str, res.data_vars))})"
            )
        if tuple(res[name].dims) != ("subject", "time"):
            raise SpecError(
                f"{where}: '{name}' has dims {tuple(res[name].dims)}; expected "
                "('subject', 'time') as returned by cp.simulate(spec, regimen, times)"
            )


def _bands(
    ax: object,
    t: np.ndarray,
    values: np.ndarray,
    intervals: Sequence[tuple[float, float]],
    color: object,
    name: str | None,
) -> None:
    """Median line and shaded percentile intervals over subjects (axis 0)."""
    with np.errstate(all="ignore"):
        med = np.nanmedian(values, axis=0)
        for k, (lo, hi) in enumerate(sorted(intervals, key=lambda p: p[0] - p[1])):
            ax.fill_between(  # type: ignore[attr-defined]
                t,
                np.nanpercentile(values, lo, axis=0),
                np.nanpercentile(values, hi, axis=0),
                color=color,
                alpha=_BAND_ALPHA[min(k, len(_BAND_ALPHA) - 1)],
                lw=0,
                label=f"{name + ' ' if name else ''}{lo:g}-{hi:g}th percentile",
            )
    ax.plot(t, med, color=color, lw=1.8, label=f"{name + ' ' if name else ''}median")  # type: ignore[attr-defined]


def timecourse(
    res: xr.Dataset,
    outputs: Sequence[str] | None = None,
    *,
    spec: ModelSpec | None = None,
    log: bool = False,
    title: str | None = None,
    labels: Sequence[str] | None = None,
    bands: bool | None = None,
    percentiles: Sequence[tuple[float, float]] = ((5.0, 95.0), (25.0, 75.0)),
    ncols: int | None = None,
) -> Figure:
    """Time courses of a `cp.simulate` result: one panel per output (state or observation).

    With a few subjects, one line per subject; with many (or ``bands=True``), the median
    over subjects and shaded percentile bands (by default the 5-95th and 25-75th).

    Parameters
    ----------
    res : xarray.Dataset
        Result of `cp.simulate` (dims ``subject``, ``time``).
    outputs : sequence of str, optional
        Variables to draw, one panel each (default: every variable of `res`).
    spec : ModelSpec, optional
        Adds each output's description as the panel title, and its unit where the
        result has none.
    log : bool
        Logarithmic y axes (zeros, e.g. before the first dose, are left out; the axis
        spans at most 6 decades below the peak).
    title : str, optional
        Figure title (default: the model name).
    labels : sequence of str, optional
        Legend label per subject (line mode).
    bands : bool, optional
        Median and percentile bands instead of one line per subject (default: when
        there are more than 12 subjects).
    percentiles : sequence of (low, high)
        Percentile intervals of the bands [%].
    ncols : int, optional
        Columns of the panel grid (default: 1 up to 3 panels, then 2 or 3).

    Returns
    -------
    matplotlib.figure.Figure
        Axes labelled with names and units (``conc [mg/L]``, ``time [h]``).

    Raises
    ------
    SpecError
        An output that is not a (subject, time) variable of `res`.
    """
    if isinstance(outputs, str):
        outputs = [outputs]
    names = list(outputs) if outputs is not None else list(res.data_vars)
    _check_outputs(res, names, "timecourse")
    if not names:
        raise SpecError("timecourse: the result has no variables to draw")
    title = res.attrs.get("model", "") if title is None else title
    time_unit = _time_unit(res, spec)
    nrows, ncols = grid_shape(len(names), ncols)
    fig = new_figure(4.6 * ncols + (1.6 if ncols == 1 else 0.0), 1.2 + 2.6 * nrows)
    grid = fig.subplots(nrows, ncols, sharex=True, squeeze=False)
    axes = grid.ravel()
    t = np.asarray(res["time"].values, dtype=float)
    subjects = res["subject"].values
    n = len(subjects)
    bands = n > 12 if bands is None else bands
    labels = list(labels) if labels is not None else [f"subject {s}" for s in subjects]
    if not bands and len(labels) != n:
        raise SpecError(
            f"timecourse: labels has {len(labels)} entries; expected {n} (one per subject)"
        )
    for ax, name in zip(axes, names, strict=False):
        values = np.asarray(res[name].values, dtype=float)
        if bands:
            _bands(ax, t, values, percentiles, "C0", None)
        else:
            for i in range(n):
                ax.plot(t, values[i], lw=1.3, label=labels[i])
        ax.set_ylabel(label(name, unit_of(name, res[name].attrs, spec)))
        item = None if spec is None else spec.observations.get(name) or spec.states.get(name)
        if item is not None and item.description:
            text = (
                item.description if len(item.description) <= 70 else item.description[:67] + "..."
            )
            ax.set_title(text, loc="left", fontsize=9)
        if log:
            log_axis(ax, values)
        ax.grid(True, which="major", alpha=0.35)
        ax.margins(x=0)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    for ax in grid[-1]:
        ax.set_xlabel(label("time", time_unit))
    if len(names) % ncols and nrows > 1:  # bottom row incomplete: label the panel above
        for ax in grid[-2, len(names) % ncols :]:
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel(label("time", time_unit))
    if bands:
        axes[0].legend(fontsize=8, loc="best", title=f"{n} subjects", title_fontsize=8)
    elif 1 < n <= 12 and ncols == 1:
        axes[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    elif 1 < n <= 12:  # a grid of panels: one legend under all of them
        handles, texts = axes[0].get_legend_handles_labels()
        fig.legend(
            handles, texts, loc="outside lower center", ncols=min(n, 4), fontsize=8, frameon=False
        )
    fig.suptitle(title, fontsize=11)
    return fig


def biodistribution(
    res: xr.Dataset,
    spec: ModelSpec | None = None,
    *,
    organs: Sequence[str] | None = None,
    dose: float | None = None,
    kind: str = "lines",
    log_time: bool = False,
    log: bool | None = None,
    percent: bool = True,
    title: str | None = None,
) -> Figure:
    """Fraction of the dose in each organ over time.

    Parameters
    ----------
    res : xarray.Dataset
        Result of `cp.simulate`. With several subjects the median over subjects is drawn.
    spec : ModelSpec, optional
        Names the organs from the observations' descriptions and supplies units.
    organs : sequence of str, optional
        Variables to draw. Default: every ``frac_*`` variable (msc_pbk's fraction-of-
        dose observations, which divide by the cells dosed). Other
        variables (e.g. states, in amount units) need `dose`.
    dose : float, optional
        Divide the `organs` variables by this dose [amount unit] (for states or
        observations that are amounts, not fractions).
    kind : {"lines", "stacked"}
        One line per organ, or areas stacked to the fraction of the dose accounted for.
    log_time : bool
        Logarithmic time axis (the first minutes and the following days on one axis;
        time 0 is left out).
    log : bool, optional
        Logarithmic fraction axis (lines only; default: when the organs' peak fractions
        span more than two decades). The axis then spans 5 decades below the peak.
    percent : bool
        Fractions in % of the dose (else as a fraction, unit 1).
    title : str, optional
        Figure title (default: the model name).

    Returns
    -------
    matplotlib.figure.Figure
        One axes: ``fraction of dose [%]`` against ``time [h]``, a legend per organ.

    Raises
    ------
    SpecError
        No ``frac_*`` variables and no `organs`, amount variables without `dose`, an
        unknown `kind`.
    """
    if kind not in ("lines", "stacked"):
        raise SpecError(f"biodistribution: kind = {kind!r}; expected 'lines' or 'stacked'")
    if organs is None:
        organs = [v for v in res.data_vars if str(v).startswith("frac_")]
        if not organs:
            raise SpecError(
                "biodistribution: the result has no frac_* variables; pass organs= "
                "(e.g. the states) and dose="
            )
    organs = list(organs)
    _check_outputs(res, organs, "biodistribution")
    scale = 100.0 if percent else 1.0
    if dose is not None:
        if not np.isfinite(dose) or dose <= 0:
            raise SpecError(f"biodistribution: dose = {dose}; expected a positive amount")
        scale /= dose
    else:
        amounts = [o for o in organs if unit_of(o, res[o].attrs, spec) not in ("", "1")]
        if amounts:
            raise SpecError(
                f"biodistribution: {', '.join(amounts)} are amounts "
                f"[{unit_of(amounts[0], res[amounts[0]].attrs, spec)}], not fractions; "
                "pass dose="
            )
    t = np.asarray(res["time"].values, dtype=float)
    n = res.sizes["subject"]
    with np.errstate(all="ignore"):
        curves = {
            o: np.nanmedian(np.asarray(res[o].values, dtype=float), axis=0) * scale for o in organs
        }
    names = {
        o: o[5:].replace("_", " ") if o.startswith("frac_") else o.replace("_", " ") for o in organs
    }
    keep = t > 0 if log_time else np.ones_like(t, dtype=bool)
    fig = new_figure(8.6, 4.6)
    ax = fig.subplots()
    colors = [f"C{i % 10}" for i in range(len(organs))]
    styles = ["-", "--", "-.", ":"]
    if kind == "stacked":
        ax.stackplot(
            t[keep],
            [np.clip(curves[o][keep], 0.0, None) for o in organs],
            labels=[names[o] for o in organs],
            colors=colors,
            alpha=0.85,
        )
    else:
        for i, o in enumerate(organs):
            ax.plot(
                t[keep],
                curves[o][keep],
                color=colors[i],
                ls=styles[(i // 10) % 4],
                lw=1.6,
                label=names[o],
            )
        peaks = np.array([np.nanmax(c[keep]) for c in curves.values()])
        peaks = peaks[np.isfinite(peaks) & (peaks > 0)]
        if log is None:
            log = bool(peaks.size) and peaks.max() / peaks.min() > 100.0
        if log:
            log_axis(ax, np.concatenate([c[keep] for c in curves.values()]), decades=5.0)
    if log_time:
        log_axis(ax, t[keep], axis="x", decades=12.0)
    ax.set_xlabel(label("time", _time_unit(res, spec)))
    ax.set_ylabel(label("fraction of dose", "%" if percent else "1"))
    ax.grid(True, which="major", alpha=0.35)
    ax.margins(x=0)
    legend_title = f"median of {n} subjects" if n > 1 else None
    ax.legend(
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        title=legend_title,
        title_fontsize=8,
    )
    model = res.attrs.get("model", spec.name if spec is not None else "")
    fig.suptitle(f"{model}: biodistribution" if title is None else title, fontsize=11)
    return fig
