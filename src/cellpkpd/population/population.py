"""`Population`: the statistical layer of a fit (between-subject variability, covariate
effects, residual error, fixed parameters), validated against a `ModelSpec`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .._core.errors import SpecError
from ..spec.model import ERROR_MODELS, ModelSpec
from .effects import CovariateEffect, check_form

__all__ = ["Population"]


@dataclass(frozen=True)
class Population:
    """Which parameters vary between subjects, how covariates act, and the residual error.

    Parameters
    ----------
    random_effects : dict str -> float
        Parameter -> prior scale of its between-subject SD omega (log scale): individual
        values are ``theta * exp(omega * eta)``, ``eta ~ Normal(0, 1)`` (non-centred),
        ``omega ~ HalfNormal(scale)``. Empty: no random effects (one subject, or naive
        pooling).
    covariate_effects : dict str -> dict str -> str
        Parameter -> covariate -> form: ``"power"`` (``(cov / ref) ** beta``),
        ``"exponential"`` (``exp(beta * (cov - ref))``) or ``"linear"``
        (``1 + beta * (cov - ref)``); ``ref`` is the covariate's default in the model file
        (or the data's median). The coefficient is sampled as
        ``beta_<parameter>_<covariate> ~ Normal(0, 1)``. ``"categorical"``: the levels are
        the covariate's distinct values in the data, the reference level is the most
        frequent one (the smallest on ties), and every other level L gets its own factor
        ``exp(beta_<parameter>_<covariate>_<L>)``, ``beta ~ Normal(0, 1)`` (see
        `cellpkpd.population.effects.level_name` for how L is spelled; each effect is a
        `cellpkpd.population.effects.CovariateEffect`, `Population.effects`). In fits and
        `simulate_study`, a covariate that changes within a subject changes the parameter
        record by record (carried forward from each record, LOCF: docs/data.md says how
        NONMEM differs); the posterior's ``<p>_i`` are the values at each subject's first
        record. Model covariates that the model's own expressions use change record by
        record too (see `cellpkpd.infer.data.FitData`).
    error : dict str -> str
        Observation -> residual error model (``additive``, ``proportional``, ``combined``,
        ``lognormal``); default: the model file's.
    fixed : sequence of str
        Parameters held at their model-file values (not estimated).
    correlation : bool
        Full covariance of the random effects: ``eta ~ MVN(0, diag(omega) R diag(omega))``
        with the correlation matrix ``R ~ LKJ(2)`` (sampled as its Cholesky factor
        ``L_iiv``; the posterior holds ``corr_iiv``, dims (iiv, iiv_)). Default: diagonal.

    Examples
    --------
    >>> pop = cp.Population(random_effects={"CL": 0.5, "V": 0.5},
    ...                     covariate_effects={"CL": {"WT": "power"}},
    ...                     error={"conc": "combined"})
    """

    random_effects: Mapping[str, float] = field(default_factory=dict)
    covariate_effects: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    error: Mapping[str, str] = field(default_factory=dict)
    fixed: Sequence[str] = ()
    correlation: bool = False

    def __post_init__(self) -> None:
        for name in ("random_effects", "covariate_effects", "error"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise SpecError(
                    f"Population: {name} must be a dict, got {type(value).__name__} {value!r}"
                )
        for name, value in self.covariate_effects.items():
            if not isinstance(value, Mapping):
                raise SpecError(
                    f"Population: covariate_effects['{name}'] must be a dict covariate -> form, "
                    f"got {value!r}"
                )
        if isinstance(self.fixed, str) or not isinstance(self.fixed, Sequence):
            raise SpecError(
                f"Population: fixed must be a list of parameter names, got {self.fixed!r}"
            )
        object.__setattr__(self, "random_effects", MappingProxyType(dict(self.random_effects)))
        object.__setattr__(
            self,
            "covariate_effects",
            MappingProxyType({k: dict(v) for k, v in self.covariate_effects.items()}),
        )
        object.__setattr__(self, "error", MappingProxyType(dict(self.error)))
        object.__setattr__(self, "fixed", tuple(self.fixed))
        if not isinstance(self.correlation, bool):
            raise SpecError(f"Population: correlation = {self.correlation!r} must be True/False")
        if self.correlation and len(self.random_effects) < 2:
            raise SpecError("Population: correlation=True needs random effects on >= 2 parameters")
        for k, v in self.random_effects.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise SpecError(f"Population: random_effects['{k}'] = {v!r} must be a scale > 0")

    def validate(self, spec: ModelSpec) -> None:
        """Check every name against the model; raise `SpecError` naming the offender."""
        params = spec.parameters
        for k in self.random_effects:
            if k not in params:
                raise SpecError(
                    f"Population: random effect on unknown parameter '{k}'; parameters: "
                    + ", ".join(params)
                )
        for k in self.fixed:
            if k not in params:
                raise SpecError(f"Population: fixed unknown parameter '{k}'")
            if k in self.random_effects:
                raise SpecError(f"Population: '{k}' is both fixed and has a random effect")
        for k, effects in self.covariate_effects.items():
            if k not in params:
                raise SpecError(f"Population: covariate effect on unknown parameter '{k}'")
            if k in self.fixed:
                raise SpecError(f"Population: '{k}' is both fixed and has a covariate effect")
            for cov, form in effects.items():
                check_form(form, f"Population: covariate_effects['{k}']['{cov}']")
        for k in [*self.random_effects, *self.covariate_effects]:
            if k in spec.physiology:
                raise SpecError(
                    f"Population: '{k}' comes from the {spec.species} physiology table and is "
                    "not estimated; it cannot have a random or covariate effect"
                )
        for obs, model in self.error.items():
            if obs not in spec.observations:
                raise SpecError(
                    f"Population: error model for unknown observation '{obs}'; observations: "
                    + ", ".join(spec.observations)
                )
            if model not in ERROR_MODELS or model == "none":
                raise SpecError(
                    f"Population: error['{obs}'] = {model!r}; expected additive, proportional, "
                    "combined or lognormal"
                )

    def error_model(self, spec: ModelSpec, observation: str) -> str:
        """The residual error model used for `observation`."""
        model = self.error.get(observation, spec.observations[observation].error)
        return "additive" if model == "none" else model

    def estimated(self, spec: ModelSpec) -> list[str]:
        """Parameters whose typical values are estimated (all but the fixed ones and the
        physiology-table values)."""
        return [k for k in spec.parameters if k not in self.fixed and k not in spec.physiology]

    def effect_covariates(self) -> tuple[str, ...]:
        """The covariates of the covariate effects, in order of appearance."""
        return tuple(dict.fromkeys(c for e in self.covariate_effects.values() for c in e))

    def effects(
        self,
        parameter: str,
        references: Mapping[str, float] | None = None,
        levels: Mapping[str, tuple[float, list[float]]] | None = None,
    ) -> list[CovariateEffect]:
        """The covariate effects on `parameter`, with the references and categorical levels
        they are estimated against (a fit's `covariate_design`)."""
        return [
            CovariateEffect.of(parameter, cov, form, references or {}, levels or {})
            for cov, form in self.covariate_effects.get(parameter, {}).items()
        ]

    def describe(self) -> dict[str, Any]:
        return {
            "random_effects": dict(self.random_effects),
            "covariate_effects": {k: dict(v) for k, v in self.covariate_effects.items()},
            "error": dict(self.error),
            "fixed": list(self.fixed),
            "correlation": self.correlation,
        }
