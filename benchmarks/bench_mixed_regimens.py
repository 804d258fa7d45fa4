"""Benchmark the ODE path on a batch whose subjects have different regimens, against the same
subjects solved in groups of one regimen each, and against SciPy.

Not collected by pytest; run as a script (see benchmarks/README.md)::

    python benchmarks/bench_mixed_regimens.py               # N = 30, 300, 3,000
    python benchmarks/bench_mixed_regimens.py --n 30 --repeats 1

A data set or a dose-ranging study gives each subject its own dose times: in one vectorised
chunk, subjects with 1, 2 and 3 doses step together, and a subject whose segment has length 0
(its padding events at the end) sits beside one that still integrates. Until 2026-12-07 that
cost 10-40x per step (diffrax's save loop walked every output time again at each step of
the other subject; see `cellpkpd.engine.solve.ZERO_SPAN`). Design: msc_pkpd_host (nonlinear,
Tsit5), outputs every 30 min for two weeks (673 times), N subjects cycling through three
regimens of 1e7 cells into blood (one 30-min infusion; the infusion and a bolus at 168 h;
infusions at 0, 24 and 48 h), rtol = atol = 1e-8.

Columns:

* `mixed s`: `cp.simulate` of the N subjects in one call (median of warm calls);
* `grouped s`: the same subjects in three `cp.simulate` calls, one per regimen (the peer:
  what a user had to do to avoid the cost);
* `scipy s`: `solve_ivp` (LSODA) per subject on the model's jitted right-hand side, dose
  interval by dose interval, on 6 subjects extrapolated to N (`*`).

The three agree (relative difference < 1e-4 on values above 1e-6 of each output's maximum;
asserted). Prints a table and writes JSON (benchmarks/results/bench_mixed_regimens.json).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from bench_library import timed
from bench_simulate import machine_info
from scipy.integrate import solve_ivp

import cellpkpd as cp
from cellpkpd.engine.compile import CompiledModel
from cellpkpd.engine.solve import params_at

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "bench_mixed_regimens.json"
MODEL = "msc_pkpd_host"
TIMES = np.arange(0.0, 336.5, 0.5)  # h
OUTPUTS = ("viable_msc", "biomarker")
RTOL = ATOL = 1e-8
AGREE_RTOL, AGREE_FLOOR = 1e-4, 1e-6
CELLS = 1e7


def regimens() -> list[cp.Regimen]:
    inf = lambda t: cp.Dose(t, CELLS, "blood", duration=0.5)
    return [
        cp.Regimen([inf(0.0)]),
        cp.Regimen([inf(0.0), cp.Dose(168.0, CELLS, "blood")]),
        cp.Regimen([inf(0.0), inf(24.0), inf(48.0)]),
    ]


def timed_warm(fn, repeats: int) -> tuple[float, float, object]:
    """(first call s, median of `repeats` warm calls s, first result)."""
    first, out = timed(fn)
    return first, statistics.median(timed(fn)[0] for _ in range(repeats)), out


def scipy_subject(spec: cp.ModelSpec, reg: cp.Regimen) -> dict[str, np.ndarray]:
    """LSODA dose interval by dose interval (boluses added between intervals; an infusion's
    rate is added to the right-hand side while it runs)."""
    cm = CompiledModel(spec)
    q = {k: jnp.asarray(v) for k, v in spec.defaults().items()}
    at = lambda t: params_at(q, None, t)
    rhs = jax.jit(lambda t, x: cm.rhs(t, x, at(t)))
    obs = jax.jit(jax.vmap(lambda t, x: cm.observe(OUTPUTS, t, x, at(t))))
    k = list(spec.states).index("blood")
    x = np.asarray(cm.initial(q), float)
    cuts = sorted({0.0, *(d.time for d in reg.doses), *(d.time + d.duration for d in reg.doses)})
    edges = [c for c in cuts if c < TIMES[-1]] + [float(TIMES[-1])]
    ys, ts = [], []
    for a, b in itertools.pairwise(edges):
        running = [d for d in reg.doses if d.duration and d.time <= a < d.time + d.duration]
        rate = sum(d.amount / d.duration for d in running)
        x = x + np.eye(len(x))[k] * sum(
            d.amount for d in reg.doses if not d.duration and d.time == a
        )
        keep = (TIMES >= a) & (TIMES < b)
        f = lambda t, y, r=rate: np.asarray(rhs(t, y)) + np.eye(len(y))[k] * r
        sol = solve_ivp(f, (a, b), x, t_eval=np.union1d(TIMES[keep], [b]), method="LSODA",
                        rtol=RTOL, atol=ATOL)  # fmt: skip
        ys.append(sol.y.T[np.isin(sol.t, TIMES[keep])])
        ts.append(TIMES[keep])
        x = sol.y[:, -1]
    ys.append(x[None])
    ts.append(TIMES[-1:])
    out = obs(jnp.asarray(np.concatenate(ts)), jnp.asarray(np.concatenate(ys)))
    return {o: np.asarray(out[o]) for o in OUTPUTS}


def bench(n: int, repeats: int) -> dict:
    spec = cp.load_model(MODEL)
    regs = regimens()
    subjects = [regs[i % 3] for i in range(n)]
    run = lambda rs: cp.simulate(spec, rs, TIMES, outputs=list(OUTPUTS), solver="tsit5",
                                 rtol=RTOL, atol=ATOL)  # fmt: skip
    mixed_first, mixed_warm, mixed = timed_warm(lambda: run(subjects), repeats)
    groups = [[r for i, r in enumerate(subjects) if i % 3 == g] for g in range(3)]
    grouped_first, grouped_warm, grouped = timed_warm(lambda: [run(g) for g in groups], repeats)
    assert np.all(mixed["status"].values == 0)
    t = time.perf_counter()
    ref = [scipy_subject(spec, r) for r in regs for _ in range(2)]
    scipy_s = (time.perf_counter() - t) * n / 6
    worst = 0.0
    for o in OUTPUTS:
        for g in range(3):
            a, b = mixed[o].values[g::3], grouped[g][o].values
            c = np.stack([ref[2 * g][o]] * a.shape[0])
            for other in (b, c):
                big = np.abs(other) > AGREE_FLOOR * np.max(np.abs(other))
                worst = max(worst, float(np.max(np.abs(a - other)[big] / np.abs(other)[big])))
    assert worst < AGREE_RTOL, (n, worst)
    return {"n": n, "mixed_first_s": mixed_first, "mixed_warm_s": mixed_warm,
            "grouped_first_s": grouped_first, "grouped_warm_s": grouped_warm,
            "scipy_s": scipy_s, "scipy_extrapolated_from": 6, "agreement": worst}  # fmt: skip


def table(rows: list[dict]) -> str:
    head = (f"{'N':>6}{'mixed s':>10}{'grouped s':>11}{'mixed/grouped':>15}{'scipy s':>11}"
            f"{'scipy/mixed':>13}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['n']:>6}{r['mixed_warm_s']:10.3f}{r['grouped_warm_s']:11.3f}"
                     f"{r['mixed_warm_s'] / r['grouped_warm_s']:15.2f}{r['scipy_s']:10.1f}*"
                     f"{r['scipy_s'] / r['mixed_warm_s']:13.1f}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[30, 300, 3000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    info = machine_info()
    print(f"{info['platform']} | {info['cpu_count']} CPUs | jax {info['jax']}")
    rows = []
    for n in args.n:
        rows.append(bench(n, args.repeats))
        print(table(rows[-1:]).splitlines()[-1], flush=True)  # each row as it is done
    print()
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "bench_mixed_regimens",
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": info,
        "design": {"model": MODEL, "n_times": int(TIMES.size), "outputs": list(OUTPUTS),
                   "regimens": [[(d.time, d.amount, d.duration) for d in r.doses]
                                for r in regimens()], "rtol": RTOL, "atol": ATOL},
        "rows": rows,
    }, indent=2))  # fmt: skip
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
