"""Exposure and response metrics: pure JAX reductions of one trajectory to a scalar.

A `Metric` reduces the output times and outputs of one subject to one number. The same
`Metric.reduce` runs inside the compiled program of `cellpkpd.analysis.sweep` (so a sweep
never keeps whole trajectories) and on a `cp.simulate` result (``metric(result)``).

Each metric's own points
------------------------
A metric reads only its own points: the output times the user asked for plus its own times
(its window bounds, a `value_at` time), never the times another metric of the same sweep
added, so its value does not depend on the other metrics requested and is the same on a
`cp.simulate` result with those output times and inside `cp.sweep`. The default window of
a metric is the span of its own points. Crossing and integral metrics (`time_above`,
`time_to`, `auc`, `cell_days`) also read the output on both sides of every jump (a bolus
dose, a reset, a steady-state dose) inside that span: `cp.sweep` puts each such time on the
grid twice, once before and once after the events at that time (`Simulator.solve`'s
``events_before``), so no crossing or trapezoid is interpolated across a discontinuity.
Doses whose time is shifted by a lag that depends on the parameters (a ``[dosing]`` lag
that is not a number) cannot be placed on a shared grid: `cp.sweep` warns about them.

Exactness
---------
Integrals (`auc`, `cell_days`) ask the engine for the running integral of their output as
an extra ODE state (``d I/dt = y``; a linear model stays linear, so the exact path still
applies) and for their window bounds as output times: inside `cp.sweep` they are exact to
solver precision. On a plain `cp.simulate` result (no integral state) they fall back to the
linear-up/log-down trapezoid on the result's grid, which is exact for mono-exponential
decline but otherwise limited by the grid. Peaks (`cmax`, `tmax`), `max_pct_change` and
crossings (`time_above`, `time_to`) are read on the metric's own points: a crossing between
two points is placed by log-linear interpolation when the output declines (exact for a
mono-exponential), linear interpolation otherwise. Inside `cp.sweep` a metric's own times
are solved exactly; on a result, values at own times between grid points are interpolated
(linear-up/log-down). A result holds the output only after the events at a time, so
``metric(result)`` refuses (one-line `SpecError`) a crossing or integral metric whose span
holds a jump, and a `value_at` time between two grid points with a jump between them,
instead of interpolating across the discontinuity. The jump times come from
``result.attrs["jump_times"]``, which `cp.simulate` records (union over its subjects'
regimens), or from ``metric(result, regimen=reg)``; a result with neither (made by hand) is
assumed to hold no jump between its points.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._core.errors import SpecError
from .._core.numeric import safe_div
from ..engine.dosing import DoseArrays, Regimen, jump_times
from ..spec.model import DAYS_PER_TIME_UNIT as _DAYS_PER
from ..spec.model import output_unit

if TYPE_CHECKING:
    import xarray as xr

    from ..spec.model import ModelSpec

__all__ = [
    "AUC",
    "CellDays",
    "Cmax",
    "HalfLife",
    "MaxPctChange",
    "Metric",
    "Needs",
    "TimeAbove",
    "TimeTo",
    "Tmax",
    "ValueAt",
    "auc",
    "cell_days",
    "cmax",
    "half_life",
    "integral_name",
    "max_pct_change",
    "output_unit",
    "time_above",
    "time_to",
    "tmax",
    "value_at",
]


def integral_name(output: str) -> str:
    """Name of the extra state holding the running integral of `output` (from the start
    time t0) that the engine adds when a metric asks for it."""
    return f"__int_{output}"


def _check_output(spec: ModelSpec, output: str, where: str) -> None:
    known = (*spec.states, *spec.observations, *spec.derived)
    if output not in known:
        raise SpecError(
            f"{where}: unknown output '{output}' of model '{spec.name}'; known: {', '.join(known)}"
        )


@dataclass(frozen=True)
class Needs:
    """What the engine must provide for a metric.

    Attributes
    ----------
    outputs : tuple of str
        Outputs (states, observations, derived quantities) the reduction reads.
    times : tuple of float
        Extra output times [model time unit] to put on the grid (window bounds, a
        `value_at` time).
    integrals : tuple of str
        Outputs whose running integral (state `integral_name(output)`) is wanted.
    """

    outputs: tuple[str, ...] = ()
    times: tuple[float, ...] = ()
    integrals: tuple[str, ...] = ()


# ---------------------------------------------------------------- grid helpers (pure)
def _window(times: Any, start: float | None, end: float | None) -> tuple[Any, Any]:
    a = times[0] if start is None else jnp.asarray(start, dtype=times.dtype)
    b = times[-1] if end is None else jnp.asarray(end, dtype=times.dtype)
    return a, b


def _mask(times: Any, start: float | None, end: float | None) -> Any:
    a, b = _window(times, start, end)
    return (times >= a) & (times <= b)


def _log_ok(y1: Any, y2: Any) -> Any:
    """Intervals where the log-linear model applies: positive and strictly declining."""
    return (y1 > 0) & (y2 > 0) & (y1 > y2)


def _interp_in(t1: Any, t2: Any, y1: Any, y2: Any, u: Any) -> Any:
    """Value at u in [t1, t2] under the linear-up/log-down model."""
    frac = safe_div(u - t1, t2 - t1)
    log_ok = _log_ok(y1, y2)
    r = jnp.where(log_ok, y2 / jnp.where(log_ok, y1, 1.0), 1.0)
    log_val = y1 * jnp.exp(frac * jnp.log(r))
    return jnp.where(log_ok, log_val, y1 + frac * (y2 - y1))


def _crossing(t1: Any, t2: Any, y1: Any, y2: Any, thr: Any) -> Any:
    """Time in [t1, t2] at which the interpolated output equals `thr` (assumes it does)."""
    log_ok = _log_ok(y1, y2) & (thr > 0)
    s1 = jnp.where(log_ok, y1, 2.0)
    s2 = jnp.where(log_ok, y2, 1.0)
    st = jnp.where(log_ok, thr, 1.0)
    frac_log = jnp.log(s1 / st) / jnp.log(s1 / s2)
    frac_lin = safe_div(thr - y1, y2 - y1)  # y2 - y1 < 0 on a fall
    frac = jnp.clip(jnp.where(log_ok, frac_log, frac_lin), 0.0, 1.0)
    return t1 + frac * (t2 - t1)


def _clipped(times: Any, y: Any, start: float | None, end: float | None) -> tuple[Any, ...]:
    """Per interval: ends t1, t2, values y1, y2, the part [u, v] inside the window and the
    values yu, yv there (interpolated), and whether the interval overlaps the window."""
    a, b = _window(times, start, end)
    t1, t2, y1, y2 = times[:-1], times[1:], y[:-1], y[1:]
    u = jnp.clip(t1, a, b)
    v = jnp.clip(t2, a, b)
    inside = v > u
    yu = _interp_in(t1, t2, y1, y2, u)
    yv = _interp_in(t1, t2, y1, y2, v)
    return t1, t2, y1, y2, u, v, yu, yv, inside


def trapezoid_auc(times: Any, y: Any, start: float | None = None, end: float | None = None) -> Any:
    """Linear-up/log-down trapezoid of `y` over [start, end] on the grid `times` (parts of an
    interval cut by a window bound are interpolated under the same model)."""
    _, _, y1, y2, u, v, yu, yv, inside = _clipped(times, y, start, end)
    log_ok = _log_ok(yu, yv) & _log_ok(y1, y2)
    lin = 0.5 * (yu + yv) * (v - u)
    su = jnp.where(log_ok, yu, 2.0)
    sv = jnp.where(log_ok, yv, 1.0)
    log_area = (su - sv) * (v - u) / jnp.log(su / sv)
    return jnp.sum(jnp.where(inside, jnp.where(log_ok, log_area, lin), 0.0))


def _integral(times: Any, y: Mapping[str, Any], output: str, start: Any, end: Any) -> Any:
    key = integral_name(output)
    if key in y:
        a, b = _window(times, start, end)
        cum = y[key]
        return jnp.interp(b, times, cum) - jnp.interp(a, times, cum)
    return trapezoid_auc(times, y[output], start, end)


# ---------------------------------------------------------------- jumps and own points
def own_points(
    metric: Metric, times: Any, y: Mapping[str, Any], own: Any, pre: Any = None, post: Any = None
) -> tuple[Any, dict[str, Any]]:
    """The grid points of one metric on a shared sweep grid (pure JAX).

    `own` (int numpy array) indexes the metric's own points: the user's output times and
    its own times. `pre` and `post` index, for each jump time inside the metric's span, the
    grid points just before and just after the events at that time; a crossing or integral
    metric (``metric.jumps``) also reads such a pair where its output differs on the two
    sides (this subject's output jumps there). The points kept are gathered in order and
    padded with the last own point (zero-width intervals at the end).
    """
    own = np.asarray(own, dtype=np.int32)
    if not metric.jumps or pre is None or len(pre) == 0:
        return times[own], {k: v[own] for k, v in y.items()}
    pre = np.asarray(pre, dtype=np.int32)
    post = np.asarray(post, dtype=np.int32)
    static = np.zeros(times.shape[0], dtype=bool)
    static[own] = True
    v = y[metric.output]
    jump = v[pre] != v[post]
    keep = jnp.asarray(static)
    keep = keep.at[pre].set(jump | static[pre]).at[post].set(jump | static[post])
    size = int(np.union1d(np.union1d(own, pre), post).size)
    idx = jnp.nonzero(keep, size=size, fill_value=int(own[-1]))[0]
    return times[idx], {k: x[idx] for k, x in y.items()}


def _span(metric: Metric, times: np.ndarray) -> tuple[float, float]:
    """The metric's window on its own points (default: their first and last time)."""
    a = getattr(metric, "start", None)
    b = getattr(metric, "end", None)
    return (float(times[0]) if a is None else a), (float(times[-1]) if b is None else b)


def _insert(times: np.ndarray, y: Mapping[str, Any], new: Sequence[float]) -> tuple[Any, dict]:
    """A result's grid with the times `new` added, values there interpolated under the
    linear-up/log-down model (running integrals linearly); host-side numpy."""
    extra = np.setdiff1d(np.asarray(new, dtype=float), times)
    if extra.size == 0:
        return jnp.asarray(times), {k: jnp.asarray(v) for k, v in y.items()}
    grid = np.union1d(times, extra)
    k = np.clip(np.searchsorted(times, extra), 1, times.size - 1)
    t1, t2 = times[k - 1], times[k]
    frac = np.where(t2 > t1, (extra - t1) / np.where(t2 > t1, t2 - t1, 1.0), 0.0)
    pos = np.searchsorted(grid, extra)
    old = np.searchsorted(grid, times)
    out = {}
    for name, v in y.items():
        v = np.asarray(v, dtype=float)
        y1, y2 = v[..., k - 1], v[..., k]
        val = y1 + frac * (y2 - y1)
        if not name.startswith("__int_"):
            log_ok = (y1 > 0) & (y2 > 0) & (y1 > y2)
            with np.errstate(divide="ignore", invalid="ignore"):
                log_val = y1 * np.exp(frac * np.log(np.where(log_ok, y2 / y1, 1.0)))
            val = np.where(log_ok, log_val, val)
        full = np.empty((*v.shape[:-1], grid.size))
        full[..., old] = v
        full[..., pos] = val
        out[name] = jnp.asarray(full)
    return jnp.asarray(grid), out


# ---------------------------------------------------------------- metrics
@dataclass(frozen=True)
class Metric:
    """A reduction of one trajectory to a scalar (base class; one subclass per kind).

    Attributes
    ----------
    output : str
        A state, observation or derived quantity of the model.
    """

    output: str

    kind = "metric"
    #: whether the metric reads its output on both sides of a jump (crossings, integrals)
    jumps = False

    @property
    def default_name(self) -> str:
        """Name used when metrics are given as a list, e.g. ``"auc_conc"``."""
        return f"{self.kind}_{self.output}"

    def needs(self) -> Needs:
        """Outputs, extra output times and running integrals the engine must provide."""
        return Needs(outputs=(self.output,))

    def bind(self, spec: ModelSpec) -> Metric:
        """Check the metric against a model and fix model-dependent constants (e.g. the
        time-unit conversion of `cell_days`); returns a metric ready for `reduce`."""
        _check_output(spec, self.output, f"metric {self.default_name}")
        return self

    def reduce(self, times: Any, y: Mapping[str, Any]) -> Any:
        """Pure JAX reduction: `times` (n_times,), `y` dict output -> (n_times,) -> scalar.

        Works under `jax.jit`, `jax.vmap` and `jax.grad`."""
        raise NotImplementedError  # pragma: no cover - every subclass defines it

    def unit_from(self, unit: str, time_unit: str) -> str:
        """Unit of the metric given the output's unit and the model's time unit."""
        return unit

    def unit(self, spec: ModelSpec) -> str:
        """Unit of the metric for `spec`, e.g. ``"mg/L*h"`` for the AUC of mg/L over h."""
        return self.unit_from(output_unit(spec, self.output), spec.time_unit)

    def _bind_result(self, result: xr.Dataset) -> Metric:
        return self

    def __call__(self, result: xr.Dataset, regimen: Any = None) -> xr.DataArray:
        """The metric of every subject of a `cp.simulate` result: DataArray ("subject",).

        The metric reads the result's grid plus its own times (window bounds, a `value_at`
        time), values there interpolated (linear-up/log-down). Integrals use the result's
        running-integral variable if it has one, otherwise the linear-up/log-down trapezoid
        on that grid (grid-limited).

        Parameters
        ----------
        result : xarray.Dataset
            From `cp.simulate` with shared output times.
        regimen : cp.Regimen or DoseArrays, optional
            The doses of the result; default: the jump times `cp.simulate` recorded in
            ``result.attrs["jump_times"]`` [time]. A crossing or integral metric whose span
            holds a jump (a bolus dose, a reset or a steady-state dose after the first
            output time), or a `value_at` time between two grid points with a jump between
            them, is refused with a `SpecError` (a result holds the output only after the
            events at a time, so the value just before a jump is unknown): use
            `cp.evaluate_metrics` or `cp.sweep`, which put each jump on the grid from both
            sides. With neither `regimen` nor the record (a result made by hand) the grid is
            assumed to hold no jump between its points.
        """
        import xarray as xr

        if not isinstance(result, xr.Dataset):
            raise SpecError(
                f"metric {self.default_name}: expected a cp.simulate result (xarray.Dataset), "
                f"got {type(result).__name__}"
            )
        traced = [
            f.name
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), jax.core.Tracer)
        ]
        if traced:
            raise SpecError(
                f"metric {self.default_name}: {traced[0]} is a traced JAX value; on a "
                "cp.simulate result the metric gives concrete numbers. Differentiate "
                "metric.reduce(times, outputs) on a cp.Simulator's outputs instead"
            )
        names = list(self.needs().outputs)
        missing = [n for n in names if n not in result.data_vars]
        if missing:
            raise SpecError(
                f"metric {self.default_name}: output '{missing[0]}' is not in the result; "
                f"available: {', '.join(map(str, result.data_vars))}"
            )
        times = np.asarray(result["time"].values, dtype=float)
        if times.ndim != 1:
            raise SpecError(
                f"metric {self.default_name}: needs a result with one shared time grid "
                "(cp.simulate with times=, not data=)"
            )
        own = self.needs().times
        outside = [v for v in own if not times[0] <= v <= times[-1]]
        if outside:
            raise SpecError(
                f"metric {self.default_name}: time {outside[0]:g} is outside the result's time "
                f"grid [{times[0]:g}, {times[-1]:g}]; simulate to cover it (cp.sweep and "
                "cp.dose_ranging add the metrics' times to their grid themselves)"
            )
        if regimen is not None:
            self._check_jumps(times, self._jumps_of(regimen))
        elif "jump_times" in result.attrs:  # recorded by cp.simulate
            jumps = np.asarray(result.attrs["jump_times"], dtype=float).ravel()
            self._check_jumps(times, jumps[np.isfinite(jumps)])
        extra = [integral_name(n) for n in self.needs().integrals]
        names += [n for n in extra if n in result.data_vars]
        y = {n: np.asarray(result[n].values, dtype=float) for n in names}
        t, y = _insert(times, y, own)
        bound = self._bind_result(result)
        values = jax.vmap(lambda yy: bound.reduce(t, yy))(y)
        time_unit = str(result.attrs.get("time_unit", result["time"].attrs.get("unit", "")))
        unit = self.unit_from(str(result[self.output].attrs.get("unit", "")), time_unit)
        subject = result["subject"].values if "subject" in result.coords else None
        return xr.DataArray(
            np.asarray(values, dtype=float),
            dims=("subject",),
            coords=None if subject is None else {"subject": subject},
            name=self.default_name,
            attrs={"unit": unit, "metric": repr(self)},
        )

    def _jumps_of(self, regimen: Any) -> np.ndarray:
        """The jump times of `regimen` (a `cp.Regimen` or DoseArrays), sorted, finite."""
        if isinstance(regimen, Regimen):
            regimen = regimen.to_arrays()
        if not isinstance(regimen, DoseArrays):
            raise SpecError(
                f"metric {self.default_name}: regimen must be a cp.Regimen or DoseArrays, got "
                f"{type(regimen).__name__}"
            )
        jumps = np.unique(np.concatenate([np.ravel(a) for a in jump_times(regimen)]))
        return jumps[np.isfinite(jumps)]

    def _check_jumps(self, times: np.ndarray, jumps: np.ndarray) -> None:
        """Refuse reading a result across one of the `jumps` [time] (see `__call__`)."""
        if isinstance(self, ValueAt):
            k = int(np.searchsorted(times, self.time))
            if k < times.size and times[k] == self.time:
                return  # on the grid: read as it is (after the events at that time)
            inside = jumps[(jumps > times[k - 1]) & (jumps <= times[k])]
            if inside.size:
                raise SpecError(
                    f"metric {self.default_name}: the output jumps at t = {inside[0]:g} "
                    f"between the result's output times {times[k - 1]:g} and {times[k]:g}; "
                    f"simulate with time {self.time:g} on the grid or use cp.evaluate_metrics"
                )
            return
        if not self.jumps:
            return
        a, b = _span(self, times)
        a = max(a, float(times[0]))
        inside = jumps[(jumps > a) & (jumps <= b)]
        if inside.size:
            raise SpecError(
                f"metric {self.default_name}: the output jumps at t = {inside[0]:g} inside "
                f"[{a:g}, {b:g}] and a result holds only the value after the jump; use "
                "cp.evaluate_metrics or cp.sweep (they put each jump on the grid from both "
                "sides)"
            )


