"""The exact and ODE paths' sort-free timeline steps. The merge (`solve._merge`): event
points and output times merged by binary searches must give the order of a full
lexicographic sort by (time, tie-break key), ties between doses and outputs at one time
included (NONMEM's record order, `events_before`); the reference is numpy's stable lexsort
of the concatenation, which is what the merge replaced. The distinct segment lengths by
passes (`solve._distinct` with `few`) must give the ranks and count of the sorting rule,
lengths within `SAME_LENGTH_RTOL` chains included. Comparisons are exact (integers)."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cellpkpd as cp
from cellpkpd.engine import simulator as S
from cellpkpd.engine.solve import (
    COMPARE_MAX_POINTS,
    FEW_LENGTHS,
    SAME_LENGTH_RTOL,
    _distinct,
    _merge,
    _output_keys,
    count_distinct_host,
)


def reference(ev_time, ev_order, times, events_before, per_entry):
    """(src, out_pos) from one stable lexsort of events and outputs (the former code)."""
    if events_before is not None and per_entry > 1:
        events_before = per_entry * np.asarray(events_before)
    out_key = np.asarray(_output_keys(times.size, events_before))
    tie = np.concatenate([2 * ev_order, out_key]).astype(np.int64)
    src = np.lexsort((tie, np.concatenate([ev_time, times])))
    return src, np.argsort(src, kind="stable")[ev_time.size :]


@pytest.mark.parametrize("n_points", [1, 5, COMPARE_MAX_POINTS + 7])
@pytest.mark.parametrize("with_before", [False, True])
@pytest.mark.parametrize("per_entry", [1, 3])
def test_merge_matches_full_sort(n_points, with_before, per_entry):
    rng = np.random.default_rng([n_points, with_before, per_entry])
    for _ in range(20):
        # coarse grids so that events and outputs often share a time
        times = np.sort(rng.integers(0, 12, 40)).astype(float)
        ev_time = rng.integers(0, 14, n_points).astype(float)
        ev_order = rng.integers(0, 10, n_points)
        before = None
        if with_before:  # non-decreasing at equal times, as the simulator builds it
            before = np.zeros(times.size, np.int64)
            for t in np.unique(times):
                at = times == t
                before[at] = np.sort(rng.integers(0, 6, at.sum()))
        ev = SimpleNamespace(time=jnp.asarray(ev_time), order=jnp.asarray(ev_order),
                             per_entry=per_entry)  # fmt: skip
        src, out_pos, perm = _merge(
            ev, jnp.asarray(times), None if before is None else jnp.asarray(before)
        )
        # the event points in time order, as the ODE path steps through them
        np.testing.assert_array_equal(perm, np.lexsort((ev_order, ev_time)))
        ref_src, ref_pos = reference(ev_time, ev_order, times, before, per_entry)
        np.testing.assert_array_equal(np.asarray(src), ref_src)
        np.testing.assert_array_equal(np.asarray(out_pos), ref_pos)


@pytest.mark.parametrize("with_region", [False, True])
def test_distinct_by_passes_matches_sort(with_region):
    rng = np.random.default_rng(int(with_region))
    for _ in range(30):
        # few values, zeros, and near-equal lengths (chains within SAME_LENGTH_RTOL)
        base = rng.choice([0.0, 0.25, 0.5, 1.0, 3.0], 60)
        h = base * (1.0 + SAME_LENGTH_RTOL * rng.integers(0, 3, 60) * 0.6)
        region = jnp.asarray(rng.integers(0, 3, 60)) if with_region else None
        rank, count = _distinct(jnp.asarray(h), region)
        rank_p, count_p = _distinct(jnp.asarray(h), region, h.size + 1)
        np.testing.assert_array_equal(np.asarray(rank_p), np.asarray(rank))
        assert int(count_p) == int(count)


def test_distinct_by_passes_stops_after_few():
    h = jnp.arange(1.0, FEW_LENGTHS + 3.0)  # FEW_LENGTHS + 2 distinct lengths
    assert int(_distinct(h)[1]) == FEW_LENGTHS + 2
    assert int(_distinct(h, None, FEW_LENGTHS)[1]) == -1
    assert int(_distinct(h[:FEW_LENGTHS], None, FEW_LENGTHS)[1]) == FEW_LENGTHS


@pytest.mark.parametrize("host", [False, True])
def test_plan_with_many_lengths_is_counted_again_by_the_sort(host, monkeypatch):
    """More than `FEW_LENGTHS` distinct segment lengths (output gaps 1, 2, ..., 20 h): the
    counting program's passes stop (-1) and `Simulator.plan` counts again by the sort (or,
    `host`, the timeline fixed by the data is counted with NumPy), so the plan has all 20
    lengths; its results equal the unplanned solve (rtol 1e-12: only the number of
    squarings may differ)."""
    if not host:
        monkeypatch.setattr(S, "host_segment_lengths", lambda *a: None)
    spec = cp.load_model("two_cmt_iv")
    times = np.concatenate([[0.0], np.cumsum(np.arange(1.0, 21.0))])
    sim = cp.Simulator(spec, times, outputs=["central"], solver="exact")
    doses = sim.doses([cp.Regimen([cp.Dose(0.0, 100.0, cmt="central")])] * 3)
    params = {"CL": spec.parameters["CL"].value * np.array([0.5, 1.0, 2.0])}
    plan = sim.plan(doses, params)
    assert plan.size == 20
    # compiled (one program each; an eager vmap runs and compiles every operation alone)
    one = lambda plan: jax.vmap(lambda p, d: sim.solve(p, d, plan=plan)[0])
    solve = lambda plan: jax.jit(one(plan))(params, doses)
    planned, whole = solve(plan), solve(None)
    np.testing.assert_allclose(planned["central"], whole["central"], rtol=1e-12, atol=0)


def test_distinct_on_the_host_matches_the_program():
    """`count_distinct_host` (NumPy, for timelines the data fix) counts by `_distinct`'s
    rule: zeros left out, lengths within `SAME_LENGTH_RTOL` chains counted once."""
    rng = np.random.default_rng(7)
    h = rng.choice([0.0, 0.25, 0.5, 1.0, 3.0], (40, 60))
    h = h * (1.0 + SAME_LENGTH_RTOL * rng.integers(0, 3, h.shape) * 0.6)
    h[0] = 0.0  # no positive length at all: 0
    want = [int(_distinct(jnp.asarray(row))[1]) for row in h]
    np.testing.assert_array_equal(count_distinct_host(h), want)


def _bolus_regimens(rng, n, spec):
    """n random bolus regimens of different lengths (padding in the dose arrays): doses at
    output times, between them and after the last output, with data lags, ADDL
    copies and, for a model with routes, route doses."""
    routes = list(spec.routes)
    regs = []
    for _ in range(n):
        doses = []
        for _ in range(rng.integers(1, 5)):
            t = float(rng.choice([0.0, 3.0, 7.5, 12.0, 30.0, rng.uniform(0.0, 24.0)]))
            kw = {"route": routes[0]} if routes else {"cmt": next(iter(spec.states))}
            lag = float(rng.choice([0.0, 0.0, 1.0, 2.25]))
            doses.append(cp.Dose(t, 10.0, lag=lag, **kw))
        if rng.uniform() < 0.3:  # ADDL copies
            regs.append(cp.Regimen.repeat(doses[0], 6.0, 3))
        else:
            regs.append(cp.Regimen(doses))
    return regs


@pytest.mark.parametrize("model", ["two_cmt_iv", "msc_pbk"])
@pytest.mark.parametrize("per_subject_times", [False, True])
@pytest.mark.parametrize("start", [0.0, -3.0])
def test_host_plan_equals_the_counting_program(model, per_subject_times, start, monkeypatch):
    """`Simulator.plan` on a timeline the data fix (bolus doses, no parameter-dependent lag,
    no breakpoints) counts the segment lengths with NumPy (`host_segment_lengths`) instead
    of compiling the counting program. On random bolus regimens (doses at output times,
    between them and after the last output; data lags; ADDL copies; route doses;
    dose arrays padded to the longest regimen; outputs from `start`, before t0 = 0 too,
    where a segment has a negative length) it must give the program's plan: the same size
    and the same squarings (each subject's rate matrix over its own longest segment)."""
    spec = cp.load_model(model)
    rng = np.random.default_rng([len(model), per_subject_times, int(-start)])
    n = 12
    times = np.linspace(start, 24.0, 13)
    if per_subject_times:
        times = np.sort(rng.choice(np.arange(start, 25.0, 0.5), (n, 13)), axis=1)
    # (a Simulator's own times start at t0; times given to a call may start before)
    at_call = per_subject_times or start < 0
    sim = cp.Simulator(spec, None if at_call else times, solver="exact")
    doses = sim.doses(_bolus_regimens(rng, n, spec))
    name = next(iter(spec.parameters))
    params = {name: spec.parameters[name].value * np.exp(rng.normal(0.0, 0.5, n))}
    call_times = times if at_call else None
    host = sim.plan(doses, params, call_times)
    monkeypatch.setattr(S, "host_segment_lengths", lambda *a: None)
    program = sim.plan(doses, params, call_times)
    assert host.size == program.size
    assert host.options.keep == program.options.keep
    assert host.options.squarings == program.options.squarings


def test_outputs_before_t0_and_a_zero_length_segment_keep_the_planned_numbers(monkeypatch):
    """An output before t0 makes a segment of negative length, and a dose at an output time
    one of length 0: neither takes a matrix exponential, and the positive lengths keep
    their own (an output before t0 once made `_distinct` rank the two non-positive
    lengths apart, so the plan's last slot, the identity, stood in for the longest
    segment: the output at 10 h then did not decay). The planned batch (32 subjects),
    counted on the host or by the program, equals one subject solved alone (rtol 1e-12)."""
    sim = cp.Simulator("two_cmt_iv", outputs=["central"], solver="exact")
    times = np.array([-1.0, 0.0, 1.0, 10.0])
    doses = sim.doses(cp.Regimen([cp.Dose(0.0, 100.0, cmt="central")]))
    params = {"CL": np.full(32, 2.0)}
    alone = jax.jit(lambda p: sim.solve(p, doses, times)[0])({"CL": 2.0})["central"]
    assert float(alone[3]) < 0.2 * float(alone[1])  # it decays from 1 h to 10 h
    for host in (True, False):
        if not host:
            monkeypatch.setattr(S, "host_segment_lengths", lambda *a: None)
        assert sim.plan(doses, params, times).size == 2  # 1 h and 9 h
        out, status = sim.batch(params, doses, times)
        assert np.all(np.asarray(status) == 0)
        np.testing.assert_allclose(np.asarray(out["central"]), np.tile(alone, (32, 1)),
                                   rtol=1e-12, atol=0)  # fmt: skip
