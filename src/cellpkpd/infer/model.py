"""The numpyro model of a population fit (`make_model`): priors (`prior_distribution`),
typical values, covariate effects and between-subject variability (independent or
correlated, centred or not), the likelihood of the data given the solved predictions, and
the deterministic sites (``ipred``, ``log_likelihood``, ``_pop_<p>``) the fit reads back."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from .._core.errors import DataError, SpecError
from ..engine.simulator import Simulator
from ..population.error import SIGMAS
from ..population.population import Population
from ..spec.model import ModelSpec, parse_prior
from . import sites
from .data import FitData
from .likelihood import covariate_design, likelihood_solver, measured, observation_loglik

__all__ = ["make_model", "prior_distribution"]

Design = tuple[dict[str, float], dict[str, tuple[float, list[float]]]]


def prior_distribution(text: str, where: str = "prior") -> dist.Distribution:
    """A numpyro distribution from a model-file prior string such as
    ``"lognormal(log(2), 0.5)"``."""
    family, a = parse_prior(text, where)
    make = {
        "normal": lambda: dist.Normal(*a),
        "lognormal": lambda: dist.LogNormal(*a),
        "halfnormal": lambda: dist.HalfNormal(*a),
        "halfcauchy": lambda: dist.HalfCauchy(*a),
        "cauchy": lambda: dist.Cauchy(*a),
        "studentt": lambda: dist.StudentT(*a),
        "uniform": lambda: dist.Uniform(*a),
        "exponential": lambda: dist.Exponential(*a),
        "gamma": lambda: dist.Gamma(*a),
        "beta": lambda: dist.Beta(*a),
        "truncnormal": lambda: dist.TruncatedNormal(a[0], a[1], low=a[2], high=a[3]),
    }
    return make[family]()


@dataclass(frozen=True)
class _Priors:
    """Every prior of a fit, parsed once outside the traced model function: the typical
    values' (the model file's, else LogNormal(log value, 1)), and the caller's overrides
    (`fit(priors=)`) of any site."""

    typical: dict[str, dist.Distribution]
    overrides: dict[str, dist.Distribution]
    random_effects: Mapping[str, float]
    dv_scale: float

    @classmethod
    def build(
        cls, spec: ModelSpec, fd: FitData, population: Population, priors: Mapping[str, Any]
    ) -> _Priors:
        for k in priors:
            if k not in spec.parameters and not sites.is_prior_name(k):
                raise SpecError(f"fit: prior for unknown name '{k}'")
        typical = {}
        for name in population.estimated(spec):
            par = spec.parameters[name]
            typical[name] = (
                prior_distribution(par.prior, f"{spec.source}: parameters.{name}.prior")
                if par.prior
                else dist.LogNormal(math.log(max(par.value, 1e-12)), 1.0)
            )
        overrides = {
            k: prior_distribution(v, f"priors['{k}']") if isinstance(v, str) else v
            for k, v in priors.items()
        }
        dv_scale = float(np.max(np.abs(fd.dv[fd.observed]))) if fd.observed.any() else 1.0
        return cls(typical, overrides, population.random_effects, dv_scale)

    def of(self, site: str, default: Any) -> Any:
        return self.overrides.get(site, default)

    def omega(self, name: str) -> Any:
        site = sites.omega(name)
        return self.of(site, dist.HalfNormal(self.random_effects[name]))

    def sigma(self, kind: str, observation: str) -> Any:
        scale = self.dv_scale if kind == "add" else 1.0
        return self.of(sites.sigma(kind, observation), dist.HalfNormal(scale))


def _check_effect_covariates(spec: ModelSpec, fd: FitData, population: Population) -> None:
    """Every covariate of a covariate effect is in the data (or the model), and > 0 where
    its effect is a power."""
    for p in population.covariate_effects:
        for effect in population.effects(p):
            cov = effect.covariate
            if cov not in fd.covariates and cov not in spec.covariates:
                raise DataError(
                    f"fit: the Population uses covariate '{cov}' (on {p}) but the data set "
                    f"has no column {cov}"
                )
            values = fd.varying.get(cov, fd.covariates.get(cov))
            if values is None:
                values = np.asarray([spec.covariates[cov].value])
            effect.check_values(values, "fit", DataError, "the data")


def make_model(
    spec: ModelSpec,
    fd: FitData,
    population: Population,
    priors: Mapping[str, Any] | None = None,
    censoring: str = "m3",
    solver: str = "auto",
    centered: bool = False,
) -> tuple[Any, Simulator]:
    """The numpyro model function of a population fit, and the `Simulator` it calls."""
    population.validate(spec)
    prior = _Priors.build(spec, fd, population, dict(priors or {}))
    sim = Simulator(spec, outputs=fd.outputs, solver=solver, rtol=1e-6, atol=1e-9)
    _check_effect_covariates(spec, fd, population)
    design = covariate_design(spec, fd, population)
    # jitted: numpyro runs the model eagerly while it initialises (and Predictive does),
    # where an un-jitted solve dispatches every operation of the ODE solver one by one
    solve = jax.jit(likelihood_solver(spec, sim, fd, population, jnp.asarray(fd.times), design))
    error_models = {o: population.error_model(spec, o) for o in fd.outputs}
    n = len(fd.ids)
    cov_data = {k: jnp.asarray(v) for k, v in fd.covariates.items()}
    model_covs = {k: v for k, v in spec.defaults().items() if k in spec.covariates}
    covariates = {
        **{k: jnp.full(n, v) for k, v in model_covs.items() if k not in cov_data},
        **cov_data,
    }

    def model() -> None:
        individual, betas = _individual_values(
            spec, population, prior, covariates, design, n, centered
        )
        params = {**individual, **{k: v for k, v in cov_data.items() if k in spec.covariates}}
        params = {k: jnp.broadcast_to(v, (n,)) for k, v in params.items()}
        out, status = solve(params, betas)
        pred = measured(out, fd)
        numpyro.deterministic("ipred", pred)
        # a non-finite prediction (a failed solve, a NaN rate) rejects the draw below; the
        # densities are built on a finite stand-in so that no distribution sees a NaN
        failed = (status != 0)[:, None] | ~jnp.isfinite(pred)
        loglik = _data_loglik(fd, error_models, prior, jnp.where(failed, 1.0, pred))
        use = jnp.asarray(fd.observed) & (~jnp.asarray(fd.censored) if censoring == "m1" else True)
        loglik = jnp.where(use, loglik, 0.0)
        # a failed solve makes the density -inf: NUTS rejects that proposal
        loglik = jnp.where(failed & use, -jnp.inf, loglik)
        numpyro.deterministic("log_likelihood", loglik)
        numpyro.factor("data", jnp.sum(loglik))

    return model, sim


def _individual_values(
    spec: ModelSpec,
    population: Population,
    prior: _Priors,
    covariates: Mapping[str, Any],
    design: Design,
    n: int,
    centered: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sample every estimated parameter's typical value, covariate coefficients and random
    effect; return each subject's values (n,) and the coefficients (site -> value)."""
    iiv = [k for k in population.estimated(spec) if k in population.random_effects]
    correlated = _correlated_etas(prior, iiv, n) if population.correlation else None
    individual: dict[str, Any] = {}
    betas: dict[str, Any] = {}
    for name in population.estimated(spec):
        theta = numpyro.sample(name, prior.of(name, prior.typical[name]))
        value = jnp.broadcast_to(theta, (n,))
        value = _with_covariates(name, value, population, covariates, design, prior, betas)
        if name in population.random_effects:
            # the population value (eta = 0) of every subject, for PRED
            if correlated is not None:
                numpyro.deterministic(sites.population_value(name), value)
                value = value * jnp.exp(correlated[:, iiv.index(name)])
            else:
                value = _random_effect(name, value, prior, n, centered)
        individual[name] = (
            numpyro.deterministic(sites.individual(name), value)
            if (name in population.random_effects or population.covariate_effects.get(name))
            else value
        )
    return individual, betas


