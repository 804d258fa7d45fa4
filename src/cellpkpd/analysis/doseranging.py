"""Virtual populations and dose-ranging: which dose, schedule and product attributes reach
a target, over a population of virtual hosts.

`VirtualPopulation` draws parameters (typical values x log-normal between-subject
variability x covariate effects) and covariates (host and product attributes) for ``n``
virtual subjects, or takes them from a fit's posterior. `dose_ranging` evaluates every arm of
a dose x regimen x attribute grid on every virtual subject in one `cp.sweep` call and
summarises the metrics per arm as a tidy table.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
import pandas as pd

from .._core.display import as_table
from .._core.errors import DosingError, SpecError
from ..data.simulate import outside_bounds
from ..engine.dosing import Dose, DoseArrays, Regimen, stack_dose_arrays, traced_path
from ..engine.options import SolverOptions
from ..engine.solve import SOLVED
from ..population.effects import CONTINUOUS_FORMS, CovariateEffect, check_form
from ..spec.model import ModelSpec, load_model

if TYPE_CHECKING:
    from .sweep import RunOptions

__all__ = [
    "TARGET_OPERATORS",
    "VirtualPopulation",
    "attainment_dose",
    "dose_for_attainment",
    "dose_ranging",
    "targeted_metric",
]

TARGET_OPERATORS = (">=", ">", "<=", "<")


# ---------------------------------------------------------------------- helpers
def _spec(spec: ModelSpec | str) -> ModelSpec:
    return spec if isinstance(spec, ModelSpec) else load_model(spec)


def _key(seed: Any, where: str) -> Any:
    """A JAX PRNG key from an int seed, a numpy Generator or a JAX key."""
    if isinstance(seed, np.random.Generator):
        return jax.random.PRNGKey(int(seed.integers(0, 2**31 - 1)))
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return jax.random.PRNGKey(int(seed))
    if isinstance(seed, jax.Array) and (
        jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key)
        or (seed.shape == (2,) and seed.dtype == np.uint32)
    ):
        return seed
    raise SpecError(
        f"{where}: seed = {seed!r} must be an int, a numpy Generator or a jax.random key"
    )


def _distribution(value: Any, where: str) -> Any:
    """A numpyro distribution from a prior string or a numpyro distribution."""
    import numpyro.distributions as dist

    if isinstance(value, dist.Distribution):
        if value.batch_shape or value.event_shape:
            raise SpecError(f"{where}: expected a scalar (univariate) distribution")
        return value
    if isinstance(value, str):
        from ..infer.model import prior_distribution

        return prior_distribution(value, where)
    raise SpecError(
        f"{where} = {value!r}: expected a number, an array (n,), a numpyro distribution or a "
        "string such as 'lognormal(log(70), 0.2)'"
    )


def _draw(value: Any, n: int, key: Any, where: str) -> np.ndarray:
    """Values (n,) of one covariate: a constant, an array, or draws of a distribution."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        out = np.full(n, float(value))
    elif isinstance(value, (list, tuple, np.ndarray, jax.Array)):
        out = np.asarray(value, dtype=float)
        if out.shape != (n,):
            raise SpecError(f"{where}: array of shape {out.shape}; expected ({n},)")
    else:
        d = _distribution(value, where)
        out = np.asarray(d.sample(key, (n,)), dtype=float)
    bad = ~np.isfinite(out)
    if bad.any():
        raise SpecError(f"{where}: {int(bad.sum())} values are not finite")
    return out


def _draw_covariates(
    spec: ModelSpec, n: int, covariates: Mapping[str, Any], key: Any, where: str
) -> dict[str, np.ndarray]:
    """Values (n,) of every model covariate: its model-file value, or what `covariates`
    gives (a constant, an array or draws, see `_draw`), within the covariate's bounds."""
    values = {k: np.full(n, float(c.value)) for k, c in spec.covariates.items()}
    keys = jax.random.split(key, max(len(covariates), 1))
    for (name, value), k in zip(covariates.items(), keys, strict=False):
        values[name] = _draw(value, n, k, f"{where}: covariates['{name}']")
        _check_covariate_bounds(spec, name, values[name], where)
    return values


def _check_covariate_bounds(spec: ModelSpec, name: str, x: np.ndarray, where: str) -> None:
    """Values (n,) of a model covariate must lie within its ``[covariates]`` bounds
    (`outside_bounds`, worded per subject)."""
    bad = outside_bounds(spec, name, x, kinds=("covariate",))
    if bad is not None:
        raise SpecError(
            f"{where}: covariates['{name}'] gives {bad.index.size} of {x.size} values outside "
            f"its bounds [{bad.lo:g}, {bad.hi:g}] in {spec.source} (first: subject "
            f"{bad.first}, {bad.value:.6g})"
        )


