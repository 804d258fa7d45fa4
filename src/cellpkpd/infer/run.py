"""Bayesian population fits with numpyro, built on `cp.Simulator` (no second solver path).

`fit` turns a model, a NONMEM-style data set and a `Population` into a hierarchical numpyro
model (typical values with priors from the model file, log-normal between-subject
variability, covariate effects, residual error, below-LLOQ observations as censored (M3)) and
samples it with NUTS or fits it by SVI / MAP. Results are `arviz.InferenceData`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import log_ndtr

from .._core.errors import CellPKPDError, DataError, FitError, SpecError
from ..data.nonmem import Dataset, record_inputs
from ..data.simulate import check_data_bounds
from ..engine.dosing import DoseArrays, stack_dose_arrays
from ..engine.simulator import Simulator
from ..engine.solve import TimeVarying
from ..population.population import Population, effect_factor, level_name
from ..spec.model import ModelSpec, load_model, parse_prior
from .likelihood import _likelihood_solver, covariate_design

__all__ = [
    "FitData",
    "explicit_omegas",
    "fit",
    "make_model",
    "posterior_subjects",
    "predict",
    "prior_distribution",
    "simulate_study",
]

METHODS = ("nuts", "svi", "map")
#: deterministic sites holding each subject's population value (eta = 0), for PRED
PRED_PREFIX = "_pop_"


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
class FitData:
    """A data set as padded arrays for the likelihood, built once per fit.

    Attributes
    ----------
    ids : list
        Subject IDs.
    times : array (n, R)
        Record times [time] (padded by repeating the last).
    dv : array (n, R)
        Observed values (0 where not observed).
    output : int array (n, R)
        Index into `outputs` of the observation each record measures.
    observed : bool array (n, R)
        Records that enter the likelihood (EVID 0, MDV 0).
    censored : bool array (n, R)
        Observed records below the LLOQ.
    lloq : array (n, R)
    covariates : dict str -> array (n,)
        Each subject's covariate value at its first record (its baseline: the value the
        ``<p>_i`` individual parameters of a fit refer to).
    doses : DoseArrays (n, max_doses)
    outputs : tuple of str
        Model observations measured in the data.
    rows : int array (n, R)
        Row of the data file of each record (-1 for padding).
    tv : TimeVarying or None
        The model covariates (``[covariates]`` of the model file) that change within a
        subject, per record, under the data set's convention (NOCB or LOCF,
        `cp.read_nonmem`), exactly as `cp.simulate(data=)` uses them (`record_inputs`):
        the model's expressions see them change at the record times. None if none changes.
    varying : dict str -> array (n, R)
        Every data covariate that changes within some subject, per record (padded with the
        last value): covariate effects of a `cp.Population` on such a covariate change the
        parameter record by record, under the same convention.
    events_before : int array (n, R) or None
        How many of the subject's dose-array events act before each record
        (`SubjectData.events_before`): records at equal times act in file order.
    """

    ids: list[Any]
    times: np.ndarray
    dv: np.ndarray
    output: np.ndarray
    observed: np.ndarray
    censored: np.ndarray
    lloq: np.ndarray
    covariates: dict[str, np.ndarray]
    doses: DoseArrays
    outputs: tuple[str, ...]
    rows: np.ndarray
    tv: TimeVarying | None = None
    varying: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    events_before: np.ndarray | None = None
    records: TimeVarying | None = None

    @classmethod
    def build(
        cls,
        spec: ModelSpec,
        data: Dataset,
        observations: Mapping[Any, str] | None = None,
        error_models: Mapping[str, str] | None = None,
        effect_covariates: Iterable[str] = (),
    ) -> FitData:
        """Convert a `Dataset`: which output each record measures comes from its CMT (a
        model observation's name, or a state mapped by `observations`, or the model's only
        observation). With `error_models` (observation -> residual error model, as
        `Population.error_model` gives), an uncensored observation with DV <= 0 of an
        observation with log-normal error is a `DataError`. Columns are matched in any
        case to the model's covariates and parameters and to `effect_covariates` (those of
        the fit's covariate effects), and keyed by those names."""
        if not isinstance(data, Dataset):
            raise SpecError(f"fit: data must be a cp.Dataset, got {type(data).__name__}")
        effect_covariates = tuple(effect_covariates)
        for c, name in data.model_columns(spec, effect_covariates).items():
            if name in spec.parameters:
                spelled = "" if c == name else f" ({name})"
                raise DataError(
                    f"{data.source}: column {c} names a parameter of model "
                    f"'{spec.name}'{spelled}; cp.fit estimates parameters and does not read "
                    f"them from data (drop or rename the column; to hold {name} at the model "
                    f"file's value use Population(fixed=['{name}']))"
                )
        subjects = data.subjects(spec, effect_covariates)
        check_data_bounds(spec, data.source, subjects)  # covariate columns within bounds
        cov_names = list(subjects[0].covariates)
        obs_names = list(spec.observations)
        if not obs_names:
            raise SpecError(f"fit: model '{spec.name}' has no [observations] to fit")
        mapping = dict(observations or {})
        for c, name in mapping.items():
            if name not in spec.observations:
                raise SpecError(
                    f"fit: observations[{c!r}] = {name!r} is not an observation of model "
                    f"'{spec.name}'; observations: {', '.join(obs_names)}"
                )
        used: list[str] = []

        def which(s: Any, i: int) -> str:
            c = s.cmt[i]
            if isinstance(c, str) and c in spec.observations:
                return c
            if c in mapping:
                return mapping[c]
            if len(obs_names) == 1:
                return obs_names[0]
            raise DataError(
                f"{data.source} row {s.rows[i]}: cannot tell which observation CMT = {c} "
                f"measures; name one in CMT ({', '.join(obs_names)}) or pass observations="
            )

        per = []
        for s in subjects:
            obs = (s.evid == 0) & (s.mdv == 0)  # a subject with none adds nothing, as NONMEM
            names = [which(s, i) if obs[i] else obs_names[0] for i in range(s.times.size)]
            for i, nm in enumerate(names):
                if nm not in spec.observations:
                    raise DataError(f"{data.source}: observation '{nm}' is not in the model")
                if obs[i] and nm not in used:  # dose records measure nothing
                    used.append(nm)
            lognormal = {k for k, m in (error_models or {}).items() if m == "lognormal"}
            for i in np.flatnonzero(obs & ~s.cens & (s.dv <= 0)):
                if names[i] in lognormal:
                    raise DataError(
                        f"{data.source} row {s.rows[i]}: DV = {s.dv[i]:g} with log-normal "
                        f"residual error for '{names[i]}'; expected DV > 0 (or censor it: "
                        "CENS = 1, or DV below an LLOQ column)"
                    )
            per.append((s, obs, names))
        if not used:
            raise DataError(
                f"{data.source}: no observations to fit (records with EVID 0 and MDV 0, DV given)"
            )
        R = max(s.times.size for s in subjects)

        def pad(a: np.ndarray, fill: Any) -> np.ndarray:
            return np.concatenate([a, np.full(R - a.size, fill, dtype=np.asarray(a).dtype)])

        times = np.stack([pad(s.times, s.times[-1]) for s, _, _ in per])
        dv = np.stack([pad(np.where(o, np.nan_to_num(s.dv), 0.0), 0.0) for s, o, _ in per])
        observed = np.stack([pad(o, False) for _, o, _ in per])
        censored = np.stack([pad(o & s.cens, False) for s, o, _ in per])
        lloq = np.stack([pad(np.nan_to_num(s.lloq, nan=0.0), 0.0) for s, _, _ in per])
        output = np.stack(
            [pad(np.array([used.index(x) if x in used else 0 for x in nm]), 0) for _, _, nm in per]
        )
        rows = np.stack([pad(s.rows, -1) for s, _, _ in per])
        events_before = np.stack([pad(s.events_before, s.events_before[-1]) for s in subjects])
        covariates = {c: np.array([s.covariates[c][0] for s, _, _ in per]) for c in cov_names}
        doses = stack_dose_arrays([s.regimen for s in subjects], None, spec)
        varying = {
            c: np.stack(
                [pad(np.asarray(s.covariates[c], float), s.covariates[c][-1]) for s in subjects]
            )
            for c in cov_names
            if any(s.is_time_varying(c) for s in subjects)
        }
        # one mechanism with cp.simulate(data=): the convention and each dose's and
        # output's own record
        records = record_inputs(subjects, (), doses.max_doses)
        model_varying = [c for c in varying if c in spec.covariates]
        tv = record_inputs(subjects, model_varying, doses.max_doses) if model_varying else None
        return cls(
            [s.id for s in subjects],
            times,
            dv,
            output,
            observed,
            censored,
            lloq,
            covariates,
            doses,
            tuple(used),
            rows,
            tv,
            varying,
            events_before,
            records,
        )


