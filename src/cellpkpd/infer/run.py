"""Population fits with numpyro (`fit`, `cp.fit`): argument checks, the choice of
parameterisation, and the runs (NUTS chains in parallel groups, SVI, MAP) of the model
`make_model` builds, returned as `arviz.InferenceData` (`idata`).

`fit` turns a model, a NONMEM-style data set and a `Population` into a hierarchical numpyro
model (typical values with priors from the model file, log-normal between-subject
variability, covariate effects, residual error, below-LLOQ observations as censored (M3)) and
samples it with NUTS or fits it by SVI / MAP. What the result predicts (`predict`,
`simulate_study`) lives in `cellpkpd.infer.posterior`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import arviz as az
import jax
import numpy as np
import numpyro

from .._core.errors import CellPKPDError, FitError, SpecError
from ..data.nonmem import Dataset
from ..population.population import Population
from ..spec.model import ModelSpec, load_model
from .data import FitData
from .idata import to_inference_data
from .model import make_model
from .posterior import population_predictions, predict

# predict (cellpkpd.infer.posterior) is named here too: cp.fit / cp.predict load from here
__all__ = ["CENTERED_MIN_RECORDS", "METHODS", "fit", "predict"]

METHODS = ("nuts", "svi", "map")
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
    population = _checked_arguments(
        spec,
        population,
        method,
        censoring,
        parameterization,
        {"chains": chains, "draws": draws, "steps": steps, "warmup": warmup, "seed": seed},
    )
    errors = {o: population.error_model(spec, o) for o in spec.observations}
    effect_covs = population.effect_covariates()
    fd = FitData.build(spec, data, observations, errors, effect_covs)
    _warn_ignored_columns(spec, data, effect_covs)
    centered = _centered(parameterization, fd, population, method)
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
        samples["pred"] = population_predictions(spec, fd, population, samples, solver)
    except CellPKPDError:
        raise
    except Exception as e:  # JAX, numpyro, diffrax: one line naming what failed
        raise FitError(_fit_failure(method, sim.solver, e)) from None
    return to_inference_data(spec, fd, population, samples, stats, method)


def _checked_arguments(
    spec: ModelSpec,
    population: Population | None,
    method: str,
    censoring: str,
    parameterization: str,
    counts: Mapping[str, Any],
) -> Population:
    """Check `fit`'s arguments (one `SpecError` naming the first bad one); return the
    Population (default: no random effects)."""
    if method not in METHODS:
        raise SpecError(f"fit: method = {method!r}; expected one of {', '.join(METHODS)}")
    if censoring not in ("m3", "m1"):
        raise SpecError(f"fit: censoring = {censoring!r}; expected 'm3' or 'm1'")
    if parameterization not in ("auto", "centered", "noncentered"):
        raise SpecError(
            f"fit: parameterization = {parameterization!r}; expected 'auto', 'centered' or "
            "'noncentered'"
        )
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
    return population


def _warn_ignored_columns(spec: ModelSpec, data: Dataset, effect_covariates: tuple) -> None:
    """Warn (at `fit`'s caller) about data columns that the fit does not use."""
    ignored = data.ignored_columns(spec, effect_covariates)
    if ignored:
        used = ", ".join(data.model_columns(spec, effect_covariates).values()) or "none"
        warnings.warn(
            f"fit: data columns {', '.join(ignored)} of {data.source} name no covariate of "
            f"model '{spec.name}' nor of the Population's covariate effects and are ignored "
            f"(used: {used})",
            UserWarning,
            stacklevel=3,
        )


def _centered(parameterization: str, fd: FitData, population: Population, method: str) -> bool:
    """Whether individual values are sampled centred (see `fit`'s `parameterization`)."""
    if parameterization == "auto":
        per_subject = np.median(fd.observed.sum(axis=1))
        # the joint mode of the centred model lies at omega -> 0 (every subject at the
        # typical value): MAP takes the non-centred one
        centered = bool(per_subject >= CENTERED_MIN_RECORDS) and method != "map"
    else:
        centered = parameterization == "centered"
    return centered and not population.correlation  # the LKJ model is non-centred


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