# ---------------------------------------------------------------------- population
class VirtualPopulation:
    """Parameters and covariates of ``n`` virtual subjects.

    Parameters
    ----------
    spec : ModelSpec or str
        The model: names are checked against its parameters and covariates.
    n : int
        Number of virtual subjects.
    random_effects : dict str -> float, optional
        Parameter -> omega, the SD of log(parameter) between subjects: individual values
        are ``theta * effects * exp(eta)``, ``eta ~ Normal(0, omega^2)``
        (``{"CL": 0.3}``: about 30% CV).
    correlation : array (k, k), optional
        Correlation matrix of the etas, rows and columns in the order of `random_effects`
        (symmetric, unit diagonal, positive definite). Default: independent.
    covariates : dict str -> value, optional
        Covariate -> a number (same for all), an array (n,), a numpyro distribution, or a
        string in the model files' prior syntax (``"lognormal(log(70), 0.2)"``,
        ``"uniform(0.5, 1)"``, ``"beta(9, 1)"``...). Covariates of the model not named here
        take their model-file defaults. A name that is not a model covariate is allowed only
        when a covariate effect uses it (e.g. body weight on CL for a model without a WT
        covariate).
    covariate_effects : dict str -> dict str -> tuple
        Parameter -> covariate -> ``(form, coefficient)`` or ``(form, coefficient, ref)``;
        forms as in `cp.Population`: ``"power"`` ``(cov / ref) ** coef``,
        ``"exponential"`` ``exp(coef * (cov - ref))``, ``"linear"``
        ``1 + coef * (cov - ref)``. ``ref`` defaults to the covariate's model-file value
        (required for covariates the model does not declare).
    typical : dict str -> float, optional
        Typical values replacing the model file's [parameter unit].
    seed : int, numpy.random.Generator or jax key
        Draws are reproducible for a given seed.

    Attributes
    ----------
    params : dict str -> array (n,)
        Every model parameter [its unit] per subject.
    covariates : dict str -> array (n,)
        Every model covariate (and any extra covariate used by an effect) per subject.

    Examples
    --------
    >>> pop = cp.VirtualPopulation(
    ...     "one_cmt_iv", 1000, random_effects={"CL": 0.3, "V": 0.2},
    ...     covariates={"WT": "lognormal(log(70), 0.2)"},
    ...     covariate_effects={"CL": {"WT": ("power", 0.75, 70.0)}}, seed=1)
    >>> pop.to_frame().describe()
    """

    def __init__(
        self,
        spec: ModelSpec | str,
        n: int,
        *,
        random_effects: Mapping[str, float] | None = None,
        correlation: Any = None,
        covariates: Mapping[str, Any] | None = None,
        covariate_effects: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
        typical: Mapping[str, float] | None = None,
        seed: Any = 0,
    ) -> None:
        where = "VirtualPopulation"
        self._refuse_traced(
            where,
            n=n,
            random_effects=random_effects,
            correlation=correlation,
            covariates=covariates,
            covariate_effects=covariate_effects,
            typical=typical,
        )
        self.spec = spec = _spec(spec)
        n = self._check_n(n, where)
        k_eta, k_cov = jax.random.split(_key(seed, where))
        random_effects = dict(random_effects or {})
        covariates = dict(covariates or {})
        covariate_effects = {k: dict(v) for k, v in (covariate_effects or {}).items()}
        effect_covs = {c for eff in covariate_effects.values() for c in eff}
        for name in covariates:
            if name not in spec.covariates and name not in effect_covs:
                raise SpecError(
                    f"{where}: unknown covariate '{name}' (not declared by {spec.name} nor "
                    f"used by a covariate effect); covariates: {', '.join(spec.covariates) or '-'}"
                )
        self.covariates = _draw_covariates(spec, n, covariates, k_cov, where)
        params = self._typical_values(spec, n, dict(typical or {}), where)
        for pname, effects in covariate_effects.items():
            params[pname] = self._apply_effects(spec, pname, effects, params, self.covariates)
        if random_effects:
            self._apply_random_effects(spec, params, random_effects, correlation, k_eta, where)
        elif correlation is not None:
            raise SpecError(f"{where}: correlation given without random_effects")
        self._check_parameter_bounds(spec, params, n, where)
        self.params = params
        self.random_effects = random_effects

    @staticmethod
    def _refuse_traced(where: str, **given: Any) -> None:
        """A `SpecError` for a JAX-traced argument: a population is concrete numbers."""
        found = next((w for k, v in given.items() if (w := traced_path(v, k))), None)
        if found is not None:
            raise SpecError(
                f"{where}: {found} is a traced JAX value; a virtual population is drawn once "
                "as concrete numbers. Draw it with concrete values and differentiate through "
                "cp.Simulator instead, e.g. jax.vmap(sim, (0, None))({**pop.params, 'CL': "
                "pop.params['CL'] * factor}, doses) with a traced factor"
            )

    @staticmethod
    def _typical_values(
        spec: ModelSpec, n: int, typical: Mapping[str, float], where: str
    ) -> dict[str, np.ndarray]:
        """Every parameter (n,) at its typical value: `typical`'s, else the model file's."""
        for name, v in typical.items():
            if name not in spec.parameters:
                raise SpecError(f"{where}: typical value for unknown parameter '{name}'")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SpecError(f"{where}: typical['{name}'] = {v!r} must be a finite number")
        return {k: np.full(n, float(typical.get(k, p.value))) for k, p in spec.parameters.items()}

    @classmethod
    def _apply_effects(
        cls,
        spec: ModelSpec,
        pname: str,
        effects: Mapping[str, Sequence[Any]],
        params: Mapping[str, np.ndarray],
        covariates: Mapping[str, np.ndarray],
    ) -> np.ndarray:
        """Parameter `pname` (n,) times its covariate effects (`CovariateEffect`)."""
        where = "VirtualPopulation"
        if pname not in spec.parameters:
            raise SpecError(f"{where}: covariate effect on unknown parameter '{pname}'")
        value = params[pname]
        for cov, effect in effects.items():
            label = f"{where}: covariate_effects['{pname}']['{cov}']"
            form, coef, ref = cls._effect(effect, label)
            if cov not in covariates:
                raise SpecError(f"{label}: covariate '{cov}' has no values; give covariates=")
            if ref is None:
                if cov not in spec.covariates:
                    raise SpecError(
                        f"{label}: '{cov}' is not a model covariate; give (form, coef, ref)"
                    )
                ref = float(spec.covariates[cov].value)
            parsed = CovariateEffect(pname, cov, form, ref)
            parsed.check_values(covariates[cov], label)
            value = parsed.apply(value, covariates[cov], coef)
        return value

    @classmethod
    def _apply_random_effects(
        cls,
        spec: ModelSpec,
        params: dict[str, np.ndarray],
        random_effects: Mapping[str, float],
        correlation: Any,
        key: Any,
        where: str,
    ) -> None:
        """Multiply each parameter of `random_effects` by ``exp(eta)`` in place, the etas
        ``Normal(0, omega^2)``, correlated as `correlation` says."""
        names = list(random_effects)
        omega = np.empty(len(names))
        for i, name in enumerate(names):
            w = random_effects[name]
            if name not in spec.parameters:
                raise SpecError(
                    f"{where}: random effect on unknown parameter '{name}'; parameters: "
                    + ", ".join(spec.parameters)
                )
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
                raise SpecError(f"{where}: random_effects['{name}'] = {w!r} must be >= 0")
            omega[i] = w
        chol = cls._cholesky(correlation, len(names), where)
        n = len(next(iter(params.values())))
        z = np.asarray(jax.random.normal(key, (n, len(names))), dtype=float)
        eta = (z @ chol.T) * omega
        for i, name in enumerate(names):
            params[name] = params[name] * np.exp(eta[:, i])

    @staticmethod
    def _check_parameter_bounds(
        spec: ModelSpec, params: Mapping[str, np.ndarray], n: int, where: str
    ) -> None:
        """Every subject's parameters within their bounds (a NaN is outside too)."""
        for name, x in params.items():
            lo, hi = spec.parameters[name].bounds
            outside = ~((x >= lo) & (x <= hi))
            if outside.any():
                raise SpecError(
                    f"{where}: {int(outside.sum())} of {n} values of '{name}' fall outside its "
                    f"bounds [{lo:g}, {hi:g}] (first {x[outside][0]:.4g}); lower its random "
                    "effect or covariate effect"
                )

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(
        cls,
        spec: ModelSpec | str,
        params: Mapping[str, Any] | None = None,
        covariates: Mapping[str, Any] | None = None,
    ) -> VirtualPopulation:
        """A population from explicit per-subject values (dict name -> scalar or array (n,)).

        Unnamed parameters and covariates take the model's values.
        """
        spec = _spec(spec)
        given = {**(params or {}), **(covariates or {})}
        sizes = {np.size(v) for v in given.values() if np.ndim(v) > 0}
        if len(sizes) > 1:
            raise SpecError(f"VirtualPopulation.from_arrays: arrays of different lengths {sizes}")
        n = sizes.pop() if sizes else 1
        out = cls.__new__(cls)
        out.spec = spec
        out.random_effects = {}
        out.params = {k: np.full(n, float(p.value)) for k, p in spec.parameters.items()}
        out.covariates = {k: np.full(n, float(c.value)) for k, c in spec.covariates.items()}
        for name, value in given.items():
            target = out.params if name in spec.parameters else out.covariates
            if name not in spec.parameters and name not in spec.covariates:
                raise SpecError(
                    f"VirtualPopulation.from_arrays: '{name}' is not a parameter or covariate "
                    f"of {spec.name}"
                )
            x = np.broadcast_to(np.asarray(value, dtype=float), (n,)).copy()
            if not np.isfinite(x).all():
                raise SpecError(f"VirtualPopulation.from_arrays: '{name}' has non-finite values")
            if name in spec.covariates:
                _check_covariate_bounds(spec, name, x, "VirtualPopulation.from_arrays")
            target[name] = x
        return out

    @classmethod
    def from_posterior(
        cls,
        idata: Any,
        spec: ModelSpec | str,
        population: Any = None,
        n: int = 1000,
        seed: Any = 0,
        covariates: Mapping[str, Any] | None = None,
        omega: Mapping[str, float] | None = None,
    ) -> VirtualPopulation:
        """Virtual subjects from a fit's posterior (uncertainty and variability).

        Each subject takes one random posterior draw of the typical values, omegas and
        covariate coefficients and a new ``eta ~ Normal(0, 1)`` per random effect:
        ``p_i = theta * effects(cov_i) * exp(omega * eta_i)`` (as `cp.predict`). The
        ``omega_*`` of a MAP fit are not estimates, so a MAP fit with random effects needs
        `omega` (a `SpecError` otherwise).

        Parameters
        ----------
        idata : arviz.InferenceData
            From `cp.fit`.
        spec : ModelSpec or str
            The fitted model.
        population : cp.Population, optional
            The fit's population (default: the one recorded in the posterior's attributes).
        n : int
            Number of virtual subjects.
        seed : int, numpy Generator or jax key
        covariates : dict, optional
            Covariates of the new subjects, as in `VirtualPopulation` (numbers, arrays,
            distributions or prior strings); default: the model's values.
        omega : dict str -> float, optional
            Between-subject SDs of the log-parameters instead of the fit's ``omega_<p>``
            draws (keys: the fit's random effects); required, with every random effect,
            for a MAP fit (``method="map"`` in the posterior's attrs), whose etas are then
            independent.
        """
        from ..infer.posterior import explicit_omegas, posterior_subjects

        where = "VirtualPopulation.from_posterior"
        spec = _spec(spec)
        n = cls._check_n(n, where)
        post = getattr(idata, "posterior", None)
        if post is None:
            raise SpecError(f"{where}: idata has no posterior group (pass cp.fit's result)")
        if population is not None:
            pop = population.describe() if hasattr(population, "describe") else dict(population)
        else:
            pop = json.loads(post.attrs.get("population", "{}"))
        omega = explicit_omegas(post, spec, omega, where)
        key = _key(seed, where)
        k_draw, k_eta, k_cov = jax.random.split(key, 3)
        rng = np.random.default_rng(np.asarray(jax.random.key_data(k_draw)).ravel())
        out = cls.from_arrays(spec)
        out.covariates = _draw_covariates(spec, n, dict(covariates or {}), k_cov, where)
        total = post.sizes["chain"] * post.sizes["draw"]
        pick = rng.integers(0, total, size=n)
        n_iiv = sum(f"omega_{k}" in post for k in spec.parameters)
        z = np.asarray(jax.random.normal(k_eta, (n, n_iiv)), dtype=float)
        # the same construction as cp.predict (covariate references and categorical
        # levels of the fit, correlated etas when the fit estimated a correlation)
        out.params = posterior_subjects(
            post, spec, out.covariates, pick, z, where, pop, omega=omega
        )
        out.random_effects = dict(pop.get("random_effects", {}))
        return out

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _check_n(n: Any, where: str) -> int:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise SpecError(f"{where}: n = {n!r} must be an integer >= 1")
        return int(n)

    @staticmethod
    def _effect(effect: Any, label: str) -> tuple[str, float, float | None]:
        if isinstance(effect, str) or not isinstance(effect, Sequence) or len(effect) not in (2, 3):
            raise SpecError(
                f"{label} = {effect!r}: expected (form, coefficient) or (form, coefficient, ref), "
                "e.g. ('power', 0.75)"
            )
        form, coef, *rest = effect
        check_form(form, label, CONTINUOUS_FORMS)
        try:
            coef = float(coef)
            ref = float(rest[0]) if rest else None
        except (TypeError, ValueError):
            raise SpecError(f"{label}: coefficient and ref must be numbers") from None
        return form, coef, ref

    @staticmethod
    def _cholesky(correlation: Any, k: int, where: str) -> np.ndarray:
        if correlation is None:
            return np.eye(k)
        r = np.asarray(correlation, dtype=float)
        if r.shape != (k, k):
            raise SpecError(
                f"{where}: correlation has shape {r.shape}; expected ({k}, {k}) in the order of "
                "random_effects"
            )
        if not (np.allclose(r, r.T) and np.allclose(np.diag(r), 1.0)):
            raise SpecError(f"{where}: correlation must be symmetric with a unit diagonal")
        try:
            return np.linalg.cholesky(r)
        except np.linalg.LinAlgError:
            raise SpecError(f"{where}: correlation matrix is not positive definite") from None

    # ------------------------------------------------------------ views
    def __len__(self) -> int:
        return int(next(iter(self.params.values())).shape[0]) if self.params else 1

    def __repr__(self) -> str:
        varied = list(self.to_frame(varying_only=True).columns)
        return (
            f"VirtualPopulation({self.spec.name}, n={len(self)}, varying: "
            f"{', '.join(varied) or 'none'})"
        )

    def model_covariates(self) -> dict[str, np.ndarray]:
        """The covariates the model declares (what the simulator takes)."""
        return {k: v for k, v in self.covariates.items() if k in self.spec.covariates}

    def to_frame(self, varying_only: bool = False) -> pd.DataFrame:
        """One row per subject (index ``subject``), one column per parameter and covariate.

        Parameters
        ----------
        varying_only : bool
            Keep only the columns whose values differ between subjects (those drawn, or
            moved by random or covariate effects). A column that is left out has one value
            for every subject, exactly; note that ``describe()`` of such a column may still
            show a standard deviation of about 1e-17, pandas' rounding error in the mean of
            equal numbers, not a spread of the values.
        """
        frame = pd.DataFrame({**self.params, **self.covariates})
        frame.index.name = "subject"
        if varying_only:
            values = frame.to_numpy()
            frame = frame.loc[:, (values != values[:1]).any(axis=0)]
        return frame


