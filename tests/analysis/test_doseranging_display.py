"""Dose-ranging tables with units in their display (issue 18). `dose_ranging` and
`dose_for_attainment` return pandas DataFrames; wrapped by `cellpkpd._core.display.as_table`
as below (the call the two functions make once integrated), a real table shows its dose
unit in HTML and text, and every consumer of the table (dose_for_attainment, the plots,
pandas) takes the wrapped table as it took the DataFrame, with the same numbers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

import cellpkpd as cp
from cellpkpd._core.display import Table, as_table
from cellpkpd.analysis.doseranging import dose_for_attainment


def _shown_ranging(table: pd.DataFrame, n_subjects: int) -> Table:
    """What dose_ranging returns with units in its display."""
    return as_table(
        table,
        units={"dose": table.attrs["dose_unit"]},
        title=f"{table.attrs['model']}: dose ranging over {n_subjects} subjects per arm",
        note="median, p05, p95: in each row's unit; pta: probability of target attainment",
    )


def _shown_reach(result: pd.DataFrame) -> Table:
    """What dose_for_attainment returns with units in its display."""
    return as_table(
        result,
        units={"dose": result.attrs["dose_unit"]},
        title=f"lowest dose reaching a PTA of {result.attrs['pta']:.0%} ({result.attrs['metric']})",
    )


@pytest.fixture(scope="module")
def table():
    spec = cp.load_model("one_cmt_iv")
    single = cp.Regimen([cp.Dose(0.0, 1.0, "central")])
    pop = cp.VirtualPopulation(spec, 30, random_effects={"CL": 0.3}, seed=0)
    return cp.dose_ranging(
        spec,
        {"dose": [10.0, 30.0, 100.0, 300.0, 1000.0], "regimen": {"single": single}},
        pop,
        np.linspace(0.0, 120.0, 61),
        {"auc": cp.metrics.auc("conc")},
        target={"auc": (">=", 100.0)},
    )


def test_dose_ranging_table_shows_units(table):
    shown = _shown_ranging(table, 30)
    html = shown._repr_html_()
    assert "<strong>one_cmt_iv: dose ranging over 30 subjects per arm</strong>" in html
    assert "<th>dose [mg]</th>" in html and "<th>unit</th>" in html
    assert html.split("<tbody>")[1].count("<tr") == len(table) == 5
    text = repr(shown)
    assert text.splitlines()[0] == "one_cmt_iv: dose ranging over 30 subjects per arm"
    assert "dose [mg]" in text.splitlines()[2]
    # the data are the table's: same columns, values and attrs
    pd.testing.assert_frame_equal(pd.DataFrame(shown), table)
    assert {k: shown.attrs[k] for k in table.attrs} == table.attrs


def test_consumers_take_the_shown_table(table):
    shown = _shown_ranging(table, 30)
    reach = dose_for_attainment(shown, pta=0.9)
    pd.testing.assert_frame_equal(
        pd.DataFrame(reach), pd.DataFrame(dose_for_attainment(table, pta=0.9))
    )
    out = _shown_reach(reach)
    assert "<th>dose [mg]</th>" in out._repr_html_()
    assert repr(out).splitlines()[0] == "lowest dose reaching a PTA of 90% (auc)"
    line = cp.plots.target_attainment(shown, "auc", target=0.9).axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), table["dose"])
    fig = cp.plots.dose_response(shown, "auc")
    assert fig.axes[0].get_xlabel() == "dose [mg]"
    assert type(shown[shown["dose"] > 10.0]) is Table  # a selection keeps the display
