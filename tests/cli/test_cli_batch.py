"""`cellpkpd doses` and `cellpkpd sweep`: the example configurations end to end (small
sizes), the samplers, resuming, and one-line errors (exit 2) on bad configurations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import DOSES_SMALL

import cellpkpd as cp
from cellpkpd.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def shrink(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in text, old  # the example still has the line the test shrinks
        text = text.replace(old, new)
    return text


@pytest.mark.slow
def test_doses_example_end_to_end(capsys, tmp_path):
    # the example as shipped, with fewer subjects and output times (msc_pkpd_host, ODE path)
    text = shrink(
        (EXAMPLES / "doses.toml").read_text(),
        {"n = 20\n": "n = 3\n", "step = 8\n": "step = 24\n"},
    )
    config = tmp_path / "doses.toml"
    config.write_text(text)
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "doses", config, "--out", out, "--no-progress")
    assert code == 0, err
    assert "msc_pkpd_host: 12 arms x 3 virtual subjects, 3 metrics; 0 failed solves" in stdout
    table = pd.read_csv(out / "doses.csv")
    assert len(table) == 12 * 3
    assert list(table.columns) == [
        "arm", "dose", "regimen", "viability", "metric", "unit", "median", "p05", "p95", "n",
        "n_failed", "target", "pta",
    ]  # fmt: skip
    assert set(table["regimen"]) == {"single", "split x2"}
    assert (table["n"] == 3).all() and (table["n_failed"] == 0).all()
    supp = table[(table.metric == "suppression") & (table.regimen == "single")]
    for _, part in supp.groupby("viability"):
        assert np.all(np.diff(part.sort_values("dose")["median"]) > 0)  # more cells, more effect
    assert supp["pta"].between(0, 1).all() and set(supp["target"]) == {">= 30"}
    cells = table[table.metric == "viable_cell_days"]
    assert set(cells["unit"]) == {"cells*day"}
    for name in ("suppression", "viable_cell_days", "mediator_auc"):
        assert_png(out / f"dose_response_{name}.png")
    assert_png(out / "target_attainment_suppression.png")


@pytest.mark.slow
def test_sweep_example_end_to_end_and_resume(capsys, tmp_path):
    text = shrink(
        (EXAMPLES / "sweep.toml").read_text(),
        {"n = 256\n": "n = 32\n", "chunk_size = 128\n": "chunk_size = 16\n"},
    )
    config = tmp_path / "sweep.toml"
    config.write_text(text)
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "sweep", config, "--out", out, "--no-progress")
    assert code == 0, err
    assert "two_cmt_iv: 32 parameter sets, 5 metrics; 0 failed solves" in stdout
    with xr.open_dataset(out / "sweep.nc") as ds:
        ds = ds.load()
    assert ds.sizes["sample"] == 32
    assert {"auc_week", "cmax_last", "trough_last", "time_above_1", "half_life"} <= set(ds)
    assert ds["CL"].min() >= 1.0 and ds["CL"].max() <= 8.0 and ds["Q"].max() <= 4.0
    assert ds["auc_week"].attrs["unit"] == "mg/L*h"
    assert ds.attrs["chunks_computed"] == 2
    # the same sets through the API give the same numbers
    reg = cp.Regimen.repeat(cp.Dose(0.0, 100.0, "central", duration=1.0), interval=24.0, count=7)
    api = cp.sweep(
        "two_cmt_iv", reg, np.arange(0.0, 169.0, 1.0),
        {k: ds[k].values for k in ("CL", "V1", "Q")},
        {"auc_week": cp.metrics.auc("conc", start=0, end=168)}, progress=False,
    )  # fmt: skip
    np.testing.assert_allclose(api["auc_week"].values, ds["auc_week"].values, rtol=1e-12)
    table = pd.read_csv(out / "sweep.csv")
    assert len(table) == 32
    assert_png(out / "sweep_histograms.png")
    # resume = true: a re-run loads the finished chunks instead of recomputing them
    code, _, err = run(capsys, "sweep", config, "--out", out, "--no-progress")
    assert code == 0, err
    with xr.open_dataset(out / "sweep.nc") as again:
        assert again.attrs["chunks_loaded"] == 2 and again.attrs["chunks_computed"] == 0
        np.testing.assert_array_equal(again["auc_week"].values, ds["auc_week"].values)


SWEEP_GRID = """
model = "one_cmt_iv"
chunk_size = 100
[times]
values = [0, 24, 48, 96, 192, 400]
[regimen]
doses = [{ amount = 100, cmt = "central" }]
[sampler]
kind = "grid"
[sampler.parameters]
CL = [1, 2, 4]
V = { low = 5, high = 20, num = 2, scale = "log" }
[metrics]
auc = { kind = "auc", output = "conc" }
"""


def test_sweep_grid_sampler_gives_every_combination(capsys, tmp_path):
    config = tmp_path / "grid.toml"
    config.write_text(SWEEP_GRID)
    code, _, err = run(capsys, "sweep", config, "--out", tmp_path / "o", "--no-progress")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "o" / "sweep.csv")
    assert sorted(zip(table.CL, table.V, strict=True)) == [
        (c, v) for c in (1.0, 2.0, 4.0) for v in (5.0, 20.0)
    ]
    # AUC to 400 h (at most exp(-20) of the dose left): dose / CL; exact path, integral state
    np.testing.assert_allclose(table["auc"], 100.0 / table["CL"], rtol=1e-6)


def test_sweep_random_sampler_with_distribution(capsys, tmp_path):
    text = SWEEP_GRID.replace('kind = "grid"', 'kind = "random"\nn = 50\nseed = 3').replace(
        'CL = [1, 2, 4]\nV = { low = 5, high = 20, num = 2, scale = "log" }',
        'CL = { distribution = "lognormal(log(2), 0.3)" }\nV = { low = 5, high = 20 }',
    )
    config = tmp_path / "random.toml"
    config.write_text(text)
    code, _, err = run(capsys, "sweep", config, "--out", tmp_path / "o", "--no-progress")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "o" / "sweep.csv")
    assert len(table) == 50 and table["V"].between(5, 20).all()
    assert table["CL"].nunique() == 50
    np.testing.assert_allclose(table["auc"], 100.0 / table["CL"], rtol=1e-6)


def test_doses_small_config_matches_api(capsys, tmp_path):
    config = tmp_path / "d.toml"
    config.write_text(DOSES_SMALL)
    code, out, err = run(capsys, "doses", config, "--out", tmp_path / "o", "--no-progress")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "o" / "doses.csv")
    pop = cp.VirtualPopulation("one_cmt_iv", 2, random_effects={"CL": 0.2}, seed=1)
    for _, row in table.iterrows():
        auc = row["dose"] / pop.params["CL"]  # same seed, same subjects
        assert row["median"] == pytest.approx(np.median(auc), rel=1e-6)
        assert row["pta"] == np.mean(auc >= 20.0)
    assert "doses.csv" in out and "dose_response_auc.png" in out


@pytest.mark.parametrize(
    ("command", "edit", "match"),
    [
        ("doses", ("[metrics]", "chunksize = 10\n[metrics]"), "chunksize: unknown key"),
        ("doses", ('auc = { kind = "auc"', 'auc = { kind = "aucc"'), "metrics.auc.kind: 'aucc'"),
        (
            "doses",
            ('output = "conc"', 'output = "cp"'),
            "metrics.auc.output: 'cp' is not an output",
        ),
        ("doses", ('[">=", 20]', '["=>", 20]'), "target.auc:"),
        ("doses", ("auc = [", "cmax = ["), "target.cmax: unknown key"),
        (
            "doses",
            ("dose = [10, 100]", "dose = [10, -1]"),
            r"arms.dose\[1\]: -1 must be a number >= 0",
        ),
        ("doses", ("dose = [10, 100]", 'regimen = ["weekly"]'), "arms.regimen: 'weekly' is not in"),
        ("doses", ("CL = 0.2", "Cl = 0.2"), "population.random_effects.Cl: unknown key"),
        ("doses", ("n = 2", "n = 0"), "population.n: 0 must be an integer >= 1"),
        ("doses", ("step = 8", "step = -8"), "times.step: -8 must be a number > 0"),
        ("doses", ('cmt = "central"', 'cmt = "gut"'), "regimens.single: .*unknown state 'gut'"),
        ("doses", ('model = "one_cmt_iv"', 'model = "no_such_model"'), "model: "),
        ("doses", ("[metrics]\nauc", "[metricz]\nauc"), "metricz: unknown key"),
        ("doses", ("[target]", "target = 3\n[t2]"), "t2: unknown key"),
        ("sweep", ('kind = "grid"', 'kind = "latin"'), "sampler.kind: 'latin'"),
        ("sweep", (", num = 2", ""), r"sampler.parameters.V.num: missing"),
        ("sweep", ("CL = [1, 2, 4]", "ka = [1, 2, 4]"), "sampler.parameters.ka: unknown key"),
        ("sweep", ('scale = "log"', 'scale = "ln"'), "sampler.parameters.V.scale: 'ln'"),
        ("sweep", ("[regimen]", "[regimens]"), "regimens: unknown key"),
    ],
)
def test_bad_config_is_one_line_exit_2(capsys, tmp_path, command, edit, match):
    base = DOSES_SMALL if command == "doses" else SWEEP_GRID
    assert edit[0] in base
    config = tmp_path / "bad.toml"
    config.write_text(base.replace(edit[0], edit[1], 1))
    code, out, err = run(capsys, command, config, "--out", tmp_path / "o", "--no-progress")
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("cellpkpd: error: bad.toml")
    assert pytest.importorskip("re").search(match, err), err
    assert not (tmp_path / "o").exists()  # nothing written


def test_missing_or_invalid_config_file(capsys, tmp_path):
    code, _, err = run(capsys, "doses", tmp_path / "none.toml")
    assert code == 2 and "none.toml: file not found" in err
    bad = tmp_path / "bad.toml"
    bad.write_text("model = \n")
    code, _, err = run(capsys, "sweep", bad)
    assert code == 2 and "bad.toml: not valid TOML" in err and err.count("\n") == 1


def test_help_of_batch_commands(capsys):
    for command in ("doses", "sweep"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and "CONFIG.toml" in out and "docs/examples" in out