def _check_window(name: str, start: Any, end: Any) -> None:
    for key, v in (("start", start), ("end", end)):
        if isinstance(v, jax.core.Tracer):
            raise SpecError(
                f"{name}: {key} is a traced JAX value; a window bound is a time of the output "
                "grid and must be a concrete number"
            )
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise SpecError(f"{name}: {key} = {v!r} must be a finite number or None")
    if start is not None and end is not None and not end > start:
        raise SpecError(f"{name}: end = {end} must be > start = {start}")


def _window_times(start: float | None, end: float | None) -> tuple[float, ...]:
    return tuple(float(v) for v in (start, end) if v is not None)


@dataclass(frozen=True)
class AUC(Metric):
    """Area under `output` over [start, end] (default: the whole output grid) [unit*time]."""

    start: float | None = None
    end: float | None = None
    kind = "auc"
    jumps = True

    def needs(self) -> Needs:
        return Needs((self.output,), _window_times(self.start, self.end), (self.output,))

    def reduce(self, times: Any, y: Mapping[str, Any]) -> Any:
        return _integral(times, y, self.output, self.start, self.end)

    def unit_from(self, unit: str, time_unit: str) -> str:
        return f"{unit}*{time_unit}" if unit else time_unit


@dataclass(frozen=True)
class Cmax(Metric):
    """Largest value of `output` on the output grid within start..end; unit: that of the output."""

    start: float | None = None
    end: float | None = None
    kind = "cmax"

    def needs(self) -> Needs:
        return Needs((self.output,), _window_times(self.start, self.end))

    def reduce(self, times: Any, y: Mapping[str, Any]) -> Any:
        m = _mask(times, self.start, self.end)
        return jnp.max(jnp.where(m, y[self.output], -jnp.inf))


