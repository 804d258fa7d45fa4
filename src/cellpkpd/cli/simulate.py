"""``cellpkpd simulate MODEL``: one dose or a repeated dose, simulated with `cp.simulate`
and written as a CSV table and a PNG plot."""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import cellpkpd as cp

from .._core.errors import ArgumentError
from ..engine.dosing import MAX_DOSES
from ..engine.simulator import failure_message
from ._options import (
    FORMAT,
    MAX_TIMES,
    add_solver_arguments,
    assignments,
    check_folder,
    grid_count,
    quantity,
    read_text,
    time_grid,
)
from ._output import write_results

DEFAULT_END = 48.0  # [model time unit], without --interval/--count
POINTS = 400  # the default step is about end / POINTS, rounded down to a round number


def register(sub: Any) -> None:
    """Add the command to the CLI's sub-parsers (``argparse`` ``_SubParsersAction``)."""
    p = sub.add_parser(
        "simulate",
        help="simulate a dosing regimen; write a CSV table and a PNG plot",
        description=(
            "Simulate MODEL for one dose, or a dose repeated every --interval for --count\n"
            "doses, starting at time 0. Times and amounts are in the model's own units\n"
            "(see 'cellpkpd models MODEL'). Writes DIR/<model>_simulation.csv (columns\n"
            "subject, time, then one per state and observation) and\n"
            "DIR/<model>_simulation.png (one panel per observation, or per state when\n"
            "the model has none; for one subject of a biodistribution model, the percent\n"
            "of the dose in each organ)."
        ),
        epilog=(
            "examples:\n"
            "  cellpkpd simulate one_cmt_iv --dose 100 --duration 1\n"
            "  cellpkpd simulate two_cmt_iv --dose 100 --duration 1 --interval 24 --count 7 "
            "--log\n"
            "  cellpkpd simulate one_cmt_oral --dose 320 --param ka=0.8,1.5,3 --end 24\n"
            "  cellpkpd simulate my_model.toml --dose 1e6 --cmt venous --times-file times.txt"
        ),
        formatter_class=FORMAT,
    )
    p.add_argument("model", metavar="MODEL", help="library model name or path to a .toml file")
    _dose_arguments(p)
    _time_arguments(p)
    for flag, what in (("--param", "a parameter"), ("--covariate", "a covariate")):
        p.add_argument(
            flag,
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help=f"set {what} (repeatable); VALUE may be a comma-separated list, one value "
            "per virtual subject, e.g. --param CL=1.5,2,3",
        )
    add_solver_arguments(p)
    p.add_argument("--log", action="store_true", help="logarithmic y-axis in the plot")
    p.add_argument(
        "--output",
        default=".",
        metavar="DIR",
        help="folder for the CSV and PNG, created if needed (default: current folder)",
    )
    p.set_defaults(func=run)


def _dose_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dose",
        type=quantity("amount", "'2e6 cells', '2e6 cells/kg', '2e6/kg' or '5 mg/kg'"),
        default=0.0,
        metavar="AMOUNT",
        help="amount of each dose, >= 0: a number [model amount unit, e.g. mg or cells] or "
        "a number with a unit ('2e6 cells', '5 mg'); per kg of body weight as '2e6 cells/kg' "
        "or '2e6/kg' (the model's body_weight or WT) (default 0: no dose, for models that "
        "start from their initial state such as cart_ck)",
    )
    p.add_argument(
        "--cmt",
        metavar="STATE",
        help="dosed state: a name, or a 1-based number as NONMEM's CMT (default: the first "
        "state with a [dosing] rule in the model file, else the first state; with a "
        "[routes] block, the first route instead)",
    )
    p.add_argument(
        "--route",
        metavar="ROUTE",
        help="dose into a route of the model's [routes] block (every state of the route at "
        "once, e.g. --route iv); not with --cmt",
    )
    p.add_argument(
        "--duration",
        type=quantity("time", "'1 d' or '30 min'"),
        default=0.0,
        metavar="H",
        help="infusion duration [model time unit, or with a unit: '1 d', '30 min']; 0 = "
        "bolus (default)",
    )
    p.add_argument(
        "--interval",
        type=quantity("time", "'24 h' or '1 week'"),
        metavar="H",
        help="dosing interval [model time unit, or with a unit: '1 d']; give with --count",
    )
    p.add_argument("--count", type=int, metavar="N", help="number of doses; give with --interval")
    p.add_argument(
        "--lag",
        type=quantity("time", "'30 min'"),
        default=0.0,
        metavar="H",
        help="lag time [model time unit, or with a unit: '30 min'] (0)",
    )


