"""Units of model files: one `pint` registry, parsing of unit strings, and the load-time
dimension checks of a model.

The registry is pint's default one plus the counting units of cell therapy: ``cell``
(plural ``cells``), ``copy`` (plural ``copies``, e.g. transgene or Alu copies), ``GE``
(genome equivalents), ``IU`` (international units) and ``AU`` (an arbitrary unit of a
mediator or response); each is its own dimension, so it is never mixed with cells or mg.
``"1"`` (or ``"-"``, ``"dimensionless"``) is dimensionless, ``"%"`` is 0.01; an empty unit
means "not declared".

`check_units` walks every expression of a model (flows, ``[odes]``, derived quantities,
observations, initial values, ``[dosing]`` fields, breakpoints) and infers its unit from
the declared units of the names in it:

- ``+``, ``-``, comparisons, ``min``, ``max``, ``clip``, ``where`` and ``a if c else b``
  need operands of one unit; ``*``, ``/`` and ``**`` (constant exponent) combine units;
  ``exp``, ``log``, ``sin``, ``logit``... need dimensionless arguments; ``hill(x, x50, n)``
  needs ``x`` and ``x50`` in one unit and is dimensionless.
- A number next to ``+``/``-`` or in ``min``/``max`` (``1 - f``, ``max(x, 1.0)``) takes the
  other operand's unit. A number written as a factor of a quantity other than 1 (``WT / 70``,
  ``100 * x``, ``k / 24``) has no unit of its own (a reference value or a conversion factor):
  the expression's unit is unknown and it is not checked. To have it checked, give the
  number its unit as a derived quantity: ``WT_ref = { expr = "70", unit = "kg" }``.
  Functions of numbers (``log(2)``) are dimensionless numbers. ``t`` is in the model's time
  unit, ``dosed_<state>`` in its amount unit, a breakpoint is dimensionless.
- A name without a declared unit (empty ``unit``, or a derived quantity that is a bare
  number without a ``unit``) makes every expression using it unknown: not checked.

A checked expression must have the expected unit exactly, dimension and scale: a flow's
rate 1/time_unit, an ``[odes]`` term state-unit/time_unit, ``[dosing]`` ``lag``/``duration``
and breakpoints time_unit, ``[dosing]`` ``rate`` amount_unit/time_unit, ``bioavailability``
dimensionless, a dosed state's unit amount_unit; an observation, an initial value and a
derived quantity with a ``unit`` that unit. Nothing is converted: a rate constant declared
in 1/d in a model in h is an error (it would otherwise be read as 1/h), as is an
observation in ng/mL computed as mg/L.
"""

from __future__ import annotations

import ast
import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._core.errors import SpecError

if TYPE_CHECKING:
    import pint

    from .model import ModelSpec

__all__ = [
    "check_units",
    "convert",
    "format_unit",
    "parse_unit",
    "per_kg_factor",
    "registry",
    "split_quantity",
    "time_factor",
]

_DIMENSIONLESS = {"1", "-", "dimensionless"}

#: a number per kg body weight as the CLI and `cp.Dose` take it (``"2e6/kg"``): read
#: without pint (importing pint and building its registry take ~0.3 s of a CLI run)
_PER_KG = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*/\s*kg\s*", re.ASCII)
#: the unit pint gives ``"2e6/kg"`` (`split_quantity`)
PER_KG = "1 / kilogram"
#: model amount units of a count, mass or substance: an amount in `PER_KG` is per kg of
#: body weight in them, with factor 1 (what pint gives; a scaled dimensionless unit such as
#: ``percent`` would not be factor 1, so the list is explicit)
_PLAIN_AMOUNTS = frozenset(
    ("cell", "cells", "copy", "copies", "GE", "IU", "AU", "g", "mg", "ug", "ng", "pg", "kg",
     "mol", "mmol", "umol", "nmol", "pmol")
)  # fmt: skip