@dataclass(frozen=True)
class Tmax(Metric):
    """First output time [model time unit] at which `output` reaches its largest value
    within start..end (read on the grid)."""

    start: float | None = None
    end: float | None = None
    kind = "tmax"

    def needs(self) -> Needs:
        return Needs((self.output,), _window_times(self.start, self.end))

    def reduce(self, times: Any, y: Mapping[str, Any]) -> Any:
        m = _mask(times, self.start, self.end)
        return times[jnp.argmax(jnp.where(m, y[self.output], -jnp.inf))]

    def unit_from(self, unit: str, time_unit: str) -> str:
        return time_unit


@dataclass(frozen=True)
class ValueAt(Metric):
    """Value of `output` at `time` [unit]: solved there inside `cp.sweep` (after the events
    at that time); on a result, read on the grid or interpolated linear-up/log-down between
    grid points (refused across a dose when the result's regimen is given)."""

    time: float = 0.0
    kind = "value"

    @property
    def default_name(self) -> str:
        return f"{self.output}_at_{self.time:g}"

    def needs(self) -> Needs:
        return Needs((self.output,), (float(self.time),))

    def reduce(self, times: Any, y: Mapping[str, Any]) -> Any:
        return jnp.interp(jnp.asarray(self.time, dtype=times.dtype), times, y[self.output])


