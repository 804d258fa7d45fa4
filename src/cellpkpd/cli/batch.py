"""Batch commands of the ``cellpkpd`` CLI: ``doses`` (dose-ranging) and ``sweep``.

Both read a TOML configuration (examples in ``docs/examples/doses.toml`` and
``docs/examples/sweep.toml``), call the public functions (`cp.VirtualPopulation`,
`cp.dose_ranging`, `cp.sweep`) and write a CSV table, a netCDF data set (sweep) and PNG
plots. A bad configuration exits with code 2 and one line naming the file and key.
"""

from __future__ import annotations

import argparse
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._core.errors import ArgumentError
from .._core.io import decode_text
from ..engine.dosing import MAX_DOSES

__all__ = ["load_config", "register"]

_FORMAT = argparse.RawDescriptionHelpFormatter
METRIC_KINDS = (
    "auc",
    "cmax",
    "tmax",
    "value_at",
    "time_above",
    "half_life",
    "cell_days",
    "max_pct_change",
    "time_to",
)
SAMPLERS = ("grid", "random", "sobol")
# most parameter sets of a sweep: 1e8 sets take 0.8 GB per varied name before any solve
MAX_SETS = 100_000_000


def _error(where: str, message: str) -> Exception:
    return ArgumentError(f"{where}: {message}")


_COMMON_HELP = """\
  model = "NAME or path.toml"   species = "..." (optional)
  output = "DIR"                (relative to the config; --out overrides)
  chunk_size = 100000           solver = "auto"   rtol = 1e-8   atol = 1e-8
  [times]  start, end, step     or  values = [...]        [model time unit]
  [metrics]  NAME = { kind = "auc", output = "conc", start = 0, end = 168 }
      kinds: auc cmax tmax (output, start, end), value_at (output, time),
      time_above (output, threshold, start, end), half_life (output, start, end),
      cell_days (output = state, start, end), max_pct_change (output, direction =
      "decrease"|"increase"), time_to (output, threshold, direction = "below"|"above")"""

DOSES_HELP = f"""configuration keys (TOML):
{_COMMON_HELP}
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

SWEEP_HELP = f"""configuration keys (TOML):
{_COMMON_HELP}
  resume = false                (true: keep chunks in OUT/chunks, continue a stopped run)
  [regimen]  doses = [{{ time, amount, cmt, duration, ... }}]  or dose with interval, count
  [sampler]  kind = "grid" | "random" | "sobol", n (not for grid), seed
  [sampler.parameters]  NAME = [levels] (grid)  or  {{ low, high, scale = "linear"|"log",
      num (grid) }}  or  {{ distribution = "lognormal(log(2), 0.3)" }} (random)
  [covariates]  COV = value     (fixed for every set)

example: docs/examples/sweep.toml in the cellpkpd repository"""


# ---------------------------------------------------------------------- parser
def register(sub: Any) -> None:
    """Add the batch commands to the CLI's sub-parsers (``argparse`` ``_SubParsersAction``)."""
    p = sub.add_parser(
        "doses",
        help="dose-ranging over a virtual population: CSV table + dose-response PNG",
        description=(
            "Evaluate every arm of a dose x regimen x product-attribute grid on every\n"
            "subject of a virtual population (one cp.sweep call) and summarise each metric\n"
            "per arm: median, 5th and 95th percentiles and, with [target], the probability\n"
            "of target attainment. Writes OUT/doses.csv, OUT/dose_response_<metric>.png\n"
            "and, with a target, OUT/target_attainment_<metric>.png."
        ),
        epilog=DOSES_HELP,
        formatter_class=_FORMAT,
    )
    p.add_argument("config", metavar="CONFIG.toml", help="dose-ranging configuration")
    p.add_argument(
        "--out",
        "--output",
        dest="out",
        metavar="DIR",
        help="output folder (default: the config's 'output')",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_doses)

    p = sub.add_parser(
        "sweep",
        help="evaluate metrics over many parameter sets: netCDF + CSV + histogram PNG",
        description=(
            "Draw parameter/covariate sets (grid, random or Sobol sampler), evaluate the\n"
            "model's metrics for each with cp.sweep (chunked, over the JAX devices) and write\n"
            "OUT/sweep.nc (inputs, metrics and solver status per sample), OUT/sweep.csv and\n"
            "OUT/sweep_histograms.png. With 'resume = true', finished chunks are kept in\n"
            "OUT/chunks and a re-run continues where an interrupted one stopped."
        ),
        epilog=SWEEP_HELP,
        formatter_class=_FORMAT,
    )
    p.add_argument("config", metavar="CONFIG.toml", help="sweep configuration")
    p.add_argument(
        "--out",
        "--output",
        dest="out",
        metavar="DIR",
        help="output folder (default: the config's 'output')",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_sweep)