@functools.cache
def registry() -> pint.UnitRegistry:
    """The application unit registry: pint's defaults plus ``cell``/``cells``,
    ``copy``/``copies``, ``AU`` (arbitrary unit), ``GE`` (genome equivalents), ``IU``
    (international units) and ``wk`` (week), each counting unit its own dimension."""
    return _new_registry(_pint_cache())


def _new_registry(cache_folder: str | None) -> pint.UnitRegistry:
    import pint

    try:
        ureg = pint.UnitRegistry(on_redefinition="ignore", cache_folder=cache_folder)
    except Exception:  # (an unreadable or half-written cache entry: build without it)
        ureg = pint.UnitRegistry(on_redefinition="ignore", cache_folder=None)
    ureg.define("cell = [cell] = _ = cells")
    ureg.define("copy = [copies] = _ = copies")
    ureg.define("arbitrary_unit = [arbitrary_unit] = AU")
    ureg.define("genome_equivalent = [genome] = GE = _ = genome_equivalents")
    ureg.define("international_unit = [international_unit] = IU")
    ureg.define("@alias week = wk")
    return ureg


def _pint_cache() -> str | None:
    """pint's cache of its parsed unit definitions, in the compilation cache folder (beside
    `cellpkpd._core.programs`' entries, one folder per pint version) when that is on (the
    CLI; ``cp.config.enable_compilation_cache()``): the registry is then built in ~0.02 s
    instead of ~0.13 s. None (no cache) otherwise."""
    from importlib import metadata

    from .._core.programs import program_dir

    folder = program_dir()
    return (
        None if folder is None else str(folder.parent / f"cellpkpd-pint-{metadata.version('pint')}")
    )


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> Any:
    ureg = registry()
    s = text.strip()
    if s in _DIMENSIONLESS:
        return ureg.dimensionless
    q = ureg.parse_expression(s)
    if not hasattr(q, "units") or not q.units._units:  # a plain number such as "2"
        raise ValueError("a number, not a unit")
    if q.magnitude != 1:
        raise ValueError(f"a quantity ({q.magnitude:g} times a unit), not a unit")
    return q.units


def parse_unit(text: str, where: str) -> pint.Unit | None:
    """Parse a unit string of a model file (``"L/h"``, ``"cells"``, ``"copies/ug"``, ``"1"``).

    Returns None for an empty string (no unit declared).

    Raises
    ------
    SpecError
        If pint cannot read the string; the message names `where` and the string.
    """
    if not text.strip():
        return None
    try:
        return _parse(text)
    except Exception as exc:  # pint raises many kinds (undefined unit, syntax, ...)
        msg = str(exc).strip() or type(exc).__name__
        raise SpecError(
            f"{where}: unknown unit {text!r} ({msg}); expected a unit such as 'mg', 'L/h', "
            "'cells', 'copies/ug', 'AU' or '1' (dimensionless)"
        ) from None


def format_unit(unit: Any) -> str:
    """A unit written compactly: ``L/h``, ``copies/ug``, ``1/d``, ``1`` (dimensionless)."""
    ureg = registry()
    num, den = [], []
    for name, power in unit._units.items():
        sym = ureg.get_symbol(name)
        if name.endswith("liter"):
            sym = sym[:-1] + "L"
        if name == "cell":
            sym = "cells"
        elif name == "copy":
            sym = "copies"
        sym = sym.replace("µ", "u")
        p = abs(power)
        term = sym if p == 1 else f"{sym}^{p:g}"
        (num if power > 0 else den).append(term)
    top = "*".join(num) or "1"
    if not den:
        return top
    bottom = den[0] if len(den) == 1 else "(" + "*".join(den) + ")"
    return f"{top}/{bottom}"


def time_factor(text: str, time_unit: str, where: str) -> float:
    """How many `time_unit` are in one `text` (e.g. ``time_factor("d", "h", ...) = 24``)."""
    return _factor(_time(text, where), _time(time_unit, where))


