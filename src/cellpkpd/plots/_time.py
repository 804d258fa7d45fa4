"""Time courses and biodistribution of `cp.simulate` results; their panel grid, panel titles,
time labels and organ line styles, which `cp.explore` draws alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.errors import SpecError
from ._common import grid_shape, label, log_axis, new_figure, short_number, unit_of, wrap

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure

    from ..spec.model import ModelSpec

# band colours of the percentile intervals, widest first
_BAND_ALPHA = (0.18, 0.35, 0.5)
# line styles of the organs' lines, each for ten colours
_ORGAN_STYLES = ("-", "--", "-.", ":")
#: most panels of a stacked biodistribution: msc_pbk after an IV dose needs four on a linear
#: time axis (lung; liver and the rest; heart and target; the blood, seen for its first hour)
_MAX_TIERS = 4


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
    names = _timecourse_names(res, outputs)
    title = res.attrs.get("model", "") if title is None else title
    time_unit = _time_unit(res, spec)
    fig, grid = _panel_grid(len(names), ncols)
    ncols = grid.shape[1]
    t = np.asarray(res["time"].values, dtype=float)
    keep = _kept_times(t, log_time, "timecourse")
    t = t[keep]
    n, bands, labels = _subject_labels(res, bands, labels)
    for ax, name in zip(grid.ravel(), names, strict=False):
        values = _draw_output(ax, res, name, t, keep, spec, bands, labels, percentiles)
        _panel_title(ax, spec, name, ncols)
        if log:
            log_axis(ax, values)
        if log_time:
            log_axis(ax, t, axis="x", decades=np.inf)
        ax.grid(True, which="major", alpha=0.35)
        ax.margins(x=0)
    _time_labels(grid, len(names), time_unit)
    _subjects_legend(fig, grid.ravel()[0], n, bands, ncols)
    fig.suptitle(wrap(title, int(12 * fig.get_figwidth())), fontsize=11)
    return fig


def _timecourse_names(res: xr.Dataset, outputs: Sequence[str] | str | None) -> list[str]:
    """The outputs `timecourse` draws (one name as a string is one panel), checked."""
    if isinstance(outputs, str):
        outputs = [outputs]
    names = list(outputs) if outputs is not None else list(res.data_vars)
    _check_outputs(res, names, "timecourse")
    if not names:
        raise SpecError("timecourse: the result has no variables to draw")
    return names


def _subject_labels(
    res: xr.Dataset, bands: bool | None, labels: Sequence[str] | None
) -> tuple[int, bool, list[str]]:
    """The number of subjects of `res`, whether `timecourse` draws bands (by default for
    more than 12), and the legend label of each subject's line, checked."""
    subjects = res["subject"].values
    n = len(subjects)
    bands = n > 12 if bands is None else bands
    labels = list(labels) if labels is not None else [f"subject {s}" for s in subjects]
    if not bands and len(labels) != n:
        raise SpecError(
            f"timecourse: labels has {len(labels)} entries; expected {n} (one per subject)"
        )
    return n, bands, labels


def _draw_output(
    ax: Any,
    res: xr.Dataset,
    name: str,
    t: np.ndarray,
    keep: np.ndarray,
    spec: ModelSpec | None,
    bands: bool,
    labels: list[str],
    percentiles: Sequence[tuple[float, float]],
) -> np.ndarray:
    """One panel of `timecourse`: output `name` at the times kept, as median and bands or
    one line per subject (fractions of the dose in %), and its y label; the values drawn."""
    values = np.asarray(res[name].values, dtype=float)[:, keep]
    unit = unit_of(name, res[name].attrs, spec)
    if _percent_of_dose(name, unit):
        values, unit = 100.0 * values, "% of dose"
    if bands:
        _bands(ax, t, values, percentiles, "C0", None)
    else:
        for i in range(len(values)):
            ax.plot(t, values[i], lw=1.3, label=labels[i])
    ax.set_ylabel(label(name, unit))
    return values


def _panel_grid(n: int, ncols: int | None = None) -> tuple[Figure, np.ndarray]:
    """A figure with a grid of `n` time-course panels sharing the time axis (`grid_shape`),
    wider for a single column (room for a legend beside it); the axes as a 2-d array."""
    nrows, ncols = grid_shape(n, ncols)
    fig = new_figure(4.6 * ncols + (1.6 if ncols == 1 else 0.0), 1.2 + 2.6 * nrows)
    return fig, fig.subplots(nrows, ncols, sharex=True, squeeze=False)