def _effect_covariates(population: Population) -> tuple[str, ...]:
    """The covariates of a Population's covariate effects, in order of appearance."""
    return tuple(dict.fromkeys(c for e in population.covariate_effects.values() for c in e))


def _residual_sd(model: str, pred: Any, sig: Mapping[str, Any]) -> Any:
    if model == "additive":
        return sig["add"] * jnp.ones_like(pred)
    if model == "proportional":
        return sig["prop"] * jnp.abs(pred)
    if model == "combined":
        return jnp.sqrt(sig["add"] ** 2 + (sig["prop"] * pred) ** 2)
    return sig["log"] * jnp.ones_like(pred)


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
    priors = dict(priors or {})
    sim = Simulator(spec, outputs=fd.outputs, solver=solver, rtol=1e-6, atol=1e-9)
    n = len(fd.ids)
    estimated = population.estimated(spec)
    for k in priors:
        if k not in spec.parameters and not k.startswith(("omega_", "sigma_", "beta_")):
            raise SpecError(f"fit: prior for unknown name '{k}'")
    for p, effects in population.covariate_effects.items():
        for cov, form in effects.items():
            if cov not in fd.covariates and cov not in spec.covariates:
                raise DataError(
                    f"fit: the Population uses covariate '{cov}' (on {p}) but the data set "
                    f"has no column {cov}"
                )
            values = fd.varying.get(cov, fd.covariates.get(cov))
            if values is None:
                values = np.asarray([spec.covariates[cov].value])
            if form == "power" and not np.all(np.asarray(values) > 0):
                bad = np.asarray(values).ravel()
                bad = bad[~(bad > 0)][0]
                raise DataError(
                    f"fit: the power effect of '{cov}' on {p} needs {cov} > 0, but the data "
                    f"hold {cov} = {bad:g} (use 'linear' or 'exponential' for such a covariate)"
                )
    error_models = {o: population.error_model(spec, o) for o in fd.outputs}
    dv_scale = float(np.max(np.abs(fd.dv[fd.observed]))) if fd.observed.any() else 1.0
    times = jnp.asarray(fd.times)
    dv = jnp.asarray(fd.dv)
    observed = jnp.asarray(fd.observed)
    censored = jnp.asarray(fd.censored)
    lloq = jnp.asarray(fd.lloq)
    out_idx = jnp.asarray(fd.output)
    cov_data = {k: jnp.asarray(v) for k, v in fd.covariates.items()}
    model_covs = {k: v for k, v in spec.defaults().items() if k in spec.covariates}

    references, categorical = covariate_design(spec, fd, population)

    def prior_of(name: str, default: Any) -> Any:
        return overrides.get(name, default)

    # jitted: numpyro runs the model eagerly while it initialises (and Predictive does),
    # where an un-jitted solve dispatches every operation of the ODE solver one by one
    solve = jax.jit(_likelihood_solver(spec, sim, fd, population, times, (references, categorical)))
    # priors are parsed here, outside the traced model function
    defaults = {}
    for name in estimated:
        par = spec.parameters[name]
        defaults[name] = (
            prior_distribution(par.prior, f"{spec.source}: parameters.{name}.prior")
            if par.prior
            else dist.LogNormal(math.log(max(par.value, 1e-12)), 1.0)
        )
    overrides = {
        k: prior_distribution(v, f"priors['{k}']") if isinstance(v, str) else v
        for k, v in priors.items()
    }

    iiv = [k for k in estimated if k in population.random_effects]

    def model() -> None:
        individual: dict[str, Any] = {}
        betas: dict[str, Any] = {}
        correlated = None
        if population.correlation:
            # eta = (L z) * omega: correlation R = L L^T ~ LKJ(2), non-centred
            omegas = jnp.stack(
                [
                    numpyro.sample(
                        f"omega_{k}",
                        prior_of(f"omega_{k}", dist.HalfNormal(population.random_effects[k])),
                    )
                    for k in iiv
                ]
            )
            L = numpyro.sample("L_iiv", dist.LKJCholesky(len(iiv), concentration=2.0))
            numpyro.deterministic("corr_iiv", L @ L.T)
            with numpyro.plate("subject", n):
                z = numpyro.sample("eta_iiv", dist.Normal(0.0, 1.0).expand([len(iiv)]).to_event(1))
            correlated = (z @ L.T) * omegas
        for name in estimated:
            theta = numpyro.sample(name, prior_of(name, defaults[name]))
            value = jnp.broadcast_to(theta, (n,))
            for cov, form in population.covariate_effects.get(name, {}).items():
                x = cov_data[cov] if cov in cov_data else jnp.full(n, model_covs[cov])
                if form == "categorical":
                    for level in categorical[cov][1]:
                        site = f"beta_{name}_{cov}_{level_name(level)}"
                        beta = betas[site] = numpyro.sample(
                            site, prior_of(site, dist.Normal(0.0, 1.0))
                        )
                        value = value * jnp.exp(beta * (x == level))
                    continue
                site = f"beta_{name}_{cov}"
                beta = betas[site] = numpyro.sample(site, prior_of(site, dist.Normal(0.0, 1.0)))
                value = value * effect_factor(form, x, beta, references[cov])
            if correlated is not None and name in population.random_effects:
                numpyro.deterministic(f"{PRED_PREFIX}{name}", value)
                value = value * jnp.exp(correlated[:, iiv.index(name)])
            elif name in population.random_effects:
                omega = numpyro.sample(
                    f"omega_{name}",
                    prior_of(f"omega_{name}", dist.HalfNormal(population.random_effects[name])),
                )
                # the population value (eta = 0) of every subject, for PRED
                numpyro.deterministic(f"{PRED_PREFIX}{name}", value)
                if centered:
                    # centred on the log scale: better conditioned when each subject's
                    # data pin down its own value (rich sampling); eta kept as a record
                    with numpyro.plate("subject", n):
                        log_i = numpyro.sample(f"log_{name}_i", dist.Normal(jnp.log(value), omega))
                    numpyro.deterministic(f"eta_{name}", (log_i - jnp.log(value)) / omega)
                    value = jnp.exp(log_i)
                else:
                    with numpyro.plate("subject", n):
                        eta = numpyro.sample(f"eta_{name}", dist.Normal(0.0, 1.0))
                    value = value * jnp.exp(omega * eta)
            individual[name] = (
                numpyro.deterministic(f"{name}_i", value)
                if (name in population.random_effects or population.covariate_effects.get(name))
                else value
            )
        params = {k: v for k, v in individual.items()}
        for k in spec.covariates:
            if k in cov_data:
                params[k] = cov_data[k]
        params = {k: jnp.broadcast_to(v, (n,)) for k, v in params.items()}
        out, status = solve(params, betas)
        stacked = jnp.stack([out[o] for o in fd.outputs], axis=-1)
        pred = jnp.take_along_axis(stacked, out_idx[..., None], axis=-1)[..., 0]
        numpyro.deterministic("ipred", pred)
        # a non-finite prediction (a failed solve, a NaN rate) rejects the draw below; the
        # densities are built on a finite stand-in so that no distribution sees a NaN
        failed = (status != 0)[:, None] | ~jnp.isfinite(pred)
        pred = jnp.where(failed, 1.0, pred)
        loglik = jnp.zeros_like(dv)
        for k, o in enumerate(fd.outputs):
            m = error_models[o]
            sig: dict[str, Any] = {}
            if m in ("additive", "combined"):
                sig["add"] = numpyro.sample(
                    f"sigma_add_{o}", prior_of(f"sigma_add_{o}", dist.HalfNormal(dv_scale))
                )
            if m in ("proportional", "combined"):
                sig["prop"] = numpyro.sample(
                    f"sigma_prop_{o}", prior_of(f"sigma_prop_{o}", dist.HalfNormal(1.0))
                )
            if m == "lognormal":
                sig["log"] = numpyro.sample(
                    f"sigma_log_{o}", prior_of(f"sigma_log_{o}", dist.HalfNormal(1.0))
                )
            sel = out_idx == k
            if m == "lognormal":
                mu = jnp.log(jnp.maximum(pred, 1e-300))
                y = jnp.log(jnp.maximum(dv, 1e-300))
                lim = jnp.log(jnp.maximum(lloq, 1e-300))
                sd = sig["log"]
            else:
                mu, y, lim = pred, dv, lloq
                sd = jnp.maximum(_residual_sd(m, pred, sig), 1e-12)
            ll_obs = dist.Normal(mu, sd).log_prob(y)
            if m == "lognormal":
                # the density of DV itself, not of log DV (Jacobian 1 / DV), so that
                # log_likelihood, LOO and WAIC compare with the other error models
                ll_obs = ll_obs - y
            ll_cens = log_ndtr((lim - mu) / sd)  # P(DV < LLOQ) = P(log DV < log LLOQ)
            ll = jnp.where(censored, ll_cens, ll_obs)
            loglik = jnp.where(sel, ll, loglik)
        use = observed & (~censored if censoring == "m1" else True)
        loglik = jnp.where(use, loglik, 0.0)
        # a failed solve makes the density -inf: NUTS rejects that proposal
        loglik = jnp.where(failed & use, -jnp.inf, loglik)
        numpyro.deterministic("log_likelihood", loglik)
        numpyro.factor("data", jnp.sum(loglik))

    return model, sim