@dataclass(frozen=True)
class TimeAbove(Metric):
    """Time [time] during which `output` is >= `threshold` within [start, end]; crossings
    between grid points are interpolated (log-linear when declining)."""

    threshold: float = 0.0
    start: float | None = None
    end: float | None = None
    kind = "time_above"
    jumps = True

    def needs(self) -> Needs:
        return Needs((self.output,), _window_times(self.start, self.end))

    def reduce(self, times: Any, y: Mapping[str, Any]) -> Any:
        thr = jnp.asarray(self.threshold, dtype=times.dtype)
        t1, t2, y1, y2, u, v, yu, yv, inside = _clipped(times, y[self.output], self.start, self.end)
        up, vp = yu >= thr, yv >= thr
        tc = _crossing(t1, t2, y1, y2, thr)
        tc = jnp.clip(tc, u, v)
        dur = jnp.where(up & vp, v - u, jnp.where(up, tc - u, jnp.where(vp, v - tc, 0.0)))
        return jnp.sum(jnp.where(inside, dur, 0.0))

    def unit_from(self, unit: str, time_unit: str) -> str:
        return time_unit


@dataclass(frozen=True)
class HalfLife(Metric):
    """Terminal half-life [time]: ln 2 / slope of a least-squares line through log(output)
    at the grid times within [start, end] where output > 0. Infinite if the output does not
    decline."""

    start: float | None = None
    end: float | None = None
    kind = "half_life"

    def needs(self) -> Needs:
        return Needs((self.output,), _window_times(self.start, self.end))

    def reduce(self, times: Any, y: Mapping[str, Any]) -> Any:
        v = y[self.output]
        w = (_mask(times, self.start, self.end) & (v > 0)).astype(times.dtype)
        ly = jnp.log(jnp.where(w > 0, v, 1.0))
        n = jnp.maximum(jnp.sum(w), 1.0)
        tbar = jnp.sum(w * times) / n
        lbar = jnp.sum(w * ly) / n
        sxx = jnp.sum(w * (times - tbar) ** 2)
        sxy = jnp.sum(w * (times - tbar) * (ly - lbar))
        slope = safe_div(sxy, sxx)
        declining = slope < 0
        return jnp.where(declining, -jnp.log(2.0) / jnp.where(declining, slope, -1.0), jnp.inf)

    def unit_from(self, unit: str, time_unit: str) -> str:
        return time_unit