def _time_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--end",
        type=float,
        metavar="T",
        help=f"last output time [model time unit], > 0 (default: {DEFAULT_END:g}, or "
        "interval x count with --interval/--count)",
    )
    times = p.add_mutually_exclusive_group()
    times.add_argument(
        "--step",
        type=float,
        metavar="DT",
        help=f"output every DT from 0 to END [model time unit] (default: about END/{POINTS}, "
        "rounded down to 1, 2, 2.5 or 5 times a power of ten)",
    )
    times.add_argument(
        "--times-file",
        metavar="F",
        help="text file of output times (numbers separated by newlines, spaces or commas; "
        "an optional header word such as 'time'; '#' starts a comment); replaces --end/--step",
    )


# ---------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> int:
    """Simulate the regimen of the arguments; write the table and plot; 1 if a subject
    failed (its rows are NaN, with its status)."""
    check_folder(args.output)
    spec = cp.load_model(args.model)
    params = assignments(args.param, "--param")
    covariates = assignments(args.covariate, "--covariate")
    dose, regimen, interval = _regimen(args, spec)
    times = _output_times(args)
    with warnings.catch_warnings():
        # a failed subject: written as NaN with its status, reported below
        warnings.filterwarnings("ignore", message=".*their values are NaN", category=RuntimeWarning)
        res = cp.simulate(
            spec,
            regimen,
            times,
            params=params or None,
            covariates=covariates or None,
            solver=args.solver,
            rtol=args.rtol,
            atol=args.atol,
            max_steps=args.max_steps,
            on_failure="nan",
        )
    what = _describe_regimen(spec, dose, interval, args.count)
    csv_path, png_path = write_results(
        res,
        spec,
        args.output,
        f"{spec.name}_simulation",
        log=args.log,
        title=f"{spec.name}: {what}",
        varied={**params, **covariates},
    )
    n = res.sizes["subject"]
    print(
        f"{spec.name}: {what}; {n} subject{'s' if n > 1 else ''}; {times.size} output times "
        f"from {times[0]:g} to {times[-1]:g} {spec.time_unit}; solver {res.attrs['solver']}"
    )
    print(f"table: {csv_path}")
    print(f"plot:  {png_path}")
    status = res["status"].values
    if np.any(status != 0):
        msg = failure_message(status, list(res["subject"].values))
        print(
            f"cellpkpd: error: {spec.name}: {msg}; their rows in the table are NaN (column status)",
            file=sys.stderr,
        )
        return 1
    return 0


def _regimen(args: argparse.Namespace, spec: cp.ModelSpec) -> tuple[cp.Dose, cp.Regimen, Any]:
    """The dose, the regimen and the interval [model time unit] of the arguments."""
    if args.route is not None and args.cmt is not None:
        raise ArgumentError("--route and --cmt: give one target, not both")
    route, cmt = args.route, None if args.cmt is None else _cmt(args.cmt)
    if route is not None and route not in spec.routes:
        raise ArgumentError(
            f"--route {route}: unknown route; routes of {spec.name}: "
            + (", ".join(spec.routes) or "none (the model file has no [routes] block)")
        )
    if route is None and cmt is None:
        # the model's first route doses every state a dose of the product enters
        route = next(iter(spec.routes), None)
        cmt = _default_cmt(spec) if route is None else None
    dose = cp.Dose(
        time=0.0, amount=args.dose, cmt=cmt, duration=args.duration, lag=args.lag, route=route
    )
    interval = args.interval
    if isinstance(interval, str):  # with a unit: in the model's time unit
        from ..spec.units import convert, split_quantity

        value, unit = split_quantity(interval)
        interval = convert(value, unit, spec.time_unit.strip().lower(), "--interval")
        args.interval = interval  # the default --end is count x interval [model time unit]
    if (args.interval is None) != (args.count is None):
        raise ArgumentError("--interval and --count go together: give both, or neither")
    if args.count is not None and args.count > MAX_DOSES:
        raise ArgumentError(
            f"--count {args.count}: too many doses; expected at most {MAX_DOSES} per subject"
        )
    if args.count is not None:
        return dose, cp.Regimen.repeat(dose, interval=interval, count=args.count), interval
    return dose, cp.Regimen([dose]), interval