def fit(
    spec: ModelSpec | str,
    data: Dataset,
    population: Population | None = None,
    method: str = "nuts",
    chains: int = 4,
    warmup: int = 1000,
    draws: int = 1000,
    seed: int = 0,
    priors: Mapping[str, Any] | None = None,
    progress: bool = True,
    *,
    observations: Mapping[Any, str] | None = None,
    censoring: str = "m3",
    solver: str = "auto",
    steps: int = 3000,
    parameterization: str = "auto",
    dense_mass: bool = False,
) -> az.InferenceData:
    """Fit a model to a NONMEM-style data set.

    Parameters
    ----------
    spec : ModelSpec or str
    data : Dataset
        From `cp.read_nonmem` or `cp.datasets`.
    population : Population, optional
        Random effects, covariate effects, error models, fixed parameters (default: no
        random effects, the model file's error models).
    method : {"nuts", "svi", "map"}
        NUTS samples the posterior. SVI fits a normal approximation (AutoNormal). MAP
        finds the joint mode of typical values, individual values and residual SDs, fast;
        a joint mode does not estimate omegas (a warning says so), use NUTS for them.
    chains, warmup, draws : int
        NUTS settings. Chains of a model on the exact (linear) path run one per device in
        parallel, in groups of the device count; chains of a model solved by diffrax run
        vectorised on one device (``jax.pmap`` breaks diffrax's reverse pass, see
        `_run_nuts`). For SVI, `draws` samples are drawn from the fitted guide.
    seed : int
    priors : dict, optional
        Name -> numpyro distribution or prior string, overriding the model file's priors
        (names: parameters, ``omega_<p>``, ``sigma_add_<obs>``, ``sigma_prop_<obs>``,
        ``sigma_log_<obs>``, ``beta_<p>_<cov>``).
    progress : bool
        Progress bar.
    observations : dict, optional
        CMT value -> observation name, for records whose CMT names a state.
    censoring : {"m3", "m1"}
        Below-LLOQ observations: likelihood of being below the limit (M3), or dropped (M1).
    steps : int
        Optimisation steps for SVI / MAP.
    parameterization : {"auto", "centered", "noncentered"}
        How individual values are sampled (the posterior is the same; only the geometry
        NUTS sees changes): non-centred ``theta * exp(omega * eta)`` with ``eta ~ N(0, 1)``,
        or centred ``log p_i ~ Normal(log theta, omega)`` (``eta_<p>`` is then recorded as
        a deterministic). Non-centred suits sparse data (few records per subject, e.g.
        terminal sacrifice), centred suits rich data. "auto": centred when the median
        subject has at least `CENTERED_MIN_RECORDS` observed records, except for MAP,
        which is always non-centred (the centred joint mode has every omega at 0).
    dense_mass : bool
        NUTS with a dense mass matrix (default: diagonal, which measured faster per
        effective sample on the theophylline and recovery problems once individual values
        are centred).

    Returns
    -------
    arviz.InferenceData
        Groups posterior (typical values, omegas, sigmas, individual ``<p>_i`` by subject),
        sample_stats, observed_data (``obs``, ``time``, ``censored``, ``lloq``, ``output``,
        ``observed``), log_likelihood (``obs``, per record) and posterior_predictive, all
        per draw with dims (chain, draw, subject, record): ``ipred`` (individual
        prediction, the model at each subject's own parameters), ``pred`` (population
        prediction: the draw's typical values and covariate effects with eta = 0) and
        ``obs`` (= ``ipred``, kept for ArviZ plots that look for the observed name).
        ``log_likelihood`` is log p(DV) for every error model (log-normal: the density of
        DV, ``norm.logpdf(log DV, log IPRED, sigma) - log DV``; censored records: log
        P(DV < LLOQ)), so LOO / WAIC compare error models. The
        posterior's attrs hold the model name and source, the method, the Population
        (JSON) and the outputs. Replicated studies with new etas and residual error:
        `simulate_study`.

    Raises
    ------
    FitError
        One line, when the fit fails while it runs: no finite log density at any initial
        value, a non-finite final SVI / MAP loss, or an error inside numpyro, JAX or the
        ODE solver.
    """
    spec = load_model(spec) if not isinstance(spec, ModelSpec) else spec
    if method not in METHODS:
        raise SpecError(f"fit: method = {method!r}; expected one of {', '.join(METHODS)}")
    if censoring not in ("m3", "m1"):
        raise SpecError(f"fit: censoring = {censoring!r}; expected 'm3' or 'm1'")
    if parameterization not in ("auto", "centered", "noncentered"):
        raise SpecError(
            f"fit: parameterization = {parameterization!r}; expected 'auto', 'centered' or "
            "'noncentered'"
        )
    counts = {"chains": chains, "draws": draws, "steps": steps, "warmup": warmup, "seed": seed}
    for name, value in counts.items():
        least = 0 if name in ("warmup", "seed") else 1
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise SpecError(f"fit: {name} = {value!r}; expected an integer >= {least}")
    if population is not None and not isinstance(population, Population):
        raise SpecError(f"fit: population must be a cp.Population, got {type(population).__name__}")
    population = population or Population()
    population.validate(spec)
    if not population.estimated(spec):
        raise SpecError(
            f"fit: the Population fixes every parameter of '{spec.name}'; nothing to estimate"
        )
    errors = {o: population.error_model(spec, o) for o in spec.observations}
    effect_covs = _effect_covariates(population)
    fd = FitData.build(spec, data, observations, errors, effect_covs)
    ignored = data.ignored_columns(spec, effect_covs)
    if ignored:
        warnings.warn(
            f"fit: data columns {', '.join(ignored)} of {data.source} name no covariate of "
            f"model '{spec.name}' nor of the Population's covariate effects and are ignored "
            f"(used: {', '.join(data.model_columns(spec, effect_covs).values()) or 'none'})",
            UserWarning,
            stacklevel=2,
        )
    if parameterization == "auto":
        per_subject = np.median(fd.observed.sum(axis=1))
        # the joint mode of the centred model lies at omega -> 0 (every subject at the
        # typical value): MAP takes the non-centred one
        centered = bool(per_subject >= CENTERED_MIN_RECORDS) and method != "map"
    else:
        centered = parameterization == "centered"
    centered = centered and not population.correlation  # the LKJ model is non-centred
    if method == "map" and population.random_effects:
        warnings.warn(
            "fit(method='map'): the joint posterior mode gives typical values and each "
            "subject's values, but its omega_* are not estimates of between-subject "
            "variability (non-centred: they grow with their prior scale; centred: they "
            "collapse to 0); use method='nuts' (or 'svi') to estimate them",
            UserWarning,
            stacklevel=2,
        )
    model, sim = make_model(spec, fd, population, priors, censoring, solver, centered=centered)
    try:
        samples, stats = _sample(
            model,
            method,
            seed,
            chains,
            warmup,
            draws,
            steps,
            progress,
            dense_mass,
            # diffrax's reverse pass fails under jax.pmap (see _run_nuts): ODE models vectorise
            parallel=sim.solver == "exact",
        )
        samples["pred"] = _population_predictions(spec, fd, population, samples, solver)
    except CellPKPDError:
        raise
    except Exception as e:  # JAX, numpyro, diffrax: one line naming what failed
        raise FitError(_fit_failure(method, sim.solver, e)) from None
    return _to_inference_data(spec, fd, population, samples, stats, method)