@dataclass(frozen=True)
class CellDays(Metric):
    """Integral of a cell-count state over [start, end], in cells*day (the model's time
    unit is converted to days)."""

    start: float | None = None
    end: float | None = None
    days_per_time: float | None = None
    kind = "cell_days"
    jumps = True

    def needs(self) -> Needs:
        return Needs((self.output,), _window_times(self.start, self.end), (self.output,))

    def _with_unit(self, time_unit: str, where: str) -> CellDays:
        factor = _DAYS_PER.get(time_unit.strip().lower())
        if factor is None:
            raise SpecError(
                f"metric {self.default_name}: cannot convert the time unit {time_unit!r} of "
                f"{where} to days; known: {', '.join(sorted(_DAYS_PER))}"
            )
        return dataclasses.replace(self, days_per_time=factor)

    def bind(self, spec: ModelSpec) -> Metric:
        _check_output(spec, self.output, f"metric {self.default_name}")
        return self._with_unit(spec.time_unit, f"model '{spec.name}'")

    def _bind_result(self, result: xr.Dataset) -> Metric:
        if self.days_per_time is not None:
            return self
        unit = str(result.attrs.get("time_unit", result["time"].attrs.get("unit", "")))
        return self._with_unit(unit, "the result")

    def reduce(self, times: Any, y: Mapping[str, Any]) -> Any:
        if self.days_per_time is None:
            raise SpecError(
                f"metric {self.default_name}: call bind(spec) first (the time unit is unknown)"
            )
        return _integral(times, y, self.output, self.start, self.end) * self.days_per_time

    def unit_from(self, unit: str, time_unit: str) -> str:
        return f"{unit}*day" if unit else "day"


