"""``cellpkpd doses CONFIG.toml``: dose-ranging over a virtual population (`cp.VirtualPopulation`,
`cp.dose_ranging`), written as a CSV table and dose-response and target-attainment PNGs."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import cellpkpd as cp

from . import _config
from ._config import COMMON_HELP, Config

HELP = f"""configuration keys (TOML):
{COMMON_HELP}
  seed = 0
  [regimens.NAME]  doses = [{{ time, amount, cmt, duration, lag, ... }}]
                   or dose = {{ ... }} with interval and count
      amounts are multiplied by each arm's dose (amount = 1: one dose of that size)
  [arms]  dose = [...]  regimen = ["NAME", ...] (default: all)  ATTRIBUTE = [...]
      every combination is an arm; ATTRIBUTE is a model covariate or parameter
  [population]  n, random_effects = {{ PARAM = omega }}, typical = {{ PARAM = value }},
      covariates = {{ COV = value or "lognormal(log(1), 0.3)" }}, correlation = [[...]]
  [target]  METRIC = [">=", value]    (operators >= > <= <)

example: docs/examples/doses.toml in the cellpkpd repository"""

KEYS = {
    "model", "species", "output", "times", "regimens", "arms", "population", "metrics",
    "target", "chunk_size", "solver", "rtol", "atol", "seed",
}  # fmt: skip


def register(sub: Any) -> None:
    """Add the command to the CLI's sub-parsers (``argparse`` ``_SubParsersAction``)."""
    _config.add_batch_command(
        sub,
        "doses",
        help="dose-ranging over a virtual population: CSV table + dose-response PNG",
        description=(
            "Evaluate every arm of a dose x regimen x product-attribute grid on every\n"
            "subject of a virtual population (one cp.sweep call) and summarise each metric\n"
            "per arm: median, 5th and 95th percentiles and, with [target], the probability\n"
            "of target attainment. Writes OUT/doses.csv, OUT/dose_response_<metric>.png\n"
            "and, with a target, OUT/target_attainment_<metric>.png."
        ),
        epilog=HELP,
        run=run,
    )


def load_config(path: Any) -> Config:
    """Read and check the top-level keys of a ``doses`` configuration."""
    return Config(path, KEYS, {"model", "times", "regimens", "arms", "metrics"})


def run(args: argparse.Namespace) -> int:
    """Read the configuration, run `cp.dose_ranging`, write the table and the plots."""
    cfg = load_config(args.config)
    out = _config.out_dir(cfg, args, "doses-out")
    spec = _config.model(cfg)
    times = _config.times(cfg)
    regs = cfg.data["regimens"]
    cfg.keys(regs, "regimens", set(regs) if isinstance(regs, Mapping) else set())
    if not regs:
        raise cfg.err("regimens", "no regimens given")
    regimens = {name: _config.regimen(cfg, r, f"regimens.{name}", spec) for name, r in regs.items()}
    arms = _arms(cfg, spec, regimens)
    metrics = _config.metrics(cfg, spec)
    target = _target(cfg, metrics)
    population = _population(cfg, spec)
    options = _config.solver_options(cfg)
    table = cp.dose_ranging(
        spec, arms, population, times, metrics, target, progress=not args.no_progress, **options
    )
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "doses.csv"
    table.to_csv(csv_path, index=False)
    written = [csv_path]
    for m in metrics if "dose" in table else ():
        fig = cp.plots.dose_response(table, m)
        written.append(out / f"dose_response_{m}.png")
        fig.savefig(written[-1], dpi=120)
        if target and m in target:
            fig = cp.plots.target_attainment(table, m)
            written.append(out / f"target_attainment_{m}.png")
            fig.savefig(written[-1], dpi=120)
    n_arms = int(table["arm"].nunique())
    failed = int(table.groupby("arm")["n_failed"].max().sum())
    print(
        f"{spec.name}: {n_arms} arms x {len(population)} virtual subjects, "
        f"{len(metrics)} metrics; {failed} failed solves"
    )
    for path in written:
        print(f"wrote {path}")
    return 0


def _population(cfg: Config, spec: Any) -> Any:
    p = cfg.data.get("population", {"n": 1})
    cfg.keys(p, "population", {"n", "random_effects", "covariates", "correlation", "typical"})
    n = cfg.count(cfg.integer(p.get("n", 1), "population.n"), "population.n", "subjects")
    re = p.get("random_effects", {})
    cfg.keys(re, "population.random_effects", set(spec.parameters))
    random_effects = {
        k: cfg.number(v, f"population.random_effects.{k}", lo=0.0) for k, v in re.items()
    }
    covs = p.get("covariates", {})
    cfg.keys(covs, "population.covariates", set(spec.covariates))
    covariates = {
        k: (
            _config.distribution_text(cfg, v, f"population.covariates.{k}")
            if isinstance(v, str)
            else cfg.number(v, f"population.covariates.{k}")
        )
        for k, v in covs.items()
    }
    typ = p.get("typical", {})
    cfg.keys(typ, "population.typical", set(spec.parameters))
    typical = {k: cfg.number(v, f"population.typical.{k}") for k, v in typ.items()}
    seed = cfg.integer(cfg.data.get("seed", 0), "seed", lo=0)
    try:
        return cp.VirtualPopulation(
            spec,
            n,
            random_effects=random_effects,
            correlation=p.get("correlation"),
            covariates=covariates,
            typical=typical,
            seed=seed,
        )
    except cp.CellPKPDError as exc:
        raise cfg.err("population", str(exc)) from None


def _arms(cfg: Config, spec: Any, regimens: dict[str, Any]) -> dict[str, Any]:
    arms = cfg.data["arms"]
    allowed = {"dose", "regimen", *spec.parameters, *spec.covariates}
    cfg.keys(arms, "arms", allowed)
    out: dict[str, Any] = {}
    for name, levels in arms.items():
        key = f"arms.{name}"
        if not isinstance(levels, list) or not levels:
            raise cfg.err(key, "expected a non-empty list")
        if name == "regimen":
            for r in levels:
                if r not in regimens:
                    raise cfg.err(key, f"{r!r} is not in [regimens] ({', '.join(regimens)})")
            out[name] = {r: regimens[r] for r in levels}
        else:
            lo = 0.0 if name == "dose" else None
            out[name] = [cfg.number(v, f"{key}[{i}]", lo=lo) for i, v in enumerate(levels)]
    out.setdefault("regimen", regimens)
    return out


def _target(cfg: Config, metrics: dict[str, Any]) -> dict[str, Any] | None:
    from ..analysis.doseranging import TARGET_OPERATORS

    t = cfg.data.get("target")
    if t is None:
        return None
    cfg.keys(t, "target", set(metrics))
    out = {}
    for name, rule in t.items():
        key = f"target.{name}"
        if not isinstance(rule, list) or len(rule) != 2 or rule[0] not in TARGET_OPERATORS:
            raise cfg.err(key, f'{rule!r}; expected [operator, value], e.g. [">=", 30]')
        out[name] = (rule[0], cfg.number(rule[1], f"{key}[1]"))
    return out
