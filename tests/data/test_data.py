"""Tests of cellpkpd.data.nonmem: reading NONMEM-style data sets, event semantics, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellpkpd._core.errors import DataError
from cellpkpd.data.nonmem import Dataset, SubjectData, read_nonmem
from cellpkpd.engine.dosing import Dose, Reset
from cellpkpd.spec.model import ModelSpec

ROOT = Path(__file__).resolve().parents[2]
THEOPH = Path("/work/shared/data/theophylline.csv")
if not THEOPH.exists():  # a checkout elsewhere may keep the shared data beside the repository
    THEOPH = ROOT.parent / "shared" / "data" / "theophylline.csv"


@pytest.fixture(scope="module")
def oral() -> ModelSpec:
    return ModelSpec.from_toml(ROOT / "models" / "one_cmt_oral.toml")


@pytest.fixture(scope="module")
def infusion_model() -> ModelSpec:
    """One compartment with a model rate (RATE = -1) and duration (RATE = -2) for central."""
    return ModelSpec.from_dict(
        {
            "model": {"name": "one_cmt_inf", "time_unit": "h", "amount_unit": "mg"},
            "parameters": {"CL": 1.0, "V": 10.0, "R1": 5.0, "D1": 2.0},
            "covariates": {"WT": 70.0},
            "states": {"central": 0.0},
            "flows": {"central ->": "CL / V"},
            "observations": {"conc": {"expr": "central / V"}},
            "dosing": {"central": {"rate": "R1", "duration": "D1"}},
        }
    )


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text.strip() + "\n")
    return path


def one(tmp_path: Path, text: str, spec: ModelSpec | None = None) -> SubjectData:
    subjects = read_nonmem(write(tmp_path, text)).subjects(spec)
    assert len(subjects) == 1
    return subjects[0]


# ---------------------------------------------------------------------- theophylline
@pytest.mark.skipif(not THEOPH.exists(), reason="shared theophylline data not present")
def test_theophylline_reads_with_comments_and_dots(oral: ModelSpec) -> None:
    data = read_nonmem(THEOPH)
    assert isinstance(data, Dataset)
    assert len(data) == 12
    assert data.ids == tuple(range(1, 13))
    assert data.covariate_names == ("WT", "DOSE_MGKG")
    f = data.frame
    assert len(f) == 144
    assert f["ROW"].tolist() == list(range(1, 145))  # '#' comment lines and header not counted
    assert f["TIME"].dtype == np.float64 and f["DV"].dtype == np.float64
    assert f.loc[f["EVID"] == 1, "DV"].isna().all()  # '.' is a missing value
    assert "12 subjects" in repr(data) and "132 observations" in repr(data)

    subjects = data.subjects()
    assert sum(int(s.observed.sum()) for s in subjects) == 132
    doses = [d for s in subjects for d in s.regimen.doses]
    assert len(doses) == 12
    assert {d.cmt for d in doses} == {1}
    assert all(d.time == 0.0 and d.rate is None and d.duration == 0.0 for d in doses)
    s1 = subjects[0]
    assert s1.id == 1
    assert doses[0].amount == pytest.approx(319.992)
    assert s1.times.dtype == np.float64 and len(s1.times) == 12
    assert s1.cmt[0] == 1 and s1.cmt[1] == 2
    np.testing.assert_array_equal(s1.covariates["WT"], np.full(12, 79.6))
    assert not s1.is_time_varying("WT")
    assert not s1.cens.any() and np.isnan(s1.lloq).all()

    named = data.subjects(oral)
    assert named[0].regimen.doses[0].cmt == "depot"
    assert set(named[0].cmt[named[0].evid == 0]) == {"central"}


# ---------------------------------------------------------------------- columns
def test_column_names_are_case_insensitive_and_defaults_filled(tmp_path: Path) -> None:
    data = read_nonmem(write(tmp_path, "id,Time,amt,Cmt,dV,Wt\n1,0,100,1,.,70\n1,1,.,2,5.5,70"))
    assert list(data.frame.columns[:14]) == [
        "ROW", "ID", "TIME", "EVID", "AMT", "RATE", "CMT", "DV", "MDV", "II", "ADDL", "SS",
        "LLOQ", "CENS",
    ]  # fmt: skip
    assert data.covariate_names == ("Wt",)  # covariates keep their spelling (model names)
    f = data.frame
    assert f["EVID"].tolist() == [1, 0]  # EVID absent: 1 where AMT > 0
    assert f["MDV"].tolist() == [1, 0]
    assert f["AMT"].tolist() == [100.0, 0.0]
    assert f["RATE"].tolist() == [0.0, 0.0] and f["SS"].tolist() == [0, 0]


def test_dataframe_input_and_covariate_spelling_from_model(infusion_model: ModelSpec) -> None:
    df = pd.DataFrame(
        {"ID": [7, 7, 7], "TIME": [0.0, 1.0, 2.0], "AMT": [10.0, np.nan, np.nan],
         "CMT": [1, 1, None], "DV": [np.nan, 0.8, 0.5], "wt": [70.0, 70.0, 70.0]}
    )  # fmt: skip
    data = read_nonmem(df)
    assert data.source == "<DataFrame>"
    (s,) = data.subjects(infusion_model)
    assert s.id == 7
    assert list(s.covariates) == ["WT"]  # matched case-insensitively to the model's covariate
    assert s.regimen.doses[0].cmt == "central"
    assert s.cmt[2] is None  # an observation without CMT is fine
    np.testing.assert_array_equal(s.rows, [1, 2, 3])


def test_observation_cmt_may_name_a_model_observation(
    tmp_path: Path, infusion_model: ModelSpec
) -> None:
    s = one(tmp_path, "ID,TIME,AMT,CMT,DV\n1,0,10,central,.\n1,1,0,conc,0.9", infusion_model)
    assert s.cmt.tolist() == ["central", "conc"]


# ---------------------------------------------------------------------- events
def test_addl_expands_into_copies_every_ii(tmp_path: Path) -> None:
    s = one(tmp_path, "ID,TIME,AMT,CMT,II,ADDL,SS\n1,0,100,1,12,3,1\n1,50,0,1,0,0,0")
    doses = s.regimen.doses
    assert [d.time for d in doses] == [0.0, 12.0, 24.0, 36.0]
    assert all(d.amount == 100.0 for d in doses)
    assert [d.ss for d in doses] == [1, 0, 0, 0]  # as NONMEM: additional doses are not SS
    assert doses[0].ii == 12.0
    np.testing.assert_array_equal(s.times, [0.0, 50.0])  # records, not the expanded doses


def test_evid_3_is_a_reset_and_evid_4_a_reset_and_dose(tmp_path: Path) -> None:
    s = one(
        tmp_path,
        "ID,TIME,AMT,CMT,EVID,DV\n1,0,100,1,1,.\n1,5,0,2,0,3\n1,10,.,.,3,.\n1,20,50,1,4,.\n"
        "1,21,0,2,2,.",
    )
    events = s.regimen.events
    assert isinstance(events[1], Reset) and events[1].time == 10.0
    assert isinstance(events[2], Dose) and events[2].reset and events[2].time == 20.0
    assert not events[0].reset
    np.testing.assert_array_equal(s.evid, [1, 0, 3, 4, 2])
    np.testing.assert_array_equal(s.mdv, [1, 0, 1, 1, 1])


def test_rate_positive_model_rate_and_model_duration(
    tmp_path: Path, infusion_model: ModelSpec
) -> None:
    text = "ID,TIME,AMT,RATE,CMT\n1,0,100,25,1\n1,10,100,-1,1\n1,20,100,-2,1\n1,30,100,0,1"
    d = one(tmp_path, text, infusion_model).regimen.doses
    assert d[0].rate == 25.0 and d[0].duration == 0.0
    assert d[1].rate == "model"
    assert d[2].duration == "model" and d[2].rate is None
    assert d[3].rate is None and d[3].duration == 0.0 and not d[3].is_infusion
    assert [x.cmt for x in d] == ["central"] * 4


def test_model_rate_needs_a_dosing_rule(tmp_path: Path, oral: ModelSpec) -> None:
    data = read_nonmem(write(tmp_path, "ID,TIME,AMT,RATE,CMT\n1,0,100,-1,1"))
    assert data.subjects()[0].regimen.doses[0].rate == "model"  # unchecked without a model
    with pytest.raises(DataError, match=r"row 1: RATE = -1 .*no \[dosing\] depot\.rate"):
        data.subjects(oral)


def test_steady_state_flags_and_interval(tmp_path: Path) -> None:
    s = one(tmp_path, "ID,TIME,AMT,CMT,SS,II,RATE\n1,0,100,1,1,24,0\n1,24,100,1,2,12,50")
    d = s.regimen.doses
    assert (d[0].ss, d[0].ii) == (1, 24.0)
    assert (d[1].ss, d[1].ii, d[1].rate) == (2, 12.0, 50.0)


def test_missing_covariate_values_filled_in_the_direction_of_the_convention(
    tmp_path: Path,
) -> None:
    text = "ID,TIME,AMT,DV,CRP\n1,0,100,.,.\n1,1,0,2,5\n1,2,0,3,.\n1,3,0,4,8\n2,0,9,.,.\n2,1,0,1,3"
    # locf: from the previous value; the first records from the first known value
    s1, s2 = read_nonmem(write(tmp_path, text), covariates="locf").subjects()
    np.testing.assert_array_equal(s1.covariates["CRP"], [5.0, 5.0, 5.0, 8.0])
    np.testing.assert_array_equal(s2.covariates["CRP"], [3.0, 3.0])  # not taken from ID 1
    # nocb (default): from the next value (row 3 holds back to row 2 under NOCB)
    s1, s2 = read_nonmem(write(tmp_path, text)).subjects()
    np.testing.assert_array_equal(s1.covariates["CRP"], [5.0, 5.0, 8.0, 8.0])
    np.testing.assert_array_equal(s2.covariates["CRP"], [3.0, 3.0])
    assert s1.is_time_varying("CRP") and not s2.is_time_varying("CRP")
    with pytest.raises(DataError, match="unknown covariate 'WT'"):
        s1.is_time_varying("WT")


def test_lloq_and_cens(tmp_path: Path) -> None:
    s = one(tmp_path, "ID,TIME,AMT,DV,LLOQ\n1,0,100,.,.\n1,1,0,0.05,0.1\n1,2,0,0.5,0.1")
    np.testing.assert_array_equal(s.cens, [False, True, False])
    np.testing.assert_array_equal(s.lloq[1:], [0.1, 0.1])
    s = one(tmp_path, "ID,TIME,AMT,DV,CENS\n1,0,100,.,.\n1,1,0,0.2,1\n1,2,0,0.5,0")
    np.testing.assert_array_equal(s.cens, [False, True, False])
    assert s.lloq[1] == 0.2 and np.isnan(s.lloq[2])  # CENS = 1: DV is the LLOQ


def test_dosing_error_becomes_data_error_naming_the_row() -> None:
    data = read_nonmem(pd.DataFrame({"ID": [1, 1], "TIME": [0, 1], "AMT": [5.0, 5.0]}))
    frame = data.frame.copy()
    frame.loc[1, "AMT"] = -5.0  # bypasses read_nonmem's checks
    with pytest.raises(DataError, match=r"<DataFrame> row 2: invalid dose: .*amount"):
        Dataset(frame, data.source, data.covariate_names).subjects()


# ---------------------------------------------------------------------- bad input
HEAD = "ID,TIME,AMT,CMT,EVID,DV,II,ADDL,SS,RATE,WT"
OBS = {"TIME": 1, "AMT": 0, "EVID": 0, "DV": 5}  # changes that turn the dose record into a sample


def rec(**values: object) -> str:
    """One record of HEAD: a 100 mg bolus into CMT 1 at time 0, with `values` changed."""
    row = {"ID": 1, "TIME": 0, "AMT": 100, "CMT": 1, "EVID": 1, "DV": ".", "II": 0, "ADDL": 0}
    row.update({"SS": 0, "RATE": 0, "WT": 70}, **values)
    return ",".join(str(row[k]) for k in HEAD.split(","))


def table(*records: str) -> str:
    return "\n".join((HEAD, *records))


P = pytest.param
BAD = [
    P("TIME,DV\n0,1", r"missing required column ID; columns: TIME, DV", id="no ID column"),
    P("ID,DV\n1,1", r"missing required column TIME", id="no TIME column"),
    P(table(rec(), rec(ID=".", **OBS)), r"row 2: ID is missing", id="ID missing"),
    P(table(rec(), rec(**{**OBS, "TIME": ""})), r"row 2: TIME is missing", id="TIME missing"),
    P(table(rec(), rec(**{**OBS, "TIME": "abc"})), r"row 2: TIME = 'abc' is not a number",
      id="TIME text"),
    P(table(rec(), rec(**{**OBS, "TIME": 2}), rec(**OBS)),
      r"row 3: TIME = 1 is before the previous record's TIME = 2 of ID 1", id="TIME goes back"),
    P(table(rec(), rec(ID=2), rec(**OBS)), r"row 3: ID = 1 appears again .*contiguous",
      id="ID not contiguous"),
    P(table(rec(TIME=-1)), r"row 1: TIME = -1 is negative", id="TIME negative"),
    P(table(rec(AMT=-100)), r"row 1: AMT = -100 is negative", id="AMT negative"),
    P(table(rec(AMT=".")), r"row 1: AMT is missing; .*dose record", id="dose without AMT"),
    P(table(rec(EVID=5)), r"row 1: EVID = 5 is not valid; expected 0 \(observation\)",
      id="EVID 5"),
    P(table(rec(ADDL=3)), r"row 1: ADDL = 3 needs II > 0", id="ADDL without II"),
    P(table(rec(SS=1)), r"row 1: SS = 1 needs II > 0", id="SS without II"),
    P(table(rec(SS=1, AMT=0, RATE=-2)), r"row 1: RATE = -2 \(modelled duration\) on a "
      r"constant-infusion steady-state record .*expected RATE > 0, -1 or 0",
      id="SS constant infusion RATE -2"),
    P(table(rec(RATE=-3)), r"row 1: RATE = -3 is not valid; expected >= 0", id="RATE -3"),
    P(table(rec(SS=3, II=24)), r"row 1: SS = 3 is not valid; expected 0, 1 or 2", id="SS 3"),
    P(table(rec(ADDL=1.5, II=24)), r"row 1: ADDL = 1.5 is not valid", id="ADDL fractional"),
    P(table(rec(II=-24)), r"row 1: II = -24 is negative", id="II negative"),
    P(table(rec(), rec(WT="heavy", **OBS)), r"row 2: WT = 'heavy' is not a number",
      id="text covariate"),
    P(table(rec(), rec(ID=2, WT="."), rec(ID=2, WT=".", **OBS)),
      r"rows 2-3: covariate WT is missing on every record of ID 2", id="covariate all missing"),
    P(table(rec(CMT=0)), r"row 1: CMT = 0 is not valid", id="CMT 0"),
    P(table(rec(CMT="gut tube")), r"row 1: CMT = 'gut tube' is not valid", id="CMT text"),
    P(table(rec(CMT=".")), r"row 1: CMT is missing; .*dose record", id="dose without CMT"),
    P("ID,TIME,AMT,EVID,MDV,DV\n1,0,100,1,0,1", r"row 1: MDV = 0 on a record that is not an "
      "observation", id="MDV 0 on dose"),
    P("ID,TIME,EVID,MDV,DV\n1,0,0,0,.", r"row 1: DV is missing; .*MDV = 0", id="DV missing"),
    P("ID,TIME,DV,CENS\n1,0,1,2", r"row 1: CENS = 2 is not valid", id="CENS 2"),
    P("ID,TIME,DV\n1,0,inf", r"row 1: DV = inf is not finite", id="DV inf"),
    P("ID,TIME,DV\n1,0,1\n1,1,2,3", r"row 2: 4 fields; expected 3", id="field count"),
    P("ID,TIME,WT,wt\n1,0,1,1", r"columns 'WT' and 'wt' clash", id="case clash"),
    P("# a comment\nID,TIME,DV", r"no data rows", id="header only"),
    P("# nothing here", r"empty data set", id="comments only"),
]  # fmt: skip


@pytest.mark.parametrize("text, message", BAD)
def test_malformed_data_sets_raise_one_line_data_error(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=message) as info:
        read_nonmem(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and "\n" not in msg


def test_row_numbers_skip_comment_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "# study 1\n# units: h\nID,TIME,DV\n# mid-table note\n1,0,1\n1,x,2")
    with pytest.raises(DataError, match=r"data\.csv row 2: TIME = 'x'"):
        read_nonmem(path)


def test_empty_file_and_missing_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: empty data set"):
        read_nonmem(empty)
    with pytest.raises(DataError, match=r"nope\.csv: data file not found"):
        read_nonmem(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"<DataFrame>: no data rows"):
        read_nonmem(pd.DataFrame({"ID": [], "TIME": []}))


def test_dataframe_errors_name_the_source_and_row() -> None:
    df = pd.DataFrame({"ID": [1, 1], "TIME": [0.0, math.nan], "DV": [1.0, 2.0]})
    with pytest.raises(DataError, match=r"^<DataFrame> row 2: TIME is missing"):
        read_nonmem(df)
    with pytest.raises(DataError, match=r"^study\.xlsx row 2: TIME is missing"):
        read_nonmem(df, source="study.xlsx")


def test_unknown_compartments_against_a_model(tmp_path: Path, oral: ModelSpec) -> None:
    data = read_nonmem(write(tmp_path, "ID,TIME,AMT,CMT,DV\n1,0,100,1,.\n1,1,100,3,.\n"))
    assert data.subjects()[0].regimen.doses[1].cmt == 3  # unchecked without a model
    with pytest.raises(DataError, match=r"row 2: CMT = 3 .*a number 1\.\.2 .*depot, central"):
        data.subjects(oral)
    data = read_nonmem(write(tmp_path, "ID,TIME,AMT,CMT,DV\n1,0,100,gut,.\n"))
    with pytest.raises(DataError, match=r"row 1: CMT = 'gut' is not a compartment of model"):
        data.subjects(oral)
    data = read_nonmem(write(tmp_path, "ID,TIME,AMT,CMT,DV\n1,0,100,depot,.\n1,1,0,lung,2"))
    with pytest.raises(DataError, match=r"row 2: CMT = 'lung' .*observation: conc"):
        data.subjects(oral)