def _time(text: str, where: str) -> Any:
    u = parse_unit(text, where)
    if u is None or u.dimensionality != registry().Unit("h").dimensionality:
        raise SpecError(f"{where}: {text!r} is not a time unit (expected h, d, min, week, ...)")
    return u


def _factor(a: Any, b: Any) -> float:
    """Value in `b` of one `a` (same dimension)."""
    return float(registry().Quantity(1.0, a).to(b).magnitude)


# ---------------------------------------------------------------------- quantities
def split_quantity(text: str) -> tuple[float, str | None]:
    """A number with an optional unit: ``"2e6 cells/kg"`` -> ``(2e6, "cell / kilogram")``,
    ``"100"`` -> ``(100.0, None)``.

    Raises
    ------
    ValueError
        If the text is not a number followed by a unit pint knows.
    """
    per_kg = _PER_KG.fullmatch(text)
    if per_kg is not None:
        return float(per_kg.group(1)), PER_KG
    try:
        q = registry().parse_expression(text.strip())
    except Exception as exc:  # pint raises many kinds
        raise ValueError(str(exc).strip() or type(exc).__name__) from None
    if not hasattr(q, "units"):
        return float(q), None
    if not q.units._units:
        return float(q.magnitude), None
    return float(q.magnitude), str(q.units)


def _dosing_unit(text: str, where: str) -> Any:
    from .._core.errors import DosingError

    try:
        return _parse(text)
    except Exception as exc:
        raise DosingError(f"{where}: unknown unit {text!r} ({exc})") from None


def convert(value: float, unit: str, target: str, where: str) -> float:
    """`value` [unit] in `target` units (`target` a unit the model declares; the same
    string as `unit` returns `value` as is).

    Raises
    ------
    DosingError
        If the units have different dimensions (the message names both).
    """
    from .._core.errors import DosingError

    if unit.strip() == target.strip():  # (e.g. a body weight in kg: no pint needed)
        return float(value)
    u, w = _dosing_unit(unit, where), _dosing_unit(target, where)
    if u.dimensionality != w.dimensionality:
        raise DosingError(
            f"{where}: {value:g} {format_unit(u)} does not convert to {format_unit(w)} (the "
            "model's unit)"
        )
    return float(value) * _factor(u, w)


def per_kg_factor(unit: str, spec: ModelSpec, where: str) -> tuple[float, bool]:
    """How an amount given in `unit` becomes the model's amount unit.

    Returns (factor, per_kg): the amount times `factor` is in ``spec.amount_unit`` (per kg
    of body weight when `per_kg`). ``cells``, ``mg`` and ``ug`` convert directly;
    ``cells/kg`` or ``mg/kg`` are per kg; ``1/kg`` (as in ``"2e6/kg"``) is per kg in the
    model's amount unit.

    Raises
    ------
    DosingError
        If `unit` is none of these for the model's amount unit.
    """
    from .._core.errors import DosingError

    if unit == PER_KG and spec.amount_unit.strip() in _PLAIN_AMOUNTS:
        return 1.0, True
    ureg = registry()
    u = _dosing_unit(unit, where)
    A = _dosing_unit(spec.amount_unit, f"{spec.source}: model.amount_unit")
    if u.dimensionality == A.dimensionality:
        return _factor(u, A), False
    per = u * ureg.kilogram
    if per.dimensionality == A.dimensionality:
        return _factor(per, A), True
    if per.dimensionless:
        return _factor(per, ureg.dimensionless), True
    raise DosingError(
        f"{where}: amount in {format_unit(u)} does not convert to the model's amount unit "
        f"{format_unit(A)} (nor {format_unit(A)} per kg of body weight)"
    )


