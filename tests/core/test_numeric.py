"""safe_div, the one guarded division of the engine (infusion rate <-> duration) and the
metrics (interpolation, crossings, log-linear slope): 0 where the denominator is 0, a true
quotient for every other one, negative included, with finite gradients at 0."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cellpkpd._core.numeric import safe_div


def test_quotient_for_any_nonzero_denominator_and_zero_at_zero():
    num = jnp.array([6.0, 6.0, 6.0, 0.0, -3.0])
    den = jnp.array([3.0, -3.0, 0.0, 0.0, -1.5])
    got = safe_div(num, den)
    assert got.dtype == jnp.float64
    # a falling output's step y2 - y1 < 0 must divide (a crossing on the way down)
    np.testing.assert_array_equal(got, [2.0, -2.0, 0.0, 0.0, 2.0])
    assert np.isnan(safe_div(1.0, jnp.nan))


def test_gradient_is_finite_where_the_denominator_is_zero():
    grad = jax.grad(lambda d: safe_div(2.0, d))
    assert float(grad(0.0)) == 0.0
    np.testing.assert_allclose(float(grad(4.0)), -2.0 / 16.0, rtol=1e-15)
