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

# Every dose field enters one regimen, so that one compiled program per (path, transform)
# gives all eight derivatives and each parametrised test checks its own: the field's value
# is traced through the Dose (or Regimen.repeat) argument the user would write.
FIELDS = ("amount", "time", "lag", "bioavailability", "duration", "rate", "ii", "interval")
VALUES = np.array(  # the fields' values in that order; the second row is for vmap
    [
        [5.0, 1.0, 0.25, 0.8, 1.5, 2.0, 12.0, 6.0],
        [7.0, 1.2, 0.40, 0.6, 1.2, 2.5, 8.0, 5.0],
    ]
)
# event times: 0.5 (SS), 1.25 (1.0 + lag), 2.0-3.5, 3.0-5.5 (infusions), 4.0, 10.0 (repeat);
# second row 0.5, 1.6, 2.0-3.2, 3.0-4.2, 4.0, 9.0: no two coincide (a derivative across a
# change of event order is not defined) and the outputs lie off all of them
TIMES = np.array([1.7, 4.6, 7.0, 13.0])
WEIGHTS = np.array([1.0, 0.5, 2.0, 1.5])
MAX_DOSES = 6


def _regimen(v) -> cp.Regimen:
    amount, time, lag, f, duration, rate, ii, interval = (v[k] for k in range(len(FIELDS)))
    return cp.Regimen(
        [
            # steady state of a depot bolus every ii (SS=1: first, as it resets the state)
            cp.Dose(time=0.5, amount=5.0, cmt="depot", ss=1, ii=ii),
            cp.Dose(time=time, amount=amount, cmt="depot", lag=lag, bioavailability=f),
            cp.Dose(time=2.0, amount=4.0, cmt="central", duration=duration),
            cp.Dose(time=3.0, amount=3.0, cmt="central", rate=rate),
        ]
    ) + cp.Regimen.repeat(cp.Dose(time=4.0, amount=2.0, cmt="depot"), interval=interval, count=2)


@functools.cache
def _objective(path: str):
    # one_cmt_oral is linear: "exact" takes the matrix-exponential path, "tsit5" diffrax
    sim = cp.Simulator(
        "one_cmt_oral",
        TIMES,
        outputs=("conc",),
        solver=path,
        max_doses=MAX_DOSES,
        rtol=1e-10,
        atol=1e-10,
    )

    def f(v):
        doses = _regimen(v).to_arrays(MAX_DOSES, sim.spec)
        return jnp.sum(sim({}, doses)["conc"] * WEIGHTS)

    return f


@functools.cache
def _central_differences(path: str) -> np.ndarray:
    """Central differences (2, n_fields) at both rows of VALUES, from one compiled and
    vmapped evaluation of concrete perturbed values."""
    f = _objective(path)
    n = len(FIELDS)
    h = 1e-5 * np.abs(VALUES)  # (2, n)
    eye = np.eye(n)
    plus = (VALUES[:, None, :] + h[:, :, None] * eye).reshape(-1, n)
    minus = (VALUES[:, None, :] - h[:, :, None] * eye).reshape(-1, n)
    y = np.asarray(jax.jit(jax.vmap(f))(jnp.asarray(np.concatenate([plus, minus]))))
    return (y[: 2 * n] - y[2 * n :]).reshape(2, n) / (2 * h)


@functools.cache
def _derivatives(path: str, transform: str) -> np.ndarray:
    f = _objective(path)
    v = jnp.asarray(VALUES)
    if transform == "grad":
        return np.asarray(jax.grad(f)(v[0]))[None]
    if transform == "jit_grad":
        return np.asarray(jax.jit(jax.grad(f))(v[0]))[None]
    return np.asarray(jax.vmap(jax.grad(f))(v))


def _check_derivative(field: str, path: str, transform: str) -> None:
    k = FIELDS.index(field)
    got = _derivatives(path, transform)[:, k]
    fd = _central_differences(path)[: got.size, k]
    assert np.all(got != 0.0)  # the bug this guards against: a dropped tangent gives 0
    # h = 1e-5 relative: truncation ~h^2 and round-off ~1e-16/h (exact path) or the ODE's
    # 1e-10 tolerance / h (tsit5) are both below 1e-6 of these derivatives; 1e-5 is the
    # brief's bound with a margin
    np.testing.assert_allclose(got, fd, rtol=1e-5)