# ---------------------------------------------------------------------- inference
@dataclass(frozen=True)
class _Dim:
    """The inferred unit of an expression.

    free: the expression is constant (numbers and functions of numbers only); next to ``+``
    or ``-`` it takes the other operand's unit.
    number: it is a number as written (``24``, ``-0.5``, ``2 * pi``): as a factor of a
    quantity it has no unit of its own (it may be a conversion factor or a reference value
    such as ``WT / 70``), so the product's unit is unknown.
    """

    unit: Any
    free: bool = False
    number: bool = False


_SAME_ARGS = {"min", "max", "clip", "abs", "floor", "ceil"}


class _Infer:
    def __init__(self, names: Mapping[str, _Dim | None], where: str, source: str):
        self.names = names
        self.where = where
        self.source = source

    def err(self, msg: str) -> SpecError:
        return SpecError(f"{self.where}: {msg} in {self.source!r}")

    def same(self, dims: list[_Dim], what: str) -> _Dim:
        fixed = [d for d in dims if not d.free]
        if not fixed:
            return _Dim(registry().dimensionless, True, all(d.number for d in dims))
        first = fixed[0]
        for d in fixed[1:]:
            if d.unit.dimensionality != first.unit.dimensionality:
                raise self.err(
                    f"{what} {format_unit(first.unit)} and {format_unit(d.unit)} "
                    "(different dimensions)"
                )
            if not _close(_factor(d.unit, first.unit), 1.0):
                raise self.err(
                    f"{what} {format_unit(first.unit)} and {format_unit(d.unit)} (the same "
                    "dimension in different units: the numbers cannot be combined as they are)"
                )
        return _Dim(first.unit)

    def dimensionless(self, d: _Dim, what: str) -> None:
        if not d.unit.dimensionless:
            raise self.err(f"{what} has unit {format_unit(d.unit)}, expected dimensionless")

    def constant(self, node: ast.AST) -> float | None:
        """The value of a constant sub-expression (no names), else None."""
        from .expr import CONSTANTS, parse_expr

        if any(isinstance(n, ast.Name) and n.id not in CONSTANTS for n in ast.walk(node)):
            return None
        return float(parse_expr(ast.unparse(node), self.where)({}))

    def power(self, base: _Dim, exp_node: ast.AST, exp: _Dim) -> _Dim:
        self.dimensionless(exp, "the exponent")
        one = registry().dimensionless
        free = base.free and exp.free
        if base.unit.dimensionless and _close(_factor(base.unit, one), 1):
            return _Dim(one, free, free and base.number and exp.number)
        n = self.constant(exp_node)
        if n is None and base.unit.dimensionless:
            raise self.err(
                f"a ratio in {format_unit(base.unit)} (1 {format_unit(base.unit)} = "
                f"{_factor(base.unit, one):g}, not 1) raised to a non-constant power; give "
                "both quantities in one unit"
            )
        if n is None:
            raise self.err(
                f"a quantity in {format_unit(base.unit)} raised to a non-constant power (its "
                "unit would depend on a parameter value); divide it by a reference value first"
            )
        return _Dim(base.unit**n)

    def __call__(self, node: ast.AST) -> _Dim | None:
        one = registry().dimensionless
        if isinstance(node, ast.Expression):
            return self(node.body)
        if isinstance(node, ast.Constant):
            return _Dim(one, True, True)
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return self.names[node.id]
            return _Dim(one, True, True)  # pi, e, inf
        children = (
            list(node.args) if isinstance(node, ast.Call) else list(ast.iter_child_nodes(node))
        )
        dims = [self(c) for c in children if isinstance(c, ast.expr)]
        if any(d is None for d in dims):
            return None
        if isinstance(node, ast.UnaryOp):
            return _Dim(one) if isinstance(node.op, ast.Not) else dims[0]
        if isinstance(node, ast.BinOp):
            a, b = dims
            if isinstance(node.op, (ast.Add, ast.Sub, ast.Mod)):
                verb = {ast.Add: "adds", ast.Sub: "subtracts", ast.Mod: "takes the modulo of"}
                return self.same([a, b], verb[type(node.op)])
            if isinstance(node.op, ast.Pow):
                return self.power(a, node.right, b)
            if a.free and b.free:
                return _Dim(one, True, a.number and b.number)
            for d, sub in ((a, node.left), (b, node.right)):
                if d.number and self.constant(sub) != 1.0:
                    return None  # a written number scales a quantity: its unit is unknown
            u = a.unit * b.unit if isinstance(node.op, ast.Mult) else a.unit / b.unit
            return _Dim(u)
        if isinstance(node, ast.BoolOp):
            return _Dim(one)
        if isinstance(node, ast.Compare):
            self.same(dims, "compares")
            return _Dim(one)
        if isinstance(node, ast.IfExp):
            return self.same(dims[1:], "chooses between")
        if isinstance(node, ast.Call):
            fname = node.func.id  # type: ignore[attr-defined]
            const = all(d.free for d in dims)
            if fname in _SAME_ARGS:
                return self.same(dims, f"{fname}() of")
            if fname == "where":
                return self.same(dims[1:], "where() chooses between")
            if fname == "pow":
                return self.power(dims[0], node.args[1], dims[1])
            if fname == "sqrt":
                return _Dim(one) if const else _Dim(dims[0].unit ** 0.5)
            if fname == "hill":
                self.same(dims[:2], "hill() of")
                if len(dims) == 3:
                    self.dimensionless(dims[2], "the Hill coefficient")
                return _Dim(one, const)
            if fname in ("step", "sign"):
                return _Dim(one, const)
            for d in dims:  # exp, log, sin, logit, ...: dimensionless in and out
                self.dimensionless(d, f"the argument of {fname}()")
            return _Dim(one, const)
        raise AssertionError(f"unchecked node {type(node).__name__}")  # pragma: no cover


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9)


