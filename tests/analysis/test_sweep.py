"""`cp.sweep`: chunking, sharding over devices, resuming after a kill, Dask, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

import cellpkpd as cp

DOSE = 100.0  # mg
TIMES = np.linspace(0.0, 240.0, 61)  # h; exp(-k 240) <= 3e-11 for every CL/V below
one_cmt = cp.load_model("one_cmt_iv")
bolus = cp.Regimen([cp.Dose(time=0.0, amount=DOSE, cmt="central")])
METRICS = {"auc": cp.metrics.auc("conc"), "cmax": cp.metrics.cmax("conc")}


def _samples(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"CL": rng.uniform(1.0, 4.0, n), "V": rng.uniform(5.0, 15.0, n)}


def test_chunks_give_the_same_result_as_one_batch_and_match_closed_forms():
    s = _samples(11)
    whole = cp.sweep(one_cmt, bolus, TIMES, s, METRICS, progress=False)
    chunked = cp.sweep(one_cmt, bolus, TIMES, s, METRICS, chunk_size=4, progress=False)
    assert chunked.attrs["n_chunks"] == 3 and chunked.attrs["chunks_computed"] == 3
    assert whole.sizes == {"sample": 11}
    for name in METRICS:
        # same per-set program; only the batch composition differs: round-off at most
        np.testing.assert_allclose(chunked[name].values, whole[name].values, rtol=1e-12)
    # exact path + running integral: dose / CL to round-off (AUC to 240 h = AUC to inf)
    np.testing.assert_allclose(whole["auc"].values, DOSE / s["CL"], rtol=1e-6)
    np.testing.assert_allclose(whole["cmax"].values, DOSE / s["V"], rtol=1e-12)
    np.testing.assert_array_equal(whole["CL"].values, s["CL"])
    assert (whole["status"].values == 0).all()
    assert whole["auc"].attrs["unit"] == "mg/L*h"


def test_regimens_per_set_dose_arrays_dataframe_and_covariates():
    s = _samples(5)
    amounts = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    regs = [cp.Regimen([cp.Dose(time=0.0, amount=a, cmt="central")]) for a in amounts]
    by_list = cp.sweep(one_cmt, regs, TIMES, pd.DataFrame(s), METRICS, progress=False)
    arrays = cp.stack_dose_arrays(regs, None, one_cmt)
    by_arrays = cp.sweep(one_cmt, arrays, TIMES, s, METRICS, chunk_size=2, progress=False)
    np.testing.assert_allclose(by_list["auc"].values, amounts / s["CL"], rtol=1e-6)
    np.testing.assert_allclose(by_arrays["auc"].values, by_list["auc"].values, rtol=1e-12)
    # a scalar given in covariates= is shared by every set
    shared = cp.sweep(
        one_cmt, bolus, TIMES, {"CL": s["CL"]}, METRICS, covariates={"V": 20.0}, progress=False
    )
    np.testing.assert_allclose(shared["cmax"].values, DOSE / 20.0, rtol=1e-12)
    # metrics given as a list are named by default
    listed = cp.sweep(one_cmt, bolus, TIMES, s, [cp.metrics.auc("conc")], progress=False)
    assert "auc_conc" in listed


def test_progress_bar_and_float32_outputs(capsys):
    out = cp.sweep(
        one_cmt, bolus, TIMES, _samples(3), METRICS, progress=True, outputs_dtype=np.float32
    )
    assert out["auc"].dtype == np.float32
    assert "sweep one_cmt_iv" in capsys.readouterr().err


def test_failed_sets_get_nan_and_one_warning(monkeypatch):
    from cellpkpd.engine.simulator import Simulator

    real = Simulator.batch

    def failing(self, *args, **kw):
        out, status = real(self, *args, **kw)
        return out, status.at[1].set(3)  # as if the solver had hit its step limit

    monkeypatch.setattr(Simulator, "batch", failing)
    with pytest.warns(RuntimeWarning, match=r"1 of 4 parameter sets failed .*samples 1\)"):
        out = cp.sweep(one_cmt, bolus, TIMES, _samples(4), METRICS, progress=False)
    assert np.isnan(out["auc"].values[1]) and np.isfinite(out["auc"].values[[0, 2, 3]]).all()
    assert out["status"].values.tolist() == [0, 3, 0, 0]


# ------------------------------------------------------------------ subprocesses
SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import jax
    import cellpkpd as cp
    from cellpkpd.analysis import sweep as sweep_module

    spec = cp.load_model(sys.argv[1])
    out_file, path, delay = sys.argv[2], sys.argv[3], float(sys.argv[4])
    rng = np.random.default_rng(1)
    n = int(sys.argv[5])
    samples = {"V": rng.uniform(5.0, 15.0, n), "Vmax": rng.uniform(2.0, 8.0, n)}
    reg = cp.Regimen([cp.Dose(time=0.0, amount=40.0, cmt="central", duration=1.0)])
    times = np.linspace(0.0, 48.0, 49)
    metrics = {"auc": cp.metrics.auc("conc"), "cmax": cp.metrics.cmax("conc"),
               "drop": cp.metrics.max_pct_change("biomarker")}
    if delay:  # slow each chunk down so that the parent can kill us mid-sweep
        real = sweep_module._run_chunk
        def slow(*a, **k):
            r = real(*a, **k)
            time.sleep(delay)
            return r
        sweep_module._run_chunk = slow
    res = cp.sweep(spec, reg, times, samples, metrics, chunk_size=int(sys.argv[6]),
                   path=None if path == "-" else path, progress=False)
    np.savez(out_file, devices=jax.device_count(), **{k: res[k].values for k in metrics})
    """
)
MM_IDR = str(ROOT / "benchmarks" / "models" / "mm_idr.toml")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "CELLPKPD_CPU_DEVICES")}
    env.update(extra)
    return env