@dataclass(frozen=True)
class MaxPctChange(Metric):
    """Largest percent change of `output` from its baseline (its value at the first output
    time) on the grid [%]: ``100 (base - y) / base`` for "decrease", ``100 (y - base) /
    base`` for "increase"; +-inf or NaN if the baseline is 0."""

    direction: str = "decrease"
    kind = "max_pct_change"

    def reduce(self, times: Any, y: Mapping[str, Any]) -> Any:
        v = y[self.output]
        base = v[0]
        change = (base - v) if self.direction == "decrease" else (v - base)
        return 100.0 * jnp.max(change) / base

    def unit_from(self, unit: str, time_unit: str) -> str:
        return "%"


@dataclass(frozen=True)
class TimeTo(Metric):
    """First time [time] at which `output` reaches `threshold`, on its own points.

    "above": the first time it is >= `threshold` (the first output time if it starts
    there). "below": the first time it falls to <= `threshold` from above it, i.e. after
    it has been > `threshold` (a profile that starts at 0 before the dose has not fallen
    below anything); the first output time if it is never above `threshold` (it is below
    throughout). +inf if the output never gets there on the grid (it stays above, or never
    reaches the threshold "above"). Crossings are interpolated between points (log-linear
    when declining); a jump (a bolus) crosses at its time.
    """

    threshold: float = 0.0
    direction: str = "below"
    kind = "time_to"
    jumps = True

    def reduce(self, times: Any, y: Mapping[str, Any]) -> Any:
        v = y[self.output]
        thr = jnp.asarray(self.threshold, dtype=times.dtype)
        y1, y2 = v[:-1], v[1:]
        tc = _crossing(times[:-1], times[1:], y1, y2, thr)
        if self.direction == "below":
            cross = (y1 > thr) & (y2 <= thr)  # a fall from above: after having been above
            otherwise = jnp.where(jnp.any(v > thr), jnp.inf, times[0])
        else:
            cross = (y1 < thr) & (y2 >= thr)
            otherwise = jnp.inf
        t_cross = jnp.where(jnp.any(cross), tc[jnp.argmax(cross)], otherwise)
        if self.direction == "below":
            return t_cross
        return jnp.where(v[0] >= thr, times[0], t_cross)

    def unit_from(self, unit: str, time_unit: str) -> str:
        return time_unit


