"""Plots of batch results: dose-response and target attainment from `cp.dose_ranging`
tables, Sobol indices from `cp.gsa.sobol`, metric histograms from `cp.sweep`.

Every function returns the matplotlib Figure (an Agg canvas, no pyplot state); axes carry
names and units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr
    from matplotlib.figure import Figure

__all__ = ["dose_response", "metric_histograms", "sobol", "target_attainment"]

_SUMMARY = {
    "arm",
    "dose",
    "metric",
    "unit",
    "median",
    "p05",
    "p95",
    "n",
    "n_failed",
    "target",
    "pta",
}


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _label(name: str, unit: str | None) -> str:
    return f"{name} [{unit}]" if unit else name


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (float, int, np.floating, np.integer)) else str(v)


def _groups(
    rows: pd.DataFrame, by: Sequence[str] | None
) -> list[tuple[str, pd.DataFrame, dict[str, Any]]]:
    """Split rows into the lines of a dose plot: one per level of the factors other than dose
    (those that vary), labelled "single, viability = 0.9". Styles: colour follows the first
    factor, marker and dash pattern the others, so lines that coincide stay visible."""
    if by is None:
        by = [c for c in rows.columns if c not in _SUMMARY and rows[c].nunique(dropna=False) > 1]
    by = list(by)
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


def _log_format(axis: Any) -> None:
    """Powers of ten as 10^k, other ticks as plain numbers."""
    from matplotlib.ticker import FuncFormatter

    def fmt(v: float, _: Any) -> str:
        k = np.log10(v) if v > 0 else np.nan
        if np.isfinite(k) and abs(k - round(k)) < 1e-9 and abs(k) >= 3:
            return f"$10^{{{round(k)}}}$"
        return f"{v:g}"

    axis.set_major_formatter(FuncFormatter(fmt))


def _dose_axis(ax: Any, doses: np.ndarray, log_x: bool | None, unit: str) -> None:
    d = doses[np.isfinite(doses) & (doses > 0)]
    if log_x is None:
        log_x = d.size > 1 and d.max() / d.min() >= 20.0  # spans 1.3 decades or more
    if log_x:
        ax.set_xscale("log")
        _log_format(ax.xaxis)
    ax.set_xlabel(_label("dose", unit))


def _rows(table: pd.DataFrame, metric: str | None, where: str) -> tuple[str, pd.DataFrame]:
    from ..errors import SpecError

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
        Logarithmic dose axis (default: when the doses span two decades or more).
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
        percentile), and a dashed line at the target when the table has one.
    """
    metric, rows = _rows(table, metric, "plots.dose_response")
    unit = str(rows["unit"].iloc[0]) if "unit" in rows else ""
    dose_unit = table.attrs.get("dose_unit", "") if dose_unit is None else dose_unit
    fig = _figure(7.5, 4.6)
    ax = fig.subplots()
    for name, part, style in _groups(rows, by):
        x = part["dose"].to_numpy(float)
        ax.fill_between(x, part["p05"], part["p95"], color=style["color"], alpha=0.15, lw=0)
        ax.plot(x, part["median"], lw=1.8, ms=5, label=name or "median", **style)
    if "target" in rows and "pta" in rows:
        text = str(rows["target"].iloc[0])
        _, _, value = text.partition(" ")
        if value:
            ax.axhline(float(value), color="0.3", ls="--", lw=1.0, label=f"target {text} {unit}")
    _dose_axis(ax, rows["dose"].to_numpy(float), log_x, dose_unit)
    band = rows[["p05", "median", "p95"]].to_numpy(float)
    band = band[np.isfinite(band)]
    if log_y is None:
        log_y = bool(band.size) and band.min() > 0 and band.max() / band.min() >= 100.0
    if log_y:
        ax.set_yscale("log")
        _log_format(ax.yaxis)
    ax.set_ylabel(_label(metric, unit))
    n = int(rows["n"].max()) if "n" in rows else 0
    ax.set_title(
        title or f"{metric}: median (line) and 5-95% range (band) over {n} virtual subjects",
        fontsize=10,
    )
    ax.grid(True, which="major", alpha=0.35)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def target_attainment(
    table: pd.DataFrame,
    metric: str | None = None,
    *,
    by: Sequence[str] | None = None,
    log_x: bool | None = None,
    dose_unit: str | None = None,
    title: str | None = None,
) -> Figure:
    """Probability of target attainment (% of virtual subjects) against dose.

    Parameters
    ----------
    table : pandas.DataFrame
        From `cp.dose_ranging` with a target.
    metric : str, optional
        Metric whose target to draw (default: the only metric with a target).
    by, log_x, dose_unit, title
        As in `dose_response`.

    Returns
    -------
    matplotlib.figure.Figure
        One line per group; y axis 0-100 %.
    """
    from ..errors import SpecError

    if "pta" not in table:
        raise SpecError("plots.target_attainment: the table has no 'pta' column (give target=)")
    if metric is None:
        targeted = list(dict.fromkeys(table.loc[table["pta"].notna(), "metric"]))
        if len(targeted) != 1:
            raise SpecError(
                "plots.target_attainment: pick metric= among " + ", ".join(map(str, targeted))
            )
        metric = targeted[0]
    metric, rows = _rows(table, metric, "plots.target_attainment")
    if rows["pta"].isna().all():
        raise SpecError(f"plots.target_attainment: metric '{metric}' has no target")
    unit = str(rows["unit"].iloc[0]) if "unit" in rows else ""
    dose_unit = table.attrs.get("dose_unit", "") if dose_unit is None else dose_unit
    fig = _figure(7.5, 4.6)
    ax = fig.subplots()
    for name, part, style in _groups(rows, by):
        x = part["dose"].to_numpy(float)
        ax.plot(x, 100.0 * part["pta"], lw=1.8, ms=5, label=name, **style)
    _dose_axis(ax, rows["dose"].to_numpy(float), log_x, dose_unit)
    ax.set_ylim(-3, 103)
    ax.set_ylabel("probability of target attainment [%]")
    target = f"{metric} {rows['target'].iloc[0]} {unit}".strip()
    n = int(rows["n"].max()) if "n" in rows else 0
    ax.set_title(title or f"target: {target} ({n} virtual subjects per arm)", fontsize=10)
    ax.grid(True, alpha=0.35)
    if any(name for name, _, _ in _groups(rows, by)):
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


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
    from ..errors import SpecError

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
    fig = _figure(max(5.0, 1.2 + 0.9 * n_par), 0.9 + 2.8 * len(names))
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
    fig = _figure(4.8 * ncols + 0.6, 0.8 + 2.8 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    from matplotlib.ticker import MaxNLocator

    ok = np.asarray(ds["status"].values) == 0 if "status" in ds else True
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
        ax.set_xlabel(_label(m, unit))
        ax.set_ylabel("samples")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.35)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    n = int(np.size(ds["status"])) if "status" in ds else 0
    fig.suptitle(title or f"{n} samples", fontsize=11)
    return fig
