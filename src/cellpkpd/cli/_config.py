"""The TOML configuration of the batch commands (``cellpkpd doses``, ``cellpkpd sweep``):
reading the file and turning its common keys (model, times, regimens, metrics, solver
options, output folder) into library objects, with one-line errors naming file and key."""

from __future__ import annotations

import argparse
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import cellpkpd as cp

from .._core.errors import ArgumentError
from ..engine.dosing import MAX_DOSES
from ._options import FORMAT, MAX_TIMES, SOLVERS, grid_count, read_text, time_grid

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
# most parameter sets of a sweep or subjects of a population: 1e8 sets take 0.8 GB per
# varied name before any solve
MAX_SETS = 100_000_000

COMMON_HELP = """\
  model = "NAME or path.toml"   species = "..." (optional)
  output = "DIR"                (relative to the config; --out overrides)
  chunk_size = 100000           solver = "auto"   rtol = 1e-8   atol = 1e-8
  [times]  start, end, step     or  values = [...]        [model time unit]
  [metrics]  NAME = { kind = "auc", output = "conc", start = 0, end = 168 }
      kinds: auc cmax tmax (output, start, end), value_at (output, time),
      time_above (output, threshold, start, end), half_life (output, start, end),
      cell_days (output = state, start, end), max_pct_change (output, direction =
      "decrease"|"increase"), time_to (output, threshold, direction = "below"|"above")"""


def error(where: str, message: str) -> Exception:
    return ArgumentError(f"{where}: {message}")


def add_batch_command(
    sub: Any, name: str, *, help: str, description: str, epilog: str, run: Any
) -> None:
    """Add a batch command (positional CONFIG.toml, ``--out``, ``--no-progress``) to the
    CLI's sub-parsers; `run` is called with the parsed arguments."""
    p = sub.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=FORMAT
    )
    p.add_argument("config", metavar="CONFIG.toml", help=f"{name} configuration")
    p.add_argument(
        "--out",
        "--output",
        dest="out",
        metavar="DIR",
        help="output folder (default: the config's 'output')",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


class Config:
    """The parsed TOML with the file name, for error messages that name the key."""

    def __init__(self, path: str | Path, allowed: set[str], required: set[str]):
        self.path = Path(path)
        text = read_text(self.path, str(self.path))
        try:
            self.data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise error(str(self.path), f"not valid TOML ({exc})") from None
        self.name = self.path.name
        self.keys(self.data, "", allowed, required)

    def err(self, key: str, message: str) -> Exception:
        return error(f"{self.name}: {key}" if key else self.name, message)

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

    def count(self, n: int, key: str, what: str) -> int:
        """`n` sets or subjects, at most `MAX_SETS` (read when called, so tests can lower it)."""
        if n > MAX_SETS:
            raise self.err(key, f"{n:,} {what}; expected at most {MAX_SETS:,}")
        return n


def model(cfg: Config) -> Any:
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


def times(cfg: Config) -> np.ndarray:
    t = cfg.data["times"]
    if isinstance(t, list):
        values = [cfg.number(v, f"times[{i}]", lo=0.0) for i, v in enumerate(t)]
        if not values:
            raise cfg.err("times", "empty list")
        return np.asarray(values)
    cfg.keys(t, "times", {"start", "end", "step", "values"})
    if "values" in t:
        values = t["values"]
        if not isinstance(values, list) or not values:
            raise cfg.err("times.values", "expected a non-empty list of numbers")
        return np.asarray(
            [cfg.number(v, f"times.values[{i}]", lo=0.0) for i, v in enumerate(values)]
        )
    if "end" not in t or "step" not in t:
        raise cfg.err("times", "give values = [...] or end and step (and optionally start)")
    start = cfg.number(t.get("start", 0.0), "times.start", lo=0.0)
    end = cfg.number(t["end"], "times.end", positive=True)
    step = cfg.number(t["step"], "times.step", positive=True)
    if end <= start:
        raise cfg.err("times.end", f"{end:g} must be > times.start = {start:g}")
    if grid_count(start, end, step) > MAX_TIMES:
        raise cfg.err("times.step", f"{step:g} gives more than 1e6 output times")
    return time_grid(start, end, step)


def _dose(cfg: Config, d: Any, key: str) -> Any:
    fields = {"time", "amount", "cmt", "duration", "lag", "bioavailability", "rate", "ss", "ii"}
    cfg.keys(d, key, fields, {"amount", "cmt"})
    try:
        return cp.Dose(**{"time": 0.0, **d})
    except (cp.CellPKPDError, TypeError) as exc:
        raise cfg.err(key, str(exc)) from None


def regimen(cfg: Config, r: Any, key: str, spec: Any) -> Any:
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


def metrics(cfg: Config, spec: Any) -> dict[str, Any]:
    from cellpkpd import metrics as cpm

    table = cfg.data["metrics"]
    cfg.keys(table, "metrics", set(table) if isinstance(table, Mapping) else set())
    if not table:
        raise cfg.err("metrics", "no metrics given")
    dose_time = spec.dose_time_derived  # (known only at dose records)
    known = (*spec.states, *spec.observations, *(d for d in spec.derived if d not in dose_time))
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


def solver_options(cfg: Config) -> dict[str, Any]:
    """``solver``, ``rtol``, ``atol`` (when given) and ``chunk_size``, as keywords of
    `cp.sweep` and `cp.dose_ranging`."""
    out: dict[str, Any] = {}
    if "solver" in cfg.data:
        solver = cfg.data["solver"]
        if solver not in SOLVERS:
            raise cfg.err("solver", f"{solver!r}; expected auto, exact, tsit5 or kvaerno5")
        out["solver"] = solver
    for k in ("rtol", "atol"):
        if k in cfg.data:
            out[k] = cfg.number(cfg.data[k], k, positive=True)
    out["chunk_size"] = cfg.integer(cfg.data.get("chunk_size", 100_000), "chunk_size")
    return out


def out_dir(cfg: Config, args: argparse.Namespace, default: str) -> Path:
    folder = args.out if args.out is not None else cfg.data.get("output", default)
    if not isinstance(folder, str) or not folder:
        raise cfg.err("output", f"{folder!r} must be a folder name")
    out = Path(folder)
    if not out.is_absolute() and args.out is None:
        out = cfg.path.parent / out  # relative to the config file
    if out.exists() and not out.is_dir():
        raise error(str(out), "exists and is not a folder")
    return out


def distribution_text(cfg: Config, text: Any, key: str) -> str:
    from ..spec.model import parse_prior

    text = cfg.text(text, key)
    try:
        parse_prior(text, key)
    except cp.CellPKPDError as exc:
        raise cfg.err(key, str(exc).removeprefix(f"{key}: ")) from None
    return text
