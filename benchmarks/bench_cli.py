"""First and later runs of ``cellpkpd simulate <model>``: what a user waits for at the
command line, and how much of it a second run of the same model saves.

Each case runs the CLI as a new process, as a user does: once with the persistent caches off
(``CELLPKPD_COMPILATION_CACHE=0``: the peer, what every run cost before the caches), then
``--runs`` times in a row with a new, empty cache folder (the first fills it, the later ones
read it: JAX's compilation cache and cellpkpd's kept programs and parsed models,
`cellpkpd._core.programs`). Prints a table of wall times and writes JSON::

    python benchmarks/bench_cli.py                     # every library model, 3 runs each
    python benchmarks/bench_cli.py --models msc_pbk --runs 4 --out /tmp/cli.json

The figure is the median of the later runs against the first (``first / later``; issue 16
asks for >= 3x). Results are checked equal between the runs (the CSV files byte for byte).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: library model -> the CLI arguments of its case (one subject, the model's default outputs)
CASES = {
    "msc_pbk": ["--dose", "1e6"],
    "msc_pkpd_host": ["--dose", "4e7/kg", "--route", "iv"],
    "cart_ck": ["--dose", "1e8"],
    "two_cmt_iv": ["--dose", "100"],
    "one_cmt_oral": ["--dose", "100"],
}


def run_cli(model: str, args: list[str], cache: str, out: Path) -> float:
    """Wall time [s] of one ``cellpkpd simulate`` process; raises if it fails."""
    env = {**os.environ, "CELLPKPD_COMPILATION_CACHE": cache}
    cmd = [sys.executable, "-m", "cellpkpd", "simulate", model, *args, "--out", str(out)]
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return wall


def case(model: str, runs: int) -> dict[str, object]:
    args = CASES[model]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        off = run_cli(model, args, "0", root / "off")
        cache = str(root / "cache")
        walls = [run_cli(model, args, cache, root / f"run{i}") for i in range(runs)]
        csvs = [(root / f"run{i}" / f"{model}_simulation.csv").read_bytes() for i in range(runs)]
        same = all(c == csvs[0] for c in csvs)
        size = sum(f.stat().st_size for f in (root / "cache").rglob("*") if f.is_file())
    later = statistics.median(walls[1:])
    return {
        "model": model,
        "args": args,
        "cache_off_s": off,
        "runs_s": walls,
        "first_over_later": walls[0] / later,
        "off_over_later": off / later,
        "csv_equal": same,
        "cache_mb": size / 1e6,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--runs", type=int, default=3, help="runs with the cache (>= 2)")
    ap.add_argument("--out", default="benchmarks/results/bench_cli.json")
    a = ap.parse_args()
    if a.runs < 2:
        ap.error("--runs must be >= 2")
    rows = [case(m, a.runs) for m in a.models]
    print(f"{'model':<15}{'cache off':>11}{'first':>9}{'later (median)':>16}"
          f"{'first/later':>13}{'off/later':>11}{'CSV equal':>11}{'cache MB':>10}")  # fmt: skip
    for r in rows:
        later = statistics.median(r["runs_s"][1:])
        print(f"{r['model']:<15}{r['cache_off_s']:>10.2f}s{r['runs_s'][0]:>8.2f}s"
              f"{later:>15.2f}s{r['first_over_later']:>12.2f}x{r['off_over_later']:>10.2f}x"
              f"{'yes' if r['csv_equal'] else 'NO':>11}{r['cache_mb']:>10.1f}")  # fmt: skip
    meta = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "dask_installed": _installed("dask"),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"meta": meta, "cases": rows}, indent=2))
    print(f"wrote {a.out}")
    return 0 if all(r["csv_equal"] for r in rows) else 1


def _installed(name: str) -> bool:
    from importlib.util import find_spec

    return find_spec(name) is not None


if __name__ == "__main__":
    raise SystemExit(main())
