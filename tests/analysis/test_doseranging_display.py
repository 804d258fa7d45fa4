"""Dose-ranging tables with units in their display (issue 18): `dose_ranging` and
`dose_for_attainment` return `cellpkpd._core.display.Table`s (pandas DataFrames), which show
their dose unit and a title in HTML and text, and every consumer of the table
(dose_for_attainment, the plots, pandas) takes them as plain DataFrames, same numbers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

import cellpkpd as cp
from cellpkpd._core.display import Table
from cellpkpd.analysis.doseranging import dose_for_attainment


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
    shown = table
    assert type(shown) is Table
    html = shown._repr_html_()
    assert "<strong>one_cmt_iv: dose ranging over 30 subjects per arm</strong>" in html
    assert "<th>dose [mg]</th>" in html and "<th>unit</th>" in html
    assert "pta: probability of target attainment" in html
    assert html.split("<tbody>")[1].count("<tr") == len(table) == 5
    text = repr(shown)
    assert text.splitlines()[0] == "one_cmt_iv: dose ranging over 30 subjects per arm"
    assert "dose [mg]" in text.splitlines()[2]
    # the data are plain: the columns and values of a DataFrame
    plain = pd.DataFrame(shown)
    assert list(plain.columns[:2]) == ["arm", "dose"] and plain["dose"].dtype == float
    assert shown.attrs["dose_unit"] == "mg" and shown.attrs["units"] == {"dose": "mg"}


def test_consumers_take_the_shown_table(table):
    shown = table
    reach = dose_for_attainment(shown, pta=0.9)
    plain = pd.DataFrame(table)
    plain.attrs = {k: v for k, v in table.attrs.items() if k not in ("units", "title", "note")}
    pd.testing.assert_frame_equal(
        pd.DataFrame(reach), pd.DataFrame(dose_for_attainment(plain, pta=0.9))
    )
    out = reach
    assert type(out) is Table
    assert "<th>dose [mg]</th>" in out._repr_html_()
    assert repr(out).splitlines()[0] == "lowest dose reaching a PTA of 90% (auc)"
    line = cp.plots.target_attainment(shown, "auc", target=0.9).axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), table["dose"])
    fig = cp.plots.dose_response(shown, "auc")
    assert fig.axes[0].get_xlabel() == "dose [mg]"
    assert type(shown[shown["dose"] > 10.0]) is Table  # a selection keeps the display