# ---------------------------------------------------------------------- dose ranging
def _scaled(regimen: Regimen, dose: float | None) -> Regimen:
    if dose is None:
        return regimen
    return Regimen(
        [
            dataclasses.replace(e, amount=e.amount * dose) if isinstance(e, Dose) else e
            for e in regimen.events
        ]
    )


def _arms(
    arms: Mapping[str, Any] | Sequence[Mapping[str, Any]], regimen: Regimen | None
) -> list[dict[str, Any]]:
    """Expand a grid (dict of factor -> levels) or check a list of arm dicts.

    Returns dicts with "dose" (float or None), "regimen" (label, Regimen) and attributes.
    """
    where = "dose_ranging"
    if isinstance(arms, Mapping):
        if not arms:
            raise SpecError(f"{where}: arms is empty")
        factors: dict[str, list[Any]] = {}
        for name, levels in arms.items():
            if name == "regimen":
                if isinstance(levels, Regimen):
                    levels = {"regimen": levels}
                if not isinstance(levels, Mapping) or not levels:
                    raise SpecError(f"{where}: arms['regimen'] must be a dict label -> cp.Regimen")
                factors[name] = list(levels.items())
            else:
                vals = np.atleast_1d(np.asarray(levels, dtype=object))
                if vals.ndim != 1 or vals.size == 0:
                    raise SpecError(f"{where}: arms['{name}'] must be a list of values")
                factors[name] = list(vals)
        grid = [
            dict(zip(factors, combo, strict=True)) for combo in itertools.product(*factors.values())
        ]
    else:
        try:
            grid = [dict(a) for a in arms]
        except (TypeError, ValueError):
            raise SpecError(
                f"{where}: arms must be a dict of factor -> levels or a list of dicts"
            ) from None
        if not grid:
            raise SpecError(f"{where}: arms is empty")
    out = []
    labels: dict[int, str] = {}
    for i, arm in enumerate(grid):
        reg = arm.pop("regimen", None)
        if reg is None:
            if regimen is None:
                raise SpecError(
                    f"{where}: arm {i} has no regimen; give arms['regimen'] or regimen="
                )
            reg = ("regimen", regimen)
        if isinstance(reg, Regimen):
            label = labels.setdefault(id(reg), f"regimen {len(labels)}")
            reg = (label, reg)
        if not (isinstance(reg, tuple) and len(reg) == 2 and isinstance(reg[1], Regimen)):
            raise SpecError(f"{where}: arm {i} regimen must be a cp.Regimen or (label, Regimen)")
        dose = arm.pop("dose", None)
        if dose is not None:
            try:
                dose = float(dose)
            except (TypeError, ValueError):
                raise SpecError(f"{where}: arm {i} dose = {dose!r} is not a number") from None
            if not (math.isfinite(dose) and dose >= 0):
                raise DosingError(f"{where}: arm {i} dose = {dose!r} must be a number >= 0")
        attrs = {}
        for name, value in arm.items():
            try:
                attrs[name] = float(value)
            except (TypeError, ValueError):
                raise SpecError(f"{where}: arm {i} {name} = {value!r} is not a number") from None
            if not math.isfinite(attrs[name]):
                raise SpecError(f"{where}: arm {i} {name} = {value!r} is not finite")
        out.append({"dose": dose, "regimen": (str(reg[0]), reg[1]), "attributes": attrs})
    return out


