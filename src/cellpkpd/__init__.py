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

from . import plots
from .data import Dataset, read_nonmem
from .dosing import Dose, DoseArrays, Regimen, Reset, stack_dose_arrays
from .errors import (
    CellPKPDError,
    DataError,
    DosingError,
    SimulationError,
    SpecError,
)
from .model import ModelSpec, list_models, load_model
from .simulate import Simulator, simulate

__version__ = "0.1.0"

__all__ = [
    "CellPKPDError",
    "DataError",
    "Dataset",
    "Dose",
    "DoseArrays",
    "DosingError",
    "ModelSpec",
    "Regimen",
    "Reset",
    "SimulationError",
    "Simulator",
    "SpecError",
    "list_models",
    "load_model",
    "plots",
    "read_nonmem",
    "simulate",
    "stack_dose_arrays",
]
