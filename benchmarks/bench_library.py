"""Benchmark the library's models with every solver that applies, against SciPy on the same
right-hand side and compiled deSolve (R) for the linear ones.

Not collected by pytest; run as a script (see benchmarks/README.md)::

    python benchmarks/bench_library.py                  # N = 1, 10,000 (several minutes)
    python benchmarks/bench_library.py --n 1 100        # a smoke run
    python benchmarks/bench_library.py --models msc_pbk cart_ck

For each library model (its default species), N subjects with one per-subject parameter
drawn log-normally (30% CV, seeded), the model's typical regimen below and its output grid:

* `cp.simulate` with each solver that applies (``exact`` for linear models, ``tsit5``;
  ``kvaerno5`` with ``--solvers``): the first call in a fresh process-level cache (tracing,
  XLA compile and run; the compile column is first minus warm, the jax column JAX's own
  compile events of the first call: tracing, lowering, XLA) and the median warm call. A
  solver that fails (status not 0 for some subject) is reported as failed; Tsit5 is not run
  on a stiff model (rates above 1e3 per time unit: it reaches its step limit). ``auto``'s
  choice and its ratio to the fastest solver that succeeded.
* SciPy peer: ``solve_ivp`` per subject (LSODA; Radau for a stiff model) on the same model
  (see `ScipyPeer`), on ``--scipy-subset`` subjects and extrapolated linearly to N (marked
  ``*``). Its results cross-check cellpkpd's (relative difference on values above 1e-6 of
  each output's maximum, asserted < 1e-4: SciPy runs at rtol 1e-8).
* Compiled deSolve peer (linear models; `DesolvePeer`): R's ``lsoda`` on ``dy/dt = A y + c``
  in C (benchmarks/desolve) on the same subjects, R's clock around the integrations,
  extrapolated to N; cross-checked like SciPy. Skipped (n/a) where R or deSolve is missing.

Prints a table and writes JSON (benchmarks/results/bench_library.json by default).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import math
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from bench_simulate import machine_info
from scipy.integrate import solve_ivp

import cellpkpd as cp
from cellpkpd.engine.compile import CompiledModel
from cellpkpd.engine.solve import params_at

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "bench_library.json"
CV, SEED = 0.30, 20261207
RTOL = ATOL = 1e-8
AGREE_RTOL, AGREE_FLOOR = 1e-4, 1e-6
DESOLVE_MAXN = 128  # MAXN of benchmarks/desolve/linear.c

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


#: JAX's own duration events of a compilation: tracing, lowering to MLIR, XLA
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compiling = [0.0]


def _listen(name: str, seconds: float, **_: Any) -> None:
    if name in COMPILE_EVENTS:
        _compiling[0] += seconds


jax.monitoring.register_event_duration_secs_listener(_listen)


def timed(fn: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def bench_solver(spec, regs, times, params, outputs, solver, repeats) -> dict:
    run = lambda: cp.simulate(spec, regs, times, params=params, outputs=list(outputs),
                              solver=solver, rtol=RTOL, atol=ATOL, on_failure="nan")  # fmt: skip
    _compiling[0] = 0.0
    first, res = timed(run)
    ok = bool(np.all(res["status"].values == 0))
    row = {"solver": solver, "ok": ok, "first_s": first, "jax_compile_s": _compiling[0]}
    if not ok:
        row["failed"] = int(np.sum(res["status"].values != 0))
        return row
    # one warm repeat for a slow solver (a first call over 30 s), else `repeats`
    warm = [timed(run)[0] for _ in range(1 if first > 30.0 else repeats)]
    row["warm_s"] = statistics.median(warm)
    row["compile_s"] = max(first - row["warm_s"], 0.0)
    row["result"] = {o: np.asarray(res[o].values) for o in outputs}
    return row


class ScipyPeer:
    """SciPy's solve_ivp on the same model, one subject at a time. A linear model's system
    (A, b) is computed once per subject and region (one jitted call) and the right-hand side
    is NumPy's ``A @ y + b``; a nonlinear model's right-hand side is the model's jitted JAX
    function called from SciPy (one dispatch per evaluation, ~10-30 us). Observations: one
    jitted call per subject. Every jitted function is compiled once, before the timing."""

    def __init__(self, spec: cp.ModelSpec, outputs: tuple[str, ...], stiff: bool):
        self.cm = cm = CompiledModel(spec)
        self.spec, self.outputs = spec, outputs
        self.method = "Radau" if stiff else "LSODA"
        at = lambda q, t: params_at(q, None, t, bp=cm.breakpoints(q))
        self.system = jax.jit(lambda q, t: cm.linear_system(at(q, t)))
        self.rhs = jax.jit(lambda t, x, q: cm.rhs(t, x, at(q, t)))
        self.obs = jax.jit(
            jax.vmap(lambda t, x, q: cm.observe(outputs, t, x, at(q, t)), (0, 0, None))
        )
        self.start = jax.jit(lambda q: (cm.initial(q), cm.dosing_vectors(q)))

    def inputs(self, p: dict, dose: dict) -> tuple[dict, np.ndarray]:
        cm, states = self.cm, list(self.spec.states)
        q = {k: jnp.asarray(v) for k, v in p.items()}
        q.update({d: jnp.asarray(0.0) for d in self.spec.dosed_names})
        targets = (
            [(int(s), k) for k, s in enumerate(cm.route_states[cm.route_names.index(dose["route"])])
             if cm.route_valid[cm.route_names.index(dose["route"]), k]]
            if "route" in dose else [(states.index(dose["cmt"]), None)]
        )  # fmt: skip
        for s, _ in targets:
            q[f"dosed_{states[s]}"] = jnp.asarray(dose["amount"])
        q["AMT"] = jnp.asarray(dose["amount"])  # the dose record's amount (route fractions)
        x_init, dv = self.start(q)
        x0 = np.array(x_init)
        for s, k in targets:
            if k is None:
                x0[s] += dose["amount"] * float(dv["F"][s])
            else:
                r = cm.route_names.index(dose["route"])
                x0[s] += dose["amount"] * float(dv["route_F"][r, k])
        return q, x0

    def pieces(self, q: dict, times: np.ndarray) -> list[tuple[float, float, bool, Any]]:
        """(a, b, last, system) for each piece between breakpoints (the rates jump there):
        system = (A, c) of a linear model in that piece, None for a nonlinear one."""
        bp = self.cm.breakpoints(q)
        bps = np.asarray(bp.times) if bp is not None else []
        cuts = sorted({float(b) for b in bps if times[0] < float(b) < times[-1]})
        edges = [float(times[0]), *cuts, float(times[-1])]
        return [
            (a, b, b == times[-1],
             tuple(np.asarray(v) for v in self.system(q, 0.5 * (a + b)))
             if self.spec.is_linear else None)
            for a, b in itertools.pairwise(edges)
        ]  # fmt: skip

    def observe(self, q: dict, times: np.ndarray, states: np.ndarray) -> dict[str, np.ndarray]:
        out = self.obs(jnp.asarray(times), jnp.asarray(states), q)
        return {o: np.asarray(out[o]) for o in self.outputs}

    def subject(self, p: dict, dose: dict, times: np.ndarray) -> dict[str, np.ndarray]:
        q, x = self.inputs(p, dose)
        ys = []
        for a, b, last, system in self.pieces(q, times):
            keep = (times >= a) & ((times <= b) if last else (times < b))
            t_eval = np.union1d(times[keep], [b])
            if system is not None:
                f = lambda t, y, A=system[0], c=system[1]: A @ y + c
            else:
                f = lambda t, y: np.asarray(self.rhs(t, y, q))
            sol = solve_ivp(f, (a, b), x, t_eval=t_eval, method=self.method, rtol=RTOL, atol=ATOL)
            ys.append(sol.y.T[np.isin(t_eval, times[keep])])
            x = sol.y[:, -1]
        return self.observe(q, times, np.concatenate(ys))


class DesolvePeer:
    """R's deSolve on compiled C, the peer a pharmacometrician would reach for: ``lsoda``
    (it switches to BDF when the problem is stiff) on ``dy/dt = A y + c`` written in C with
    its exact Jacobian (benchmarks/desolve/linear.c, built once by ``R CMD SHLIB``), driven
    by benchmarks/desolve/run_lsoda.R. Linear models only (a nonlinear model would need its
    own C code). Each subject's (A, c) per piece and its state after the dose come from
    `ScipyPeer` in Python; the time reported is R's own clock around the integrations
    alone (R's start, reading and writing excluded). `why` says what is missing when R,
    a C compiler or deSolve is not installed (then the columns read n/a)."""

    def __init__(self, folder: Path):
        self.folder, self.why = folder, ""
        r, rscript = shutil.which("R"), shutil.which("Rscript")
        if r is None or rscript is None:
            self.why = "R not installed (Debian: r-base-core r-base-dev r-cran-desolve)"
            return
        check = subprocess.run([rscript, "-e", "library(deSolve)"], capture_output=True)
        if check.returncode != 0:
            self.why = "R package deSolve not installed (Debian: r-cran-desolve)"
            return
        here = Path(__file__).resolve().parent / "desolve"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(here / "linear.c", folder / "linear.c")
        built = subprocess.run([r, "CMD", "SHLIB", "linear.c"], cwd=folder, capture_output=True)
        if built.returncode != 0:
            self.why = f"R CMD SHLIB failed: {built.stderr.decode()[-300:]}"
            return
        self.rscript, self.so, self.script = rscript, folder / "linear.so", here / "run_lsoda.R"
        self.version = subprocess.run(
            [rscript, "-e", 'cat(as.character(packageVersion("deSolve")))'],
            capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip

    @property
    def available(self) -> bool:
        return not self.why

    def run(
        self, peer: ScipyPeer, subjects: list[dict], dose: dict, times: np.ndarray
    ) -> tuple[float, list[dict[str, np.ndarray]]]:
        """(R's seconds for the integrations, each subject's outputs) for the parameter
        sets `subjects` (a linear model's)."""
        work = self.folder / "run"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        np.savetxt(work / "times.txt", times)
        qs = []
        for i, p in enumerate(subjects):
            q, x0 = peer.inputs(p, dose)
            qs.append(q)
            np.savetxt(work / f"s{i}_x0.txt", x0[None, :])
            rows = [
                np.concatenate([[a, b, float(last)], c, A.ravel()])
                for a, b, last, (A, c) in peer.pieces(q, times)
            ]
            np.savetxt(work / f"s{i}_pieces.txt", np.stack(rows), fmt="%.17g")
        cmd = [self.rscript, str(self.script), str(work), str(self.so), str(RTOL), str(ATOL)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        seconds = float((work / "seconds.txt").read_text())
        states = [np.loadtxt(work / f"s{i}_states.txt", ndmin=2) for i in range(len(subjects))]
        return seconds, [peer.observe(q, times, x) for q, x in zip(qs, states, strict=True)]


def case(name: str, n: int) -> tuple[cp.ModelSpec, cp.Regimen, dict, np.random.Generator]:
    """(spec, regimen, params, rng) of model `name`'s case (`CASES`) for n subjects: its one
    dose, and its varied parameter drawn log-normally (CV, seeded by n and the name)."""
    spec = cp.load_model(name)
    dose, _, varied, _ = CASES[name]
    rng = np.random.default_rng([SEED, n, len(name)])
    params = {varied: spec.parameters[varied].value * np.exp(CV * rng.standard_normal(n))}
    kw = {"route": dose["route"]} if "route" in dose else {"cmt": dose["cmt"]}
    return spec, cp.Regimen([cp.Dose(0.0, dose["amount"], **kw)]), params, rng


def bench_model(name: str, n: int, args: argparse.Namespace) -> dict:
    dose, times, varied, outputs = CASES[name]
    spec, reg, params, rng = case(name, n)
    regs = reg  # one regimen shared by the N subjects (their parameters differ)
    # stiff: marked so, or rates above 1e3 per time unit (then Tsit5 is skipped: it hits
    # its step limit, measured once in the README, and SciPy uses Radau)
    cm = CompiledModel(spec)
    A_max = 0.0
    if spec.is_linear:
        p0 = {k: jnp.asarray(v) for k, v in spec.defaults().items()}
        p0.update({d: jnp.asarray(1.0) for d in spec.dosed_names})
        for b in cm.breakpoint_names:
            p0[b] = jnp.asarray(0.0)
        A_max = float(jnp.max(jnp.abs(cm.linear_system(p0)[0])))
    stiff = spec.stiff or A_max > 1e3
    run = [s for s in solvers_for(spec) if args.solvers is None or s in args.solvers]
    rows = [
        {"solver": s, "ok": False, "skipped": "stiff", "first_s": float("nan")}
        if s == "tsit5" and stiff
        else bench_solver(spec, regs, times, params, outputs, s, args.repeats)
        for s in run
    ]
    auto = cp.Simulator(spec, times).solver
    good = [r for r in rows if r["ok"]]
    fastest = min(good, key=lambda r: r["warm_s"])
    chosen = next((r for r in rows if r["solver"] == auto), {})
    # SciPy on a subset, extrapolated
    peer = ScipyPeer(spec, outputs, stiff)
    base = spec.defaults()
    peer.subject(base, dose, times)  # compile the jitted pieces outside the timing
    m = min(n, args.scipy_subset)
    idx = rng.choice(n, m, replace=False)
    t0 = time.perf_counter()
    ref = [peer.subject({**base, varied: params[varied][i]}, dose, times) for i in idx]
    scipy_s = (time.perf_counter() - t0) * n / m
    # compiled deSolve (R) on the same subjects, linear models only
    desolve_s, desolve_ref = float("nan"), None
    if (
        spec.is_linear
        and len(spec.states) <= DESOLVE_MAXN
        and args.desolve is not None
        and args.desolve.available
    ):
        seconds, desolve_ref = args.desolve.run(
            peer, [{**base, varied: params[varied][i]} for i in idx], dose, times
        )
        desolve_s = seconds * n / m
    # cross-check the fastest cellpkpd result against SciPy (and deSolve)
    worst = 0.0
    for o in outputs:
        mine = fastest["result"][o][idx]
        for peer_ref in [ref] + ([desolve_ref] if desolve_ref else []):
            theirs = np.stack([r[o] for r in peer_ref])
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
        "desolve_s": desolve_s,
        "desolve_vs_auto": desolve_s / chosen.get("warm_s", float("nan")),
        "agreement": worst,
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    head = (f"{'model':<14}{'N':>6} {'solver':<9}{'first s':>9}{'compile s':>10}{'jax s':>7}"
            f"{'warm s':>9}"
            f"  {'auto':<9}{'auto/best':>9}{'scipy s':>10}{'scipy/auto':>11}"
            f"{'deSolve s':>11}{'deSolve/auto':>13}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in rows:
        for k, s in enumerate(r["solvers"]):
            warm = f"{s['warm_s']:9.3f}" if s["ok"] else f"{s.get('skipped', 'failed'):>9}"
            comp = f"{s['compile_s']:10.2f}" if s["ok"] else f"{'':>10}"
            comp += f"{s['jax_compile_s']:7.2f}" if "jax_compile_s" in s else f"{'':>7}"
            tail = ""
            if k == 0:
                star = "*" if r["scipy_extrapolated_from"] else " "
                tail = (f"  {r['auto']:<9}{r['auto_vs_fastest']:9.2f}{r['scipy_s']:9.2f}{star}"
                        f"{r['scipy_vs_auto']:11.1f}")  # fmt: skip
                if math.isnan(r.get("desolve_s", math.nan)):
                    tail += f"{'n/a':>11}{'':>13}"
                else:
                    tail += f"{r['desolve_s']:10.4f}{star}{r['desolve_vs_auto']:13.1f}"
            name = (r["model"], str(r["n"])) if k == 0 else ("", "")
            lines.append(f"{name[0]:<14}{name[1]:>6} {s['solver']:<9}{s['first_s']:9.2f}"
                         f"{comp}{warm}{tail}")  # fmt: skip
    return "\n".join(lines)


def write(out: Path, info: dict, rows: list[dict]) -> None:
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
            "jax_compile_s": "JAX's duration events during the first call: tracing (with "
            "any module imported while tracing, e.g. diffrax), lowering to MLIR and XLA "
            "compilation, summed over its programs",
            "scipy": "solve_ivp per subject: linear models on NumPy's A @ y + b (A from one "
            "jitted call per subject and region); nonlinear models on the model's jitted "
            "right-hand side",
            "desolve": "R deSolve lsoda per subject on compiled C dy/dt = A y + c with its "
            "exact Jacobian (benchmarks/desolve), linear models only; R's clock around the "
            "integrations alone, on the SciPy subset and extrapolated to N",
        },
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1, 10_000])
    ap.add_argument("--models", nargs="+", choices=tuple(CASES), default=list(CASES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--solvers",
        nargs="+",
        choices=("exact", "tsit5", "kvaerno5"),
        default=["exact", "tsit5"],
        help="default: exact and tsit5 (kvaerno5 is auto's choice for no library model, and "
        "takes over 15 min for msc_pbk at N = 10,000)",
    )
    ap.add_argument("--scipy-subset", type=int, default=20)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--no-desolve", action="store_true", help="skip the deSolve (R) peer")
    args = ap.parse_args(argv)
    info = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        args.desolve = None if args.no_desolve else DesolvePeer(Path(tmp) / "desolve")
        info["desolve"] = (
            "skipped" if args.desolve is None
            else args.desolve.why or f"deSolve {args.desolve.version}, lsoda, compiled C"
        )  # fmt: skip
        print(f"{info['platform']} | {info['cpu_count']} CPUs | jax {info['jax']} | "
              f"{info['desolve']}")  # fmt: skip
        rows = []
        for name in args.models:
            for n in args.n:
                rows.append(bench_model(name, n, args))
                write(args.out, info, rows)  # after each row, so a stopped run keeps its rows
                print(table(rows[-1:]).splitlines()[-len(rows[-1]["solvers"]) :][0], flush=True)
    print()
    print(table(rows))
    write(args.out, info, rows)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
