"""Benchmark `cp.simulate` against SciPy's LSODA and against hand-written JAX/diffrax code.

Not collected by pytest; run as a script (see benchmarks/README.md)::

    python benchmarks/bench_simulate.py            # N = 1, 100, 10,000 (several minutes)
    python benchmarks/bench_simulate.py --quick    # N = 1, 100 (smoke run)

Models
    two_cmt_iv  the linear library model (cellpkpd's exact, matrix-exponential path)
    mm_idr      benchmarks/models/mm_idr.toml: one compartment with Michaelis-Menten
                elimination and an indirect-response biomarker (cellpkpd's diffrax path)

Design
    N subjects x 169 output times (0..168 h hourly), 100 mg IV bolus into `central` every
    24 h x 7, two parameters per model drawn log-normally (30% CV, seeded), rtol = atol = 1e-8.

For each model and N: `cp.simulate` compile time (first call minus the steady-state median)
and steady-state median; SciPy `solve_ivp(method="LSODA")` looping over subjects, dose
interval by dose interval (timed on a random subset and extrapolated linearly when N is
larger than ``--scipy-subset``); for the nonlinear model, hand-written
``jax.jit(jax.vmap(f))`` over diffrax (Tsit5, PID controller). Results are cross-checked,
printed as a table and written as JSON.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import scipy
from scipy.integrate import solve_ivp

import cellpkpd as cp  # enables float64 (jax_enable_x64) on import

HERE = Path(__file__).resolve().parent
MM_IDR_PATH = HERE / "models" / "mm_idr.toml"
DEFAULT_OUT = HERE / "results" / "bench_simulate.json"

RTOL = ATOL = 1e-8
DOSE_AMOUNT = 100.0  # [mg]
DOSE_INTERVAL = 24.0  # [h]
DOSE_COUNT = 7
TIMES = np.arange(0.0, 169.0)  # 0..168 h hourly, 169 output times
CV = 0.30
SEED = 20240607
AGREE_RTOL = 1e-5  # cross-check: max relative difference allowed ...
AGREE_FLOOR = 1e-6  # ... on values above this fraction of the variable's max

TARGETS = {
    "linear_vs_scipy": 1000.0,  # two_cmt_iv at N = 10,000: scipy / cellpkpd >=
    "nonlinear_vs_scipy": 50.0,  # mm_idr at N = 10,000: scipy / cellpkpd >=
    "cellpkpd_vs_hand": 1.2,  # mm_idr at N = 10,000: cellpkpd / hand-written <=
    "compile_s": 5.0,  # every model, every N: compile time <
}


# --------------------------------------------------------------------------- models
class Case:
    """One benchmark model: how cellpkpd loads it, which parameters vary, and the same
    right-hand side written by hand in NumPy (for SciPy) and in jax.numpy (for diffrax)."""

    def __init__(
        self,
        key: str,
        spec: Any,
        varied: tuple[str, ...],
        rhs_np: Callable[..., np.ndarray],
        rhs_jnp: Callable[..., Any] | None,
        y0: Callable[[dict[str, float]], np.ndarray],
    ):
        self.key = key
        self.spec = spec
        self.varied = varied
        self.rhs_np = rhs_np
        self.rhs_jnp = rhs_jnp
        self.y0 = y0
        self.states = tuple(spec.states)
        self.defaults = dict(spec.defaults())
        self.linear = spec.is_linear


def _two_cmt_rhs_np(t: float, y: np.ndarray, CL: float, V1: float, Q: float, V2: float):
    a1, a2 = y
    return np.array(
        [-(CL / V1) * a1 - (Q / V1) * a1 + (Q / V2) * a2, (Q / V1) * a1 - (Q / V2) * a2]
    )


def _mm_idr_rhs_np(t, y, V, Vmax, Km, kin, kout, IC50, inflammation):
    central, marker = y
    C = central / V
    return np.array(
        [
            -Vmax * C / (Km + C),
            kin * inflammation * (1.0 - C / (IC50 + C)) - kout * marker,
        ]
    )


def _mm_idr_rhs_jnp(t, y, p):
    central, marker = y[0], y[1]
    C = central / p["V"]
    return jnp.stack(
        [
            -p["Vmax"] * C / (p["Km"] + C),
            p["kin"] * p["inflammation"] * (1.0 - C / (p["IC50"] + C)) - p["kout"] * marker,
        ]
    )


def make_cases() -> list[Case]:
    two = cp.load_model("two_cmt_iv")
    mm = cp.load_model(MM_IDR_PATH)
    return [
        Case(
            "two_cmt_iv",
            two,
            ("CL", "V1"),
            lambda t, y, p: _two_cmt_rhs_np(t, y, p["CL"], p["V1"], p["Q"], p["V2"]),
            None,
            lambda p: np.zeros(2),
        ),
        Case(
            "mm_idr",
            mm,
            ("V", "Vmax"),
            lambda t, y, p: _mm_idr_rhs_np(
                t,
                y,
                p["V"],
                p["Vmax"],
                p["Km"],
                p["kin"],
                p["kout"],
                p["IC50"],
                p["inflammation"],
            ),
            _mm_idr_rhs_jnp,
            lambda p: np.array([0.0, p["kin"] * p["inflammation"] / p["kout"]]),
        ),
    ]


def draw_params(case: Case, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Log-normal per-subject values (30% CV around the model's typical value)."""
    sigma = np.sqrt(np.log1p(CV**2))
    return {
        k: case.defaults[k] * np.exp(sigma * rng.standard_normal(n) - 0.5 * sigma**2)
        for k in case.varied
    }


