"""Plots of batch results: dose-response and target attainment from `cp.dose_ranging`
tables, Sobol indices from `cp.gsa.sobol`, metric histograms from `cp.sweep`.

Every function returns the matplotlib Figure (an Agg canvas, no pyplot state); axes carry
names and units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.solve import SOLVED
from ._common import label, log_axis, new_figure, short_number, wrap

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr
    from matplotlib.figure import Figure

__all__ = ["dose_response", "metric_histograms", "sobol", "target_attainment"]


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (float, int, np.floating, np.integer)) else str(v)


def _groups(
    rows: pd.DataFrame, by: Sequence[str] | None
) -> list[tuple[str, pd.DataFrame, dict[str, Any]]]:
    """Split rows into the lines of a dose plot: one per level of the factors other than dose
    (those that vary), labelled "single, viability = 0.9". Styles: colour follows the first
    factor, marker and dash pattern the others, so lines that coincide stay visible."""
    from ..analysis.doseranging import arm_factors

    by = arm_factors(rows) if by is None else list(by)
    if not by:
        return [("", rows, {"color": "C0", "marker": "o", "ls": "-"})]
    first = list(dict.fromkeys(rows[by[0]]))
    rest = list(dict.fromkeys(tuple(r) for r in rows[by[1:]].itertuples(index=False)))
    markers, dashes = "osD^vP*X", ["-", "--", ":", "-."]
    out = []
    for key, part in rows.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        words = [
            _fmt(v) if name == "regimen" else f"{name} = {_fmt(v)}"
            for name, v in zip(by, key, strict=True)
        ]
        i, j = first.index(key[0]), rest.index(tuple(key[1:]))
        style = {
            "color": f"C{i % 10}" if len(first) > 1 else f"C{j % 10}",
            "marker": markers[j % len(markers)] if len(first) > 1 else "o",
            "ls": dashes[j % len(dashes)] if len(first) > 1 else "-",
        }
        out.append((", ".join(words), part, style))
    return out


def _dose_axis(ax: Any, doses: np.ndarray, log_x: bool | None, unit: str) -> bool:
    """Dose axis, logarithmic (`log_x` None: when the doses span 1.3 decades or more) with
    a label at each dose given where they fit (`log_axis`). Returns whether it is log."""
    d = doses[np.isfinite(doses) & (doses > 0)]
    if log_x is None:
        log_x = d.size > 1 and d.max() / d.min() >= 20.0  # spans 1.3 decades or more
    if log_x:
        log_axis(ax, d, "x", decades=np.inf, ticks=d)
    ax.set_xlabel(label("dose", unit))
    return bool(log_x)


def _rows(table: pd.DataFrame, metric: str | None, where: str) -> tuple[str, pd.DataFrame]:
    from .._core.errors import SpecError

    if "metric" not in table or "dose" not in table:
        raise SpecError(f"{where}: expected a cp.dose_ranging table (columns dose, metric, ...)")
    metrics = list(dict.fromkeys(table["metric"]))
    if metric is None:
        if len(metrics) != 1:
            raise SpecError(f"{where}: the table has metrics {', '.join(metrics)}; pick metric=")
        metric = metrics[0]
    if metric not in metrics:
        raise SpecError(f"{where}: metric '{metric}' not in the table ({', '.join(metrics)})")
    return metric, table[table["metric"] == metric].sort_values("dose")


def dose_response(
    table: pd.DataFrame,
    metric: str | None = None,
    *,
    by: Sequence[str] | None = None,
    log_x: bool | None = None,
    log_y: bool | None = None,
    dose_unit: str | None = None,
    title: str | None = None,
) -> Figure:
    """Median and 5-95% range of a metric against dose, one line per regimen / attribute level.

    Parameters
    ----------
    table : pandas.DataFrame
        From `cp.dose_ranging`.
    metric : str, optional
        Metric to draw (required when the table has several).
    by : sequence of str, optional
        Factor columns that define the lines (default: every factor other than dose that
        takes more than one value).
    log_x : bool, optional
        Logarithmic dose axis (default: when the highest dose is 20 times the lowest or
        more). Its ticks are the doses given where they fit, else 1, 2, 5 x 10^k.
    log_y : bool, optional
        Logarithmic metric axis (default: when the metric is positive and its 5-95% bands
        span two decades or more, e.g. exposure proportional to dose over a wide range).
    dose_unit : str, optional
        Unit of the dose (default: ``table.attrs["dose_unit"]``, set by `cp.dose_ranging`).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        One Axes: a line with markers per group (median), a shaded band (5th to 95th
        percentile), and when the table has a target a dashed line at it and per group a
        dotted marker, labelled, at the lowest dose whose median meets it (interpolated
        between the doses given as in `target_attainment`); the legend gives that dose or
        says the target is not met.
    """
    metric, rows = _rows(table, metric, "plots.dose_response")
    unit = str(rows["unit"].iloc[0]) if "unit" in rows else ""
    dose_unit = table.attrs.get("dose_unit", "") if dose_unit is None else dose_unit
    fig = new_figure(7.5, 4.6)
    ax = fig.subplots()
    op, _, value = (str(rows["target"].iloc[0]) if "target" in rows else "").partition(" ")
    goal = float(value) if value and op in (">=", ">", "<=", "<") else None
    log = _dose_axis(ax, rows["dose"].to_numpy(float), log_x, dose_unit)
    band = rows[["p05", "median", "p95"]].to_numpy(float)
    band = band[np.isfinite(band)]
    if log_y is None:
        log_y = bool(band.size) and band.min() > 0 and band.max() / band.min() >= 100.0
    reached: list[tuple[float, str]] = []  # (dose, colour) where a median meets the target
    for name, part, style in _groups(rows, by):
        x = part["dose"].to_numpy(float)
        median = part["median"].to_numpy(float)
        ax.fill_between(x, part["p05"], part["p95"], color=style["color"], alpha=0.15, lw=0)
        text = name or "median"
        if goal is not None:
            dose = _meets(x, median, op, goal, log, bool(log_y))
            words = f"from {short_number(dose)} {dose_unit}".strip()
            # on a line of its own: one line would widen the legend and narrow the axes
            text += f"\ntarget met {words}" if np.isfinite(dose) else "\ntarget not met"
            if np.isfinite(dose):
                reached.append((dose, style["color"]))
        ax.plot(x, median, lw=1.8, ms=5, label=text, **style)
    if goal is not None:
        ax.axhline(goal, color="0.3", ls="--", lw=1.0, label=f"target {op} {value} {unit}")
    if log_y:
        log_axis(ax, band, "y", decades=np.inf)
    if goal is not None:
        limits = ax.get_ylim()
        _mark_doses(ax, reached, goal, log)
        ax.set_ylim(limits)  # the markers start at the floor: they do not move it
    ax.set_ylabel(label(metric, unit))
    n = int(rows["n"].max()) if "n" in rows else 0
    heading = f"{metric}: median (line) and 5-95% range (band) over {n} virtual subjects"
    ax.set_title(wrap(title or heading, 60), fontsize=10)
    ax.grid(True, which="major", alpha=0.35)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _meets(
    dose: np.ndarray, median: np.ndarray, op: str, goal: float, log_x: bool, log_y: bool
) -> float:
    """The lowest dose at which `median` meets ``op goal`` (NaN when none does), between
    the doses given as the plot draws them: linear in log(dose) on a log dose axis and in
    log(median) on a log metric axis (exact for a metric proportional to a power of the
    dose), by `cellpkpd.analysis.doseranging.attainment_dose`."""
    from ..analysis.doseranging import attainment_dose

    y, level = np.asarray(median, dtype=float), float(goal)
    if log_y and level > 0:
        with np.errstate(all="ignore"):
            y, level = np.log(np.where(y > 0, y, np.nan)), np.log(level)
    if op.startswith("<"):  # met from above: the curve falls to the target
        y, level = -y, -level
    return attainment_dose(dose, y, level, log_x)


def target_attainment(
    table: pd.DataFrame,
    metric: str | None = None,
    *,
    by: Sequence[str] | None = None,
    target: float | None = 0.9,
    log_x: bool | None = None,
    dose_unit: str | None = None,
    title: str | None = None,
) -> Figure:
    """Probability of target attainment (% of virtual subjects) against dose, and the
    lowest dose that reaches a target probability.

    Parameters
    ----------
    table : pandas.DataFrame
        From `cp.dose_ranging` with a target.
    metric : str, optional
        Metric whose target to draw (default: the only metric with a target).
    by : sequence of str, optional
        As in `dose_response`.
    target : float or None
        Target probability [1], in (0, 1]: a dashed line at ``100 * target`` %, and per
        line a dotted vertical marker and label at the lowest dose whose PTA reaches it
        (interpolated between the doses given, in log(dose) on a log dose axis; the
        lowest dose when that one reaches it; `cellpkpd.analysis.doseranging.attainment_dose`,
        and per group `dose_for_attainment`). The legend gives that dose, or says that
        no dose reaches the target. None: no line, no markers.
    log_x, dose_unit, title
        As in `dose_response`.

    Returns
    -------
    matplotlib.figure.Figure
        One line per group; y axis 0-100 %.

    Raises
    ------
    SpecError
        A table without PTA, a metric without target, a `target` outside (0, 1].
    """
    from .._core.errors import SpecError
    from ..analysis.doseranging import attainment_dose, targeted_metric

    if "pta" not in table:
        raise SpecError("plots.target_attainment: the table has no 'pta' column (give target=)")
    if target is not None and not 0.0 < target <= 1.0:
        raise SpecError(
            f"plots.target_attainment: target = {target!r}; expected a probability in (0, 1], "
            "e.g. 0.9"
        )
    if metric is None:
        metric = targeted_metric(table, "plots.target_attainment")
    metric, rows = _rows(table, metric, "plots.target_attainment")
    if rows["pta"].isna().all():
        raise SpecError(f"plots.target_attainment: metric '{metric}' has no target")
    unit = str(rows["unit"].iloc[0]) if "unit" in rows else ""
    dose_unit = table.attrs.get("dose_unit", "") if dose_unit is None else dose_unit
    fig = new_figure(7.5, 4.6)
    ax = fig.subplots()
    groups = _groups(rows, by)
    log = _dose_axis(ax, rows["dose"].to_numpy(float), log_x, dose_unit)
    ax.set_ylim(-3, 103)
    level = None if target is None else 100.0 * target
    reached: list[tuple[float, str]] = []  # (dose, colour) of each marker
    for name, part, style in groups:
        x = part["dose"].to_numpy(float)
        pta = part["pta"].to_numpy(float)
        text = name
        if target is not None:
            dose = attainment_dose(x, pta, target, log)
            words = (
                f"{level:g}% from {short_number(dose)} {dose_unit}".strip()
                if np.isfinite(dose)
                else f"{level:g}% not reached (highest {100 * np.nanmax(pta):.0f}%)"
            )
            text = f"{name or 'PTA'}: {words}"
            if np.isfinite(dose):
                reached.append((dose, style["color"]))
        ax.plot(x, 100.0 * pta, lw=1.8, ms=5, label=text, **style)
    if level is not None:
        ax.axhline(level, color="0.3", ls="--", lw=1.0, label=f"target PTA {level:g}%")
        _mark_doses(ax, reached, level, log)
    ax.set_ylabel("probability of target attainment [%]")
    goal = f"{metric} {rows['target'].iloc[0]} {unit}".strip()
    n = int(rows["n"].max()) if "n" in rows else 0
    ax.set_title(wrap(title or f"target: {goal} ({n} virtual subjects per arm)", 60), fontsize=10)
    ax.grid(True, alpha=0.35)
    if target is not None or any(name for name, _, _ in groups):
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _mark_doses(ax: Any, reached: list[tuple[float, str]], level: float, log: bool) -> None:
    """A dotted vertical line from the axis floor up to the target `level` at each dose of
    `reached`, labelled with the dose at the foot of the axis; a label closer than 4 % of
    the axis width to one already drawn is left out (the legend gives every dose)."""
    lo, hi = ax.get_xlim()
    floor = min(ax.get_ylim())

    def where(x: float) -> float:  # position as a fraction of the axis width
        if log:
            return float(np.log(x / lo) / np.log(hi / lo))
        return (x - lo) / (hi - lo)

    drawn: list[float] = []
    for dose, colour in sorted(reached):
        ax.plot([dose, dose], [floor, level], color=colour, ls=":", lw=1.4,
                gid="target dose", label="_target dose")  # fmt: skip
        if all(abs(where(dose) - w) >= 0.04 for w in drawn):
            ax.text(dose, 0.05, short_number(dose), rotation=90, ha="left", va="bottom",
                    fontsize=8, color=colour, gid="target dose",
                    transform=ax.get_xaxis_transform(),
                    bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1})  # fmt: skip
            drawn.append(where(dose))


def sobol(
    table: pd.DataFrame, metrics: Sequence[str] | None = None, *, title: str | None = None
) -> Figure:
    """Bar plot of first-order (S1) and total (ST) Sobol indices with 95% CI error bars.

    Parameters
    ----------
    table : pandas.DataFrame
        From `cp.gsa.sobol` or `cp.gsa.sobol_function` (metric, parameter, S1, S1_conf, ST,
        ST_conf).
    metrics : sequence of str, optional
        Metrics to draw, one panel each (default: all).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        One Axes per metric; indices are fractions of the metric's variance [1].
    """
    from .._core.errors import SpecError

    need = {"metric", "parameter", "S1", "S1_conf", "ST", "ST_conf"}
    if not need <= set(table.columns):
        raise SpecError(
            "plots.sobol: expected a cp.gsa table with columns " + ", ".join(sorted(need))
        )
    names = list(dict.fromkeys(table["metric"])) if metrics is None else list(metrics)
    for m in names:
        if m not in set(table["metric"]):
            raise SpecError(f"plots.sobol: metric '{m}' not in the table")
    n_par = table["parameter"].nunique()
    fig = new_figure(max(5.0, 1.2 + 0.9 * n_par), 0.9 + 2.8 * len(names))
    axes = np.atleast_1d(fig.subplots(len(names), 1, squeeze=False)[:, 0])
    for ax, m in zip(axes, names, strict=True):
        part = table[table["metric"] == m]
        x = np.arange(len(part))
        width = 0.38
        ax.bar(
            x - width / 2, part["S1"], width, yerr=part["S1_conf"], capsize=3,
            color="C0", label="first order S1",
        )  # fmt: skip
        ax.bar(
            x + width / 2, part["ST"], width, yerr=part["ST_conf"], capsize=3,
            color="C1", label="total ST",
        )  # fmt: skip
        labels = [str(v) for v in part["parameter"]]
        if max(len(v) for v in labels) > 8:  # long names would run into each other
            ax.set_xticks(x, labels, rotation=30, ha="right", rotation_mode="anchor")
        else:
            ax.set_xticks(x, labels)
        ax.axhline(0.0, color="0.2", lw=0.8)
        top = float(
            np.nanmax(part[["S1", "ST"]].to_numpy() + part[["S1_conf", "ST_conf"]].to_numpy())
        )
        ax.set_ylim(
            min(-0.05, float(np.nanmin(part["S1"] - part["S1_conf"])) - 0.02), max(1.05, top + 0.05)
        )
        ax.set_ylabel("Sobol index [1]")
        ax.set_title(f"{m}: share of variance (95% CI)", fontsize=10, loc="left")
        ax.grid(True, axis="y", alpha=0.35)
    axes[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    axes[-1].set_xlabel("input")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def metric_histograms(
    ds: xr.Dataset,
    metrics: Sequence[str] | None = None,
    *,
    units: Mapping[str, str] | None = None,
    bins: int | None = None,
    title: str | None = None,
) -> Figure:
    """Histograms of the metrics of a `cp.sweep` result (failed samples left out).

    Parameters
    ----------
    ds : xarray.Dataset
        From `cp.sweep` (dim ``sample``).
    metrics : sequence of str, optional
        Variables to draw (default: every variable with a ``metric`` attribute, else all
        but the inputs and ``status``).
    units : dict str -> str, optional
        Units (default: each variable's ``unit`` attribute).
    bins : int, optional
        Bins per histogram (default: about the square root of the sample count, 10 to 50).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        One panel per metric; x labelled with name and unit, y = number of samples. A
        metric with the same value in every sample gets a note saying so on its panel.
    """
    if metrics is None:
        metrics = [k for k in ds.data_vars if "metric" in ds[k].attrs] or [
            k for k in ds.data_vars if k != "status"
        ]
    metrics = list(metrics)
    ncols = 1 if len(metrics) <= 2 else 2
    nrows = -(-len(metrics) // ncols)
    fig = new_figure(4.8 * ncols + 0.6, 0.8 + 2.8 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    from matplotlib.ticker import MaxNLocator

    ok = np.asarray(ds["status"].values) == SOLVED if "status" in ds else True
    for ax, m in zip(axes, metrics, strict=False):
        v = np.asarray(ds[m].values, dtype=float)
        v = v[np.isfinite(v) & ok]
        unit = (units or {}).get(m, ds[m].attrs.get("unit", ""))
        nb = bins or int(np.clip(np.sqrt(max(v.size, 1)), 10, 50))
        ax.hist(v, bins=nb, color="C0", alpha=0.85)
        if v.size and np.ptp(v) == 0:  # one bar of matplotlib's default width: say so
            ax.text(
                0.5, 0.92, f"all {v.size} samples = {v[0]:.4g}", transform=ax.transAxes,
                ha="center", va="top", fontsize=8,
                bbox={"fc": "white", "ec": "0.7", "pad": 2},
            )  # fmt: skip
        ax.set_xlabel(label(m, unit))
        ax.set_ylabel("samples")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.35)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    n = int(np.size(ds["status"])) if "status" in ds else 0
    fig.suptitle(title or f"{n} samples", fontsize=11)
    return fig
