"""Global sensitivity analysis: Sobol indices with SALib, the model evaluated by `cp.sweep`.

`sobol` samples parameters and covariates inside given bounds with SALib's Sobol sequence
(Saltelli's scheme), evaluates every sample through `cp.sweep` (chunked, sharded, on
the device) and returns first- and total-order indices with bootstrap confidence intervals
as a tidy table; `sobol_function` does the same for any vectorised Python function (used to
check the machinery on the Ishigami function).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._core.errors import SimulationError, SpecError
from ..engine.options import SolverOptions
from ..spec.model import ModelSpec, load_model
from .sampling import Range, check_ranges
from .sweep import RunOptions, run_sweep

__all__ = ["sobol", "sobol_function"]

COLUMNS = ["metric", "parameter", "S1", "S1_conf", "ST", "ST_conf"]


def _check_n(n: Any, where: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise SpecError(f"{where}: n = {n!r} must be an integer >= 2 (a power of 2 is best)")
    return int(n)


def _problem(ranges: Mapping[str, Range]) -> dict[str, Any]:
    """SALib's problem on the unit cube (the design is scaled by `Range.scale`)."""
    return {"num_vars": len(ranges), "names": list(ranges), "bounds": [[0.0, 1.0]] * len(ranges)}


def _sample(ranges: Mapping[str, Range], n: int, seed: int) -> np.ndarray:
    """Saltelli's design (SALib, on a scrambled Sobol sequence), rows (n * (d + 2), d),
    scaled onto each input's range (log-uniform ones through exp)."""
    from SALib.sample import sobol as sobol_sample

    with warnings.catch_warnings():
        # SALib warns when n is not a power of 2 (balance of the Sobol sequence); documented
        warnings.simplefilter("ignore", UserWarning)
        unit = sobol_sample.sample(_problem(ranges), n, calc_second_order=False, seed=seed)
    return np.column_stack([r.scale(unit[:, j]) for j, r in enumerate(ranges.values())])


def _analyze(
    problem: dict[str, Any], y: np.ndarray, metric: str, seed: int, num_resamples: int
) -> pd.DataFrame:
    from SALib.analyze import sobol as sobol_analyze

    y = np.asarray(y, dtype=float).reshape(-1)
    bad = ~np.isfinite(y)
    if bad.any():
        raise SimulationError(
            f"gsa.sobol: metric '{metric}' is not finite for {int(bad.sum())} of {y.size} "
            "samples (failed solves or undefined metric); narrow the bounds"
        )
    res = sobol_analyze.analyze(
        problem,
        y,
        calc_second_order=False,
        num_resamples=num_resamples,
        conf_level=0.95,
        seed=seed,
    )
    return pd.DataFrame(
        {
            "metric": metric,
            "parameter": problem["names"],
            "S1": res["S1"],
            "S1_conf": res["S1_conf"],
            "ST": res["ST"],
            "ST_conf": res["ST_conf"],
        }
    )


def sobol_function(
    func: Callable[[np.ndarray], Any],
    bounds: Mapping[str, tuple[float, float]],
    n: int = 1024,
    seed: int = 0,
    *,
    num_resamples: int = 100,
    name: str = "y",
) -> pd.DataFrame:
    """First- and total-order Sobol indices of a vectorised function of independent uniform
    inputs (SALib: Sobol sequence with Saltelli's scheme, Jansen/Saltelli estimators).

    Parameters
    ----------
    func : callable
        ``func(x)`` with ``x`` a numpy array (N, d), columns in the order of `bounds`;
        returns an array (N,).
    bounds : dict str -> (low, high)
        Input name -> uniform range.
    n : int
        Base sample size; the function is evaluated ``n * (d + 2)`` times. A power of 2.
    seed : int
        Seeds the scrambled Sobol sequence and the bootstrap of the confidence intervals.
    num_resamples : int
        Bootstrap resamples for the 95% confidence intervals.
    name : str
        Value of the ``metric`` column.

    Returns
    -------
    pandas.DataFrame
        Columns metric, parameter, S1, S1_conf, ST, ST_conf (``*_conf``: half-width of the
        95% bootstrap confidence interval); one row per input.
    """
    n = _check_n(n, "gsa.sobol_function")
    ranges = check_ranges(bounds, "gsa.sobol_function")
    x = _sample(ranges, n, seed)
    y = np.asarray(func(x), dtype=float)
    if y.shape != (x.shape[0],):
        raise SpecError(
            f"gsa.sobol_function: func returned shape {y.shape}; expected ({x.shape[0]},)"
        )
    return _analyze(_problem(ranges), y, name, seed, num_resamples)


