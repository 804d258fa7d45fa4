"""How a model is solved, as one object: `SolverOptions` (the ``solver``, ``rtol``, ``atol``
and ``max_steps`` that `cp.simulate` takes as keywords), and `merge_options`, which builds
an options object from loose keywords or checks them against a given one, so that sweeps,
dose-ranging and GSA pass their options on as objects.

This is what a user asks for (``solver="auto"`` included); the compiled program's own static
settings, with the solver resolved, are `cellpkpd.engine.solve.EngineOptions`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .._core.errors import SpecError

__all__ = ["SolverOptions", "merge_options"]


@dataclass(frozen=True)
class SolverOptions:
    """How each parameter set is solved, as the ``solver``, ``rtol``, ``atol`` and
    ``max_steps`` arguments of `cp.simulate` (checked by `cp.Simulator`).

    Attributes
    ----------
    solver : str
        ``"auto"`` (exact for linear models, else Tsit5, Kvaerno5 for stiff ones),
        ``"exact"``, ``"tsit5"`` or ``"kvaerno5"``.
    rtol, atol : float
        ODE tolerances (relative; absolute [amount]).
    max_steps : int
        ODE step limit per segment between events.
    """

    solver: str = "auto"
    rtol: float = 1e-8
    atol: float = 1e-8
    max_steps: int = 100_000

    @classmethod
    def merged(cls, options: SolverOptions | None, where: str, **keywords: Any) -> SolverOptions:
        """`options`, or options made from the loose keywords (solver, rtol, atol,
        max_steps; None: not given), as `merge_options` says (argument ``solver_options``)."""
        return merge_options(cls, options, keywords, where, "solver_options")


Options = TypeVar("Options")


def merge_options(
    cls: type[Options],
    given: Options | None,
    keywords: Mapping[str, Any],
    where: str,
    arg: str,
    defaults: Mapping[str, Any] | None = None,
) -> Options:
    """An options object (a frozen dataclass `cls`) from an object and loose keywords.

    Parameters
    ----------
    cls : type
        The options class, e.g. `SolverOptions`.
    given : cls or None
        The object the caller passed (argument `arg`), or None.
    keywords : dict
        The loose keywords (field -> value); None means "not given".
    where, arg : str
        The function and the argument name that start the error messages.
    defaults : dict, optional
        The caller's own defaults for fields not given (else the class's).

    Returns
    -------
    cls
        `given` when there is one, else ``cls(**defaults, **keywords)``.

    Raises
    ------
    SpecError
        If `given` is not a `cls`, or a keyword differs from the field of `given` (one
        line naming both: give the option once).
    """
    named = {k: v for k, v in keywords.items() if v is not None}
    if given is None:
        return cls(**{**(defaults or {}), **named})
    if not isinstance(given, cls):
        raise SpecError(
            f"{where}: {arg} = {given!r:.60} must be a {cls.__name__} (or None), "
            f"got {type(given).__name__}"
        )
    fields = {f.name for f in dataclasses.fields(given)}  # type: ignore[arg-type]
    for k, v in named.items():
        if k in fields and getattr(given, k) != v:
            raise SpecError(
                f"{where}: {k}={v!r} conflicts with {arg}.{k} = {getattr(given, k)!r}; give "
                f"it once, in {arg} or as a keyword"
            )
    return given
