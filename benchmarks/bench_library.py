"""Benchmark the library's models with every solver that applies, against SciPy on the same
right-hand side.

Not collected by pytest; run as a script (see benchmarks/README.md)::

    python benchmarks/bench_library.py                  # N = 1, 10,000 (several minutes)
    python benchmarks/bench_library.py --n 1 100        # a smoke run
    python benchmarks/bench_library.py --models msc_pbk cart_ck

For each library model (its default species), N subjects with one per-subject parameter
drawn log-normally (30% CV, seeded), the model's typical regimen below and its output grid:

* `cp.simulate` with each solver that applies (``exact`` for linear models, ``tsit5``,
  ``kvaerno5``): the first call in a fresh process-level cache (tracing + XLA compile + run;
  the compile column is first minus warm) and the median warm call; a solver that fails
  (status not 0 for some subject, e.g. Tsit5's step limit on a stiff model) is reported as
  failed, not timed further. ``auto``'s choice and its ratio to the fastest solver that
  succeeded.
* SciPy peer: ``solve_ivp`` (LSODA; Radau for a model marked stiff or with rates above
  1e3 per time unit) on the same right-hand side (the model's compiled JAX right-hand side
  called from SciPy, one subject at a time, dose by dose), on ``--scipy-subset`` subjects and
  extrapolated linearly to N (marked ``*``). Its results cross-check cellpkpd's (relative
  difference on values above 1e-6 of each output's maximum, asserted < 1e-4: SciPy runs at
  rtol 1e-8, and the stiff models' fast states equilibrate within seconds).

Prints a table and writes JSON (benchmarks/results/bench_library.json by default).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import statistics
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from bench_simulate import machine_info
from scipy.integrate import solve_ivp

import cellpkpd as cp
from cellpkpd.compile import CompiledModel
from cellpkpd.solve import with_breakpoints

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "bench_library.json"
CV, SEED = 0.30, 20261207
RTOL = ATOL = 1e-8
AGREE_RTOL, AGREE_FLOOR = 1e-4, 1e-6

# model: (dose state or route, amount, output times, varied parameter, outputs)
CASES: dict[str, tuple[dict, np.ndarray, str, tuple[str, ...]]] = {
    "one_cmt_iv": ({"cmt": "central", "amount": 100.0}, np.arange(0.0, 25.0), "CL", ("central",)),
    "one_cmt_oral": ({"cmt": "depot", "amount": 100.0}, np.arange(0.0, 25.0), "CL", ("central",)),
    "two_cmt_iv": ({"cmt": "central", "amount": 100.0}, np.arange(0.0, 169.0), "CL", ("central",)),
    "cart_ck": ({"cmt": "effector", "amount": 1e8}, np.arange(0.0, 366.0), "Tmax",
                ("effector", "memory")),
    "msc_pbk": ({"route": "iv", "amount": 1e6}, np.arange(0.0, 169.0), "k_death_lung",
                ("viable_total", "dna_lung")),
    "msc_pkpd_host": ({"cmt": "blood", "amount": 1e6}, np.arange(0.0, 169.0), "k_kill",
                      ("viable_msc", "biomarker")),
}  # fmt: skip


def solvers_for(spec: cp.ModelSpec) -> list[str]:
    return (["exact"] if spec.is_linear else []) + ["tsit5", "kvaerno5"]


def timed(fn: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def bench_solver(spec, regs, times, params, outputs, solver, repeats) -> dict:
    run = lambda: cp.simulate(spec, regs, times, params=params, outputs=list(outputs),
                              solver=solver, rtol=RTOL, atol=ATOL)  # fmt: skip
    first, res = timed(run)
    ok = bool(np.all(res["status"].values == 0))
    row = {"solver": solver, "ok": ok, "first_s": first}
    if not ok:
        row["failed"] = int(np.sum(res["status"].values != 0))
        return row
    # one warm repeat for a slow solver (a first call over 30 s), else `repeats`
    warm = [timed(run)[0] for _ in range(1 if first > 30.0 else repeats)]
    row["warm_s"] = statistics.median(warm)
    row["compile_s"] = max(first - row["warm_s"], 0.0)
    row["result"] = {o: np.asarray(res[o].values) for o in outputs}
    return row


def scipy_subject(cm: CompiledModel, p: dict, dose: dict, times: np.ndarray, outputs, stiff):
    """One subject with SciPy on the model's own right-hand side (jitted, called per step)."""
    spec = cm.spec
    q = {k: jnp.asarray(v) for k, v in p.items()}
    q.update({d: jnp.asarray(0.0) for d in spec.dosed_names})
    states = list(spec.states)
    bolus = np.zeros(len(states))
    if "route" in dose:
        fr = cm.dosing_vectors(q)["route_F"][cm.route_names.index(dose["route"])]
        for k, s in enumerate(cm.route_states[cm.route_names.index(dose["route"])]):
            if cm.route_valid[cm.route_names.index(dose["route"]), k]:
                bolus[s] += dose["amount"] * float(fr[k])
                q[f"dosed_{states[s]}"] = jnp.asarray(dose["amount"])
    else:
        i = states.index(dose["cmt"])
        bolus[i] += dose["amount"] * float(cm.dosing_vectors(q)["F"][i])
        q[f"dosed_{dose['cmt']}"] = jnp.asarray(dose["amount"])
    q = with_breakpoints(cm, q)
    from cellpkpd.solve import params_at

    rhs = jax.jit(lambda t, x: cm.rhs(t, x, params_at(q, None, t)))
    obs = jax.jit(lambda t, x: cm.observe(tuple(outputs), t, x, params_at(q, None, t)))
    x0 = np.asarray(cm.initial(q)) + bolus
    # integrate across breakpoints in pieces (the rates jump there)
    cuts = sorted({float(b) for b in np.atleast_1d(q.get("__breakpoint_times__", []))
                   if times[0] < float(b) < times[-1]})  # fmt: skip
    edges = [times[0], *cuts, times[-1]]
    ys, x = [], x0
    method = "Radau" if stiff else "LSODA"
    for a, b in itertools.pairwise(edges):
        last = b == times[-1]
        keep = (times >= a) & ((times <= b) if last else (times < b))
        t_eval = np.union1d(times[keep], [b])
        sol = solve_ivp(lambda t, y: np.asarray(rhs(t, y)), (a, b), x, t_eval=t_eval,
                        method=method, rtol=RTOL, atol=ATOL)  # fmt: skip
        ys.append(sol.y.T[np.isin(t_eval, times[keep])])
        x = sol.y[:, -1]
    Y = np.concatenate(ys)
    out = [obs(t, y) for t, y in zip(times, Y, strict=True)]
    return {o: np.array([float(v[o]) for v in out]) for o in outputs}


