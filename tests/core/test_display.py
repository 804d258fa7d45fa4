"""Display with units (`cellpkpd._core.display`): a `Table` shows its title and its columns'
units in HTML and text while its data, column names and pandas behaviour stay those of the
frame; `with_units` writes a simulation's units as CF ``units`` and an ``output_units``
attribute that the Dataset's repr shows."""

from __future__ import annotations

import pickle

import matplotlib
import numpy as np
import pandas as pd
import pytest

import cellpkpd as cp
from cellpkpd._core.display import Table, as_table, label, units_summary, with_units
from cellpkpd.spec.model import output_unit

matplotlib.use("Agg")


@pytest.fixture
def table() -> Table:
    frame = pd.DataFrame(
        {
            "dose": [1e6, 2e7, 3.3333333e8],
            "metric": ["auc", "auc", "auc"],
            "median": [1.23456789, 2e-5, 3e9],
            "n": [200, 200, 200],
        }
    )
    frame.attrs["model"] = "msc_pbk"
    return as_table(frame, units={"dose": "cells/kg"}, title="Dose ranging", note="per arm")


def test_label() -> None:
    assert label("dose", "cells/kg") == "dose [cells/kg]"
    assert label("n", "") == "n" and label("n", None) == "n"


def test_html_shows_title_note_units_and_every_row(table: Table) -> None:
    html = table._repr_html_()
    assert html is not None
    assert "<strong>Dose ranging</strong>" in html and "per arm" in html
    assert "<th>dose [cells/kg]</th>" in html
    assert "<th>median</th>" in html  # no unit given: the name alone
    assert html.count("<tr") == 1 + len(table)  # header row + one per row
    # four significant digits: 3.3333333e8 is shown as 3.333e+08, 1.23456789 as 1.235
    assert "3.333e+08" in html and "1.235" in html


def test_text_shows_the_same(table: Table) -> None:
    text = repr(table)
    lines = text.splitlines()
    assert lines[:2] == ["Dose ranging", "per arm"]
    assert "dose [cells/kg]" in lines[2] and "median" in lines[2]
    assert len(lines) == 3 + len(table)
    assert str(table) == text


def test_data_names_and_pandas_use_are_unchanged(table: Table) -> None:
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["dose", "metric", "median", "n"]
    np.testing.assert_array_equal(table["dose"].to_numpy(), [1e6, 2e7, 3.3333333e8])
    assert table["median"].dtype == np.float64
    assert table.attrs["model"] == "msc_pbk"  # the frame's own attrs are kept
    assert table.to_csv().splitlines()[0] == ",dose,metric,median,n"
    # a selection keeps the display; a column is a plain Series
    part = table[table["dose"] > 1e6]
    assert type(part) is Table and "dose [cells/kg]" in part._repr_html_()
    assert type(table["dose"]) is pd.Series
    assert type(table.round(2)) is Table
    again = pickle.loads(pickle.dumps(table))
    assert type(again) is Table and again.attrs == table.attrs
    pd.testing.assert_frame_equal(pd.DataFrame(table), pd.DataFrame(again))


def test_user_display_options_are_respected(table: Table) -> None:
    with pd.option_context("display.float_format", "{:.1f}".format):
        assert "333333330.0" in repr(table)
    with pd.option_context("display.notebook_repr_html", False):
        assert table._repr_html_() is None


def test_as_table_merges_units_and_checks_its_input(table: Table) -> None:
    more = as_table(table, units={"median": "cells*h/mL"})
    assert more.attrs["units"] == {"dose": "cells/kg", "median": "cells*h/mL"}
    assert "median [cells*h/mL]" in repr(more)
    with pytest.raises(TypeError, match="expected a pandas DataFrame, got list"):
        as_table([1, 2])  # type: ignore[arg-type]


def test_simulation_units_are_cf_units_and_shown_in_both_reprs() -> None:
    spec = cp.load_model("one_cmt_iv")
    res = cp.simulate(
        spec, cp.Regimen([cp.Dose(time=0.0, amount=100.0, cmt="central")]), [0.0, 1.0, 2.0]
    )
    # cp.simulate's results carry them; with_units adds them to a Dataset without them
    assert res.attrs["output_units"] == units_summary(res) and res["conc"].attrs["units"]
    res = res.copy()  # not deep: the arrays are shared, and compared below
    res.attrs.pop("output_units")
    for name in (*res.data_vars, "time"):
        res[name].attrs.pop("units", None)
    out = with_units(res)
    for name in out.data_vars:
        assert out[name].attrs["unit"] == output_unit(spec, str(name))
        if out[name].attrs["unit"]:
            assert out[name].attrs["units"] == out[name].attrs["unit"]
    assert out["time"].attrs["units"] == spec.time_unit
    summary = out.attrs["output_units"]
    assert summary.startswith(f"time [{spec.time_unit}], ")
    assert "conc [mg/L]" in summary and summary == units_summary(out)
    assert "output_units" in repr(out) and "conc [mg/L]" in out._repr_html_()
    assert "units" not in res["conc"].attrs and "output_units" not in res.attrs  # not mutated
    np.testing.assert_array_equal(out["conc"].values, res["conc"].values)  # same numbers
    # xarray's plotting reads CF units into the axis label
    line = out["conc"].isel(subject=0).plot.line(x="time")[0]
    assert line.axes.get_ylabel() == "conc [mg/L]"
    matplotlib.pyplot.close("all")
