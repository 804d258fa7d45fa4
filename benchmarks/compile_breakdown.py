"""Where the first `cp.simulate` call of a library model spends its time: tracing, lowering
and XLA compilation of each compiled program, from JAX's own monitoring events.

Not collected by pytest; run as a script (persistent compilation cache off, so every program
is compiled)::

    CELLPKPD_COMPILATION_CACHE=0 python benchmarks/compile_breakdown.py msc_pbk 10000
    CELLPKPD_COMPILATION_CACHE=0 python benchmarks/compile_breakdown.py msc_pbk,cart_ck 1

Each model is simulated as in `bench_library.py` (its `CASES`: dose, output grid, one
parameter varied log-normally over N subjects), with the solver `solver="auto"` picks (or the
third argument). Prints the first and a warm call, then JAX's duration events summed over the
call (``/jax/core/compile/jaxpr_trace_duration``, ``jaxpr_to_mlir_module_duration``,
``backend_compile_duration``) with the number of programs; with ``--log`` also each program's
own lines from ``jax_log_compiles``. Writes JSON to benchmarks/results/compile_breakdown.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import time
from pathlib import Path

import jax
from bench_library import CASES, case

import cellpkpd as cp

OUT = Path(__file__).resolve().parent / "results" / "compile_breakdown.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", help="comma-separated library model names")
    ap.add_argument("n", type=int, nargs="?", default=1, help="subjects (default 1)")
    ap.add_argument("solver", nargs="?", default="auto")
    ap.add_argument("--log", action="store_true", help="also log each compiled program")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.log:
        logging.basicConfig(level=logging.WARNING)
        jax.config.update("jax_log_compiles", True)
    events: dict[str, float] = collections.defaultdict(float)
    counts: collections.Counter[str] = collections.Counter()

    def listen(name: str, seconds: float, **_: object) -> None:
        events[name] += seconds
        counts[name] += 1

    jax.monitoring.register_event_duration_secs_listener(listen)
    rows = []
    for name in args.models.split(","):
        _, times, _, outputs = CASES[name]
        spec, reg, params, _ = case(name, args.n)

        def run(spec=spec, reg=reg, times=times, params=params, outputs=outputs):
            return cp.simulate(spec, reg, times, params=params, outputs=list(outputs),
                               solver=args.solver, rtol=1e-8, atol=1e-8)  # fmt: skip

        events.clear()
        counts.clear()
        t = time.perf_counter()
        run()
        first = time.perf_counter() - t
        seen = {k: (round(v, 4), counts[k]) for k, v in events.items()}
        t = time.perf_counter()
        run()
        warm = time.perf_counter() - t
        print(f"{name} N={args.n} {args.solver}: first {first:.2f} s, warm {warm:.3f} s")
        for k, (v, c) in sorted(seen.items(), key=lambda kv: -kv[1][0]):
            if v >= 0.01:
                print(f"   {k:58s} {v:7.2f} s  ({c} programs)")
        rows.append({"model": name, "n": args.n, "solver": args.solver, "first_s": first,
                     "warm_s": warm, "events": seen})  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "compile_breakdown", "rows": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
