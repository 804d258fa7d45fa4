"""The solver: one subject, integrated segment by segment between dosing events.

Events (dose starts after lag, infusion ends, resets, steady-state doses, covariate changes)
split time into segments with a constant input. Two paths share the event logic:

* **exact** (linear models): a `lax.scan` over the merged timeline of events and output
  times; each segment is advanced by ``x <- Phi(h) x + Gamma(h) u`` with
  ``Phi = expm(A h)`` and ``Gamma = int_0^h expm(A s) ds`` taken from one matrix
  exponential of the block matrix ``[[A, I], [0, 0]] h``. When output times are known at
  compile time, the exponentials of the output-to-output gaps are computed once per
  distinct gap and reused; only the (at most 2 per event) gaps next to an event need their
  own exponential.
* **ode** (any model): a `lax.scan` over events; each segment is one diffrax solve (Tsit5
  or Kvaerno5, PID step-size control) that saves the output times falling in it.

Everything here is a pure function of arrays, safe under ``jit``, ``vmap`` and ``grad``.
Failures are returned as a status code per subject (see `STATUS`), never as silent values.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import numpy as np

from .._core.numeric import safe_div
from ..spec.model import AMT
from .compile import Breakpoints, CompiledModel
from .dosing import (
    BOLUS,
    DOSE,
    GIVEN_DURATION,
    GIVEN_RATE,
    MODEL_DURATION,
    MODEL_RATE,
    PAD,
    RESET,
    RESET_DOSE,
    DoseArrays,
    jump_times,
    model_lags,
)

__all__ = [
    "NON_FINITE",
    "NO_STEADY_STATE",
    "SOLVED",
    "SOLVERS",
    "SOLVER_FAILED",
    "SS_SLOTS_FULL",
    "STATUS",
    "STEP_LIMIT",
    "WINDOW_FULL",
    "EngineOptions",
    "TimeVarying",
    "count_distinct_host",
    "count_distinct_lengths",
    "expm_small",
    "host_segment_lengths",
    "solve_subject",
    "squarings_needed",
]

# the solvers a caller may name: "auto" picks "exact" for a linear model, else an ODE solver
# (see `_ode_solver` for the diffrax solver and step controller of each ODE name)
SOLVERS = ("auto", "exact", "tsit5", "kvaerno5")

MAX_SQUARINGS = 40  # expm_small: matrices of norm up to 2**40

#: a subject's solve status (`STATUS` says what each means); the worst (largest) one is kept
SOLVED, STEP_LIMIT, NON_FINITE, NO_STEADY_STATE, WINDOW_FULL, SOLVER_FAILED = 0, 1, 2, 3, 4, 5
SS_SLOTS_FULL = 7
STATUS = {
    SOLVED: "ok",
    STEP_LIMIT: "step limit reached (raise max_steps, or use solver='kvaerno5' for a stiff model)",
    NON_FINITE: "non-finite state (NaN or inf; check parameters and doses, and that the model's "
    "[dosing] gives lag >= 0, bioavailability >= 0 and rate or duration > 0)",
    NO_STEADY_STATE: "steady state not reached (raise ss_max_intervals, or the model accumulates)",
    WINDOW_FULL: "more output times between two events than the output window (raise window)",
    SOLVER_FAILED: "ODE solver failed (e.g. the implicit solver did not converge)",
    SS_SLOTS_FULL: "a steady-state dose has more implied earlier doses acting after its time "
    "(infusions still running, lagged doses not yet given) than the slots for them (raise "
    "ss_overlap in Regimen.to_arrays; see cellpkpd.engine.dosing.SS_MODEL_SLOTS)",
}


@dataclass(frozen=True)
class EngineOptions:
    """Static solver settings (hashable; part of the compiled program)."""

    solver: str = "exact"  # "exact" | "tsit5" | "kvaerno5"
    rtol: float = 1e-8
    atol: float = 1e-8
    max_steps: int = 100_000
    t0: float = 0.0
    window: int | None = None  # ODE path: max output times per segment
    ss_max_intervals: int = 1000
    squarings: int = MAX_SQUARINGS  # exact path: static squaring count of the exponentials
    # exact path: the states to solve for (sorted), when the outputs need only some of the
    # model's uncoupled groups (`CompiledModel.kept_states`) or the doses reach only some
    # states (`CompiledModel.pruned_keep`); the others are returned as 0. None: all states.
    keep: tuple[int, ...] | None = None


class TimeVarying(eqx.Module):
    """Piecewise-constant inputs given per data record (covariates, and parameters that a
    fit's covariate effects make change), under NONMEM's or mrgsolve's conventions.

    Attributes
    ----------
    times : array (R,)
        Record times [model time unit], non-decreasing.
    values : dict str -> array (R,)
        Each input's value on each record.
    dose_record : int array (E,), optional
        The record (index into `times`) of each dose-array entry: a dose's lag,
        bioavailability, rate and duration (``[dosing]``), the steady state of an SS dose
        and the initial amounts of a reset use that record's own values, as NONMEM's PK
        routine computes ALAG, F, R and D with the dose record (ADDL copies with their
        initiating record). Default: the values in force at the event's time.
    output_record : int array (n_out,), optional
        The record of each output time: observation expressions use its values. Default:
        the values in force at the output's time.
    nocb : bool (static)
        True: a record's value holds over the interval that ends at that record, back to
        the previous record (next observation carried backward, NOCB: NONMEM's state-time
        intervals, NONMEM Users Guide VI, III.B.2; mrgsolve's ``mrgsim(nocb = TRUE)``
        default); after the last record its value holds. False: from the record on until
        the next one (last observation carried forward, LOCF); before the first record its
        value holds. The subject's initial amounts use its first record.
    """

    times: Any
    values: dict[str, Any]
    dose_record: Any = None
    output_record: Any = None
    nocb: bool = eqx.field(static=True, default=False)


# ------------------------------------------------------------------------ helpers
def _record_at(tv: TimeVarying, T: Any, point: bool) -> Any:
    """Index of the record whose values hold at time T (``point``), or on the segment that
    starts at T: LOCF, the last record at or before T either way; NOCB, at T the first
    record at or after T, on a segment starting at T the first record after T."""
    side = "left" if point and tv.nocb else "right"
    k = jnp.searchsorted(tv.times, T, side=side) - (0 if tv.nocb else 1)
    return jnp.clip(k, 0, tv.times.shape[0] - 1)


def params_at(
    p: dict[str, Any],
    tv: TimeVarying | None,
    T: Any,
    record: Any = None,
    point: bool = False,
    bp: Breakpoints | None = None,
) -> dict[str, Any]:
    """Inputs in force at time T (``point``) or on the segment that starts at T: the
    time-varying values of `record` (an index into ``tv.times``; where < 0 or None, looked
    up by time under the convention of `tv`), and the flag of each breakpoint of `bp`
    (`CompiledModel.breakpoints`; 0 before its time, 1 from it on)."""
    if tv is None and bp is None:
        return p
    q = dict(p)
    if tv is not None:
        k = _record_at(tv, T, point)
        if record is not None:
            k = jnp.where(record >= 0, record, k)
        for name, v in tv.values.items():
            q[name] = v[k]
    if bp is not None:
        q.update(bp.flags(T))
    return q


_FIRST_RECORD = 0  # initial amounts: the subject's first record (NONMEM's first PK call)


def _dose_records(tv: TimeVarying | None, n_doses: int) -> Any:
    """The record of each dose-array entry (-1: look up by time)."""
    if tv is None or tv.dose_record is None:
        return jnp.full(n_doses, -1, jnp.int32)
    return jnp.asarray(tv.dose_record, jnp.int32)


_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(19))


def _matmul(X: Any, Y: Any) -> Any:
    """Matrix product; written as a broadcast sum for tiny matrices, which XLA
    vectorises across a vmapped batch far better than a batched dot."""
    if X.shape[-1] <= 8:
        return (X[:, :, None] * Y[None, :, :]).sum(1)
    return X @ Y


def expm_small(A: Any, squarings: int = MAX_SQUARINGS) -> Any:
    """Matrix exponential by scaling and squaring of a degree-18 Taylor polynomial.

    The matrix is scaled by 2**-s so that its infinity norm is <= 1 (truncation error
    < 1/19! = 8e-18 relative), the polynomial is evaluated with Paterson-Stockmeyer (7
    products), and squared back s times. Uses no linear solve and no data-dependent
    branches, so it is cheap under vmap and differentiable; about 4x faster than
    `jax.scipy.linalg.expm` for small matrices. Returns NaN when s would exceed
    `squarings` (static; default `MAX_SQUARINGS`, norm <= 2**40): the loop always runs that
    many times (masked), so a caller that knows the largest norm passes fewer.
    """
    n = A.shape[0]
    norm = jnp.max(jnp.sum(jnp.abs(A), axis=1))
    s = jnp.maximum(0.0, jnp.ceil(jnp.log2(jnp.maximum(norm, 1e-300))))
    X = A * jnp.exp2(-s)
    eye = jnp.eye(n, dtype=A.dtype)
    powers = [eye, X, _matmul(X, X)]
    powers.append(_matmul(powers[2], X))
    X4 = _matmul(powers[3], X)

    def block(j: int) -> Any:
        return sum(_TAYLOR[4 * j + i] * powers[i] for i in range(4) if 4 * j + i <= 18)

    R = block(4)
    for j in (3, 2, 1, 0):
        R = block(j) + _matmul(X4, R)
    R = jax.lax.fori_loop(0, squarings, lambda i, R: jnp.where(i < s, _matmul(R, R), R), R)
    return jnp.where(s <= squarings, R, jnp.nan)


def squarings_needed(A: Any, h: Any) -> Any:
    """Squarings `_expm_pair(A, h)` needs: ceil(log2 of the block matrix's norm)."""
    norm = jnp.abs(h) * (jnp.max(jnp.sum(jnp.abs(A), axis=1)) + 1.0)
    return jnp.maximum(0.0, jnp.ceil(jnp.log2(jnp.maximum(norm, 1e-300))))


def _by_blocks(fn: Any, A: Any, blocks: Any) -> Any:
    """fn(A) -> matrices of A's shape (or None), computed block by block for a matrix that
    is block diagonal in the index groups `blocks` (`CompiledModel.blocks`; static) and
    assembled with zeros off the blocks: a matrix function of a block-diagonal matrix is the
    function of each block. n^3 work becomes the sum of the blocks' cubes."""
    if blocks is None or len(blocks) < 2:
        return fn(A)
    n = A.shape[0]
    parts = [fn(A[np.ix_(b, b)]) for b in blocks]
    # each entry of the whole matrix: 1 + its place in the blocks' entries, or 0 (a gather
    # with fixed indices: a scatter is slow on CPU under vmap)
    index, offset = np.zeros((n, n), np.int32), 1
    for b in blocks:
        index[np.ix_(b, b)] = offset + np.arange(len(b) ** 2).reshape(len(b), len(b))
        offset += len(b) ** 2
    out = []
    for k in range(len(parts[0])):
        if parts[0][k] is None:
            out.append(None)
            continue
        flat = [jnp.zeros(1, A.dtype), *(part[k].reshape(-1) for part in parts)]
        out.append(jnp.concatenate(flat)[index])
    return tuple(out)


def _expm_blocks(Ah: Any, squarings: int, blocks: Any) -> tuple[Any, None]:
    """(expm(A h), None), block by block (see `_by_blocks`)."""
    return _by_blocks(lambda M: (expm_small(M, squarings), None), Ah, blocks)


def _expm_pair(
    A: Any, h: Any, squarings: int = MAX_SQUARINGS, blocks: Any = None
) -> tuple[Any, Any]:
    """Phi = expm(A h) and Gamma = int_0^h expm(A s) ds for one scalar h >= 0 (block by
    block when `blocks` splits A, see `_by_blocks`)."""
    if blocks is not None and len(blocks) > 1:
        return _by_blocks(lambda M: _expm_pair(M, h, squarings), A, blocks)
    n = A.shape[0]
    M = jnp.zeros((2 * n, 2 * n), A.dtype)
    M = M.at[:n, :n].set(A * h).at[:n, n:].set(jnp.eye(n, dtype=A.dtype) * h)
    E = expm_small(M, squarings)
    return E[:n, :n], E[:n, n:]


class _Events(eqx.Module):
    """Expanded event points of one subject (P points, unsorted) and its infusions."""

    time: Any  # (P,) time of each point
    order: Any  # (P,) tie-break at equal times: record order, then reset/SS before dose
    valid: Any  # (P,) bool
    reset: Any  # (P,) bool: reset the state to its initial value
    bolus: Any  # (P, n) amounts added
    ss: Any  # (P,) 0/1/2
    dose: Any  # (P,) index of the originating dose record (for steady state)
    inf_start: Any  # (I,) infusion windows (real and steady-state leftovers)
    inf_end: Any
    inf_rate: Any
    inf_cmt: Any
    reset_times: Any  # (R,) times at which running infusions stop (-inf if unused)
    # per dose record, for steady state
    record_time: Any  # (E,) time of the record (its parameters make the steady state)
    amt: Any
    rate: Any
    duration: Any
    ii: Any
    cmt: Any
    dose_ss: Any  # (E,) 0/1/2 per dose record
    lag: Any  # (E,) total lag [time] per dose record
    slots: int = eqx.field(static=True, default=0)  # DoseArrays.ss_overlap
    per_entry: int = eqx.field(static=True, default=1)  # engine slots per dose entry (routes)

    def rate_at(self, T: Any, n: int) -> Any:
        """Input rate vector just after each time in T (shape (Q,) -> (Q, n))."""
        T = jnp.atleast_1d(T)
        last_reset = jnp.max(
            jnp.where(self.reset_times[None, :] <= T[:, None], self.reset_times[None, :], -jnp.inf),
            axis=1,
            initial=-jnp.inf,
        )
        active = (
            (self.inf_start[None, :] <= T[:, None])
            & (T[:, None] < self.inf_end[None, :])
            & (last_reset[:, None] <= self.inf_start[None, :])
        )
        onehot = jax.nn.one_hot(self.inf_cmt, n, dtype=self.inf_rate.dtype)
        return (active * self.inf_rate[None, :]) @ onehot


def _route_factor(cm: CompiledModel, d: DoseArrays) -> int:
    """Engine slots per dose-array entry: the widest route when some dose uses a route."""
    return cm.route_width if d.has_route else 1


def _expand_routes(
    cm: CompiledModel, d: DoseArrays, dv: dict[str, Any]
) -> tuple[DoseArrays, dict[str, Any]]:
    """One engine event per state of each entry's route: entry i becomes entries
    ``i * K + k`` (K = `CompiledModel.route_width`), each a dose into one state whose
    bioavailability is the route's fraction for it (a cmt dose keeps its state and its
    ``[dosing]`` F in slot 0). A given infusion rate is shared out by the fractions (every
    state's infusion lasts as long). Only slot 0 keeps a reset (EVID 3/4); an SS=1 dose
    gives its first state SS=1 and the others SS=2, so the steady state is the sum of the
    states' (exact for linear models, as the steady state is linear in the doses).
    Outputs' ``events_before`` are scaled by K (see `_timeline`)."""
    K = cm.route_width
    E = d.time.shape[0]
    rep = lambda a: jnp.repeat(a, K, axis=0)
    k = jnp.tile(jnp.arange(K, dtype=jnp.int32), E)
    route = rep(d.route)
    is_route = route >= 0
    r = jnp.maximum(route, 0)
    n_r = len(cm.route_names)
    if n_r:
        states = jnp.asarray(cm.route_states)[r, k]
        valid = jnp.asarray(cm.route_valid)[r, k]
        frac = rep(dv["route_F"])[jnp.arange(E * K), r, k]
    else:
        states, valid, frac = jnp.zeros(E * K, jnp.int32), jnp.zeros(E * K, bool), 0.0
    first = k == 0
    live = jnp.where(is_route, valid, first)
    cmt = jnp.where(is_route, states, rep(d.cmt))
    kind = rep(d.kind)
    kind = jnp.where(first, kind, jnp.where(kind == RESET_DOSE, DOSE, kind))
    kind = jnp.where(live, kind, PAD)
    ss = rep(d.ss)
    ss = jnp.where(~first & (ss == 1), 2, ss)
    rate = rep(d.rate) * jnp.where(is_route, frac, 1.0)
    pos = d.ss_positions
    slots = None if pos is None else tuple(i * K + j for i in pos for j in range(K))
    same = ("time", "amount", "duration", "lag", "bioavailability", "ii", "mode")
    out = dataclasses.replace(
        d,
        **{f: rep(getattr(d, f)) for f in same},
        cmt=cmt,
        kind=kind,
        ss=ss,
        rate=rate,
        route=route,
        ss_positions=slots,
    )  # fmt: skip
    dv = {key: rep(v) for key, v in dv.items() if key != "route_F"}
    # a route's fraction takes the place of the state's [dosing] bioavailability
    F_row = jax.nn.one_hot(cmt, cm.n_states, dtype=dv["F"].dtype)
    dv["F"] = jnp.where(is_route[:, None], F_row * jnp.asarray(frac)[..., None], dv["F"])
    return out, dv


class _DoseInputs(NamedTuple):
    """Each dose-array entry's effective input (routes expanded, [dosing] applied)."""

    d: DoseArrays  # the dose arrays, one entry per state of a route dose
    is_dose: Any
    is_reset: Any
    is_inf: Any  # an infusion (zero-order input over `duration`)
    lag: Any  # given + modelled lag [time]
    amt: Any  # amount x bioavailability x F
    start: Any  # entry time: record time + lag
    duration: Any
    rate: Any
    bolus_amt: Any  # a bolus's amount (0 for infusions; NaN for a bad dose)
    dose_ss: Any  # the SS flag of doses (0 otherwise)
    onehot: Any  # (E, n): each entry's compartment


def _dose_inputs(
    cm: CompiledModel,
    p: dict[str, Any],
    tv: TimeVarying | None,
    d: DoseArrays,
    bp: Breakpoints | None,
) -> _DoseInputs:
    """Apply the model's [dosing] (lag, F, rate, duration), evaluated with the values of each
    dose's own record (ADDL copies: the initiating one) and its amount AMT, to every entry;
    [dosing] values out of range make the dose NaN (status NON_FINITE) while its event
    times stay finite, so the timeline is still ordered."""
    at_dose = lambda T, k, a: cm.dosing_vectors(
        {**params_at(p, tv, T, k, point=True, bp=bp), AMT: a}
    )
    dv = jax.vmap(at_dose)(d.time, _dose_records(tv, d.time.shape[0]), d.amount)
    if d.has_route:
        d, dv = _expand_routes(cm, d, dv)
    kind, mode, cmt = d.kind, d.mode, d.cmt
    is_dose = (kind == DOSE) | (kind == RESET_DOSE)
    is_inf = is_dose & (mode != BOLUS)
    take = lambda a: jnp.take_along_axis(a, cmt[:, None], axis=1)[:, 0]
    model_lag, model_f = take(dv["lag"]), take(dv["F"])
    r_model, d_model = take(dv["rate"]), take(dv["duration"])
    amt = d.amount * d.bioavailability * model_f
    # a given rate or duration is > 0; a modelled one <= 0 (or NaN: none in [dosing]) makes
    # the dose `bad` below. Only positive divisors are divided by: `select` differentiates
    # every branch, and amt / NaN in an unselected one would make the gradient NaN
    per = lambda a, x: safe_div(a, jnp.where(x > 0, x, 0.0))
    modes = [mode == GIVEN_DURATION, mode == GIVEN_RATE, mode == MODEL_RATE, mode == MODEL_DURATION]
    duration = jnp.select(modes, [d.duration, per(amt, d.rate), per(amt, r_model), d_model], 0.0)
    rate = jnp.select(modes, [per(amt, d.duration), d.rate, r_model, per(amt, d_model)], 0.0)
    bad = is_dose & (
        ~(model_lag >= 0.0)
        | ~(model_f >= 0.0)
        | ((mode == MODEL_RATE) & ~(r_model > 0.0))
        | ((mode == MODEL_DURATION) & ~(d_model > 0.0))
    )
    lag = d.lag + model_lag
    return _DoseInputs(
        d=d,
        is_dose=is_dose,
        is_reset=(kind == RESET) | (kind == RESET_DOSE),
        is_inf=is_inf,
        lag=lag,
        amt=amt,
        start=jnp.where(bad, d.time + d.lag, d.time + lag),
        duration=jnp.where(is_inf, jnp.where(bad, 1.0, duration), 0.0),
        rate=jnp.where(is_inf, jnp.where(bad, jnp.nan, rate), 0.0),
        bolus_amt=jnp.where(is_dose & ~is_inf, jnp.where(bad, jnp.nan, amt), 0.0),
        dose_ss=jnp.where(is_dose, d.ss, 0),
        onehot=jax.nn.one_hot(cmt, cm.n_states, dtype=amt.dtype),
    )


class _Points:
    """The timeline's event points as they are collected (each a time, its place among the
    events at that time, and what happens there), and the infusions."""

    def __init__(self, n: int, E: int, di: _DoseInputs) -> None:
        self.n, self.E = n, E
        self.cols: dict[str, list[Any]] = {
            k: [] for k in ("time", "order", "valid", "reset", "bolus", "ss", "dose")
        }
        self.inf = {
            "inf_start": [di.start],
            "inf_end": [di.start + di.duration],
            "inf_rate": [di.rate],
            "inf_cmt": [di.d.cmt],
        }

    def add(
        self, t: Any, sub_order: int, v: Any, r: Any = None, b: Any = None, s: Any = None,
        at: Any = None,
    ) -> None:  # fmt: skip
        """Points of the dose entries `at` (default all) at times `t`: `sub_order` places them
        among one entry's points (0 record, 1 entry, 2 infusion end, 3 implied SS dose);
        valid `v`, reset `r`, bolus amounts `b` (k, n), SS flag `s`."""
        k = t.shape[0]
        at = jnp.arange(self.E, dtype=jnp.int32) if at is None else at
        cols = self.cols
        cols["time"].append(t)
        cols["order"].append(at * 4 + sub_order)
        cols["valid"].append(v)
        cols["reset"].append(jnp.zeros(k, bool) if r is None else r)
        cols["bolus"].append(jnp.zeros((k, self.n)) if b is None else b)
        cols["ss"].append(jnp.zeros(k, jnp.int32) if s is None else s)
        cols["dose"].append(at)

    def boundary(self, t: Any) -> None:
        """Points with no action: the integration only stops and restarts there."""
        k = t.shape[0]
        self.add(t, 0, jnp.ones(k, bool), at=jnp.zeros(k, jnp.int32))
        self.cols["order"][-1] = jnp.full(k, 4 * self.E, jnp.int32)

    def infusion(self, start: Any, end: Any, rate: Any, cmt: Any) -> None:
        for k, v in zip(self.inf, (start, end, rate, cmt), strict=True):
            self.inf[k].append(v)

    def columns(self) -> dict[str, Any]:
        return {k: jnp.concatenate(v) for k, v in (self.cols | self.inf).items()}


def _implied_ss_doses(pts: _Points, di: _DoseInputs) -> None:
    """The implied earlier doses k = 1, 2, ... of a steady-state dose (inputs at start - k
    ii) that act after the record time: infusions still running then, and doses whose lag
    puts them after it (lag >= ii); the periodic steady state holds everything else (slots
    only at the positions that hold such a dose in some subject)."""
    d = di.d
    at = (
        jnp.arange(d.max_doses, dtype=jnp.int32)
        if d.ss_positions is None
        else jnp.asarray(d.ss_positions, jnp.int32)
    )
    no = jnp.zeros(at.shape[0], bool)
    t_r, ii_r, start_r, dur_r = d.time[at], d.ii[at], di.start[at], di.duration[at]
    n_bol, n_inf = _ss_pending(ii_r, di.lag[at], dur_r)
    periodic = di.is_dose[at] & (di.dose_ss[at] > 0) & (ii_r > 0)
    for k in range(1, d.ss_overlap + 1 if at.shape[0] else 1):
        s_k = start_r - k * ii_r
        ok_bol = periodic & ~di.is_inf[at] & (k <= n_bol)
        ok_inf = periodic & di.is_inf[at] & (k <= n_inf)
        s_in = jnp.maximum(s_k, t_r)
        bolus = jnp.where(ok_bol, di.bolus_amt[at], 0.0)[:, None] * di.onehot[at]
        none = no.astype(jnp.int32)
        pts.add(jnp.where(ok_bol | ok_inf, s_in, t_r), 3, ok_bol | ok_inf, no, bolus, none, at)
        if d.has_infusion:
            end = jnp.where(ok_inf, s_k + dur_r, t_r)
            pts.add(end, 3, ok_inf, no, None, none, at)
            pts.infusion(
                jnp.where(ok_inf, s_in, t_r), end, jnp.where(ok_inf, di.rate[at], 0.0), d.cmt[at]
            )


def _expand(
    cm: CompiledModel,
    p: dict[str, Any],
    tv: TimeVarying | None,
    d: DoseArrays,
    t0: float,
    t_end: Any,
    bp: Breakpoints | None,
) -> _Events:
    """Every point at which the state may change (dose records, entries after their lag,
    infusion ends, implied steady-state doses, covariate changes and the breakpoints `bp`),
    with what happens there; invalid (padding) points are moved to `t_end`."""
    di = _dose_inputs(cm, p, tv, d, bp)
    d = di.d
    pts = _Points(cm.n_states, d.max_doses, di)
    if d.has_reset or d.has_ss:
        # at the record time: reset (EVID 3/4) or steady state (SS=1/2, which also resets)
        replaces = di.is_reset | (di.dose_ss > 0)
        pts.add(d.time, 0, replaces, di.is_reset, None, di.dose_ss)
    pts.add(di.start, 1, di.is_dose, None, di.bolus_amt[:, None] * di.onehot)
    if d.has_infusion:
        pts.add(di.start + di.duration, 2, di.is_inf)
    if d.has_ss:
        _implied_ss_doses(pts, di)
    if tv is not None:
        pts.boundary(tv.times)  # covariate changes
    if bp is not None:
        pts.boundary(bp.times)  # model breakpoints
    col = pts.columns()
    col["time"] = jnp.maximum(jnp.where(col["valid"], col["time"], t_end), t0)
    reset_times = [jnp.where(di.is_reset, d.time, -jnp.inf)] if d.has_reset else []
    if d.has_ss:
        reset_times.append(jnp.where(di.dose_ss == 1, d.time, -jnp.inf))
    return _Events(
        **col,
        reset_times=jnp.concatenate(reset_times or [jnp.full((1,), -jnp.inf)]),
        record_time=d.time,
        amt=jnp.where(di.is_dose, di.amt, 0.0),
        rate=di.rate,
        duration=di.duration,
        ii=d.ii,
        cmt=d.cmt,
        dose_ss=di.dose_ss,
        lag=di.lag,
        slots=d.ss_overlap,
        per_entry=_route_factor(cm, d),
    )


def _apply_point(
    ev: _Events, j: Any, x: Any, x_init: Any, trough: Any | None, is_point: Any = True
) -> Any:
    """State after point j's action: reset, steady state, then bolus."""
    do = is_point & ev.valid[j]
    x = jnp.where(do & ev.reset[j], x_init, x)
    if trough is not None:
        s = jnp.where(do, ev.ss[j], 0)
        xs = trough[ev.dose[j]]
        x = jnp.where(s == 1, xs, jnp.where(s == 2, x + xs, x))
    return x + jnp.where(do, ev.bolus[j], 0.0)


def _period_inputs(ev: _Events) -> tuple[Any, Any, Any]:
    """Steady-state infusion pattern over one interval: (m, d1, R) per dose with rate
    (m + 1) R on [0, d1) and m R on [d1, ii) (infusions longer than the interval overlap)."""
    ii = jnp.where(ev.ii > 0, ev.ii, 1.0)
    m = jnp.floor(ev.duration / ii)
    d1 = ev.duration - m * ii
    return m, d1, ev.rate


def _ss_pending(ii: Any, lag: Any, duration: Any) -> tuple[Any, Any]:
    """Implied earlier doses k = 1, 2, ... of a steady-state record (inputs at
    ``time + lag - k ii``) that act after the record time: lagged doses not yet given,
    k < lag / ii, and infusions not yet ended, k < (lag + duration) / ii. NONMEM applies
    the lag to every implied dose and computes the steady state for the cycle point
    ``ii - lag`` (help: SS DOSE EVENT RECORD); with lag >= ii some implied doses fall after
    the record."""
    ii = jnp.where(ii > 0, ii, 1.0)
    n_bol = jnp.maximum(jnp.ceil(lag / ii) - 1.0, 0.0)
    n_inf = jnp.maximum(jnp.ceil((lag + duration) / ii) - 1.0, 0.0)
    return n_bol, n_inf


def _constant_ss(ev: _Events) -> Any:
    """Steady-state records with II = 0 (and AMT = 0): the steady state of a constant
    infusion at the record's rate, which stops at the record time (NONMEM's help, SS DOSE
    EVENT RECORD: "Steady-state with constant infusion. The infusion terminates at the
    event time of the SS dose record"; mrgsolve likewise)."""
    return (ev.dose_ss > 0) & ~(ev.ii > 0)


# ------------------------------------------------------------------------ exact path
def _ss_phase(ev: _Events) -> tuple[Any, Any]:
    """Time from the last implied steady-state input at or before the record time to the
    record time (``k0 ii - lag`` with the first implied input k0 not after it; 0 for a
    constant infusion), and a status code per dose record (7 where the implied doses acting
    after the record need more than the static slots)."""
    ii = jnp.where(ev.ii > 0, ev.ii, 1.0)
    n_bol, n_inf = _ss_pending(ev.ii, ev.lag, ev.duration)
    periodic = (ev.dose_ss > 0) & (ev.ii > 0)
    theta = jnp.where(periodic, jnp.clip((n_bol + 1.0) * ii - ev.lag, 0.0, ii), 0.0)
    return theta, jnp.where(periodic & (n_inf > ev.slots), SS_SLOTS_FULL, SOLVED)


def _exact_trough(
    A: Any, b: Any, ev: _Events, n: int, squarings: int = MAX_SQUARINGS, blocks: Any = None
) -> tuple[Any, Any]:
    """Steady-state amounts at each dose record's time (E, n) and a status per record,
    linear models: the periodic state just before an input, (I - Phi(ii))^-1 c, carried
    forward by ii - lag to the record time (the dose itself enters lag later). ``A`` (E, n, n)
    and ``b`` (E, n) are the system at each record's time, as NONMEM takes the steady state
    with the parameters of the SS record. A constant-infusion record (II = 0) gets the
    equilibrium of the constant input, ``A x + b + R e = 0``."""
    m, d1, R = _period_inputs(ev)
    e = jax.nn.one_hot(ev.cmt, n, dtype=A.dtype)
    ii = jnp.where(ev.ii > 0, ev.ii, 1.0)
    bolus = jnp.where(ev.duration > 0, 0.0, ev.amt)
    theta, code = _ss_phase(ev)
    const = _constant_ss(ev)
    # SS=2 adds only the dose's own steady state: no constant input b
    bv = jnp.where((ev.dose_ss == 1)[:, None], b, 0.0)

    def one(A, ii_, d1_, m_, R_, bol, e_, bv, th, is_const):
        eye = jnp.eye(n, dtype=A.dtype)
        # (another matrix where unused, so that no singular solve enters a gradient)
        x_const = jnp.linalg.solve(jnp.where(is_const, A, -eye), -(bv + R_ * e_))
        Phi_ii, _ = _expm_pair(A, ii_, squarings, blocks)
        _, Gam_d1 = _expm_pair(A, d1_, squarings, blocks)
        Phi_r, Gam_r = _expm_pair(A, ii_ - d1_, squarings, blocks)
        u_on, u_off = bv + (m_ + 1.0) * R_ * e_, bv + m_ * R_ * e_
        c = Phi_ii @ (bol * e_) + Phi_r @ (Gam_d1 @ u_on) + Gam_r @ u_off
        y = jnp.linalg.solve(jnp.eye(n, dtype=A.dtype) - Phi_ii, c) + bol * e_
        t1 = jnp.minimum(d1_, th)
        Phi1, Gam1 = _expm_pair(A, t1, squarings, blocks)
        Phi2, Gam2 = _expm_pair(A, th - t1, squarings, blocks)
        return jnp.where(is_const, x_const, Phi2 @ (Phi1 @ y + Gam1 @ u_on) + Gam2 @ u_off)

    xs = jax.vmap(one)(A, ii, d1, m, R, bolus, e, bv, theta, const)
    finite = jnp.all(jnp.isfinite(xs), axis=1)
    code = jnp.where((ev.dose_ss > 0) & ~finite, NO_STEADY_STATE, code)
    return xs, jnp.max(code)


def _output_keys(n_out: int, events_before: Any | None) -> Any:
    """Tie-break keys of the outputs against the event points' ``2 * order`` at equal
    times: after every event (default), or after the points of the first
    ``events_before[k]`` dose-array entries and before the rest."""
    if events_before is None:
        return jnp.full(n_out, jnp.iinfo(jnp.int32).max, jnp.int32)
    return 8 * jnp.asarray(events_before, jnp.int32) - 1


#: `_merge` compares each output with every event point up to this many points (a binary
#: search beyond)
COMPARE_MAX_POINTS = 32


def _count_before(keys: Any, ties: Any, qk: Any, qt: Any) -> Any:
    """For each query (qk, qt), how many of the pairs (keys, ties), sorted by key then tie,
    come strictly before it: a binary search by comparisons and gathers (no sort)."""
    n = keys.shape[0]

    def halve(_: Any, bounds: tuple[Any, Any]) -> tuple[Any, Any]:
        lo, hi = bounds
        mid = (lo + hi) // 2
        m = jnp.minimum(mid, n - 1)
        less = (keys[m] < qk) | ((keys[m] == qk) & (ties[m] < qt))
        return jnp.where((lo < hi) & less, mid + 1, lo), jnp.where((lo < hi) & ~less, mid, hi)

    start = (jnp.zeros(qk.shape, jnp.int32), jnp.full(qk.shape, n, jnp.int32))
    return jax.lax.fori_loop(0, max(int(n).bit_length(), 1), halve, start)[0]


def _merge(ev: _Events, times: Any, events_before: Any | None) -> tuple[Any, Any, Any]:
    """(src, out_pos, perm): event points and output times merged by time, then tie-break
    key (events' ``2 * order``, outputs' odd `_output_keys`: never equal); src (P + n_out,):
    each merged entry's index in ``concatenate([ev.time, times])``, out_pos (n_out,): each
    output's merged position, perm (P,): the event points in time order. The few event
    points are sorted; the outputs, already in order (times non-decreasing, keys
    non-decreasing at equal times), are merged with them by binary searches."""
    if events_before is not None and ev.per_entry > 1:  # route doses: K slots per entry
        events_before = ev.per_entry * jnp.asarray(events_before, jnp.int32)
    P, n_out = ev.time.shape[0], times.shape[0]
    out_key = _output_keys(n_out, events_before)
    ev_key = 2 * jnp.asarray(ev.order, jnp.int32)
    perm = jnp.lexsort((ev_key, ev.time)).astype(jnp.int32)
    # outputs before each event point (in time order), then event points before each output
    c = _count_before(times, out_key, ev.time[perm], ev_key[perm])
    # few points: compare each output with all of them (cheaper than a search on CPU)
    how = "compare_all" if P <= COMPARE_MAX_POINTS else "scan"
    find = lambda a, v: jnp.searchsorted(a, v, side="right", method=how).astype(jnp.int32)
    k = jnp.arange(n_out, dtype=jnp.int32)
    out_pos = k + find(c, k)
    pos = jnp.arange(P, dtype=jnp.int32) + c  # event points' merged positions, increasing
    m = jnp.arange(P + n_out, dtype=jnp.int32)
    e = find(pos, m)  # event points at or before merged position m
    last = jnp.maximum(e - 1, 0)
    is_pt = (e > 0) & (pos[last] == m)
    return jnp.where(is_pt, perm[last], P + m - e), out_pos, perm


def _timeline(
    cm: CompiledModel,
    opts: EngineOptions,
    p: dict[str, Any],
    d: DoseArrays,
    times: Any,
    tv: TimeVarying | None,
    events_before: Any | None,
    bp: Breakpoints | None,
) -> tuple[Any, ...]:
    """Events and output times merged in time order (at equal times events first, or as
    `events_before` says): (events, P, src, T, is_pt, h, prev_T, out_pos), see `_merge`."""
    t0 = opts.t0
    ev = _expand(cm, p, tv, d, t0, times[-1], bp)
    P = ev.time.shape[0]
    src, out_pos, _ = _merge(ev, times, events_before)
    all_t = jnp.concatenate([ev.time, times])
    T = all_t[src]
    prev_T = jnp.concatenate([jnp.asarray([t0], T.dtype), T[:-1]])
    return ev, P, src, T, src < P, T - prev_T, prev_T, out_pos


# Planned exponentials up to which a step of the exact path multiplies by each and selects
SELECT_MAX_PLAN = 2

# Segment lengths within this relative distance share one matrix exponential: merging
# h and h(1 + d) changes exp(-k h) by k h d exp(-k h) <= d / e of the amount, whatever the
# rate k, and it absorbs the rounding of output grids such as numpy.linspace.
SAME_LENGTH_RTOL = 1e-10


#: `_distinct` finds a subject's distinct segment lengths one at a time (a pass over the
#: segments each, cheaper on CPU than a sort for a few) when there are at most this many
#: (a plan this small, or a count that stops beyond it), else by a sort
FEW_LENGTHS = 16


def _distinct(h: Any, region: Any = None, few: int | None = None) -> tuple[Any, Any]:
    """Rank of each segment length among the subject's distinct positive lengths (sorted
    lengths within `SAME_LENGTH_RTOL` of the previous one count as equal) and their number;
    with `region` (int per segment: which system matrix holds there), of the distinct
    (region, length) pairs. A segment of length 0 (an event and an output at one time) needs
    no exponential (it is the identity): its rank is -1 and it is not counted.

    `few`: take the distinct values one at a time, smallest first (`_distinct_passes`),
    stopping after `few` of them (then the number is -1: not counted); None: by a sort."""
    zero = h <= 0
    # every non-positive length is one value (an output before t0 gives a negative one):
    # they take no rank, and the positive ones are ranked from 0
    h = jnp.where(zero, 0.0, h)
    key = jnp.where(zero, -1, 0 if region is None else region)
    if few is not None:
        return _distinct_passes(h, key, zero, few)
    order = jnp.lexsort((h, key))
    ks, kr = h[order], key[order]
    new = (ks[1:] - ks[:-1] > SAME_LENGTH_RTOL * ks[1:]) | (kr[1:] != kr[:-1])
    new = jnp.concatenate([jnp.ones(1, bool), new])
    rank_sorted = jnp.cumsum(new) - 1
    index = jnp.zeros_like(rank_sorted).at[order].set(rank_sorted)
    has_zero = jnp.any(zero).astype(index.dtype)
    return jnp.where(zero, -1, index - has_zero), rank_sorted[-1] + 1 - has_zero


def _distinct_passes(h: Any, key: Any, zero: Any, few: int) -> tuple[Any, Any]:
    """`_distinct` by passes: each takes the smallest (key, length) left, gives its segments
    the current rank and opens a new rank when its key differs from the previous value's or
    its length exceeds it by more than `SAME_LENGTH_RTOL` (the sorted rule, value by value),
    until no segment is left or after `few` values (the number is then -1)."""
    big = jnp.iinfo(jnp.int32).max
    key = key.astype(jnp.int32)
    h = jax.lax.stop_gradient(h)  # ranks only: no derivative through the loop

    def body(c: tuple[Any, ...]) -> tuple[Any, ...]:
        left, index, r, k_prev, h_prev, i = c
        k = jnp.min(jnp.where(left, key, big))
        v = jnp.min(jnp.where(left & (key == k), h, jnp.inf))
        eq = left & (key == k) & (h == v)
        r = r + ((k != k_prev) | (v - h_prev > SAME_LENGTH_RTOL * v)).astype(r.dtype)
        return left & ~eq, jnp.where(eq, r, index), r, k, v, i + 1

    start = (
        jnp.ones(h.shape, bool),
        jnp.zeros(h.shape, jnp.int32),
        jnp.asarray(-1, jnp.int32),
        jnp.asarray(big, jnp.int32),
        jnp.asarray(jnp.inf, h.dtype),
        jnp.asarray(0, jnp.int32),
    )
    go = lambda c: jnp.any(c[0]) & (c[5] < few)
    left, index, r, *_ = jax.lax.while_loop(go, body, start)
    has_zero = jnp.any(zero).astype(index.dtype)
    count = jnp.where(jnp.any(left), -1, r + 1 - has_zero)
    return jnp.where(zero, -1, index - has_zero), count


#: `_slot_values` compares every segment with each slot up to this many slots (a scatter,
#: slow on CPU under vmap, beyond)
COMPARE_MAX_SLOTS = 16


def _slot_values(slot: Any, v: Any, size: int) -> Any:
    """(size,): for each slot, the value `v` of a segment in it (the largest; a slot's
    segments share a length within `SAME_LENGTH_RTOL`, and a region), 0 for an empty slot;
    segments in slot `size` (length 0) are left out."""
    if size > COMPARE_MAX_SLOTS:
        return jnp.zeros(size, v.dtype).at[slot].set(v, mode="drop")
    zero = jnp.zeros((), v.dtype)
    return jnp.stack([jnp.max(jnp.where(slot == k, v, zero)) for k in range(size)])


def _planned(pair: Any, As: Any, h: Any, tab: Any, plan_size: int, region: Any) -> Any:
    """(Phi, Gamma, table): one exponential per distinct positive length per region (`As`
    stacked by region (n_regions, n, n); `region` None: the one system `As[0]` everywhere,
    see `_regions`), at most `plan_size`; the identity (and Gamma 0) in slot `plan_size` for
    the segments of length 0; table: each segment's slot."""
    slot = jnp.where(tab >= 0, tab, plan_size)
    lengths = _slot_values(slot, h, plan_size)
    if region is None:
        Phi, Gam = jax.vmap(pair, (None, 0))(As[0], lengths)
    else:
        Phi, Gam = jax.vmap(pair)(As[_slot_values(slot, region, plan_size)], lengths)
    m = Phi.shape[-1]
    Phi = jnp.concatenate([Phi, jnp.eye(m, dtype=Phi.dtype)[None]])
    if Gam is not None:
        Gam = jnp.concatenate([Gam, jnp.zeros((1, m, m), Gam.dtype)])
    return Phi, Gam, slot


def count_distinct_lengths(
    cm: CompiledModel,
    opts: EngineOptions,
    p: dict[str, Any],
    d: DoseArrays,
    times: Any,
    events_before: Any | None = None,
    few: int | None = None,
) -> tuple[Any, Any]:
    """Number of distinct segment lengths of one subject on the exact path, and the
    squarings its exponentials need; their maxima over a batch size `solve_subject`'s
    ``plan_size`` and ``EngineOptions.squarings``. With `few`, the lengths are counted
    only up to `few` distinct values (cheaper than a sort; see `_distinct`): beyond, the
    number is -1 and the subject must be counted again without `few`."""
    bp = cm.breakpoints(p)
    ev, _, _, _, _, h, prev_T, _ = _timeline(cm, opts, p, d, times, None, events_before, bp)
    # the norm of the propagated states' matrix sets the squarings (a steady state's
    # trough takes the whole matrix)
    (As, _), region = _regions(cm, p, prev_T, bp, None if d.has_ss else opts.keep)
    count = _distinct(h, region, few)[1]
    longest = jnp.max(h)
    if d.has_ss:
        longest = jnp.maximum(longest, jnp.max(jnp.where(ev.dose_ss > 0, ev.ii, 0.0)))
    return count, jnp.max(jax.vmap(squarings_needed, (0, None))(As, longest))


def host_segment_lengths(
    cm: CompiledModel, opts: EngineOptions, d: DoseArrays, times: Any
) -> np.ndarray | None:
    """Each subject's segment lengths on the exact path (rows, n_points + n_out), computed on
    the host with NumPy, when the data alone fix the timeline: bolus doses only (no
    infusion, steady state or reset), no ``[dosing]`` lag but the number 0, no breakpoints.
    Then the timeline is the dose entries at ``time + LAG`` (padding at the last output) and
    the output times, from `t0`, as `_timeline` builds it; its lengths are those
    `count_distinct_lengths` counts, without a compiled program. None otherwise (the
    lengths depend on the parameters, or on events this function does not build).

    `d`: concrete DoseArrays, (max_doses,) or (n, max_doses); `times`: (n_out,) or
    (n, n_out). Rows: 1 when both are shared, else n."""
    if cm.breakpoint_names or d.has_infusion or d.has_ss or d.has_reset:
        return None
    if not np.all(model_lags(cm.spec) == 0.0):
        return None
    kind = np.asarray(d.kind)
    _, entry = jump_times(d)
    entry, tt = np.atleast_2d(entry), np.atleast_2d(np.asarray(times, dtype=float))
    dose = (kind == DOSE) | (kind == RESET_DOSE)
    if not np.all(np.isfinite(np.where(np.atleast_2d(dose), entry, 0.0))):
        return None
    rows = max(entry.shape[0], tt.shape[0])
    entry = np.where(np.atleast_2d(dose), entry, tt[:, -1:])  # padding: at the last output
    points = np.broadcast_to(np.maximum(entry, opts.t0), (rows, entry.shape[1]))
    merged = np.sort(np.concatenate([points, np.broadcast_to(tt, (rows, tt.shape[1]))], 1), 1)
    return np.diff(merged, axis=1, prepend=np.full((rows, 1), opts.t0))


def _opens_new(s: np.ndarray) -> np.ndarray:
    """`_distinct`'s sorted rule in NumPy: for lengths `s` sorted along the last axis,
    whether each after the first exceeds the previous by more than `SAME_LENGTH_RTOL`."""
    return s[..., 1:] - s[..., :-1] > SAME_LENGTH_RTOL * s[..., 1:]


def count_distinct_host(h: np.ndarray) -> np.ndarray:
    """Number of distinct positive lengths in each row of `h` (rows, M), by `_distinct`'s
    rule (sorted lengths within `SAME_LENGTH_RTOL` of the previous one count as equal)."""
    hs = np.sort(np.maximum(h, 0.0), axis=1)  # the non-positive lengths first, as 0
    # a positive length after a 0 opens a value; the first one does when no 0 precedes it
    return np.sum(_opens_new(hs), axis=1) + (hs[:, 0] > 0)


def _regions(
    cm: CompiledModel,
    p: dict[str, Any],
    prev_T: Any,
    bp: Breakpoints | None,
    keep: tuple[int, ...] | None,
) -> tuple[Any, Any]:
    """((A, b) of each region stacked, on the states `keep` (None: all), and the region of
    each segment). Without breakpoints one region, and the region is None (every segment is
    in it); with B breakpoints `bp` (and no time-varying inputs) B + 1: region r holds after
    r of them have passed (their flags switch on in time order), so a segment starting at T
    is in region #{breakpoints <= T}."""
    if bp is None:
        A, b = cm.linear_system(p, keep)
        return (A[None], b[None]), None
    starts = jnp.concatenate([jnp.full(1, -jnp.inf, bp.times.dtype), jnp.sort(bp.times)])
    system = lambda T_: cm.linear_system(params_at(p, None, T_, bp=bp), keep)
    systems = jax.vmap(system)(starts)
    region = jnp.sum(prev_T[:, None] >= bp.times[None, :], axis=1).astype(jnp.int32)
    return systems, region


def _kept(cm: CompiledModel, keep: tuple[int, ...] | None) -> tuple[Any, Any]:
    """(K, blocks): the kept state indices (numpy, or None for all) and `cm.blocks` within
    them, renumbered to positions in K."""
    if keep is None or len(keep) == cm.n_states:
        return None, cm.blocks
    K = np.asarray(keep, np.int64)
    pos = {int(k): i for i, k in enumerate(K)}
    # a block's kept part (all of it, or its states a dose can reach: `pruned_keep`)
    parts = ([pos[int(i)] for i in b if int(i) in pos] for b in cm.blocks)
    blocks = tuple(np.asarray(b, np.int32) for b in parts if b)
    return K, blocks


def _embed(x: Any, K: np.ndarray, n: int) -> Any:
    """x (..., k) on the kept states `K` (sorted) as (..., n), 0 for the others: slices of x
    for the runs of consecutive kept states and zeros between them, concatenated (copies; a
    scatter is slow on CPU under vmap)."""
    pieces, end, i = [], 0, 0
    zeros = lambda m: jnp.zeros((*x.shape[:-1], m), x.dtype)
    while i < len(K):
        j = i
        while j + 1 < len(K) and K[j + 1] == K[j] + 1:
            j += 1
        if K[i] > end:
            pieces.append(zeros(int(K[i]) - end))
        pieces.append(x[..., i : j + 1])
        end, i = int(K[j]) + 1, j + 1
    if end < n:
        pieces.append(zeros(n - end))
    return jnp.concatenate(pieces, axis=-1)


class _Propagators(NamedTuple):
    """How the exact path steps over each segment of the timeline: x -> Phi[tab] x + the
    segment's forcing (Gamma[tab] u, u the segment's constant input)."""

    Phi: Any  # (m, k, k) exponentials of A h (kept states), the identity last when planned
    Gam: Any  # (m, k, k) their input integrals, or None without zero-order input
    tab: Any  # (M,) each segment's slot in Phi / Gam
    b: Any  # (M, n) or (1, n): the model's constant input on each segment
    planned: bool  # Phi from `_planned` (few exponentials: a step may select, not gather)


def _solve_exact(
    cm: CompiledModel,
    opts: EngineOptions,
    p: dict[str, Any],
    d: DoseArrays,
    times: Any,
    tv: TimeVarying | None,
    static_times: np.ndarray | None,
    plan_size: int | None = None,
    events_before: Any | None = None,
) -> tuple[Any, Any]:
    """States at `times` (n_out, n) and a status: the timeline of events and outputs, one
    propagator per segment (`_propagators`), steady-state troughs (`_exact_ss`), then one
    scan that carries the state through the segments (`_propagate`)."""
    n = cm.n_states
    bp = cm.breakpoints(p)
    tl = _timeline(cm, opts, p, d, times, tv, events_before, bp)
    ev, P, src, T, is_pt, _, prev_T, out_pos = tl
    x_init = cm.initial(params_at(p, tv, opts.t0, _FIRST_RECORD, point=True, bp=bp))
    # Without zero-order input (no infusion, no steady state, no constant term in the model)
    # Gamma is never used: exponentiate A h alone, an n x n matrix instead of the 2n x 2n
    # block matrix (8x fewer flops, 4x less memory per exponential)
    input_free = not (d.has_infusion or d.has_ss or cm.has_constant_input)
    # the propagation runs on the kept states K only (uncoupled groups the outputs do not
    # need are left out; see EngineOptions.keep); `sub` restricts a state axis to K
    K, blocks = _kept(cm, opts.keep)
    sub = (lambda v: v) if K is None else (lambda v: v[..., K])
    if input_free:
        pair = lambda A_, h_: _expm_blocks(A_ * h_, opts.squarings, blocks)
    else:
        pair = lambda A_, h_: _expm_pair(A_, h_, opts.squarings, blocks)
    props = _propagators(cm, p, tv, bp, tl, pair, times, static_times, plan_size, opts)
    trough, ss_code = _exact_ss(cm, opts, p, tv, bp, ev) if d.has_ss else (None, SOLVED)
    # everything that does not depend on the running state, vectorised over segments
    j = jnp.clip(src, 0, P - 1)
    act = is_pt & ev.valid[j]
    bolus = sub(jnp.where(act[:, None], ev.bolus[j], 0.0))
    forcing = bolus
    if not input_free:
        u = sub(ev.rate_at(prev_T, n)) + props.b
        forcing = forcing + jnp.einsum("mij,mj->mi", props.Gam[props.tab], u)
    replace = None
    if d.has_reset or d.has_ss:
        replace = (*_replacements(cm, p, tv, bp, d, ev, j, act, T, x_init, trough, sub), bolus)
    # with few planned exponentials (`_planned`: the identity in the last slot), a step
    # multiplies by each and selects (x itself in the identity slot): cheaper on CPU than
    # gathering each subject's matrix
    select = props.planned and plan_size <= SELECT_MAX_PLAN
    xs = _propagate(props, forcing, replace, sub(x_init), select)
    states = xs[out_pos]
    if K is not None:
        states = _embed(states, K, n)
    status = jnp.where(jnp.all(jnp.isfinite(states)), ss_code, jnp.maximum(ss_code, NON_FINITE))
    return states, status


def _propagators(
    cm: CompiledModel,
    p: dict[str, Any],
    tv: TimeVarying | None,
    bp: Breakpoints | None,
    tl: tuple[Any, ...],
    pair: Any,
    times: Any,
    static_times: np.ndarray | None,
    plan_size: int | None,
    opts: EngineOptions,
) -> _Propagators:
    """The propagator of each segment of timeline `tl` on the kept states (``opts.keep``):
    with a plan, one exponential per distinct (region, length) pair (regions lie between
    breakpoints); with output times known when compiling, one per distinct output-to-output
    gap and one per segment next to an event; otherwise one per segment. Time-varying inputs
    (or breakpoints without a plan) change A: one per segment with the segment's own
    parameters."""
    _, P, src, _, is_pt, h, prev_T, _ = tl
    keep = None if _kept(cm, opts.keep)[0] is None else opts.keep
    if tv is None and plan_size is not None:
        (As, bs), region = _regions(cm, p, prev_T, bp, keep)
        # a plan of few lengths: few distinct values (all of them: no limit on the passes)
        few = h.shape[0] + 1 if plan_size <= FEW_LENGTHS else None
        Phi, Gam, tab = _planned(pair, As, h, _distinct(h, region, few)[0], plan_size, region)
        return _Propagators(Phi, Gam, tab, bs if region is None else bs[region], True)
    if tv is not None or bp is not None:
        system = lambda T_: cm.linear_system(params_at(p, tv, T_, bp=bp), keep)
        As, bs = jax.vmap(system)(prev_T)
        Phi, Gam = jax.vmap(pair)(As, h)
        return _Propagators(Phi, Gam, jnp.arange(h.shape[0]), bs, False)
    A, b = cm.linear_system(p, keep)
    if static_times is None:
        Phi, Gam = jax.vmap(pair, (None, 0))(A, h)
        return _Propagators(Phi, Gam, jnp.arange(h.shape[0]), b[None, :], False)
    # distinct output-to-output gaps, once; own exponentials next to events
    gaps = np.diff(np.concatenate([[opts.t0], static_times]))
    order = np.argsort(gaps, kind="stable")
    gs = gaps[order]
    new = np.concatenate([[True], _opens_new(gs)])
    inv = np.empty(gaps.size, np.int64)
    inv[order] = np.cumsum(new) - 1
    uniq = jnp.asarray(gs[new])
    n_out = times.shape[0]
    prev_pt = jnp.concatenate([jnp.zeros(1, bool), is_pt[:-1]])
    irr = is_pt | prev_pt
    irr_pos = jnp.nonzero(irr, size=min(2 * P, n_out + P), fill_value=0)[0]
    Phi_r, Gam_r = jax.vmap(pair, (None, 0))(A, uniq)
    Phi_i, Gam_i = jax.vmap(pair, (None, 0))(A, h[irr_pos])
    Phi = jnp.concatenate([Phi_r, Phi_i])
    Gam = None if Gam_r is None else jnp.concatenate([Gam_r, Gam_i])
    out_k = jnp.clip(src - P, 0, n_out - 1)
    rank = jnp.cumsum(irr) - 1
    tab = jnp.where(irr, uniq.shape[0] + rank, jnp.asarray(inv, jnp.int32)[out_k])
    return _Propagators(Phi, Gam, tab, b[None, :], False)


def _exact_ss(
    cm: CompiledModel,
    opts: EngineOptions,
    p: dict[str, Any],
    tv: TimeVarying | None,
    bp: Breakpoints | None,
    ev: _Events,
) -> tuple[Any, Any]:
    """Steady-state troughs of the dose records (`_exact_trough`), each with the system of
    its own record (its time-varying values and the breakpoints passed by its time)."""
    n = cm.n_states
    E = ev.record_time.shape[0]
    if tv is None and bp is None:
        A, b = cm.linear_system(p)
        As, bs = jnp.broadcast_to(A, (E, n, n)), jnp.broadcast_to(b, (E, n))
    else:
        system = lambda T_, k: cm.linear_system(params_at(p, tv, T_, k, point=True, bp=bp))
        rec = jnp.repeat(_dose_records(tv, E // ev.per_entry), ev.per_entry)
        As, bs = jax.vmap(system)(ev.record_time, rec)
    return _exact_trough(As, bs, ev, n, opts.squarings, cm.blocks)


def _reset_amounts(
    cm: CompiledModel,
    p: dict[str, Any],
    tv: TimeVarying,
    bp: Breakpoints | None,
    d: DoseArrays,
    ev: _Events,
    j: Any,
    T: Any,
) -> Any:
    """The initial amounts a reset at event point j (time T) restores: with the values of
    the point's own dose record (NONMEM's PK routine at the reset record)."""
    rec = _dose_records(tv, d.time.shape[0])[ev.dose[j] // ev.per_entry]
    return cm.initial(params_at(p, tv, T, rec, point=True, bp=bp))


def _replacements(
    cm: CompiledModel,
    p: dict[str, Any],
    tv: TimeVarying | None,
    bp: Breakpoints | None,
    d: DoseArrays,
    ev: _Events,
    j: Any,
    act: Any,
    T: Any,
    x_init: Any,
    trough: Any,
    sub: Any,
) -> tuple[Any, ...]:
    """Per segment end: (reset flag, SS mode, amounts after a reset, steady-state amounts),
    kept states only; a reset's initial amounts take its own record's values."""
    reset = act & ev.reset[j]
    ss = jnp.where(act, ev.ss[j], 0)
    if tv is not None:
        at = lambda j_, T_: _reset_amounts(cm, p, tv, bp, d, ev, j_, T_)
        x_reset = jax.vmap(at)(j, T)
    else:
        x_reset = jnp.broadcast_to(x_init, (T.shape[0], cm.n_states))
    x_ss = trough[ev.dose[j]] if trough is not None else jnp.zeros_like(x_reset)
    return reset, ss, sub(x_reset), sub(x_ss)


def _propagate(
    props: _Propagators, forcing: Any, replace: tuple[Any, ...] | None, x0: Any, select: bool
) -> Any:
    """The state at the end of every segment (M, k): one scan of x -> Phi[tab] x + forcing;
    a reset or steady-state dose (`replace`: flags, SS mode, amounts, bolus) replaces the
    propagated state, with the bolus added after it. `select`: multiply by each of the few
    planned exponentials and select, instead of gathering one."""
    Phi, tab = props.Phi, props.tab

    def step(x: Any, i: Any) -> tuple[Any, Any]:
        k = tab[i]
        if select:
            y = x
            for slot in range(Phi.shape[0] - 1):
                y = jnp.where(k == slot, Phi[slot] @ x, y)
            y = y + forcing[i]
        else:
            y = Phi[k] @ x + forcing[i]
        if replace is not None:
            reset, ss, x_reset, x_ss, bolus = replace
            y0 = y - bolus[i]
            base = jnp.where(ss[i] == 1, x_ss[i], jnp.where(reset[i], x_reset[i], y0))
            base = jnp.where(ss[i] == 2, base + x_ss[i], base)
            y = base + bolus[i]
        return y, y

    return jax.lax.scan(step, x0, jnp.arange(tab.shape[0]))[1]


# ------------------------------------------------------------------------ ODE path
def _diffrax() -> Any:
    """diffrax, imported on first use: the exact path (and `import cellpkpd`) never needs it,
    and it takes ~0.5 s to import."""
    import diffrax

    return diffrax


def _ode_solver(opts: EngineOptions) -> tuple[Any, Any]:
    dfx = _diffrax()
    if opts.solver == "kvaerno5":
        return dfx.Kvaerno5(), dfx.PIDController(
            rtol=opts.rtol, atol=opts.atol, pcoeff=0.3, icoeff=0.4
        )
    return dfx.Tsit5(), dfx.PIDController(rtol=opts.rtol, atol=opts.atol)


def _integrate(
    term: Any,
    solver: Any,
    controller: Any,
    opts: EngineOptions,
    ta: Any,
    tb: Any,
    x: Any,
    args: Any,
    ts: Any = None,
) -> Any:
    """One diffrax solve from `ta` to `tb`, saving at `ts` (if given) and at `tb`; it never
    raises: `_result_code` of the solution says why it stopped."""
    dfx = _diffrax()
    with _ts_checks_without_callbacks():
        return dfx.diffeqsolve(
            term,
            solver,
            ta,
            tb,
            None,
            x,
            args=args,
            saveat=dfx.SaveAt(t1=True) if ts is None else dfx.SaveAt(ts=ts, t1=True),
            stepsize_controller=controller,
            max_steps=opts.max_steps,
            throw=False,
        )


_ts_checks = threading.local()


def _error_if_for_cellpkpd(real: Any) -> Any:
    """``equinox.internal.error_if`` as diffrax calls it, in equinox's 'nan' mode while this
    thread traces a cellpkpd solve (`_ts_checks_without_callbacks`), else `real` unchanged."""

    def error_if(x: Any, pred: Any, msg: str, **kw: Any) -> Any:
        if getattr(_ts_checks, "depth", 0) and "on_error" not in kw:
            kw["on_error"] = "nan"
        return real(x, pred, msg, **kw)

    error_if.cellpkpd_wraps = real  # type: ignore[attr-defined]
    return error_if


def _prevbefore_for_cellpkpd(real: Any) -> Any:
    """``equinox.internal.prevbefore`` as diffrax calls it: unchanged, except that while this
    thread traces a cellpkpd solve (`_ts_checks_without_callbacks`) a chain of calls, each on
    the previous one's result, is computed from the chain's first input by one loop.

    diffrax's integration loop sets its end-of-interval threshold by applying ``prevbefore``
    100 times in Python to t1. Unrolled, that is ~2,500 HLO operations (~22 per
    ``jnp.nextafter`` on CPU), a third of msc_pkpd_host's program before optimisation, and
    ~0.35 s of its XLA compilation (1.92 -> 1.59 s for the batch program, measured in 3
    alternating pairs with ``benchmarks/compile_breakdown.py msc_pkpd_host 1 --log``).
    Here the k-th call of a chain returns ``lax.fori_loop`` over k calls of the real
    function from the chain's first input: the same values (the same operations in the same
    order); the chain's earlier, unused loops are dead code that JAX drops before lowering.
    Only the last link is remembered (the result itself held, so its id is never reused),
    until the outermost context of this thread exits; under JAX's tracer-leak checks
    (``jax.checking_leaks``) nothing is remembered (the real function runs)."""

    def step(_: Any, v: Any) -> Any:  # (one function: JAX traces the loop's body once)
        return real(v)

    def prevbefore(x: Any) -> Any:
        if not getattr(_ts_checks, "depth", 0) or jax.config.jax_check_tracer_leaks:
            return real(x)
        last = getattr(_ts_checks, "chain", None)
        x0, k = (last[1], last[2] + 1) if last is not None and last[0] is x else (x, 1)
        y = real(x0) if k == 1 else jax.lax.fori_loop(0, k, step, x0)
        _ts_checks.chain = (y, x0, k)
        return y

    prevbefore.cellpkpd_wraps = real  # type: ignore[attr-defined]
    return prevbefore


@contextlib.contextmanager
def _ts_checks_without_callbacks() -> Iterator[None]:
    """While diffrax traces a solve in this thread: its run-time checks of the save times
    (increasing, within [t0, t1]) give NaN where they fail instead of raising from a host
    callback.

    diffrax checks `SaveAt(ts=...)` with ``equinox.internal.error_if``, which in equinox's
    default mode raises from a host callback; a program with a host callback is neither kept
    in JAX's persistent compilation cache nor exportable (`cellpkpd._core.programs`), so
    without this every process compiled the ODE path's programs anew. Here the save times
    are output times (checked sorted at the edge, `check_times`) clipped to the segment, so
    the checks cannot fail; were they to, the outputs would be NaN (a non-finite status).
    ``equinox.internal.error_if`` is wrapped once (`_error_if_for_cellpkpd`) and the wrapper
    changes the mode only in a thread inside this context, so other code and other threads
    keep theirs (equinox keys its traces by the mode). When equinox has no such function,
    nothing is changed (the programs then keep their callbacks).

    ``equinox.internal.prevbefore`` is wrapped the same way (`_prevbefore_for_cellpkpd`:
    diffrax's chain of 100 calls becomes one loop inside this context).
    """
    for name, wrap in (
        ("error_if", _error_if_for_cellpkpd),
        ("prevbefore", _prevbefore_for_cellpkpd),
    ):
        real = getattr(eqxi, name, None)
        if real is not None and not hasattr(real, "cellpkpd_wraps"):
            setattr(eqxi, name, wrap(real))  # once per process; active only in this context
    _ts_checks.depth = getattr(_ts_checks, "depth", 0) + 1
    try:
        yield
    finally:
        _ts_checks.depth -= 1
        if not _ts_checks.depth:
            _ts_checks.chain = None


def _result_code(sol: Any) -> Any:
    dfx = _diffrax()
    return jnp.where(
        sol.result == dfx.RESULTS.successful,
        SOLVED,
        jnp.where(sol.result == dfx.RESULTS.max_steps_reached, STEP_LIMIT, SOLVER_FAILED),
    )


class _Ode(NamedTuple):
    """The ODE path's solver for one model: the diffrax term (the model's right-hand side
    plus a constant input, both passed as arguments), the solver and its step controller."""

    cm: CompiledModel
    opts: EngineOptions
    term: Any
    solver: Any
    controller: Any

    def solve(self, q: Any, u: Any, x: Any, ta: Any, tb: Any, ts: Any = None) -> Any:
        """One solve from `ta` to `tb` with parameters `q` and constant input `u`, saving at
        `ts` (if given) and at `tb`."""
        return _integrate(self.term, self.solver, self.controller, self.opts, ta, tb, x, (q, u), ts)


def _ode(cm: CompiledModel, opts: EngineOptions) -> _Ode:
    solver, controller = _ode_solver(opts)
    term = _diffrax().ODETerm(lambda t, y, args: cm.rhs(t, y, args[0]) + args[1])
    return _Ode(cm, opts, term, solver, controller)


def _ode_points(ev: _Events, times: Any, events_before: Any | None) -> tuple[Any, Any, Any]:
    """(order, T, seg): the event points in time order and their times, and the segment of
    each output (the number of event points before it in the merged order)."""
    _, out_pos, order = _merge(ev, times, events_before)
    return order, ev.time[order], out_pos - jnp.arange(times.shape[0], dtype=jnp.int32)


#: `_ode_segment`: a segment of length 0 is solved over this span relative to its time (at
#: least 1 time unit) and its result discarded (the state is carried unchanged)
ZERO_SPAN = 2.0**-40


def _ode_segment(
    ode: _Ode,
    p: dict[str, Any],
    tv: TimeVarying | None,
    bp: Breakpoints | None,
    ev: _Events,
    times: Any,
    seg: Any,
    x: Any,
    ta: Any,
    tb: Any,
    i: Any,
) -> tuple[Any, ...]:
    """Integrate from `ta` to event point i at `tb` (i = P: to the end), saving the outputs
    that fall between point i - 1 and point i (at most ``opts.window`` of them): (state at
    tb, states at the window's times, their output indices, which of them are outputs of
    this segment, status code)."""
    cm, n_out = ode.cm, times.shape[0]
    W = n_out if ode.opts.window is None else min(int(ode.opts.window), n_out)
    q = params_at(p, tv, ta, bp=bp)
    u = ev.rate_at(ta, cm.n_states)[0]
    k0 = jnp.searchsorted(seg, i, side="left")
    k1 = jnp.searchsorted(seg, i, side="right")
    start = jnp.clip(k0, 0, n_out - W)
    # A segment of length 0 (events at one time, padding at the end) beside a subject that
    # integrates (under vmap) is solved over a span of ZERO_SPAN relative and its result
    # replaced by x itself. Given to diffrax as t0 == t1 there, its save loop would walk
    # all W output times again at every step of the other subject (diffrax's inner loop
    # does not check that the outer one has finished): 26 mixed msc_pkpd_host regimens
    # with 673 outputs took 26 s instead of 0.6 s. When every subject's segment has length
    # 0, diffrax skips the loop (t0 == t1 as is)
    zero = tb <= ta
    run = zero & ~eqxi.unvmap_all(zero)
    tb_run = jnp.where(run, ta + jnp.maximum(jnp.abs(ta), 1.0) * ZERO_SPAN, tb)
    ts = jnp.clip(jax.lax.dynamic_slice(times, (start,), (W,)), ta, tb_run)
    sol = ode.solve(q, u, x, ta, tb_run, ts)
    idx = start + jnp.arange(W)
    mask = (idx >= k0) & (idx < k1)
    code = _result_code(sol)
    # a NaN/inf derivative makes diffrax reject steps until max_steps: say why
    finite = jnp.all(jnp.isfinite(cm.rhs(ta, x, q) + u))
    code = jnp.where(finite, code, NON_FINITE)
    code = jnp.where((code == SOLVED) & (k1 - k0 > W), WINDOW_FULL, code)
    x_end = jnp.where(zero, x, sol.ys[-1])
    return x_end, jnp.where(zero, x[None, :], sol.ys[:-1]), idx, mask, code


def _solve_ode(
    cm: CompiledModel,
    opts: EngineOptions,
    p: dict[str, Any],
    d: DoseArrays,
    times: Any,
    tv: TimeVarying | None,
    events_before: Any | None = None,
) -> tuple[Any, Any]:
    """States at `times` (n_out, n) and a status: steady-state troughs (`_ode_trough`), then
    one scan over the event points in time order, each step one diffrax solve to the next
    point (`_ode_segment`) followed by the point's action (`_apply_point`)."""
    bp = cm.breakpoints(p)
    ode = _ode(cm, opts)
    ev = _expand(cm, p, tv, d, opts.t0, times[-1], bp)
    order, T, seg = _ode_points(ev, times, events_before)
    P = T.shape[0]
    trough = None
    if d.has_ss:
        trough, ss_code = _ode_trough(ode, p, tv, bp, ev)
    x_init = cm.initial(params_at(p, tv, opts.t0, _FIRST_RECORD, point=True, bp=bp))
    # one diffrax solve in the program: the scan's last step (i = P) integrates from the
    # last event point to the end and applies no point (tracing a second solve for the tail
    # would double the compile time of every ODE program)
    t_end = jnp.maximum(times[-1], T[-1])
    T_end = jnp.concatenate([T, jnp.reshape(t_end, (1,)).astype(T.dtype)])

    def step(carry, i):
        x, ta, buf, status = carry
        tb = T_end[i]
        x, ys, idx, mask, code = _ode_segment(ode, p, tv, bp, ev, times, seg, x, ta, tb, i)
        buf = buf.at[idx].set(jnp.where(mask[:, None], ys, buf[idx]))
        j = order[jnp.minimum(i, P - 1)]
        # a reset's initial amounts with its own record's values
        xi = x_init if tv is None else _reset_amounts(cm, p, tv, bp, d, ev, j, tb)
        x = _apply_point(ev, j, x, xi, trough, is_point=i < P)
        status = jnp.where(status == SOLVED, code, status)
        return (x, tb, buf, status), None

    buf0 = jnp.zeros((times.shape[0], cm.n_states), x_init.dtype)
    init = (x_init, jnp.asarray(opts.t0, x_init.dtype), buf0, jnp.asarray(0))
    (_, _, buf, status), _ = jax.lax.scan(step, init, jnp.arange(P + 1))
    if trough is not None:
        status = jnp.where(status == SOLVED, ss_code, status)
    status = jnp.where((status == SOLVED) & ~jnp.all(jnp.isfinite(buf)), NON_FINITE, status)
    return buf, status


#: ODE path: most doubling intervals (1, 2, ..., 2**63 time units) for the steady state of a
#: constant infusion; one that still changes then is reported as not reached (status 3).
CONST_SS_INTERVALS = 64


def _ode_trough(
    ode: _Ode, p: dict[str, Any], tv: TimeVarying | None, bp: Breakpoints | None, ev: _Events
) -> tuple[Any, Any]:
    """Steady-state amounts at each dose record's time (E, n) and a status: the dosing
    interval is repeated, with the parameters and covariates in force at the record's time,
    until the pre-input state stops changing (rtol/atol of the solver), then carried forward
    by ii - lag (`_ode_ss_record`). SS=2 (linear models only) leaves out the constant input
    so that only the dose's own steady state is added. A constant-infusion record (II = 0)
    runs the constant input over intervals of doubling length (1, 2, 4, ... time units, at
    most `CONST_SS_INTERVALS` of them) until the state stops changing over one interval.
    Gradients flow through the iterations (checkpointed loop)."""
    m, d1, R = _period_inputs(ev)
    e = jax.nn.one_hot(ev.cmt, ode.cm.n_states)
    const = _constant_ss(ev)
    ii = jnp.where(ev.ii > 0, ev.ii, 1.0)
    d1 = jnp.where(const, jnp.inf, d1)  # the whole interval at the constant rate
    bolus = jnp.where(ev.duration > 0, 0.0, ev.amt)
    theta, phase_code = _ss_phase(ev)
    rec = jnp.repeat(_dose_records(tv, ev.record_time.shape[0] // ev.per_entry), ev.per_entry)
    one = lambda *record: _ode_ss_record(ode, p, tv, bp, *record)
    xs, codes = jax.vmap(one)(ev.record_time, rec, ii, d1, m, R, bolus, e, ev.dose_ss, theta, const)
    return xs, jnp.maximum(jnp.max(codes), jnp.max(phase_code))


def _ss_interval(
    ode: _Ode, q: Any, x: Any, t_end: Any, t1: Any, bolus: Any, u_on: Any, u_off: Any
) -> tuple[Any, Any]:
    """One dosing interval of length `t_end` from state `x`: the bolus, input `u_on` until
    `t1`, `u_off` after; the two phases are steps of a scan, so that the program traces one
    solve. Returns (state at t_end, worst status code)."""

    def phase(x, k):
        on = k == 0
        ta, tb = jnp.where(on, 0.0, t1), jnp.where(on, t1, t_end)
        sol = ode.solve(q, jnp.where(on, u_on, u_off), x, ta, tb)
        return sol.ys[-1], _result_code(sol)

    x, codes = jax.lax.scan(phase, x + bolus, jnp.arange(2))
    return x, jnp.max(codes)


def _ode_ss_record(
    ode: _Ode,
    p: dict[str, Any],
    tv: TimeVarying | None,
    bp: Breakpoints | None,
    *record: Any,
) -> tuple[Any, Any]:
    """The steady state of one dose record (see `_ode_trough`) and its status; `record` is
    (time, record index, ii, d1, m, R, bolus, one-hot compartment, SS flag, phase to the
    record time, constant infusion) from `_period_inputs`, `_ss_phase` and `_constant_ss`."""
    rt, rec, ii_, d1_, m_, R_, bol, e_, ss, th, c = record
    cm, opts = ode.cm, ode.opts
    # parameters, covariates (of the SS dose's own record), breakpoint flags at it
    q = params_at(p, tv, rt, rec, point=True, bp=bp)
    x_init = cm.initial(q)
    zero = jnp.zeros(cm.n_states, x_init.dtype)
    b0 = cm.rhs(0.0, zero, q)  # the constant input of a linear model
    u_off = jnp.where(ss == 2, b0, 0.0)
    u_on_rate, u_off_rate = (m_ + 1.0) * R_ * e_ - u_off, m_ * R_ * e_ - u_off
    run = lambda x, t_end: _ss_interval(
        ode, q, x, t_end, jnp.minimum(d1_, t_end), bol * e_, u_on_rate, u_off_rate
    )
    n_const = min(CONST_SS_INTERVALS, opts.ss_max_intervals)
    max_k = jnp.where(c, n_const, opts.ss_max_intervals)

    def length(k):
        """The k-th interval: ii, or 2**k time units for a constant infusion."""
        return jnp.where(c, jnp.exp2(jnp.minimum(k, CONST_SS_INTERVALS)), ii_)

    def moving(x, x_prev):
        tol = opts.atol + opts.rtol * jnp.abs(x)
        return jnp.any(jnp.abs(x - x_prev) > tol)

    def body(carry):
        """Before convergence: run the next interval. At convergence (no more change, the
        interval limit, or a failed solve): run the final part, to th, into y, and stop.
        One loop, so that `run` is traced once."""
        x, x_prev, k, code, _, y = carry
        changing = moving(x, x_prev)
        conv = (k >= 1) & ((ss <= 0) | ~changing | (k >= max_k) | (code != SOLVED))
        x_new, c_new = run(x, jnp.where(conv, th, length(k)))
        not_done = (ss > 0) & (code == SOLVED) & changing
        final = jnp.where(not_done, NO_STEADY_STATE, jnp.maximum(code, c_new))
        return (
            jnp.where(conv, x, x_new),
            jnp.where(conv, x_prev, x),
            jnp.where(conv, k, k + 1),
            jnp.where(conv, final, c_new).astype(jnp.int32),
            conv,
            jnp.where(conv, x_new, y),
        )

    x0 = jnp.where(ss == 2, zero, x_init)
    zero_code = jnp.zeros((), jnp.int32)
    init = (x0, x0, zero_code, zero_code, jnp.asarray(False), x0)
    # checkpointed loop: reverse-mode differentiable, like diffrax's own step loop
    *_, code, _, y = eqxi.while_loop(
        lambda carry: ~carry[4], body, init, max_steps=opts.ss_max_intervals + 2,
        kind="checkpointed",
    )  # fmt: skip
    return y, jnp.where(ss > 0, code, SOLVED)


# ------------------------------------------------------------------------ entry point
def solve_subject(
    cm: CompiledModel,
    opts: EngineOptions,
    p: dict[str, Any],
    doses: DoseArrays,
    times: Any,
    tv: TimeVarying | None = None,
    static_times: np.ndarray | None = None,
    plan_size: int | None = None,
    events_before: Any | None = None,
) -> tuple[Any, Any]:
    """Amounts of every state at `times` for one subject.

    Parameters
    ----------
    cm : CompiledModel
    opts : EngineOptions
    p : dict
        Parameter and covariate values (scalars).
    doses : DoseArrays
        One subject's padded events.
    times : array, shape (n_out,)
        Output times [model time unit], non-decreasing, >= ``opts.t0``.
    tv : TimeVarying, optional
        Inputs given per record (`TimeVarying`: NOCB or LOCF, and the record of each dose
        and output).
    static_times : numpy array, optional
        The same output times as a concrete array, when known at compile time (lets the
        exact path reuse the exponentials of repeated gaps).
    plan_size : int, optional
        Exact path: an upper bound on the number of distinct segment lengths (from
        `count_distinct_lengths`, known when doses are concrete); then each distinct
        length gets one matrix exponential. A too-small bound gives wrong results, so it
        is only set by `Simulator.batch`, which computes it.
    events_before : int array, shape (n_out,), optional
        Where each output stands among events at its own time, as NONMEM reads records in
        file order: the output reports the state after the events of the first
        ``events_before[k]`` entries of `doses` (in their order) and before the others.
        Non-decreasing where times are equal. Default: after every event at its time.

    Returns
    -------
    states : array, shape (n_out, n_states)
    status : int array, shape ()
        0 when the solve succeeded; otherwise a key of `STATUS`.
    """
    if opts.solver == "exact":
        return _solve_exact(cm, opts, p, doses, times, tv, static_times, plan_size, events_before)
    return _solve_ode(cm, opts, p, doses, times, tv, events_before)
