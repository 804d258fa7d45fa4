"""Parameter sets for sweeps: a full grid of levels, uniform random draws, scrambled Sobol
points, and draws of distributions, inside ranges on a linear or a log scale.

`sample` is what ``cellpkpd sweep`` calls for its ``[sampler]``; `Range` (with `Range.scale`)
and `check_ranges` are also how `cp.gsa.sobol` checks its bounds and maps SALib's unit
Saltelli design onto them, so every Sobol sample of the package is a scrambled
`scipy.stats.qmc.Sobol` sequence (SALib draws its base sequence from it) scaled here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._core.errors import SpecError

__all__ = ["SAMPLERS", "Range", "check_ranges", "sample"]

SAMPLERS = ("grid", "random", "sobol")


@dataclass(frozen=True)
class Range:
    """An input's range [its unit]: uniform between `low` and `high`, or log-uniform
    (`log`, both > 0); `num` levels when it is one axis of a grid."""

    low: float
    high: float
    log: bool = False
    num: int | None = None

    def scale(self, u: Any) -> np.ndarray:
        """Values of unit-interval points `u` (array in [0, 1]) on this range."""
        u = np.asarray(u, dtype=float)
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return np.exp(lo + u * (hi - lo))
        return self.low + u * (self.high - self.low)

    def levels(self) -> np.ndarray:
        """`num` levels from `low` to `high`, evenly spaced (geometrically when `log`)."""
        if self.num is None:
            raise SpecError(f"Range({self.low:g}, {self.high:g}): a grid axis needs num")
        space = np.geomspace if self.log else np.linspace
        return space(self.low, self.high, self.num)


def check_ranges(
    bounds: Mapping[str, Any], where: str, log: Sequence[str] = ()
) -> dict[str, Range]:
    """Bounds ``name -> (low, high)`` (or `Range`) as Ranges, checked: finite, low < high,
    and > 0 for the names in `log`; a `SpecError` starting with `where` otherwise."""
    if not isinstance(bounds, Mapping) or not bounds:
        raise SpecError(f"{where}: bounds must be a non-empty dict name -> (low, high)")
    out = {}
    for name, b in bounds.items():
        is_log = name in log or (isinstance(b, Range) and b.log)
        try:
            low, high = (float(v) for v in ((b.low, b.high) if isinstance(b, Range) else b))
        except (TypeError, ValueError):
            raise SpecError(
                f"{where}: bounds['{name}'] = {b!r} must be a pair (low, high) of numbers"
            ) from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise SpecError(
                f"{where}: bounds['{name}'] = ({low:g}, {high:g}) must be finite with low < high"
            )
        if is_log and low <= 0:
            raise SpecError(
                f"{where}: bounds['{name}'] = ({low:g}, {high:g}) must be > 0 on a log scale"
            )
        num = b.num if isinstance(b, Range) else None
        out[str(name)] = Range(low, high, is_log, num)
    return out


def _grid(levels: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Every combination of the levels, the last name varying fastest (as
    `itertools.product`)."""
    axes = [
        v.levels() if isinstance(v, Range) else np.asarray(v, dtype=float).ravel()
        for v in levels.values()
    ]
    if any(a.size == 0 for a in axes):
        raise SpecError("sampling: a grid axis has no levels")
    grids = np.meshgrid(*axes, indexing="ij")
    return {name: g.ravel() for name, g in zip(levels, grids, strict=True)}


def sample(
    kind: str, parameters: Mapping[str, Any], n: int | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Parameter sets for `cp.sweep`: one array (n,) per name.

    Parameters
    ----------
    kind : {"grid", "random", "sobol"}
        ``grid``: every combination of the levels (the last name varying fastest);
        ``random``: independent uniform draws (numpy's default generator);
        ``sobol``: a scrambled Sobol sequence (`scipy.stats.qmc.Sobol`; best with n a
        power of 2).
    parameters : dict str -> levels, Range or str
        Per name: a list of levels (grid), a `Range` (a grid needs its ``num``), or, for
        ``random`` only, a distribution in the model files' prior syntax
        (``"lognormal(log(2), 0.3)"``).
    n : int, optional
        Number of sets (random and sobol; a grid's size is the product of its levels).
    seed : int
        Seeds the generator (and, as ``seed + j``, the draws of the j-th distribution).

    Returns
    -------
    dict str -> array (n,)
    """
    if kind not in SAMPLERS:
        raise SpecError(f"sampling: kind = {kind!r}; expected one of {', '.join(SAMPLERS)}")
    if not parameters:
        raise SpecError("sampling: no parameters to vary")
    if kind == "grid":
        return _grid(parameters)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise SpecError(f"sampling: n = {n!r} must be an integer >= 1")
    rng = np.random.default_rng(seed)
    if kind == "sobol":
        from scipy.stats import qmc

        unit = qmc.Sobol(len(parameters), scramble=True, seed=rng).random(n)
    else:
        unit = rng.random((n, len(parameters)))
    out: dict[str, np.ndarray] = {}
    for j, (name, v) in enumerate(parameters.items()):
        if isinstance(v, str):
            if kind != "random":
                raise SpecError(f"sampling: '{name}': only the random sampler takes distributions")
            out[name] = _draws(v, n, seed + j, name)
        elif isinstance(v, Range):
            out[name] = v.scale(unit[:, j])
        else:
            raise SpecError(f"sampling: '{name}' = {v!r}; expected a Range or a distribution")
    return out


def _draws(text: str, n: int, seed: int, where: str) -> np.ndarray:
    """`n` draws of a distribution in the prior syntax, keyed by `seed`."""
    import jax

    from ..infer.model import prior_distribution

    d = prior_distribution(text, where)
    return np.asarray(d.sample(jax.random.PRNGKey(seed), (n,)), dtype=float)