TRANSFORMS = ("grad", "jit_grad", "vmap_grad")
EXT = pytest.mark.extended  # the same derivatives by a costlier compile (see pyproject.toml)


# two classes, so that pytest-xdist (--dist loadscope) runs the two paths in parallel
@pytest.mark.slow
class TestExactPath:
    # un-jitted grad runs op by op (~45 s on 2 cores): extended, as on the ODE path
    @pytest.mark.parametrize(
        "transform",
        [pytest.param("grad", marks=EXT), "jit_grad", pytest.param("vmap_grad", marks=EXT)],
    )
    @pytest.mark.parametrize("field", FIELDS)
    def test_dose_field_derivative_matches_central_difference(self, field, transform):
        _check_derivative(field, "exact", transform)


@pytest.mark.slow
class TestOdePath:
    @pytest.mark.parametrize(
        "transform",
        [pytest.param("grad", marks=EXT), "jit_grad", pytest.param("vmap_grad", marks=EXT)],
    )
    @pytest.mark.parametrize("field", FIELDS)
    def test_dose_field_derivative_matches_central_difference(self, field, transform):
        _check_derivative(field, "tsit5", transform)


_SIM = cp.Simulator("one_cmt_oral", TIMES, outputs=("conc",), max_doses=2)


@pytest.mark.slow
def test_vmap_over_amounts_gives_each_amount_result():
    # dose-ranging by vmap over the amount: each row equals the single-amount call
    sim = _SIM

    def conc(a):
        doses = cp.Regimen([cp.Dose(time=0.0, amount=a, cmt="depot")]).to_arrays(2)
        return sim({}, doses)["conc"]

    amounts = jnp.array([1.0, 10.0, 100.0])
    batched = np.asarray(jax.jit(jax.vmap(conc))(amounts))  # compiled, not op by op
    one = np.stack([np.asarray(jax.jit(conc)(float(a))) for a in amounts])
    # the same operations on the same numbers: only float64 round-off may differ
    np.testing.assert_allclose(batched, one, rtol=1e-12)
    # and a linear model is linear in the dose
    np.testing.assert_allclose(batched[2], 100.0 * batched[0], rtol=1e-12)


def test_traced_duration_zero_is_a_bolus():
    # a traced duration decides bolus vs infusion when the program runs: duration 0 must
    # deliver the dose as a bolus (an infusion of length 0 would deliver nothing)
    sim = _SIM

    def conc(dur):
        reg = cp.Regimen([cp.Dose(time=0.0, amount=5.0, cmt="central", duration=dur)])
        return sim({}, reg.to_arrays(2))["conc"]

    bolus = sim({}, cp.Regimen([cp.Dose(time=0.0, amount=5.0, cmt="central")]))["conc"]
    np.testing.assert_allclose(jax.jit(conc)(0.0), bolus, rtol=1e-12)  # same arithmetic


def test_traced_times_keep_given_order_and_match_sorted():
    # traced times are not sorted; the engine orders events by time itself, so a regimen
    # given out of order gives the sorted regimen's result
    sim = _SIM

    def conc(t):
        reg = cp.Regimen(
            [cp.Dose(time=t, amount=5.0, cmt="depot"), cp.Dose(time=0.5, amount=2.0, cmt="depot")]
        )
        assert reg.events[0].amount == 5.0  # given order kept
        return sim({}, reg.to_arrays(2))["conc"]

    sorted_reg = cp.Regimen(
        [cp.Dose(time=3.0, amount=5.0, cmt="depot"), cp.Dose(time=0.5, amount=2.0, cmt="depot")]
    )
    assert sorted_reg.events[0].amount == 2.0
    np.testing.assert_allclose(jax.jit(conc)(3.0), sim({}, sorted_reg)["conc"], rtol=1e-12)


@pytest.mark.slow
def test_time_above_threshold_derivative_matches_central_difference():
    # a metric threshold built from a traced value carries its derivative through reduce
    sim = _SIM
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
