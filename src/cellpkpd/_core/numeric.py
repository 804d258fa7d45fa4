"""Small numerical helpers shared by the engine and the analysis layers (pure JAX)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

__all__ = ["safe_div"]


def safe_div(num: Any, den: Any) -> Any:
    """``num / den`` where ``den != 0``, else 0 (elementwise, broadcast).

    Parameters
    ----------
    num, den : array-like
        Numerator and denominator; `den` may be negative (a falling output's step
        ``y2 - y1``) or zero (two equal output times, a zero-length infusion slot).

    Returns
    -------
    array
        The quotient, 0 where `den` is 0 (a NaN `den` gives NaN).

    Notes
    -----
    The inner ``where`` keeps the division by zero out of the computation, so gradients
    stay finite where `den` is 0 (the unselected branch of ``jnp.where`` still enters the
    derivative). Pure; safe under jit and vmap.
    """
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)
