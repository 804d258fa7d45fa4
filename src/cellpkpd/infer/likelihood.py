"""The likelihood of a fit: every subject's outputs at its record times for given parameters
(`likelihood_solver`, the one path from a fit to `cp.Simulator`), the log-density of the
observations given those predictions (`observation_loglik`: residual error, censoring),
predictions per posterior draw (`solve_draws`), and what covariate effects are estimated
against (`covariate_design`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import log_ndtr

from .._core.errors import SpecError
from ..engine.simulator import Simulator
from ..engine.solve import TimeVarying
from ..population.effects import CovariateEffect, categorical_levels
from ..population.error import residual_sd
from ..population.population import Population
from ..spec.model import ModelSpec
from . import sites

if TYPE_CHECKING:
    from .data import FitData


def likelihood_solver(
    spec: ModelSpec,
    sim: Simulator,
    fd: FitData,
    population: Population,
    times: Any,
    design: tuple[dict[str, float], dict[str, tuple[float, list[float]]]] | None = None,
) -> Any:
    """``solve(params, betas)``: params (n,) -> (outputs, status) for every subject at its
    record times.

    ``params`` hold each subject's parameters at its first record. A covariate effect of
    `population` on a covariate that changes within a subject (``fd.varying``) scales its
    parameter record by record (under the data set's NOCB or LOCF convention, as the
    model's own covariates) by the effect's ratio to the first record's, with the
    coefficients ``betas`` (site name -> value, e.g. ``beta_CL_WT``).

    On the exact path, when dose times do not depend on estimated parameters (no estimated
    name in a lag / rate / duration expression, no breakpoints) and nothing changes within a
    subject, each subject's segment lengths are fixed by the data: their distinct values are
    counted once here, so every likelihood evaluation takes one matrix exponential per
    distinct length, with as many squarings as the typical values need plus 8 (rates 256x
    the typical ones; a proposal beyond that gives NaN and is rejected). ``design``: the
    fit's `covariate_design` if the caller has it."""
    estimated = population.estimated(spec)
    timing = set()
    for rule in spec.dosing.values():
        for e in (rule.lag, rule.rate, rule.duration):
            if e is not None:
                timing |= set(e.names)
    varying = {
        name: {c: f for c, f in effects.items() if c in fd.varying}
        for name, effects in population.covariate_effects.items()
        if name in estimated and any(c in fd.varying for c in effects)
    }
    batched: dict[str, Any] = {"d": fd.doses, "t": times}
    if fd.events_before is not None:
        batched["o"] = jnp.asarray(fd.events_before, jnp.int32)
    if fd.tv is not None:
        batched["tv"] = fd.tv
    static = (
        sim.solver == "exact"
        and not spec.breakpoints
        and fd.tv is None
        and not varying
        and not (timing & set(estimated))
    )
    # the exact path leaves out the states no dose of the data reaches (they stay 0); with
    # segment lengths fixed by the data, one exponential per distinct length, sized at the
    # typical values with 8 squarings to spare (rates up to 256x the typical ones)
    typical = None
    if static:
        typical = {k: jnp.full(len(fd.ids), v) for k, v in spec.defaults().items()}
        for k, v in fd.covariates.items():
            if k in spec.covariates:
                typical[k] = jnp.asarray(v)
    plan = sim.plan(fd.doses, typical, times, fd.events_before, squarings_margin=8)

    def one(b: dict[str, Any], _shared: Mapping[str, Any]) -> Any:
        return sim.solve(b["p"], b["d"], b["t"], b.get("tv"), plan, events_before=b.get("o"))

    if not varying:
        return lambda params, betas=None: jax.vmap(one, in_axes=(0, None))(
            {"p": params, **batched}, {}
        )
    effects = _varying_effects(varying, design or covariate_design(spec, fd, population))
    covs = sorted({e.covariate for group in effects.values() for e in group})
    records = {c: jnp.asarray(fd.varying[c]) for c in covs}
    first = {c: jnp.asarray(fd.covariates[c]) for c in covs}
    batched["r"] = fd.records

    def per_record(b: dict[str, Any], betas: Mapping[str, Any]) -> dict[str, Any]:
        values = dict(b["tv"].values) if "tv" in b else {}
        for name, group in effects.items():
            values[name] = b["p"][name] * _ratio(group, betas, b["x"], b["x0"])
        out = {k: b[k] for k in ("p", "d", "t", "o") if k in b}
        r = b["r"]
        return {**out, "tv": TimeVarying(b["t"], values, r.dose_record, r.output_record, r.nocb)}

    def solve(params: dict[str, Any], betas: Mapping[str, Any] | None = None) -> Any:
        if betas is None:
            raise SpecError("fit: covariate effects that change within a subject need betas")
        return jax.vmap(lambda b: one(per_record(b, betas), {}))(
            {"p": params, **batched, "x": records, "x0": first}
        )

    return solve


def _varying_effects(
    varying: Mapping[str, Mapping[str, str]],
    design: tuple[dict[str, float], dict[str, tuple[float, list[float]]]],
) -> dict[str, list[CovariateEffect]]:
    """Parameter -> its covariate effects on covariates that change within a subject, with
    the references and levels of the fit's `covariate_design`."""
    references, categorical = design
    out: dict[str, list[CovariateEffect]] = {}
    for name, covs in varying.items():
        out[name] = [
            CovariateEffect(name, c, f, categorical[c][0], tuple(categorical[c][1]))
            if f == "categorical"
            else CovariateEffect(name, c, f, references[c])
            for c, f in covs.items()
        ]
    return out


def _ratio(
    effects: list[CovariateEffect], betas: Mapping[str, Any], x: Mapping[str, Any], x0: Any
) -> Any:
    """Product of the effects' factors at each record's covariate values `x` over those at
    the subject's first record `x0` (the parameter sampled is the first record's)."""
    ratio = 1.0
    for e in effects:
        if e.categorical:
            c = {lv: betas[sites.beta(e.parameter, e.covariate, lv)] for lv in e.levels}
        else:
            c = betas[sites.beta(e.parameter, e.covariate)]
        ratio = ratio * e.apply(1.0, x[e.covariate], c) / e.apply(1.0, x0[e.covariate], c)
    return ratio


def covariate_design(
    spec: ModelSpec, fd: FitData, population: Population
) -> tuple[dict[str, float], dict[str, tuple[float, list[float]]]]:
    """What a fit's covariate effects are estimated against: the reference value of each
    continuous covariate (the model file's value, else the data's median) and the
    (reference level, other levels) of each categorical one (from the data, else the
    model file's value)."""
    references: dict[str, float] = {}
    categorical: dict[str, tuple[float, list[float]]] = {}
    for effects in population.covariate_effects.values():
        for cov, form in effects.items():
            if form == "categorical":
                values = (
                    fd.covariates[cov] if cov in fd.covariates else [spec.covariates[cov].value]
                )
                ref, others = categorical_levels(values)
                if cov in fd.varying:  # levels first seen after a subject's first record
                    seen = np.unique(fd.varying[cov]).tolist()
                    others = sorted({*others, *(float(v) for v in seen)} - {ref})
                categorical[cov] = (ref, others)
            else:
                references[cov] = (
                    float(spec.covariates[cov].value)
                    if cov in spec.covariates
                    else float(np.median(fd.covariates[cov]))
                )
    return references, categorical


def observation_loglik(
    model: str, pred: Any, dv: Any, lloq: Any, censored: Any, sigma: Mapping[str, Any]
) -> Any:
    """log p(DV) of every record under residual error model `model` with SDs `sigma`
    (`cellpkpd.population.error.SIGMAS`) at finite predictions `pred`: the density of DV
    itself for every error model (log-normal: ``norm.logpdf(log DV, log pred, sigma) -
    log DV``, so that log_likelihood, LOO and WAIC compare error models), and log P(DV <
    LLOQ) on `censored` records (M3)."""
    if model == "lognormal":
        mu = jnp.log(jnp.maximum(pred, 1e-300))
        y = jnp.log(jnp.maximum(dv, 1e-300))
        lim = jnp.log(jnp.maximum(lloq, 1e-300))
        sd = sigma["log"]
    else:
        mu, y, lim = pred, dv, lloq
        sd = jnp.maximum(residual_sd(model, pred, sigma), 1e-12)
    ll_obs = dist.Normal(mu, sd).log_prob(y)
    if model == "lognormal":
        ll_obs = ll_obs - y  # the Jacobian 1 / DV
    ll_cens = log_ndtr((lim - mu) / sd)  # P(DV < LLOQ) = P(log DV < log LLOQ)
    return jnp.where(censored, ll_cens, ll_obs)


def measured(out: Mapping[str, Any], fd: FitData) -> Any:
    """The prediction of the output each record measures, (n, R), from the solver's
    outputs (name -> (n, R))."""
    stacked = jnp.stack([out[o] for o in fd.outputs], axis=-1)
    return jnp.take_along_axis(stacked, jnp.asarray(fd.output)[..., None], axis=-1)[..., 0]


def solve_draws(
    spec: ModelSpec,
    fd: FitData,
    population: Population,
    params: Mapping[str, Any],
    solver: str,
    betas: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Predictions (draws, n, R) of the measured output of every record, one solve per
    draw and subject through `cp.Simulator` (NaN where a solve failed). ``params`` hold
    (draws, n) values at each subject's first record; ``betas`` (draws,) the covariate
    coefficients that carry effects of covariates changing within a subject."""
    sim = Simulator(spec, outputs=fd.outputs, solver=solver, rtol=1e-6, atol=1e-9)
    solve = likelihood_solver(spec, sim, fd, population, jnp.asarray(fd.times))

    def one(q: tuple[dict[str, Any], dict[str, Any]]) -> Any:
        out, status = solve(*q)
        return jnp.where((status == 0)[:, None], measured(out, fd), jnp.nan)

    p = {k: jnp.asarray(v) for k, v in params.items()}
    b = {k: jnp.asarray(v) for k, v in (betas or {}).items()}
    return np.asarray(jax.jit(lambda q: jax.lax.map(one, q, batch_size=64))((p, b)))
