# ruff: noqa: E402
"""cellpkpd: PK-PD toolkit for living-cell drugs.

Model files compile to JAX (float64 by default), solved exactly (matrix exponential) for
linear models and with diffrax otherwise, under NONMEM-style dosing.

To compute in float32 (e.g. on a GPU), set ``JAX_ENABLE_X64=0`` in the environment before
importing cellpkpd, or call ``jax.config.update("jax_enable_x64", False)`` afterwards.
"""

from __future__ import annotations

import os

import jax

if os.environ.get("JAX_ENABLE_X64", "1").lower() not in ("0", "false"):
    jax.config.update("jax_enable_x64", True)

from ._core import config

# one XLA CPU device per core (CELLPKPD_CPU_DEVICES=N chooses N, 1 turns it off), asked for
# here, before anything starts JAX; a log line says so, cp.config.devices() shows the outcome,
# and a warning says when JAX started first (see cellpkpd._core.config)
config.use_cpu_cores(too_late="warn")

from . import datasets, plots
from ._core.errors import (
    CellPKPDError,
    DataError,
    DosingError,
    FitError,
    SimulationError,
    SpecError,
)
from .data.nonmem import Dataset, read_nonmem
from .data.simulate import simulate
from .engine.dosing import Dose, DoseArrays, Regimen, Reset, stack_dose_arrays
from .engine.options import SolverOptions
from .engine.simulator import Simulator
from .plots.explore import Explorer, explore
from .population.population import Population
from .spec import physiology
from .spec.model import ModelSpec, describe, list_models, load_model, parameter_table

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # cp.fit loads numpyro and ArviZ on first use, so `import cellpkpd` stays quick
    import importlib

    if name in ("fit", "predict", "infer"):
        if name == "infer":
            return importlib.import_module(".infer", __name__)
        return getattr(importlib.import_module(".infer.run", __name__), name)
    if name == "fit_summary":
        return importlib.import_module(".infer.summary", __name__).fit_summary
    if name in ("metrics", "gsa"):
        return importlib.import_module(f".analysis.{name}", __name__)
    if name in ("sweep", "evaluate_metrics", "RunOptions"):
        return getattr(importlib.import_module(".analysis.sweep", __name__), name)
    if name in ("VirtualPopulation", "dose_ranging"):
        return getattr(importlib.import_module(".analysis.doseranging", __name__), name)
    raise AttributeError(f"module 'cellpkpd' has no attribute {name!r}")


__all__ = [
    "CellPKPDError",
    "DataError",
    "Dataset",
    "Dose",
    "DoseArrays",
    "DosingError",
    "Explorer",
    "FitError",
    "ModelSpec",
    "Population",
    "Regimen",
    "Reset",
    "RunOptions",
    "SimulationError",
    "Simulator",
    "SolverOptions",
    "SpecError",
    "VirtualPopulation",
    "config",
    "datasets",
    "describe",
    "dose_ranging",
    "evaluate_metrics",
    "explore",
    "fit",
    "fit_summary",
    "gsa",
    "list_models",
    "load_model",
    "metrics",
    "parameter_table",
    "physiology",
    "plots",
    "predict",
    "read_nonmem",
    "simulate",
    "stack_dose_arrays",
    "sweep",
]
