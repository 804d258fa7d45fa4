"""Bad input files and data sets: files that are not UTF-8 comma-separated text, dose data
items on records that are not doses, DV <= 0 with log-normal error, data columns named like
parameters, duplicate columns and huge repeat counts. Each must raise a one-line cellpkpd
error naming the file, row and column (the CLI: one line, exit code 2), never a traceback
or a hang."""

from __future__ import annotations

import contextlib
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import check

import cellpkpd as cp
from cellpkpd.cli import _config as cli_batch
from cellpkpd.cli.main import main
from cellpkpd.engine.dosing import MAX_DOSES
from cellpkpd.infer.data import FitData

ROOT = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_cli_error(capsys: pytest.CaptureFixture[str], match: str, *argv: object) -> None:
    """The command exits with 2 and one line on stderr that matches `match`."""
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    assert err.startswith("cellpkpd: error: ") and err.count("\n") == 1, err
    assert re.search(match, err), err


class _Hang(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail instead of hanging when the block runs longer than `seconds`."""

    def alarm(signum: int, frame: Any) -> None:
        raise _Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def iv() -> cp.ModelSpec:
    return cp.load_model("one_cmt_iv")


# ---------------------------------------------------------------------- B2: not UTF-8
LATIN1 = "# dose in \xb5g\nID,TIME,DV\n1,0,1\n"


def test_latin1_data_file(tmp_path: Path) -> None:
    path = tmp_path / "lat.csv"
    path.write_text(LATIN1, encoding="latin-1")
    check(
        cp.DataError,
        r"^\S*lat\.csv: not UTF-8 text \(byte 0xb5 on line 1, offset 10.*save it as UTF-8",
        cp.read_nonmem,
        path,
    )


def test_utf16_data_file(tmp_path: Path) -> None:
    path = tmp_path / "u16.csv"
    path.write_text("ID,TIME,DV\n1,0,1\n", encoding="utf-16")  # with a byte-order mark
    check(cp.DataError, r"u16\.csv: UTF-16 .*save it as UTF-8", cp.read_nonmem, path)
    path.write_text("ID,TIME,DV\n1,0,1\n", encoding="utf-16-le")  # without
    check(cp.DataError, r"u16\.csv: not UTF-8 text \(a NUL byte", cp.read_nonmem, path)


def test_xlsx_renamed_csv(tmp_path: Path) -> None:
    path = tmp_path / "study.csv"
    path.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xb5\xff[Content_Types].xml")
    check(cp.DataError, r"study\.csv: not a text file \(an Excel \.xlsx", cp.read_nonmem, path)


def test_utf8_with_bom_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_text("# dose in \xb5g\nID,TIME,AMT,DV\n1,0,100,.\n1,1,0,1\n", encoding="utf-8-sig")
    data = cp.read_nonmem(path)
    assert data.frame["ID"].tolist() == [1, 1]
    assert data.frame["EVID"].tolist() == [1, 0]


def test_latin1_and_bom_model_files(tmp_path: Path) -> None:
    text = (ROOT / "models" / "one_cmt_iv.toml").read_text(encoding="utf-8")
    path = tmp_path / "lat.toml"
    path.write_bytes(b"# \xb5g/L\n" + text.encode("utf-8"))
    check(cp.SpecError, r"lat\.toml: not UTF-8 text \(byte 0xb5 on line 1", cp.load_model, path)
    bom = tmp_path / "bom.toml"
    bom.write_text(text, encoding="utf-8-sig")
    assert cp.load_model(bom).name == "one_cmt_iv"


def test_cli_files_that_are_not_utf8(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = tmp_path / "lat.csv"
    data.write_text(LATIN1, encoding="latin-1")
    assert_cli_error(capsys, r"lat\.csv: not UTF-8 text", "fit", data, "one_cmt_iv")
    times = tmp_path / "times.txt"
    times.write_bytes(b"time\n0\n1 \xb5s\n")
    assert_cli_error(
        capsys,
        r"--times-file \S*times\.txt: not UTF-8 text \(byte 0xb5 on line 3",
        "simulate", "one_cmt_iv", "--dose", "1", "--times-file", times, "--output", tmp_path,
    )  # fmt: skip
    model = tmp_path / "m.toml"
    model.write_text("# \xb5\n[model]\nname = 'm'\n", encoding="latin-1")
    assert_cli_error(capsys, r"m\.toml: not UTF-8 text", "models", model)
    config = tmp_path / "sweep.toml"
    config.write_text('# \xb5\nmodel = "one_cmt_iv"\n', encoding="latin-1")
    assert_cli_error(capsys, r"sweep\.toml: not UTF-8 text", "sweep", config)


# ---------------------------------------------------------------------- B7: dose items
NON_DOSE = [
    ("ID,TIME,AMT,EVID,DV\n1,0,100,0,.\n1,1,0,0,1", r"row 1: AMT = 100 on an observation "
     r"record \(EVID 0\); expected 0 or '\.'"),
    ("ID,TIME,AMT,EVID,DV\n1,0,100,1,.\n1,1,50,2,.\n1,2,0,0,1",
     r"row 2: AMT = 50 on an other-event record \(EVID 2\)"),
    ("ID,TIME,AMT,EVID,DV\n1,0,100,1,.\n1,1,50,3,.\n1,2,0,0,1",
     r"row 2: AMT = 50 on a reset record \(EVID 3\)"),
    ("ID,TIME,AMT,EVID,RATE,DV\n1,0,100,1,10,.\n1,1,0,0,10,1",
     r"row 2: RATE = 10 on an observation record"),
    ("ID,TIME,AMT,EVID,II,DV\n1,0,100,1,12,.\n1,1,.,2,12,.",
     r"row 2: II = 12 on an other-event record"),
    ("ID,TIME,AMT,EVID,II,ADDL,DV\n1,0,100,1,12,1,.\n1,1,0,0,0,2,1",
     r"row 2: ADDL = 2 on an observation record"),
    ("ID,TIME,AMT,EVID,II,SS,DV\n1,0,100,1,12,1,.\n1,1,0,3,0,1,.",
     r"row 2: SS = 1 on a reset record \(EVID 3\)"),
    ("ID,TIME,AMT,EVID,RATE,DV\n1,0,0,1,10,.\n1,1,0,0,0,1",
     r"row 1: RATE = 10 with AMT = 0 gives no dose; expected AMT > 0"),
    ("ID,TIME,AMT,EVID,RATE,DV\n1,0,100,1,.,.\n1,5,0,4,10,.",
     r"row 2: RATE = 10 with AMT = 0 gives no dose"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "match"), NON_DOSE)
def test_dose_items_on_records_that_are_not_doses(tmp_path: Path, text: str, match: str) -> None:
    path = write(tmp_path, text)
    err = check(cp.DataError, match, cp.read_nonmem, path)
    assert str(err).startswith(str(path))


def test_dose_items_in_a_dataframe() -> None:
    df = pd.DataFrame({"ID": [1, 1], "TIME": [0.0, 1.0], "AMT": [100.0, 20.0], "EVID": [1, 0]})
    check(cp.DataError, r"^<DataFrame> row 2: AMT = 20 on an observation", cp.read_nonmem, df)


def test_evid_default_and_missing_items_on_observations_still_read(tmp_path: Path) -> None:
    text = "ID,TIME,AMT,RATE,II,ADDL,SS,DV\n1,0,100,.,12,2,0,.\n1,1,0,.,.,.,.,3\n1,2,.,0,0,0,0,2"
    data = cp.read_nonmem(write(tmp_path, text))
    assert data.frame["EVID"].tolist() == [1, 0, 0]  # EVID absent: 1 where AMT > 0
    (s,) = data.subjects()
    assert [d.time for d in s.regimen.doses] == [0.0, 12.0, 24.0]
    # SS = 1 with AMT = 0 and II = 0: the steady state of a constant infusion at RATE
    ok = write(tmp_path, "ID,TIME,AMT,EVID,RATE,SS,DV\n1,0,0,1,10,1,.")
    (dose,) = cp.read_nonmem(ok).subjects()[0].regimen.doses
    assert (dose.amount, dose.rate, dose.ss, dose.ii) == (0.0, 10.0, 1, 0.0)


def test_shipped_and_shared_data_still_read() -> None:
    data = cp.datasets.theophylline()
    assert len(data) == 12
    shared = Path("/work/shared/data/theophylline.csv")
    if shared.exists():
        assert len(cp.read_nonmem(shared)) == 12


# ---------------------------------------------------------------------- B8: lognormal DV <= 0
LOGNORMAL_DATA = "ID,TIME,AMT,EVID,DV,CENS\n1,0,100,1,.,0\n1,1,0,0,5,0\n1,2,0,0,{dv},{cens}"


@pytest.mark.parametrize("dv", [-0.5, 0])
def test_lognormal_error_needs_positive_dv(tmp_path: Path, iv: cp.ModelSpec, dv: float) -> None:
    data = cp.read_nonmem(write(tmp_path, LOGNORMAL_DATA.format(dv=dv, cens=0)))
    check(
        cp.DataError,
        rf"data\.csv row 3: DV = {dv:g} with log-normal residual error for 'conc'; expected "
        r"DV > 0 \(or censor it",
        FitData.build,
        iv,
        data,
        error_models={"conc": "lognormal"},
    )
    fd = FitData.build(iv, data, error_models={"conc": "proportional"})  # fine with others
    assert fd.observed.sum() == 2
    fd = FitData.build(iv, data)  # and without error models
    assert fd.observed.sum() == 2


def test_lognormal_error_censored_dv_zero_is_fine(tmp_path: Path, iv: cp.ModelSpec) -> None:
    data = cp.read_nonmem(write(tmp_path, LOGNORMAL_DATA.format(dv=0, cens=1)))
    fd = FitData.build(iv, data, error_models={"conc": "lognormal"})
    assert fd.censored.sum() == 1
    text = "ID,TIME,AMT,DV,LLOQ\n1,0,100,.,.\n1,1,0,5,0.1\n1,2,0,-0.01,0.1"
    fd = FitData.build(
        iv, cp.read_nonmem(write(tmp_path, text)), error_models={"conc": "lognormal"}
    )
    assert fd.censored.sum() == 1


# ---------------------------------------------------------------------- B6: parameter columns
PARAM_COLUMN = "ID,TIME,AMT,DV,CL\n1,0,100,.,2\n1,1,0,5,-2\n1,2,0,4,2"


def test_simulate_data_parameter_column_outside_bounds(tmp_path: Path, iv: cp.ModelSpec) -> None:
    data = cp.read_nonmem(write(tmp_path, PARAM_COLUMN))
    check(
        cp.DataError,
        r"data\.csv row 2 \(ID 1\): CL = -2 lies outside the bounds \[0, inf\] of parameter CL",
        cp.simulate,
        iv,
        data=data,
    )
    ok = cp.read_nonmem(write(tmp_path, PARAM_COLUMN.replace("-2", "3")))
    res = cp.simulate(iv, data=ok)
    assert np.isfinite(res["conc"].values).all()


def test_fit_data_parameter_column(tmp_path: Path, iv: cp.ModelSpec) -> None:
    data = cp.read_nonmem(write(tmp_path, PARAM_COLUMN.replace("-2", "3").replace("CL", "V")))
    check(
        cp.DataError,
        r"data\.csv: column V names a parameter of model 'one_cmt_iv'; cp\.fit estimates "
        r"parameters .*Population\(fixed=\['V'\]\)",
        FitData.build,
        iv,
        data,
    )


# ---------------------------------------------------------------------- B15: header
HEADERS = [
    ("ID,TIME,DV,DV\n1,0,1,1", r"data\.csv: column DV appears twice"),
    ("ID,TIME,WT,wt\n1,0,1,1", r"columns 'WT' and 'wt' clash"),
    ("ID;TIME;DV\n1;0;1", r"data\.csv: the header 'ID;TIME;DV' looks ';'-separated; cellpkpd "
     "reads comma-separated CSV"),
    ("ID\tTIME\tDV\n1\t0\t1", r"looks tab-separated; cellpkpd reads comma-separated"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "match"), HEADERS)
def test_header_problems(tmp_path: Path, text: str, match: str) -> None:
    check(cp.DataError, match, cp.read_nonmem, write(tmp_path, text))


def test_duplicate_column_in_a_dataframe() -> None:
    df = pd.DataFrame([[1, 0.0, 1.0, 1.0]], columns=["ID", "TIME", "DV", "DV"])
    check(cp.DataError, r"<DataFrame>: column DV appears twice", cp.read_nonmem, df)


# ---------------------------------------------------------------------- B12: repeat counts
def test_regimen_dose_cap() -> None:
    dose = cp.Dose(0.0, 1.0, "central")
    assert len(cp.Regimen.repeat(dose, 1.0, MAX_DOSES)) == MAX_DOSES
    check(
        cp.DosingError,
        rf"Regimen\.repeat: count = {MAX_DOSES + 1} doses; expected at most {MAX_DOSES}",
        cp.Regimen.repeat,
        dose,
        1.0,
        MAX_DOSES + 1,
    )
    with deadline(20):
        check(cp.DosingError, r"count = 1000000000 doses", cp.Regimen.repeat, dose, 1.0, 10**9)
        check(cp.DosingError, r"Regimen: more than 100000 events", cp.Regimen,
              (dose for _ in range(10**9)))  # fmt: skip
    check(cp.DosingError, r"Regimen: 100001 events", cp.Regimen, [dose] * (MAX_DOSES + 1))


def test_data_addl_cap(tmp_path: Path) -> None:
    path = write(tmp_path, f"ID,TIME,AMT,II,ADDL,DV\n1,0,100,1,{MAX_DOSES},.\n1,1,0,0,0,5")
    check(
        cp.DataError,
        rf"data\.csv row 1: ID 1 reaches {MAX_DOSES + 1} doses at this record \(ADDL = "
        rf"{MAX_DOSES}\); expected at most {MAX_DOSES}",
        cp.read_nonmem,
        path,
    )
    with deadline(20):
        path = write(tmp_path, "ID,TIME,AMT,II,ADDL,DV\n1,0,100,1,100000000,.\n2,0,100,1,1,.")
        check(cp.DataError, r"row 1: ID 1 reaches 100000001 doses", cp.read_nonmem, path)
    # the cap is per subject
    text = "ID,TIME,AMT,II,ADDL,DV\n1,0,100,1,60000,.\n2,0,100,1,60000,."
    assert len(cp.read_nonmem(write(tmp_path, text))) == 2


def test_cli_simulate_huge_count(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with deadline(30):
        assert_cli_error(
            capsys,
            r"--count 1000000000: too many doses; expected at most 100000",
            "simulate", "one_cmt_iv", "--dose", "100", "--interval", "24", "--count",
            "1000000000", "--output", tmp_path,
        )  # fmt: skip


SWEEP = """\
model = "one_cmt_iv"
[times]
end = 24
step = 4
[regimen]
dose = { amount = 100, cmt = "central" }
interval = 12
count = 2
[sampler]
kind = "grid"
[sampler.parameters]
CL = [1, 2, 4]
V = { low = 5, high = 20, num = 2 }
[metrics]
auc = { kind = "auc", output = "conc" }
"""


def test_cli_sweep_huge_count(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "sweep.toml"
    config.write_text(SWEEP.replace("count = 2", "count = 100000000"))
    with deadline(30):
        assert_cli_error(
            capsys,
            r"sweep\.toml: regimen\.count: 100000000 doses; expected at most 100000",
            "sweep", config, "--out", tmp_path / "o", "--no-progress",
        )  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_cli_sweep_grid_too_large(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "sweep.toml"
    with monkeypatch.context() as m:
        m.setattr(cli_batch, "MAX_SETS", 5)  # the small grid (6 sets) is now too large
        config.write_text(SWEEP)
        assert_cli_error(
            capsys, r"the grid has 3 \(CL\) x 2 \(V\) = 6 parameter sets; expected at most 5",
            "sweep", config, "--out", tmp_path / "o", "--no-progress",
        )  # fmt: skip
        config.write_text(
            SWEEP.replace('kind = "grid"', 'kind = "random"\nn = 6').replace(
                "CL = [1, 2, 4]\nV = { low = 5, high = 20, num = 2 }", "CL = { low = 1, high = 4 }"
            )
        )
        assert_cli_error(
            capsys, r"sampler\.n: 6 parameter sets; expected at most 5",
            "sweep", config, "--out", tmp_path / "o", "--no-progress",
        )  # fmt: skip
    config.write_text(SWEEP.replace("num = 2", "num = 100000000"))
    with deadline(30):
        assert_cli_error(
            capsys,
            r"sweep\.toml: sampler\.parameters: the grid has 3 \(CL\) x 100000000 \(V\) = "
            r"300,000,000 parameter sets; expected at most 100,000,000",
            "sweep", config, "--out", tmp_path / "o", "--no-progress",
        )  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_cli_doses_population_too_large(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from conftest import DOSES_SMALL

    config = tmp_path / "d.toml"
    config.write_text(DOSES_SMALL.replace("n = 2", "n = 1000000000"))
    with deadline(30):
        assert_cli_error(
            capsys, r"d\.toml: population\.n: 1,000,000,000 subjects; expected at most 100,000,000",
            "doses", config, "--out", tmp_path / "o", "--no-progress",
        )  # fmt: skip