def full_params(case: Case, params: dict[str, np.ndarray], i: int) -> dict[str, float]:
    p = dict(case.defaults)
    p.update({k: float(v[i]) for k, v in params.items()})
    return p


# --------------------------------------------------------------------------- peers
def interval_slices() -> list[tuple[int, int]]:
    """Output-time index range [lo, hi) of each dose interval; the last one holds 168 h."""
    dose_times = DOSE_INTERVAL * np.arange(DOSE_COUNT)
    edges = [*np.searchsorted(TIMES, dose_times, side="left").tolist(), TIMES.size]
    return list(itertools.pairwise(edges))


def scipy_subject(case: Case, p: dict[str, float]) -> np.ndarray:
    """One subject with LSODA, dose interval by dose interval: add the bolus, integrate to
    the next dose time with t_eval at the interval's output times (plus its end, whose
    state carries over). Returns (n_times, n_states)."""
    out = np.empty((TIMES.size, len(case.states)))
    y = case.y0(p)
    central = case.states.index("central")
    slices = interval_slices()
    for k, (lo, hi) in enumerate(slices):
        last = k + 1 == len(slices)
        t_a = DOSE_INTERVAL * k
        t_b = TIMES[-1] if last else DOSE_INTERVAL * (k + 1)
        t_eval = TIMES[lo:hi] if last else np.append(TIMES[lo:hi], t_b)
        y = y.copy()
        y[central] += DOSE_AMOUNT
        sol = solve_ivp(
            case.rhs_np,
            (t_a, t_b),
            y,
            method="LSODA",
            t_eval=t_eval,
            rtol=RTOL,
            atol=ATOL,
            args=(p,),
        )
        if not sol.success:
            raise RuntimeError(f"scipy LSODA failed: {sol.message}")
        out[lo:hi] = sol.y[:, : hi - lo].T
        y = sol.y[:, -1]
    return out


def make_hand_diffrax(case: Case) -> Callable[..., Any]:
    """What a competent JAX user writes without cellpkpd: a Python loop over the dose
    intervals, one diffrax solve each (Tsit5, PID controller, SaveAt(ts=..., t1=True)),
    the bolus added between intervals; `jax.jit(jax.vmap(f))` over subjects. Times,
    dose times, amounts and parameters are all arguments (data, not constants)."""
    slices = interval_slices()
    central = case.states.index("central")
    term = dfx.ODETerm(case.rhs_jnp)
    solver = dfx.Tsit5()
    controller = dfx.PIDController(rtol=RTOL, atol=ATOL)

    def f(p, times, dose_times, amounts):
        y = jnp.stack([jnp.zeros(()), p["kin"] * p["inflammation"] / p["kout"]])
        pieces = []
        for k, (lo, hi) in enumerate(slices):
            t_a = dose_times[k]
            t_b = dose_times[k + 1] if k + 1 < len(slices) else times[-1]
            y = y.at[central].add(amounts[k])
            sol = dfx.diffeqsolve(
                term,
                solver,
                t_a,
                t_b,
                None,
                y,
                args=p,
                saveat=dfx.SaveAt(ts=times[lo:hi], t1=True),
                stepsize_controller=controller,
                max_steps=100_000,
            )
            pieces.append(sol.ys[:-1])
            y = sol.ys[-1]
        return jnp.concatenate(pieces)

    batched = jax.jit(jax.vmap(f, in_axes=(0, None, None, None)))
    return batched


