"""Benchmark `cp.sweep` against a plain ``jax.jit(jax.vmap(diffrax.diffeqsolve ...))``.

Not collected by pytest; run as a script (see benchmarks/README.md)::

    python benchmarks/bench_sweep.py              # 10^5 and 10^6 parameter sets (minutes)
    python benchmarks/bench_sweep.py --quick      # 2,000 and 20,000 sets (smoke run)

Design
    Model: benchmarks/models/mm_idr.toml (one compartment, Michaelis-Menten elimination,
    indirect-response biomarker; nonlinear, so cellpkpd's diffrax Tsit5 path). One 100 mg IV
    bolus at t = 0, 169 output times (0..168 h hourly), rtol = atol = 1e-8. Six parameters
    (V, Vmax, Km, kin, kout, IC50) drawn log-uniformly within +-50% of the typical values
    (seeded). Five metrics per set: AUC(0-168 h) of conc, Cmax and Tmax of conc, maximum
    percent decrease of the biomarker, time that conc stays >= 1 mg/L.

    cellpkpd: ``cp.sweep(..., chunk_size=--chunk-size)``: chunks of fixed size, metrics
    reduced on the device inside the compiled program (AUC from a running-integral state).

    baseline: what a JAX user writes without cellpkpd: the same right-hand side plus the same
    running integral, ``diffrax.diffeqsolve(Tsit5(), PIDController(rtol, atol),
    SaveAt(ts=times), max_steps=100_000)``, vmapped and jitted over the whole set at once,
    the same five metrics (the same pure `cp.metrics` reductions) applied to the saved
    trajectories inside the same jit.

    Each measurement runs in its own subprocess (fresh interpreter) that reports its peak
    resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``). The compile is done
    first (sweep: one chunk of the same shape; baseline: ``jit(...).lower(...).compile()``)
    and timed apart; "sets/s" is n / the steady wall time. The two results are cross-checked.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
MODEL = HERE / "models" / "mm_idr.toml"
TIMES = np.linspace(0.0, 168.0, 169)
DOSE = 100.0  # mg, IV bolus at t = 0
RTOL = ATOL = 1e-8
PARAMS = ("V", "Vmax", "Km", "kin", "kout", "IC50")


def _metrics(cp: Any) -> dict[str, Any]:
    return {
        "auc_conc": cp.metrics.auc("conc", 0.0, 168.0),
        "cmax_conc": cp.metrics.cmax("conc"),
        "tmax_conc": cp.metrics.tmax("conc"),
        "max_drop_biomarker": cp.metrics.max_pct_change("biomarker", "decrease"),
        "time_above_1": cp.metrics.time_above("conc", 1.0),
    }


def _samples(spec: Any, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    typical = spec.defaults()
    return {k: typical[k] * np.exp(rng.uniform(np.log(0.5), np.log(1.5), n)) for k in PARAMS}


def _cpu_s() -> float:
    """CPU time [s] used so far by this process, all threads (user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024.0


# ------------------------------------------------------------------ workers (subprocess)
def worker_sweep(n: int, chunk_size: int, out: str | None) -> dict[str, Any]:
    import cellpkpd as cp

    spec = cp.load_model(MODEL)
    reg = cp.Regimen([cp.Dose(time=0.0, amount=DOSE, cmt="central")])
    metrics = _metrics(cp)
    samples = _samples(spec, n)
    size = min(chunk_size, n)
    t = time.perf_counter()
    warm = {k: v[:size] for k, v in samples.items()}  # one chunk of the same shape: compiles
    cp.sweep(
        spec, reg, TIMES, warm, metrics, chunk_size=chunk_size, progress=False, rtol=RTOL, atol=ATOL
    )
    compile_s = time.perf_counter() - t
    t, cpu = time.perf_counter(), _cpu_s()
    res = cp.sweep(
        spec,
        reg,
        TIMES,
        samples,
        metrics,
        chunk_size=chunk_size,
        progress=False,
        rtol=RTOL,
        atol=ATOL,
    )
    run_s, cpu_s = time.perf_counter() - t, _cpu_s() - cpu
    if out:
        np.savez(out, **{k: res[k].values for k in metrics})
    failed = int((res["status"].values != 0).sum())
    # the warm-up ran one chunk as well as compiling: subtract that chunk's steady cost
    warmup_s = compile_s
    compile_s = max(0.0, warmup_s - run_s * size / n)
    return {
        "compile_s": compile_s,
        "warmup_s": warmup_s,
        "run_s": run_s,
        "cpu_s": cpu_s,
        "failed": failed,
    }


def worker_baseline(n: int, out: str | None) -> dict[str, Any]:
    import diffrax as dfx
    import jax
    import jax.numpy as jnp

    import cellpkpd as cp
    from cellpkpd.analysis.metrics import integral_name

    spec = cp.load_model(MODEL)
    metrics = _metrics(cp)
    samples = _samples(spec, n)
    covs = spec.defaults()

    def rhs(t: Any, y: Any, p: Any) -> Any:
        central, marker, _ = y
        c = central / p["V"]
        d_central = -p["Vmax"] * c / (p["Km"] + c)
        d_marker = p["kin"] * p["inflammation"] * (1.0 - c / (p["IC50"] + c)) - p["kout"] * marker
        return jnp.stack([d_central, d_marker, c])

    term = dfx.ODETerm(rhs)
    key = integral_name("conc")

    def one(p: Any, times: Any, dose: Any) -> Any:
        y0 = jnp.stack([dose, p["kin"] * p["inflammation"] / p["kout"], 0.0])
        sol = dfx.diffeqsolve(
            term,
            dfx.Tsit5(),
            times[0],
            times[-1],
            None,
            y0,
            args=p,
            saveat=dfx.SaveAt(ts=times),
            stepsize_controller=dfx.PIDController(rtol=RTOL, atol=ATOL),
            max_steps=100_000,
            throw=False,
        )
        ys = {"conc": sol.ys[:, 0] / p["V"], "biomarker": sol.ys[:, 1], key: sol.ys[:, 2]}
        return {k: m.reduce(times, ys) for k, m in metrics.items()}

    f = jax.jit(jax.vmap(one, in_axes=(0, None, None)))
    p = {k: jnp.asarray(v) for k, v in samples.items()}
    p["inflammation"] = jnp.full(n, covs["inflammation"])
    times, dose = jnp.asarray(TIMES), jnp.asarray(DOSE)
    t = time.perf_counter()
    compiled = f.lower(p, times, dose).compile()
    compile_s = time.perf_counter() - t
    t, cpu = time.perf_counter(), _cpu_s()
    res = jax.block_until_ready(compiled(p, times, dose))
    run_s, cpu_s = time.perf_counter() - t, _cpu_s() - cpu
    if out:
        np.savez(out, **{k: np.asarray(v) for k, v in res.items()})
    return {"compile_s": compile_s, "run_s": run_s, "cpu_s": cpu_s, "failed": 0}


def _run_worker(kind: str, n: int, chunk: int, out: Path | None, timeout: float) -> dict:
    args = [sys.executable, __file__, "--worker", kind, "--n", str(n), "--chunk-size", str(chunk)]
    if out is not None:
        args += ["--worker-out", str(out)]
    t = time.perf_counter()
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {"error": f"exit {proc.returncode}: {tail[0][:200]}"}
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["process_wall_s"] = wall
    row["sets_per_s"] = n / row["run_s"]
    row["sets_per_cpu_s"] = n / row["cpu_s"]
    return row


def _compare(a: Path, b: Path) -> float:
    """Largest relative difference over the five metrics (finite values)."""
    za, zb = np.load(a), np.load(b)
    worst = 0.0
    for k in za.files:
        x, y = za[k], zb[k]
        ok = np.isfinite(x) & np.isfinite(y)
        assert np.array_equal(np.isfinite(x), np.isfinite(y)), k
        scale = np.maximum(np.abs(y[ok]), 1e-12)
        worst = max(worst, float(np.max(np.abs(x[ok] - y[ok]) / scale, initial=0.0)))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run (2e3 and 2e4 sets)")
    ap.add_argument("--n", type=int, nargs="+", help="numbers of parameter sets")
    ap.add_argument("--chunk-size", type=int, default=100_000, help="cp.sweep chunk size")
    ap.add_argument(
        "--baseline-max", type=int, default=1_000_000, help="skip the baseline above this many sets"
    )
    ap.add_argument("--timeout", type=float, default=1800.0, help="per measurement [s]")
    ap.add_argument("--out", default=str(HERE / "results" / "bench_sweep.json"))
    ap.add_argument("--worker", choices=("sweep", "baseline"), help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        fn = worker_sweep if a.worker == "sweep" else worker_baseline
        row = (
            fn(a.n[0], a.chunk_size, a.worker_out)
            if a.worker == "sweep"
            else fn(a.n[0], a.worker_out)
        )
        row["peak_rss_mib"] = _peak_rss_mib()
        print(json.dumps(row))
        return
    sizes = a.n or ([2_000, 20_000] if a.quick else [100_000, 1_000_000])
    chunk = a.chunk_size if not a.quick or a.chunk_size != 100_000 else 2_000
    import tempfile

    import jax

    import cellpkpd  # noqa: F401  (sets the host device count as the workers will see it)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            s_out, b_out = Path(tmp) / f"s{n}.npz", Path(tmp) / f"b{n}.npz"
            print(f"n = {n}: cp.sweep ...", flush=True)
            s = _run_worker("sweep", n, chunk, s_out, a.timeout)
            b: dict[str, Any] = {"error": "skipped (--baseline-max)"}
            if n <= a.baseline_max:
                print(f"n = {n}: baseline jit(vmap(diffeqsolve)) ...", flush=True)
                b = _run_worker("baseline", n, chunk, b_out, a.timeout)
            agree = None
            if "error" not in s and "error" not in b:
                agree = _compare(s_out, b_out)
            rows.append(
                {
                    "n": n,
                    "chunk_size": min(chunk, n),
                    "sweep": s,
                    "baseline": b,
                    "max_rel_diff": agree,
                }
            )

    def cell(r: dict, key: str, fmt: str) -> str:
        return format(r[key], fmt) if key in r else "-"

    header = (
        f"{'n':>9} {'sweep sets/s':>13} {'/cpu-s':>7} {'compile s':>9} {'RSS MiB':>8} | "
        f"{'plain sets/s':>13} {'/cpu-s':>7} {'compile s':>9} {'RSS MiB':>8} | "
        f"{'max rel diff':>12}"
    )
    print("\n" + header)
    for r in rows:
        s, b = r["sweep"], r["baseline"]
        diff = "-" if r["max_rel_diff"] is None else f"{r['max_rel_diff']:.1e}"
        print(
            f"{r['n']:>9} {cell(s, 'sets_per_s', '13.0f')} {cell(s, 'sets_per_cpu_s', '7.0f')} "
            f"{cell(s, 'compile_s', '9.1f')} {cell(s, 'peak_rss_mib', '8.0f')} | "
            f"{cell(b, 'sets_per_s', '13.0f')} {cell(b, 'sets_per_cpu_s', '7.0f')} "
            f"{cell(b, 'compile_s', '9.1f')} {cell(b, 'peak_rss_mib', '8.0f')} | {diff:>12}"
        )
        for who, x in (("sweep", s), ("baseline", b)):
            if "error" in x:
                print(f"          {who}: {x['error']}")
    check = None
    ok = [r for r in rows if "peak_rss_mib" in r["sweep"]]
    if len(ok) >= 2:
        small, big = min(ok, key=lambda r: r["n"]), max(ok, key=lambda r: r["n"])
        ratio = big["sweep"]["peak_rss_mib"] / small["sweep"]["peak_rss_mib"]
        check = {
            "small_n": small["n"],
            "big_n": big["n"],
            "rss_ratio": ratio,
            "limit": 1.5,
            "pass": ratio <= 1.5,
        }
        verdict = "PASS" if ratio <= 1.5 else "FAIL"
        print(
            f"\npeak RSS of the {big['n']:,}-set sweep / {small['n']:,}-set sweep = "
            f"{ratio:.2f} (requirement <= 1.5): {verdict}"
        )
    import diffrax

    result = {
        "benchmark": "bench_sweep",
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "jax": jax.__version__,
            "diffrax": diffrax.__version__,
            "numpy": np.__version__,
            "devices": [str(d) for d in jax.devices()],
        },
        "design": {
            "model": "benchmarks/models/mm_idr.toml (Tsit5)",
            "regimen": f"{DOSE} mg IV bolus at t = 0",
            "output_times": len(TIMES),
            "metrics": list(_metrics(__import__("cellpkpd")).keys()),
            "parameters": list(PARAMS),
            "rtol": RTOL,
            "atol": ATOL,
        },
        "rows": rows,
        "memory_check": check,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
