"""One naming scheme for the sample sites of a fit and the design it records.

Every posterior variable of `cp.fit` is named here, and only here: the typical value
``<p>``, the between-subject SD ``omega_<p>``, the standardised deviation ``eta_<p>``, the
individual value ``<p>_i`` (its log ``log_<p>_i`` when sampled centred), the population
value ``_pop_<p>`` (eta = 0, removed before the posterior is returned), the covariate
coefficients ``beta_<p>_<cov>`` and ``beta_<p>_<cov>_<level>`` (categorical), the residual
SDs ``sigma_<kind>_<observation>`` and the correlated random effects ``L_iiv``,
``corr_iiv``, ``eta_iiv``. Readers of a fit (predictions, plots) parse names with the
functions below, never with their own prefixes.

What covariate effects were estimated against travels with the posterior as JSON strings
in its attrs: `design_attrs` writes them, `FitDesign.from_attrs` reads them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..population.effects import level_name
from ..population.error import SIGMAS

__all__ = [
    "CORRELATION_SITES",
    "FitDesign",
    "beta",
    "design_attrs",
    "eta",
    "is_beta",
    "is_subject_site",
    "omega",
    "parse_omega",
    "parse_sigma",
    "sigma",
]

#: the sites of correlated random effects: Cholesky factor, correlation matrix, etas
CORRELATION_SITES = ("L_iiv", "corr_iiv", "eta_iiv")
#: deterministic sites holding each subject's population value (eta = 0), for PRED
PRED_PREFIX = "_pop_"
_SIGMA_KINDS = tuple(dict.fromkeys(k for kinds in SIGMAS.values() for k in kinds))


def omega(parameter: str) -> str:
    """Between-subject SD of log `parameter`."""
    return f"omega_{parameter}"


def parse_omega(name: str) -> str | None:
    """The parameter of an ``omega_<p>`` site, else None."""
    return name[len("omega_") :] if name.startswith("omega_") else None


def eta(parameter: str) -> str:
    """Standardised between-subject deviation of `parameter`, per subject."""
    return f"eta_{parameter}"


def individual(parameter: str) -> str:
    """Each subject's value of `parameter` (at its first record)."""
    return f"{parameter}_i"


def log_individual(parameter: str) -> str:
    """Log of each subject's value, the site sampled in the centred parameterisation."""
    return f"log_{parameter}_i"


def population_value(parameter: str) -> str:
    """Each subject's population value of `parameter` (eta = 0), for PRED."""
    return f"{PRED_PREFIX}{parameter}"


def is_subject_site(name: str) -> bool:
    """Whether a site holds one value per subject (``<p>_i``, ``eta_<p>``, ``eta_iiv``)."""
    return name.endswith("_i") or name.startswith("eta_")


def beta(parameter: str, covariate: str, level: float | None = None) -> str:
    """Coefficient of the effect of `covariate` on `parameter`; with `level`, that of one
    non-reference level of a categorical covariate (spelled by `level_name`)."""
    site = f"beta_{parameter}_{covariate}"
    return site if level is None else f"{site}_{level_name(level)}"


def has_level_coefficients(names: Iterable[str], parameter: str, covariate: str) -> bool:
    """Whether `names` hold a coefficient of some level of categorical `covariate` on
    `parameter`."""
    prefix = beta(parameter, covariate) + "_"
    return any(str(k).startswith(prefix) for k in names)


def is_beta(name: str) -> bool:
    """Whether a site is a covariate coefficient."""
    return name.startswith("beta_")


def sigma(kind: str, observation: str) -> str:
    """Residual SD of kind `kind` (``add``, ``prop``, ``log``: `SIGMAS`) of `observation`."""
    return f"sigma_{kind}_{observation}"


def parse_sigma(name: str) -> tuple[str, str] | None:
    """(kind, observation) of a ``sigma_<kind>_<observation>`` site, else None."""
    for kind in _SIGMA_KINDS:
        prefix = sigma(kind, "")
        if name.startswith(prefix) and len(name) > len(prefix):
            return kind, name[len(prefix) :]
    return None


def is_prior_name(name: str) -> bool:
    """Whether `name` is a site other than a typical value that `fit(priors=)` may set."""
    return name.startswith(("omega_", "sigma_", "beta_"))


@dataclass(frozen=True)
class FitDesign:
    """What a fit was: its Population, what its covariate effects were estimated against,
    and the observations it used, as recorded in the posterior's attrs.

    Attributes
    ----------
    population : dict
        `Population.describe()` of the fit (empty when not recorded).
    references : dict str -> float
        Reference value of each continuous covariate.
    levels : dict str -> (float, list of float)
        (reference level, other levels) of each categorical covariate.
    outputs : list of str or None
        The observations fitted, in the order of the data's ``output`` index.
    """

    population: dict[str, Any] = field(default_factory=dict)
    references: dict[str, float] = field(default_factory=dict)
    levels: dict[str, tuple[float, list[float]]] = field(default_factory=dict)
    outputs: list[str] | None = None

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> FitDesign:
        """Decode the attrs that `design_attrs` wrote (missing ones: empty)."""

        def read(key: str, default: Any) -> Any:
            return json.loads(attrs[key]) if key in attrs else default

        levels = read("categorical_levels", {})
        return cls(
            read("population", {}),
            read("covariate_references", {}),
            {c: (ref, list(others)) for c, (ref, others) in levels.items()},
            read("outputs", None),
        )


def design_attrs(
    population: Mapping[str, Any],
    references: Mapping[str, float],
    levels: Mapping[str, tuple[float, list[float]]],
    outputs: Iterable[str],
) -> dict[str, str]:
    """The posterior attrs that record a fit's design as JSON strings (netCDF attrs hold no
    nested values): ``population`` (`Population.describe()`), ``covariate_references``,
    ``categorical_levels`` (`covariate_design`) and ``outputs``; read back with
    `FitDesign.from_attrs`."""
    return {
        "population": json.dumps(dict(population)),
        "categorical_levels": json.dumps(dict(levels)),
        "covariate_references": json.dumps(dict(references)),
        "outputs": json.dumps(list(outputs)),
    }