def bench_model(name: str, n: int, args: argparse.Namespace) -> dict:
    spec = cp.load_model(name)
    dose, times, varied, outputs = CASES[name]
    rng = np.random.default_rng([SEED, n, len(name)])
    params = {varied: spec.parameters[varied].value * np.exp(CV * rng.standard_normal(n))}
    kw = {"route": dose["route"]} if "route" in dose else {"cmt": dose["cmt"]}
    reg = cp.Regimen([cp.Dose(0.0, dose["amount"], **kw)])
    regs = [reg] * n
    rows = [bench_solver(spec, regs, times, params, outputs, s, args.repeats)
            for s in solvers_for(spec)]  # fmt: skip
    auto = cp.Simulator(spec, times).solver
    good = [r for r in rows if r["ok"]]
    fastest = min(good, key=lambda r: r["warm_s"])
    chosen = next(r for r in rows if r["solver"] == auto)
    # SciPy on a subset, extrapolated
    cm = CompiledModel(spec)
    A_max = 0.0
    if spec.is_linear:
        p0 = {k: jnp.asarray(v) for k, v in spec.defaults().items()}
        p0.update({d: jnp.asarray(1.0) for d in spec.dosed_names})
        p0 = with_breakpoints(cm, p0)
        for b in cm.breakpoint_names:
            p0[b] = jnp.asarray(0.0)
        A_max = float(jnp.max(jnp.abs(cm.linear_system(p0)[0])))
    stiff = spec.stiff or A_max > 1e3
    m = min(n, args.scipy_subset)
    idx = rng.choice(n, m, replace=False)
    base = spec.defaults()
    t0 = time.perf_counter()
    ref = [scipy_subject(cm, {**base, varied: params[varied][i]}, dose, times, outputs, stiff)
           for i in idx]  # fmt: skip
    scipy_s = (time.perf_counter() - t0) * n / m
    # cross-check the fastest cellpkpd result against SciPy
    worst = 0.0
    for o in outputs:
        mine = fastest["result"][o][idx]
        theirs = np.stack([r[o] for r in ref])
        big = np.abs(theirs) > AGREE_FLOOR * np.max(np.abs(theirs))
        worst = max(worst, float(np.max(np.abs(mine - theirs)[big] / np.abs(theirs)[big])))
    assert worst < AGREE_RTOL, (name, n, worst)
    for r in rows:
        r.pop("result", None)
    return {
        "model": name, "n": n, "n_states": len(spec.states), "linear": spec.is_linear,
        "solvers": rows, "auto": auto, "fastest": fastest["solver"],
        "auto_vs_fastest": chosen.get("warm_s", float("nan")) / fastest["warm_s"],
        "scipy_method": "Radau" if stiff else "LSODA", "scipy_s": scipy_s,
        "scipy_extrapolated_from": m if m < n else None,
        "scipy_vs_auto": scipy_s / chosen.get("warm_s", float("nan")),
        "agreement": worst,
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    head = (f"{'model':<14}{'N':>6} {'solver':<9}{'first s':>9}{'compile s':>10}{'warm s':>9}"
            f"  {'auto':<9}{'auto/best':>9}{'scipy s':>10}{'scipy/auto':>11}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in rows:
        for k, s in enumerate(r["solvers"]):
            warm = f"{s['warm_s']:9.3f}" if s["ok"] else f"{'failed':>9}"
            comp = f"{s['compile_s']:10.2f}" if s["ok"] else f"{'':>10}"
            tail = ""
            if k == 0:
                star = "*" if r["scipy_extrapolated_from"] else " "
                tail = (f"  {r['auto']:<9}{r['auto_vs_fastest']:9.2f}{r['scipy_s']:9.2f}{star}"
                        f"{r['scipy_vs_auto']:11.1f}")  # fmt: skip
            name = (r["model"], str(r["n"])) if k == 0 else ("", "")
            lines.append(f"{name[0]:<14}{name[1]:>6} {s['solver']:<9}{s['first_s']:9.2f}"
                         f"{comp}{warm}{tail}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1, 10_000])
    ap.add_argument("--models", nargs="+", choices=tuple(CASES), default=list(CASES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scipy-subset", type=int, default=5)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    info = machine_info()
    print(f"{info['platform']} | {info['cpu_count']} CPUs | jax {info['jax']}")
    rows = []
    for name in args.models:
        for n in args.n:
            rows.append(bench_model(name, n, args))
            print(table(rows[-1:]).splitlines()[-len(rows[-1]["solvers"]) :][0], flush=True)
    print()
    print(table(rows))
    result = {
        "benchmark": "bench_library",
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": info,
        "design": {
            "cases": {
                k: {"dose": v[0], "n_times": int(v[1].size), "varied": v[2], "outputs": list(v[3])}
                for k, v in CASES.items()
            },
            "cv": CV,
            "seed": SEED,
            "rtol": RTOL,
            "atol": ATOL,
            "first_s": "first cp.simulate call of the process for that model, solver and N",
            "compile_s": "first minus warm median",
            "scipy": "solve_ivp on the model's jitted right-hand side, per subject",
        },
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