# ---------------------------------------------------------------- constructors
def _out(name: str, output: Any) -> str:
    if not isinstance(output, str) or not output:
        raise SpecError(f"{name}: output must be the name of a model output, got {output!r}")
    return output


def _num(name: str, key: str, v: Any, traced_ok: bool = False) -> Any:
    """A finite number; with `traced_ok`, a JAX-traced scalar is kept (its derivative flows
    through `Metric.reduce`) and checked for finiteness with `equinox.error_if`."""
    if isinstance(v, jax.core.Tracer):
        if not traced_ok:
            raise SpecError(
                f"{name}: {key} is a traced JAX value; it fixes a time of the output grid and "
                "must be a concrete number (differentiate the Simulator's outputs, e.g. "
                "jnp.interp at a traced time, instead)"
            )
        if v.shape != ():
            raise SpecError(
                f"{name}: {key} is a traced array of shape {v.shape}; expected a scalar"
            )
        v = jnp.asarray(v, dtype=float)
        return eqx.error_if(v, ~jnp.isfinite(v), f"{name}: {key} (traced) must be finite")
    if getattr(v, "shape", None) == () and hasattr(v, "item"):
        v = v.item()  # a concrete 0-d numpy or JAX array
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
        raise SpecError(f"{name}: {key} = {v!r} must be a finite number")
    return float(v)


def _opt(v: Any) -> float | None:
    return None if v is None else float(v)


def auc(output: str, start: float | None = None, end: float | None = None) -> AUC:
    """Area under `output` over start..end; unit: output unit * time (default: the output grid).

    Exact to solver precision inside `cp.sweep` (running integral); linear-up/log-down
    trapezoid on a `cp.simulate` result."""
    _check_window("auc", start, end)
    return AUC(_out("auc", output), _opt(start), _opt(end))


