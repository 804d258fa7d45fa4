"""`Simulator` (the pure, compiled functional core) and `simulate_regimens` (validation at the
edge plus an `xarray.Dataset` result; `cp.simulate` calls it for regimens, see
`cellpkpd.data.simulate`)."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .._core.display import with_units
from .._core.errors import DosingError, SimulationError, SpecError
from .._core.memo import memo
from ..spec.model import DOSED_PREFIX, ModelSpec, load_model, output_unit, outside_bounds
from .compile import CompiledModel
from .dosing import (
    DOSE,
    PAD,
    RESET_DOSE,
    Dose,
    DoseArrays,
    Regimen,
    model_lags,
    stack_dose_arrays,
    traced_path,
)
from .parallel import EXACT_FAST_COMPILE_BELOW, FAST_COMPILE_OPTIONS, batched_map
from .solve import (
    FEW_LENGTHS,
    SOLVED,
    SOLVERS,
    STATUS,
    WINDOW_FULL,
    EngineOptions,
    TimeVarying,
    count_distinct_host,
    count_distinct_lengths,
    host_segment_lengths,
    params_at,
    solve_subject,
    squarings_needed,
)

__all__ = ["Plan", "Simulator", "resolve_solver", "simulate_regimens"]


def resolve_solver(spec: ModelSpec, solver: str) -> str:
    """The solver `solver="auto"` picks: exact for linear models, Kvaerno5 for models marked
    ``stiff = true``, Tsit5 otherwise. Raises if "exact" is asked of a nonlinear model."""
    if solver not in SOLVERS:
        raise SpecError(f"solver = {solver!r}; expected one of {', '.join(SOLVERS)}")
    if solver == "auto":
        if spec.is_linear:
            return "exact"
        return "kvaerno5" if spec.stiff else "tsit5"
    if solver == "exact" and not spec.is_linear:
        raise SpecError(
            f"{spec.source}: solver='exact' needs a linear model; '{spec.name}' has "
            "state-dependent flows, nonlinear odes or uses t (use 'tsit5' or 'kvaerno5')"
        )
    return solver


def check_times(times: Any, where: str, t0: float = 0.0) -> np.ndarray:
    if traced_path(times, "times") is not None:
        fix = (
            "pass traced output times to the call instead: sim(params, doses, times)"
            if where == "Simulator"
            else "differentiate cp.Simulator(spec, outputs=...)(params, doses, times) instead"
        )
        raise SpecError(f"{where}: times are traced JAX values; they fix the output grid ({fix})")
    try:
        arr = np.asarray(times, dtype=float)
    except (TypeError, ValueError):
        raise SpecError(f"{where}: times must be numbers, got {times!r:.80}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise SpecError(f"{where}: times must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        k = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise SpecError(f"{where}: times[{k}] = {arr[k]} is not finite")
    if np.any(arr < t0):
        k = int(np.flatnonzero(arr < t0)[0])
        raise SpecError(f"{where}: times[{k}] = {arr[k]} is before the start time {t0}")
    if np.any(np.diff(arr) < 0):
        k = int(np.flatnonzero(np.diff(arr) < 0)[0]) + 1
        raise SpecError(
            f"{where}: times must be non-decreasing; times[{k}] = {arr[k]} < times[{k - 1}] = "
            f"{arr[k - 1]}"
        )
    return arr


def _check_call_times(times: Any) -> None:
    """Output times given to a call (one row, or one row per subject): when concrete, each
    row as `check_times` wants it (any start time); traced times are the caller's to keep
    in order."""
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(times)):
        return
    arr = np.asarray(times, dtype=float)
    if arr.ndim <= 1:
        check_times(arr.reshape(-1), "Simulator", t0=-np.inf)
        return
    for i, row in enumerate(arr.reshape(-1, arr.shape[-1])):
        check_times(row, f"Simulator (subject {i})", t0=-np.inf)


class Simulator:
    """The compiled functional core: a pure function of (parameters, padded doses).

    Parameters
    ----------
    spec : ModelSpec or str
        The model (or a library name / path).
    times : array, shape (n_times,), optional
        Output times [model time unit], non-decreasing, >= `t0`. If omitted, pass times to
        each call instead (one compiled program per shape either way).
    outputs : sequence of str, optional
        Names of states, observations or derived quantities to return (default: every
        state and observation).
    solver : {"auto", "exact", "tsit5", "kvaerno5"}
    max_doses : int, optional
        If given, dose arrays must have exactly this many event slots.
    rtol, atol : float
        ODE tolerances (relative, absolute [amount]); unused by the exact path.
    max_steps : int
        Step limit of each ODE segment.
    t0 : float
        Start time [time] at which states take their initial values.
    window : int, optional
        ODE path: largest number of output times between two events (default: all);
        a smaller value saves work, and a segment with more outputs is reported (status 4).
    ss_max_intervals : int
        Nonlinear steady state: most dosing intervals simulated before giving up.

    Notes
    -----
    ``sim(params, doses)`` returns a dict output -> array ``(n_times,)`` and works under
    `jax.jit`, `jax.vmap` and `jax.grad` with respect to parameters and every number of a
    dose (time, amount, duration, rate, lag, bioavailability, ii), also when the regimen is
    built from traced values inside the transformation (see `cellpkpd.Dose`). Output times
    given here are fixed; traced output times go to the call. Outputs of a failed solve are
    NaN; `Simulator.solve` also returns the status code (see `cellpkpd.engine.solve.STATUS`).

    Examples
    --------
    >>> sim = cp.Simulator(spec, times, outputs=("conc",))
    >>> doses = cp.Regimen.repeat(dose, interval=24.0, count=7).to_arrays(8, spec)
    >>> y = sim({"CL": 2.0}, doses)["conc"]
    """

    def __init__(
        self,
        spec: ModelSpec | str,
        times: Any = None,
        outputs: Sequence[str] | None = None,
        solver: str = "auto",
        max_doses: int | None = None,
        rtol: float = 1e-8,
        atol: float = 1e-8,
        max_steps: int = 100_000,
        t0: float = 0.0,
        window: int | None = None,
        ss_max_intervals: int = 1000,
    ):
        self.spec = load_model(spec) if not isinstance(spec, ModelSpec) else spec
        self.model = CompiledModel(self.spec)
        self.solver = resolve_solver(self.spec, solver)
        for name, v in (("rtol", rtol), ("atol", atol)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise SpecError(f"Simulator: {name} = {v!r} must be a positive number")
        if (
            isinstance(max_steps, bool)
            or not isinstance(max_steps, (int, np.integer))
            or max_steps < 1
        ):
            raise SpecError(f"Simulator: max_steps = {max_steps!r} must be an integer >= 1")
        self.times = None if times is None else check_times(times, "Simulator", t0)
        dose_time = self.spec.dose_time_derived  # (known only at dose records)
        known = (
            *self.spec.states,
            *self.spec.observations,
            *(d for d in self.spec.derived if d not in dose_time),
        )
        if outputs is None:
            outputs = (*self.spec.states, *self.spec.observations)
        if isinstance(outputs, str):
            outputs = (outputs,)
        for o in outputs:
            if o not in known:
                raise SpecError(f"Simulator: unknown output '{o}'; known: {', '.join(known)}")
        self.outputs = tuple(outputs)
        self.max_doses = max_doses
        self.options = EngineOptions(
            solver=self.solver,
            rtol=float(rtol),
            atol=float(atol),
            max_steps=int(max_steps),
            t0=float(t0),
            window=window,
            ss_max_intervals=int(ss_max_intervals),
            keep=self.model.kept_states(self.outputs),
        )
        self._defaults = self.spec.defaults()
        states = list(self.spec.states)
        self._dosed = [(d, states.index(d[len(DOSED_PREFIX) :])) for d in self.spec.dosed_names]
        self._batched: dict[Any, Any] = {}
        # what the programs traced from this Simulator are built from (taken here, as the
        # traced code reads self.model, self._defaults and self._dosed built above; the
        # model's fingerprint is computed only if a program is kept on disk)
        times_key = None if self.times is None else (self.times.dtype.str, self.times.tobytes())
        self._key_base = (self.spec, times_key, self.outputs, self.max_doses)

    # ---------------------------------------------------------------- pure core
    def _params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        p = {k: jnp.asarray(v, dtype=float) for k, v in self._defaults.items()}
        if params is not None and not isinstance(params, Mapping):
            raise SpecError(
                f"{self.spec.name}: params must be a dict name -> value(s), got "
                f"{type(params).__name__}"
            )
        for k, v in (params or {}).items():
            if k not in p:
                raise SpecError(
                    f"{self.spec.name}: unknown parameter or covariate '{k}'; known: "
                    + ", ".join(self._defaults)
                )
            p[k] = jnp.asarray(v, dtype=float)
        return p

    def doses(
        self, regimen: Regimen | Sequence[Regimen], max_doses: int | None = None
    ) -> DoseArrays:
        """Padded dose arrays for one regimen (or stacked for a list), names resolved."""
        n = max_doses or self.max_doses
        if isinstance(regimen, Regimen):
            return regimen.to_arrays(n, self.spec)
        return stack_dose_arrays(list(regimen), n, self.spec)

    def solve(
        self,
        params: Mapping[str, Any] | None,
        doses: DoseArrays | Regimen,
        times: Any = None,
        tv: TimeVarying | None = None,
        plan: Plan | None = None,
        events_before: Any = None,
    ) -> tuple[dict[str, Any], Any]:
        """Outputs and status for one subject (pure; vmap over subjects).

        ``plan`` (from `plan`, made once for a batch's concrete doses) sizes the compiled
        program: the states to propagate and the matrix exponentials to take. Default: every
        state, one exponential per segment.

        ``events_before`` (int array (n_times,), optional) places each output among the
        events at its own time: after the first ``events_before[k]`` entries of the dose
        arrays and before the rest, as NONMEM reads records in file order (a trough sample
        listed before the dose at its time sees the amount before that dose). Default: after
        every event at its time.

        Returns
        -------
        outputs : dict str -> array (n_times,)
        status : int array, shape () ; `SOLVED` (0) = success, else a key of `STATUS`.
        """
        p, doses, times, static = self._prepare(params, doses, times)
        _check_events_before(times, events_before, doses.max_doses)
        plan = plan or Plan(self.options)
        states, status = solve_subject(
            self.model, plan.options, p, doses, times, tv, static, plan.size, events_before
        )
        return self._observe(p, tv, times, states), status

    def _prepare(self, params: Any, doses: Any, times: Any) -> tuple[Any, ...]:
        if isinstance(doses, Regimen):
            doses = self.doses(doses)
        if not isinstance(doses, DoseArrays):
            raise DosingError(
                f"{self.spec.name}: doses must be a cp.Regimen (or DoseArrays), got "
                f"{type(doses).__name__}; simulate without doses with cp.Regimen([])"
            )
        doses = doses.resolve(tuple(self.spec.states), routes=tuple(self.spec.routes))
        if self.max_doses is not None and doses.max_doses != self.max_doses:
            raise DosingError(
                f"Simulator: dose arrays have {doses.max_doses} slots, expected "
                f"max_doses = {self.max_doses}"
            )
        static = None
        if times is None:
            if self.times is None:
                raise SpecError("Simulator: no output times (give times= here or at construction)")
            static = self.times
            times = jnp.asarray(self.times)
        else:
            _check_call_times(times)
            times = jnp.asarray(times, dtype=float)
        p = self._params(params)
        if self._dosed:
            # dosed_<state>: the subject's total amount dosed into each state (AMT; a
            # route dose counts for every state of its route)
            given = (doses.kind == DOSE) | (doses.kind == RESET_DOSE)
            route = jnp.full_like(doses.cmt, -1) if doses.route is None else doses.route
            in_route = np.zeros((len(self.spec.routes) + 1, len(self.spec.states)), bool)
            for r, fr in enumerate(self.spec.routes.values()):
                in_route[r, [list(self.spec.states).index(s) for s in fr]] = True
            for name, j in self._dosed:
                hit = jnp.where(route >= 0, jnp.asarray(in_route[:, j])[route], doses.cmt == j)
                p[name] = jnp.sum(jnp.where(given & hit, doses.amount, 0.0), -1)
        return p, doses, times, static

    def _observe(self, p: dict[str, Any], tv: TimeVarying | None, times: Any, states: Any) -> dict:
        bp = self.model.breakpoints(p)
        names = self.outputs
        idx = {s: i for i, s in enumerate(self.spec.states)}
        if all(n in idx for n in names):
            return {n: states[:, idx[n]] for n in names}
        # each output with the values of its own record (or those in force at its time)
        rec = None if tv is None or tv.output_record is None else tv.output_record
        rec = jnp.full(times.shape[0], -1, jnp.int32) if rec is None else jnp.asarray(rec)
        at = lambda t, k: params_at(p, tv, t, k, point=True, bp=bp)
        return jax.vmap(lambda t, k, x: self.model.observe(names, t, x, at(t, k)))(
            times, rec, states
        )

    def __call__(
        self,
        params: Mapping[str, Any] | None,
        doses: DoseArrays | Regimen,
        times: Any = None,
        tv: TimeVarying | None = None,
        events_before: Any = None,
    ) -> dict[str, Any]:
        """Outputs for one subject: dict name -> array (n_times,); NaN if the solve failed
        (`events_before`: see `solve`)."""
        out, status = self.solve(params, doses, times, tv, events_before=events_before)
        return {k: jnp.where(status == SOLVED, v, jnp.nan) for k, v in out.items()}

    def batch(
        self,
        params: Mapping[str, Any],
        doses: DoseArrays,
        times: Any = None,
        tv: TimeVarying | None = None,
        chunk_size: int | None = None,
        reduce: Any = None,
        events_before: Any = None,
    ) -> tuple[dict[str, Any], Any]:
        """`solve` for many subjects, chunked and spread over the JAX devices.

        Parameters
        ----------
        params : dict
            Name -> array (n,) for n subjects (unnamed inputs take the model's values).
        doses : DoseArrays
            Shared by all subjects (shape (max_doses,)) or one row per subject (n, max_doses).
        times : array, optional
            Output times if not fixed at construction: (n_times,) shared or (n, n_times).
        tv : TimeVarying, optional
            Time-varying covariates with a leading subject axis.
        chunk_size : int, optional
            Subjects per vectorised chunk and device (default: `default_chunk`: on CPU 256
            on the ODE path and 128 on the exact path, on a GPU up to 2**20, i.e. a device's
            whole share of a `cp.sweep` chunk); see `cellpkpd.parallel.batched_map`.
        reduce : callable, optional
            ``reduce(times, outputs) -> dict name -> scalar``: a pure JAX reduction of one
            subject's trajectory (times (n_times,), outputs dict -> (n_times,)), applied
            inside the compiled, sharded map so full trajectories are never gathered (this
            is how `cellpkpd.analysis.sweep` computes metrics on the device). Its values are
            meaningless where the status is not 0.
        events_before : int array, optional
            Each output's place among the events at its time, shaped like `times` (see
            `solve`).

        Returns
        -------
        outputs : dict str -> array (n, n_times), or dict name -> array (n,) with `reduce`
        status : int array (n,)

        Notes
        -----
        With concrete inputs (not traced by an enclosing `jit`), the work is sized from the
        doses first: for `PLAN_MIN_SUBJECTS` subjects or more, the exact path finds each
        subject's distinct segment lengths, so it takes one matrix exponential per distinct
        length, and leaves out the states no dose reaches (for fewer subjects, a second
        compiled program costs more than it saves); the ODE path
        saves only as many output times per segment as the doses leave between them (re-run
        with all times if a lag moved more into one segment), and solves the subjects
        ordered by dose schedule (`_regimen_order`; results in the caller's order).
        """
        if events_before is not None:
            _check_events_before(
                self.times if times is None else times, events_before, doses.max_doses
            )
        if times is not None:
            _check_call_times(times)
        batched, shared = _split_inputs(params, doses, times, tv, events_before)
        concrete = not any(
            isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((batched, shared))
        )
        n_subjects = max(
            (np.shape(v)[0] for v in jax.tree.leaves(batched) if np.ndim(v)), default=1
        )
        plan = Plan(self.options)
        if concrete and n_subjects >= PLAN_MIN_SUBJECTS:
            # a large batch leaves out the states its doses cannot reach and takes one
            # exponential per distinct segment length (a program per plan; a small batch
            # shares one program whatever the doses, as compiling costs more than it saves)
            counted = params if tv is None else None
            plan = self.plan(doses, counted, times, events_before, chunk_size=chunk_size)
        if concrete and self.solver != "exact" and plan.options.window is None:
            window = _window_from_doses(
                doses, self.times if times is None else times, plan.options.t0
            )
            plan = Plan(dataclasses.replace(plan.options, window=window), plan.size)
        chunk = chunk_size or default_chunk(self.solver)
        order = _regimen_order(batched) if concrete and self.solver != "exact" else None
        if order is not None:
            batched = jax.tree.map(lambda x: x[order], batched)
        fn = self._mapper(("solve", plan, reduce), self._one(plan, reduce), chunk)
        out, status = fn(batched, shared)
        if (
            plan.options.window is not None
            and self.options.window is None
            and bool(jnp.any(status == WINDOW_FULL))
        ):
            full = Plan(dataclasses.replace(plan.options, window=None), plan.size)
            fn = self._mapper(("solve", full, reduce), self._one(full, reduce), chunk)
            out, status = fn(batched, shared)
        if order is not None:
            back = np.argsort(order)
            out, status = jax.tree.map(lambda y: y[back], (out, status))
        return out, status

    def plan(
        self,
        doses: DoseArrays | Regimen,
        params: Mapping[str, Any] | None = None,
        times: Any = None,
        events_before: Any = None,
        *,
        squarings_margin: int = 1,
        chunk_size: int | None = None,
    ) -> Plan:
        """Size the compiled program for concrete doses (and parameters), once per batch.

        On the exact path the plan leaves out the states that no dose of `doses` can reach
        (they stay 0). With `params` (name -> scalar or array (n,)), it also counts each
        subject's distinct segment lengths, so `solve` takes one matrix exponential per
        distinct length instead of one per segment, with the squarings those parameters
        need plus `squarings_margin` (each extra squaring doubles the rates the plan
        allows; a solve beyond them gives NaN). When the data alone fix the timeline
        (bolus doses, no parameter-dependent ``[dosing]`` lag, no breakpoints) the lengths
        are counted with NumPy and a small program of the rate matrices gives the
        squarings (over each subject's longest segment); otherwise a compiled program
        builds each subject's timeline and counts. The ODE path, or traced inputs, get the
        Simulator's own options.

        Parameters
        ----------
        doses : DoseArrays or Regimen
            One row per subject (n, max_doses) or shared (max_doses,).
        params : dict, optional
            Values at which to count segment lengths (e.g. typical values for a fit whose
            dose times do not depend on estimated parameters). None: do not count.
        times, events_before : array, optional
            As for `batch` ((n_times,) shared or (n, n_times)).
        squarings_margin : int
            Squarings added to those `params` need.
        chunk_size : int, optional
            Subjects per vectorised chunk of the counting program.

        Returns
        -------
        Plan
        """
        opts = self._reach(self.options, doses)
        if params is None or self.solver != "exact":
            return Plan(opts)
        if isinstance(doses, Regimen):
            doses = self.doses(doses)
        batched, shared = _split_inputs(params, doses, times, None, events_before)
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((batched, shared))):
            return Plan(self.options)
        chunk = chunk_size or default_chunk("exact")
        lengths = host_segment_lengths(
            self.model, opts, doses, self.times if times is None else times
        )
        if lengths is not None:
            # the data alone fix the timeline (bolus doses, no parameter-dependent lag, no
            # breakpoints): its lengths are counted here with NumPy, and a program of the
            # rate matrices alone gives the squarings (compiling the timeline into a
            # counting program cost ~1.3 s of msc_pbk's 3.3 s first call at 10,000)
            sizes = count_distinct_host(lengths)
            # each subject's longest segment (one row: shared by all)
            longest = jnp.asarray(np.max(lengths, axis=1))
            if longest.shape[0] == 1:
                shared = {**shared, "longest": longest[0]}
            else:
                batched = {**batched, "longest": longest}
            sq = self._mapper(("squarings", opts.keep), self._squarings(opts), chunk)
            squarings = np.asarray(sq(batched, shared))
        else:
            # count a few distinct lengths by passes; a subject with more is counted again
            # by the sorting program (its count is -1)
            count = self._mapper(
                ("count", opts.keep, FEW_LENGTHS), self._count(opts, FEW_LENGTHS), chunk
            )
            # (read on the host with NumPy: each jnp operation on these small arrays would
            # be a program of its own to compile, ~0.03 s each on a first call)
            sizes, squarings = (np.asarray(x) for x in count(batched, shared))
            if np.any(sizes < 0):
                count = self._mapper(("count", opts.keep, None), self._count(opts, None), chunk)
                sizes, squarings = (np.asarray(x) for x in count(batched, shared))
        # a subject with rates that are not finite (e.g. V = 0) fails with its own status;
        # it must not size the others' exponentials
        needed = int(np.max(np.where(np.isfinite(squarings), squarings, 0.0)))
        opts = dataclasses.replace(opts, squarings=min(needed + squarings_margin, opts.squarings))
        return Plan(opts, max(int(np.max(sizes)), 1))

    def _inputs(self, b: dict[str, Any], s: dict[str, Any]) -> tuple[Any, ...]:
        get = lambda k: b.get(k, s.get(k))
        return {**s.get("p", {}), **b["p"]}, get("d"), get("t"), b.get("tv"), get("o")

    def _reach(self, opts: EngineOptions, doses: Any) -> EngineOptions:
        """`opts` whose exact path leaves out the states that no dose of `doses` can reach
        (they stay 0: `CompiledModel.pruned_keep`); `opts` itself on the ODE path or when
        the doses are traced."""
        if self.solver != "exact" or not isinstance(doses, (DoseArrays, Regimen)):
            return opts
        if isinstance(doses, Regimen):
            doses = self.doses(doses)
        doses = doses.resolve(tuple(self.spec.states), routes=tuple(self.spec.routes))
        leaves = (doses.kind, doses.cmt, doses.route)
        if any(isinstance(x, jax.core.Tracer) for x in leaves):
            return opts
        kind = np.asarray(doses.kind)
        given = (kind == DOSE) | (kind == RESET_DOSE)
        cmt = np.asarray(doses.cmt)
        route = np.full(cmt.shape, -1) if doses.route is None else np.asarray(doses.route)
        cm = self.model
        dosed = set(cmt[given & (route < 0)].tolist())
        for r in set(route[given & (route >= 0)].tolist()):
            dosed |= set(cm.route_states[r][cm.route_valid[r]].tolist())
        keep = cm.pruned_keep(opts.keep, dosed)
        return opts if keep == opts.keep else dataclasses.replace(opts, keep=keep)

    def _count(self, opts: EngineOptions, few: int | None) -> Any:
        def count(b: dict[str, Any], s: dict[str, Any]) -> Any:
            p, d, t, _, o = self._inputs(b, s)
            p, d, t, _ = self._prepare(p, d, t)
            return count_distinct_lengths(self.model, opts, p, d, t, o, few)

        return count

    def _squarings(self, opts: EngineOptions) -> Any:
        """One subject's squarings for its rate matrix (states `opts.keep`) over its
        ``longest`` segment [time] (batched, or shared when all timelines are one)."""

        def squarings(b: dict[str, Any], s: dict[str, Any]) -> Any:
            p, d, t, _, _ = self._inputs(b, s)
            p, d, t, _ = self._prepare(p, d, t)
            longest = b["longest"] if "longest" in b else s["longest"]
            return squarings_needed(self.model.linear_system(p, opts.keep)[0], longest)

        return squarings

    def _one(self, plan: Plan, reduce: Any = None) -> Any:
        def one(b: dict[str, Any], s: dict[str, Any]) -> Any:
            p, d, t, tv, o = self._inputs(b, s)
            out, status = self.solve(p, d, t, tv, plan, events_before=o)
            if reduce is not None:
                out = reduce(jnp.asarray(self.times) if t is None else t, out)
            return out, status

        return one

    def _mapper(self, key: Any, fn: Any, chunk: int) -> Any:
        full = (*key, chunk)
        g = self._batched.get(full)
        if g is None:
            # Kvaerno5's linear solves (lineax) fail inside jax.shard_map: one device, chunked
            devices = jax.devices()[:1] if self.solver == "kvaerno5" else None
            g = self._batched[full] = batched_map(
                fn,
                chunk_size=chunk,
                devices=devices,
                program_key=self._program_key(full),
                compiler_options=self._compiler_options,
            )
        return g

    def _compiler_options(self, n: int) -> Mapping[str, Any] | None:
        """XLA options of a batch program of `n` subjects: `FAST_COMPILE_OPTIONS` on the ODE
        path and for an exact batch of fewer than `EXACT_FAST_COMPILE_BELOW` subjects (where
        the compile is most of the call), XLA's defaults otherwise (see their comments)."""
        if self.solver != "exact" or n < EXACT_FAST_COMPILE_BELOW:
            return FAST_COMPILE_OPTIONS
        return None

    def _program_key(self, key: tuple[Any, ...]) -> str | None:
        """A name of everything the program `_mapper` builds for `key` computes, for the
        programs kept on disk (`cellpkpd._core.programs`): the model's fingerprint, this
        Simulator's output times, outputs and options, and `key` (the plan, the chunk).
        None when `key` holds a function (a sweep's `reduce`), which has no such name."""
        if any(callable(k) for k in key):
            return None
        spec, *rest = self._key_base
        return repr((spec.fingerprint, *rest, self.options, key))


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a `Simulator`'s compiled program is sized for a batch (`Simulator.plan`);
    hashable: one compiled program per plan.

    Attributes
    ----------
    options : EngineOptions
        Solver settings; on the exact path, the states to propagate (``keep``: those no
        dose reaches are left out) and the squarings of the exponentials.
    size : int or None
        Exact path: the most distinct segment lengths of any subject, one matrix
        exponential each (None: one per segment).
    """

    options: EngineOptions
    size: int | None = None


def _split_inputs(
    params: Mapping[str, Any],
    doses: DoseArrays,
    times: Any,
    tv: TimeVarying | None,
    events_before: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(batched, shared): the inputs with a leading subject axis, and those shared by all
    subjects, as `batched_map` takes them (a scalar parameter is shared: the compiled
    program then computes what depends on it once per chunk, not per subject)."""
    batched: dict[str, Any] = {"p": {k: v for k, v in params.items() if np.ndim(v)}}
    shared: dict[str, Any] = {}
    fixed = {k: v for k, v in params.items() if not np.ndim(v)}
    if fixed:
        shared["p"] = fixed
    (batched if doses.time.ndim == 2 else shared)["d"] = doses
    if times is not None:
        times = jnp.asarray(times, dtype=float)
        (batched if times.ndim == 2 else shared)["t"] = times
    if tv is not None:
        batched["tv"] = tv
    if events_before is not None:
        events_before = jnp.asarray(events_before, jnp.int32)
        (batched if events_before.ndim == 2 else shared)["o"] = events_before
    return batched, shared


def _regimen_order(batched: dict[str, Any]) -> np.ndarray | None:
    """ODE path: an order of the subjects that puts equal dose schedules next to each other
    (by number of dose records, then their times), so that most vectorised chunks of a large
    batch hold one schedule (a chunk's subjects step together segment by segment, as many
    steps as the slowest there: a chunk of mixed schedules costs up to ~2x, see
    benchmarks/bench_mixed_regimens.py); None when the doses are shared or already in that
    order. The results are put back in the callers' order."""
    d = batched.get("d")
    if d is None:
        return None
    t = np.asarray(d.time, dtype=float)
    kind = np.asarray(d.kind)
    times = np.where(kind == PAD, np.inf, t)  # padding records last
    keys = [times[:, j] for j in range(times.shape[1] - 1, -1, -1)]
    order = np.lexsort((*keys, (kind != PAD).sum(axis=1)))
    return None if np.all(order == np.arange(order.size)) else order


def _check_events_before(times: Any, events_before: Any, max_doses: int) -> None:
    """`events_before` must lie in [0, max_doses] and not decrease where times are equal
    (the engine's merge of outputs and events assumes it); checked when concrete."""
    if events_before is None or any(isinstance(x, jax.core.Tracer) for x in (times, events_before)):
        return
    eb = np.asarray(events_before)
    if eb.shape[-1:] != np.shape(times)[-1:]:
        raise SpecError(
            f"Simulator: events_before has shape {eb.shape}; expected one entry per output time "
            f"({np.shape(times)[-1]})"
        )
    t = np.broadcast_to(
        np.asarray(times, dtype=float), np.broadcast_shapes(eb.shape, np.shape(times))
    )
    eb = np.broadcast_to(eb, t.shape)
    if np.any((eb < 0) | (eb > max_doses)):
        raise SpecError(f"Simulator: events_before must lie in [0, {max_doses}] (the dose slots)")
    same = np.diff(t, axis=-1) == 0
    if np.any(same & (np.diff(eb, axis=-1) < 0)):
        raise SpecError(
            "Simulator: events_before decreases between outputs at the same time; outputs at "
            "one time must be listed in the order they see the events"
        )


#: Exact path: `Simulator.batch` plans one exponential per distinct segment length (one more
#: compiled program, which counts them or, for a timeline the data fix, gives the
#: squarings) from this many subjects on; a smaller batch takes an exponential per output
#: gap (or per segment) and compiles one program only.
PLAN_MIN_SUBJECTS = 32


def default_chunk(solver: str) -> int:
    """Subjects per vectorised chunk and device when the caller gives none.

    On CPU, small chunks are fastest: under `vmap` every subject of a chunk takes as many
    solver steps as the slowest one, and small chunks stay in cache (256 on the ODE path,
    128 on the exact path: its scan re-reads each subject's propagators at every step, and
    msc_pbk's 10,000 subjects ran 1.3-1.5x faster in chunks of 128 than of 512, two_cmt_iv
    and cart_ck 1.1x). A GPU runs a chunk's subjects in parallel and needs large
    chunks to be busy: there, up to 2**20 subjects (in practice a device's whole share of a
    `cp.sweep` chunk, whose size bounds the memory). Measured with benchmarks/bench_sweep.py
    on one H200, sweep chunks of 10^5: inner chunks of 256 gave 2,660 sets/s (10^5 sets),
    of 65,536 243,000 and of the whole chunk 356,000 (10^6 sets; one plain vmap over all
    10^6 at once: 428,000-439,000).
    """
    if jax.default_backend() != "cpu":
        return 1 << 20
    return 128 if solver == "exact" else 256


def _window_from_doses(doses: DoseArrays, times: Any, t0: float) -> int | None:
    """Most output times between consecutive dose records of any subject, plus a margin
    (the ODE path's save window; None = all times)."""
    t = np.asarray(times, dtype=float)
    n_out = t.shape[-1]
    dt = np.asarray(doses.time, dtype=float).reshape(-1, doses.max_doses)
    pad = np.asarray(doses.kind).reshape(dt.shape) == 0
    bounds = np.sort(np.where(pad, np.inf, dt), axis=1)
    bounds = np.concatenate([np.full((bounds.shape[0], 1), t0), bounds], axis=1)
    t2 = t.reshape(-1, n_out)
    # output times from each bound up to and including the next (an output at a dose time
    # may be saved before or after the dose: see Simulator.solve's events_before)
    if t2.shape[0] > 1:
        before = (t2[:, None, :] < bounds[..., None]).sum(-1)
        upto = (t2[:, None, :] <= bounds[..., None]).sum(-1)
    else:
        before = np.searchsorted(t2[0], bounds, side="left")
        upto = np.searchsorted(t2[0], bounds, side="right")
    ends = np.concatenate([upto[:, 1:], np.full((upto.shape[0], 1), n_out)], axis=1)
    counts = ends - before
    w = int(counts.max()) + 2
    return None if w >= n_out else w


# ------------------------------------------------------------------------ simulate
def batch_inputs(
    spec: ModelSpec, params: Mapping[str, Any] | None, covariates: Mapping[str, Any] | None, n: int
) -> tuple[dict[str, np.ndarray], int]:
    values: dict[str, np.ndarray] = {}
    for arg, given, known, kind in (
        ("params", params, spec.parameters, "parameter"),
        ("covariates", covariates, spec.covariates, "covariate"),
    ):
        if given is None:
            continue
        if not isinstance(given, Mapping):
            raise SpecError(
                f"simulate: {arg} must be a dict name -> value, got {type(given).__name__}"
            )
        for k, v in given.items():
            if k not in known:
                hint = ""
                other = spec.covariates if arg == "params" else spec.parameters
                if k in other:
                    hint = f" ('{k}' is a {'covariate' if arg == 'params' else 'parameter'})"
                raise SpecError(
                    f"simulate: unknown {'parameter' if arg == 'params' else 'covariate'} '{k}'"
                    f"{hint}; known: {', '.join(known) or 'none'}"
                )
            try:
                a = np.asarray(v, dtype=float)
            except (TypeError, ValueError):
                raise SpecError(f"simulate: {arg}['{k}'] = {v!r:.60} is not a number") from None
            if a.ndim > 1:
                raise SpecError(
                    f"simulate: {arg}['{k}'] must be a scalar or 1-D, got shape {a.shape}"
                )
            if not np.all(np.isfinite(a)):
                raise SpecError(f"simulate: {arg}['{k}'] contains NaN or inf: {v!r:.60}")
            bad = outside_bounds(spec, k, a, kinds=(kind,))
            if bad is not None:
                at = f" (subject {bad.first})" if a.ndim == 1 else ""
                raise SpecError(
                    f"simulate: {arg}['{k}'] = {bad.value}{at} lies outside its bounds "
                    f"[{bad.lo}, {bad.hi}] in {spec.source}"
                )
            if a.ndim == 1:
                if n > 1 and a.size != n and a.size != 1:
                    raise SpecError(
                        f"simulate: {arg}['{k}'] has {a.size} values but other inputs give "
                        f"{n} subjects"
                    )
                n = max(n, a.size)
            values[k] = a
    return values, n


def outputs_tuple(outputs: Any) -> tuple[str, ...] | None:
    if outputs is None:
        return None
    if isinstance(outputs, str):
        return (outputs,)
    try:
        return tuple(outputs)
    except TypeError:
        raise SpecError(f"simulate: outputs must be a list of names, got {outputs!r:.60}") from None


def full_params(spec: ModelSpec, values: Mapping[str, Any], n: int) -> dict[str, Any]:
    """Every parameter and covariate as an array (n,): given values, else the model's."""
    merged = {**spec.defaults(), **values}
    return {k: jnp.broadcast_to(jnp.asarray(v, dtype=float), (n,)) for k, v in merged.items()}


def check_regimen(spec: ModelSpec, reg: Regimen, where: str) -> None:
    for i, ev in enumerate(reg.events):
        if not isinstance(ev, Dose):
            continue
        if ev.route is not None:
            if ev.route not in spec.routes:
                raise DosingError(
                    f"{where}: dose {i} into unknown route '{ev.route}'; routes: "
                    + (", ".join(spec.routes) or f"none ({spec.source} has no [routes] block)")
                )
            targets = list(spec.routes[ev.route])
            if ev.ss and len(targets) > 1 and not spec.is_linear:
                raise DosingError(
                    f"{where}: dose {i} has ss = {ev.ss} into route '{ev.route}' of "
                    f"{len(targets)} states, which needs a linear model (the steady state is "
                    f"summed over the states); '{spec.name}' is nonlinear"
                )
        elif isinstance(ev.cmt, str) and ev.cmt not in spec.states:
            raise DosingError(
                f"{where}: dose {i} into unknown state '{ev.cmt}'; states: {', '.join(spec.states)}"
            )
        elif not isinstance(ev.cmt, str) and not 1 <= ev.cmt <= len(spec.states):
            raise DosingError(
                f"{where}: dose {i} has cmt = {ev.cmt}; the model has states 1..{len(spec.states)}"
            )
        if ev.route is None:
            targets = [ev.cmt if isinstance(ev.cmt, str) else list(spec.states)[ev.cmt - 1]]
        for state in targets:
            rule = spec.dosing.get(state)
            for attr, fld in (("rate", "rate"), ("duration", "duration")):
                if getattr(ev, attr) == "model" and (rule is None or getattr(rule, fld) is None):
                    raise DosingError(
                        f"{where}: dose {i} asks for the modelled {fld} of '{state}', but "
                        f"{spec.source} has no [dosing].{state}.{fld}"
                    )
        if ev.ss == 2 and not spec.is_linear:
            raise DosingError(
                f"{where}: dose {i} has ss = 2 (add steady state to the current state), which "
                f"needs a linear model; '{spec.name}' is nonlinear"
            )


def simulator_for(spec: ModelSpec, times: np.ndarray | None, **kw: Any) -> Simulator:
    """The Simulator of (spec, times, options), built once: kept on the spec (its 8 most
    recently used), so it lives and dies with the spec."""
    key = (
        None if times is None else (times.dtype.str, times.shape, times.tobytes()),
        tuple(sorted(kw.items())),
    )
    cache = memo(spec, "_memo_simulators", 8)
    sim = cache.get(key)
    if sim is None:
        sim = cache[key] = Simulator(spec, times, **kw)
    return sim


def simulate_regimens(
    spec: ModelSpec,
    regimen: Regimen | Sequence[Regimen] | None,
    times: Any,
    params: Mapping[str, Any] | None = None,
    covariates: Mapping[str, Any] | None = None,
    solver: str = "auto",
    rtol: float = 1e-8,
    atol: float = 1e-8,
    *,
    outputs: Sequence[str] | None = None,
    max_steps: int = 100_000,
    on_failure: str = "raise",
) -> xr.Dataset:
    """`cp.simulate` for regimens (its arguments, checked there for traced values and
    `on_failure`): one regimen for every subject or one per subject, at `times`."""
    if times is None:
        raise SpecError("simulate: times is required (output times)")
    times_arr = check_times(times, "simulate")
    if regimen is None:
        regimens: list[Regimen] = [Regimen([])]
    elif isinstance(regimen, Regimen):
        regimens = [regimen]
    elif isinstance(regimen, Sequence) and all(isinstance(r, Regimen) for r in regimen):
        regimens = list(regimen)
        if not regimens:
            raise SpecError("simulate: regimen is an empty list")
    else:
        raise SpecError(
            "simulate: regimen must be a cp.Regimen or a list of them, got "
            f"{type(regimen).__name__}"
        )
    for i, r in enumerate(regimens):
        check_regimen(spec, r, "simulate" if len(regimens) == 1 else f"simulate: regimen {i}")
    n0 = len(regimens) if len(regimens) > 1 else 1
    values, n = batch_inputs(spec, params, covariates, n0)
    if len(regimens) > 1 and n != len(regimens):
        raise SpecError(
            f"simulate: {len(regimens)} regimens but parameters/covariates give {n} subjects"
        )
    solver = resolve_solver(spec, solver)
    outputs = outputs_tuple(outputs)
    kw = dict(outputs=outputs, solver=solver, rtol=rtol, atol=atol, max_steps=max_steps)
    p = full_params(spec, values, n)
    given = None
    if any(d.needs_resolving for r in regimens for d in r.doses):
        regimens, given = _resolve_doses(spec, regimens, p, n)
    if len(regimens) == 1:
        doses = regimens[0].to_arrays(None, spec)
    else:
        doses = stack_dose_arrays(regimens, None, spec)
    sim = simulator_for(spec, times_arr, **kw)
    # only the inputs that differ between subjects go in per subject (the others take the
    # model's values in the compiled program, computed once per chunk: msc_pbk's 10,000
    # subjects 0.89 -> 0.25 s)
    varying = {k: p[k] for k, v in values.items() if np.size(v) > 1}
    given_once = {k: p[k][0] for k, v in values.items() if np.size(v) <= 1}
    out, status = sim.batch({**given_once, **varying} if varying else p, doses)
    ids = np.arange(n)
    res = to_xarray(sim, out, status, ids, times_arr, on_failure)
    res.attrs["jump_times"] = _jump_times_of(spec, doses)
    coords = dose_coords(regimens, times_arr, n, spec.time_unit)
    res = res.assign_coords({k: (("subject", "time"), *v) for k, v in coords.items()})
    if given is None:
        given = amount_given(regimens, n)
    attrs = {"unit": spec.amount_unit, "description": "total amount dosed (before F)"}
    return res.assign_coords(amount_given=("subject", given, attrs))


def amount_given(regimens: Sequence[Regimen], n: int) -> np.ndarray:
    """Each subject's total amount dosed [model amount unit]: AMT summed over its doses (ADDL
    copies included; an SS dose counts once), before any bioavailability or route fraction:
    for a cell product, the cells given, whatever states a route splits them into."""
    given = np.array([sum(d.amount for d in r.doses) for r in regimens], dtype=float)
    return np.broadcast_to(given, (n,)).copy()


def _jump_times_of(spec: ModelSpec, doses: DoseArrays) -> list[float]:
    """Times [time] at which some subject's states jump (a bolus entering, with its lag and
    the state's numeric ``[dosing]`` lag; a reset; a steady-state dose), sorted, union over
    subjects: what `Metric.__call__` reads a result's jumps from. A bolus whose
    ``[dosing]`` lag depends on the parameters is not listed (its time is not known here)."""
    from .dosing import jump_times

    rec, bol = jump_times(doses, model_lags(spec))
    jumps = np.unique(np.concatenate([np.ravel(rec), np.ravel(bol)]))
    return [float(t) for t in jumps[np.isfinite(jumps)]]


def time_after_dose(
    regimen: Regimen, times: Any, events_before: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time after dose, time since the first dose and dose number at output times.

    Parameters
    ----------
    regimen : Regimen
        One subject's events.
    times : array, shape (n_times,)
        Output times [model time unit].
    events_before : int array, shape (n_times,), optional
        How many of the regimen's events (in its order) act before each output, as
        `SubjectData.events_before` (records at equal times in file order). Default: every
        event at or before the output time, so that a dose at exactly an output time counts
        as given (that output reports the amount after the dose).

    Returns
    -------
    tad, tsfd : float arrays, shape (n_times,)
        Time since the record time of the most recent dose, and since the first dose
        [model time unit]; NaN before the first dose.
    dose_number : int array, shape (n_times,)
        Doses given so far (0 before the first).

    Notes
    -----
    Every dose event counts (each ADDL copy, an EVID 4 reset-and-dose; a steady-state
    dose once); resets (EVID 3) are not doses and restart nothing. Times count from the
    dose *record* time, not from the end of its lag or from when an infusion ends, as
    mrgsolve's ``tad`` (mrgsolve PR #992: the record, not the lagged dose, is the dose for
    ``tad``). mrgsolve's ``mrgsim(tad = TRUE)`` gives negative values before the first
    dose (output time minus first dose time) and ``self.tad()`` -1; here they are NaN.
    NONMEM's PREDPP computes no TAD (users derive it in $PK).
    """
    t = np.asarray(times, dtype=float)
    ev_time = np.array([e.time for e in regimen.events], dtype=float)
    is_dose = np.array([isinstance(e, Dose) for e in regimen.events], dtype=bool)
    if events_before is None:
        events_before = np.searchsorted(ev_time, t, side="right")
    # doses among the first k events; the regimen is in time order, so the latest of them
    # is the dose_number-th dose
    count = np.concatenate([[0], np.cumsum(is_dose)]).astype(np.int64)
    dose_number = count[np.asarray(events_before, dtype=np.int64)]
    when = ev_time[is_dose]
    given = dose_number > 0
    tad = np.full(t.shape, np.nan)
    tsfd = np.full(t.shape, np.nan)
    if given.any():
        tad[given] = t[given] - when[dose_number[given] - 1]
        tsfd[given] = t[given] - when[0]
    return tad, tsfd, dose_number


def dose_coords(
    regimens: Sequence[Regimen],
    times: np.ndarray,
    n: int,
    time_unit: str,
    events_before: Sequence[Any] | None = None,
    valid: np.ndarray | None = None,
) -> dict[str, Any]:
    """``tad``, ``tsfd`` and ``dose_number`` coordinates, dims (subject, time or record):
    one regimen per subject, or one shared (its row broadcast, a read-only view). `times`
    (n_times,) or per subject (n, n_records) with `events_before` and `valid` (records
    that are not padding; padding gets NaN and dose_number -1)."""
    per = [
        time_after_dose(
            r,
            times if np.ndim(times) == 1 else times[i],
            None if events_before is None else events_before[i],
        )
        for i, r in enumerate(regimens)
    ]
    tad, tsfd, number = (np.stack([x[j] for x in per]) for j in range(3))
    if valid is not None:
        tad[~valid], tsfd[~valid], number[~valid] = np.nan, np.nan, -1
    if tad.shape[0] != n:
        tad, tsfd, number = (np.broadcast_to(a, (n, a.shape[1])) for a in (tad, tsfd, number))
    unit = {"unit": time_unit}
    return {"tad": (tad, unit), "tsfd": (tsfd, unit), "dose_number": (number, {})}


def _resolve_doses(
    spec: ModelSpec, regimens: list[Regimen], p: Mapping[str, Any], n: int
) -> tuple[list[Regimen], np.ndarray]:
    """Doses with units or per kg in the model's units (one regimen per subject when an
    amount is per kg of body weight), and each subject's total amount dosed."""
    if any(d.per_body_weight(spec) for r in regimens for d in r.doses):
        bw = _body_weight_kg(spec, p, n)
        per_subject = regimens * n if len(regimens) == 1 else regimens
        out = [r.resolve(spec, float(bw[i])) for i, r in enumerate(per_subject)]
    else:
        out = [r.resolve(spec) for r in regimens]
    total = np.array([sum(d.amount for d in r.doses) for r in out], dtype=float)
    return out, np.broadcast_to(total, (n,)).copy()


def body_weight_name(spec: ModelSpec, where: str) -> tuple[str, float]:
    """The model's body-weight input (``body_weight`` or ``WT``, covariate or parameter, e.g.
    from ``[physiology]``) and the factor from its declared unit to kg; `where` begins the
    error messages."""
    from ..spec.units import convert

    for name in ("body_weight", "WT"):
        item = spec.covariates.get(name) or spec.parameters.get(name)
        if item is None:
            continue
        if not item.unit:
            raise DosingError(
                f"{where}: a dose per kg needs the body weight in kg, but {spec.source} "
                f"declares no unit for {name}"
            )
        return name, convert(1.0, item.unit, "kg", f"{where}: {name}")
    raise DosingError(
        f"{where}: a dose per kg of body weight, but {spec.name} has no body weight (a "
        "body_weight or WT covariate or parameter, e.g. [physiology] body_weight); give the "
        "amount per subject instead"
    )


def _body_weight_kg(spec: ModelSpec, p: Mapping[str, Any], n: int) -> np.ndarray:
    """Each subject's body weight [kg] (see `body_weight_name`)."""
    name, factor = body_weight_name(spec, "simulate")
    bw = np.broadcast_to(np.asarray(p[name], dtype=float), (n,)) * factor
    bad = np.flatnonzero(~(np.isfinite(bw) & (bw > 0)))
    if bad.size:
        raise DosingError(
            f"simulate: a dose per kg, but subject {int(bad[0])} has {name} = "
            f"{float(bw[bad[0]]):g} kg; expected > 0"
        )
    return bw


def failure_message(status: np.ndarray, ids: Sequence[Any], limit: int = 5) -> str:
    """One line naming the failed subjects and why."""
    bad = np.flatnonzero(status != SOLVED)
    parts = [
        f"subject {np.asarray(ids[i]).item()}: {STATUS.get(int(status[i]), 'unknown failure')}"
        for i in bad[:limit]
    ]
    more = f" (and {bad.size - limit} more)" if bad.size > limit else ""
    return f"{bad.size} of {len(status)} subjects failed: " + "; ".join(parts) + more


def to_xarray(
    sim: Simulator,
    out: Mapping[str, Any],
    status: Any,
    ids: Sequence[Any],
    times: np.ndarray,
    on_failure: str,
) -> xr.Dataset:
    """Batched outputs -> xarray.Dataset with units; raises or masks failed subjects."""
    spec = sim.spec
    status = np.asarray(status).reshape(-1)
    if np.any(status != SOLVED):
        msg = failure_message(status, ids)
        if on_failure == "raise":
            raise SimulationError(f"{spec.name}: {msg}")
        warnings.warn(f"{spec.name}: {msg}; their values are NaN", RuntimeWarning, stacklevel=3)
    time_dims = ("subject", "time")
    data_vars = {}
    t = np.asarray(times)
    for name in sim.outputs:
        v = np.array(out[name], dtype=float)
        v[status != SOLVED] = np.nan
        odd = ~np.isfinite(v) & (status == SOLVED)[:, None]
        if odd.any():
            # e.g. a ratio that is 0/0 before the first dose: kept, but never silent
            i, k = (int(a[0]) for a in np.nonzero(odd))
            at = t[k] if t.ndim == 1 else t[i, k]
            warnings.warn(
                f"{spec.name}: output '{name}' is NaN or inf at {int(odd.sum())} of {odd.size} "
                f"points of solved subjects (first: subject {np.asarray(ids[i]).item()} at time "
                f"{float(at):g}); check its expression",
                RuntimeWarning,
                stacklevel=3,
            )
        data_vars[name] = xr.Variable(time_dims, v, attrs={"unit": output_unit(spec, name)})
    time_coord = ("time", t, {"unit": spec.time_unit}) if t.ndim == 1 else (time_dims, t)
    return with_units(
        xr.Dataset(
            data_vars,
            coords={"subject": np.asarray(ids), "time": time_coord, "status": ("subject", status)},
            attrs={"model": spec.name, "solver": sim.solver, "time_unit": spec.time_unit},
        )
    )
