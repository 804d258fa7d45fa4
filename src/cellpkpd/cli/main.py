"""Command-line interface: ``cellpkpd models``, ``simulate``, ``demo`` and ``fit`` (the batch
commands ``doses`` and ``sweep`` are in `cellpkpd.cli.batch`).

A thin layer over the public API (`load_model`, `list_models`, `Dose`, `Regimen`,
`simulate`): it turns arguments into those calls, writes the result as a CSV table and a
PNG plot, and turns every cellpkpd error into one line on stderr with a non-zero exit code
(2 for bad input, 1 for a failed solve or an unwritable output).
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import cellpkpd as cp
from cellpkpd._core.errors import ArgumentError
from cellpkpd._core.io import decode_text
from cellpkpd.engine.dosing import MAX_DOSES
from cellpkpd.engine.simulator import failure_message
from cellpkpd.spec.model import models_dir

__all__ = ["build_parser", "main"]

PROG = "cellpkpd"
DEFAULT_END = 48.0  # [model time unit], without --interval/--count
POINTS = 400  # the default step is about end / POINTS, rounded down to a round number
MAX_TIMES = 1_000_000

# demo: two_cmt_iv, 100 mg as a 1-h infusion every 24 h for 7 days, 5 virtual subjects
DEMO_SEED = 20240601
DEMO_SUBJECTS = 5
DEMO_OMEGA = 0.3  # SD of log(CL) and log(V1) between subjects (about 30 % CV)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (raised, not printed with the usage)."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise ArgumentError(f"{message} (see '{self.prog} --help')")


_FORMAT = argparse.RawDescriptionHelpFormatter


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cellpkpd`` command, with its subcommands."""
    parser = _Parser(
        prog=PROG,
        description=(
            "PK-PD toolkit for living-cell drugs: model library, simulation, fitting, "
            "dose-ranging, sweeps."
        ),
        epilog=(
            "commands:\n"
            "  cellpkpd models [NAME]        list library models, or show one\n"
            "  cellpkpd simulate MODEL ...   simulate a regimen, write CSV + PNG\n"
            "  cellpkpd demo                 a bundled example (CSV + PNG in ./cellpkpd-demo)\n"
            "  cellpkpd fit DATA.csv MODEL   fit a population model (CSV + netCDF + PNG)\n"
            "  cellpkpd doses CONFIG.toml    dose-ranging over a virtual population (CSV + PNG)\n"
            "  cellpkpd sweep CONFIG.toml    parameter sweep with metrics (netCDF + CSV + PNG)\n"
            "\n"
            "Run 'cellpkpd COMMAND --help' for a command's options."
        ),
        formatter_class=_FORMAT,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {cp.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # models ------------------------------------------------------------------
    p = sub.add_parser(
        "models",
        help="list library models, or describe one",
        description=(
            "Without NAME: list the bundled library models with their one-line descriptions.\n"
            "With NAME (a library name or a path to a .toml model file): print the model's\n"
            "summary and its parameters (name, value, unit, description)."
        ),
        formatter_class=_FORMAT,
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="library model name or .toml path")
    p.set_defaults(func=_cmd_models)

    # simulate ----------------------------------------------------------------
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
        formatter_class=_FORMAT,
    )
    p.add_argument("model", metavar="MODEL", help="library model name or path to a .toml file")
    p.add_argument(
        "--dose",
        type=_quantity("amount", "'2e6 cells', '2e6 cells/kg', '2e6/kg' or '5 mg/kg'"),
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
        type=_quantity("time", "'1 d' or '30 min'"),
        default=0.0,
        metavar="H",
        help="infusion duration [model time unit, or with a unit: '1 d', '30 min']; 0 = "
        "bolus (default)",
    )
    p.add_argument(
        "--interval",
        type=_quantity("time", "'24 h' or '1 week'"),
        metavar="H",
        help="dosing interval [model time unit, or with a unit: '1 d']; give with --count",
    )
    p.add_argument("--count", type=int, metavar="N", help="number of doses; give with --interval")
    p.add_argument(
        "--lag",
        type=_quantity("time", "'30 min'"),
        default=0.0,
        metavar="H",
        help="lag time [model time unit, or with a unit: '30 min'] (0)",
    )
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
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a parameter (repeatable); VALUE may be a comma-separated list, one value "
        "per virtual subject, e.g. --param CL=1.5,2,3",
    )
    p.add_argument(
        "--covariate",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a covariate (repeatable; comma-separated lists as for --param)",
    )
    p.add_argument(
        "--solver",
        choices=("auto", "exact", "tsit5", "kvaerno5"),
        default="auto",
        help="auto (default): exact matrix exponential for linear models, else diffrax "
        "Tsit5 (Kvaerno5 for models marked stiff)",
    )
    p.add_argument("--rtol", type=float, default=1e-8, help="ODE relative tolerance (1e-8)")
    p.add_argument(
        "--atol", type=float, default=1e-8, help="ODE absolute tolerance [amount] (1e-8)"
    )
    p.add_argument(
        "--max-steps", type=int, default=100_000, help="ODE step limit per segment (100000)"
    )
    p.add_argument("--log", action="store_true", help="logarithmic y-axis in the plot")
    p.add_argument(
        "--output",
        default=".",
        metavar="DIR",
        help="folder for the CSV and PNG, created if needed (default: current folder)",
    )
    p.set_defaults(func=_cmd_simulate)

    # demo --------------------------------------------------------------------
    p = sub.add_parser(
        "demo",
        help="simulate a bundled example and write its table and plot",
        description=(
            "Simulate the library model two_cmt_iv: 100 mg as a 1-h infusion every 24 h for\n"
            f"7 days, output every 0.5 h from 0 to 168 h, for {DEMO_SUBJECTS} virtual subjects "
            "whose CL\nand V1 vary log-normally between subjects (SD of the logs "
            f"{DEMO_OMEGA:g}, fixed seed\n{DEMO_SEED}). Writes two_cmt_iv_demo.csv and "
            "two_cmt_iv_demo.png (concentration\nvs time, one line per subject, log y-axis) "
            "into the output folder."
        ),
        formatter_class=_FORMAT,
    )
    p.add_argument(
        "--output",
        default="cellpkpd-demo",
        metavar="DIR",
        help="folder for the CSV and PNG, created if needed (default: ./cellpkpd-demo)",
    )
    p.set_defaults(func=_cmd_demo)

    # fit ---------------------------------------------------------------------
    p = sub.add_parser(
        "fit",
        help="fit a model to a NONMEM-style data set (posterior CSV, netCDF, GOF PNG)",
        description=(
            "Fit MODEL (library name or .toml path) to DATA.csv (NONMEM-style: ID TIME AMT\n"
            "EVID CMT DV ... [LLOQ or CENS] [covariates]) with cp.fit. Writes into --out:\n"
            "fit_summary.csv (posterior summary of the population-level quantities; with\n"
            "--method map, their posterior mode), fit.nc (the arviz.InferenceData) and\n"
            "fit_gof.png (observed vs IPRED and PRED)."
        ),
        formatter_class=_FORMAT,
    )
    p.add_argument("data", metavar="DATA.csv", help="NONMEM-style data file")
    p.add_argument("model", metavar="MODEL", help="library model name or path to a .toml")
    p.add_argument(
        "--iiv",
        default="",
        metavar="P=SCALE,...",
        help="between-subject variability: parameter=prior scale of its omega, e.g. CL=0.3,V=0.3",
    )
    p.add_argument(
        "--error",
        default="",
        metavar="OBS=MODEL,...",
        help="residual error per observation: additive, proportional, combined or lognormal",
    )
    p.add_argument("--fixed", default="", metavar="P,...", help="parameters held fixed")
    p.add_argument(
        "--cov",
        default="",
        metavar="P=COV[:FORM],...",
        help="covariate effects, e.g. CL=WT:power,V=WT:power,CL=SEX:categorical (FORM: power "
        "(default), exponential, linear or categorical)",
    )
    p.add_argument(
        "--obs",
        default="",
        metavar="CMT=OBS,...",
        help="observation measured by records whose CMT is a state (name or number), e.g. 2=conc",
    )
    p.add_argument("--method", default="nuts", choices=("nuts", "svi", "map"))
    p.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4)")
    p.add_argument("--warmup", type=int, default=1000, help="NUTS warmup (default 1000)")
    p.add_argument("--draws", type=int, default=1000, help="draws (default 1000)")
    p.add_argument("--steps", type=int, default=3000, help="SVI / MAP steps (default 3000)")
    p.add_argument("--censoring", default="m3", choices=("m3", "m1"))
    p.add_argument(
        "--covariates",
        default="nocb",
        choices=("nocb", "locf"),
        help="how a covariate that changes between records holds between them: nocb (default, "
        "as NONMEM: a record's value holds back to the previous record) or locf (from the "
        "record on, to the next)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out", default=".", metavar="DIR", help="output folder (default: current folder)"
    )
    p.set_defaults(func=_cmd_fit)
    from . import batch as cli_batch

    cli_batch.register(sub)
    return parser