# ---------------------------------------------------------------------- model checks
def check_units(spec: ModelSpec, derived_units: Mapping[str, str] | None = None) -> None:
    """Check the units of a model at load (see the module docstring for the rules).

    Parameters
    ----------
    spec : ModelSpec
        The model as parsed.
    derived_units : mapping, optional
        Declared units of derived quantities (``[derived] x = { expr = ..., unit = ... }``).

    Raises
    ------
    SpecError
        One line: file, key, the unit found and the unit expected.
    """
    check = _UnitCheck(spec)
    check.derived(derived_units or {})
    check.initial_values_and_breakpoints()
    check.rates_and_terms()
    check.observations()
    check.dosing()


class _UnitCheck:
    """The units of a model's names (those of derived quantities filled in evaluation
    order) and the checks of each block's expressions against what they must be."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.src = src = spec.source
        for key, value in (("time_unit", spec.time_unit), ("amount_unit", spec.amount_unit)):
            if not value.strip():
                raise SpecError(
                    f"{src}: model.{key}: missing; every model declares its {key} "
                    + ("(e.g. 'h' or 'd')" if key == "time_unit" else "(e.g. 'mg' or 'cells')")
                )
        self.T = T = _time(spec.time_unit.strip().lower(), f"{src}: model.time_unit")
        self.A = A = parse_unit(spec.amount_unit, f"{src}: model.amount_unit")
        names: dict[str, _Dim | None] = {}
        blocks = {
            "parameters": spec.parameters,
            "covariates": spec.covariates,
            "states": spec.states,
        }
        for block, items in blocks.items():
            for k, item in items.items():
                names[k] = self.declared(item.unit, f"{block}.{k}.unit")
        names["t"] = _Dim(T)
        for s in spec.states:
            names[f"dosed_{s}"] = _Dim(A)
        for b in spec.breakpoints:
            names[b] = _Dim(registry().dimensionless)
        self.names = names

    def declared(self, unit: str, key: str) -> _Dim | None:
        u = parse_unit(unit, f"{self.src}: {key}")
        return None if u is None else _Dim(u)

    def infer(self, e: Any, key: str) -> _Dim | None:
        return _Infer(self.names, f"{self.src}: {key}", e.source)(e.tree)

    def expect(self, d: _Dim | None, want: Any, key: str, what: str) -> None:
        """Compare an inferred unit with the expected one: dimension and scale."""
        if d is None or want is None:
            return
        w = want.unit if isinstance(want, _Dim) else want
        if d.free and d.unit.dimensionless and not w.dimensionless:
            return  # a plain number (e.g. "0") stands for any unit
        if d.unit.dimensionality != w.dimensionality or not _close(_factor(d.unit, w), 1.0):
            raise SpecError(
                f"{self.src}: {key}: {what} has unit {format_unit(d.unit)}, expected "
                f"{format_unit(w)}" + _hint(d.unit, w, self.spec.time_unit)
            )

    def derived(self, derived_units: Mapping[str, str]) -> None:
        """Each derived quantity's unit: declared (and checked), else inferred; a bare
        number without a declared unit stays unknown."""
        for k, e in self.spec.derived.items():  # evaluation order: what it uses comes first
            d = self.infer(e, f"derived.{k}")
            if k in derived_units and derived_units[k].strip():
                w = parse_unit(derived_units[k], f"{self.src}: derived.{k}.unit")
                if d is not None and d.free:
                    d = None  # a bare number: the declared unit says what it is
                self.expect(d, w, f"derived.{k}", "the expression")
                d = _Dim(w)
            elif d is not None and d.free:
                d = None  # a bare number without a declared unit: unknown
            self.names[k] = d

    def initial_values_and_breakpoints(self) -> None:
        for s in self.spec.states.values():
            key = f"states.{s.name}.initial"
            self.expect(self.infer(s.initial, key), self.names[s.name], key, "the initial value")
        for b, e in self.spec.breakpoints.items():
            key = f"model.breakpoints.{b}"
            self.expect(self.infer(e, key), self.T, key, "the time")

    def rates_and_terms(self) -> None:
        """Flow rates [1/time]; [odes] terms [state unit/time]."""
        for f in self.spec.flows:
            key = f"flows.'{f.key}'"
            self.expect(self.infer(f.rate, key), 1 / self.T, key, "rate")
        for s, e in self.spec.odes.items():
            su = self.names[s]
            want = None if su is None else su.unit / self.T
            self.expect(self.infer(e, f"odes.{s}"), want, f"odes.{s}", "the term")

    def observations(self) -> None:
        for o in self.spec.observations.values():
            key = f"observations.{o.name}"
            w = parse_unit(o.unit, f"{self.src}: {key}.unit")
            self.expect(self.infer(o.expr, f"{key}.expr"), w, f"{key}.expr", "the expression")

    def dosing(self) -> None:
        """A dosed state in the amount unit; lag and duration [time], bioavailability [1],
        rate [amount/time]."""
        T, A = self.T, self.A
        for s, r in self.spec.dosing.items():
            key = f"dosing.{s}"
            su = self.names[s]
            if su is not None and A is not None and su.unit != A:
                self.expect(su, A, f"states.{s}.unit", f"the dosed state '{s}'")
            wants = {
                "lag": T,
                "bioavailability": registry().dimensionless,
                "rate": None if A is None else A / T,
                "duration": T,
            }
            for field, want in wants.items():
                e = getattr(r, field)  # rate and duration may be absent
                if e is not None:
                    self.expect(self.infer(e, f"{key}.{field}"), want, f"{key}.{field}", field)


def _hint(found: Any, want: Any, time_unit: str) -> str:
    if found.dimensionality == want.dimensionality:
        f = _factor(found, want)
        timed = "[time]" in str(want.dimensionality)
        return (
            f" (the same dimension, but 1 {format_unit(found)} = {f:.6g} {format_unit(want)}; "
            "units are not converted"
            + (f": give rates and times in the model's time unit, {time_unit})" if timed else ")")
        )
    return ""
