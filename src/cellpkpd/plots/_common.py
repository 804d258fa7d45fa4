"""Shared helpers of the plot functions: figures without pyplot, units, log axes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..model import ModelSpec


def _show_in_ipython() -> None:
    """Let IPython/Jupyter show a Figure that is a cell's value as a PNG (pyplot's inline
    backend does this only for figures made with pyplot). Runs only where IPython is
    already loaded, and once."""
    import sys

    if "IPython" not in sys.modules or getattr(_show_in_ipython, "done", False):
        return
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return
    from IPython.core.pylabtools import print_figure
    from matplotlib.figure import Figure

    formatter = shell.display_formatter.formatters["image/png"]
    formatter.for_type(Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight", dpi=100))
    _show_in_ipython.done = True  # type: ignore[attr-defined]


def new_figure(width: float, height: float) -> Figure:
    """A Figure with an Agg canvas, not registered with pyplot (no global state; Jupyter
    shows it when it is a cell's value, ``fig.savefig`` writes it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _show_in_ipython()
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def label(name: str, unit: str | None) -> str:
    """``name [unit]``, or the name alone when the unit is empty."""
    return f"{name} [{unit}]" if unit else name


def unit_of(name: str, attrs: dict[str, Any] | None = None, spec: ModelSpec | None = None) -> str:
    """The unit of a result variable: its ``unit`` attribute, else the model's."""
    if attrs and attrs.get("unit"):
        return str(attrs["unit"])
    if spec is not None:
        item = spec.observations.get(name) or spec.states.get(name)
        if item is not None:
            return item.unit
    return ""


def log_axis(ax: Axes, values: np.ndarray, axis: str = "y", decades: float = 6.0) -> None:
    """Logarithmic axis limited to the `decades` below the largest positive value (so a
    washout to 1e-300 does not squash the curve), labelled 1, 2, 5 x 10^k over a narrow
    range and with plain numbers throughout."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    v = np.asarray(values, dtype=float)
    positive = v[np.isfinite(v) & (v > 0)]
    which = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log", nonpositive="mask")
    if not positive.size:
        return
    high = positive.max() * 1.5
    low = max(positive.min(), positive.max() * 10.0**-decades) / 1.5
    (ax.set_ylim if axis == "y" else ax.set_xlim)(low, high)
    # 1, 2, 5 x 10^k over a narrow range; on an x axis only up to 2 decades, where labels
    # such as "5e+08" would otherwise run into each other
    if high / low < (1e2 if axis == "x" else 1e3):
        which.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        which.set_minor_formatter(NullFormatter())
    which.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))


def grid_shape(n: int, ncols: int | None = None) -> tuple[int, int]:
    """Rows and columns for `n` panels: one column up to 3 panels, then 2 or 3 columns."""
    if ncols is None:
        ncols = 1 if n <= 3 else (2 if n <= 8 else 3)
    ncols = max(1, min(ncols, n))
    return -(-n // ncols), ncols
