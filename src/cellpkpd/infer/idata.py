"""A fit's samples as `arviz.InferenceData` (groups posterior, log_likelihood,
posterior_predictive, observed_data, sample_stats, with dims subject and record; the fit's
design in the posterior's attrs, `sites.design_attrs`), and the warnings a fit's result
earns: sampler diagnostics (R-hat, ESS, divergences) and residual SDs at their floor."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import arviz as az
import numpy as np

from ..population.population import Population
from ..spec.model import ModelSpec
from . import sites
from .data import FitData
from .likelihood import covariate_design

__all__ = ["to_inference_data"]


def to_inference_data(
    spec: ModelSpec,
    fd: FitData,
    population: Population,
    samples: Mapping[str, Any],
    stats: Mapping[str, Any],
    method: str,
) -> az.InferenceData:
    """The InferenceData of a fit from its samples (chain, draw, ...), which hold the
    deterministic sites ``log_likelihood``, ``ipred`` and ``pred``; see `cp.fit`."""
    samples = {k: np.asarray(v) for k, v in samples.items()}
    loglik = samples.pop("log_likelihood")
    proportional = [
        i for i, o in enumerate(fd.outputs) if population.error_model(spec, o) == "proportional"
    ]
    _warn_zero_sd(fd, loglik, proportional)
    ipred = samples.pop("ipred")
    pred = samples.pop("pred")
    coords = {"subject": np.asarray(fd.ids), "record": np.arange(fd.times.shape[1])}
    iiv = [k for k in population.estimated(spec) if k in population.random_effects]
    rec = ["subject", "record"]
    groups = {
        "posterior": _posterior(samples, coords, iiv),
        "log_likelihood": az.convert_to_dataset({"obs": loglik}, coords=coords, dims={"obs": rec}),
        "posterior_predictive": az.convert_to_dataset(
            {"obs": ipred, "ipred": ipred, "pred": pred},
            coords=coords,
            dims={"obs": rec, "ipred": rec, "pred": rec},
        ),
        "observed_data": _observed_data(fd, coords),
    }
    if stats:
        groups["sample_stats"] = az.convert_to_dataset(dict(stats))
    idata = az.InferenceData(**groups)
    references, levels = covariate_design(spec, fd, population)
    idata.posterior.attrs.update(
        {
            "model": spec.name,
            "model_source": str(spec.source),
            "method": method,
            "time_unit": spec.time_unit,
            # what the covariate effects were estimated against (for predict & co.)
            **sites.design_attrs(population.describe(), references, levels, fd.outputs),
        }
    )
    if method == "nuts":
        L_site, corr_site, _ = sites.CORRELATION_SITES
        _warn_diagnostics(
            idata,
            [
                k
                for k in samples
                if not sites.is_subject_site(k)
                and k not in (L_site, corr_site)  # constant diagonal / zero entries
            ],
        )
    return idata


def _posterior(samples: Mapping[str, np.ndarray], coords: dict[str, Any], iiv: list[str]) -> Any:
    """The posterior group: per-subject sites with dim subject, correlation sites with
    dims (iiv, iiv_)."""
    dims = {k: ["subject"] for k in samples if sites.is_subject_site(k)}
    L_site, corr_site, eta_site = sites.CORRELATION_SITES
    if corr_site in samples:
        coords = {**coords, "iiv": iiv, "iiv_": iiv}
        dims[corr_site] = ["iiv", "iiv_"]
        dims[L_site] = ["iiv", "iiv_"]
        dims[eta_site] = ["subject", "iiv"]
    return az.convert_to_dataset(dict(samples), coords=coords, dims=dims)


def _observed_data(fd: FitData, coords: dict[str, Any]) -> Any:
    """The observed_data group: observations (NaN where none), times, censoring, LLOQ,
    the observation each record measures, and which records are observed."""
    import xarray as xr

    rec = ("subject", "record")
    return xr.Dataset(
        {
            "obs": (rec, np.where(fd.observed, fd.dv, np.nan)),
            "time": (rec, fd.times),
            "censored": (rec, fd.censored),
            "lloq": (rec, fd.lloq),
            "output": (rec, np.asarray(fd.outputs)[fd.output]),
            "observed": (rec, fd.observed),
        },
        coords=coords,
    )


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
