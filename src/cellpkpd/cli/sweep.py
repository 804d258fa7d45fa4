"""``cellpkpd sweep CONFIG.toml``: metrics over parameter sets drawn by a sampler
(`cellpkpd.analysis.sampling.sample`: grid, random or Sobol), evaluated by `cp.sweep` and
written as netCDF, CSV and a histogram PNG."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

import cellpkpd as cp

from ..analysis.sampling import SAMPLERS, Range, sample
from . import _config
from ._config import COMMON_HELP, Config

HELP = f"""configuration keys (TOML):
{COMMON_HELP}
  resume = false                (true: keep chunks in OUT/chunks, continue a stopped run)
  [regimen]  doses = [{{ time, amount, cmt, duration, ... }}]  or dose with interval, count
  [sampler]  kind = "grid" | "random" | "sobol", n (not for grid), seed
  [sampler.parameters]  NAME = [levels] (grid)  or  {{ low, high, scale = "linear"|"log",
      num (grid) }}  or  {{ distribution = "lognormal(log(2), 0.3)" }} (random)
  [covariates]  COV = value     (fixed for every set)

example: docs/examples/sweep.toml in the cellpkpd repository"""

KEYS = {
    "model", "species", "output", "times", "regimen", "sampler", "covariates", "metrics",
    "chunk_size", "solver", "rtol", "atol", "resume",
}  # fmt: skip


def register(sub: Any) -> None:
    """Add the command to the CLI's sub-parsers (``argparse`` ``_SubParsersAction``)."""
    _config.add_batch_command(
        sub,
        "sweep",
        help="evaluate metrics over many parameter sets: netCDF + CSV + histogram PNG",
        description=(
            "Draw parameter/covariate sets (grid, random or Sobol sampler), evaluate the\n"
            "model's metrics for each with cp.sweep (chunked, over the JAX devices) and write\n"
            "OUT/sweep.nc (inputs, metrics and solver status per sample), OUT/sweep.csv and\n"
            "OUT/sweep_histograms.png. With 'resume = true', finished chunks are kept in\n"
            "OUT/chunks and a re-run continues where an interrupted one stopped."
        ),
        epilog=HELP,
        run=run,
    )


def load_config(path: Any) -> Config:
    """Read and check the top-level keys of a ``sweep`` configuration."""
    return Config(path, KEYS, {"model", "times", "regimen", "sampler", "metrics"})


def run(args: argparse.Namespace) -> int:
    """Read the configuration, draw the sets, run `cp.sweep`, write its results."""
    cfg = load_config(args.config)
    out = _config.out_dir(cfg, args, "sweep-out")
    spec = _config.model(cfg)
    times = _config.times(cfg)
    regimen = _config.regimen(cfg, cfg.data["regimen"], "regimen", spec)
    metrics = _config.metrics(cfg, spec)
    samples = _samples(cfg, spec)
    n = next(iter(samples.values())).size
    covs = cfg.data.get("covariates", {})
    cfg.keys(covs, "covariates", set(spec.covariates))
    covariates = {k: np.full(n, cfg.number(v, f"covariates.{k}")) for k, v in covs.items()}
    covariates.update({k: v for k, v in samples.items() if k in spec.covariates})
    params = {k: v for k, v in samples.items() if k in spec.parameters}
    options = _config.solver_options(cfg)
    resume = cfg.data.get("resume", False)
    if not isinstance(resume, bool):
        raise cfg.err("resume", f"{resume!r} must be true or false")
    out.mkdir(parents=True, exist_ok=True)
    ds = cp.sweep(
        spec,
        regimen,
        times,
        params,
        metrics,
        covariates=covariates or None,
        path=out / "chunks" if resume else None,
        progress=not args.no_progress,
        **options,
    )
    nc_path, csv_path, png_path = out / "sweep.nc", out / "sweep.csv", out / "sweep_histograms.png"
    ds.to_netcdf(nc_path)
    ds.to_dataframe().to_csv(csv_path)
    units = {m: metric.unit(spec) for m, metric in metrics.items()}
    fig = cp.plots.metric_histograms(
        ds,
        list(metrics),
        units=units,
        title=f"{spec.name}: {n} parameter sets ({cfg.data['sampler']['kind']})",
    )
    fig.savefig(png_path, dpi=120)
    failed = int((np.asarray(ds["status"].values) != 0).sum())
    print(f"{spec.name}: {n} parameter sets, {len(metrics)} metrics; {failed} failed solves")
    for path in (nc_path, csv_path, png_path):
        print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------- [sampler]
