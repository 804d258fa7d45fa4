"""The summary table of a fit: the population-level quantities of a `cp.fit` result (typical
values, omegas, residual SDs, covariate coefficients), one row each."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["fit_summary"]


def fit_summary(idata: Any, hdi_prob: float = 0.9) -> pd.DataFrame:
    """One row per population-level quantity of a fit (the posterior's variables with dims
    ``(chain, draw)`` only; per-subject ones are left out), index ``name``.

    Parameters
    ----------
    idata : arviz.InferenceData
        From `cp.fit`.
    hdi_prob : float
        Probability of the highest-density interval (ArviZ's ``hdi_*`` columns).

    Returns
    -------
    pandas.DataFrame
        A MAP fit (``posterior.attrs["method"] == "map"``): one column ``map``, the
        posterior mode. Otherwise `arviz.summary`: mean, sd and the HDI, and with NUTS on
        more than one chain also the diagnostics (``mcse_*``, ``ess_*``, ``r_hat``).
    """
    import arviz as az

    post = idata.posterior
    names = [k for k in post.data_vars if post[k].dims == ("chain", "draw")]
    method = post.attrs.get("method")
    if method == "map":  # one point: the posterior mode
        summary = pd.DataFrame({"map": [float(post[k].values.ravel()[0]) for k in names]}, names)
    else:
        kind = "all" if method == "nuts" and post.sizes["chain"] > 1 else "stats"
        summary = az.summary(idata, var_names=names, kind=kind, hdi_prob=hdi_prob)
    summary.index.name = "name"
    return summary
