"""The summary table of a fit: the population-level quantities of a `cp.fit` result (typical
values, omegas, residual SDs, covariate coefficients), one row each, with what each is and
its unit; it displays as a titled table in Jupyter and as text (`cellpkpd._core.display`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .._core.display import Table, as_table
from ..spec.model import ModelSpec, load_model, output_unit
from . import sites

__all__ = ["fit_summary", "quantity"]


def fit_summary(idata: Any, hdi_prob: float = 0.9, spec: ModelSpec | str | None = None) -> Table:
    """One row per population-level quantity of a fit (the posterior's variables with dims
    ``(chain, draw)`` only; per-subject ones are left out), index ``name``.

    Parameters
    ----------
    idata : arviz.InferenceData
        From `cp.fit`.
    hdi_prob : float
        Probability of the highest-density interval (ArviZ's ``hdi_*`` columns).
    spec : ModelSpec or str, optional
        The fitted model, for the units (default: the model file recorded in the fit,
        ``posterior.attrs["model_source"]``, else its library name ``attrs["model"]``).

    Returns
    -------
    Table
        A pandas DataFrame (`cellpkpd._core.display.Table`: in Jupyter a titled HTML table,
        as text the same with its title). Columns ``quantity`` (what the row is, e.g.
        "between-subject SD of log CL") and ``unit`` (the parameter's unit for a typical
        value, the observation's for an additive residual SD, "" for quantities without a
        unit: omegas, proportional and log-scale SDs, covariate coefficients; every
        unit "" when the model cannot be found), then for a MAP fit
        (``posterior.attrs["method"] == "map"``) one column ``map``, the posterior mode;
        otherwise `arviz.summary`: mean, sd and the HDI, and with NUTS on more than one
        chain also the diagnostics (``mcse_*``, ``ess_*``, ``r_hat``).
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
    model = _fitted_model(post.attrs, spec)
    rows = [quantity(str(k), model) for k in summary.index]
    summary.insert(0, "unit", [u for _, u in rows])
    summary.insert(0, "quantity", [q for q, _ in rows])
    summary.index.name = "name"
    title = f"{post.attrs.get('model', 'fit')}: {method or 'fit'} estimates"
    if method != "map":
        title += f" ({post.sizes['chain']} chains x {post.sizes['draw']} draws)"
    return as_table(summary, title=title)


def quantity(name: str, spec: ModelSpec | None) -> tuple[str, str]:
    """What the posterior variable `name` of a fit of `spec` is, and its unit ("" when it
    has none or `spec` is None), read with the naming scheme of `sites`: e.g. ("typical
    CL", "L/h"), ("BSV of CL (SD of log)", ""), ("residual SD of conc, additive", "mg/L"),
    ("effect of WT on CL", "")."""
    if spec is not None and name in spec.parameters:
        return f"typical {name}", spec.parameters[name].unit
    if (p := sites.parse_omega(name)) is not None:
        return f"BSV of {p} (SD of log)", ""
    if (kind_obs := sites.parse_sigma(name)) is not None:
        kind, obs = kind_obs
        if kind == "add":
            unit = output_unit(spec, obs) if spec is not None and obs in spec.observations else ""
            return f"residual SD of {obs}, additive", unit
        return f"residual SD of {obs}, " + ("proportional" if kind == "prop" else "of log"), ""
    if sites.is_beta(name):
        return _effect(name, spec), ""
    return (f"typical {name}" if spec is None else name), ""


def _effect(name: str, spec: ModelSpec | None) -> str:
    """ "effect of <covariate> on <parameter>" for a ``beta_<p>_<cov>[_<level>]`` site (the
    longest parameter and covariate names of `spec` that match), else the site's name."""
    rest = name[len("beta_") :]
    if spec is not None:
        for p in sorted(spec.parameters, key=len, reverse=True):
            if not rest.startswith(p + "_"):
                continue
            tail = rest[len(p) + 1 :]
            for c in sorted(spec.covariates, key=len, reverse=True):
                if tail == c or tail.startswith(c + "_"):
                    level = tail[len(c) + 1 :]
                    return f"effect of {c}{f' = {level}' if level else ''} on {p}"
    return f"covariate effect {rest}"


def _fitted_model(attrs: Any, spec: ModelSpec | str | None) -> ModelSpec | None:
    """`spec` (loaded when a name or path), else the model a fit recorded, else None."""
    if isinstance(spec, ModelSpec):
        return spec
    if spec is not None:  # asked for: an unknown name is an error
        return load_model(spec)
    for where in [attrs.get("model_source"), attrs.get("model")]:
        if where:
            try:
                return load_model(str(where))
            except Exception:  # a moved or renamed file: no units rather than no summary
                continue
    return None
