"""Derivatives of Simulator outputs with respect to every number of a dose, when the dose is
built from a traced value inside the transformation (the way a user writes it):
``cp.Regimen([cp.Dose(..., amount=a, ...)]).to_arrays(max_doses)`` then ``sim(params, doses)``.

Each dose field x {exact path, ODE path} x {grad, jit(grad), vmap(grad)} is compared with a
central difference of the same function on concrete values. These guard against a tangent
dropped at the edge (``.item()``, ``float()``, ``np.asarray`` on a traced value), which
silently gives 0.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cellpkpd as cp

TIMES = np.array([1.7, 4.0, 13.0])  # off every dose, lag and infusion-end time below
MAX_DOSES = 3


def _regimen(field: str, v):
    """A regimen of the one-compartment oral model whose `field` is `v`."""
    if field in ("amount", "time", "lag", "bioavailability"):
        kw = dict(time=0.5, amount=5.0, lag=0.25, bioavailability=0.8)
        kw[field] = v
        return cp.Regimen([cp.Dose(cmt="depot", **kw)])
    if field == "duration":
        return cp.Regimen([cp.Dose(time=0.5, amount=5.0, cmt="central", duration=v)])
    if field == "rate":
        return cp.Regimen([cp.Dose(time=0.5, amount=5.0, cmt="central", rate=v)])
    if field == "ii":  # steady state of a bolus every ii, then a second dose at 6 h
        return cp.Regimen(
            [
                cp.Dose(time=0.5, amount=5.0, cmt="depot", ss=1, ii=v),
                cp.Dose(time=6.0, amount=2.0, cmt="depot"),
            ]
        )
    if field == "interval":  # Regimen.repeat(interval=v)
        return cp.Regimen.repeat(cp.Dose(time=0.5, amount=5.0, cmt="depot"), interval=v, count=3)
    raise AssertionError(field)


VALUES = {  # value of each field; a second one for vmap
    "amount": (5.0, 7.0),
    "time": (0.5, 0.8),
    "lag": (0.25, 0.4),
    "bioavailability": (0.8, 0.6),
    "duration": (1.5, 1.0),
    "rate": (2.0, 3.0),
    "ii": (12.0, 8.0),
    "interval": (6.0, 5.0),
}
FIELDS = list(VALUES)


@functools.cache
def _simulator(path: str) -> cp.Simulator:
    # one_cmt_oral is linear: "exact" takes the matrix-exponential path, "tsit5" diffrax
    return cp.Simulator(
        "one_cmt_oral",
        TIMES,
        outputs=("conc",),
        solver=path,
        max_doses=MAX_DOSES,
        rtol=1e-10,
        atol=1e-10,
    )


def _objective(field: str, path: str):
    sim = _simulator(path)

    def f(v):
        doses = _regimen(field, v).to_arrays(MAX_DOSES, sim.spec)
        return jnp.sum(sim({}, doses)["conc"] * jnp.array([1.0, 0.5, 2.0]))

    return f


@functools.cache
def _central_differences(field: str, path: str) -> np.ndarray:
    """Central differences at both values of `field` (one vmapped, compiled evaluation)."""
    f = _objective(field, path)
    v = np.array(VALUES[field])
    h = 1e-5 * np.abs(v)
    y = np.asarray(jax.jit(jax.vmap(f))(jnp.concatenate([v + h, v - h])))
    return (y[:2] - y[2:]) / (2 * h)


@pytest.mark.parametrize("transform", ["grad", "jit_grad", "vmap_grad"])
@pytest.mark.parametrize("path", ["exact", "tsit5"])
@pytest.mark.parametrize("field", FIELDS)
def test_dose_field_derivative_matches_central_difference(field, path, transform):
    f = _objective(field, path)
    fd = _central_differences(field, path)
    v = jnp.array(VALUES[field])
    if transform == "grad":
        got = np.array([jax.grad(f)(v[0])])
    elif transform == "jit_grad":
        got = np.array([jax.jit(jax.grad(f))(v[0])])
    else:
        got = np.asarray(jax.vmap(jax.grad(f))(v))
    assert np.all(got != 0.0)  # the bug this guards against: a dropped tangent gives 0
    # h = 1e-5 relative: truncation ~h^2 and round-off ~1e-16/h (exact path) or the ODE's
    # 1e-10 tolerance / h (tsit5) are both below 1e-6 of these derivatives; 1e-5 is the
    # brief's bound with a margin
    np.testing.assert_allclose(got, fd[: got.size], rtol=1e-5)


def test_vmap_over_amounts_gives_each_amount_result():
    # dose-ranging by vmap over the amount: each row equals the single-amount call
    sim = _simulator("exact")

    def conc(a):
        doses = cp.Regimen([cp.Dose(time=0.0, amount=a, cmt="depot")]).to_arrays(MAX_DOSES)
        return sim({}, doses)["conc"]

    amounts = jnp.array([1.0, 10.0, 100.0])
    batched = np.asarray(jax.vmap(conc)(amounts))
    one = np.stack([np.asarray(conc(float(a))) for a in amounts])
    # same program on the same numbers: only float64 round-off may differ
    np.testing.assert_allclose(batched, one, rtol=1e-12)
    # and a linear model is linear in the dose
    np.testing.assert_allclose(batched[2], 100.0 * batched[0], rtol=1e-12)


def test_traced_duration_zero_is_a_bolus():
    # a traced duration decides bolus vs infusion when the program runs: duration 0 must
    # deliver the dose as a bolus (an infusion of length 0 would deliver nothing)
    sim = _simulator("exact")

    def conc(dur):
        reg = cp.Regimen([cp.Dose(time=0.0, amount=5.0, cmt="central", duration=dur)])
        return sim({}, reg.to_arrays(MAX_DOSES))["conc"]

    bolus = sim({}, cp.Regimen([cp.Dose(time=0.0, amount=5.0, cmt="central")]))["conc"]
    np.testing.assert_allclose(jax.jit(conc)(0.0), bolus, rtol=1e-12)  # same arithmetic


def test_traced_times_keep_given_order_and_match_sorted():
    # traced times are not sorted; the engine orders events by time itself, so a regimen
    # given out of order gives the sorted regimen's result
    sim = _simulator("exact")

    def conc(t):
        reg = cp.Regimen(
            [cp.Dose(time=t, amount=5.0, cmt="depot"), cp.Dose(time=0.5, amount=2.0, cmt="depot")]
        )
        assert reg.events[0].amount == 5.0  # given order kept
        return sim({}, reg.to_arrays(MAX_DOSES))["conc"]

    sorted_reg = cp.Regimen(
        [cp.Dose(time=3.0, amount=5.0, cmt="depot"), cp.Dose(time=0.5, amount=2.0, cmt="depot")]
    )
    assert sorted_reg.events[0].amount == 2.0
    np.testing.assert_allclose(jax.jit(conc)(3.0), sim({}, sorted_reg)["conc"], rtol=1e-12)


def test_time_above_threshold_derivative_matches_central_difference():
    # a metric threshold built from a traced value carries its derivative through reduce
    sim = _simulator("exact")
    times = jnp.linspace(0.0, 24.0, 49)
    y = sim({}, cp.Regimen([cp.Dose(time=0.0, amount=5.0, cmt="depot")]), times)

    def above(thr):
        return cp.metrics.time_above("conc", thr).reduce(times, y)

    thr, h = 0.05, 1e-7
    fd = (above(thr + h) - above(thr - h)) / (2 * h)
    got = jax.jit(jax.grad(above))(thr)
    assert got != 0.0
    # piecewise log-linear interpolation is smooth away from grid points: FD error ~h^2
    np.testing.assert_allclose(got, fd, rtol=1e-5)
