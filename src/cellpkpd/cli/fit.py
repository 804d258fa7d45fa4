"""``cellpkpd fit DATA.csv MODEL``: a population fit of a NONMEM-style data set, written as
its summary table (`cellpkpd.infer.summary.fit_summary`), the InferenceData and the
goodness-of-fit figure (`cp.plots.gof`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import cellpkpd as cp

from .._core.errors import ArgumentError
from ._options import FORMAT, check_folder, pairs


def register(sub: Any) -> None:
    """Add the command to the CLI's sub-parsers (``argparse`` ``_SubParsersAction``)."""
    p = sub.add_parser(
        "fit",
        help="fit a model to a NONMEM-style data set (posterior CSV, netCDF, GOF PNG)",
        description=(
            "Fit MODEL (library name or .toml path) to DATA.csv (NONMEM-style: ID TIME AMT\n"
            "EVID CMT DV ... [LLOQ or CENS] [covariates]) with cp.fit. Writes into --out:\n"
            "fit_summary.csv (posterior summary of the population-level quantities; with\n"
            "--method map, their posterior mode), fit.nc (the arviz.InferenceData) and\n"
            "fit_gof.png (cp.plots.gof: observed vs PRED and IPRED, residuals)."
        ),
        formatter_class=FORMAT,
    )
    p.add_argument("data", metavar="DATA.csv", help="NONMEM-style data file")
    p.add_argument("model", metavar="MODEL", help="library model name or path to a .toml")
    _population_arguments(p)
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
    p.set_defaults(func=run)


def _population_arguments(p: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
    """Fit, then write fit_summary.csv, fit.nc and fit_gof.png."""
    from ..infer.summary import fit_summary

    iiv = _iiv(args.iiv)
    for flag in ("chains", "warmup", "draws", "steps"):
        value = getattr(args, flag)
        if value < (0 if flag == "warmup" else 1):
            raise ArgumentError(f"--{flag} {value}: must be >= {0 if flag == 'warmup' else 1}")
    path = Path(args.data)
    if not path.is_file():
        raise ArgumentError(f"{path}: no such data file")
    out = check_folder(args.out)
    spec = cp.load_model(args.model)
    data = cp.read_nonmem(path, covariates=args.covariates)
    fixed = [x.strip() for x in args.fixed.split(",") if x.strip()]
    pop = cp.Population(
        random_effects=iiv,
        error=pairs(args.error, "--error"),
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
    out.mkdir(parents=True, exist_ok=True)
    fit_summary(idata, hdi_prob=0.9).to_csv(out / "fit_summary.csv")
    idata.to_netcdf(str(out / "fit.nc"))
    fig = cp.plots.gof(idata, spec=spec, log=True, title=f"{spec.name}: goodness of fit")
    fig.savefig(out / "fit_gof.png", dpi=110)
    print(f"wrote {out / 'fit_summary.csv'}, {out / 'fit.nc'}, {out / 'fit_gof.png'}")
    return 0


def _iiv(text: str) -> dict[str, float]:
    """'CL=0.3,V=0.2' -> {'CL': 0.3, 'V': 0.2} (prior scales of the omegas)."""
    iiv: dict[str, float] = {}
    for k, v in pairs(text, "--iiv").items():
        try:
            iiv[k] = float(v)
        except ValueError:
            raise ArgumentError(f"--iiv {k}={v}: the scale is not a number") from None
    return iiv


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
    for cmt, obs in pairs(text, "--obs").items():
        if cmt.isdigit():
            k = int(cmt)
            if not 1 <= k <= len(states):
                raise ArgumentError(
                    f"--obs {cmt}={obs}: CMT {k} is not a state of '{spec.name}' (1..{len(states)})"
                )
            cmt = states[k - 1]
        out[cmt] = obs
    return out or None