def _check_target(target: Mapping[str, Any] | None, metrics: Mapping[str, Any]) -> dict:
    if target is None:
        return {}
    if not isinstance(target, Mapping):
        raise SpecError("dose_ranging: target must be a dict metric -> (operator, value)")
    out = {}
    for name, rule in target.items():
        if name not in metrics:
            raise SpecError(
                f"dose_ranging: target for unknown metric '{name}'; metrics: {', '.join(metrics)}"
            )
        ok = isinstance(rule, Sequence) and not isinstance(rule, str) and len(rule) == 2
        if ok:
            op, value = rule
            ok = (
                op in TARGET_OPERATORS
                and isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
            )
        if not ok:
            raise SpecError(
                f"dose_ranging: target['{name}'] = {rule!r}; expected (operator, value) with "
                f"operator one of {' '.join(TARGET_OPERATORS)} and a finite value, e.g. "
                "('>=', 50.0)"
            )
        out[name] = (op, float(value))
    return out


def _percentile(x: np.ndarray, q: float) -> float:
    """`numpy.percentile` (linear method) of values that may be +-inf: they sort to the
    ends, and a percentile that lands on or interpolates towards an infinite value is that
    infinity (numpy gives NaN there, from inf - inf or 0 * inf). NaN if any value is NaN
    or there are none."""
    x = np.sort(np.asarray(x, dtype=float))
    if x.size == 0 or np.isnan(x).any():
        return float("nan")
    h = (x.size - 1) * q / 100.0
    lo = int(np.floor(h))
    hi = min(lo + 1, x.size - 1)
    frac = h - lo
    a, b = x[lo], x[hi]
    if frac == 0.0 or a == b:
        return float(a)
    if np.isinf(a) or np.isinf(b):
        return float(b if np.isinf(b) else a)
    return float(a + frac * (b - a))


