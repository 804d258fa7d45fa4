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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import log_ndtr

from .data import Dataset
from .dosing import DoseArrays, stack_dose_arrays
from .errors import DataError, SpecError
from .model import ModelSpec, load_model, parse_prior
from .population import Population
from .simulate import Simulator

__all__ = ["FitData", "fit", "make_model", "predict", "prior_distribution"]

METHODS = ("nuts", "svi", "map")


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
        Each subject's covariate value (first record).
    doses : DoseArrays (n, max_doses)
    outputs : tuple of str
        Model observations measured in the data.
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

    @classmethod
    def build(
        cls,
        spec: ModelSpec,
        data: Dataset,
        observations: Mapping[Any, str] | None = None,
    ) -> FitData:
        """Convert a `Dataset`: which output each record measures comes from its CMT (a
        model observation's name, or a state mapped by `observations`, or the model's only
        observation)."""
        if not isinstance(data, Dataset):
            raise SpecError(f"fit: data must be a cp.Dataset, got {type(data).__name__}")
        subjects = data.subjects(spec)
        obs_names = list(spec.observations)
        if not obs_names:
            raise SpecError(f"fit: model '{spec.name}' has no [observations] to fit")
        mapping = dict(observations or {})
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
            obs = (s.evid == 0) & (s.mdv == 0)
            if not np.any(obs):
                raise DataError(f"{data.source}: subject ID {s.id} has no observations")
            names = [which(s, i) if obs[i] else obs_names[0] for i in range(s.times.size)]
            for nm in names:
                if nm not in spec.observations:
                    raise DataError(f"{data.source}: observation '{nm}' is not in the model")
                if nm not in used:
                    used.append(nm)
            per.append((s, obs, names))
        R = max(s.times.size for s in subjects)

        def pad(a: np.ndarray, fill: Any) -> np.ndarray:
            return np.concatenate([a, np.full(R - a.size, fill, dtype=np.asarray(a).dtype)])

        times = np.stack([pad(s.times, s.times[-1]) for s, _, _ in per])
        dv = np.stack([pad(np.where(o, np.nan_to_num(s.dv), 0.0), 0.0) for s, o, _ in per])
        observed = np.stack([pad(o, False) for _, o, _ in per])
        censored = np.stack([pad(o & s.cens, False) for s, o, _ in per])
        lloq = np.stack([pad(np.nan_to_num(s.lloq, nan=0.0), 0.0) for s, _, _ in per])
        output = np.stack([pad(np.array([used.index(x) for x in nm]), 0) for _, _, nm in per])
        rows = np.stack([pad(s.rows, -1) for s, _, _ in per])
        covariates = {
            c: np.array([s.covariates[c][0] for s, _, _ in per]) for c in data.covariate_names
        }
        doses = stack_dose_arrays([s.regimen for s in subjects], None, spec)
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
        )


def _residual_sd(model: str, pred: Any, sig: Mapping[str, Any]) -> Any:
    if model == "additive":
        return sig["add"] * jnp.ones_like(pred)
    if model == "proportional":
        return sig["prop"] * jnp.abs(pred)
    if model == "combined":
        return jnp.sqrt(sig["add"] ** 2 + (sig["prop"] * pred) ** 2)
    return sig["log"] * jnp.ones_like(pred)


def _likelihood_solver(
    spec: ModelSpec, sim: Simulator, fd: FitData, estimated: list[str], times: Any
) -> Any:
    """params (n,) -> (outputs, status) for every subject at its record times.

    On the exact path, when dose times do not depend on estimated parameters (no estimated
    name in a lag / rate / duration expression, no breakpoints), each subject's segment
    lengths are fixed by the data: their distinct values are counted once here, so every
    likelihood evaluation takes one matrix exponential per distinct length, with as many
    squarings as the typical values need plus 8 (rates 256x the typical ones; a proposal
    beyond that gives NaN and is rejected)."""
    timing = set()
    for rule in spec.dosing.values():
        for e in (rule.lag, rule.rate, rule.duration):
            if e is not None:
                timing |= set(e.names)
    batched = {"d": fd.doses, "t": times}
    static = sim.solver == "exact" and not spec.breakpoints and not (timing & set(estimated))
    plan_size, opts = None, sim.options
    if static:
        typical = {k: jnp.full(len(fd.ids), v) for k, v in spec.defaults().items()}
        for k, v in fd.covariates.items():
            if k in spec.covariates:
                typical[k] = jnp.asarray(v)
        counts, squarings = jax.vmap(sim._count, in_axes=(0, None))({"p": typical, **batched}, {})
        plan_size = int(jnp.max(counts))
        opts = dataclasses.replace(opts, squarings=min(int(jnp.max(squarings)) + 8, 40))
    one = sim._one(plan_size, opts)
    return lambda params: jax.vmap(one, in_axes=(0, None))({"p": params, **batched}, {})


