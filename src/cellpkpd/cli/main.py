"""The ``cellpkpd`` command: its parser and dispatch to one module per command (`models`,
`simulate`, `demo`, `fit`, `doses`, `sweep`, each with ``register`` and ``run``).

A thin layer over the public API: a command turns arguments into library calls and writes
the results (CSV tables, PNG plots, netCDF); every cellpkpd error becomes one line on
stderr with a non-zero exit code (2 for bad input, 1 for a failed solve or an unwritable
output).
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import NoReturn

import cellpkpd as cp

from .._core.errors import ArgumentError
from . import demo, doses, fit, models, simulate, sweep
from ._options import FORMAT, PROG, Parser

__all__ = ["build_parser", "console", "main"]

COMMANDS = (models, simulate, demo, fit, doses, sweep)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cellpkpd`` command, with its subcommands."""
    parser = Parser(
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
        formatter_class=FORMAT,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {cp.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


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


def console() -> NoReturn:
    """What the ``cellpkpd`` command (and ``python -m cellpkpd``) runs: `main`, then exit
    with its code without the interpreter's teardown.

    With JAX, XLA's CPU client and matplotlib loaded, Python's teardown (freeing every
    module and object) took ~0.5 s of each run, a fifth of a ``cellpkpd simulate`` that
    reads its program from the caches (2.6 -> 2.2 s for msc_pkpd_host, timed with
    ``/usr/bin/time``). Before leaving, the ``atexit`` handlers run and the standard streams
    are flushed, as in a normal exit; the command's own files are closed when written. Where
    another non-daemon thread is still running, or `main` raises, the exit is Python's
    usual one. A failed flush of stdout or stderr (other than a closed pipe) exits with
    120, as Python does.
    """
    code = main()
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if any(t.is_alive() and not t.daemon for t in others):
        raise SystemExit(code)
    code = code if isinstance(code, int) else 0
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # (a reader gone, a closed stream)
            pass
        except OSError:  # (e.g. a full disk): Python's own exit code for a failed flush
            code = code or 120
    os._exit(code)


if __name__ == "__main__":
    console()
