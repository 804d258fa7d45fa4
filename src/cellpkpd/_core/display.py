"""How cellpkpd's results show their units, in Jupyter (HTML) and as text.

Owns two things, both of which leave the data as they are (numbers stay plain floats, so
numpy, pandas and xarray use them unchanged):

- `Table`: a pandas DataFrame that shows a title, a note and each column's unit in its
  header ("dose [cells/kg]") and numbers to four significant digits. The units live in
  ``table.attrs["units"]`` (column -> unit), pandas' own place for a frame's metadata, which
  its operations carry over; a selection of rows or columns is still a `Table`. `as_table`
  makes one. Used by `fit_summary` and the dose-ranging tables.
- `with_units`: the units of a simulation result (an xarray.Dataset) written the way the
  xarray ecosystem reads them. Each variable keeps its ``unit`` attribute and gets the CF
  conventions' ``units``, the attribute that xarray's plotting puts in axis labels
  ("conc [mg/L]"), that pint-xarray's ``ds.pint.quantify()`` turns into pint units with no
  argument, and that netCDF readers know. xarray's repr shows a variable's attributes only
  when one clicks its icon, so the Dataset also gets one attribute, ``output_units``
  ("time [h], conc [mg/L], ..."), that both its text and its HTML repr show at once.

Why not more: subclassing xarray.Dataset is discouraged by xarray (its operations return
plain Datasets, so the class would not survive a selection), and pint-wrapped arrays would
show units inline but turn every array into a pint Quantity that numpy and JAX do not take
as they are. `ds.pint.quantify()` gives that view to whoever wants it.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["Table", "as_table", "label", "units_summary", "with_units"]

#: how `Table` shows a float when the user has set no ``display.float_format``
SIGNIFICANT = "{:.4g}"


def label(name: str, unit: str | None) -> str:
    """``"name [unit]"``, or ``name`` alone when `unit` is empty or None."""
    return f"{name} [{unit}]" if unit else str(name)


class Table(pd.DataFrame):
    """A DataFrame that displays its units: each column with a unit in
    ``attrs["units"]`` is headed ``"name [unit]"``, above it ``attrs["title"]`` and
    ``attrs["note"]`` (when set), floats with four significant digits (unless pandas'
    ``display.float_format`` is set). Only the display changes: column names, values and
    every DataFrame method are those of the frame. Operations that return a frame return
    a `Table` with the same attrs (pandas carries them over), so a selection keeps its
    units."""

    @property
    def _constructor(self) -> type[Table]:
        return Table

    def _display_frame(self) -> pd.DataFrame:
        """A plain DataFrame with the same data whose column labels carry the units."""
        units = self.attrs.get("units") or {}
        frame = pd.DataFrame(self)
        frame.attrs = {}
        if units and not isinstance(frame.columns, pd.MultiIndex):
            frame.columns = [label(c, units.get(c)) if isinstance(c, str) else c
                             for c in frame.columns]  # fmt: skip
        return frame

    def _options(self) -> pd.option_context:
        fmt = pd.get_option("display.float_format") or SIGNIFICANT.format
        return pd.option_context("display.float_format", fmt)

    def _heading(self) -> list[str]:
        return [str(self.attrs[k]) for k in ("title", "note") if self.attrs.get(k)]

    def __repr__(self) -> str:
        with self._options():
            body = repr(self._display_frame())
        return "\n".join([*self._heading(), body])

    def _repr_html_(self) -> str | None:
        with self._options():
            body = self._display_frame()._repr_html_()
        if body is None:  # display.notebook_repr_html is off
            return None
        head = self._heading()
        parts = []
        if head:
            parts.append(f"<p style='margin:0 0 .3em'><strong>{html.escape(head[0])}</strong>")
            parts += [f"<br><span>{html.escape(h)}</span>" for h in head[1:]]
            parts.append("</p>")
        return "".join(parts) + body


def as_table(
    frame: pd.DataFrame,
    units: Mapping[str, str] | None = None,
    title: str | None = None,
    note: str | None = None,
) -> Table:
    """`frame` as a `Table` (same data, not copied), its display set by `units` (column ->
    unit, merged into ``attrs["units"]``), `title` and `note`. The frame's other attrs are
    kept."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"as_table: expected a pandas DataFrame, got {type(frame).__name__}")
    out = Table(frame)
    out.attrs = dict(frame.attrs)
    if units is not None:
        out.attrs["units"] = {
            **(frame.attrs.get("units") or {}),
            **{str(k): str(v) for k, v in units.items()},
        }
    if title is not None:
        out.attrs["title"] = str(title)
    if note is not None:
        out.attrs["note"] = str(note)
    return out


def units_summary(ds: xr.Dataset) -> str:
    """``"time [h], conc [mg/L], ..."``: the unit of the time coordinate and of each data
    variable (its ``units``, else ``unit`` attribute); a name without one appears alone."""
    names = (["time"] if "time" in ds.coords else []) + [str(k) for k in ds.data_vars]
    parts = []
    for name in names:
        attrs = ds[name].attrs
        parts.append(label(name, attrs.get("units") or attrs.get("unit")))
    return ", ".join(parts)


def with_units(ds: xr.Dataset) -> xr.Dataset:
    """`ds` (a shallow copy: the arrays are shared) with CF ``units`` beside each
    ``unit`` attribute of its variables and coordinates, and the Dataset attribute
    ``output_units`` (`units_summary`) that its repr shows at once.

    A variable with an empty ``unit`` gets no ``units`` (CF's dimensionless is "1"; an
    empty unit here means "not declared"); a ``units`` already there is kept."""
    out = ds.copy(deep=False)
    for var in out.variables.values():
        unit = var.attrs.get("unit")
        if unit and "units" not in var.attrs:
            var.attrs["units"] = str(unit)
    out.attrs["output_units"] = units_summary(out)
    return out