# ---------------------------------------------------------------------- config pieces
class _Config:
    """The parsed TOML with the file name, for error messages that name the key."""

    def __init__(self, path: str | Path, allowed: set[str], required: set[str]):
        self.path = Path(path)
        try:
            text = decode_text(self.path.read_bytes())
        except FileNotFoundError:
            raise _error(str(self.path), "file not found") from None
        except OSError as exc:
            raise _error(str(self.path), f"cannot read ({exc.strerror})") from None
        except ValueError as exc:  # not UTF-8 text
            raise _error(str(self.path), str(exc)) from None
        try:
            self.data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise _error(str(self.path), f"not valid TOML ({exc})") from None
        self.name = self.path.name
        self.keys(self.data, "", allowed, required)

    def err(self, key: str, message: str) -> Exception:
        return _error(f"{self.name}: {key}" if key else self.name, message)

    def keys(
        self,
        table: Any,
        key: str,
        allowed: set[str],
        required: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        if not isinstance(table, Mapping):
            raise self.err(key, "expected a table")
        for k in table:
            if k not in allowed:
                expected = ", ".join(sorted(allowed)) or "none here"
                raise self.err(f"{key}.{k}" if key else k, f"unknown key; expected: {expected}")
        for k in sorted(required):
            if k not in table:
                raise self.err(f"{key}.{k}" if key else k, "missing")

    def number(
        self, value: Any, key: str, *, positive: bool = False, lo: float | None = None
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.err(key, f"{value!r} is not a number")
        v = float(value)
        if not math.isfinite(v) or (positive and not v > 0) or (lo is not None and v < lo):
            need = "> 0" if positive else (f">= {lo:g}" if lo is not None else "finite")
            raise self.err(key, f"{value!r} must be a number {need}")
        return v

    def integer(self, value: Any, key: str, lo: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise self.err(key, f"{value!r} must be an integer >= {lo}")
        return int(value)

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.err(key, f"{value!r} must be a non-empty string")
        return value


def _model(cfg: _Config) -> Any:
    import cellpkpd as cp

    name = cfg.text(cfg.data["model"], "model")
    species = cfg.data.get("species")
    if species is not None:
        species = cfg.text(species, "species")
    path = Path(name)
    if not path.is_absolute() and name.endswith(".toml") and not path.exists():
        path = cfg.path.parent / name  # relative to the config file
        name = str(path) if path.exists() else name
    try:
        return cp.load_model(name, species=species)
    except cp.CellPKPDError as exc:
        raise cfg.err("model", str(exc)) from None


def _times(cfg: _Config) -> np.ndarray:
    t = cfg.data["times"]
    if isinstance(t, list):
        values = [cfg.number(v, f"times[{i}]", lo=0.0) for i, v in enumerate(t)]
        if not values:
            raise cfg.err("times", "empty list")
        return np.asarray(values)
    cfg.keys(t, "times", {"start", "end", "step", "values"})
    if "values" in t:
        return _times_list(cfg, t["values"])
    if "end" not in t or "step" not in t:
        raise cfg.err("times", "give values = [...] or end and step (and optionally start)")
    start = cfg.number(t.get("start", 0.0), "times.start", lo=0.0)
    end = cfg.number(t["end"], "times.end", positive=True)
    step = cfg.number(t["step"], "times.step", positive=True)
    if end <= start:
        raise cfg.err("times.end", f"{end:g} must be > times.start = {start:g}")
    n = math.floor((end - start) / step + 1e-9)
    if n + 1 > 1_000_000:
        raise cfg.err("times.step", f"{step:g} gives more than 1e6 output times")
    times = start + np.arange(n + 1) * step
    if end - times[-1] > 1e-9 * end:
        times = np.append(times, end)
    return times


def _times_list(cfg: _Config, values: Any) -> np.ndarray:
    if not isinstance(values, list) or not values:
        raise cfg.err("times.values", "expected a non-empty list of numbers")
    return np.asarray([cfg.number(v, f"times.values[{i}]", lo=0.0) for i, v in enumerate(values)])


def _dose(cfg: _Config, d: Any, key: str) -> Any:
    import cellpkpd as cp

    fields = {"time", "amount", "cmt", "duration", "lag", "bioavailability", "rate", "ss", "ii"}
    cfg.keys(d, key, fields, {"amount", "cmt"})
    try:
        return cp.Dose(**{"time": 0.0, **d})
    except (cp.CellPKPDError, TypeError) as exc:
        raise cfg.err(key, str(exc)) from None


def _regimen(cfg: _Config, r: Any, key: str, spec: Any) -> Any:
    import cellpkpd as cp

    cfg.keys(r, key, {"doses", "dose", "interval", "count"})
    try:
        if "doses" in r:
            if set(r) - {"doses"}:
                raise cfg.err(key, "give either doses = [...] or dose with interval and count")
            if not isinstance(r["doses"], list) or not r["doses"]:
                raise cfg.err(f"{key}.doses", "expected a non-empty list of dose tables")
            reg = cp.Regimen([_dose(cfg, d, f"{key}.doses[{i}]") for i, d in enumerate(r["doses"])])
        elif "dose" in r:
            dose = _dose(cfg, r["dose"], f"{key}.dose")
            if ("interval" in r) != ("count" in r):
                raise cfg.err(key, "interval and count go together")
            if "count" in r:
                count = cfg.integer(r["count"], f"{key}.count")
                if count > MAX_DOSES:
                    raise cfg.err(
                        f"{key}.count", f"{count} doses; expected at most {MAX_DOSES} per subject"
                    )
                interval = cfg.number(r["interval"], f"{key}.interval", positive=True)
                reg = cp.Regimen.repeat(dose, interval=interval, count=count)
            else:
                reg = cp.Regimen([dose])
        else:
            raise cfg.err(key, "give doses = [...] or dose = {...} (with interval and count)")
        reg.to_arrays(spec=spec)  # compartment names checked against the model
    except cp.CellPKPDError as exc:
        raise cfg.err(key, str(exc)) from None
    return reg


def _metrics(cfg: _Config, spec: Any) -> dict[str, Any]:
    import cellpkpd as cp
    from cellpkpd import metrics as cpm

    table = cfg.data["metrics"]
    cfg.keys(table, "metrics", set(table) if isinstance(table, Mapping) else set())
    if not table:
        raise cfg.err("metrics", "no metrics given")
    out = {}
    for name, m in table.items():
        key = f"metrics.{name}"
        if not name.isidentifier():
            raise cfg.err(key, "metric names must be identifiers (letters, digits, _)")
        if not isinstance(m, Mapping) or "kind" not in m:
            raise cfg.err(key, 'expected a table with kind, e.g. { kind = "auc", output = "conc" }')
        kind = m["kind"]
        if kind not in METRIC_KINDS:
            raise cfg.err(f"{key}.kind", f"{kind!r}; expected one of {', '.join(METRIC_KINDS)}")
        args = {k: v for k, v in m.items() if k != "kind"}
        if kind == "cell_days" and "output" in args:
            args["state"] = args.pop("output")
        output = args.get("state", args.get("output"))
        dose_time = spec.dose_time_derived  # (known only at dose records)
        known = (*spec.states, *spec.observations, *(d for d in spec.derived if d not in dose_time))
        if output is not None and output not in known:
            raise cfg.err(
                f"{key}.output",
                f"'{output}' is not an output of {spec.name}; known: " + ", ".join(known),
            )
        try:
            out[name] = getattr(cpm, kind)(**args)
        except TypeError as exc:
            raise cfg.err(key, f"bad arguments for {kind} ({exc})") from None
        except cp.CellPKPDError as exc:
            raise cfg.err(key, str(exc)) from None
    return out


def _solver_options(cfg: _Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "solver" in cfg.data:
        solver = cfg.data["solver"]
        if solver not in ("auto", "exact", "tsit5", "kvaerno5"):
            raise cfg.err("solver", f"{solver!r}; expected auto, exact, tsit5 or kvaerno5")
        out["solver"] = solver
    for k in ("rtol", "atol"):
        if k in cfg.data:
            out[k] = cfg.number(cfg.data[k], k, positive=True)
    out["chunk_size"] = cfg.integer(cfg.data.get("chunk_size", 100_000), "chunk_size")
    return out


def _out_dir(cfg: _Config, args: argparse.Namespace, default: str) -> Path:
    folder = args.out if args.out is not None else cfg.data.get("output", default)
    if not isinstance(folder, str) or not folder:
        raise cfg.err("output", f"{folder!r} must be a folder name")
    out = Path(folder)
    if not out.is_absolute() and args.out is None:
        out = cfg.path.parent / out  # relative to the config file
    if out.exists() and not out.is_dir():
        raise _error(str(out), "exists and is not a folder")
    return out


def _distribution_text(cfg: _Config, text: Any, key: str) -> str:
    import cellpkpd as cp

    from ..spec.model import parse_prior

    text = cfg.text(text, key)
    try:
        parse_prior(text, key)
    except cp.CellPKPDError as exc:
        raise cfg.err(key, str(exc).removeprefix(f"{key}: ")) from None
    return text


# ---------------------------------------------------------------------- doses
DOSES_KEYS = {
    "model", "species", "output", "times", "regimens", "arms", "population", "metrics",
    "target", "chunk_size", "solver", "rtol", "atol", "seed",
}  # fmt: skip


def load_config(path: str | Path, command: str) -> _Config:
    """Read and check the top-level keys of a ``doses`` or ``sweep`` configuration."""
    if command == "doses":
        return _Config(path, DOSES_KEYS, {"model", "times", "regimens", "arms", "metrics"})
    return _Config(path, SWEEP_KEYS, {"model", "times", "regimen", "sampler", "metrics"})


def _population(cfg: _Config, spec: Any) -> Any:
    import cellpkpd as cp

    p = cfg.data.get("population", {"n": 1})
    cfg.keys(p, "population", {"n", "random_effects", "covariates", "correlation", "typical"})
    n = cfg.integer(p.get("n", 1), "population.n")
    if n > MAX_SETS:
        raise cfg.err("population.n", f"{n:,} subjects; expected at most {MAX_SETS:,}")
    re = p.get("random_effects", {})
    cfg.keys(re, "population.random_effects", set(spec.parameters))
    random_effects = {
        k: cfg.number(v, f"population.random_effects.{k}", lo=0.0) for k, v in re.items()
    }
    covs = p.get("covariates", {})
    cfg.keys(covs, "population.covariates", set(spec.covariates))
    covariates = {
        k: (
            _distribution_text(cfg, v, f"population.covariates.{k}")
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


def _arms(cfg: _Config, spec: Any, regimens: dict[str, Any]) -> dict[str, Any]:
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


def _target(cfg: _Config, metrics: dict[str, Any]) -> dict[str, Any] | None:
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


def _cmd_doses(args: argparse.Namespace) -> int:
    import cellpkpd as cp

    from .. import plots

    cfg = load_config(args.config, "doses")
    out = _out_dir(cfg, args, "doses-out")
    spec = _model(cfg)
    times = _times(cfg)
    regs = cfg.data["regimens"]
    cfg.keys(regs, "regimens", set(regs) if isinstance(regs, Mapping) else set())
    if not regs:
        raise cfg.err("regimens", "no regimens given")
    regimens = {name: _regimen(cfg, r, f"regimens.{name}", spec) for name, r in regs.items()}
    arms = _arms(cfg, spec, regimens)
    metrics = _metrics(cfg, spec)
    target = _target(cfg, metrics)
    population = _population(cfg, spec)
    options = _solver_options(cfg)
    table = cp.dose_ranging(
        spec, arms, population, times, metrics, target, progress=not args.no_progress, **options
    )
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "doses.csv"
    table.to_csv(csv_path, index=False)
    written = [csv_path]
    has_dose = "dose" in table
    for m in metrics:
        if not has_dose:
            break
        fig = plots.dose_response(table, m)
        written.append(out / f"dose_response_{m}.png")
        fig.savefig(written[-1], dpi=120)
        if target and m in target:
            fig = plots.target_attainment(table, m)
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


# ---------------------------------------------------------------------- sweep
SWEEP_KEYS = {
    "model", "species", "output", "times", "regimen", "sampler", "covariates", "metrics",
    "chunk_size", "solver", "rtol", "atol", "resume",
}  # fmt: skip


def _range(cfg: _Config, v: Any, key: str) -> tuple[float, float, bool]:
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
    return low, high, scale == "log"


def _samples(cfg: _Config, spec: Any) -> dict[str, np.ndarray]:
    from scipy.stats import qmc

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
        sizes = {}
        for name, v in params.items():
            key = f"sampler.parameters.{name}"
            if isinstance(v, list):
                sizes[name] = len(v)
            elif isinstance(v, Mapping) and "num" in v:
                sizes[name] = cfg.integer(v["num"], f"{key}.num")
        total = math.prod(sizes.values())
        if total > MAX_SETS:
            product = " x ".join(f"{sizes[k]} ({k})" for k in sizes)
            raise cfg.err(
                "sampler.parameters",
                f"the grid has {product} = {total:,} parameter sets; expected at most "
                f"{MAX_SETS:,} (use fewer levels, or kind = 'sobol' with n)",
            )
        levels = {}
        for name, v in params.items():
            key = f"sampler.parameters.{name}"
            if isinstance(v, list):
                if not v:
                    raise cfg.err(key, "empty list")
                levels[name] = [cfg.number(x, f"{key}[{i}]") for i, x in enumerate(v)]
            else:
                if not isinstance(v, Mapping) or "num" not in v:
                    raise cfg.err(f"{key}.num", "missing (number of grid levels)")
                low, high, log = _range(cfg, v, key)
                num = cfg.integer(v["num"], f"{key}.num")
                levels[name] = list(
                    np.geomspace(low, high, num) if log else np.linspace(low, high, num)
                )
        # every combination, the last parameter varying fastest (as itertools.product)
        grids = np.meshgrid(*(np.asarray(x, dtype=float) for x in levels.values()), indexing="ij")
        return {name: g.ravel() for name, g in zip(levels, grids, strict=True)}
    n = cfg.integer(s.get("n", 0), "sampler.n")
    if n > MAX_SETS:
        raise cfg.err("sampler.n", f"{n:,} parameter sets; expected at most {MAX_SETS:,}")
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    if kind == "sobol":
        unit = qmc.Sobol(len(params), scramble=True, seed=rng).random(n)
    else:
        unit = rng.random((n, len(params)))
    for j, (name, v) in enumerate(params.items()):
        key = f"sampler.parameters.{name}"
        if isinstance(v, Mapping) and "distribution" in v:
            if kind != "random":
                raise cfg.err(f"{key}.distribution", "only the random sampler takes distributions")
            cfg.keys(v, key, {"distribution"})
            from ..infer.run import prior_distribution

            d = prior_distribution(_distribution_text(cfg, v["distribution"], key), key)
            import jax

            draws = d.sample(jax.random.PRNGKey(seed + j), (n,))
            out[name] = np.asarray(draws, dtype=float)
            continue
        if isinstance(v, list) or not isinstance(v, Mapping):
            raise cfg.err(key, "expected { low, high [, scale] } or { distribution = '...' }")
        low, high, log = _range(cfg, v, key)
        if "num" in v:
            raise cfg.err(f"{key}.num", "only a grid takes num")
        u = unit[:, j]
        out[name] = (
            np.exp(np.log(low) + u * (np.log(high) - np.log(low)))
            if log
            else low + u * (high - low)
        )
    return out


def _cmd_sweep(args: argparse.Namespace) -> int:
    import cellpkpd as cp

    from .. import plots

    cfg = load_config(args.config, "sweep")
    out = _out_dir(cfg, args, "sweep-out")
    spec = _model(cfg)
    times = _times(cfg)
    regimen = _regimen(cfg, cfg.data["regimen"], "regimen", spec)
    metrics = _metrics(cfg, spec)
    samples = _samples(cfg, spec)
    n = next(iter(samples.values())).size
    covs = cfg.data.get("covariates", {})
    cfg.keys(covs, "covariates", set(spec.covariates))
    covariates = {k: np.full(n, cfg.number(v, f"covariates.{k}")) for k, v in covs.items()}
    covariates.update({k: v for k, v in samples.items() if k in spec.covariates})
    params = {k: v for k, v in samples.items() if k in spec.parameters}
    options = _solver_options(cfg)
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
    fig = plots.metric_histograms(
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
