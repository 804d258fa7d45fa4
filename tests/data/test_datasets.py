"""Tests of cellpkpd.datasets: the data sets that ship inside the package."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA, bateman_central

import cellpkpd as cp
import cellpkpd.datasets
from cellpkpd.data.nonmem import Dataset


def test_theophylline_is_a_dataset_of_12_subjects() -> None:
    data = cellpkpd.datasets.theophylline()
    assert isinstance(data, Dataset)
    assert data.source == "cellpkpd.datasets.theophylline"
    f = data.frame
    assert len(data) == 12
    assert data.ids == tuple(range(1, 13))
    assert len(f) == 144
    observed = (f["EVID"] == 0) & (f["MDV"] == 0)
    assert int(observed.sum()) == 132
    doses = f[f["EVID"] == 1]
    assert len(doses) == 12
    assert doses.groupby("ID").size().eq(1).all()
    assert (doses["TIME"] == 0).all()
    # CMT 1 = depot for doses, CMT 2 = central for observations (models/one_cmt_oral.toml)
    assert set(doses["CMT"]) == {1}
    assert set(f.loc[observed, "CMT"]) == {2}
    assert f.loc[observed].groupby("ID").size().eq(11).all()
    assert data.covariate_names == ("WT", "DOSE_MGKG")
    # AMT [mg] = DOSE_MGKG [mg/kg] * WT [kg], rounded to 0.001 mg
    np.testing.assert_allclose(doses["AMT"], doses["DOSE_MGKG"] * doses["WT"], atol=5e-4)
    # subject 1 as in R's datasets::Theoph
    s1 = f[(f["ID"] == 1) & observed]
    assert s1["TIME"].iloc[-1] == pytest.approx(24.37)
    assert s1["DV"].max() == pytest.approx(10.5)
    assert float(doses.loc[doses["ID"] == 1, "WT"].iloc[0]) == pytest.approx(79.6)


def test_theophylline_returns_a_fresh_dataset_each_call() -> None:
    a, b = cellpkpd.datasets.theophylline(), cellpkpd.datasets.theophylline()
    assert a is not b and a.frame is not b.frame
    pd.testing.assert_frame_equal(a.frame, b.frame)


def test_theophylline_frame_is_the_raw_table() -> None:
    raw = cellpkpd.datasets.theophylline_frame()
    cols = ["ID", "TIME", "AMT", "EVID", "CMT", "DV", "MDV", "WT", "DOSE_MGKG"]
    assert list(raw.columns) == cols
    assert raw.shape == (144, 9)
    assert raw["ID"].nunique() == 12
    # '.' marks the missing DV of the dose rows
    assert raw["DV"].isna().sum() == 12
    assert (raw.loc[raw["DV"].isna(), "EVID"] == 1).all()
    data = cellpkpd.datasets.theophylline()
    for c in cols:
        np.testing.assert_array_equal(
            data.frame[c].to_numpy(dtype=float), raw[c].to_numpy(dtype=float), err_msg=c
        )
    # the raw table is itself a valid NONMEM-style data set
    assert len(cp.read_nonmem(raw)) == 12


def test_theophylline_simulates_with_one_cmt_oral() -> None:
    """Each subject's simulated record times follow the Bateman function of its own dose
    (exact solver, linear model: agreement to round-off, hence rtol 1e-10)."""
    data = cellpkpd.datasets.theophylline()
    res = cp.simulate("one_cmt_oral", data=data)
    assert res.sizes["subject"] == 12
    assert (res["status"].values == 0).all()
    p = cp.load_model("one_cmt_oral").defaults()
    frame = data.frame
    for i, sid in enumerate(res["subject"].values):
        rec = frame[frame["ID"] == sid]
        dose = float(rec.loc[rec["EVID"] == 1, "AMT"].iloc[0])
        t = rec["TIME"].to_numpy(dtype=float)
        n = t.size
        np.testing.assert_array_equal(res["time"].values[i][:n], t)
        conc = bateman_central(t, dose, p["ka"], p["CL"], p["V"]) / p["V"]
        np.testing.assert_allclose(res["conc"].values[i][:n], conc, rtol=1e-10, err_msg=f"{sid}")


def test_packaged_file_equals_the_shared_data() -> None:
    shared = SHARED_DATA / "theophylline.csv"
    if not shared.exists():
        pytest.skip("shared theophylline data not present")
    packaged = resources.files("cellpkpd.datasets").joinpath("theophylline.csv")
    assert packaged.read_bytes() == shared.read_bytes()


def test_packaged_file_keeps_its_source_and_units() -> None:
    text = resources.files("cellpkpd.datasets").joinpath("theophylline.csv").read_text("utf-8")
    header = "\n".join(ln for ln in text.splitlines() if ln.startswith("#"))
    for needle in ("Theoph", "Boeckmann", "Pinheiro & Bates", "TIME h", "AMT mg", "mg/L", "kg"):
        assert needle in header


def test_docstring_names_source_units_and_compartments() -> None:
    doc = cellpkpd.datasets.theophylline.__doc__
    for needle in (
        "Theoph",
        "Boeckmann",
        "Pinheiro",
        "TIME [h]",
        "AMT [mg]",
        "DV [mg/L]",
        "WT [kg]",
        "CMT 1 = depot",
        "CMT 2 = central",
        "one_cmt_oral",
    ):
        assert needle in doc, needle


def test_list_datasets() -> None:
    listed = cellpkpd.datasets.list_datasets()
    assert list(listed) == ["theophylline"]
    for name, description in listed.items():
        assert isinstance(description, str) and description
        assert "\n" not in description
        assert callable(getattr(cellpkpd.datasets, name))
    # a copy: changing it does not change the registry
    listed["x"] = "y"
    assert "x" not in cellpkpd.datasets.list_datasets()