# ---------------------------------------------------------------------- models
def _cmd_models(args: argparse.Namespace) -> int:
    if args.name is None:
        models = cp.list_models()
        if not models:
            print(f"no models in {models_dir()}")
            return 0
        width = max(len(k) for k in models)
        for name, description in models.items():
            print(f"{name:<{width}}  {description}")
        print(f"\n{len(models)} models in {models_dir()}; details: cellpkpd models NAME")
        return 0
    spec = cp.load_model(args.name)
    print(spec.summary())
    rows = [(p.name, f"{p.value:g}", p.unit, p.description) for p in spec.parameters.values()]
    print("\nparameters:")
    print(_table(("name", "value", "unit", "description"), rows))
    if spec.covariates:
        rows = [(c.name, f"{c.value:g}", c.unit, c.description) for c in spec.covariates.values()]
        print("\ncovariates:")
        print(_table(("name", "default", "unit", "description"), rows))
    return 0


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned text table (two spaces between columns)."""
    cells = [list(header), *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[j]) for r in cells) for j in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join("  " + ln for ln in lines)


# ---------------------------------------------------------------------- simulate
def _cmd_simulate(args: argparse.Namespace) -> int:
    _check_folder(args.output)
    spec = cp.load_model(args.model)
    params = _assignments(args.param, "--param")
    covariates = _assignments(args.covariate, "--covariate")
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
        from cellpkpd.spec.units import convert, split_quantity

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
        regimen = cp.Regimen.repeat(dose, interval=interval, count=args.count)
    else:
        regimen = cp.Regimen([dose])
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
    csv_path, png_path = _write_results(
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


def _quantity(kind: str, examples: str) -> Callable[[str], float | str]:
    """An argparse type: a number (model units), or a number with a unit kept as text for
    cp.Dose / the model to convert."""

    def parse(text: str) -> float | str:
        from cellpkpd.spec.units import split_quantity

        try:
            value = float(text)
        except ValueError:
            pass
        else:
            return value
        try:
            _, unit = split_quantity(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                f"invalid {kind} {text!r} ({exc}); expected a number, or a number with a unit "
                f"such as {examples}"
            ) from None
        if kind == "time" and unit is not None:
            from cellpkpd.spec.units import parse_unit, registry

            if parse_unit(unit, kind).dimensionality != registry().Unit("h").dimensionality:
                raise argparse.ArgumentTypeError(
                    f"invalid {kind} {text!r}: not a time; expected e.g. {examples}"
                )
        return text

    parse.__name__ = kind
    return parse


def _cmt(text: str) -> str | int:
    text = text.strip()
    return int(text) if text.isdigit() else text


def _default_cmt(spec: cp.ModelSpec) -> str:
    """The first state with a ``[dosing]`` rule, else the first state."""
    for name in spec.states:
        if name in spec.dosing:
            return name
    return next(iter(spec.states))


def _assignments(items: Sequence[str], flag: str) -> dict[str, Any]:
    """``["CL=2", "V=10,12"]`` -> ``{"CL": 2.0, "V": array([10., 12.])}``."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name or not text.strip():
            raise ArgumentError(f"{flag} {item!r}: expected NAME=VALUE, e.g. {flag} CL=2.5")
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise ArgumentError(
                f"{flag} {name}={text}: {text!r} is not a number (or comma-separated numbers)"
            ) from None
        if name in out:
            raise ArgumentError(f"{flag} {name} is given twice")
        out[name] = values[0] if len(values) == 1 else np.asarray(values)
    return out


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
    n = math.floor(end / step + 1e-9)
    if n + 1 > MAX_TIMES:
        raise ArgumentError(
            f"--step = {step:g} gives {n + 1} output times from 0 to {end:g}; at most "
            f"{MAX_TIMES} (use a larger --step)"
        )
    times = np.arange(n + 1) * step
    if end - times[-1] > 1e-9 * end:
        times = np.append(times, end)
    return times


