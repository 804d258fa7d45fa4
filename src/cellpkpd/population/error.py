"""Residual error models: the SDs each one has (its ``sigma_<kind>_<observation>`` sites) and
the residual SD they give at a prediction, for fits, replicated studies and residual plots."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["SIGMAS", "error_model_of", "residual_sd"]

#: error model -> the kinds of residual SD it has: ``add`` [observation unit], ``prop`` [1]
#: (a fraction of the prediction), ``log`` [1] (the SD of log DV)
SIGMAS: dict[str, tuple[str, ...]] = {
    "additive": ("add",),
    "proportional": ("prop",),
    "combined": ("add", "prop"),
    "lognormal": ("log",),
}


def error_model_of(kinds: Iterable[str]) -> str | None:
    """The error model whose residual SDs are exactly `kinds` (e.g. ``{"add", "prop"}`` ->
    ``"combined"``); None when no model has them."""
    given = set(kinds)
    return next((m for m, k in SIGMAS.items() if set(k) == given), None)


def residual_sd(model: str, pred: Any, sigma: Mapping[str, Any]) -> Any:
    """The residual SD of error model `model` at predictions `pred`.

    Parameters
    ----------
    model : {"additive", "proportional", "combined", "lognormal"}
    pred : array
        Predictions [observation unit]; NumPy or JAX (the result has the same type, so the
        function is safe under jit).
    sigma : dict str -> float or array
        The model's SDs by kind (`SIGMAS`), broadcastable against `pred`.

    Returns
    -------
    array, shape of `pred`
        ``add``; ``prop * |pred|``; ``sqrt(add^2 + (prop * pred)^2)``; for ``lognormal`` the
        SD of log DV, ``log`` [1].
    """
    xp = jnp if isinstance(pred, jax.Array) else np
    if model == "additive":
        return sigma["add"] * xp.ones_like(pred)
    if model == "proportional":
        return sigma["prop"] * xp.abs(pred)
    if model == "combined":
        return xp.sqrt(sigma["add"] ** 2 + (sigma["prop"] * pred) ** 2)
    return sigma["log"] * xp.ones_like(pred)