@pytest.mark.slow
def test_sharding_over_four_devices_gives_identical_results(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    results = {}
    for label, env in (
        ("four", _env(XLA_FLAGS="--xla_force_host_platform_device_count=4")),
        ("one", _env(CELLPKPD_CPU_DEVICES="1")),
    ):
        out = tmp_path / f"{label}.npz"
        args = [sys.executable, str(script), MM_IDR, str(out), "-", "0", "37", "16"]
        subprocess.run(args, env=env, check=True, timeout=300)
        results[label] = np.load(out)
    assert int(results["four"]["devices"]) == 4 and int(results["one"]["devices"]) == 1
    for k in ("auc", "cmax", "drop"):
        # every set is solved by the same per-set program whichever device holds it
        np.testing.assert_array_equal(results["four"][k], results["one"][k])


@pytest.mark.slow
def test_resume_after_a_kill_skips_finished_chunks(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    folder = tmp_path / "sweep"
    args = [
        sys.executable,
        str(script),
        MM_IDR,
        str(tmp_path / "x.npz"),
        str(folder),
        "1.0",
        "120",
        "10",
    ]
    proc = subprocess.Popen(args, env=_env(CELLPKPD_CPU_DEVICES="1"))
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if len(list(folder.glob("chunk_*.npz"))) >= 3:
                break
            assert proc.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = sorted(folder.glob("chunk_*.npz"))
    assert 3 <= len(done) < 12, [p.name for p in done]
    stamps = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in done}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["n_chunks"] == 12

    # the same sweep in this process: the finished chunks are loaded, the rest computed
    rng = np.random.default_rng(1)
    samples = {"V": rng.uniform(5.0, 15.0, 120), "Vmax": rng.uniform(2.0, 8.0, 120)}
    spec = cp.load_model(MM_IDR)
    reg = cp.Regimen([cp.Dose(time=0.0, amount=40.0, cmt="central", duration=1.0)])
    times = np.linspace(0.0, 48.0, 49)
    metrics = {
        "auc": cp.metrics.auc("conc"),
        "cmax": cp.metrics.cmax("conc"),
        "drop": cp.metrics.max_pct_change("biomarker"),
    }
    resumed = cp.sweep(
        spec, reg, times, samples, metrics, chunk_size=10, path=folder, progress=False
    )
    assert resumed.attrs["chunks_loaded"] == len(done)
    assert resumed.attrs["chunks_computed"] == 12 - len(done)
    for p in done:  # not rewritten
        assert (p.stat().st_mtime_ns, p.read_bytes()) == stamps[p.name]
    assert len(list(folder.glob("chunk_*.npz"))) == 12
    fresh = cp.sweep(spec, reg, times, samples, metrics, chunk_size=10, progress=False)
    for k in metrics:
        np.testing.assert_array_equal(resumed[k].values, fresh[k].values)
    # a third run loads everything
    again = cp.sweep(spec, reg, times, samples, metrics, chunk_size=10, path=folder, progress=False)
    assert again.attrs["chunks_computed"] == 0 and again.attrs["chunks_loaded"] == 12


@pytest.mark.slow
def test_dask_local_cluster_equals_local_result(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    s = _samples(30, seed=3)
    local = cp.sweep(one_cmt, bolus, TIMES, s, METRICS, chunk_size=8, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
    try:
        with distributed.Client(cluster) as client:
            remote = cp.sweep(
                one_cmt,
                bolus,
                TIMES,
                s,
                METRICS,
                chunk_size=8,
                client=client,
                path=tmp_path / "d",
                progress=False,
            )
    finally:
        cluster.close()
    assert remote.attrs["chunks_computed"] == 4
    assert len(list((tmp_path / "d").glob("chunk_*.npz"))) == 4
    for k in METRICS:
        np.testing.assert_allclose(remote[k].values, local[k].values, rtol=1e-12)


# ------------------------------------------------------------------ bad input
def test_bad_inputs_give_one_line_errors(tmp_path):
    s = _samples(4)
    first = tmp_path / "first"
    cp.sweep(one_cmt, bolus, TIMES, s, METRICS, path=first, progress=False)
    cases = [
        (lambda: cp.sweep(one_cmt, bolus, TIMES, {"CLx": [1.0]}, METRICS), "unknown name 'CLx'"),
        (
            lambda: cp.sweep(one_cmt, bolus, TIMES, {"CL": [1.0, 2.0], "V": [1.0]}, METRICS),
            r"different lengths \(CL: 2, V: 1\)",
        ),
        (lambda: cp.sweep(one_cmt, bolus, TIMES, s, METRICS, chunk_size=0), "chunk_size = 0"),
        (
            lambda: cp.sweep(one_cmt, bolus, TIMES, s, {"a": cp.metrics.auc("plasma")}),
            "unknown output 'plasma'",
        ),
        (
            lambda: cp.sweep(one_cmt, bolus, TIMES, _samples(5), METRICS, path=first),
            "holds a different sweep",
        ),
        (lambda: cp.sweep(one_cmt, bolus, TIMES, {"CL": [-1.0]}, METRICS), "outside its bounds"),
        (lambda: cp.sweep(one_cmt, [bolus, bolus], TIMES, s, METRICS), "2 regimens but"),
        (lambda: cp.sweep(one_cmt, "x", TIMES, s, METRICS), "regimen must be"),
        (lambda: cp.sweep(one_cmt, bolus, [2.0, 1.0], s, METRICS), "non-decreasing"),
    ]
    for call, match in cases:
        with pytest.raises(cp.CellPKPDError, match=match) as info:
            call()
        assert "\n" not in str(info.value)


@pytest.mark.slow
def test_an_edited_chunk_is_refused_by_its_checksum_and_a_deleted_one_recomputed(tmp_path):
    s = _samples(6)
    folder = tmp_path / "s"
    first = cp.sweep(one_cmt, bolus, TIMES, s, METRICS, chunk_size=3, path=folder, progress=False)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(manifest["chunks"]) == ["chunk_000000.npz", "chunk_000001.npz"]
    for name, digest in manifest["chunks"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    # edit a value in a finished chunk: a resumed sweep must not trust it
    chunk = folder / "chunk_000001.npz"
    with np.load(chunk) as z:
        data = {k: np.array(z[k]) for k in z.files}
    data["auc"][0] *= 2.0
    np.savez(chunk, **data)
    with pytest.raises(cp.SpecError, match=r"chunk file .*chunk_000001\.npz.* SHA-256") as info:
        cp.sweep(one_cmt, bolus, TIMES, s, METRICS, chunk_size=3, path=folder, progress=False)
    assert "\n" not in str(info.value)
    chunk.unlink()  # deleted: recomputed, the other one loaded after its checksum matched
    again = cp.sweep(one_cmt, bolus, TIMES, s, METRICS, chunk_size=3, path=folder, progress=False)
    assert again.attrs["chunks_loaded"] == 1 and again.attrs["chunks_computed"] == 1
    np.testing.assert_array_equal(again["auc"].values, first["auc"].values)


@pytest.mark.slow
def test_each_set_sees_only_its_own_dose_jumps():
    # per-set regimens with second doses at 12 h and 7 h: each set's time above reads both
    # sides of its own jump only, so it equals the closed form and its value swept alone
    times = np.arange(0.0, 25.0, 5.0)  # neither dose time is an output time
    thr = 3.0
    regs = [
        cp.Regimen([cp.Dose(time=t, amount=DOSE, cmt="central") for t in (0.0, second)])
        for second in (12.0, 7.0)
    ]
    m = {"above": cp.metrics.time_above("conc", thr), "hl": cp.metrics.half_life("conc")}
    s = {"CL": np.array([2.0, 2.0]), "V": np.array([10.0, 10.0])}
    both = cp.sweep(one_cmt, regs, times, s, m, progress=False)
    k, c = 0.2, DOSE / 10.0
    for i, second in enumerate((12.0, 7.0)):
        c_after = c * (1.0 + np.exp(-k * second))
        before = min(np.log(c / thr) / k, second)
        want = before + min(np.log(c_after / thr) / k, 24.0 - second)
        # log-linear pieces of a mono-exponential: exact to round-off, 1e-9
        np.testing.assert_allclose(both["above"].values[i], want, rtol=1e-9)
        alone = cp.sweep(one_cmt, regs[i], times, {"CL": [2.0], "V": [10.0]}, m, progress=False)
        np.testing.assert_allclose(both["above"].values[i], alone["above"].values[0], rtol=1e-12)
        # the half-life reads the user's times only (not the points added at either jump)
        res = cp.simulate(one_cmt, regs[i], times)
        np.testing.assert_allclose(both["hl"].values[i], m["hl"](res).values[0], rtol=1e-10)
