"""Shared helpers of the plot functions: figures without pyplot, units, log axes, numbers
and titles that fit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..spec.model import output_unit

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..spec.model import ModelSpec


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
    """The unit of a result variable: its ``unit`` attribute, else the model's
    (`cellpkpd.spec.model.output_unit`)."""
    if attrs and attrs.get("unit"):
        return str(attrs["unit"])
    return output_unit(spec, name) if spec is not None else ""


def short_number(x: float, digits: int = 3, sci: bool | None = None) -> str:
    """`x` to `digits` significant digits: a plain number (0.05, 250, 10000) or mantissa
    and exponent (2e7, 3.16e-5); `sci` picks one, None the plain form from 1e-3 to 1e4."""
    if not np.isfinite(x) or x == 0:
        return "0" if x == 0 else f"{x}"
    if sci is None:
        sci = not 1e-3 <= abs(x) < 1e4
    if not sci:
        return np.format_float_positional(float(f"{x:.{digits}g}"), trim="-")
    k = int(np.floor(np.log10(abs(x))))
    m = float(f"{x / 10.0**k:.{digits}g}")
    if abs(m) >= 10.0:  # 9.996 rounds up to 10
        m, k = m / 10.0, k + 1
    return f"{m:g}e{k}"


def _tick_formatter() -> Any:
    """A matplotlib formatter that writes every label of an axis in one style: plain
    numbers when all visible ticks lie in [1e-3, 1e4) (0.001, 0.5, 2000), else all as
    mantissa and exponent (1e7, 2e7, 5e-5), never a mix such as ``1e+06`` beside
    ``100000``."""
    from matplotlib.ticker import Formatter

    class OneStyle(Formatter):
        sci = False

        def set_locs(self, locs: Any) -> None:
            lo, hi = sorted(self.axis.get_view_interval()) if self.axis else (0.0, np.inf)
            shown = [v for v in locs if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9) and v > 0]
            self.sci = any(v < 1e-3 or v >= 1e4 for v in shown)

        def __call__(self, x: float, pos: int | None = None) -> str:
            return short_number(x, 6, self.sci) if np.isfinite(x) and x > 0 else ""

    return OneStyle()


def log_axis(
    ax: Axes,
    values: np.ndarray,
    axis: str = "y",
    decades: float = 6.0,
    ticks: np.ndarray | None = None,
) -> bool:
    """Logarithmic axis limited to the `decades` below the largest positive value (so a
    washout to 1e-300 does not squash the curve), with its labels in one style (see
    `short_number`).

    Ticks: at `ticks` (e.g. the doses of a dose-ranging table) when there are at most 12
    and no two lie closer than 1/15 of the axis; else at 1, 2, 5 x 10^k where the values
    span at most two decades, and at powers of ten beyond. Returns whether the ticks are
    the given `ticks`.
    """
    from matplotlib.ticker import FixedLocator, LogLocator, NullFormatter

    v = np.asarray(values, dtype=float)
    positive = v[np.isfinite(v) & (v > 0)]
    which = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log", nonpositive="mask")
    which.set_major_formatter(_tick_formatter())
    which.set_minor_formatter(NullFormatter())
    if not positive.size:
        return False
    top = positive.max()
    bottom = max(positive.min(), top * 10.0**-decades)
    high, low = top * 1.5, bottom / 1.5
    (ax.set_ylim if axis == "y" else ax.set_xlim)(low, high)
    at = None if ticks is None else np.unique(np.asarray(ticks, dtype=float))
    if at is not None:
        at = at[np.isfinite(at) & (at >= low) & (at <= high)]
        gaps = np.diff(np.log10(at))
        if 1 <= at.size <= 12 and (not gaps.size or gaps.min() >= np.log10(high / low) / 15):
            which.set_major_locator(FixedLocator(at))
            return True
    if top / bottom <= 100.0 * (1 + 1e-9):
        which.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    else:
        which.set_major_locator(LogLocator())
    return False


def wrap(text: str, width: int, max_lines: int = 3) -> str:
    """`text` broken into lines of at most `width` characters, so that a title fits its
    axes (at font size 9 about 45 characters for one panel of a grid, 60 for a panel as
    wide as the figure beside a legend; 12 per inch of figure at size 11). Line breaks
    already there are kept; each line of `text` takes at most `max_lines` lines, the
    rest cut with " ..."."""
    import textwrap

    return "\n".join(
        textwrap.fill(line, width, max_lines=max_lines, placeholder=" ...") or line
        for line in text.split("\n")
    )


def grid_shape(n: int, ncols: int | None = None) -> tuple[int, int]:
    """Rows and columns for `n` panels: one column up to 3 panels, then 2 or 3 columns."""
    if ncols is None:
        ncols = 1 if n <= 3 else (2 if n <= 8 else 3)
    ncols = max(1, min(ncols, n))
    return -(-n // ncols), ncols