def _attained(x: np.ndarray, op: str, value: float) -> np.ndarray:
    return {">=": x >= value, ">": x > value, "<=": x <= value, "<": x < value}[op]


def metric_unit(metric: Any, spec: ModelSpec) -> str:
    """The unit of a `cp.metrics` object's values for `spec` ('' if unknown)."""
    unit = getattr(metric, "unit", None)
    if callable(unit):
        try:
            unit = unit(spec)
        except Exception:  # a unit is only a label
            unit = None
    return str(unit) if unit else ""


def dose_ranging(
    spec: ModelSpec | str,
    arms: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    population: VirtualPopulation | None,
    times: Any,
    metrics: Mapping[str, Any],
    target: Mapping[str, tuple[str, float]] | None = None,
    *,
    regimen: Regimen | None = None,
    chunk_size: int | None = None,
    path: Any = None,
    client: Any = None,
    progress: bool | None = None,
    solver: str | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    return_samples: bool = False,
    run: RunOptions | None = None,
    solver_options: SolverOptions | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, Any]:
    """Metrics per arm of a dose x regimen x product-attribute grid over a virtual population.

    Parameters
    ----------
    spec : ModelSpec or str
        The model.
    arms : dict or list of dict
        A grid: ``{"dose": [1e6, 1e7], "regimen": {"single": reg1, "weekly x4": reg4},
        "viability": [0.7, 0.9]}`` gives every combination. ``dose`` [model amount unit]
        multiplies the amount of every dose of the regimen (so write the regimen with
        amount 1 for "one dose of size `dose`", or with relative amounts such as a loading
        dose of 2); without ``dose`` the regimen's amounts are used as they are. Any other
        factor is a parameter or covariate of the model (e.g. a product attribute) that
        replaces the population's value in that arm. Or a list of arm dicts, e.g.
        ``[{"dose": 1e6, "regimen": ("single", reg1), "viability": 0.9}, ...]``.
    population : VirtualPopulation or None
        The virtual subjects, each evaluated in every arm (None: one typical subject).
    times : array
        Output times [model time unit] on which the metrics are computed.
    metrics : dict str -> Metric
        `cp.metrics` objects, e.g. ``{"auc": cp.metrics.auc("conc")}``.
    target : dict str -> (operator, value), optional
        Target per metric, e.g. ``{"pct_change_min": ("<=", -50.0)}``; operator one of
        ``>= > <= <``. Adds columns ``target`` (text) and ``pta``: the probability of target
        attainment, the fraction of the arm's successfully solved subjects that meet it
        (all of them: a subject whose metric is +-inf is compared as such, e.g. a
        `time_to` never reached, +inf, does not attain ``("<=", 24)``).
    regimen : Regimen, optional
        Used by arms that name no regimen.
    chunk_size, path, client, progress, solver, rtol, atol
        Passed to `cp.sweep` (defaults as there, but ``progress=False``), which evaluates
        all arms x subjects in one call.
    return_samples : bool
        Also return the sweep's per-sample Dataset (dim ``sample`` = arm x subject, arm
        major) with an ``arm`` variable.
    run : RunOptions, optional
        chunk_size, path, client and progress as one object (instead of those keywords; a
        keyword that differs from it is a `SpecError`).
    solver_options : SolverOptions, optional
        solver, rtol, atol (and max_steps) as one object, likewise.

    Returns
    -------
    pandas.DataFrame
        One row per arm x metric: ``arm``, ``dose`` (if a factor), ``regimen``, one column
        per attribute, ``metric``, ``unit``, ``median``, ``p05``, ``p95`` (5th and 95th
        percentiles over the successfully solved subjects), ``n`` (subjects solved),
        ``n_failed`` (subjects whose solve failed, status != 0), and with a target
        ``target`` and ``pta`` (NaN for metrics without a target). ``table.attrs`` holds
        ``model``, ``dose_unit`` and ``time_unit``.

    Notes
    -----
    A solved subject always counts, whatever its metric's value: an infinite value (a
    `time_to` never reached on the grid, a `half_life` of an output that does not decline)
    sorts to the end, and a percentile that lands on or interpolates towards it is reported
    as ``inf`` (numpy's linear method otherwise; numpy itself returns NaN there); in PTA it
    is compared with the target like any number. A NaN value (undefined, e.g. a
    `max_pct_change` from a zero baseline) makes the arm's percentiles and PTA of that
    metric NaN, with a `RuntimeWarning` naming the arm and the count; it is never dropped.
    Only failed solves (``status`` != 0 in the samples) are left out, and counted in
    ``n_failed``. As in PKNCA's summaries, a value that is not a number is reported, not
    imputed.
    """
    from .metrics import named
    from .sweep import RunOptions, run_sweep

    where = "dose_ranging"
    run = RunOptions.merged(run, where, False, chunk_size=chunk_size, path=path,
                            client=client, progress=progress)  # fmt: skip
    solve = SolverOptions.merged(solver_options, where, solver=solver, rtol=rtol, atol=atol)
    spec = _spec(spec)
    metrics = named(metrics, f"{where}: metrics")
    goals = _check_target(target, metrics)
    arm_list = _arms(arms, regimen)
    population = _check_population(spec, population, where)
    attr_names = list(dict.fromkeys(k for a in arm_list for k in a["attributes"]))
    for name in attr_names:
        if name not in spec.parameters and name not in spec.covariates:
            raise SpecError(
                f"{where}: arm factor '{name}' is not 'dose', 'regimen' or a parameter or "
                f"covariate of {spec.name}"
            )
    n_sub, n_arm = len(population), len(arm_list)
    arm_index = np.repeat(np.arange(n_arm), n_sub)
    params, covs = _arm_inputs(spec, arm_list, population, attr_names, arm_index)
    doses, per_kg = _arm_doses(spec, arm_list, {**params, **covs}, arm_index)
    out = run_sweep(
        spec, doses, times, params, metrics, covariates=covs or None, run=run, solver_options=solve
    )
    table = _summary(spec, arm_list, attr_names, metrics, goals, out, n_sub)
    table.attrs.update(
        {
            "model": spec.name,
            "dose_unit": f"{spec.amount_unit}/kg" if per_kg else spec.amount_unit,
            "time_unit": spec.time_unit,
        }
    )
    table = as_table(
        table,
        units={"dose": table.attrs["dose_unit"]},
        title=f"{spec.name}: dose ranging over {n_sub} subjects per arm",
        note="median, p05, p95 in each row's unit"
        + ("; pta: probability of target attainment" if goals else ""),
    )
    if return_samples:
        out = out.assign(arm=("sample", arm_index))
        return table, out
    return table


