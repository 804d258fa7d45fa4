"""Time courses and biodistribution of `cp.simulate` results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .._core.errors import SpecError
from ._common import grid_shape, label, log_axis, new_figure, unit_of, wrap

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure

    from ..spec.model import ModelSpec

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


def _kept_times(t: np.ndarray, log_time: bool, where: str) -> np.ndarray:
    """Which times to draw: all, or on a log time axis those > 0 (silently; a dose at
    time 0 is the usual first output)."""
    if not log_time:
        return np.ones_like(t, dtype=bool)
    keep = t > 0
    if not keep.any():
        raise SpecError(f"{where}: log_time=True needs times > 0; the result has none")
    return keep


def _percent_of_dose(name: str, unit: str) -> bool:
    """A fraction of the dose (msc_pbk's ``frac_*`` observations, unit 1), drawn in % of
    the dose by `timecourse` as by `biodistribution`."""
    return name.startswith("frac_") and unit in ("", "1")


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
    log_time: bool = False,
    title: str | None = None,
    labels: Sequence[str] | None = None,
    bands: bool | None = None,
    percentiles: Sequence[tuple[float, float]] = ((5.0, 95.0), (25.0, 75.0)),
    ncols: int | None = None,
) -> Figure:
    """Time courses of a `cp.simulate` result: one panel per output (state or observation).

    With a few subjects, one line per subject; with many (or ``bands=True``), the median
    over subjects and shaded percentile bands (by default the 5-95th and 25-75th).
    Fractions of the dose (``frac_*`` outputs of unit 1) are drawn in % of the dose, as
    in `biodistribution`.

    Parameters
    ----------
    res : xarray.Dataset
        Result of `cp.simulate` (dims ``subject``, ``time``).
    outputs : sequence of str, optional
        Variables to draw, one panel each (default: every variable of `res`).
    spec : ModelSpec, optional
        Adds each output's description as the panel title (wrapped to fit the panel),
        and its unit where the result has none.
    log : bool
        Logarithmic y axes (zeros, e.g. before the first dose, are left out; the axis
        spans at most 6 decades below the peak).
    log_time : bool
        Logarithmic time axis (the first minutes and the following days on one axis);
        times <= 0 are left out.
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
        An output that is not a (subject, time) variable of `res`; `log_time` with no
        time > 0.
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
    keep = _kept_times(t, log_time, "timecourse")
    t = t[keep]
    subjects = res["subject"].values
    n = len(subjects)
    bands = n > 12 if bands is None else bands
    labels = list(labels) if labels is not None else [f"subject {s}" for s in subjects]
    if not bands and len(labels) != n:
        raise SpecError(
            f"timecourse: labels has {len(labels)} entries; expected {n} (one per subject)"
        )
    width = 60 if ncols == 1 else 45  # characters of a panel title at font size 9
    for ax, name in zip(axes, names, strict=False):
        values = np.asarray(res[name].values, dtype=float)[:, keep]
        unit = unit_of(name, res[name].attrs, spec)
        if _percent_of_dose(name, unit):
            values, unit = 100.0 * values, "% of dose"
        if bands:
            _bands(ax, t, values, percentiles, "C0", None)
        else:
            for i in range(n):
                ax.plot(t, values[i], lw=1.3, label=labels[i])
        ax.set_ylabel(label(name, unit))
        item = None if spec is None else spec.observations.get(name) or spec.states.get(name)
        if item is not None and item.description:
            ax.set_title(wrap(item.description, width), loc="left", fontsize=9)
        if log:
            log_axis(ax, values)
        if log_time:
            log_axis(ax, t, axis="x", decades=np.inf)
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
    fig.suptitle(wrap(title, int(12 * fig.get_figwidth())), fontsize=11)
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
        One line per organ, or areas stacked to the fraction of the dose accounted for
        (linear axis from 0, the organ with the largest mean share at the bottom). Organs
        too small to see there (under 2 % of the axis height but for at most 1 % of the
        time axis, e.g. the liver beside a lung that holds 90 % of the dose) are stacked
        again in a panel below on a scale of their own, up to three panels.
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
        One axes (stacked: one to three): ``fraction of dose [%]`` against ``time [h]``,
        a legend per organ.

    Raises
    ------
    SpecError
        No ``frac_*`` variables and no `organs`, amount variables without `dose`, an
        unknown `kind`, `log_time` with no time > 0.
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
    keep = _kept_times(t, log_time, "biodistribution")
    t = t[keep]
    n = res.sizes["subject"]
    with np.errstate(all="ignore"):
        curves = {
            o: np.nanmedian(np.asarray(res[o].values, dtype=float)[:, keep], axis=0) * scale
            for o in organs
        }
    names = {
        o: o[5:].replace("_", " ") if o.startswith("frac_") else o.replace("_", " ") for o in organs
    }
    colors = {o: f"C{i % 10}" for i, o in enumerate(organs)}
    if kind == "stacked":
        curves = {o: np.clip(np.nan_to_num(c), 0.0, None) for o, c in curves.items()}
        tiers = _stack_tiers(np.log(t) if log_time else t, curves)
        fig = new_figure(8.6, 4.6 + 2.0 * (len(tiers) - 1))
        axes = list(
            fig.subplots(
                len(tiers), 1, sharex=True, squeeze=False,
                gridspec_kw={"height_ratios": [3] + [2] * (len(tiers) - 1)},
            )[:, 0]
        )  # fmt: skip
        for k, (ax, (tier, top)) in enumerate(zip(axes, tiers, strict=True)):
            ax.stackplot(
                t,
                [curves[o] for o in tier],
                labels=[names[o] for o in tier],
                colors=[colors[o] for o in tier],
                alpha=0.85,
            )
            if top > 0:
                ax.set_ylim(0.0, 1.05 * top)
            if k:
                ax.set_title("the organs too small to see above, enlarged", loc="left", fontsize=9)
        # legend from the top of the stack down, as the areas lie
        handles, texts = axes[0].get_legend_handles_labels()
        handles, texts = handles[::-1], texts[::-1]
    else:
        fig = new_figure(8.6, 4.6)
        ax = fig.subplots()
        axes = [ax]
        styles = ["-", "--", "-.", ":"]
        for i, o in enumerate(organs):
            ax.plot(t, curves[o], color=colors[o], ls=styles[(i // 10) % 4], lw=1.6, label=names[o])
        peaks = np.array([np.nanmax(c) if c.size else np.nan for c in curves.values()])
        peaks = peaks[np.isfinite(peaks) & (peaks > 0)]
        if log is None:
            log = bool(peaks.size) and peaks.max() / peaks.min() > 100.0
        if log:
            log_axis(ax, np.concatenate(list(curves.values())), decades=5.0)
        handles, texts = ax.get_legend_handles_labels()
    for ax in axes:
        if log_time:
            log_axis(ax, t, axis="x", decades=12.0)
        ax.set_ylabel(label("fraction of dose", "%" if percent else "1"))
        ax.grid(True, which="major", alpha=0.35)
        ax.margins(x=0)
    axes[-1].set_xlabel(label("time", _time_unit(res, spec)))
    axes[0].legend(
        handles,
        texts,
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        title=f"median of {n} subjects" if n > 1 else None,
        title_fontsize=8,
    )
    model = res.attrs.get("model", spec.name if spec is not None else "")
    heading = f"{model}: biodistribution" if title is None else title
    fig.suptitle(wrap(heading, int(12 * fig.get_figwidth())), fontsize=11)
    return fig


def _visible_width(x: np.ndarray, h: np.ndarray, level: float) -> float:
    """Length of `x` (scaled to 0..1) over which `h` >= `level`, interpolated linearly
    between samples."""
    if h.size < 2:
        return float(h.size > 0 and h[0] >= level)
    a, b = h[:-1], h[1:]
    with np.errstate(all="ignore"):
        part = np.clip((np.maximum(a, b) - level) / np.abs(b - a), 0.0, 1.0)
    part = np.where((a >= level) & (b >= level), 1.0, np.nan_to_num(part))
    return float(np.sum(part * np.diff(x)))


def _stack_tiers(
    x: np.ndarray, curves: dict[str, np.ndarray], share: float = 0.02, width: float = 0.01
) -> list[tuple[list[str], float]]:
    """Organs and height of each panel of a stacked biodistribution plot. The first holds
    every organ, the largest mean share at the bottom; an organ that reaches `share` of a
    panel's height over less than `width` of the time axis (`x`, as drawn) cannot be seen
    there and is stacked again in the next panel (three at most). That panel's height is
    the largest sum of its organs where they were under `share` of the panel above (a
    spike, e.g. the dose in blood at time 0, shown above, runs off its top)."""
    span = float(np.ptp(x)) if x.size else 0.0
    xs = (x - x.min()) / span if span > 0 else np.zeros_like(x)
    organs = sorted(curves, key=lambda o: -float(np.mean(curves[o])) if curves[o].size else 0.0)
    where = np.ones(x.shape, dtype=bool)
    tiers: list[tuple[list[str], float]] = []
    while organs and len(tiers) < 3:
        total = np.sum([curves[o] for o in organs], axis=0)
        top = float(total[where].max() if where.any() else total.max(initial=0.0))
        tiers.append((organs, top))
        small = [
            o
            for o in organs
            if curves[o].max(initial=0.0) > 0.0
            and _visible_width(xs, curves[o], share * top) < width
        ]
        if top <= 0.0 or not small or len(small) == len(organs):
            break
        where = np.sum([curves[o] for o in small], axis=0) < share * top
        organs = small
    return tiers