def _sample(
    model: Any,
    method: str,
    seed: int,
    chains: int,
    warmup: int,
    draws: int,
    steps: int,
    progress: bool,
    dense_mass: bool,
    parallel: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Posterior samples (chain, draw, ...) and sample statistics of `fit`'s model by NUTS,
    SVI or MAP; a non-finite final SVI / MAP loss is a `FitError`."""
    key = jax.random.PRNGKey(seed)
    if method == "nuts":
        samples, stats = _run_nuts(
            model, key, chains, warmup, draws, progress, dense_mass, parallel
        )
        return dict(samples), stats
    from numpyro.infer import SVI, Predictive, Trace_ELBO, init_to_median
    from numpyro.infer.autoguide import AutoDelta, AutoNormal

    init = init_to_median(num_samples=15)
    guide = (
        AutoDelta(model, init_loc_fn=init)
        if method == "map"
        else AutoNormal(model, init_loc_fn=init)
    )
    svi = SVI(model, guide, numpyro.optim.Adam(0.01), Trace_ELBO())
    res = svi.run(key, steps, progress_bar=progress)
    losses = np.asarray(res.losses)
    if not np.isfinite(losses[-1]):
        bad = int(np.flatnonzero(~np.isfinite(losses))[0])
        raise FitError(
            f"fit(method='{method}'): the loss is {losses[-1]} after {steps} steps (not finite "
            f"from step {bad}: a failed solve or a NaN prediction); check the model's typical "
            "values and priors, and simulate the data set with cp.simulate(spec, data=data)"
        )
    n_draws = 1 if method == "map" else draws
    post = Predictive(guide, params=res.params, num_samples=n_draws)(jax.random.PRNGKey(seed + 1))
    full = Predictive(model, posterior_samples=post)(jax.random.PRNGKey(seed + 2))
    full.pop("data", None)  # the likelihood factor site, not a variable
    samples = {k: v[None] for k, v in {**post, **full}.items()}
    return samples, {"loss": losses[None, -1:]}


def _fit_failure(method: str, solver: str, error: Exception) -> str:
    """One line for an error raised inside a fit's sampler or optimiser."""
    text = str(error).strip().splitlines()
    first = text[0] if text else type(error).__name__
    if "valid initial parameters" in first:
        return (
            f"fit(method='{method}'): the log density is not finite at any initial value "
            "tried (every start gave a failed solve or a NaN prediction); check the model's "
            "typical values and priors, simulate the data set with cp.simulate(spec, "
            "data=data) to find the failing subjects"
            + (", or try solver='kvaerno5' for a stiff model" if solver != "exact" else "")
        )
    if len(first) > 200:
        first = first[:200] + "..."
    return (
        f"fit(method='{method}'): failed inside the sampler (solver '{solver}'): "
        f"{type(error).__name__}: {first}; check the model with method='map' and "
        "cp.simulate(spec, data=data), or try solver='kvaerno5' for a stiff model"
    )


def _draw_params(
    spec: ModelSpec, fd: FitData, population: Population, samples: Mapping[str, Any], prefix: str
) -> dict[str, np.ndarray]:
    """Per-draw, per-subject parameters (chains * draws, n) from posterior samples: the
    `prefix` site where there is one (``_pop_<p>`` = eta 0, or ``<p>_i``), else ``<p>_i``,
    else the typical value; model covariates from the data."""
    n = len(fd.ids)
    total = None
    params: dict[str, np.ndarray] = {}
    for name in population.estimated(spec):
        v = samples.get(f"{prefix}{name}")
        if v is None:
            v = samples.get(f"{name}_i")
        if v is None:
            v = np.asarray(samples[name])[..., None]
        v = np.asarray(v)
        total = int(np.prod(v.shape[:-1]))
        params[name] = np.broadcast_to(v, (*v.shape[:-1], n)).reshape(total, n)
    for k, v in fd.covariates.items():
        if k in spec.covariates and total is not None:
            params[k] = np.broadcast_to(np.asarray(v, dtype=float), (total, n))
    return params


def _betas(samples: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The covariate coefficients (``beta_*`` sites) of posterior samples, flattened over
    chains and draws."""
    return {k: np.asarray(v).reshape(-1) for k, v in samples.items() if k.startswith("beta_")}


def _warn_zero_sd(fd: FitData, loglik: np.ndarray, proportional: Sequence[int]) -> None:
    """Warn about observed records whose residual SD is at its 1e-12 floor (a proportional
    error, outputs `proportional`, on a prediction of 0, e.g. a sample before the first
    dose): their log-likelihood (about -DV^2 / 2e-24) is meaningless, though constant in the
    parameters."""
    low = np.isfinite(loglik) & (loglik < -1e12)
    floor = fd.observed & ~fd.censored & np.isin(fd.output, proportional) & low.any(axis=(0, 1))
    if not floor.any():
        return
    rows = fd.rows[floor]
    shown = ", ".join(str(int(r)) for r in rows[:5]) + (" ..." if rows.size > 5 else "")
    warnings.warn(
        f"fit: {rows.size} observed record(s) (data rows {shown}) are predicted as 0 under a "
        "proportional error model, so their residual SD is 0 and their log-likelihood "
        "(about -1e22) makes log_likelihood, LOO and WAIC meaningless; set MDV = 1 on such "
        "records (e.g. samples before the first dose) or use a combined error model",
        UserWarning,
        stacklevel=4,
    )


def _solve_draws(
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
    solve = _likelihood_solver(spec, sim, fd, population, jnp.asarray(fd.times))
    out_idx = jnp.asarray(fd.output)

    def one(q: tuple[dict[str, Any], dict[str, Any]]) -> Any:
        out, status = solve(*q)
        stacked = jnp.stack([out[o] for o in fd.outputs], axis=-1)
        pred = jnp.take_along_axis(stacked, out_idx[..., None], axis=-1)[..., 0]
        return jnp.where((status == 0)[:, None], pred, jnp.nan)

    p = {k: jnp.asarray(v) for k, v in params.items()}
    b = {k: jnp.asarray(v) for k, v in (betas or {}).items()}
    return np.asarray(jax.jit(lambda q: jax.lax.map(one, q, batch_size=64))((p, b)))


def _population_predictions(
    spec: ModelSpec,
    fd: FitData,
    population: Population,
    samples: dict[str, Any],
    solver: str,
) -> np.ndarray:
    """PRED per draw: the model at each draw's typical values with covariate effects and
    eta = 0, shape (chains, draws, n, R); the ``_pop_`` sites are removed from samples."""
    shape = np.asarray(samples[population.estimated(spec)[0]]).shape
    params = _draw_params(spec, fd, population, samples, PRED_PREFIX)
    for k in [k for k in samples if k.startswith(PRED_PREFIX)]:
        del samples[k]
    pred = _solve_draws(spec, fd, population, params, solver, _betas(samples))
    return pred.reshape(*shape, *fd.times.shape)


#: `fit(parameterization="auto")` samples individual values centred when the median subject
#: has at least this many observed records.
CENTERED_MIN_RECORDS = 4


def _run_nuts(
    model: Any,
    key: Any,
    chains: int,
    warmup: int,
    draws: int,
    progress: bool,
    dense_mass: bool,
    parallel: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """NUTS chains, `jax.local_device_count()` at a time in parallel (one chain per device,
    i.e. per CPU core as cellpkpd configures XLA), groups one after the other; the compiled
    sampler is reused between groups of the same size.

    ``parallel=False`` (a likelihood solved by diffrax) runs every chain on one device,
    vectorised (``jax.vmap`` over chains), never under ``jax.pmap``: JAX implements pmap
    with ``shard_map``, whose values carry the device mesh in their abstract types, and
    the reverse pass of diffrax's checkpointed step loop (equinox's
    ``checkpointed_while_loop``) compares the loop body's arguments, mesh included, with the
    ones it recorded without it, and raises "Closure-converted function called with
    different dynamic arguments" while numpyro looks for initial values."""
    from numpyro.infer import MCMC, NUTS, init_to_median

    n_dev = max(1, jax.local_device_count()) if parallel else chains
    samplers: dict[int, Any] = {}
    parts: list[tuple[dict[str, Any], dict[str, Any]]] = []
    done = 0
    while done < chains:
        size = min(n_dev, chains - done)
        mcmc = samplers.get(size)
        if mcmc is None:
            mcmc = samplers[size] = MCMC(
                NUTS(
                    model,
                    # start at the priors' medians (the model file's typical values,
                    # eta = 0): a random start can land in the flip-flop mode of absorption
                    init_strategy=init_to_median(num_samples=15),
                    dense_mass=dense_mass,
                ),
                num_warmup=warmup,
                num_samples=draws,
                num_chains=size,
                chain_method=(
                    "sequential" if size == 1 else "parallel" if parallel else "vectorized"
                ),
                progress_bar=progress,
            )
        mcmc.run(jax.random.fold_in(key, done), extra_fields=("diverging", "num_steps"))
        samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
        extra = mcmc.get_extra_fields(group_by_chain=True)
        stats = {k: np.asarray(v) for k, v in extra.items()}
        parts.append((samples, stats))
        done += size
    samples = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
    stats = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
    return samples, stats


def _to_inference_data(
    spec: ModelSpec,
    fd: FitData,
    population: Population,
    samples: Mapping[str, Any],
    stats: Mapping[str, Any],
    method: str,
) -> az.InferenceData:
    samples = {k: np.asarray(v) for k, v in samples.items()}
    loglik = samples.pop("log_likelihood")
    proportional = [
        i for i, o in enumerate(fd.outputs) if population.error_model(spec, o) == "proportional"
    ]
    _warn_zero_sd(fd, loglik, proportional)
    ipred = samples.pop("ipred")
    pred = samples.pop("pred")
    subj_dims = {k: ["subject"] for k in samples if k.endswith("_i") or k.startswith("eta_")}
    coords = {"subject": np.asarray(fd.ids), "record": np.arange(fd.times.shape[1])}
    iiv = [k for k in population.estimated(spec) if k in population.random_effects]
    if "corr_iiv" in samples:
        coords.update({"iiv": iiv, "iiv_": iiv})
        subj_dims["corr_iiv"] = ["iiv", "iiv_"]
        subj_dims["L_iiv"] = ["iiv", "iiv_"]
        subj_dims["eta_iiv"] = ["subject", "iiv"]
    posterior = az.convert_to_dataset(samples, coords=coords, dims=subj_dims)
    ll = az.convert_to_dataset({"obs": loglik}, coords=coords, dims={"obs": ["subject", "record"]})
    rec = ["subject", "record"]
    pp = az.convert_to_dataset(
        {"obs": ipred, "ipred": ipred, "pred": pred},
        coords=coords,
        dims={"obs": rec, "ipred": rec, "pred": rec},
    )
    import xarray as xr

    observed = xr.Dataset(
        {
            "obs": (("subject", "record"), np.where(fd.observed, fd.dv, np.nan)),
            "time": (("subject", "record"), fd.times),
            "censored": (("subject", "record"), fd.censored),
            "lloq": (("subject", "record"), fd.lloq),
            "output": (("subject", "record"), np.asarray(fd.outputs)[fd.output]),
            "observed": (("subject", "record"), fd.observed),
        },
        coords=coords,
    )
    groups = {
        "posterior": posterior,
        "log_likelihood": ll,
        "posterior_predictive": pp,
        "observed_data": observed,
    }
    if stats:
        groups["sample_stats"] = az.convert_to_dataset(dict(stats))
    idata = az.InferenceData(**groups)
    design = covariate_design(spec, fd, population)
    idata.posterior.attrs.update(
        {
            "model": spec.name,
            "model_source": str(spec.source),
            "method": method,
            "population": json.dumps(population.describe()),
            # what the covariate effects were estimated against (for predict & co.)
            "categorical_levels": json.dumps(design[1]),
            "covariate_references": json.dumps(design[0]),
            "outputs": json.dumps(list(fd.outputs)),
            "time_unit": spec.time_unit,
        }
    )
    if method == "nuts":
        _warn_diagnostics(
            idata,
            [
                k
                for k in samples
                if not k.startswith("eta_")
                and not k.endswith("_i")
                and k not in ("L_iiv", "corr_iiv")  # constant diagonal / zero entries
            ],
        )
    return idata


def _warn_diagnostics(idata: az.InferenceData, names: list[str]) -> None:
    n_chains = idata.posterior.sizes["chain"]
    summary = az.summary(idata, var_names=names, kind="diagnostics") if n_chains > 1 else None
    if summary is not None:
        bad_rhat = summary.index[summary["r_hat"] > 1.01].tolist()
        low_ess = summary.index[summary["ess_bulk"] < 400].tolist()
        if bad_rhat:
            warnings.warn(
                f"fit: R-hat > 1.01 for {', '.join(bad_rhat)}", RuntimeWarning, stacklevel=3
            )
        if low_ess:
            warnings.warn(
                f"fit: bulk ESS < 400 for {', '.join(low_ess)}", RuntimeWarning, stacklevel=3
            )
    if "diverging" in idata.sample_stats:
        n_div = int(idata.sample_stats["diverging"].sum())
        if n_div:
            warnings.warn(f"fit: {n_div} divergent transitions", RuntimeWarning, stacklevel=3)


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
    iiv = [k for k in spec.parameters if f"omega_{k}" in post]
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
    iiv = [k for k in spec.parameters if f"omega_{k}" in post]
    method = post.attrs.get("method")
    if omega is None:
        if method == "map" and iiv:
            shown = ", ".join(
                f"omega_{k} = {float(np.asarray(post[f'omega_{k}'].values).ravel()[0]):.3g}"
                for k in iiv
            )
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
    pop = population if population is not None else json.loads(post.attrs.get("population", "{}"))
    levels = json.loads(post.attrs.get("categorical_levels", "{}"))
    refs = json.loads(post.attrs.get("covariate_references", "{}"))
    total = post.sizes["chain"] * post.sizes["draw"]
    n = pick.size

    def draw(var: str) -> np.ndarray:
        return np.asarray(post[var].values, dtype=float).reshape(total)[pick]

    iiv = [k for k in spec.parameters if f"omega_{k}" in post]
    map_override = omega is not None and post.attrs.get("method") == "map"
    if "L_iiv" in post and not map_override:
        L = np.asarray(post["L_iiv"].values).reshape(total, len(iiv), len(iiv))[pick]
        z = np.einsum("rij,rj->ri", L, z)
    params: dict[str, np.ndarray] = {}
    for name, par in spec.parameters.items():
        if name not in post:
            params[name] = np.full(n, float(par.value))
            continue
        value = draw(name)
        for cov, form in pop.get("covariate_effects", {}).get(name, {}).items():
            default = float(spec.covariates[cov].value) if cov in spec.covariates else None
            if cov not in covariates and (form == "categorical" or default is None):
                raise SpecError(f"{where}: give covariates['{cov}'] (used by {name})")
            x = np.asarray(covariates.get(cov, np.full(n, default)), dtype=float)
            if form == "categorical":
                fitted = levels.get(cov)
                if fitted is not None:
                    unseen = sorted(set(np.unique(x).tolist()) - {fitted[0], *fitted[1]})
                    if unseen:
                        known = ", ".join(
                            [f"{level_name(fitted[0])} (reference)"]
                            + [level_name(v) for v in fitted[1]]
                        )
                        raise SpecError(
                            f"{where}: covariates['{cov}'] has level(s) "
                            f"{', '.join(level_name(v) for v in unseen)} that the fit did not "
                            f"see; its levels are {known}"
                        )
                for level in np.unique(x):
                    site = f"beta_{name}_{cov}_{level_name(level)}"
                    if site in post:  # else the reference level (factor 1)
                        value = value * np.exp(draw(site) * (x == level))
                    elif not any(k.startswith(f"beta_{name}_{cov}_") for k in post.data_vars):
                        raise SpecError(f"{where}: no coefficients for {cov} on {name}")
                continue
            # the fit's reference (model value, else the fitted data's median)
            ref = refs.get(cov, default if default is not None else float(np.median(x)))
            beta = draw(f"beta_{name}_{cov}")
            if form == "power" and not np.all(x > 0):
                raise SpecError(
                    f"{where}: the power effect of '{cov}' on {name} needs {cov} > 0, got "
                    f"{x[~(x > 0)][0]:g}"
                )
            value = value * effect_factor(form, x, beta, ref)
        if name in iiv:
            sd = omega[name] if omega is not None and name in omega else draw(f"omega_{name}")
            value = value * np.exp(sd * z[:, iiv.index(name)])
        params[name] = value
    return params


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
    import xarray as xr

    spec = load_model(spec) if not isinstance(spec, ModelSpec) else spec
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SpecError(f"simulate_study: n = {n!r} must be an integer >= 1")
    population.validate(spec)
    errors = {o: population.error_model(spec, o) for o in spec.observations}
    fd = FitData.build(spec, data, observations, errors, _effect_covariates(population))
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
    # every (replicate, subject) as one new subject with the subject's own covariates
    iiv = [k for k in spec.parameters if f"omega_{k}" in post]
    z = rng.standard_normal((n * n_sub, len(iiv)))
    covs = {k: np.tile(np.asarray(v, dtype=float), n) for k, v in fd.covariates.items()}
    flat = posterior_subjects(
        post,
        spec,
        covs,
        np.repeat(pick, n_sub),
        z,
        "simulate_study",
        population.describe(),
        omega=omega,
    )
    params = {k: flat[k].reshape(n, n_sub) for k in population.estimated(spec)}
    for k, v in fd.covariates.items():
        if k in spec.covariates:
            params[k] = np.broadcast_to(np.asarray(v, dtype=float), (n, n_sub))
    betas = {k: draw(k) for k in post.data_vars if k.startswith("beta_")}
    ipred = _solve_draws(spec, fd, population, params, solver, betas)
    eps = rng.standard_normal(ipred.shape)
    dv = np.full(ipred.shape, np.nan)
    for k, o in enumerate(fd.outputs):
        m = population.error_model(spec, o)
        sel = fd.output == k
        sig = {
            key: draw(f"sigma_{key}_{o}")[:, None, None]
            for key in ("add", "prop", "log")
            if f"sigma_{key}_{o}" in post
        }
        if m == "lognormal":
            y = ipred * np.exp(sig["log"] * eps)
        else:
            y = ipred + np.asarray(_residual_sd(m, ipred, sig)) * eps
        dv = np.where(sel[None], y, dv)
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
            "replicate": np.arange(n),
            "subject": np.asarray(fd.ids),
            "record": np.arange(fd.times.shape[1]),
        },
        attrs={"model": spec.name, "time_unit": spec.time_unit},
    )
