"""Compile a `ModelSpec` into pure JAX functions of (time, state vector, parameter dict).

Parameters and covariates travel as one dict ``name -> scalar``; states as a vector in
``spec.states`` order. For linear models the system matrix ``A(p)`` and constant input
``b(p)`` (``dx/dt = A x + b + infusions``) are obtained by differentiating the right-hand
side at ``x = 0``, which is exact for affine systems, so the ODE and exact paths share one
definition of the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..spec.model import ModelSpec

__all__ = ["Breakpoints", "CompiledModel", "states_read"]


class Breakpoints(eqx.Module):
    """A model's breakpoints for one subject (`CompiledModel.breakpoints`): a breakpoint is a
    flag that model expressions read by its name, 0 before its time and 1 from it on.

    Attributes
    ----------
    times : array, shape (n_breakpoints,)
        When each flag switches on [time].
    names : tuple of str
        The flags' names, in the order of `times` (static).
    """

    times: Any
    names: tuple[str, ...] = eqx.field(static=True)

    def flags(self, T: Any) -> dict[str, Any]:
        """Name -> flag (1.0 from its time on, else 0.0) at time `T` [time]."""
        return {n: jnp.where(T >= self.times[i], 1.0, 0.0) for i, n in enumerate(self.names)}


class CompiledModel:
    """JAX functions of one model. Pure; safe under jit, vmap and grad.

    Parameters
    ----------
    spec : ModelSpec
    """

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.state_names = tuple(spec.states)
        self.n_states = len(self.state_names)
        self.input_names = tuple(spec.parameters) + tuple(spec.covariates)
        self.is_linear = spec.is_linear
        idx = {s: i for i, s in enumerate(self.state_names)}
        self._flows = [
            (idx[f.source], None if f.target is None else idx[f.target], f.rate) for f in spec.flows
        ]
        self._odes = [(idx[s], e) for s, e in spec.odes.items()]
        #: dx/dt may have a term without a state factor (b != 0 in dx/dt = A x + b): only
        #: [odes] terms can add one (a flow's flux is its rate times the source amount)
        self.has_constant_input = bool(self._odes)
        self.breakpoint_names = tuple(spec.breakpoints)
        self.blocks = _state_blocks(spec, idx)
        # which states can make which others nonzero (flows and [odes] dependencies), and
        # the states that are nonzero without any dose: a nonzero or parameter-dependent
        # initial value, or an [odes] right-hand side that may hold a constant term
        self._feeds = _state_feeds(spec, idx)
        self._fed_by = tuple(
            frozenset(j for j, f in enumerate(self._feeds) if i in f) for i in range(len(idx))
        )
        with jax.ensure_compile_time_eval():  # (a constant, even inside a caller's jit)
            self._self_sources = frozenset(
                i
                for i, st in enumerate(spec.states.values())
                if not (st.initial.is_constant and float(st.initial({})) == 0.0)
            ) | frozenset(idx[s] for s in spec.odes)
        self._derived_cache: dict[frozenset[str], tuple[str, ...]] = {}
        self._dose_time = spec.dose_time_derived
        # the names the right-hand side reads (so its environment computes only those
        # derived quantities, not those only observations use)
        self._rhs_names = frozenset().union(
            *(f.rate.names for f in spec.flows), *(e.names for e in spec.odes.values())
        )
        # entries of A for a model of flows alone: flow f takes rate_f out of its source
        # (A[src, src] -= rate_f) into its target (A[dst, src] += rate_f); a loss has no
        # target. (row, col) -> [(sign, flow), ...] in flow order (see `linear_system`)
        self._entries: dict[tuple[int, int], list[tuple[float, int]]] = {}
        for f, (src, dst, _) in enumerate(self._flows):
            self._entries.setdefault((src, src), []).append((-1.0, f))
            if dst is not None:
                self._entries.setdefault((dst, src), []).append((1.0, f))
        self._placements: dict[tuple[int, ...], tuple[Any, np.ndarray]] = {}
        # [routes]: route r puts its fraction route_F[r, k] (see `dosing_vectors`) of a dose
        # into state route_states[r, k]; rows padded with state 0 to the widest route (valid:
        # route_valid[r, k])
        routes = getattr(spec, "routes", {})
        self.route_names = tuple(routes)
        self.route_width = max((len(fr) for fr in routes.values()), default=1)
        self.route_states = np.zeros((len(routes), self.route_width), np.int32)
        self.route_valid = np.zeros((len(routes), self.route_width), bool)
        for r, fr in enumerate(routes.values()):
            for k, s in enumerate(fr):
                self.route_states[r, k] = idx[s]
                self.route_valid[r, k] = True

    def kept_states(self, outputs: Any) -> tuple[int, ...] | None:
        """The state indices to solve for when only `outputs` are wanted: the states they
        read and every state that can change those (upstream along flows and [odes]
        dependencies, see `reachable` for downstream); None when that is all states. The
        kept states' equations read only kept states, so they are solved exactly on their
        own (e.g. msc_pbk's viable cells without the dead-cell states only the outputs
        of other organs read)."""
        read = {self.state_names.index(s) for s in states_read(self.spec, outputs)}
        seen = set(read) or {int(i) for i in self.blocks[0]}
        todo = list(seen)
        while todo:
            for j in self._fed_by[todo.pop()]:
                if j not in seen:
                    seen.add(j)
                    todo.append(j)
        return None if len(seen) == self.n_states else tuple(sorted(seen))

    def reachable(self, dosed: Any) -> frozenset[int]:
        """The states that can ever be nonzero when doses go only into the states `dosed`
        (indices): those reached along flows and [odes] dependencies from the dosed states
        and from the states that are nonzero on their own (a nonzero initial value, an
        [odes] equation). Every other state stays at its initial value 0."""
        seen = set(self._self_sources) | {int(i) for i in dosed}
        todo = list(seen)
        while todo:
            for j in self._feeds[todo.pop()]:
                if j not in seen:
                    seen.add(j)
                    todo.append(j)
        return frozenset(seen)

    def pruned_keep(self, keep: tuple[int, ...] | None, dosed: Any) -> tuple[int, ...] | None:
        """`keep` (see `kept_states`; None = all states) less the states no dose into
        `dosed` can reach (`reachable`): they stay 0, so the exact path need not propagate
        them. At least one state is kept."""
        base = range(self.n_states) if keep is None else keep
        reach = self.reachable(dosed)
        out = tuple(i for i in base if i in reach) or tuple(base)[:1]
        return None if len(out) == self.n_states else out

    def breakpoints(self, p: Mapping[str, Any]) -> Breakpoints | None:
        """The model's breakpoints for parameters `p` (None when it has none): their times
        [time], each the value of its ``[breakpoints]`` expression, and their names."""
        if not self.breakpoint_names:
            return None
        times = jnp.stack(
            [
                jnp.broadcast_to(jnp.asarray(e(p), dtype=float), ())
                for e in self.spec.breakpoints.values()
            ]
        )
        return Breakpoints(times, self.breakpoint_names)

    # -------------------------------------------------------------- environment
    def env(self, t: Any, x: Any, p: Mapping[str, Any], names: Any = None) -> dict[str, Any]:
        """Names -> values: parameters, covariates, states, derived quantities, ``t``. With
        `names`, only the derived quantities those names read (directly or through other
        derived quantities) are computed: a smaller traced program."""
        env = dict(p)
        env["t"] = t
        for i, s in enumerate(self.state_names):
            env[s] = x[i]
        for name in self._derived_for(names):
            env[name] = self.spec.derived[name](env)
        return env

    def _derived_for(self, names: Any) -> tuple[str, ...]:
        """The derived quantities `names` read, in the model's (topological) order; all of
        them for None."""
        if names is None:  # (those that read a dose's AMT exist only at dose records)
            return tuple(d for d in self.spec.derived if d not in self._dose_time)
        key = frozenset(names)
        if key not in self._derived_cache:
            seen = names_read(self.spec, key)
            self._derived_cache[key] = tuple(d for d in self.spec.derived if d in seen)
        return self._derived_cache[key]

    def rhs(self, t: Any, x: Any, p: Mapping[str, Any]) -> Any:
        """d(state)/dt [amount/time], shape (n_states,)."""
        env = self.env(t, x, p, self._rhs_names)
        terms = [jnp.zeros((), dtype=x.dtype) for _ in range(self.n_states)]
        for src, dst, rate in self._flows:
            flux = rate(env) * x[src]
            terms[src] = terms[src] - flux
            if dst is not None:
                terms[dst] = terms[dst] + flux
        for i, e in self._odes:
            terms[i] = terms[i] + e(env)
        return jnp.stack([jnp.broadcast_to(v, ()) for v in terms]).astype(x.dtype)

    def linear_system(
        self, p: Mapping[str, Any], keep: tuple[int, ...] | None = None
    ) -> tuple[Any, Any]:
        """(A, b) with dx/dt = A x + b; exact for linear (affine, autonomous) models.

        With `keep` (sorted state indices, see `kept_states`), the rows and columns of those
        states only: (A[K, K], b[K]). A model of flows alone is assembled directly from the
        flow rates: each nonzero entry is the signed sum of its flows' rates, placed by a
        gather with fixed indices (no scatter, which is slow on CPU under vmap, and a much
        smaller program than differentiating the right-hand side); with [odes] terms, A is
        the Jacobian of the right-hand side at x = 0 and b its value there."""
        n = self.n_states
        x0 = jnp.zeros(n)
        K = np.arange(n) if keep is None else np.asarray(keep, np.int64)
        if not self._odes:
            env = self.env(0.0, x0, p, self._rhs_names)
            rates = [jnp.broadcast_to(jnp.asarray(r(env), x0.dtype), ()) for *_, r in self._flows]
            entries, index = self._placement(tuple(K.tolist()))
            vals = [jnp.zeros((), x0.dtype)]
            vals += [sum(sg * rates[f] for sg, f in e) for e in entries]
            A = jnp.stack(vals)[index].reshape(K.size, K.size)
            return A, x0[K]
        f = lambda x: self.rhs(0.0, x, p)
        A, b = jax.jacfwd(f)(x0), f(x0)
        return (A, b) if keep is None else (A[K[:, None], K[None, :]], b[K])

    def _placement(self, keep: tuple[int, ...]) -> tuple[Any, np.ndarray]:
        """(entries, index) for `linear_system` on the states `keep`: the nonzero entries
        among them (each a list of (sign, flow)), and for each position of A[K, K] (row
        major) 1 + its entry's number, or 0 for a zero."""
        if keep not in self._placements:
            pos = {k: i for i, k in enumerate(keep)}
            entries, index = [], np.zeros(len(keep) ** 2, np.int32)
            for (r, c), e in self._entries.items():
                if r in pos and c in pos:
                    entries.append(tuple(e))
                    index[pos[r] * len(keep) + pos[c]] = len(entries)
            self._placements[keep] = (tuple(entries), index)
        return self._placements[keep]

    def initial(self, p: Mapping[str, Any]) -> Any:
        """Initial amounts, shape (n_states,)."""
        return jnp.stack(
            [
                jnp.broadcast_to(jnp.asarray(s.initial(p), dtype=float), ())
                for s in self.spec.states.values()
            ]
        )

    def observe(
        self, names: tuple[str, ...], t: Any, x: Any, p: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Values of states, derived quantities or observations at one time."""
        env = self.env(t, x, p, names)
        out = {}
        for n in names:
            if n in self.spec.observations:
                v = self.spec.observations[n].expr(env)
            else:
                v = env[n]
            out[n] = jnp.broadcast_to(jnp.asarray(v, dtype=float), ())
        return out

    def dosing_vectors(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """Per-state lag [time], bioavailability [1], modelled rate [amount/time] and
        duration [time] (NaN where the model gives none), each shape (n_states,); and
        ``route_F`` [1], shape (n_routes, route_width): the fraction of a route dose
        entering each state of each route (``[routes]``; 0 in padding). `p` holds the dose
        record's parameters and covariates and its amount ``AMT`` [amount]."""
        lag, f, rate, dur = [], [], [], []
        nan = jnp.asarray(jnp.nan)
        for s in self.state_names:
            rule = self.spec.dosing.get(s)
            if rule is None:
                lag.append(jnp.asarray(0.0))
                f.append(jnp.asarray(1.0))
                rate.append(nan)
                dur.append(nan)
                continue
            lag.append(jnp.asarray(rule.lag(p), dtype=float))
            f.append(jnp.asarray(rule.bioavailability(p), dtype=float))
            rate.append(nan if rule.rate is None else jnp.asarray(rule.rate(p), dtype=float))
            dur.append(nan if rule.duration is None else jnp.asarray(rule.duration(p), dtype=float))
        stack = lambda v: jnp.stack([jnp.broadcast_to(a, ()) for a in v])
        route_f = [
            [jnp.asarray(e(p), dtype=float) for e in fr.values()]
            + [jnp.asarray(0.0)] * (self.route_width - len(fr))
            for fr in getattr(self.spec, "routes", {}).values()
        ]
        route_F = (
            jnp.stack([stack(row) for row in route_f])
            if route_f
            else jnp.zeros((0, self.route_width))
        )
        return {
            "lag": stack(lag),
            "F": stack(f),
            "rate": stack(rate),
            "duration": stack(dur),
            "route_F": route_F,
        }


def names_read(spec: ModelSpec, names: Any) -> set[str]:
    """`names` and every name their values read (states, parameters, covariates, derived
    quantities...), directly or through [derived] quantities and observations."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        nm = todo.pop()
        if nm in seen:
            continue
        seen.add(nm)
        if nm in spec.derived:
            todo.extend(spec.derived[nm].names)
        elif nm in spec.observations:
            todo.extend(spec.observations[nm].expr.names)
    return seen


def states_read(spec: ModelSpec, names: Any) -> set[str]:
    """The states that the values of `names` read (see `names_read`)."""
    return names_read(spec, names) & set(spec.states)


def _state_feeds(spec: ModelSpec, idx: Mapping[str, int]) -> tuple[frozenset[int], ...]:
    """For each state, the states whose amounts it can change: a flow's source feeds its
    target (and a state its rate reads feeds both ends); a state an [odes] right-hand side
    reads feeds that equation's state."""
    feeds: list[set[int]] = [set() for _ in idx]
    for f in spec.flows:
        ends = {idx[f.source]} | ({idx[f.target]} if f.target else set())
        for s in states_read(spec, f.rate.names) | {f.source}:
            feeds[idx[s]] |= ends
    for target, e in spec.odes.items():
        for s in states_read(spec, e.names):
            feeds[idx[s]].add(idx[target])
    return tuple(frozenset(f) for f in feeds)


def _state_blocks(spec: ModelSpec, idx: Mapping[str, int]) -> tuple[np.ndarray, ...]:
    """The states split into groups that do not exchange mass or information (the weakly
    connected components of the graph of flows and of the [odes] terms' dependencies on
    states), each a sorted index array; in state order of their first member. The system
    matrix of a linear model is block diagonal in these groups, so its exponential is that of
    each block (one group = no split)."""
    n = len(idx)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        parent[find(i)] = find(j)

    states_of = lambda names: states_read(spec, names)
    for f in spec.flows:
        for s in states_of(f.rate.names) | ({f.target} if f.target else set()):
            join(idx[f.source], idx[s])
    for target, e in spec.odes.items():
        for s in states_of(e.names):
            join(idx[target], idx[s])
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return tuple(np.asarray(g, np.int32) for g in groups.values())