def _read_times(path: Path) -> np.ndarray:
    try:
        text = decode_text(path.read_bytes())
    except FileNotFoundError:
        raise ArgumentError(f"--times-file {path}: file not found") from None
    except OSError as exc:
        raise ArgumentError(f"--times-file {path}: cannot read ({exc.strerror})") from None
    except ValueError as exc:  # not UTF-8 text
        raise ArgumentError(f"--times-file {path}: {exc}") from None
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


# ---------------------------------------------------------------------- demo
def _cmd_demo(args: argparse.Namespace) -> int:
    _check_folder(args.output)
    spec = cp.load_model("two_cmt_iv")
    dose = cp.Dose(time=0.0, amount=100.0, cmt="central", duration=1.0)  # 100 mg over 1 h
    regimen = cp.Regimen.repeat(dose, interval=24.0, count=7)  # daily for 7 days
    times = np.linspace(0.0, 168.0, 337)  # every 0.5 h [h]
    rng = np.random.default_rng(DEMO_SEED)
    eta = rng.normal(0.0, DEMO_OMEGA, size=(2, DEMO_SUBJECTS))
    params = {
        "CL": spec.parameters["CL"].value * np.exp(eta[0]),  # [L/h]
        "V1": spec.parameters["V1"].value * np.exp(eta[1]),  # [L]
    }
    res = cp.simulate(spec, regimen, times, params=params)
    title = (
        f"{spec.name}: 100 mg as 1-h infusion every 24 h x 7, {DEMO_SUBJECTS} subjects "
        f"(CL, V1 log-normal, SD {DEMO_OMEGA:g})"
    )
    csv_path, png_path = _write_results(
        res, spec, args.output, f"{spec.name}_demo", log=True, title=title, varied=params
    )
    conc = res["conc"]
    unit = conc.attrs.get("unit", "")
    peak = conc.sel(time=slice(144.0, 168.0)).max("time").values
    trough = conc.sel(time=168.0).values
    print(
        f"{spec.name} demo: 100 {spec.amount_unit} as a 1-{spec.time_unit} infusion every "
        f"24 {spec.time_unit} for 7 days, {DEMO_SUBJECTS} virtual subjects"
    )
    rows = [
        (str(s), f"{cl:.3g}", f"{v1:.3g}", f"{pk:.3g}", f"{tr:.3g}")
        for s, cl, v1, pk, tr in zip(
            res["subject"].values, params["CL"], params["V1"], peak, trough, strict=True
        )
    ]
    header = (
        "subject",
        f"CL [{spec.parameters['CL'].unit}]",
        f"V1 [{spec.parameters['V1'].unit}]",
        f"peak day 7 [{unit}]",
        f"conc at 168 h [{unit}]",
    )
    print(_table(header, rows))
    print(f"table: {csv_path}")
    print(f"plot:  {png_path}")
    return 0