def _check_population(
    spec: ModelSpec, population: VirtualPopulation | None, where: str
) -> VirtualPopulation:
    """The population (None: one typical subject), drawn for `spec`."""
    if population is None:
        population = VirtualPopulation.from_arrays(spec)
    if not isinstance(population, VirtualPopulation):
        raise SpecError(f"{where}: population must be a cp.VirtualPopulation or None")
    if population.spec.name != spec.name:
        raise SpecError(
            f"{where}: population was drawn for model {population.spec.name}, not {spec.name}"
        )
    return population


def _arm_inputs(
    spec: ModelSpec,
    arm_list: Sequence[Mapping[str, Any]],
    population: VirtualPopulation,
    attr_names: Sequence[str],
    arm_index: np.ndarray,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Parameters and model covariates per sample (arm major): the population's, tiled
    over the arms, with each arm's attribute levels in place of the population's values."""
    n_arm = len(arm_list)
    params = {k: np.tile(v, n_arm) for k, v in population.params.items()}
    covs = {k: np.tile(v, n_arm) for k, v in population.model_covariates().items()}
    for name in attr_names:
        base = params if name in spec.parameters else covs
        default = base[name] if name in base else np.full(arm_index.size, spec.defaults()[name])
        level = np.array([a["attributes"].get(name, np.nan) for a in arm_list])[arm_index]
        base[name] = np.where(np.isnan(level), default, level)
    return params, covs


def _arm_doses(
    spec: ModelSpec,
    arm_list: Sequence[Mapping[str, Any]],
    values: Mapping[str, np.ndarray],
    arm_index: np.ndarray,
) -> tuple[DoseArrays, bool]:
    """Dose arrays, one row per sample, and whether the doses are per kg of body weight.

    Without per-kg doses, each arm's arrays are built once and gathered to its samples.
    A per-kg dose (``cp.Dose(..., per="kg")`` or a unit such as ``cells/kg``) is scaled
    per sample by that subject's body weight, as `cp.sweep` does (`weighted_doses`)."""
    from .sweep import per_body_weight, weighted_doses

    regimens = [_scaled(a["regimen"][1], a["dose"]) for a in arm_list]
    per_kg = [per_body_weight(spec, r) for r in regimens]
    if not any(per_kg):
        arm_doses: DoseArrays = stack_dose_arrays(regimens, spec=spec)
        return jax.tree.map(lambda x: x[arm_index], arm_doses), False
    return weighted_doses(spec, regimens, arm_index, values, "dose_ranging"), all(per_kg)


def _summary(
    spec: ModelSpec,
    arm_list: Sequence[Mapping[str, Any]],
    attr_names: Sequence[str],
    metrics: Mapping[str, Any],
    goals: Mapping[str, tuple[str, float]],
    out: Any,
    n_sub: int,
) -> pd.DataFrame:
    """One row per arm x metric: the arm's factors and the metric's summary (`_metric_row`)."""
    n_arm = len(arm_list)
    status = np.asarray(out["status"].values).reshape(n_arm, n_sub)
    has_dose = any(a["dose"] is not None for a in arm_list)
    rows = []
    for i, arm in enumerate(arm_list):
        base_row: dict[str, Any] = {"arm": i}
        if has_dose:
            base_row["dose"] = np.nan if arm["dose"] is None else arm["dose"]
        base_row["regimen"] = arm["regimen"][0]
        for name in attr_names:
            base_row[name] = arm["attributes"].get(name, np.nan)
        ok = status[i] == SOLVED
        for m, metric in metrics.items():
            y = np.asarray(out[m].values, dtype=float).reshape(n_arm, n_sub)[i][ok]
            row = _metric_row(y, m, i, goals, int((~ok).sum()))
            rows.append({**base_row, "metric": m, "unit": metric_unit(metric, spec), **row})
    return pd.DataFrame(rows)


def _metric_row(
    yv: np.ndarray, m: str, arm: int, goals: Mapping[str, tuple[str, float]], n_failed: int
) -> dict[str, Any]:
    """Median, 5th and 95th percentiles, counts and (with targets) PTA of one metric's
    values `yv` over an arm's solved subjects."""
    undefined = int(np.isnan(yv).sum())
    if undefined:
        warnings.warn(
            f"dose_ranging: metric '{m}' is NaN (undefined) for {undefined} of "
            f"{yv.size} solved subjects of arm {arm}; its percentiles and PTA there "
            "are NaN",
            RuntimeWarning,
            stacklevel=4,
        )
    row = {
        "median": _percentile(yv, 50.0),
        "p05": _percentile(yv, 5.0),
        "p95": _percentile(yv, 95.0),
        "n": int(yv.size),
        "n_failed": n_failed,
    }
    if goals:
        row["target"], row["pta"] = "", np.nan
        if m in goals:
            op, value = goals[m]
            row["target"] = f"{op} {value:g}"
            if yv.size and not undefined:
                row["pta"] = float(_attained(yv, op, value).mean())
    return row


# ---------------------------------------------------------------------- target attainment
#: columns of a `dose_ranging` table that are not arm factors
SUMMARY_COLUMNS = ("arm", "dose", "metric", "unit", "median", "p05", "p95", "n", "n_failed",
                   "target", "pta")  # fmt: skip


def arm_factors(table: pd.DataFrame) -> list[str]:
    """The factor columns of a `dose_ranging` table other than dose (``regimen`` and the
    attributes) that take more than one value: what tells its arms' groups apart."""
    return [
        c for c in table.columns if c not in SUMMARY_COLUMNS and table[c].nunique(dropna=False) > 1
    ]


def targeted_metric(table: pd.DataFrame, where: str) -> str:
    """The only metric of a `dose_ranging` table that has a target (a `SpecError` starting
    with `where` that names them when there are several, or none)."""
    targeted = list(dict.fromkeys(table.loc[table["pta"].notna(), "metric"]))
    if len(targeted) != 1:
        raise SpecError(f"{where}: pick metric= among {', '.join(map(str, targeted))}")
    return targeted[0]


def attainment_dose(dose: Any, pta: Any, target: float = 0.9, log: bool = True) -> float:
    """The lowest dose at which a PTA curve reaches `target`.

    Interpolated between the last dose below the target and the first at or above it,
    linearly in log(dose) when `log` (doses <= 0 are then left out), else in dose; the
    lowest dose when that one reaches it already; NaN when no dose does.

    Parameters
    ----------
    dose, pta : array (k,)
        Doses [dose unit] and their probabilities of target attainment [1], any order.
    target : float
        Probability to reach [1].
    log : bool
        Interpolate in log(dose).
    """
    dose, pta = np.asarray(dose, dtype=float), np.asarray(pta, dtype=float)
    ok = np.isfinite(dose) & np.isfinite(pta) & ((dose > 0) if log else True)
    order = np.argsort(dose[ok])
    d, p = dose[ok][order], pta[ok][order]
    hit = np.flatnonzero(p >= target - 1e-12)
    if not hit.size:
        return float("nan")
    i = int(hit[0])
    if i == 0:
        return float(d[0])
    share = (target - p[i - 1]) / (p[i] - p[i - 1])
    if log:
        return float(np.exp(np.log(d[i - 1]) + share * (np.log(d[i]) - np.log(d[i - 1]))))
    return float(d[i - 1] + share * (d[i] - d[i - 1]))


def dose_for_attainment(
    table: pd.DataFrame,
    metric: str | None = None,
    pta: float = 0.9,
    *,
    by: Sequence[str] | None = None,
    log: bool = True,
) -> pd.DataFrame:
    """The dose that reaches a probability of target attainment, per group of arms.

    Parameters
    ----------
    table : pandas.DataFrame
        From `dose_ranging` with a ``dose`` factor and a target.
    metric : str, optional
        The metric whose PTA to read (default: the only metric with a target).
    pta : float
        Probability to reach [1], in (0, 1].
    by : sequence of str, optional
        Factor columns that make the groups (default: `arm_factors`, every factor other
        than dose that takes more than one value, e.g. ``regimen`` and ``viability``).
    log : bool
        Interpolate between doses linearly in log(dose) (default), else in dose.

    Returns
    -------
    pandas.DataFrame
        One row per group: the `by` columns, ``dose`` (the lowest dose whose PTA reaches
        `pta`, interpolated as in `attainment_dose`; NaN when no dose does) and
        ``max_pta`` (the highest PTA of the group). ``attrs``: ``metric``, ``pta`` and
        ``dose_unit`` (the table's).

    Examples
    --------
    >>> table = cp.dose_ranging(spec, {"dose": [1e6, 1e7, 1e8]}, pop, times,
    ...                         {"s": cp.metrics.max_pct_change("biomarker")},
    ...                         target={"s": ("<=", -50.0)})
    >>> dose_for_attainment(table, "s", pta=0.9)
    """
    where = "dose_for_attainment"
    if not {"dose", "metric", "pta"} <= set(table.columns):
        raise SpecError(
            f"{where}: expected a cp.dose_ranging table with a dose factor and a target "
            "(columns dose, metric, pta)"
        )
    if isinstance(pta, bool) or not isinstance(pta, (int, float)) or not 0.0 < pta <= 1.0:
        raise SpecError(f"{where}: pta = {pta!r}; expected a probability in (0, 1], e.g. 0.9")
    metric = targeted_metric(table, where) if metric is None else metric
    if not table.loc[table["metric"] == metric, "pta"].notna().any():
        raise SpecError(f"{where}: metric '{metric}' has no target in the table")
    rows = table[table["metric"] == metric]
    by = arm_factors(rows) if by is None else list(by)
    parts = rows.groupby(by, sort=False, dropna=False) if by else [((), rows)]
    out = []
    for key, part in parts:
        key = key if isinstance(key, tuple) else (key,)
        curve = part["pta"].to_numpy(float)
        reach = attainment_dose(part["dose"].to_numpy(float), curve, pta, log)
        out.append({**dict(zip(by, key, strict=True)), "dose": reach, "max_pta": np.nanmax(curve)})
    result = pd.DataFrame(out, columns=[*by, "dose", "max_pta"])
    result.attrs.update(
        {"metric": metric, "pta": pta, "dose_unit": table.attrs.get("dose_unit", "")}
    )
    return as_table(
        result,
        units={"dose": result.attrs["dose_unit"]},
        title=f"lowest dose reaching a PTA of {pta:.0%} ({metric})",
    )
