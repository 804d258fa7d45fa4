"""Exceptions raised by cellpkpd.

Every error is one line that names where the problem is (file and key, data row and
column, or argument), the offending value, and what was expected.
"""

from __future__ import annotations


class CellPKPDError(Exception):
    """Base class of all cellpkpd errors."""


class SpecError(CellPKPDError, ValueError):
    """Invalid model file, model expression or model construction."""


class DosingError(CellPKPDError, ValueError):
    """Invalid dose, regimen or dosing argument."""


class DataError(CellPKPDError, ValueError):
    """Invalid NONMEM-style data set (names the row and column)."""


class SimulationError(CellPKPDError, RuntimeError):
    """A subject's solve failed (step limit, non-finite state, no steady state)."""


class FitError(CellPKPDError, RuntimeError):
    """A fit failed while it ran (no valid initial values, a non-finite loss, an error
    inside the sampler or the ODE solver); names the method, what failed and what to try."""


class ArgumentError(Exception):
    """Bad command-line input (the CLI exits with code 2); not a CellPKPDError, which the CLI
    reports with exit code 1."""