# ---------------------------------------------------------------------- output
def _pairs(text: str, flag: str) -> dict[str, str]:
    """'A=1,B=2' -> {'A': '1', 'B': '2'}; a malformed item is an ArgumentError."""
    out: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, eq, value = item.partition("=")
        if not eq or not name.strip() or not value.strip():
            raise ArgumentError(f"{flag} {item!r}: expected NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def _covariate_effects(text: str) -> dict[str, dict[str, str]]:
    """'CL=WT:power,V=WT' -> {'CL': {'WT': 'power'}, 'V': {'WT': 'power'}}."""
    out: dict[str, dict[str, str]] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, eq, rest = item.partition("=")
        cov, _, form = rest.partition(":")
        if not eq or not name.strip() or not cov.strip():
            raise ArgumentError(f"--cov {item!r}: expected PARAMETER=COVARIATE[:FORM]")
        out.setdefault(name.strip(), {})[cov.strip()] = form.strip() or "power"
    return out


def _observation_map(text: str, spec: cp.ModelSpec) -> dict[str, str] | None:
    """'2=conc' or 'central=conc' -> {'central': 'conc'} (a number is NONMEM's CMT)."""
    states = list(spec.states)
    out: dict[str, str] = {}
    for cmt, obs in _pairs(text, "--obs").items():
        if cmt.isdigit():
            k = int(cmt)
            if not 1 <= k <= len(states):
                raise ArgumentError(
                    f"--obs {cmt}={obs}: CMT {k} is not a state of '{spec.name}' (1..{len(states)})"
                )
            cmt = states[k - 1]
        out[cmt] = obs
    return out or None


def _cmd_fit(args: argparse.Namespace) -> int:
    iiv: dict[str, float] = {}
    for k, v in _pairs(args.iiv, "--iiv").items():
        try:
            iiv[k] = float(v)
        except ValueError:
            raise ArgumentError(f"--iiv {k}={v}: the scale is not a number") from None
    for flag in ("chains", "warmup", "draws", "steps"):
        value = getattr(args, flag)
        if value < (0 if flag == "warmup" else 1):
            raise ArgumentError(f"--{flag} {value}: must be >= {0 if flag == 'warmup' else 1}")
    path = Path(args.data)
    if not path.is_file():
        raise ArgumentError(f"{path}: no such data file")
    out = _check_folder(args.out)
    spec = cp.load_model(args.model)
    data = cp.read_nonmem(path, covariates=args.covariates)
    fixed = [x.strip() for x in args.fixed.split(",") if x.strip()]
    pop = cp.Population(
        random_effects=iiv,
        error=_pairs(args.error, "--error"),
        fixed=fixed,
        covariate_effects=_covariate_effects(args.cov),
    )
    pop.validate(spec)
    idata = cp.fit(
        spec,
        data,
        pop,
        observations=_observation_map(args.obs, spec),
        method=args.method,
        chains=args.chains,
        warmup=args.warmup,
        draws=args.draws,
        seed=args.seed,
        steps=args.steps,
        censoring=args.censoring,
        progress=sys.stderr.isatty(),
    )
    import arviz as az
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    names = [k for k in idata.posterior.data_vars if idata.posterior[k].dims == ("chain", "draw")]
    if args.method == "map":  # one point: the posterior mode
        post = idata.posterior
        summary = pd.DataFrame({"map": [float(post[k].values.ravel()[0]) for k in names]}, names)
    else:
        kind = "all" if args.method == "nuts" and args.chains > 1 else "stats"
        summary = az.summary(idata, var_names=names, kind=kind, hdi_prob=0.9)
    summary.index.name = "name"
    summary.to_csv(out / "fit_summary.csv")
    idata.to_netcdf(str(out / "fit.nc"))
    _gof_plot(idata, out / "fit_gof.png", spec.name)
    print(f"wrote {out / 'fit_summary.csv'}, {out / 'fit.nc'}, {out / 'fit_gof.png'}")
    return 0


def _gof_plot(idata: Any, path: Path, title: str) -> None:
    """Observed vs posterior-median IPRED and PRED, log-log, censored records marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obs = idata.observed_data
    use = obs["observed"].values & ~obs["censored"].values
    dv = obs["obs"].values[use]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), constrained_layout=True)
    for ax, name in zip(axes, ("ipred", "pred"), strict=True):
        pred = idata.posterior_predictive[name].median(("chain", "draw")).values[use]
        ax.scatter(pred, dv, s=12, alpha=0.7)
        positive = np.concatenate([dv, pred])
        positive = positive[np.isfinite(positive) & (positive > 0)]
        if positive.size:
            lo, hi = positive.min(), positive.max()
            ax.plot([lo, hi], [lo, hi], "k--", lw=1)
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(f"{name.upper()} (posterior median)")
        ax.set_ylabel("observed")
        ax.set_title(f"{title}: observed vs {name.upper()}")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _check_folder(folder: str | Path) -> Path:
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise ArgumentError(f"--output {out}: exists and is not a folder")
    return out


def _write_results(
    res: Any,
    spec: cp.ModelSpec,
    folder: str | Path,
    stem: str,
    *,
    log: bool,
    title: str,
    varied: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``folder/stem.csv`` (long table) and ``folder/stem.png``; return their paths."""
    out = _check_folder(folder)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out / f"{stem}.csv", out / f"{stem}.png"
    table = res.reset_coords(drop=True).to_dataframe().reset_index()
    if "status" in res.coords:  # 0 = solved; else a key of cellpkpd.engine.solve.STATUS
        table["status"] = res["status"].to_series().reindex(table["subject"]).to_numpy()
    table.to_csv(csv_path, index=False)
    if res.sizes["subject"] == 1 and any(str(v).startswith("frac_") for v in res.data_vars):
        # one subject of a biodistribution model: the fraction of the dose per organ (log
        # axis when it spans decades, or with --log), the figure a biodistribution study
        # reports; several subjects (e.g. --param lists) keep one labelled line each
        fig = cp.plots.biodistribution(res, spec, log=True if log else None, title=title)
    else:
        names = list(spec.observations) or list(spec.states)
        labels = _subject_labels(res, spec, varied or {})
        fig = cp.plots.timecourse(
            res, [n for n in names if n in res], spec=spec, log=log, title=title, labels=labels
        )
    fig.savefig(png_path, dpi=120)
    return csv_path, png_path


def _subject_labels(res: Any, spec: cp.ModelSpec, varied: dict[str, Any]) -> list[str]:
    """'subject 0', or 'subject 0: CL = 1.5 L/h' for the inputs that differ between subjects."""
    units = {k: p.unit for k, p in spec.parameters.items()}
    units.update({k: c.unit for k, c in spec.covariates.items()})
    arrays = {k: np.broadcast_to(v, (res.sizes["subject"],)) for k, v in varied.items()}
    arrays = {k: v for k, v in arrays.items() if np.ndim(varied[k]) == 1}
    labels = []
    for i, s in enumerate(res["subject"].values):
        parts = [
            f"{k} = {v[i]:.3g} {'' if units.get(k) == '1' else units.get(k, '')}".rstrip()
            for k, v in arrays.items()
        ]
        labels.append(f"subject {s}" + (": " + ", ".join(parts) if parts else ""))
    return labels


# ---------------------------------------------------------------------- main
def _fail(message: object, code: int) -> int:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def _use_compilation_cache() -> None:
    """Every command keeps its compiled programs in the persistent cache
    (``cp.config.default_cache_dir()``; ``CELLPKPD_COMPILATION_CACHE=0`` turns it off), so a
    second run of the same model skips compilation. A folder that cannot be written leaves
    the cache off, with a warning."""
    try:
        cp.config.enable_compilation_cache()
    except cp.SpecError as exc:  # e.g. no writable home folder
        warnings.warn(f"{exc}; compiling without the cache", stacklevel=2)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cellpkpd`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit code: 0 on success, 2 for bad input (arguments, model file, dose, parameter
        names), 1 when a solve fails or an output cannot be written. Errors are printed as
        one line, ``cellpkpd: error: <message>``, on stderr.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except ArgumentError as exc:
        return _fail(exc, 2)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    try:
        cp.config.use_cpu_cores(too_late="warn")  # one CPU device per core (see cp.config)
        _use_compilation_cache()
        return func(args)
    except cp.SimulationError as exc:
        return _fail(exc, 1)
    except (cp.CellPKPDError, ArgumentError) as exc:
        return _fail(exc, 2)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


if __name__ == "__main__":
    raise SystemExit(main())