def _samples(cfg: Config, spec: Any) -> dict[str, np.ndarray]:
    """The ``[sampler]`` table checked key by key, then drawn by `sample`."""
    s = cfg.data["sampler"]
    cfg.keys(s, "sampler", {"kind", "n", "seed", "parameters"}, {"kind", "parameters"})
    kind = s["kind"]
    if kind not in SAMPLERS:
        raise cfg.err("sampler.kind", f"{kind!r}; expected one of {', '.join(SAMPLERS)}")
    params = s["parameters"]
    cfg.keys(params, "sampler.parameters", {*spec.parameters, *spec.covariates})
    if not params:
        raise cfg.err("sampler.parameters", "no parameters to vary")
    seed = cfg.integer(s.get("seed", 0), "sampler.seed", lo=0)
    if kind == "grid":
        if "n" in s:
            raise cfg.err("sampler.n", "a grid's size is the product of its levels; remove n")
        return sample("grid", _grid_levels(cfg, params))
    n = cfg.count(cfg.integer(s.get("n", 0), "sampler.n"), "sampler.n", "parameter sets")
    parameters: dict[str, Any] = {}
    for name, v in params.items():
        key = f"sampler.parameters.{name}"
        if isinstance(v, Mapping) and "distribution" in v:
            if kind != "random":
                raise cfg.err(f"{key}.distribution", "only the random sampler takes distributions")
            cfg.keys(v, key, {"distribution"})
            parameters[name] = _config.distribution_text(cfg, v["distribution"], key)
            continue
        if isinstance(v, list) or not isinstance(v, Mapping):
            raise cfg.err(key, "expected { low, high [, scale] } or { distribution = '...' }")
        parameters[name] = _range(cfg, v, key)
        if "num" in v:
            raise cfg.err(f"{key}.num", "only a grid takes num")
    return sample(kind, parameters, n, seed)


def _grid_levels(cfg: Config, params: Mapping[str, Any]) -> dict[str, Any]:
    """Each grid axis: a list of levels or a Range with ``num``; at most `MAX_SETS` sets."""
    sizes = {}
    for name, v in params.items():
        key = f"sampler.parameters.{name}"
        if isinstance(v, list):
            sizes[name] = len(v)
        elif isinstance(v, Mapping) and "num" in v:
            sizes[name] = cfg.integer(v["num"], f"{key}.num")
    total = math.prod(sizes.values())
    if total > _config.MAX_SETS:
        product = " x ".join(f"{sizes[k]} ({k})" for k in sizes)
        raise cfg.err(
            "sampler.parameters",
            f"the grid has {product} = {total:,} parameter sets; expected at most "
            f"{_config.MAX_SETS:,} (use fewer levels, or kind = 'sobol' with n)",
        )
    levels: dict[str, Any] = {}
    for name, v in params.items():
        key = f"sampler.parameters.{name}"
        if isinstance(v, list):
            if not v:
                raise cfg.err(key, "empty list")
            levels[name] = [cfg.number(x, f"{key}[{i}]") for i, x in enumerate(v)]
        else:
            if not isinstance(v, Mapping) or "num" not in v:
                raise cfg.err(f"{key}.num", "missing (number of grid levels)")
            levels[name] = _range(cfg, v, key, grid=True)
    return levels


def _range(cfg: Config, v: Any, key: str, grid: bool = False) -> Range:
    cfg.keys(v, key, {"low", "high", "scale", "num"}, {"low", "high"})
    low = cfg.number(v["low"], f"{key}.low")
    high = cfg.number(v["high"], f"{key}.high")
    scale = v.get("scale", "linear")
    if scale not in ("linear", "log"):
        raise cfg.err(f"{key}.scale", f"{scale!r}; expected 'linear' or 'log'")
    if not low < high:
        raise cfg.err(key, f"low = {low:g} must be < high = {high:g}")
    if scale == "log" and low <= 0:
        raise cfg.err(f"{key}.low", f"{low:g} must be > 0 on a log scale")
    num = cfg.integer(v["num"], f"{key}.num") if grid else None
    return Range(low, high, scale == "log", num)