# --------------------------------------------------------------------------- timing
def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def repeats_for(seconds: float, budget: float = 20.0) -> int:
    """At least 3 repeats, more for fast calls, fewer for slow ones (> budget / 3 s)."""
    if seconds * 3 <= budget:
        return max(3, min(15, int(budget / 2 / max(seconds, 1e-9))))
    return 1 if seconds > budget / 2 else 2


def steady_times(fn: Callable[[], Any], first: float | None = None) -> list[float]:
    """Steady-state wall times of `fn` (already compiled). The number of repeats is chosen
    from one warm call; `first` (a call with nothing to compile, e.g. SciPy's) counts."""
    ts = [first if first is not None else _timed(fn)]
    ts += [_timed(fn) for _ in range(repeats_for(ts[0]) - 1)]
    return ts


def max_rel_diff(a: np.ndarray, ref: np.ndarray) -> float:
    """Max |a - ref| / |ref| over values |ref| > AGREE_FLOOR * max|ref| (per state)."""
    worst = 0.0
    for j in range(ref.shape[-1]):
        r, x = ref[..., j], a[..., j]
        scale = np.max(np.abs(r))
        if scale == 0:
            continue
        m = np.abs(r) > AGREE_FLOOR * scale
        worst = max(worst, float(np.max(np.abs(x[m] - r[m]) / np.abs(r[m]))))
    return worst


def cp_states(res: Any, states: tuple[str, ...]) -> np.ndarray:
    return np.stack([res[s].values for s in states], axis=-1)  # (N, T, n_states)


def time_core(case: Case, regimen: Any, times: np.ndarray, params: dict, row: dict) -> None:
    """Time `cp.Simulator(...).batch` with its default options: the pure core that
    `cp.simulate` wraps (and that sweep/infer use)."""
    sim = cp.Simulator(case.spec, times, outputs=case.states, rtol=RTOL, atol=ATOL)
    doses = sim.doses(regimen)
    p_j = {k: jnp.asarray(v) for k, v in params.items()}

    def run_core():
        return jax.block_until_ready(sim.batch(p_j, doses))

    t = time.perf_counter()
    run_core()
    core_first = time.perf_counter() - t
    core_all = steady_times(run_core)
    core_med = statistics.median(core_all)
    row.update(core_first_s=core_first, core_median_s=core_med, core_times_s=core_all)
    print(f"  Simulator.batch first {core_first:6.3f} s, median {core_med:8.4f} s", flush=True)


