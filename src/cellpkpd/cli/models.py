"""``cellpkpd models [NAME]``: list the library's models, or describe one."""

from __future__ import annotations

import argparse
from typing import Any

import cellpkpd as cp

from ..spec.model import models_dir
from ._options import FORMAT, text_table


def register(sub: Any) -> None:
    """Add the command to the CLI's sub-parsers (``argparse`` ``_SubParsersAction``)."""
    p = sub.add_parser(
        "models",
        help="list library models, or describe one",
        description=(
            "Without NAME: list the bundled library models with their one-line descriptions.\n"
            "With NAME (a library name or a path to a .toml model file): print the model's\n"
            "summary and its parameters (name, value, unit, description)."
        ),
        formatter_class=FORMAT,
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="library model name or .toml path")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List the models (no NAME) or print one model's summary, parameters and covariates."""
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
    print(text_table(("name", "value", "unit", "description"), rows))
    if spec.covariates:
        rows = [(c.name, f"{c.value:g}", c.unit, c.description) for c in spec.covariates.values()]
        print("\ncovariates:")
        print(text_table(("name", "default", "unit", "description"), rows))
    return 0
