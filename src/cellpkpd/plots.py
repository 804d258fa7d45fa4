"""Plots of cellpkpd results (matplotlib; every function returns the Figure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure

    from .model import ModelSpec

__all__ = ["timecourse"]


def timecourse(
    res: xr.Dataset,
    outputs: Sequence[str] | None = None,
    *,
    spec: ModelSpec | None = None,
    log: bool = False,
    title: str | None = None,
    labels: Sequence[str] | None = None,
) -> Figure:
    """Time courses of a `cp.simulate` result: one panel per output, one line per subject.

    Parameters
    ----------
    res : xarray.Dataset
        Result of `cp.simulate` (dims ``subject``, ``time``).
    outputs : sequence of str, optional
        Variables to draw (default: every variable of `res`).
    spec : ModelSpec, optional
        Adds each output's description as the panel title.
    log : bool
        Logarithmic y axes (zeros are left out).
    title : str, optional
        Figure title (default: the model name).
    labels : sequence of str, optional
        Legend label per subject.

    Returns
    -------
    matplotlib.figure.Figure
        Axes labelled with names and units (``conc [mg/L]``, ``time [h]``).
    """
    names = list(outputs) if outputs is not None else list(res.data_vars)
    title = res.attrs.get("model", "") if title is None else title
    time_unit = res["time"].attrs.get("unit", res.attrs.get("time_unit", ""))
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig = Figure(figsize=(9.0, 1.2 + 2.8 * len(names)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    t = np.asarray(res["time"].values)
    subjects = res["subject"].values
    labels = labels or [f"subject {s}" for s in subjects]
    for ax, name in zip(axes, names, strict=True):
        values = np.asarray(res[name].values)
        for i in range(len(subjects)):
            ax.plot(t, values[i], lw=1.3, label=labels[i])
        unit = res[name].attrs.get("unit", "")
        ax.set_ylabel(f"{name} [{unit}]" if unit else name)
        item = None if spec is None else spec.observations.get(name) or spec.states.get(name)
        if item is not None and item.description:
            ax.set_title(item.description, loc="left", fontsize=10)
        positive = values[np.isfinite(values) & (values > 0)]
        if log and positive.size:
            ax.set_yscale("log", nonpositive="mask")  # zeros (before the first dose) left out
            # keep the axis on the part a reader cares about (not 1e-300 after a washout)
            low = max(positive.min(), positive.max() * 1e-6) / 1.5
            ax.set_ylim(bottom=low, top=positive.max() * 1.5)
            if positive.max() / low < 1e3:  # few decades: label 1, 2, 5 x 10^k
                ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_minor_formatter(NullFormatter())
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(True, which="major", alpha=0.35)
        ax.margins(x=0)
    axes[-1].set_xlabel(f"time [{time_unit}]" if time_unit else "time")
    if 1 < len(subjects) <= 12:
        axes[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(title, fontsize=11)
    return fig
