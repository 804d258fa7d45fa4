"""The command line: `cellpkpd models | simulate | demo`, run in-process through `main`
(plus the real entry point in a subprocess), its files, and one-line errors on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cellpkpd as cp
from cellpkpd.cli.main import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# the example of DESIGN.md: nonlinear, a covariate, two observations
from conftest import DESIGN_EXAMPLE as MM_IDR  # noqa: E402


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_png(path: Path) -> None:
    assert path.is_file()
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 10_000  # a real plot, not an empty canvas


# ---------------------------------------------------------------------- models
def test_models_lists_library_with_descriptions(capsys):
    code, out, err = run(capsys, "models")
    assert code == 0 and err == ""
    models = cp.list_models()
    assert {"one_cmt_iv", "one_cmt_oral", "two_cmt_iv"} <= set(models)
    lines = out.splitlines()
    for name, description in models.items():
        assert any(ln.startswith(name) and ln.rstrip().endswith(description) for ln in lines)


def test_models_name_prints_summary_and_parameter_table(capsys):
    code, out, err = run(capsys, "models", "two_cmt_iv")
    assert code == 0 and err == ""
    spec = cp.load_model("two_cmt_iv")
    assert out.startswith(spec.summary())
    rows = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip()}
    for p in spec.parameters.values():
        row = rows[p.name]
        assert f"{p.value:g}" in row and p.unit in row and p.description in row


def test_models_accepts_a_file_and_shows_covariates(capsys, tmp_path):
    path = tmp_path / "mm_idr.toml"
    path.write_text(MM_IDR)
    code, out, _ = run(capsys, "models", path)
    assert code == 0
    assert "nonlinear" in out and "covariates:" in out
    assert "inflammation" in out and "host inflammation relative to typical" in out


# ---------------------------------------------------------------------- simulate
def test_simulate_repeated_infusion_writes_csv_matching_api_and_png(capsys, tmp_path):
    code, out, err = run(
        capsys,
        "simulate", "two_cmt_iv",
        "--dose", "100", "--duration", "1", "--interval", "24", "--count", "3",
        "--end", "72", "--step", "0.5", "--param", "CL=1.5,2.5", "--param", "V2=25",
        "--output", tmp_path,
    )  # fmt: skip
    assert code == 0, err
    csv_path = tmp_path / "two_cmt_iv_simulation.csv"
    png_path = tmp_path / "two_cmt_iv_simulation.png"
    assert str(csv_path) in out and str(png_path) in out
    assert "3 doses of 100 mg into central (1-h infusion) every 24 h" in out
    assert_png(png_path)

    table = pd.read_csv(csv_path)
    assert list(table.columns) == ["subject", "time", "central", "peripheral", "conc", "status"]
    dose = cp.Dose(time=0.0, amount=100.0, cmt="central", duration=1.0)
    times = np.arange(0.0, 72.0 + 0.25, 0.5)
    expected = cp.simulate(
        "two_cmt_iv",
        cp.Regimen.repeat(dose, interval=24.0, count=3),
        times,
        params={"CL": np.array([1.5, 2.5]), "V2": 25.0},
    )
    assert table.shape == (2 * times.size, 6)
    for i in range(2):
        rows = table[table["subject"] == i]
        np.testing.assert_array_equal(rows["time"].to_numpy(), times)
        for name in ("central", "peripheral", "conc"):
            # same engine and inputs; the CSV round-trip of float64 is exact to ~1 ulp
            np.testing.assert_allclose(
                rows[name].to_numpy(), expected[name].values[i], rtol=1e-13, atol=0.0
            )
    assert table["conc"].max() > 0


def test_simulate_default_state_end_and_step(capsys, tmp_path):
    # one_cmt_oral doses its [dosing] state 'depot'; two_cmt_iv (no [dosing]) its first state
    code, out, _ = run(capsys, "simulate", "one_cmt_oral", "--dose", "320", "--output", tmp_path)
    assert code == 0 and "320 mg into depot (bolus)" in out
    table = pd.read_csv(tmp_path / "one_cmt_oral_simulation.csv")
    times = table["time"].to_numpy()
    assert times[0] == 0.0 and times[-1] == 48.0  # default end 48 [h]
    np.testing.assert_allclose(np.diff(times), 0.1)  # 48 / 400 = 0.12, rounded down to 0.1
    assert table["depot"].iloc[0] == 320.0  # a record at a dose time reports the dosed state

    code, out, _ = run(
        capsys, "simulate", "two_cmt_iv", "--dose", "5", "--interval", "12", "--count", "5",
        "--output", tmp_path,
    )  # fmt: skip
    assert code == 0 and "into central" in out
    times = pd.read_csv(tmp_path / "two_cmt_iv_simulation.csv")["time"].to_numpy()
    assert times[-1] == 60.0  # default end = interval x count


def test_simulate_times_file_cmt_number_lag_and_log(capsys, tmp_path):
    times_file = tmp_path / "times.txt"
    times_file.write_text("time\n0, 0.5, 1\n# a comment\n2 4 8\n")
    code, out, err = run(
        capsys, "simulate", "one_cmt_oral", "--dose", "100", "--cmt", "2", "--lag", "0.5",
        "--times-file", times_file, "--log", "--output", tmp_path / "new" / "folder",
    )  # fmt: skip
    assert code == 0, err
    assert "100 mg into central (bolus), lag 0.5 h" in out
    table = pd.read_csv(tmp_path / "new" / "folder" / "one_cmt_oral_simulation.csv")
    np.testing.assert_array_equal(table["time"], [0, 0.5, 1, 2, 4, 8])
    # bolus into central (CMT 2) after a 0.5 h lag: nothing before, CL/V decay after
    assert table["central"].iloc[0] == 0.0
    expected = 100.0 * np.exp(-2.8 / 32.0 * (table["time"].to_numpy()[1:] - 0.5))
    np.testing.assert_allclose(table["central"].to_numpy()[1:], expected, rtol=1e-10)
    assert_png(tmp_path / "new" / "folder" / "one_cmt_oral_simulation.png")


def test_simulate_model_file_with_covariates_two_panels(capsys, tmp_path):
    path = tmp_path / "mm_idr.toml"
    path.write_text(MM_IDR)
    code, out, err = run(
        capsys, "simulate", path, "--dose", "100", "--interval", "24", "--count", "2",
        "--covariate", "inflammation=0.5,2", "--log", "--output", tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert "solver tsit5" in out
    table = pd.read_csv(tmp_path / "one_cmt_mm_idr_simulation.csv")
    assert list(table.columns) == [
        "subject",
        "time",
        "central",
        "marker",
        "conc",
        "biomarker",
        "status",
    ]
    baseline = table[table["time"] == 0.0]["biomarker"].to_numpy()
    np.testing.assert_allclose(baseline, [10.0 * 0.5 / 0.5, 10.0 * 2.0 / 0.5])  # kin*infl/kout
    assert_png(tmp_path / "one_cmt_mm_idr_simulation.png")


# ---------------------------------------------------------------------- demo
def test_demo_writes_table_and_plot(capsys, tmp_path):
    code, out, err = run(capsys, "demo", "--output", tmp_path)
    assert code == 0, err
    csv_path = tmp_path / "two_cmt_iv_demo.csv"
    png_path = tmp_path / "two_cmt_iv_demo.png"
    assert str(csv_path) in out and str(png_path) in out
    assert_png(png_path)
    table = pd.read_csv(csv_path)
    assert list(table.columns) == ["subject", "time", "central", "peripheral", "conc", "status"]
    assert sorted(table["subject"].unique()) == [0, 1, 2, 3, 4]
    times = table[table["subject"] == 0]["time"].to_numpy()
    np.testing.assert_allclose(times, np.arange(337) * 0.5)  # every 0.5 h to 168 h
    # subjects differ (log-normal CL and V1) and every one received its seven doses
    at_end = table[table["time"] == 168.0]["conc"].to_numpy()
    assert np.unique(np.round(at_end, 12)).size == 5 and np.all(at_end > 0)
    # the seed is fixed: a second run gives the same table
    code, _, _ = run(capsys, "demo", "--output", tmp_path / "again")
    pd.testing.assert_frame_equal(table, pd.read_csv(tmp_path / "again" / "two_cmt_iv_demo.csv"))


@pytest.mark.slow
def test_console_entry_point_runs_demo(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cellpkpd.cli.main", "demo", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "two_cmt_iv_demo.csv").is_file()
    assert_png(tmp_path / "two_cmt_iv_demo.png")
    assert str(tmp_path / "two_cmt_iv_demo.png") in proc.stdout


@pytest.mark.slow
def test_console_entry_point_bad_input_exit_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cellpkpd.cli.main", "simulate", "nope", "--dose", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("cellpkpd: error: unknown model")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_console_exit_runs_atexit_flushes_a_pipe_and_keeps_the_code(tmp_path):
    """`console` leaves without Python's teardown (~0.5 s), but as a normal exit does: the
    atexit handlers run, output written to a pipe arrives whole, the files are complete
    (the CSV equals the in-process `main`'s), and the exit code is main's (2 on bad input)."""
    script = (
        "import atexit, sys; atexit.register(lambda: print('atexit ran'));"
        "from cellpkpd.cli.main import console; sys.argv[1:] = {argv!r}; console()"
    )
    argv = ["simulate", "two_cmt_iv", "--dose", "100", "--output", str(tmp_path / "a")]
    proc = subprocess.run([sys.executable, "-c", script.format(argv=argv)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "atexit ran" and lines[-2].startswith("plot:")
    assert main(["simulate", "two_cmt_iv", "--dose", "100", "--output", str(tmp_path / "b")]) == 0
    name = "two_cmt_iv_simulation.csv"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    bad = ["simulate", "two_cmt_iv", "--dose", "100", "--param", "nope=1"]
    proc = subprocess.run([sys.executable, "-c", script.format(argv=bad)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == "atexit ran\n"
    assert proc.stderr.strip().startswith("cellpkpd: error:")


# ---------------------------------------------------------------------- help
@pytest.mark.parametrize("argv", [["--help"], ["models", "--help"], ["simulate", "--help"],
                                  ["demo", "--help"]])  # fmt: skip
def test_every_command_has_help(capsys, argv):
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert out.startswith("usage: cellpkpd")


def test_no_command_prints_help(capsys):
    code, out, _ = run(capsys)
    assert code == 0 and "simulate" in out and "demo" in out


# ---------------------------------------------------------------------- bad input
BAD_TOML = '[model]\nname = "broken"\n[states\ncentral = 0\n'
BAD_FLOW = '[model]\nname = "x"\n[states]\ncentral = 0\n[flows]\n"central -> gut" = "1"\n'
SIM = ["simulate", "two_cmt_iv", "--dose", "1"]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["simulate", "nope", "--dose", "1"], 2, "unknown model 'nope'"),
        (["models", "nope"], 2, "unknown model 'nope'"),
        ([*SIM, "--cmt", "gut"], 2, "unknown state 'gut'"),
        ([*SIM, "--cmt", "3"], 2, "cmt = 3"),
        (["simulate", "two_cmt_iv", "--dose", "-5"], 2, "amount = -5"),
        (["simulate", "two_cmt_iv", "--dose", "abc"], 2, "--dose: invalid amount 'abc'"),
        ([*SIM, "--duration", "3 mg"], 2, "--duration: invalid time '3 mg': not a time"),
        (["simulate", "two_cmt_iv", "--dose", "2e6 cells"], 2, "amount in cells does not convert"),
        ([*SIM, "--param", "CL"], 2, "--param 'CL': expected NAME=VALUE"),
        ([*SIM, "--param", "CL=fast"], 2, "--param CL=fast: 'fast' is not a number"),
        ([*SIM, "--param", "K=3"], 2, "unknown parameter 'K'; known: CL, V1, Q, V2"),
        ([*SIM, "--covariate", "CL=3"], 2, "'CL' is a parameter"),
        ([*SIM, "--param", "CL=1,2", "--param", "V1=1,2,3"], 2, "params['V1'] has 3 values"),
        ([*SIM, "--end", "0"], 2, "--end = 0 must be a number > 0"),
        ([*SIM, "--end", "-3"], 2, "--end = -3 must be a number > 0"),
        ([*SIM, "--step", "0"], 2, "--step = 0 must be a number > 0"),
        ([*SIM, "--interval", "24"], 2, "--interval and --count go together"),
        ([*SIM, "--interval", "24", "--count", "0"], 2, "count = 0 must be an integer >= 1"),
        ([*SIM, "--solver", "rk4"], 2, "invalid choice: 'rk4'"),
        ([*SIM, "--times-file", "{tmp}/missing.txt"], 2, "missing.txt: file not found"),
        ([*SIM, "--times-file", "{tmp}/words.txt"], 2, "line 2: 'soon' is not a number"),
        (["simulate", "{tmp}/no/such/model.toml", "--dose", "1"], 2, "model file not found"),
        (["simulate", "{tmp}/broken.toml", "--dose", "1"], 2, "broken.toml: not valid TOML"),
        (["simulate", "{tmp}/flow.toml", "--dose", "1"], 2, "flows.'central -> gut'"),
        (["simulate", "{tmp}/mm.toml", "--dose", "1", "--solver", "exact"], 2, "needs a linear"),
        ([*SIM, "--output", "{tmp}/words.txt"], 2, "exists and is not a folder"),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_one_line_error(capsys, tmp_path, argv, code, message):
    (tmp_path / "broken.toml").write_text(BAD_TOML)
    (tmp_path / "flow.toml").write_text(BAD_FLOW)
    (tmp_path / "mm.toml").write_text(MM_IDR)
    (tmp_path / "words.txt").write_text("0 1\n2 soon\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] == "simulate" and "--output" not in argv:
        argv = [*argv, "--output", str(tmp_path / "out")]
    got, out, err = run(capsys, *argv)
    assert got == code
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cellpkpd: error: ")
    assert message in lines[0]
    assert not (tmp_path / "out").exists()  # nothing written on failure


def test_failed_solve_exits_1_with_the_reason(capsys, tmp_path, monkeypatch):
    # the engine's own failure reporting is tested in test_simulate; here only its mapping
    def failing(*args, **kwargs):
        raise cp.SimulationError("two_cmt_iv: 1 of 1 subjects failed: subject 0: step limit")

    monkeypatch.setattr(cp, "simulate", failing)
    code, out, err = run(capsys, *SIM, "--output", tmp_path / "out")
    assert code == 1 and out == ""
    assert err == "cellpkpd: error: two_cmt_iv: 1 of 1 subjects failed: subject 0: step limit\n"
    assert not (tmp_path / "out").exists()


def test_a_failed_subject_keeps_the_others_results(capsys, tmp_path):
    """V1 = 0 fails subject 0 (status 2); subject 1 is still written, the failed one as NaN
    rows with its status, and the exit code is 1 with the reason."""
    import pandas as pd

    out = tmp_path / "out"
    code, _, err = run(capsys, "simulate", "two_cmt_iv", "--dose", "100", "--param",
                       "V1=0,10", "--end", "4", "--output", out)  # fmt: skip
    assert code == 1
    assert err.startswith("cellpkpd: error: two_cmt_iv: 1 of 2 subjects failed: subject 0")
    assert "NaN (column status)" in err
    table = pd.read_csv(out / "two_cmt_iv_simulation.csv")
    assert set(table.loc[table["subject"] == 0, "status"]) == {2}
    assert table.loc[table["subject"] == 0, "conc"].isna().all()
    ok = table[table["subject"] == 1]
    assert set(ok["status"]) == {0} and ok["conc"].notna().all() and ok["conc"].max() > 0


def test_unwritable_output_exits_1(capsys, tmp_path, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    code, _, err = run(capsys, *SIM, "--output", tmp_path / "locked")
    assert code == 1
    assert err.startswith("cellpkpd: error: ") and "locked: Permission denied" in err
    assert len(err.splitlines()) == 1