def cmax(output: str, start: float | None = None, end: float | None = None) -> Cmax:
    """Largest value of `output` on the output grid within start..end; unit: output unit."""
    _check_window("cmax", start, end)
    return Cmax(_out("cmax", output), _opt(start), _opt(end))


def tmax(output: str, start: float | None = None, end: float | None = None) -> Tmax:
    """Output time of the largest value of `output` within start..end; unit: time."""
    _check_window("tmax", start, end)
    return Tmax(_out("tmax", output), _opt(start), _opt(end))


def value_at(output: str, time: float) -> ValueAt:
    """Value of `output` at `time` [output unit]."""
    return ValueAt(_out("value_at", output), _num("value_at", "time", time))


def time_above(
    output: str, threshold: float, start: float | None = None, end: float | None = None
) -> TimeAbove:
    """Time [time] that `output` spends at or above `threshold` within [start, end]."""
    _check_window("time_above", start, end)
    return TimeAbove(
        _out("time_above", output),
        _num("time_above", "threshold", threshold, traced_ok=True),
        _opt(start),
        _opt(end),
    )


def half_life(output: str, start: float | None = None, end: float | None = None) -> HalfLife:
    """Terminal half-life (persistence) [time]: log-linear regression over [start, end]."""
    _check_window("half_life", start, end)
    return HalfLife(_out("half_life", output), _opt(start), _opt(end))


def cell_days(state: str, start: float | None = None, end: float | None = None) -> CellDays:
    """Integral of a cell-count state over start..end; unit: cells*day."""
    _check_window("cell_days", start, end)
    return CellDays(_out("cell_days", state), _opt(start), _opt(end))


def max_pct_change(output: str, direction: str = "decrease") -> MaxPctChange:
    """Largest percent change of `output` from its value at the first output time [%]."""
    if direction not in ("decrease", "increase"):
        raise SpecError(
            f"max_pct_change: direction = {direction!r}; expected 'decrease' or 'increase'"
        )
    return MaxPctChange(_out("max_pct_change", output), direction)


def time_to(output: str, threshold: float, direction: str = "below") -> TimeTo:
    """First time [time] `output` falls to `threshold` from above it ("below": after having
    been above it; the first output time if it never is) or reaches it ("above"); +inf if
    it never does within the output grid. See `TimeTo`."""
    if direction not in ("below", "above"):
        raise SpecError(f"time_to: direction = {direction!r}; expected 'below' or 'above'")
    threshold = _num("time_to", "threshold", threshold, traced_ok=True)
    return TimeTo(_out("time_to", output), threshold, direction)


def named(metrics: Any, where: str = "metrics") -> dict[str, Metric]:
    """Metrics given as a dict name -> Metric or a list (named by `default_name`)."""
    if isinstance(metrics, Metric):
        metrics = [metrics]
    if isinstance(metrics, Mapping):
        items = list(metrics.items())
    else:
        try:
            items = [(m.default_name if isinstance(m, Metric) else str(m), m) for m in metrics]
        except TypeError:
            raise SpecError(
                f"{where}: expected a dict name -> cp.metrics.Metric or a list of them, got "
                f"{type(metrics).__name__}"
            ) from None
    out: dict[str, Metric] = {}
    for name, m in items:
        if not isinstance(m, Metric):
            raise SpecError(
                f"{where}: '{name}' is a {type(m).__name__}, expected a cp.metrics.Metric "
                "(e.g. cp.metrics.auc('conc'))"
            )
        if not isinstance(name, str) or not name.isidentifier():
            raise SpecError(f"{where}: metric name {name!r} must be an identifier")
        if name in out:
            raise SpecError(f"{where}: two metrics are named '{name}'; give them names")
        out[name] = m
    if not out:
        raise SpecError(f"{where}: no metrics given")
    return out


def __getattr__(name: str) -> Any:
    # `cp.metrics.evaluate` moved to `cp.evaluate_metrics` (cellpkpd.analysis.sweep: it runs a
    # sweep, a module above these reductions); the old name forwards, with a warning, for a while
    if name == "evaluate":
        import importlib
        import warnings

        warnings.warn(
            "cp.metrics.evaluate is now cp.evaluate_metrics (same arguments)",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module("cellpkpd.analysis.sweep").evaluate_metrics
    raise AttributeError(f"module 'cellpkpd.metrics' has no attribute {name!r}")
