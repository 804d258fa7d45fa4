"""`fit_summary`: one row per population-level quantity with what it is and its unit, shown
as a titled table in HTML and text. The posteriors are built by hand (the numbers are not
the point here; fits themselves are tested in test_infer*.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cellpkpd as cp
from cellpkpd._core.display import Table
from cellpkpd.infer.summary import fit_summary, quantity

VALUES = {
    "CL": 2.0,
    "V": 10.0,
    "omega_CL": 0.3,
    "sigma_prop_conc": 0.1,
    "sigma_add_conc": 0.05,
    "beta_CL_WT": 0.75,
}


def _idata(method: str, chains: int = 2) -> object:
    az = pytest.importorskip("arviz")
    rng = np.random.default_rng(0)
    post = {k: rng.normal(v, 0.01 * v, (chains, 40)) for k, v in VALUES.items()}
    post["CL_i"] = rng.normal(2.0, 0.1, (chains, 40, 5))  # per subject: left out
    idata = az.from_dict(posterior=post, dims={"CL_i": ["subject"]})
    idata.posterior.attrs.update(method=method, model="one_cmt_iv")
    return idata


def test_rows_say_what_they_are_with_units() -> None:
    table = fit_summary(_idata("map"))
    assert isinstance(table, Table) and isinstance(table, pd.DataFrame)
    assert list(table.index) == list(VALUES) and table.index.name == "name"
    assert list(table.columns) == ["quantity", "unit", "map"]
    units = table["unit"].to_dict()
    assert units["CL"] == "L/h" and units["V"] == "L"  # one_cmt_iv's parameter units
    assert units["sigma_add_conc"] == "mg/L"  # the observation's unit
    assert units["omega_CL"] == units["sigma_prop_conc"] == units["beta_CL_WT"] == ""
    assert table.loc["omega_CL", "quantity"] == "BSV of CL (SD of log)"
    assert table.loc["sigma_prop_conc", "quantity"] == "residual SD of conc, proportional"
    np.testing.assert_allclose(table["map"].to_numpy(float), list(VALUES.values()), rtol=0.05)


def test_html_and_text_show_title_units_and_rows() -> None:
    table = fit_summary(_idata("nuts"))
    html = table._repr_html_()
    assert "<strong>one_cmt_iv: nuts estimates (2 chains x 40 draws)</strong>" in html
    assert html.split("<tbody>")[1].count("<tr") == len(VALUES)
    assert "<td>L/h</td>" in html and "<td>typical CL</td>" in html
    assert {"mean", "sd", "r_hat"} <= set(table.columns)
    text = repr(table)
    assert text.splitlines()[0] == "one_cmt_iv: nuts estimates (2 chains x 40 draws)"
    assert "typical CL" in text


def test_covariate_effects_are_named_from_the_model() -> None:
    spec = cp.load_model("msc_pbk")
    p, cov = next(iter(spec.parameters)), next(iter(spec.covariates))
    assert quantity(f"beta_{p}_{cov}", spec) == (f"effect of {cov} on {p}", "")
    assert quantity(f"beta_{p}_{cov}_2", spec) == (f"effect of {cov} = 2 on {p}", "")
    assert quantity("beta_x_y", spec) == ("covariate effect x_y", "")


def test_without_the_model_units_are_empty_and_an_asked_model_must_exist() -> None:
    idata = _idata("map")
    idata.posterior.attrs["model"] = "no_such_model"
    table = fit_summary(idata)  # the recorded model is gone: no units, still a summary
    assert set(table["unit"]) == {""} and table.loc["CL", "quantity"] == "typical CL"
    with pytest.raises(cp.SpecError, match="unknown model 'no_such_model'"):
        fit_summary(idata, spec="no_such_model")