def sobol(
    spec: ModelSpec | str,
    regimen: Any,
    times: Any,
    bounds: Mapping[str, tuple[float, float]],
    metrics: Mapping[str, Any],
    n: int = 1024,
    seed: int = 0,
    *,
    log: Sequence[str] | bool = (),
    covariates: Mapping[str, Any] | None = None,
    num_resamples: int = 100,
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
    """Sobol indices of model metrics over a box of parameters and covariates.

    Parameters
    ----------
    spec : ModelSpec or str
        The model.
    regimen : Regimen
        Dosing regimen shared by all samples.
    times : array
        Output times [model time unit] on which the metrics are computed.
    bounds : dict str -> (low, high)
        Parameter or covariate name -> range [its unit]; sampled uniformly (or
        log-uniformly for the names in `log`).
    metrics : dict str -> Metric
        `cp.metrics` objects, e.g. ``{"auc": cp.metrics.auc("conc")}``.
    n : int
        Base sample size (a power of 2); the model runs ``n * (d + 2)`` times for ``d``
        inputs.
    seed : int
        Seeds the scrambled Sobol sequence and the bootstrap.
    log : sequence of str or bool
        Inputs sampled uniformly on a log scale (True: all of them); bounds must be > 0.
    covariates : dict, optional
        Fixed covariate values for every sample.
    num_resamples : int
        Bootstrap resamples for the 95% confidence intervals.
    chunk_size, path, client, progress, solver, rtol, atol
        Passed to `cp.sweep` (defaults as there, but ``progress=False``).
    return_samples : bool
        Also return the `cp.sweep` result (inputs and metrics per sample).
    run : RunOptions, optional
        chunk_size, path, client and progress as one object (instead of those keywords; a
        keyword that differs from it is a `SpecError`).
    solver_options : SolverOptions, optional
        solver, rtol, atol (and max_steps) as one object, likewise.

    Returns
    -------
    pandas.DataFrame
        Columns metric, parameter, S1, S1_conf, ST, ST_conf; one row per metric x input.
        (With `return_samples`: the table and the sweep's xarray.Dataset.)

    Notes
    -----
    A failed solve (non-finite metric) raises `SimulationError`: the estimators need every
    sample. Indices estimate variance shares, so a metric that does not vary gives NaN.
    """
    run = RunOptions.merged(run, "gsa.sobol", False, chunk_size=chunk_size, path=path,
                            client=client, progress=progress)  # fmt: skip
    solve = SolverOptions.merged(solver_options, "gsa.sobol", solver=solver, rtol=rtol, atol=atol)
    spec = load_model(spec) if not isinstance(spec, ModelSpec) else spec
    n = _check_n(n, "gsa.sobol")
    known = set(spec.parameters) | set(spec.covariates)
    for name in bounds if isinstance(bounds, Mapping) else ():
        if name not in known:
            raise SpecError(
                f"gsa.sobol: bounds name '{name}' is not a parameter or covariate of "
                f"{spec.name}; known: {', '.join(known)}"
            )
    from .metrics import named

    metrics = named(metrics, "gsa.sobol: metrics")
    log_names: Sequence[str] = list(bounds) if log is True else list(log or ())
    for name in log_names:
        if name not in bounds:
            raise SpecError(f"gsa.sobol: log name '{name}' is not in bounds")
    ranges = check_ranges(bounds, "gsa.sobol", log_names)
    x = _sample(ranges, n, seed)
    columns = {name: x[:, j] for j, name in enumerate(ranges)}
    params = {k: v for k, v in columns.items() if k in spec.parameters}
    covs = {k: np.full(x.shape[0], float(v)) for k, v in (covariates or {}).items()}
    covs.update({k: v for k, v in columns.items() if k in spec.covariates})
    out = run_sweep(
        spec,
        regimen,
        times,
        params,
        metrics,
        covariates=covs or None,
        run=run,
        solver_options=solve,
    )
    problem = _problem(ranges)
    table = pd.concat(
        [_analyze(problem, np.asarray(out[m].values), m, seed, num_resamples) for m in metrics],
        ignore_index=True,
    )
    return (table, out) if return_samples else table