def _correlated_etas(prior: _Priors, iiv: list[str], n: int) -> Any:
    """Correlated random effects (n, k): eta = (L z) * omega, correlation R = L L^T ~
    LKJ(2), non-centred."""
    omegas = jnp.stack([numpyro.sample(sites.omega(k), prior.omega(k)) for k in iiv])
    L_site, corr_site, eta_site = sites.CORRELATION_SITES
    L = numpyro.sample(L_site, dist.LKJCholesky(len(iiv), concentration=2.0))
    numpyro.deterministic(corr_site, L @ L.T)
    with numpyro.plate("subject", n):
        z = numpyro.sample(eta_site, dist.Normal(0.0, 1.0).expand([len(iiv)]).to_event(1))
    return (z @ L.T) * omegas


def _with_covariates(
    name: str,
    value: Any,
    population: Population,
    covariates: Mapping[str, Any],
    design: Design,
    prior: _Priors,
    betas: dict[str, Any],
) -> Any:
    """`value` (n,) of `name` times the factors of its covariate effects, sampling their
    coefficients (added to `betas`)."""
    for effect in population.effects(name, *design):

        def coefficient(level: float | None = None, effect: Any = effect) -> Any:
            site = sites.beta(name, effect.covariate, level)
            betas[site] = numpyro.sample(site, prior.of(site, dist.Normal(0.0, 1.0)))
            return betas[site]

        beta = (
            {level: coefficient(level) for level in effect.levels}
            if effect.categorical
            else coefficient()
        )
        value = effect.apply(value, covariates[effect.covariate], beta)
    return value


def _random_effect(name: str, value: Any, prior: _Priors, n: int, centered: bool) -> Any:
    """Each subject's value of `name` around its population value `value` (n,), with an
    independent log-normal random effect."""
    omega = numpyro.sample(sites.omega(name), prior.omega(name))
    numpyro.deterministic(sites.population_value(name), value)
    if centered:
        # centred on the log scale: better conditioned when each subject's data pin down
        # its own value (rich sampling); eta kept as a record
        with numpyro.plate("subject", n):
            log_i = numpyro.sample(sites.log_individual(name), dist.Normal(jnp.log(value), omega))
        numpyro.deterministic(sites.eta(name), (log_i - jnp.log(value)) / omega)
        return jnp.exp(log_i)
    with numpyro.plate("subject", n):
        eta = numpyro.sample(sites.eta(name), dist.Normal(0.0, 1.0))
    return value * jnp.exp(omega * eta)


def _data_loglik(fd: FitData, error_models: Mapping[str, str], prior: _Priors, pred: Any) -> Any:
    """Sample each output's residual SDs and return log p(DV) (n, R) of every record at
    finite predictions `pred` (records that do not enter the likelihood included)."""
    out_idx = jnp.asarray(fd.output)
    dv, lloq, censored = (jnp.asarray(a) for a in (fd.dv, fd.lloq, fd.censored))
    loglik = jnp.zeros_like(dv)
    for k, o in enumerate(fd.outputs):
        m = error_models[o]
        sig = {
            kind: numpyro.sample(sites.sigma(kind, o), prior.sigma(kind, o)) for kind in SIGMAS[m]
        }
        ll = observation_loglik(m, pred, dv, lloq, censored, sig)
        loglik = jnp.where(out_idx == k, ll, loglik)
    return loglik