def _panel_title(ax: Any, spec: ModelSpec | None, name: str, ncols: int) -> None:
    """The description of output `name` in `spec` (if any) as the panel's title, wrapped
    to the width of a panel."""
    width = 60 if ncols == 1 else 45  # characters of a panel title at font size 9
    item = None if spec is None else spec.observations.get(name) or spec.states.get(name)
    if item is not None and item.description:
        ax.set_title(wrap(item.description, width), loc="left", fontsize=9)


def _time_labels(grid: np.ndarray, n: int, time_unit: str) -> None:
    """Hide the panels of `grid` beyond the first `n`; a time label under the bottom row,
    and under the panels above an incomplete bottom row."""
    nrows, ncols = grid.shape
    for ax in grid.ravel()[n:]:
        ax.set_visible(False)
    for ax in grid[-1]:
        ax.set_xlabel(label("time", time_unit))
    if n % ncols and nrows > 1:  # bottom row incomplete: label the panel above
        for ax in grid[-2, n % ncols :]:
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel(label("time", time_unit))


def _subjects_legend(fig: Figure, ax: Any, n: int, bands: bool, ncols: int) -> None:
    """The legend of `timecourse`: of the bands in the first panel; of up to 12 subjects'
    lines beside a single column, or under a grid of panels; none for one subject or more
    than 12 lines."""
    if bands:
        ax.legend(fontsize=8, loc="best", title=f"{n} subjects", title_fontsize=8)
    elif 1 < n <= 12 and ncols == 1:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    elif 1 < n <= 12:  # a grid of panels: one legend under all of them
        handles, texts = ax.get_legend_handles_labels()
        fig.legend(
            handles, texts, loc="outside lower center", ncols=min(n, 4), fontsize=8, frameon=False
        )


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
        again in a panel below on a scale of their own, up to four panels.
    log_time : bool
        Logarithmic time axis (the first minutes and the following days on one axis;
        time 0 is left out).
    log : bool, optional
        Logarithmic fraction axis (lines only; default: when the organs' peak fractions
        span more than two decades). The axis then spans 5 decades below the peak; an
        organ whose curve lies wholly below it is named in the legend with its peak and
        "below the axis" (e.g. the blood a few minutes after a mouse's IV dose).
    percent : bool
        Fractions in % of the dose (else as a fraction, unit 1).
    title : str, optional
        Figure title (default: the model name).

    Returns
    -------
    matplotlib.figure.Figure
        One axes (stacked: one to four): ``fraction of dose [%]`` against ``time [h]``,
        a legend per organ.

    Raises
    ------
    SpecError
        No ``frac_*`` variables and no `organs`, amount variables without `dose`, an
        unknown `kind`, `log_time` with no time > 0.
    """
    organs, scale = _organs(res, spec, organs, dose, kind, percent)
    t = np.asarray(res["time"].values, dtype=float)
    keep = _kept_times(t, log_time, "biodistribution")
    t = t[keep]
    curves, names = _organ_curves(res, organs, keep, scale)
    if kind == "stacked":
        fig, axes, handles, texts = _stacked(t, organs, curves, names, log_time)
    else:
        fig, axes, handles, texts = _organ_lines(t, organs, curves, names, log)
    for ax in axes:
        if log_time:
            log_axis(ax, t, axis="x", decades=12.0)
        ax.set_ylabel(label("fraction of dose", "%" if percent else "1"))
        ax.grid(True, which="major", alpha=0.35)
        ax.margins(x=0)
    axes[-1].set_xlabel(label("time", _time_unit(res, spec)))
    n = res.sizes["subject"]
    axes[0].legend(
        handles, texts, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
        frameon=False, title=f"median of {n} subjects" if n > 1 else None, title_fontsize=8,
    )  # fmt: skip
    model = res.attrs.get("model", spec.name if spec is not None else "")
    heading = f"{model}: biodistribution" if title is None else title
    fig.suptitle(wrap(heading, int(12 * fig.get_figwidth())), fontsize=11)
    return fig


def _organs(
    res: xr.Dataset,
    spec: ModelSpec | None,
    organs: Sequence[str] | None,
    dose: float | None,
    kind: str,
    percent: bool,
) -> tuple[list[str], float]:
    """The variables `biodistribution` draws (default: the ``frac_*`` ones), checked, and
    the factor from their values to the fraction of the dose drawn (% or 1, over `dose`)."""
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
    return organs, scale


def _organ_curves(
    res: xr.Dataset, organs: list[str], keep: np.ndarray, scale: float
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each organ's median over subjects at the times kept, times `scale`, and its name
    in the legend (``frac_`` dropped, spaces for underscores)."""
    with np.errstate(all="ignore"):
        curves = {
            o: np.nanmedian(np.asarray(res[o].values, dtype=float)[:, keep], axis=0) * scale
            for o in organs
        }
    names = {
        o: o[5:].replace("_", " ") if o.startswith("frac_") else o.replace("_", " ") for o in organs
    }
    return curves, names


def _organ_style(i: int) -> dict[str, str]:
    """Colour and line style of the i-th organ's line: ten colours, then other dashes."""
    return {"color": f"C{i % 10}", "ls": _ORGAN_STYLES[(i // 10) % 4]}


def _wide_range(curves: Sequence[np.ndarray]) -> bool:
    """Whether the peaks (> 0) of `curves` span more than two decades: the default of a
    logarithmic fraction axis."""
    peaks = np.array([np.nanmax(c) if c.size else np.nan for c in curves])
    peaks = peaks[np.isfinite(peaks) & (peaks > 0)]
    return bool(peaks.size) and peaks.max() / peaks.min() > 100.0


def _organ_lines(
    t: np.ndarray,
    organs: list[str],
    curves: dict[str, np.ndarray],
    names: dict[str, str],
    log: bool | None,
) -> tuple[Figure, list[Any], list[Any], list[str]]:
    """One line per organ on one axes (logarithmic if `log`, by default when `_wide_range`);
    the figure, its axes and the legend's handles and texts."""
    fig = new_figure(8.6, 4.6)
    ax = fig.subplots()
    for i, o in enumerate(organs):
        ax.plot(t, curves[o], **_organ_style(i), lw=1.6, label=names[o])
    if log is None:
        log = _wide_range(list(curves.values()))
    if log:
        log_axis(ax, np.concatenate(list(curves.values())), decades=5.0)
        floor = min(ax.get_ylim())
        for line, o in zip(ax.get_lines(), organs, strict=True):
            # an organ whose whole curve lies under the axis (5 decades below the largest)
            # would sit in the legend with no line to see: the legend says so
            with np.errstate(all="ignore"):
                peak = np.nanmax(curves[o]) if curves[o].size else np.nan
            if not peak >= floor:
                shown = short_number(peak, 2) if np.isfinite(peak) else "none"
                line.set_label(f"{names[o]} (peak {shown}: below the axis)")
    handles, texts = ax.get_legend_handles_labels()
    return fig, [ax], handles, texts


def _stacked(
    t: np.ndarray,
    organs: list[str],
    curves: dict[str, np.ndarray],
    names: dict[str, str],
    log_time: bool,
) -> tuple[Figure, list[Any], list[Any], list[str]]:
    """Organs stacked in areas, in up to four panels (`_stack_tiers`: the organs too small
    to see in one are stacked again below it); the figure, its axes and the legend's
    handles and texts, from the top of the stack down as the areas lie."""
    colors = {o: _organ_style(i)["color"] for i, o in enumerate(organs)}
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
    handles, texts = axes[0].get_legend_handles_labels()
    return fig, axes, handles[::-1], texts[::-1]


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
    there and is stacked again in the next panel (`_MAX_TIERS` at most). That panel's height is
    the largest sum of its organs at the times when each of them was under `share` of the
    panel above (a spike, e.g. the dose in blood at time 0, shown above, runs off its
    top)."""
    span = float(np.ptp(x)) if x.size else 0.0
    xs = (x - x.min()) / span if span > 0 else np.zeros_like(x)
    organs = sorted(curves, key=lambda o: -float(np.mean(curves[o])) if curves[o].size else 0.0)
    where = np.ones(x.shape, dtype=bool)
    tiers: list[tuple[list[str], float]] = []
    while organs and len(tiers) < _MAX_TIERS:
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
        # the times at which each of them was too small to see (every one, not their sum:
        # heart, target and blood at 0.003, 0.002 and 1e-4 % of the dose each lie under
        # 2 % of a 0.17 % panel while their sum does not, and a height taken only where the
        # sum did clipped the top of the stack, the blood)
        where = np.all([curves[o] < share * top for o in small], axis=0)
        organs = small
    return tiers
