"""Doses, regimens and their padded array form, with NONMEM's event semantics.

A `Dose` is a bolus (``duration=0``) or a zero-order infusion into one state; it may carry a
lag time, a bioavailability, a steady-state flag (SS=1 / SS=2 with interval ``ii``) and a
reset (EVID 4). A `Reset` (EVID 3) returns the system to its initial state. A `Regimen` is a
time-ordered list of these events; `Regimen.to_arrays` pads it to a fixed event count for the
compiled engine (`DoseArrays`, a pytree that works under jit/vmap/grad).

The numbers of a dose (time, amount, duration, rate, lag, bioavailability, ii) and a
`Regimen.repeat` interval may be JAX-traced scalars, so that ``jax.grad``, ``jax.jit`` and
``jax.vmap`` of a function that builds a regimen and calls a `Simulator` see them: concrete
values are checked at once, traced ones with `equinox.error_if` when the program runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._core.errors import DosingError

if TYPE_CHECKING:
    from ..spec.model import ModelSpec

__all__ = ["Dose", "DoseArrays", "Regimen", "Reset", "stack_dose_arrays"]

#: Most events (doses and resets) of one regimen: each is a slot of the compiled engine.
MAX_DOSES = 100_000

# DoseArrays.kind
PAD, DOSE, RESET, RESET_DOSE = 0, 1, 2, 3
# DoseArrays.mode (how an infusion's rate and duration are known)
BOLUS, GIVEN_DURATION, GIVEN_RATE, MODEL_RATE, MODEL_DURATION = 0, 1, 2, 3, 4


def _traced(value: Any) -> bool:
    """True for a value being traced by a JAX transformation (grad, jit, vmap)."""
    return isinstance(value, jax.core.Tracer)


def traced_path(tree: Any, name: str) -> str | None:
    """Where the first JAX-traced leaf of `tree` is (e.g. ``"params['CL']"``), else None;
    the events of a `Regimen` leaf are looked into too."""
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, Regimen))
    for path, leaf in leaves[0]:
        where = name + jax.tree_util.keystr(path)
        if isinstance(leaf, Regimen):
            for i, e in enumerate(leaf.events):
                for f in dataclasses.fields(e):
                    if _traced(getattr(e, f.name)):
                        return f"{where} event {i} {f.name}"
        elif _traced(leaf):
            return where
    return None


def _check_traced(value: Any, ok: Any, message: str) -> Any:
    """`value` that raises `message` when the program runs with ``ok`` false."""
    return eqx.error_if(value, ~ok, message)


def _num(value: Any, name: str, *, lo: float | None = 0.0, where: str = "Dose") -> Any:
    """A validated number: a float, or a traced JAX scalar (float64) checked on evaluation."""
    if _traced(value):
        if value.shape != () or not (
            jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)
        ):
            raise DosingError(
                f"{where}: {name} is a traced array of shape {value.shape} and dtype "
                f"{value.dtype}; expected a real scalar (jax.vmap over a batch of {name}s)"
            )
        v = jnp.asarray(value, dtype=float)
        ok = jnp.isfinite(v) if lo is None else jnp.isfinite(v) & (v >= lo)
        bound = "finite" if lo is None else f"finite and >= {lo:g}"
        return _check_traced(v, ok, f"{where}: {name} (traced) must be {bound}")
    if getattr(value, "shape", None) == () and not isinstance(value, str):
        value = value.item()  # a concrete 0-d numpy or JAX array
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DosingError(f"{where}: {name} = {value!r} is not a number")
    v = float(value)
    if not math.isfinite(v):
        raise DosingError(f"{where}: {name} = {v!r} must be finite")
    if lo is not None and v < lo:
        raise DosingError(f"{where}: {name} = {v!r} must be >= {lo:g}")
    return v


def _is_model(value: Any) -> bool:
    return isinstance(value, str) and value == "model"


def _flag(value: Any, name: str, what: str) -> None:
    if _traced(value):
        raise DosingError(
            f"Dose: {name} is a traced JAX value; it is a flag that {what} and must be a "
            "concrete Python value (differentiate with respect to amount, time, duration, rate, "
            "lag, bioavailability or ii instead)"
        )


@dataclass(frozen=True)
class Dose:
    """One dose into one state (`cmt`) or into the states of a route (`route`).

    Parameters
    ----------
    time : float
        Record time [model time unit], >= 0. The dose enters at ``time + lag``.
    amount : float
        Amount [model amount unit, e.g. cells or mg], >= 0; multiplied by bioavailability.
    cmt : str or int, optional
        Target state: its name, or its 1-based number in ``[states]`` (NONMEM's CMT).
        Give `cmt` or `route`, not both.
    duration : float or "model"
        Infusion duration [time]; 0 = bolus. ``"model"`` takes it from the model file's
        ``[dosing]`` block (NONMEM RATE = -2).
    lag : float
        Lag time [time], added to the model file's lag for the state.
    bioavailability : float
        Fraction absorbed [1], multiplied by the model file's bioavailability.
    rate : float, "model" or None
        Infusion rate [amount/time] instead of a duration (NONMEM RATE > 0; with
        bioavailability F the duration is F * amount / rate). ``"model"`` takes it from
        ``[dosing]`` (RATE = -1).
    ss : {0, 1, 2}
        Steady state: 1 = the system is at steady state for doses of this size every
        `ii` (prior doses are ignored), 2 = that steady state is added to the current state
        (linear models only). With ``amount=0`` and ``ii=0``, the steady state of a constant
        infusion at `rate` (or, with no rate, of the model's own inputs), which stops at
        `time` (NONMEM's SS dose with AMT = 0, RATE >= 0 or -1, II = 0).
    ii : float
        Dosing interval for steady state [time]: > 0 when ``ss`` is 1 or 2, except for the
        constant-infusion steady state (``amount=0``, ``ii=0``).
    reset : bool
        Reset the system to its initial state before dosing (NONMEM EVID 4).
    per : {"kg"} or None
        ``"kg"``: `amount` is per kg of body weight; each subject's amount is `amount` times
        its body weight (the model's ``body_weight`` or ``WT`` covariate or parameter, e.g.
        from its ``[physiology]`` table, converted to kg with its declared unit), resolved
        by `cp.simulate`, which records the amounts given.
    route : str, optional
        A route of the model's ``[routes]`` block instead of `cmt`: the dose puts
        ``amount * bioavailability * fraction_s`` into every state s of the route, each
        fraction evaluated with the dose record's parameters and covariates (it takes the
        place of the state's ``[dosing]`` bioavailability; the state's ``[dosing]`` lag,
        rate and duration, and this dose's lag, duration, rate, ss and reset apply to every
        state of the route; an infusion at `rate` gives each state ``rate * fraction_s``, so
        all end together).

    Notes
    -----
    A unit may come with `amount`, `duration`, `lag`, `rate` and `ii` as a string:
    ``amount="2e6 cells"``, ``amount="2e6 cells/kg"`` (per kg, as ``per="kg"``),
    ``amount="5 mg/kg"``, ``duration="1 d"``, ``rate="10 mg/h"``. They are converted to the
    model's amount and time units when the regimen meets its model (`Regimen.to_arrays`
    with ``spec=``, `cp.simulate`); a unit that does not convert is a `DosingError`. Plain
    numbers are in the model's units. `time` is always a number in the model's time unit
    (it orders the regimen).

    time, amount, duration, rate, lag, bioavailability and ii may be JAX-traced scalars
    (inside ``jax.grad``, ``jax.jit`` or ``jax.vmap``): the dose keeps them, and derivatives
    of `Simulator` outputs with respect to them are exact on both solver paths. Concrete
    values are checked here; a traced value's range is checked with `equinox.error_if` when
    the program runs. A traced duration makes the dose an infusion when it is > 0 and a bolus
    when it is 0 (the choice is data; the engine compiles its infusion machinery). `cmt`,
    `ss` and `reset` choose what is compiled and must be concrete.
    """

    time: float
    amount: float
    cmt: str | int | None = None
    duration: float | str = 0.0
    lag: float = 0.0
    bioavailability: float = 1.0
    rate: float | str | None = None
    ss: int = 0
    ii: float = 0.0
    reset: bool = False
    per: str | None = None
    #: field -> unit of a value given with a unit (converted by `resolve`)
    units: tuple[tuple[str, str], ...] = ()
    route: str | None = None

    def _where(self) -> str:
        """The dose's target for messages."""
        return (
            f"Dose into {self.cmt!r}" if self.route is None else f"Dose into route {self.route!r}"
        )

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        self._split_units()
        self._check_per()
        set_(self, "time", _num(self.time, "time"))
        set_(self, "amount", _num(self.amount, "amount"))
        self._check_target()
        self._check_rate_and_duration()
        set_(self, "lag", _num(self.lag, "lag"))
        set_(self, "bioavailability", _num(self.bioavailability, "bioavailability"))
        self._check_steady_state()

    def _split_units(self) -> None:
        """Numbers given with a unit (``"2e6 cells"``) become the number, their unit kept
        in `units`; `time` must be a plain number."""
        if isinstance(self.time, str):
            raise DosingError(
                f"Dose: time = {self.time!r} is not a number; give the record time in the "
                "model's time unit (units are accepted for amount, duration, lag, rate and ii)"
            )
        units = dict(self.units)
        for fld in ("amount", "duration", "lag", "rate", "ii"):
            value = getattr(self, fld)
            if isinstance(value, str) and value != "model":
                number, unit = _with_unit(value, fld)
                if unit is not None and fld in ("duration", "lag", "ii") and not _is_time(unit):
                    raise DosingError(
                        f"Dose: {fld} = {value!r} is not a time (expected e.g. '1 d', '30 min')"
                    )
                object.__setattr__(self, fld, number)
                if unit is not None:
                    units[fld] = unit
        object.__setattr__(self, "units", tuple(sorted(units.items())))

    def _check_per(self) -> None:
        if self.per not in (None, "kg"):
            raise DosingError(f"Dose: per = {self.per!r}; expected 'kg' (per kg body weight)")
        if self.per is not None and self.rate is not None:
            raise DosingError(
                "Dose: per='kg' with a rate; give a duration (the rate would differ by subject)"
            )

    def _check_target(self) -> None:
        """One target: a state (`cmt`, a name or a 1-based number) or a `route`."""
        _flag(self.cmt, "cmt", "names the dosed state")
        _flag(self.route, "route", "names the dosing route")
        if self.route is not None:
            if not isinstance(self.route, str) or not self.route:
                raise DosingError(f"Dose: route = {self.route!r} must be a route name (text)")
            if self.cmt is not None:
                raise DosingError(
                    f"Dose: give cmt or route, not both (cmt = {self.cmt!r}, route = "
                    f"{self.route!r})"
                )
        elif self.cmt is None:
            raise DosingError("Dose: no target; give cmt= (a state) or route= (a [routes] name)")
        elif isinstance(self.cmt, bool) or not isinstance(self.cmt, (str, int, np.integer)):
            raise DosingError(f"Dose: cmt = {self.cmt!r} must be a state name or number")
        if isinstance(self.cmt, (int, np.integer)):
            object.__setattr__(self, "cmt", int(self.cmt))
            if self.cmt < 1:
                raise DosingError(f"Dose: cmt = {self.cmt} must be >= 1 (NONMEM numbering)")

    def _check_rate_and_duration(self) -> None:
        """A duration (or ``"model"``), or a rate > 0 (or ``"model"``), not both."""
        set_ = object.__setattr__
        if not _is_model(self.duration):
            set_(self, "duration", _num(self.duration, "duration"))
        if self.rate is not None and not _is_model(self.rate):
            if not _traced(self.rate) and not isinstance(self.rate, str) and self.rate in (-1, -2):
                key = "rate" if self.rate == -1 else "duration"
                raise DosingError(
                    f"Dose: rate = {self.rate!r} is NONMEM's coding for a modelled {key}; "
                    f'here write {key}="model" (the model file\'s [dosing] {key})'
                )
            set_(self, "rate", _num(self.rate, "rate"))
            if _traced(self.rate):
                set_(
                    self,
                    "rate",
                    _check_traced(self.rate, self.rate > 0, "Dose: rate (traced) must be > 0"),
                )
            elif self.rate == 0:
                raise DosingError("Dose: rate = 0 would never deliver the dose; use rate=None")
        if self.rate is not None and (_traced(self.duration) or self.duration != 0.0):
            raise DosingError("Dose: give either rate or duration, not both")

    def _check_steady_state(self) -> None:
        """`ss` 0, 1 or 2 and `reset` concrete; a steady state needs ``ii > 0``, except
        the steady state of a constant infusion (``amount=0``, ``ii=0``, a rate)."""
        _flag(self.ss, "ss", "selects steady-state dosing")
        _flag(self.reset, "reset", "selects a reset (EVID 4)")
        if self.ss not in (0, 1, 2):
            raise DosingError(f"Dose: ss = {self.ss!r} must be 0, 1 or 2")
        object.__setattr__(self, "ii", _num(self.ii, "ii"))
        if self.ss and _traced(self.ii):
            msg = (
                f"Dose: ss = {self.ss} needs a dosing interval ii > 0 (ii is traced; the "
                "steady state of a constant infusion takes a concrete ii = 0)"
            )
            object.__setattr__(self, "ii", _check_traced(self.ii, self.ii > 0, msg))
        elif self.ss and self.ii <= 0:
            if _traced(self.amount) or self.amount > 0:
                raise DosingError(
                    f"Dose: ss = {self.ss} needs a dosing interval ii > 0, got {self.ii} "
                    "(or amount = 0 with a rate: the steady state of a constant infusion)"
                )
            if _is_model(self.duration) or (
                self.rate is None and (_traced(self.duration) or self.duration != 0.0)
            ):
                raise DosingError(
                    f"Dose: ss = {self.ss} with ii = 0 is the steady state of a constant "
                    'infusion: give its rate (rate=... or rate="model"), not a duration'
                )

    @property
    def is_infusion(self) -> bool:
        """True for an infusion; a traced duration counts as one (its mode is decided by
        its value when the program runs)."""
        return (
            self.rate is not None
            or _is_model(self.duration)
            or _traced(self.duration)
            or self.duration > 0
        )

    @property
    def needs_resolving(self) -> bool:
        """True if the dose has units or a per-kg amount to resolve against a model."""
        return bool(self.units) or self.per is not None

    def per_body_weight(self, spec: ModelSpec) -> bool:
        """True if the amount is per kg of body weight (``per="kg"`` or a unit such as
        ``cells/kg``) for the amount unit of `spec`."""
        return _amount(self, spec, None, self._where(), need_weight=False)[1]

    def resolve(self, spec: ModelSpec, body_weight: float | None = None) -> Dose:
        """This dose in the model's units: amounts in ``spec.amount_unit``, times in
        ``spec.time_unit``; a per-kg amount times `body_weight` [kg].

        Raises
        ------
        DosingError
            If a unit does not convert to the model's, or a per-kg amount has no body weight.
        """
        if not self.needs_resolving:
            return self
        from ..spec.units import convert

        where = self._where()
        units = dict(self.units)
        T, A = spec.time_unit.strip().lower(), spec.amount_unit
        new: dict[str, Any] = {"per": None, "units": ()}
        new["amount"] = _amount(self, spec, body_weight, where)[0]
        for fld in ("duration", "lag", "ii"):
            if fld in units:
                new[fld] = convert(getattr(self, fld), units[fld], T, f"{where}: {fld}")
        if "rate" in units:
            new["rate"] = convert(self.rate, units["rate"], f"({A})/{T}", f"{where}: rate")
        return dataclasses.replace(self, **new)


def _is_time(unit: str) -> bool:
    from ..spec.units import parse_unit, registry

    return parse_unit(unit, "Dose").dimensionality == registry().Unit("h").dimensionality


def _with_unit(text: str, name: str) -> tuple[float, str | None]:
    """``"2e6 cells/kg"`` -> (2e6, "cells/kg"); ``"100"`` -> (100.0, None)."""
    from ..spec.units import split_quantity

    try:
        return split_quantity(text)
    except ValueError as exc:
        raise DosingError(
            f"Dose: {name} = {text!r} is not a number with a unit such as '2e6 cells', "
            f"'5 mg/kg' or '1 d' ({exc})"
        ) from None


def _amount(
    dose: Dose, spec: ModelSpec, body_weight: float | None, where: str, need_weight: bool = True
) -> tuple[float, bool]:
    """(amount in the model's amount unit, whether it was per kg of body weight)."""
    from ..spec.units import format_unit, parse_unit, per_kg_factor

    unit = dict(dose.units).get("amount")
    factor, per_kg = (1.0, False) if unit is None else per_kg_factor(unit, spec, where)
    if per_kg and dose.per is not None:
        raise DosingError(
            f"{where}: amount {dose.amount:g} {format_unit(parse_unit(unit, where))} is "
            "already per kg; per='kg' would multiply by the body weight twice"
        )
    per_kg = per_kg or dose.per == "kg"
    amount = dose.amount * factor
    if not per_kg or body_weight is None:
        if per_kg and need_weight:
            shown = format_unit(parse_unit(unit, where)) if unit else f"{spec.amount_unit}/kg"
            raise DosingError(
                f"{where}: amount {dose.amount:g} {shown} needs the subject's body weight "
                "[kg] (cp.simulate takes it from the model's body_weight or WT covariate or "
                "parameter, e.g. from [physiology])"
            )
        return amount, per_kg
    return amount * float(body_weight), per_kg


@dataclass(frozen=True)
class Reset:
    """Reset every state to its initial value and stop running infusions (NONMEM EVID 3).

    Parameters
    ----------
    time : float
        Time of the reset [model time unit], >= 0.
    """

    time: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", _num(self.time, "time", where="Reset"))


Event = Dose | Reset


@dataclass(frozen=True)
class Regimen:
    """A dosing regimen: doses and resets in time order (stable for equal times); at most
    `MAX_DOSES` (100,000) events.

    When any event time is a JAX-traced value (``jax.grad``/``jit``/``vmap`` with respect
    to a dose time or a `repeat` interval), the events keep the order they are given in:
    a traced time cannot be sorted in Python. Results are the same either way, because the
    engine orders events by time itself, equal times in the order of the events.

    Examples
    --------
    >>> reg = Regimen([Dose(0.0, 1e6, "venous", duration=1.0)])
    >>> weekly = Regimen.repeat(Dose(0.0, 100.0, "central"), interval=168.0, count=4)
    """

    events: tuple[Event, ...] = field(default_factory=tuple)

    def __init__(self, events: Iterable[Event] = ()) -> None:
        if isinstance(events, (Dose, Reset)):
            raise DosingError(
                "Regimen: expected a list of events; wrap one dose as Regimen([dose])"
            )
        try:
            evs = list(itertools.islice(events, MAX_DOSES + 1))
        except TypeError:
            raise DosingError(
                f"Regimen: expected a list of cp.Dose/cp.Reset, got {type(events).__name__}"
            ) from None
        if len(evs) > MAX_DOSES:
            n = len(events) if isinstance(events, Sequence) else f"more than {MAX_DOSES}"
            raise DosingError(
                f"Regimen: {n} events (doses and resets); expected at most {MAX_DOSES} per "
                "subject (use fewer, or steady state: ss=1 with ii)"
            )
        for i, e in enumerate(evs):
            if not isinstance(e, (Dose, Reset)):
                raise DosingError(
                    f"Regimen: event {i} is a {type(e).__name__}; expected cp.Dose or cp.Reset"
                )
        if any(_traced(e.time) for e in evs):
            order = list(range(len(evs)))  # traced times: the given order (see the docstring)
        else:
            order = sorted(range(len(evs)), key=lambda i: evs[i].time)
        object.__setattr__(self, "events", tuple(evs[i] for i in order))

    @classmethod
    def repeat(cls, dose: Dose, interval: float, count: int) -> Regimen:
        """`count` copies of `dose`, every `interval` [time], starting at ``dose.time``.

        `interval` (and the dose's numbers) may be JAX-traced; `count` sets the number of
        event slots and must be a concrete integer."""
        interval = _num(interval, "interval", where="Regimen.repeat")
        if _traced(count):
            raise DosingError(
                "Regimen.repeat: count is a traced JAX value; it sets the number of dose slots "
                "and must be a concrete integer (differentiate with respect to interval or the "
                "dose's amount instead)"
            )
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise DosingError(f"Regimen.repeat: count = {count!r} must be an integer >= 1")
        if count > MAX_DOSES:
            raise DosingError(
                f"Regimen.repeat: count = {count} doses; expected at most {MAX_DOSES} per "
                "subject (use fewer, or steady state: ss=1 with ii)"
            )
        if count > 1 and _traced(interval):
            msg = "Regimen.repeat: interval (traced) must be > 0"
            interval = _check_traced(interval, interval > 0, msg)
        elif count > 1 and interval <= 0:
            raise DosingError(f"Regimen.repeat: interval = {interval} must be > 0")
        return cls(
            dataclasses.replace(dose, time=dose.time + k * interval) for k in range(int(count))
        )

    def __add__(self, other: Regimen) -> Regimen:
        if not isinstance(other, Regimen):
            return NotImplemented
        return Regimen([*self.events, *other.events])

    def __len__(self) -> int:
        return len(self.events)

    @property
    def doses(self) -> tuple[Dose, ...]:
        return tuple(e for e in self.events if isinstance(e, Dose))

    @property
    def has_infusion(self) -> bool:
        return any(d.is_infusion for d in self.doses)

    def to_arrays(
        self,
        max_doses: int | None = None,
        spec: ModelSpec | Sequence[str] | None = None,
        ss_overlap: int | None = None,
    ) -> DoseArrays:
        """Pad to `max_doses` events for the compiled engine.

        Parameters
        ----------
        max_doses : int, optional
            Number of event slots (default: this regimen's length, at least 1).
        spec : ModelSpec or sequence of state names, optional
            Needed to resolve compartment names (a numeric ``cmt`` is NONMEM's 1-based number).
        ss_overlap : int, optional
            Slots per steady-state dose for its implied earlier doses that act after the
            dose time: infusions still running (lag + duration > ii) and lagged doses not
            yet given (lag >= ii); default: computed from the doses, `SS_MODEL_SLOTS`
            (4) where the model's [dosing] block or a traced (JAX) number decides it. A
            solve that needs more reports status 7.

        Notes
        -----
        Traced dose numbers (see `Dose`) go into the arrays as they are, so the result
        carries their derivatives; the flags (``has_infusion`` etc.) come from what is
        concrete: the kind of each event, its state, ``ss`` and ``reset``.
        """
        return _to_arrays([_resolved(self, spec)], max_doses, spec, ss_overlap, batched=False)

    def resolve(self, spec: ModelSpec, body_weight: float | None = None) -> Regimen:
        """The regimen in the model's units (see `Dose.resolve`)."""
        if not any(isinstance(e, Dose) and e.needs_resolving for e in self.events):
            return self
        return Regimen(
            e.resolve(spec, body_weight) if isinstance(e, Dose) else e for e in self.events
        )


def _resolved(reg: Regimen, spec: Any) -> Regimen:
    if not any(isinstance(e, Dose) and e.needs_resolving for e in reg.events):
        return reg
    if not hasattr(spec, "time_unit"):
        raise DosingError(
            "Regimen.to_arrays: doses with units or per='kg' need the model (spec=) to convert them"
        )
    return reg.resolve(spec)


class DoseArrays(eqx.Module):
    """Padded dose events of one subject (or, with leading axes, of many).

    Array fields have shape ``(..., max_doses)``; flags are static (part of the pytree
    structure) so the engine compiles only the machinery a batch needs.
    """

    time: Any
    amount: Any
    cmt: Any
    duration: Any
    rate: Any
    lag: Any
    bioavailability: Any
    ii: Any
    kind: Any
    mode: Any
    ss: Any
    # index into the model's [routes] (-1: a dose into the single state `cmt`)
    route: Any = None
    has_infusion: bool = eqx.field(static=True, default=False)
    has_ss: bool = eqx.field(static=True, default=False)
    has_reset: bool = eqx.field(static=True, default=False)
    ss_overlap: int = eqx.field(static=True, default=0)
    # event positions that hold a periodic steady-state dose in some regimen (None: any);
    # only these get the ss_overlap slots of the engine
    ss_positions: tuple[int, ...] | None = eqx.field(static=True, default=None)
    # state names of a single regimen padded without a model (resolved by the Simulator)
    cmt_names: tuple[str | None, ...] | None = eqx.field(static=True, default=None)
    # some event doses into a route (the engine then expands each event per route state)
    has_route: bool = eqx.field(static=True, default=False)
    # route names of a single regimen padded without a model (resolved by the Simulator)
    route_names: tuple[str | None, ...] | None = eqx.field(static=True, default=None)

    @property
    def max_doses(self) -> int:
        return int(self.time.shape[-1])

    def resolve(
        self, states: Sequence[str], where: str = "Simulator", routes: Sequence[str] = ()
    ) -> DoseArrays:
        """Replace compartment and route names kept by ``to_arrays()`` without a model by
        indices (`routes`: the model's route names)."""
        out = self
        if self.route_names is not None:
            index = np.full(len(self.route_names), -1, dtype=np.int32)
            for i, name in enumerate(self.route_names):
                if name is None:
                    continue
                if name not in routes:
                    raise DosingError(
                        f"{where}: event {i} doses into unknown route '{name}'; routes: "
                        + (", ".join(routes) or "none (the model has no [routes] block)")
                    )
                index[i] = list(routes).index(name)
            route = jnp.where(index >= 0, index, self.route)
            out = dataclasses.replace(self, route=route, route_names=None)
        if out.cmt_names is None:
            return out
        self = out
        index = np.full(len(self.cmt_names), -1, dtype=np.int32)
        for i, name in enumerate(self.cmt_names):
            if name is None:
                continue
            if name not in states:
                raise DosingError(
                    f"{where}: event {i} doses into unknown state '{name}'; states: "
                    + ", ".join(states)
                )
            index[i] = list(states).index(name)
        cmt = jnp.where(index >= 0, index, self.cmt)  # works on traced arrays too
        return dataclasses.replace(self, cmt=cmt, cmt_names=None)


def _resolve_cmt(cmt: str | int, names: Sequence[str] | None, i: int) -> int:
    if isinstance(cmt, str):
        if names is None:
            return -1  # kept by name: resolved against the model later
        if cmt not in names:
            raise DosingError(
                f"Regimen: event {i} doses into unknown state '{cmt}'; states: " + ", ".join(names)
            )
        return list(names).index(cmt)
    if names is not None and not 1 <= cmt <= len(names):
        raise DosingError(
            f"Regimen: event {i} has cmt = {cmt}; the model has states 1..{len(names)} "
            f"({', '.join(names)})"
        )
    return int(cmt) - 1


#: Slots per steady-state dose for the implied earlier doses that act after its time
#: (infusions still running, doses still lagged) when the infusion's length or the lag
#: comes from the model: enough for lag + duration < (SS_MODEL_SLOTS + 1) * ii. A solve
#: that needs more reports status 7 (pass ``ss_overlap=`` to `Regimen.to_arrays`).
SS_MODEL_SLOTS = 4


def _ss_slots(ev: Dose, spec: Any, names: Sequence[str] | None) -> int:
    """Implied earlier doses of steady-state dose `ev` that act after its record time:
    infusions still running (lag + duration > ii) and doses not yet given (lag >= ii),
    ceil((lag + duration) / ii) - 1; `SS_MODEL_SLOTS` when the model's [dosing] lag,
    bioavailability (of a dose given by rate), rate or duration decide it."""
    if ev.route is not None:
        # every state of the route (its fraction takes the place of [dosing] F)
        states = list(getattr(spec, "routes", {}).get(ev.route, {})) or [None]
        return max(
            SS_MODEL_SLOTS,
            *(_ss_slots(dataclasses.replace(ev, route=None, cmt=s or 1), spec, names)
              for s in states),
        )  # fmt: skip
    rule = None
    if hasattr(spec, "dosing") and names is not None:
        state = ev.cmt if isinstance(ev.cmt, str) else names[ev.cmt - 1]
        rule = spec.dosing.get(state)

    def constant(expr: Any, default: float) -> float | None:
        if rule is None or expr is None:
            return default
        if not expr.is_constant:
            return None
        with jax.ensure_compile_time_eval():  # also when to_arrays runs inside jax.jit
            return float(expr({}))

    lag = constant(getattr(rule, "lag", None), 0.0)
    f_model = constant(getattr(rule, "bioavailability", None), 1.0)
    if _is_model(ev.rate) or _is_model(ev.duration):
        return SS_MODEL_SLOTS
    numbers = (ev.amount, ev.bioavailability, ev.rate, ev.duration, ev.lag, ev.ii)
    if any(_traced(x) for x in numbers):
        # traced: a bolus without lag needs none, else as when the model decides it
        bolus = ev.rate is None and not _traced(ev.duration) and ev.duration == 0.0
        no_lag = not _traced(ev.lag) and ev.lag == 0.0 and lag == 0.0
        return 0 if bolus and no_lag else SS_MODEL_SLOTS
    if ev.rate is not None:
        if f_model is None:
            return SS_MODEL_SLOTS
        duration = ev.amount * ev.bioavailability * f_model / ev.rate
    else:
        duration = float(ev.duration)
    if lag is None:
        return max(SS_MODEL_SLOTS, math.ceil((ev.lag + duration) / ev.ii) - 1)
    return max(0, math.ceil((ev.lag + lag + duration) / ev.ii) - 1)


class _Slots:
    """The padded arrays of a batch of regimens, filled event by event: concrete values go
    into numpy arrays, traced ones are kept and set with jnp when the arrays are made (so
    the result carries their derivatives)."""

    def __init__(self, n_regimens: int, n: int) -> None:
        shape = (n_regimens, n)
        self.floats = {
            k: np.zeros(shape) for k in ("time", "amount", "duration", "rate", "lag", "ii")
        }
        self.floats["bioavailability"] = np.ones(shape)
        self.ints = {k: np.zeros(shape, dtype=np.int32) for k in ("cmt", "kind", "mode", "ss")}
        self.ints["route"] = np.full(shape, -1, dtype=np.int32)
        # traced values: field -> [(regimen, slot, value)]
        self.traced: dict[str, list[tuple[int, int, Any]]] = {}
        # state and route names kept for a single regimen padded without a model
        self.kept_names: list[str | None] = [None] * n
        self.kept_routes: list[str | None] = [None] * n

    def put(self, key: str, b: int, i: int, value: Any) -> None:
        if _traced(value):
            self.traced.setdefault(key, []).append((b, i, value))
        else:
            (self.floats if key in self.floats else self.ints)[key][b, i] = value

    def arrays(self, batched: bool) -> dict[str, Any]:
        """Every field as a JAX array, shape (n_regimens, n) if `batched` else (n,)."""
        out = {}
        for key, v in {**self.floats, **self.ints}.items():
            a = jnp.asarray(v if batched else v[0])
            entries = self.traced.get(key)
            if entries:
                bs = np.array([e[0] for e in entries])
                js = np.array([e[1] for e in entries])
                vals = jnp.stack([jnp.asarray(e[2], a.dtype) for e in entries])
                a = a.at[(bs, js) if batched else js].set(vals)
            out[key] = a
        return out


def _put_target(
    slots: _Slots,
    b: int,
    i: int,
    ev: Dose,
    names: Sequence[str] | None,
    routes: Sequence[str] | None,
    batched: bool,
) -> None:
    """Event `i` of regimen `b`: the index of its route or state (a name kept for later
    when there is no model and one regimen)."""
    if ev.route is not None:
        if routes is not None and ev.route not in routes:
            raise DosingError(
                f"Regimen: event {i} doses into unknown route '{ev.route}'; routes: "
                + (", ".join(routes) or "none (the model has no [routes] block)")
            )
        if routes is None and batched:
            raise DosingError(
                f"stack_dose_arrays: regimen {b} event {i} names route "
                f"'{ev.route}'; pass spec= (the model) to resolve route names"
            )
        if routes is None:
            slots.kept_routes[i] = ev.route
        else:
            slots.ints["route"][b, i] = list(routes).index(ev.route)
        return
    slots.ints["cmt"][b, i] = _resolve_cmt(ev.cmt, names, i)
    if slots.ints["cmt"][b, i] < 0:
        if batched:
            raise DosingError(
                f"stack_dose_arrays: regimen {b} event {i} names compartment "
                f"'{ev.cmt}'; pass spec= to resolve state names"
            )
        slots.kept_names[i] = ev.cmt


def _put_mode(slots: _Slots, b: int, i: int, ev: Dose) -> None:
    """How the dose's infusion is known (`mode`), with its rate or duration."""
    if _is_model(ev.rate):
        slots.ints["mode"][b, i] = MODEL_RATE
    elif _is_model(ev.duration):
        slots.ints["mode"][b, i] = MODEL_DURATION
    elif ev.rate is not None:
        slots.ints["mode"][b, i] = GIVEN_RATE
        slots.put("rate", b, i, ev.rate)
    elif _traced(ev.duration):
        # a bolus at duration 0, an infusion otherwise: decided when the program runs
        slots.put("mode", b, i, jnp.where(ev.duration > 0, GIVEN_DURATION, BOLUS))
        slots.put("duration", b, i, ev.duration)
    elif ev.duration > 0:
        slots.ints["mode"][b, i] = GIVEN_DURATION
        slots.floats["duration"][b, i] = ev.duration


def _to_arrays(
    regimens: Sequence[Regimen],
    max_doses: int | None,
    spec: Any,
    ss_overlap: int | None,
    batched: bool,
) -> DoseArrays:
    """The regimens padded to `max_doses` slots (stacked if `batched`)."""
    names = None
    if spec is not None:
        names = list(spec.states) if hasattr(spec, "states") else list(spec)
    routes = list(spec.routes) if hasattr(spec, "routes") else None
    longest = max((len(r) for r in regimens), default=0)
    n = max(longest, 1) if max_doses is None else int(max_doses)
    if longest > n:
        raise DosingError(f"Regimen.to_arrays: a regimen has {longest} events but max_doses = {n}")
    slots = _Slots(len(regimens), n)
    overlap = 0
    ss_positions: set[int] = set()
    for b, reg in enumerate(regimens):
        for i, ev in enumerate(reg.events):
            slots.put("time", b, i, ev.time)
            if isinstance(ev, Reset):
                slots.ints["kind"][b, i] = RESET
                continue
            slots.ints["kind"][b, i] = RESET_DOSE if ev.reset else DOSE
            _put_target(slots, b, i, ev, names, routes, batched)
            for key in ("amount", "lag", "bioavailability", "ii"):
                slots.put(key, b, i, getattr(ev, key))
            slots.ints["ss"][b, i] = ev.ss
            _put_mode(slots, b, i, ev)
            if ev.ss and (_traced(ev.ii) or ev.ii > 0):
                overlap = max(overlap, _ss_slots(ev, spec, names))
                ss_positions.add(i)
    has = lambda pred: any(pred(e) for r in regimens for e in r.events)
    return DoseArrays(
        **slots.arrays(batched),
        has_infusion=has(lambda e: isinstance(e, Dose) and e.is_infusion),
        has_ss=has(lambda e: isinstance(e, Dose) and e.ss > 0),
        has_reset=has(lambda e: isinstance(e, Reset) or (isinstance(e, Dose) and e.reset)),
        ss_overlap=int(overlap if ss_overlap is None else ss_overlap),
        ss_positions=tuple(sorted(ss_positions)),
        cmt_names=tuple(slots.kept_names) if any(slots.kept_names) else None,
        has_route=has(lambda e: isinstance(e, Dose) and e.route is not None),
        route_names=tuple(slots.kept_routes) if any(slots.kept_routes) else None,
    )


def stack_dose_arrays(
    regimens: Sequence[Regimen],
    max_doses: int | None = None,
    spec: ModelSpec | Sequence[str] | None = None,
) -> DoseArrays:
    """Pad several regimens to a common event count and stack them along a leading
    subject axis (shape ``(n_subjects, max_doses)``), ready for ``jax.vmap``."""
    if not regimens:
        raise DosingError("stack_dose_arrays: no regimens given")
    regimens = [_resolved(r, spec) for r in regimens]
    return _to_arrays(regimens, max_doses, spec, None, batched=True)


def model_lags(spec: ModelSpec) -> np.ndarray:
    """The ``[dosing]`` lag of each state [time]: 0 if none, NaN if it is not a number (it
    depends on the parameters)."""
    names = list(spec.states)
    out = np.zeros(len(names))
    for state, rule in spec.dosing.items():
        if state in names:
            try:
                out[names.index(state)] = float(rule.lag.source)
            except (TypeError, ValueError, AttributeError):
                out[names.index(state)] = np.nan
    return out


def jump_times(doses: Any, model_lag: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Times at which the states may jump, per dose-array entry (host-side numpy).

    Parameters
    ----------
    doses : DoseArrays
        Shape (..., max_doses).
    model_lag : array (n_states,), optional
        The ``[dosing]`` lag of each state [time] (NaN where it is not a number); default 0.

    Returns
    -------
    at_record, at_bolus : arrays (..., max_doses)
        The record time of a reset (EVID 3/4) or steady-state dose (both replace the state),
        and the entry time ``time + lag`` of a bolus; NaN where the entry has none.
    """
    kind = np.asarray(doses.kind)
    t = np.asarray(doses.time, dtype=float)
    is_dose = (kind == DOSE) | (kind == RESET_DOSE)
    replaces = (kind == RESET) | (kind == RESET_DOSE) | (is_dose & (np.asarray(doses.ss) > 0))
    bolus = is_dose & (np.asarray(doses.mode) == BOLUS)
    lag = np.asarray(doses.lag, dtype=float)
    if model_lag is not None:
        cmt = np.clip(np.asarray(doses.cmt), 0, len(model_lag) - 1)
        lag = lag + np.asarray(model_lag, dtype=float)[cmt]
    return np.where(replaces, t, np.nan), np.where(bolus, t + lag, np.nan)