def make_model(
    spec: ModelSpec,
    fd: FitData,
    population: Population,
    priors: Mapping[str, Any] | None = None,
    censoring: str = "m3",
    solver: str = "auto",
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
        for cov in effects:
            if cov not in fd.covariates and cov not in spec.covariates:
                raise DataError(
                    f"fit: the Population uses covariate '{cov}' (on {p}) but the data set "
                    f"has no column {cov}"
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

    references = {
        cov: spec.covariates[cov].value
        if cov in spec.covariates
        else float(np.median(fd.covariates[cov]))
        for effects in population.covariate_effects.values()
        for cov in effects
    }

    def prior_of(name: str, default: Any) -> Any:
        return overrides.get(name, default)

    solve = _likelihood_solver(spec, sim, fd, estimated, times)
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

    def model() -> None:
        individual: dict[str, Any] = {}
        for name in estimated:
            theta = numpyro.sample(name, prior_of(name, defaults[name]))
            value = jnp.broadcast_to(theta, (n,))
            for cov, form in population.covariate_effects.get(name, {}).items():
                site = f"beta_{name}_{cov}"
                beta = numpyro.sample(site, prior_of(site, dist.Normal(0.0, 1.0)))
                x = cov_data[cov] if cov in cov_data else jnp.full(n, model_covs[cov])
                ref = references[cov]
                if form == "power":
                    value = value * (x / ref) ** beta
                elif form == "exponential":
                    value = value * jnp.exp(beta * (x - ref))
                else:
                    value = value * (1.0 + beta * (x - ref))
            if name in population.random_effects:
                omega = numpyro.sample(
                    f"omega_{name}",
                    prior_of(f"omega_{name}", dist.HalfNormal(population.random_effects[name])),
                )
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
        out, status = solve(params)
        stacked = jnp.stack([out[o] for o in fd.outputs], axis=-1)
        pred = jnp.take_along_axis(stacked, out_idx[..., None], axis=-1)[..., 0]
        numpyro.deterministic("ipred", pred)
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
            ll_cens = log_ndtr((lim - mu) / sd)
            ll = jnp.where(censored, ll_cens, ll_obs)
            loglik = jnp.where(sel, ll, loglik)
        use = observed & (~censored if censoring == "m1" else True)
        loglik = jnp.where(use, loglik, 0.0)
        # a failed solve makes the density -inf: NUTS rejects that proposal
        loglik = jnp.where((status != 0)[:, None] & use, -jnp.inf, loglik)
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
    chains, warmup, draws : int
        NUTS settings (chains run in parallel when there are as many devices, else
        vectorised). For SVI, `draws` samples are drawn from the fitted guide.
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

    Returns
    -------
    arviz.InferenceData
        Groups posterior (typical values, omegas, sigmas, individual ``<p>_i`` by subject),
        sample_stats, observed_data, log_likelihood (per observation record), and
        posterior_predictive (``ipred``).
    """
    spec = load_model(spec) if not isinstance(spec, ModelSpec) else spec
    if method not in METHODS:
        raise SpecError(f"fit: method = {method!r}; expected one of {', '.join(METHODS)}")
    if censoring not in ("m3", "m1"):
        raise SpecError(f"fit: censoring = {censoring!r}; expected 'm3' or 'm1'")
    population = population or Population()
    fd = FitData.build(spec, data, observations)
    model, _ = make_model(spec, fd, population, priors, censoring, solver)
    key = jax.random.PRNGKey(seed)
    if method == "nuts":
        from numpyro.infer import MCMC, NUTS

        chain_method = "parallel" if jax.local_device_count() >= chains else "vectorized"
        from numpyro.infer import init_to_median

        # start at the priors' medians (the model file's typical values, eta = 0): a
        # random start can land in the flip-flop mode of absorption models
        mcmc = MCMC(
            NUTS(model, init_strategy=init_to_median(num_samples=15)),
            num_warmup=warmup,
            num_samples=draws,
            num_chains=chains,
            chain_method=chain_method,
            progress_bar=progress,
        )
        mcmc.run(key)
        samples = mcmc.get_samples(group_by_chain=True)
        stats = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    else:
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
        n_draws = 1 if method == "map" else draws
        post = Predictive(guide, params=res.params, num_samples=n_draws)(
            jax.random.PRNGKey(seed + 1)
        )
        full = Predictive(model, posterior_samples=post)(jax.random.PRNGKey(seed + 2))
        samples = {k: v[None] for k, v in {**post, **full}.items()}
        stats = {"loss": np.asarray(res.losses)[None, -1:]}
    return _to_inference_data(spec, fd, population, samples, stats, method)


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
    ipred = samples.pop("ipred")
    subj_dims = {k: ["subject"] for k in samples if k.endswith("_i") or k.startswith("eta_")}
    coords = {"subject": np.asarray(fd.ids), "record": np.arange(fd.times.shape[1])}
    posterior = az.convert_to_dataset(samples, coords=coords, dims=subj_dims)
    ll = az.convert_to_dataset({"obs": loglik}, coords=coords, dims={"obs": ["subject", "record"]})
    pp = az.convert_to_dataset({"obs": ipred}, coords=coords, dims={"obs": ["subject", "record"]})
    import xarray as xr

    observed = xr.Dataset(
        {
            "obs": (("subject", "record"), np.where(fd.observed, fd.dv, np.nan)),
            "time": (("subject", "record"), fd.times),
            "censored": (("subject", "record"), fd.censored),
            "lloq": (("subject", "record"), fd.lloq),
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
    idata.posterior.attrs.update(
        {"model": spec.name, "method": method, "population": json.dumps(population.describe())}
    )
    if method == "nuts":
        _warn_diagnostics(
            idata, [k for k in samples if not k.startswith("eta_") and not k.endswith("_i")]
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
) -> Any:
    """Simulate a (new) regimen for `n` virtual subjects drawn from a fit's posterior.

    Each virtual subject takes one posterior draw of the typical values, omegas and
    covariate coefficients (uncertainty) and a new eta ~ Normal(0, 1) per random effect
    (between-subject variability): ``p_i = theta * cov_effects * exp(omega * eta)``.

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

    Returns
    -------
    xarray.Dataset
        `cp.simulate`'s result with dims (subject, time) for the n virtual subjects.
    """
    from .simulate import simulate

    spec = load_model(spec) if not isinstance(spec, ModelSpec) else spec
    post = idata.posterior
    pop = json.loads(post.attrs.get("population", "{}"))
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SpecError(f"predict: n = {n!r} must be an integer >= 1")
    rng = np.random.default_rng(seed)
    total = post.sizes["chain"] * post.sizes["draw"]
    pick = rng.integers(0, total, size=n)
    covs = {
        k: np.broadcast_to(np.asarray(v, dtype=float), (n,)) for k, v in (covariates or {}).items()
    }
    params: dict[str, np.ndarray] = {}
    for name in spec.parameters:
        if name not in post:
            continue
        value = np.asarray(post[name].values).reshape(total)[pick]
        for cov, form in pop.get("covariate_effects", {}).get(name, {}).items():
            beta = np.asarray(post[f"beta_{name}_{cov}"].values).reshape(total)[pick]
            ref = spec.covariates[cov].value if cov in spec.covariates else None
            if cov not in covs and ref is None:
                raise SpecError(f"predict: give covariates['{cov}'] (used by {name})")
            x = covs.get(cov, np.full(n, ref))
            ref = ref if ref is not None else float(np.median(x))
            if form == "power":
                value = value * (x / ref) ** beta
            elif form == "exponential":
                value = value * np.exp(beta * (x - ref))
            else:
                value = value * (1.0 + beta * (x - ref))
        if f"omega_{name}" in post:
            omega = np.asarray(post[f"omega_{name}"].values).reshape(total)[pick]
            value = value * np.exp(omega * rng.standard_normal(n))
        params[name] = value
    model_covs = {k: v for k, v in covs.items() if k in spec.covariates}
    return simulate(
        spec, regimen, times, params=params, covariates=model_covs or None, outputs=outputs
    )
