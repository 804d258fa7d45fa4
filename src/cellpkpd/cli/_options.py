"""What the commands of the ``cellpkpd`` CLI share: the one-line argument parser, value
types and parsers (quantities with units, ``NAME=VALUE`` lists), the solver options, the
output time grid (``simulate`` and the batch configurations alike), output folders and
text tables."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._core.errors import ArgumentError
from .._core.io import read_text as _core_read_text
from ..engine.solve import SOLVERS

PROG = "cellpkpd"
FORMAT = argparse.RawDescriptionHelpFormatter
MAX_TIMES = 1_000_000  # most output times of a grid


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (raised, not printed with the usage)."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise ArgumentError(f"{message} (see '{self.prog} --help')")


# ---------------------------------------------------------------------- time grid
def grid_count(start: float, end: float, step: float) -> int:
    """How many points ``start, start + step, ...`` lie at or before `end` (round-off
    forgiven), not counting `end` appended by `time_grid`."""
    return math.floor((end - start) / step + 1e-9) + 1


def time_grid(start: float, end: float, step: float) -> np.ndarray:
    """Output times every `step` from `start` to `end` [model time unit], with `end`
    itself appended when the steps do not land on it (check `grid_count` first)."""
    times = start + np.arange(grid_count(start, end, step)) * step
    if end - times[-1] > 1e-9 * end:
        times = np.append(times, end)
    return times


# ---------------------------------------------------------------------- values
def quantity(kind: str, examples: str) -> Callable[[str], float | str]:
    """An argparse type: a number (model units), or a number with a unit kept as text for
    cp.Dose / the model to convert."""

    def parse(text: str) -> float | str:
        from ..spec.units import split_quantity

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
            from ..spec.units import parse_unit, registry

            if parse_unit(unit, kind).dimensionality != registry().Unit("h").dimensionality:
                raise argparse.ArgumentTypeError(
                    f"invalid {kind} {text!r}: not a time; expected e.g. {examples}"
                )
        return text

    parse.__name__ = kind
    return parse


def assignments(items: Sequence[str], flag: str) -> dict[str, Any]:
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


def pairs(text: str, flag: str) -> dict[str, str]:
    """'A=1,B=2' -> {'A': '1', 'B': '2'}; a malformed item is an ArgumentError."""
    out: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, eq, value = item.partition("=")
        if not eq or not name.strip() or not value.strip():
            raise ArgumentError(f"{flag} {item!r}: expected NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def add_solver_arguments(p: argparse.ArgumentParser) -> None:
    """``--solver``, ``--rtol``, ``--atol`` and ``--max-steps`` (as `cp.simulate`'s)."""
    p.add_argument(
        "--solver",
        choices=SOLVERS,
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


# ---------------------------------------------------------------------- files
def read_text(path: Path, where: str) -> str:
    """A text file's contents (UTF-8); an ArgumentError starting with `where` when it is
    missing, unreadable or not UTF-8 text (`cellpkpd._core.io.read_text`)."""
    return _core_read_text(path, where, ArgumentError)


def check_folder(folder: str | Path) -> Path:
    """`folder` as a Path; an ArgumentError if it exists and is not a folder."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise ArgumentError(f"--output {out}: exists and is not a folder")
    return out


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned text table (two spaces between columns)."""
    cells = [list(header), *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[j]) for r in cells) for j in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join("  " + ln for ln in lines)
