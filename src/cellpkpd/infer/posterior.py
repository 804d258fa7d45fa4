"""What a fit's posterior predicts: new subjects drawn from it (`posterior_subjects`, the
one construction behind `predict` and `VirtualPopulation.from_posterior`), a new regimen
for them (`predict`), replicates of the observed study with new etas and residual error
(`simulate_study`, for VPCs), the fit's own population predictions per draw (PRED,
`population_predictions`), and the check of omegas given in place of a MAP fit's
(`explicit_omegas`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import arviz as az
import numpy as np

from .._core.errors import DataError, SpecError
from ..data.nonmem import Dataset
from ..population.effects import CovariateEffect
from ..population.error import SIGMAS, residual_sd
from ..population.population import Population
from ..spec.model import ModelSpec, load_model
from . import sites
from .data import FitData
from .likelihood import solve_draws

__all__ = [
    "explicit_omegas",
    "population_predictions",
    "posterior_subjects",
    "predict",
    "simulate_study",
]


def _draw_params(
    spec: ModelSpec, fd: FitData, population: Population, samples: Mapping[str, Any], site: Any
) -> dict[str, np.ndarray]:
    """Per-draw, per-subject parameters (chains * draws, n) from posterior samples: the
    ``site(p)`` site where there is one (e.g. `sites.population_value`, eta = 0), else
    ``<p>_i``, else the typical value; model covariates from the data."""
    n = len(fd.ids)
    total = None
    params: dict[str, np.ndarray] = {}
    for name in population.estimated(spec):
        v = samples.get(site(name))
        if v is None:
            v = samples.get(sites.individual(name))
        if v is None:
            v = np.asarray(samples[name])[..., None]
        v = np.asarray(v)
        total = int(np.prod(v.shape[:-1]))
        params[name] = np.broadcast_to(v, (*v.shape[:-1], n)).reshape(total, n)
    for k, v in fd.covariates.items():
        if k in spec.covariates and total is not None:
            params[k] = np.broadcast_to(np.asarray(v, dtype=float), (total, n))
    return params


def population_predictions(
    spec: ModelSpec,
    fd: FitData,
    population: Population,
    samples: dict[str, Any],
    solver: str,
) -> np.ndarray:
    """PRED per draw: the model at each draw's typical values with covariate effects and
    eta = 0, shape (chains, draws, n, R); the population-value sites
    (`sites.population_value`) are removed from samples."""
    shape = np.asarray(samples[population.estimated(spec)[0]]).shape
    params = _draw_params(spec, fd, population, samples, sites.population_value)
    for name in population.estimated(spec):
        samples.pop(sites.population_value(name), None)
    # the covariate coefficients, flattened over chains and draws
    betas = {k: np.asarray(v).reshape(-1) for k, v in samples.items() if sites.is_beta(k)}
    pred = solve_draws(spec, fd, population, params, solver, betas)
    return pred.reshape(*shape, *fd.times.shape)


def predict(
    idata: az.InferenceData,
    spec: ModelSpec | str,
    regimen: Any,
    times: Any,
    n: int = 1000,
    seed: int = 0,
    covariates: Mapping[str, Any] | None = None,
    outputs: Any = None,
    omega: Mapping[str, float] | None = None,
) -> Any:
    """Simulate a (new) regimen for `n` virtual subjects drawn from a fit's posterior.

    Each virtual subject takes one posterior draw of the typical values, omegas and
    covariate coefficients (uncertainty) and a new eta ~ Normal(0, 1) per random effect
    (between-subject variability): ``p_i = theta * cov_effects * exp(omega * eta)``.

    The ``omega_*`` of a MAP fit (``method="map"``, recorded in the posterior's attrs) are
    not estimates of between-subject variability (they grow with their prior scale), so
    for a MAP fit with random effects `omega` is required: a `SpecError` otherwise.

    Parameters
    ----------
    idata : arviz.InferenceData
        From `cp.fit`.
    spec : ModelSpec or str
        The fitted model.
    regimen : Regimen
        The regimen to simulate (the bridge from a fit to dose-ranging).
    times : array
        Output times [model time unit].
    n : int
        Virtual subjects.
    seed : int
    covariates : dict, optional
        Covariate values for the virtual subjects (scalar or array (n,)); default: the
        model's.
    outputs : sequence of str, optional
    omega : dict str -> float, optional
        Between-subject SDs of the log-parameters to simulate with instead of the fit's
        ``omega_<p>`` draws (keys: the fit's random effects; 0 for none). Required, with
        every random effect, for a MAP fit; then the etas are independent (a MAP fit's
        ``L_iiv`` is not an estimate either).

    Returns
    -------
    xarray.Dataset
        `cp.simulate`'s result with dims (subject, time) for the n virtual subjects.
    """
    from ..data.simulate import simulate

    spec = load_model(spec) if not isinstance(spec, ModelSpec) else spec
    if not hasattr(idata, "posterior"):
        raise SpecError(
            f"predict: idata must be the InferenceData of cp.fit, got {type(idata).__name__}"
        )
    post = idata.posterior
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SpecError(f"predict: n = {n!r} must be an integer >= 1")
    rng = np.random.default_rng(seed)
    total = post.sizes["chain"] * post.sizes["draw"]
    pick = rng.integers(0, total, size=n)
    covs = {
        k: np.broadcast_to(np.asarray(v, dtype=float), (n,)) for k, v in (covariates or {}).items()
    }
    iiv = [k for k in spec.parameters if sites.omega(k) in post]
    omega = explicit_omegas(post, spec, omega, "predict")
    z = rng.standard_normal((n, len(iiv)))
    params = posterior_subjects(post, spec, covs, pick, z, "predict", omega=omega)
    params = {k: v for k, v in params.items() if k in post}  # the rest: the model's values
    model_covs = {k: v for k, v in covs.items() if k in spec.covariates}
    return simulate(
        spec, regimen, times, params=params, covariates=model_covs or None, outputs=outputs
    )


def explicit_omegas(
    post: Any, spec: ModelSpec, omega: Mapping[str, float] | None, where: str
) -> dict[str, float] | None:
    """Check the `omega` given to `predict`, `simulate_study` or `from_posterior`.

    A MAP fit (``post.attrs["method"] == "map"``) with random effects needs one: its
    ``omega_*`` are a joint mode, not estimates of between-subject variability (in a
    non-centred model they grow with their prior scale: 0.615 for a true 0.3 seen here),
    and simulating with them would inflate the variability silently.

    Parameters
    ----------
    post : xarray.Dataset
        The posterior group of `cp.fit`'s result.
    spec : ModelSpec
    omega : dict str -> float or None
        Between-subject SD of each log-parameter; keys must be the fit's random effects
        (every one of them for a MAP fit), values finite and >= 0.
    where : str
        Caller's name for error messages.

    Returns
    -------
    dict or None
        `omega` as floats, or None when the posterior's own omegas are to be used.
    """
    iiv = [k for k in spec.parameters if sites.omega(k) in post]
    method = post.attrs.get("method")
    if omega is None:
        if method == "map" and iiv:
            first = {k: float(np.asarray(post[sites.omega(k)].values).ravel()[0]) for k in iiv}
            shown = ", ".join(f"{sites.omega(k)} = {v:.3g}" for k, v in first.items())
            raise SpecError(
                f"{where}: the fit is a MAP fit (method='map'), whose {shown} are not "
                "estimates of between-subject variability; pass omega={"
                + ", ".join(f"'{k}': ..." for k in iiv)
                + "} (SD of each log-parameter) or fit with method='nuts' or 'svi'"
            )
        return None
    if not isinstance(omega, Mapping):
        raise SpecError(f"{where}: omega must be a dict parameter -> SD, got {omega!r}")
    unknown = [k for k in omega if k not in iiv]
    if unknown:
        raise SpecError(
            f"{where}: omega['{unknown[0]}'] is not a random effect of the fit; its random "
            f"effects: {', '.join(iiv) or 'none'}"
        )
    missing = [k for k in iiv if k not in omega]
    if method == "map" and missing:
        raise SpecError(
            f"{where}: a MAP fit's omegas are not estimates; omega must give every random "
            f"effect (missing: {', '.join(missing)})"
        )
    out: dict[str, float] = {}
    for k, v in omega.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            raise SpecError(f"{where}: omega['{k}'] = {v!r} is not a number") from None
        if not (math.isfinite(out[k]) and out[k] >= 0):
            raise SpecError(f"{where}: omega['{k}'] = {v!r} must be finite and >= 0")
    return out


def posterior_subjects(
    post: Any,
    spec: ModelSpec,
    covariates: Mapping[str, np.ndarray],
    pick: np.ndarray,
    z: np.ndarray,
    where: str,
    population: Mapping[str, Any] | None = None,
    omega: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Parameters of new subjects from a fit's posterior: ``p_i = theta * effects(cov_i) *
    exp(omega * eta_i)`` (shared by `predict` and `VirtualPopulation.from_posterior`).

    Parameters
    ----------
    post : xarray.Dataset
        The posterior group of `cp.fit`'s result (its attributes record the population,
        the categorical levels and the covariate references of the fit).
    spec : ModelSpec
    covariates : dict str -> array (n,)
        Covariates of the new subjects (a covariate effect whose covariate is missing uses
        the model file's value, or is an error where the model has none).
    pick : int array (n,)
        Index of the posterior draw (chain x draw, flattened) of each new subject.
    z : array (n, k)
        Standard normal deviates, one per random effect (the parameters with an
        ``omega_<p>``, in model order); made correlated with the draw's ``L_iiv`` when the
        fit estimated a correlation.
    where : str
        Caller's name for error messages.
    population : dict, optional
        `Population.describe()` of the fit (default: the one recorded in `post`).
    omega : dict str -> float, optional
        SDs that replace the draws of ``omega_<p>`` (from `explicit_omegas`); with them the
        etas of a MAP fit are independent.

    Returns
    -------
    dict str -> array (n,)
        Every parameter of the model (the model file's value where the fit has none).
    """
    design = sites.FitDesign.from_attrs(post.attrs)
    pop = population if population is not None else design.population
    # the fit's references (the model file's value, else the fitted data's median)
    references = {c: float(v.value) for c, v in spec.covariates.items()} | design.references
    total = post.sizes["chain"] * post.sizes["draw"]
    n = pick.size

    def draw(var: str) -> np.ndarray:
        return np.asarray(post[var].values, dtype=float).reshape(total)[pick]

    iiv = [k for k in spec.parameters if sites.omega(k) in post]
    map_override = omega is not None and post.attrs.get("method") == "map"
    L_site = sites.CORRELATION_SITES[0]
    if L_site in post and not map_override:
        L = np.asarray(post[L_site].values).reshape(total, len(iiv), len(iiv))[pick]
        z = np.einsum("rij,rj->ri", L, z)
    params: dict[str, np.ndarray] = {}
    for name, par in spec.parameters.items():
        if name not in post:
            params[name] = np.full(n, float(par.value))
            continue
        value = draw(name)
        for cov, form in pop.get("covariate_effects", {}).get(name, {}).items():
            effect = CovariateEffect.of(name, cov, form, references, design.levels)
            x = _effect_covariate(spec, effect, covariates, n, where)
            value = _with_posterior_effect(post, effect, value, x, draw, where)
        if name in iiv:
            sd = omega[name] if omega is not None and name in omega else draw(sites.omega(name))
            value = value * np.exp(sd * z[:, iiv.index(name)])
        params[name] = value
    return params


def _effect_covariate(
    spec: ModelSpec, effect: CovariateEffect, covariates: Mapping[str, Any], n: int, where: str
) -> np.ndarray:
    """The new subjects' values (n,) of an effect's covariate: given, else the model file's
    (a categorical covariate, or one the model does not declare, must be given)."""
    cov = effect.covariate
    default = float(spec.covariates[cov].value) if cov in spec.covariates else None
    if cov not in covariates and (effect.categorical or default is None):
        raise SpecError(f"{where}: give covariates['{cov}'] (used by {effect.parameter})")
    return np.asarray(covariates.get(cov, np.full(n, default)), dtype=float)


def _with_posterior_effect(
    post: Any, effect: CovariateEffect, value: np.ndarray, x: np.ndarray, draw: Any, where: str
) -> np.ndarray:
    """`value` times the effect's factor at `x` with each subject's drawn coefficients. A
    continuous effect without a recorded reference takes the model file's value, else the
    median of `x`; a categorical one without recorded levels the levels of `x` that have a
    coefficient (the others: the reference level)."""
    name, cov = effect.parameter, effect.covariate
    if not effect.categorical:
        if effect.reference is None:
            ref = float(np.median(x))
            effect = dataclasses.replace(effect, reference=ref)
        effect.check_values(x, where)
        return effect.apply(value, x, draw(sites.beta(name, cov)))
    effect.check_values(x, where)  # levels the fit did not see
    if not sites.has_level_coefficients(post.data_vars, name, cov):
        raise SpecError(f"{where}: no coefficients for {cov} on {name}")
    beta = {
        level: draw(sites.beta(name, cov, level))
        for level in np.unique(x)
        if sites.beta(name, cov, level) in post
    }
    return effect.apply(value, x, beta)


def simulate_study(
    idata: az.InferenceData,
    spec: ModelSpec | str,
    data: Dataset,
    population: Population,
    n: int = 200,
    seed: int = 0,
    *,
    observations: Mapping[Any, str] | None = None,
    solver: str = "auto",
    omega: Mapping[str, float] | None = None,
) -> Any:
    """Replicates of the observed study from a fit's posterior (for VPCs).

    Each replicate takes one posterior draw of the typical values, covariate coefficients,
    omegas and residual SDs, gives every subject of `data` NEW etas (``eta ~ N(0, 1)``), solves
    the subject's own dosing and record times through `cp.Simulator` and adds residual error
    with the fitted error model; a simulated value below the record's LLOQ is flagged as
    censored.

    The ``omega_*`` of a MAP fit are not estimates of between-subject variability (as in
    `predict`), so for a MAP fit with random effects `omega` is required: a `SpecError`
    otherwise.

    Parameters
    ----------
    idata : arviz.InferenceData
        From `cp.fit` of `spec` to `data` with `population`.
    spec : ModelSpec or str
    data : Dataset
        The observed design (doses, record times, covariates, LLOQ).
    population : Population
        The fit's Population.
    n : int
        Replicates.
    seed : int
    observations : dict, optional
        As in `fit`.
    solver : str
        As in `fit`.
    omega : dict str -> float, optional
        Between-subject SDs of the log-parameters to simulate with instead of the fit's
        ``omega_<p>`` draws (keys: the fit's random effects; 0 for none). Required, with
        every random effect, for a MAP fit; then the etas are independent.

    Returns
    -------
    xarray.Dataset
        Dims (replicate, subject, record): ``dv`` (simulated observation with residual
        error, NaN on records without an observation), ``ipred`` (the replicate subject's
        prediction), ``censored`` (``dv`` below the record's LLOQ); and per (subject,
        record): ``time`` [model time unit], ``output`` (observation name), ``lloq``,
        ``observed`` (records with an observation in `data`), ``dv_observed`` (the data).
    """

    spec = load_model(spec) if not isinstance(spec, ModelSpec) else spec
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SpecError(f"simulate_study: n = {n!r} must be an integer >= 1")
    population.validate(spec)
    errors = {o: population.error_model(spec, o) for o in spec.observations}
    fd = FitData.build(spec, data, observations, errors, population.effect_covariates())
    post = idata.posterior
    omega = explicit_omegas(post, spec, omega, "simulate_study")
    total = post.sizes["chain"] * post.sizes["draw"]
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, total, size=n)
    n_sub = len(fd.ids)
    if post.sizes.get("subject", n_sub) != n_sub:
        raise DataError(
            f"simulate_study: the fit has {post.sizes['subject']} subjects but data has {n_sub}"
        )

    def draw(name: str) -> np.ndarray:
        return np.asarray(post[name].values).reshape(total)[pick]

    missing = [k for k in population.estimated(spec) if k not in post]
    if missing:
        raise SpecError(f"simulate_study: the posterior has no '{missing[0]}' (another fit?)")
    params = _replicate_params(post, spec, fd, population, np.repeat(pick, n_sub), rng, omega)
    betas = {k: draw(k) for k in post.data_vars if sites.is_beta(k)}
    ipred = solve_draws(spec, fd, population, params, solver, betas)
    dv = _with_residual_error(spec, fd, population, ipred, draw, rng)
    return _study_dataset(spec, fd, ipred, dv)


def _replicate_params(
    post: Any,
    spec: ModelSpec,
    fd: FitData,
    population: Population,
    pick: np.ndarray,
    rng: np.random.Generator,
    omega: Mapping[str, float] | None,
) -> dict[str, np.ndarray]:
    """Parameters (n, n_sub) of every (replicate, subject) as one new subject with the
    subject's own covariates and new etas; `pick`: the draw of each, replicate-major."""
    n_sub = len(fd.ids)
    n = pick.size // n_sub
    iiv = [k for k in spec.parameters if sites.omega(k) in post]
    z = rng.standard_normal((n * n_sub, len(iiv)))
    covs = {k: np.tile(np.asarray(v, dtype=float), n) for k, v in fd.covariates.items()}
    where = "simulate_study"
    flat = posterior_subjects(post, spec, covs, pick, z, where, population.describe(), omega)
    params = {k: flat[k].reshape(n, n_sub) for k in population.estimated(spec)}
    for k, v in fd.covariates.items():
        if k in spec.covariates:
            params[k] = np.broadcast_to(np.asarray(v, dtype=float), (n, n_sub))
    return params


def _study_dataset(spec: ModelSpec, fd: FitData, ipred: np.ndarray, dv: np.ndarray) -> Any:
    """`simulate_study`'s Dataset from the replicates' predictions and observations."""
    import xarray as xr

    dv = np.where(fd.observed[None], dv, np.nan)
    censored = fd.observed[None] & (fd.lloq[None] > 0) & (dv < fd.lloq[None])
    dims = ("replicate", "subject", "record")
    rec = ("subject", "record")
    return xr.Dataset(
        {
            "dv": (dims, dv),
            "ipred": (dims, ipred),
            "censored": (dims, censored),
            "time": (rec, fd.times),
            "output": (rec, np.asarray(fd.outputs)[fd.output]),
            "lloq": (rec, fd.lloq),
            "observed": (rec, fd.observed),
            "dv_observed": (rec, np.where(fd.observed, fd.dv, np.nan)),
        },
        coords={
            "replicate": np.arange(dv.shape[0]),
            "subject": np.asarray(fd.ids),
            "record": np.arange(fd.times.shape[1]),
        },
        attrs={"model": spec.name, "time_unit": spec.time_unit},
    )


def _with_residual_error(
    spec: ModelSpec,
    fd: FitData,
    population: Population,
    ipred: np.ndarray,
    draw: Any,
    rng: np.random.Generator,
) -> np.ndarray:
    """Simulated observations (replicate, n, R): `ipred` with residual error of each
    record's output, with each replicate's drawn residual SDs."""
    eps = rng.standard_normal(ipred.shape)
    dv = np.full(ipred.shape, np.nan)
    for k, o in enumerate(fd.outputs):
        m = population.error_model(spec, o)
        post_sigma = {kind: draw(sites.sigma(kind, o))[:, None, None] for kind in SIGMAS[m]}
        if m == "lognormal":
            y = ipred * np.exp(post_sigma["log"] * eps)
        else:
            y = ipred + np.asarray(residual_sd(m, ipred, post_sigma)) * eps
        dv = np.where((fd.output == k)[None], y, dv)
    return dv