def bench_case(case: Case, n: int, args: argparse.Namespace, rng: np.random.Generator) -> dict:
    params = draw_params(case, n, rng)
    regimen = cp.Regimen.repeat(
        cp.Dose(0.0, DOSE_AMOUNT, "central"), interval=DOSE_INTERVAL, count=DOSE_COUNT
    )
    times = TIMES.copy()
    row: dict[str, Any] = {"model": case.key, "spec_name": case.spec.name, "n": n}
    print(f"\n== {case.key}  N = {n}", flush=True)

    # ---- cellpkpd: cp.simulate (returns an xarray.Dataset: already materialised)
    def run_cp():
        return cp.simulate(case.spec, regimen, times, params=params, rtol=RTOL, atol=ATOL)

    t = time.perf_counter()
    res = run_cp()
    first = time.perf_counter() - t
    all_t = steady_times(run_cp)
    med, reps = statistics.median(all_t), len(all_t)
    row.update(
        cellpkpd_first_s=first,
        cellpkpd_median_s=med,
        cellpkpd_times_s=all_t,
        cellpkpd_compile_s=max(first - med, 0.0),
        cellpkpd_solver=res.attrs.get("solver"),
    )
    y_cp = cp_states(res, case.states)
    print(f"  cp.simulate   first {first:8.3f} s, median {med:8.4f} s over {reps}", flush=True)

    # ---- cellpkpd core: Simulator.batch (the pure compiled function; for reference)
    if not args.no_core:
        time_core(case, regimen, times, params, row)

    # ---- hand-written diffrax (nonlinear model only)
    y_hand = None
    if case.rhs_jnp is not None:
        hand = make_hand_diffrax(case)
        p_full = {
            k: jnp.asarray(params[k]) if k in params else jnp.full((n,), v)
            for k, v in case.defaults.items()
        }
        t_j = jnp.asarray(times)
        dose_t = jnp.asarray(DOSE_INTERVAL * np.arange(DOSE_COUNT))
        amounts = jnp.full((DOSE_COUNT,), DOSE_AMOUNT)

        def run_hand():
            return jax.block_until_ready(hand(p_full, t_j, dose_t, amounts))

        t = time.perf_counter()
        y_hand = np.asarray(run_hand())
        hand_first = time.perf_counter() - t
        hand_all = steady_times(run_hand)
        hand_med, hreps = statistics.median(hand_all), len(hand_all)
        row.update(
            hand_first_s=hand_first,
            hand_median_s=hand_med,
            hand_times_s=hand_all,
            hand_compile_s=max(hand_first - hand_med, 0.0),
        )
        print(f"  hand diffrax  first {hand_first:8.3f} s, median {hand_med:8.4f} s over {hreps}")

    # ---- scipy LSODA, subject by subject (subset + linear extrapolation for large N)
    if n > args.scipy_subset:
        idx = np.sort(rng.choice(n, size=args.scipy_subset, replace=False))
        row["scipy_extrapolated_from"] = int(args.scipy_subset)
    else:
        idx = np.arange(n)
        row["scipy_extrapolated_from"] = None
    subj = [full_params(case, params, i) for i in idx]

    def run_scipy():
        return np.stack([scipy_subject(case, p) for p in subj])

    t = time.perf_counter()
    y_sp = run_scipy()
    sp_first = time.perf_counter() - t
    sp_all = steady_times(run_scipy, first=sp_first)  # no compile step: the first counts
    sp_med = statistics.median(sp_all)
    scale = n / idx.size
    row.update(
        scipy_measured_s=sp_med,
        scipy_measured_subjects=int(idx.size),
        scipy_times_s=sp_all,
        scipy_s=sp_med * scale,
    )
    extra = f" (x {scale:g} extrapolated from {idx.size} subjects)" if scale != 1 else ""
    print(f"  scipy LSODA   median {sp_med:8.3f} s over {len(sp_all)}{extra}", flush=True)

    # ---- agreement
    agree = {"cellpkpd_vs_scipy": max_rel_diff(y_cp[idx], y_sp)}
    if y_hand is not None:
        agree["cellpkpd_vs_hand"] = max_rel_diff(y_cp, y_hand)
        agree["hand_vs_scipy"] = max_rel_diff(y_hand[idx], y_sp)
    row["max_rel_diff"] = agree
    print("  max rel diff  " + ", ".join(f"{k} {v:.2e}" for k, v in agree.items()), flush=True)
    for k, v in agree.items():
        assert v < AGREE_RTOL, f"{case.key} N={n}: {k} max relative difference {v:.3e}"

    row["ratio_scipy_over_cellpkpd"] = row["scipy_s"] / med
    if y_hand is not None:
        row["ratio_cellpkpd_over_hand"] = med / row["hand_median_s"]
    return row


# --------------------------------------------------------------------------- report
def fmt(x: float | None, width: int, prec: str = ".4f") -> str:
    return f"{'-':>{width}}" if x is None else f"{x:>{width}{prec}}"


