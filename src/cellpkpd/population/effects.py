"""Covariate effects, written once: `CovariateEffect` (how one covariate scales one
parameter: its form, reference and categorical levels, checks and factor) used by
`Population` (fits), `VirtualPopulation` (simulation) and the subjects drawn from a fit's
posterior; with the continuous forms' factor (`effect_factor`), a categorical covariate's
reference level (`categorical_levels`) and how a level is spelled in names (`level_name`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core.errors import SpecError

__all__ = [
    "CONTINUOUS_FORMS",
    "FORMS",
    "CovariateEffect",
    "categorical_levels",
    "check_form",
    "effect_factor",
    "level_name",
]

#: forms with one coefficient and a reference value
CONTINUOUS_FORMS = ("power", "exponential", "linear")
#: every form: a categorical covariate has one coefficient per level other than its reference
FORMS = (*CONTINUOUS_FORMS, "categorical")


def check_form(form: Any, where: str, forms: tuple[str, ...] = FORMS) -> str:
    """`form` if it is one of `forms`, else a `SpecError` naming `where`."""
    if form not in forms:
        expected = f"{', '.join(forms[:-1])} or {forms[-1]}"
        raise SpecError(f"{where}: form {form!r}; expected {expected}")
    return form


@dataclass(frozen=True)
class CovariateEffect:
    """How one covariate scales one parameter: the parameter is multiplied by
    `factor` ``(x, coefficient)`` at covariate value(s) ``x``.

    Attributes
    ----------
    parameter, covariate : str
    form : {"power", "exponential", "linear", "categorical"}
        ``(x / ref) ** beta``, ``exp(beta (x - ref))``, ``1 + beta (x - ref)``; categorical:
        ``exp(beta_L)`` at each level L other than the reference level (1 at the reference).
    reference : float or None
        Continuous forms: the covariate value where the factor is 1. Categorical: the
        reference level.
    levels : tuple of float
        Categorical: the other levels, each with its own coefficient.
    """

    parameter: str
    covariate: str
    form: str
    reference: float | None = None
    levels: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        check_form(self.form, f"covariate effect of '{self.covariate}' on {self.parameter}")

    @property
    def categorical(self) -> bool:
        return self.form == "categorical"

    def apply(self, value: Any, x: Any, coefficient: Any) -> Any:
        """`value` times the effect's factor at covariate value(s) `x`, with `coefficient`
        (categorical: a dict level -> coefficient, a level not in it has factor 1). NumPy
        and JAX alike (safe under jit)."""
        if not self.categorical:
            return value * effect_factor(self.form, x, coefficient, self.reference)
        for level, beta in coefficient.items():
            y = beta * (x == level)
            value = value * (jnp.exp(y) if isinstance(y, jax.Array) else np.exp(y))
        return value

    def check_values(
        self,
        x: Any,
        where: str,
        error: type[Exception] = SpecError,
        holder: str = "the covariates",
    ) -> None:
        """A power effect needs covariate values `x` (held by `holder`, for the message) and
        its reference > 0; a categorical one with a reference level only the levels it
        knows."""
        x = np.asarray(x, dtype=float).ravel()
        if self.form == "power" and not np.all(x > 0):
            raise error(
                f"{where}: the power effect of '{self.covariate}' on {self.parameter} needs "
                f"{self.covariate} > 0, but {holder} hold {self.covariate} = {x[~(x > 0)][0]:g} "
                "(use 'linear' or 'exponential' for such a covariate)"
            )
        if self.form == "power" and self.reference is not None and not self.reference > 0:
            raise error(f"{where}: a power effect needs covariate and ref > 0")
        if self.categorical and self.reference is not None:
            unseen = sorted(set(np.unique(x).tolist()) - {self.reference, *self.levels})
            if unseen:
                known = ", ".join(
                    [f"{level_name(self.reference)} (reference)"]
                    + [level_name(v) for v in self.levels]
                )
                raise error(
                    f"{where}: covariates['{self.covariate}'] has level(s) "
                    f"{', '.join(level_name(v) for v in unseen)} that the fit did not see; its "
                    f"levels are {known}"
                )

    @classmethod
    def of(
        cls,
        parameter: str,
        covariate: str,
        form: str,
        references: Mapping[str, float],
        levels: Mapping[str, tuple[float, list[float]]],
    ) -> CovariateEffect:
        """The effect with its reference (and levels) from a fit's design."""
        if form == "categorical" and covariate in levels:
            ref, others = levels[covariate]
            return cls(parameter, covariate, form, float(ref), tuple(float(v) for v in others))
        return cls(parameter, covariate, form, references.get(covariate))


def level_name(value: float) -> str:
    """How a categorical level appears in site names: ``1.0`` -> ``"1"``, ``-2.5`` ->
    ``"m2p5"``."""
    v = float(value)
    text = str(int(v)) if v.is_integer() else repr(v)
    return text.replace("-", "m").replace(".", "p")


def categorical_levels(values: Any) -> tuple[float, list[float]]:
    """The reference level (most frequent value; the smallest on ties) and the other
    levels (ascending) of one covariate's per-subject values."""
    levels, counts = np.unique(np.asarray(values, dtype=float), return_counts=True)
    ref = float(levels[int(np.argmax(counts))])
    return ref, [float(v) for v in levels if v != ref]


def effect_factor(form: str, x: Any, beta: Any, ref: Any) -> Any:
    """Multiplicative factor of a continuous covariate effect at covariate value(s) `x`:
    ``"power"`` ``(x / ref) ** beta``, ``"exponential"`` ``exp(beta (x - ref))``, ``"linear"``
    ``1 + beta (x - ref)``. Works on NumPy and JAX arrays alike (and keeps the type)."""
    if form == "power":
        return (x / ref) ** beta
    if form == "exponential":
        return math.e ** (beta * (x - ref))
    if form == "linear":
        return 1.0 + beta * (x - ref)
    check_form(form, "covariate effect", CONTINUOUS_FORMS)