def _cmt(text: str) -> str | int:
    text = text.strip()
    return int(text) if text.isdigit() else text


def _default_cmt(spec: cp.ModelSpec) -> str:
    """The first state with a ``[dosing]`` rule, else the first state."""
    for name in spec.states:
        if name in spec.dosing:
            return name
    return next(iter(spec.states))


def _round_step(x: float) -> float:
    """Largest of 1, 2, 2.5, 5 times a power of ten that is <= x."""
    base = 10.0 ** math.floor(math.log10(x))
    return max(m * base for m in (1.0, 2.0, 2.5, 5.0) if m * base <= x * (1 + 1e-12))


def _output_times(args: argparse.Namespace) -> np.ndarray:
    if args.times_file is not None:
        if args.end is not None:
            raise ArgumentError("--end and --times-file exclude each other")
        return _read_times(Path(args.times_file))
    end = args.end
    if end is None:
        end = DEFAULT_END
        if args.count is not None and args.interval is not None and args.interval > 0:
            end = args.interval * args.count
    if not (math.isfinite(end) and end > 0):
        raise ArgumentError(f"--end = {end:g} must be a number > 0 [model time unit]")
    step = _round_step(end / POINTS) if args.step is None else args.step
    if not (math.isfinite(step) and step > 0):
        raise ArgumentError(f"--step = {step:g} must be a number > 0 [model time unit]")
    count = grid_count(0.0, end, step)
    if count > MAX_TIMES:
        raise ArgumentError(
            f"--step = {step:g} gives {count} output times from 0 to {end:g}; at most "
            f"{MAX_TIMES} (use a larger --step)"
        )
    return time_grid(0.0, end, step)


def _read_times(path: Path) -> np.ndarray:
    text = read_text(path, f"--times-file {path}")
    values: list[float] = []
    header_seen = False
    for lineno, line in enumerate(text.splitlines(), start=1):
        for token in line.split("#", 1)[0].replace(",", " ").split():
            try:
                values.append(float(token))
            except ValueError:
                if values or header_seen:
                    raise ArgumentError(
                        f"--times-file {path} line {lineno}: {token!r} is not a number"
                    ) from None
                header_seen = True  # one header word before the numbers, e.g. "time"
    if not values:
        raise ArgumentError(f"--times-file {path}: no output times found")
    return np.asarray(values)


def _describe_regimen(
    spec: cp.ModelSpec, dose: cp.Dose, interval: float | None, count: int | None
) -> str:
    tu = spec.time_unit
    if dose.route is not None:
        target = f"route {dose.route} ({', '.join(spec.routes[dose.route])})"
    else:
        target = dose.cmt if isinstance(dose.cmt, str) else list(spec.states)[dose.cmt - 1]
    per_kg = dose.per_body_weight(spec)
    dose = dose.resolve(spec, 1.0)  # in the model's units (per kg: for 1 kg)
    how = f"{dose.duration:g}-{tu} infusion" if dose.duration else "bolus"
    n = count or 1
    per = "/kg" if per_kg else ""
    text = f"{dose.amount:g} {spec.amount_unit}{per} into {target} ({how})"
    if n > 1:
        text = f"{n} doses of {text} every {interval:g} {tu}"
    if dose.lag:
        text += f", lag {dose.lag:g} {tu}"
    return text