def table(rows: list[dict]) -> str:
    head = (
        f"{'model':<11} {'N':>6} {'cp compile s':>12} {'cp median s':>12} {'scipy s':>11} "
        f"{'scipy/cp':>10} {'hand s':>10} {'cp/hand':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        star = "*" if r.get("scipy_extrapolated_from") else " "
        lines.append(
            f"{r['model']:<11} {r['n']:>6} {fmt(r['cellpkpd_compile_s'], 12, '.3f')} "
            f"{fmt(r['cellpkpd_median_s'], 12)} {fmt(r['scipy_s'], 10, '.3f')}{star} "
            f"{fmt(r['ratio_scipy_over_cellpkpd'], 10, '.1f')} "
            f"{fmt(r.get('hand_median_s'), 10)} {fmt(r.get('ratio_cellpkpd_over_hand'), 8, '.2f')}"
        )
    subsets = {r["scipy_extrapolated_from"] for r in rows if r.get("scipy_extrapolated_from")}
    if subsets:
        lines.append(
            f"* scipy timed on a random subset of {', '.join(map(str, sorted(subsets)))} subjects "
            "and extrapolated linearly to N"
        )
    return "\n".join(lines)


def check_targets(rows: list[dict]) -> list[dict]:
    checks = []

    def add(name: str, ok: bool | None, detail: str) -> None:
        checks.append({"target": name, "pass": ok, "detail": detail})

    big = {r["model"]: r for r in rows if r["n"] == 10_000}
    lin, non = big.get("two_cmt_iv"), big.get("mm_idr")
    t = TARGETS
    if lin:
        v = lin["ratio_scipy_over_cellpkpd"]
        add("linear >= 1000x scipy (N=10,000)", v >= t["linear_vs_scipy"], f"{v:.1f}x")
    else:
        add("linear >= 1000x scipy (N=10,000)", None, "N = 10,000 not run")
    if non:
        v = non["ratio_scipy_over_cellpkpd"]
        add("nonlinear >= 50x scipy (N=10,000)", v >= t["nonlinear_vs_scipy"], f"{v:.1f}x")
        v = non["ratio_cellpkpd_over_hand"]
        add(
            "cp.simulate <= 1.2x hand-written diffrax (N=10,000)",
            v <= t["cellpkpd_vs_hand"],
            f"{v:.2f}x",
        )
    else:
        add("nonlinear >= 50x scipy (N=10,000)", None, "N = 10,000 not run")
        add("cp.simulate <= 1.2x hand-written diffrax (N=10,000)", None, "N = 10,000 not run")
    for model in dict.fromkeys(r["model"] for r in rows):
        worst = max(r["cellpkpd_compile_s"] for r in rows if r["model"] == model)
        add(f"compile < 5 s ({model}, worst N)", worst < t["compile_s"], f"{worst:.2f} s")
    return checks


def machine_info() -> dict:
    import diffrax

    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "jax": jax.__version__,
        "jaxlib": getattr(__import__("jaxlib"), "__version__", None),
        "diffrax": diffrax.__version__,
        "scipy": scipy.__version__,
        "numpy": np.__version__,
        "cellpkpd": cp.__version__,
        "jax_devices": [str(d) for d in jax.devices()],
        "jax_x64": bool(jax.config.jax_enable_x64),
        "jax_compilation_cache_dir": jax.config.jax_compilation_cache_dir,
        "xla_flags": os.environ.get("XLA_FLAGS"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 1, 100 only (smoke run)")
    ap.add_argument("--n", type=int, nargs="+", help="numbers of subjects (default 1 100 10000)")
    ap.add_argument(
        "--scipy-subset",
        type=int,
        default=200,
        help="time scipy on this many random subjects when N is larger, and extrapolate",
    )
    ap.add_argument(
        "--models", nargs="+", choices=("two_cmt_iv", "mm_idr"), default=["two_cmt_iv", "mm_idr"]
    )
    ap.add_argument(
        "--no-core", action="store_true", help="skip timing cp.Simulator.batch (the pure core)"
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    args = ap.parse_args(argv)
    ns = args.n or ([1, 100] if args.quick else [1, 100, 10_000])

    info = machine_info()
    print(
        f"{info['platform']} | {info['cpu_count']} CPUs | jax {info['jax']} diffrax "
        f"{info['diffrax']} scipy {info['scipy']} | devices {info['jax_devices']}"
    )
    jax.block_until_ready(jnp.ones(3) + 1.0)  # start the backend outside any timing

    rows = []
    for case in make_cases():
        if case.key not in args.models:
            continue
        for n in ns:
            rng = np.random.default_rng([SEED, n, len(case.key)])
            rows.append(bench_case(case, n, args, rng))

    print()
    print(table(rows))
    checks = check_targets(rows)
    print(f"\nTargets (N = 10,000, this machine: {info['cpu_count']} CPUs; targets assume 2):")
    for c in checks:
        tag = "SKIP" if c["pass"] is None else ("PASS" if c["pass"] else "FAIL")
        print(f"  {tag}  {c['target']}: {c['detail']}")

    result = {
        "benchmark": "bench_simulate",
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": info,
        "design": {
            "n_times": int(TIMES.size),
            "times": "0..168 h hourly",
            "regimen": f"{DOSE_AMOUNT:g} mg IV bolus into central every {DOSE_INTERVAL:g} h x "
            f"{DOSE_COUNT}",
            "rtol": RTOL,
            "atol": ATOL,
            "cv": CV,
            "seed": SEED,
            "varied": {"two_cmt_iv": ["CL", "V1"], "mm_idr": ["V", "Vmax"]},
            "scipy": "solve_ivp(method='LSODA'), per subject, per dose interval",
            "hand": "jax.jit(jax.vmap(f)), f loops over dose intervals with diffrax Tsit5 + "
            "PIDController, SaveAt(ts=..., t1=True), max_steps=100000",
            "compile_s": "first call minus steady-state median",
            "agreement": f"max relative difference on values > {AGREE_FLOOR:g} x max, "
            f"asserted < {AGREE_RTOL:g}",
        },
        "scipy_extrapolated_from": args.scipy_subset
        if any(r.get("scipy_extrapolated_from") for r in rows)
        else None,
        "rows": rows,
        "targets": checks,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
