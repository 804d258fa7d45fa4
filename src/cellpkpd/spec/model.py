"""Model specification: TOML model files (or Python dicts) parsed into a frozen `ModelSpec`.

A model file has the blocks ``[model]``, ``[parameters]``, ``[covariates]``, ``[states]``,
``[flows]``, ``[odes]``, ``[derived]``, ``[observations]`` and ``[dosing]`` (see the model-file
guide in the README). Everything is validated while reading: errors are one line naming the
file and key, the value, and what was expected.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import math
import pickle
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from .._core.errors import SpecError
from .._core.io import read_text
from .._core.memo import without_memos
from .._core.programs import cached_object
from .expr import CONSTANTS, FUNCTIONS, Expr, parse_expr, state_degree
from .units import check_units

__all__ = [
    "PRIORS",
    "Covariate",
    "Description",
    "DosingRule",
    "Flow",
    "ModelSpec",
    "Observation",
    "OutsideBounds",
    "Parameter",
    "State",
    "describe",
    "list_models",
    "load_model",
    "models_dir",
    "output_unit",
    "outside_bounds",
    "parameter_table",
    "parse_prior",
]

BLOCKS = (
    "model",
    "parameters",
    "physiology",
    "covariates",
    "states",
    "flows",
    "odes",
    "derived",
    "observations",
    "dosing",
    "routes",
)
ERROR_MODELS = ("additive", "proportional", "combined", "lognormal", "none")
# prior family -> number of arguments
PRIORS: dict[str, int] = {
    "normal": 2,
    "lognormal": 2,
    "halfnormal": 1,
    "halfcauchy": 1,
    "cauchy": 2,
    "studentt": 3,
    "uniform": 2,
    "exponential": 1,
    "gamma": 2,
    "beta": 2,
    "truncnormal": 4,
}
#: family -> (indices of arguments that must be > 0, (low, high) indices that must be ordered)
_PRIOR_POSITIVE: dict[str, tuple[tuple[int, ...], tuple[int, int] | None]] = {
    "normal": ((1,), None),
    "lognormal": ((1,), None),
    "halfnormal": ((0,), None),
    "halfcauchy": ((0,), None),
    "cauchy": ((1,), None),
    "studentt": ((0, 2), None),
    "uniform": ((), (0, 1)),
    "exponential": ((0,), None),
    "gamma": ((0, 1), None),
    "beta": ((0, 1), None),
    "truncnormal": ((1,), (2, 3)),
}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = {"t"} | set(FUNCTIONS) | set(CONSTANTS)
#: Time units a model file may declare (lower case), in days: metrics convert with them.
DAYS_PER_TIME_UNIT = {
    "s": 1 / 86400,
    "sec": 1 / 86400,
    "second": 1 / 86400,
    "seconds": 1 / 86400,
    "min": 1 / 1440,
    "minute": 1 / 1440,
    "minutes": 1 / 1440,
    "h": 1 / 24,
    "hr": 1 / 24,
    "hour": 1 / 24,
    "hours": 1 / 24,
    "d": 1.0,
    "day": 1.0,
    "days": 1.0,
    "week": 7.0,
    "weeks": 7.0,
    "wk": 7.0,
}

#: ``dosed_<state>`` in a flow, ode, derived quantity or observation: the subject's total
#: amount dosed into that state (AMT of its dose events, ADDL copies included, before
#: bioavailability; an SS dose counts once), e.g. the denominator of a fraction of the dose.
DOSED_PREFIX = "dosed_"
#: the amount of the dose record, readable by [dosing] fields and [routes] fractions (as
#: NONMEM's $PK reads the AMT data item): a route's fraction may depend on the dose size
AMT = "AMT"


@dataclass(frozen=True)
class Parameter:
    """A model parameter: typical value [unit], bounds, optional prior (numpyro family
    and arguments as text, e.g. ``"lognormal(log(10), 0.5)"``), description and source."""

    name: str
    value: float
    unit: str = ""
    bounds: tuple[float, float] = (-math.inf, math.inf)
    prior: str | None = None
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class Covariate:
    """A host or product attribute with its default value [unit] and the closed range
    ``bounds`` [unit] its values must lie in (checked on the values of `cp.simulate`, data
    sets, fits and `cp.VirtualPopulation` draws; default unbounded)."""

    name: str
    value: float
    unit: str = ""
    description: str = ""
    bounds: tuple[float, float] = (-math.inf, math.inf)


@dataclass(frozen=True)
class State:
    """A compartment or state variable; `initial` is an expression of parameters and
    covariates (amount at the start of the simulation, in `unit`)."""

    name: str
    initial: Expr
    unit: str = ""
    description: str = ""


@dataclass(frozen=True)
class Flow:
    """First-order transfer: flux = rate * amount(source) [amount/time] from `source` to
    `target` (None = loss). `rate` is an expression in 1/time."""

    source: str
    target: str | None
    rate: Expr

    @property
    def key(self) -> str:
        return f"{self.source} -> {self.target or ''}".rstrip()


@dataclass(frozen=True)
class Observation:
    """A measurable output: expression, unit and default residual error model."""

    name: str
    expr: Expr
    unit: str = ""
    error: str = "additive"
    description: str = ""


@dataclass(frozen=True)
class DosingRule:
    """Per-state dosing expressions, as NONMEM's ALAGn/Fn/Rn/Dn: lag [time],
    bioavailability [1], rate [amount/time] used when RATE = -1, duration [time] when
    RATE = -2."""

    state: str
    lag: Expr
    bioavailability: Expr
    rate: Expr | None = None
    duration: Expr | None = None


def _ro(d: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(d))


def _canonical(obj: Any) -> str:
    """A text that is equal for equal models in any process (sets in sorted order, mappings in
    their order, expressions with their parsed trees); TypeError for a kind of value it does
    not know."""
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return repr(obj)
    if isinstance(obj, np.generic):
        return repr(obj.item())
    if isinstance(obj, ast.AST):
        return ast.dump(obj)
    if isinstance(obj, (set, frozenset)):
        return "{" + ",".join(sorted(_canonical(x) for x in obj)) + "}"
    if isinstance(obj, Mapping):
        return "{" + ",".join(f"{_canonical(k)}:{_canonical(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(_canonical(x) for x in obj) + "]"
    if isinstance(obj, np.ndarray):
        return f"array({obj.dtype.str},{obj.shape},{obj.tobytes().hex()})"
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = dataclasses.fields(obj)
        inner = ",".join(f"{f.name}={_canonical(getattr(obj, f.name))}" for f in fields)
        return f"{type(obj).__qualname__}({inner})"
    raise TypeError(f"no canonical text for {type(obj).__name__}")


class _Frozen(dict):  # type: ignore[type-arg]
    """A read-only mapping of a `ModelSpec` in its pickled state (see `ModelSpec.__getstate__`)."""


def _thawed(v: Any) -> Any:
    if isinstance(v, MappingProxyType):
        return _Frozen({k: _thawed(x) for k, x in v.items()})
    return v


def _refrozen(v: Any) -> Any:
    if isinstance(v, _Frozen):
        return MappingProxyType({k: _refrozen(x) for k, x in v.items()})
    return v


@dataclass(frozen=True)
class ModelSpec:
    """A validated model: the parsed content of a model file.

    Build with `load_model`, `ModelSpec.from_toml` or `ModelSpec.from_dict` (same blocks
    as the file, as nested dicts). Immutable; derive variants with `with_values`.

    Attributes
    ----------
    states, parameters, covariates, observations, derived, odes, dosing : mappings
        Name -> object, in file order (`derived` in evaluation order).
    derived_units : mapping
        Derived name -> its declared unit (``[derived] x = { expr = ..., unit = ... }``);
        only those that declare one.
    flows : tuple of Flow
    is_linear : bool
        All flows constant in the states and time, all odes affine in the states:
        solved exactly by the matrix exponential.
    """

    name: str
    description: str
    time_unit: str
    amount_unit: str
    references: tuple[str, ...]
    parameters: Mapping[str, Parameter]
    covariates: Mapping[str, Covariate]
    states: Mapping[str, State]
    flows: tuple[Flow, ...]
    odes: Mapping[str, Expr]
    derived: Mapping[str, Expr]
    observations: Mapping[str, Observation]
    dosing: Mapping[str, DosingRule]
    stiff: bool = False
    source: str = "<python>"
    species: str | None = None
    physiology: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    breakpoints: Mapping[str, Expr] = field(default_factory=lambda: MappingProxyType({}))
    derived_units: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: ``[routes]``: route name -> (state -> fraction of a route dose's amount entering it)
    routes: Mapping[str, Mapping[str, Expr]] = field(default_factory=lambda: MappingProxyType({}))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_toml(cls, path: str | Path, species: str | None = None) -> ModelSpec:
        """Read and validate a TOML model file (`species` fills its ``[physiology]``)."""
        path = Path(path)
        text = read_text(path, str(path), SpecError, "model file")
        key = (str(path), text, species)

        def build() -> ModelSpec:
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise SpecError(f"{path}: not valid TOML: {exc}") from None
            spec = cls.from_dict(data, source=str(path), species=species)
            # what this spec was built from: its fingerprint (the key of programs traced
            # from it) without hashing the whole object
            object.__setattr__(spec, "_origin", hashlib.sha256(repr(key).encode()).hexdigest())
            return spec

        # with the compilation cache on, a pickle of the parsed model (no parsing and no
        # unit registry in a second process; cellpkpd._core.programs)
        return cached_object("specs", key, build)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], source: str = "<python>", species: str | None = None
    ) -> ModelSpec:
        """Validate a model given as nested dicts with the blocks of a model file.

        `species` (e.g. ``"mouse"``) fills the ``[physiology]`` block from
        `cellpkpd.spec.physiology`; default: ``[model] species``."""
        return _build(data, source, species)

    # ------------------------------------------------------------------ derived facts
    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(self.states)

    @property
    def dosed_names(self) -> tuple[str, ...]:
        """The ``dosed_<state>`` names the model's expressions use: each subject's total
        amount dosed into that state (see `DOSED_PREFIX`)."""
        exprs = [
            *self.derived.values(),
            *(f.rate for f in self.flows),
            *self.odes.values(),
            *(o.expr for o in self.observations.values()),
        ]
        used = set().union(*(e.names for e in exprs)) if exprs else set()
        return tuple(f"{DOSED_PREFIX}{s}" for s in self.states if f"{DOSED_PREFIX}{s}" in used)

    @property
    def dose_time_derived(self) -> frozenset[str]:
        """The [derived] names that read the dose amount `AMT` (directly or through other
        derived names): known only in [dosing] and [routes], where the parser inlines them,
        so they are not outputs."""
        return _reads_amt(self.derived)

    @property
    def is_linear(self) -> bool:
        states = set(self.states)
        for f in self.flows:
            if state_degree(f.rate.tree, states, self.derived) != 0:
                return False
        for e in self.odes.values():
            if state_degree(e.tree, states, self.derived) is None:
                return False
        return True

    def defaults(self) -> dict[str, float]:
        """Typical values of all parameters and default values of all covariates."""
        out = {k: p.value for k, p in self.parameters.items()}
        out.update({k: c.value for k, c in self.covariates.items()})
        return out

    def with_values(self, **values: float) -> ModelSpec:
        """A copy with new typical values of parameters or default covariate values."""
        params = dict(self.parameters)
        covs = dict(self.covariates)
        ctx = _Ctx(f"{self.source}: with_values")
        for k, v in values.items():
            table: dict[str, Any] | None = params if k in params else covs if k in covs else None
            if table is None:
                raise SpecError(
                    f"{self.source}: with_values: unknown name '{k}'; known: "
                    + ", ".join([*params, *covs])
                )
            value = _number(v, k, ctx)
            kind = "parameter" if table is params else "covariate"
            bad = outside_bounds(self, k, value, kinds=(kind,))
            if bad is not None:
                raise ctx.err(k, f"{value} lies outside bounds [{bad.lo}, {bad.hi}]")
            table[k] = _replace(table[k], value=value)
        return _replace(self, parameters=_ro(params), covariates=_ro(covs))

    def summary(self) -> str:
        """A few lines describing the model (for printing)."""
        kind = "linear (exact solution)" if self.is_linear else "nonlinear (ODE solver)"
        lines = [
            f"{self.name}: {self.description}",
            f"  {kind}; time in {self.time_unit}, amounts in {self.amount_unit}",
            f"  states: {', '.join(self.states)}",
            f"  parameters: {', '.join(self.parameters)}",
        ]
        if self.covariates:
            lines.append(f"  covariates: {', '.join(self.covariates)}")
        if self.observations:
            lines.append(f"  observations: {', '.join(self.observations)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ModelSpec(name={self.name!r}, states={list(self.states)}, source={self.source!r})"

    def __getstate__(self) -> dict[str, Any]:
        # objects built from this spec and cached on it (cellpkpd._core.memo: the engine's
        # simulators) stay with it: a copy or a pickle (a sweep plan sent to Dask workers)
        # starts without them; read-only mappings travel as `_Frozen` dicts (the standard
        # pickle cannot write a mappingproxy)
        return {k: _thawed(v) for k, v in without_memos(self.__dict__).items()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({k: _refrozen(v) for k, v in state.items()})

    @property
    def fingerprint(self) -> str:
        """A hash of everything this model is (SHA-256, hex): equal fingerprints, equal
        models. For a model read from a file, of the file's path and text and the species;
        otherwise of the pickled object. Keys the programs traced from it that are kept on
        disk (`cellpkpd._core.programs`)."""
        origin = self.__dict__.get("_origin")
        if origin is None:
            try:
                text = _canonical(self)
            except TypeError:  # a value of a kind _canonical does not know: hash the pickle
                text = pickle.dumps(self, protocol=5).hex()
            origin = hashlib.sha256(text.encode()).hexdigest()
        return origin

    def _repr_markdown_(self) -> str:
        """Jupyter's display of a model: `describe` (states, flows, parameters with units
        and sources, as tables)."""
        return describe(self)._repr_markdown_()


def output_unit(spec: ModelSpec, name: str) -> str:
    """Unit of an output of `spec`: a state (its unit, else the model's amount unit), an
    observation or a derived quantity (its declared unit); "" for one without a unit.

    The one rule for result variables (`cp.simulate`'s ``unit`` attributes), metrics and
    plots."""
    if name in spec.states:
        return spec.states[name].unit or spec.amount_unit
    if name in spec.observations:
        return spec.observations[name].unit
    return spec.derived_units.get(name, "")


def _replace(obj: Any, **kw: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **kw)


@dataclass(frozen=True)
class OutsideBounds:
    """Values of a parameter or covariate that lie outside its closed bounds."""

    kind: str  # "parameter" or "covariate"
    lo: float
    hi: float
    index: np.ndarray  # positions (in the flattened values) of the values outside, in order
    values: np.ndarray  # the values checked, flattened

    @property
    def first(self) -> int:
        """Position of the first value outside."""
        return int(self.index[0])

    @property
    def value(self) -> float:
        """The first value outside."""
        return float(self.values[self.first])


def outside_bounds(
    spec: ModelSpec,
    name: str,
    values: Any,
    kinds: Sequence[str] = ("parameter", "covariate"),
) -> OutsideBounds | None:
    """The values of input `name` of `spec` (a parameter or covariate, as `kinds` allow)
    outside its ``bounds`` (closed); None when all lie within them or `name` has none.

    NaN is not outside (a missing value is checked where it is read). The callers word
    the error: `cp.simulate`'s inputs, `ModelSpec.with_values`, `check_data_bounds` (data
    rows), `cp.sweep` and `cp.VirtualPopulation`.
    """
    item = None
    for kind in kinds:
        item = (spec.parameters if kind == "parameter" else spec.covariates).get(name)
        if item is not None:
            break
    if item is None:
        return None
    lo, hi = item.bounds
    x = np.asarray(values, dtype=float).reshape(-1)
    index = np.flatnonzero((x < lo) | (x > hi))
    return OutsideBounds(kind, lo, hi, index, x) if index.size else None


# ---------------------------------------------------------------------- validation
class _Ctx:
    """Where a model comes from, for one-line errors that name the file and the key."""

    def __init__(self, source: str):
        self.source = source

    def err(self, key: str, msg: str) -> SpecError:
        return SpecError(f"{self.source}: {key}: {msg}")

    def expr(self, value: Any, key: str) -> Expr:
        """The expression `value` of `key` (parsed, names not yet checked)."""
        return parse_expr(value, f"{self.source}: {key}")


def _table(data: Mapping[str, Any], block: str, ctx: _Ctx, required: bool = False) -> dict:
    if block not in data:
        if required:
            raise SpecError(f"{ctx.source}: missing block [{block}]")
        return {}
    value = data[block]
    if not isinstance(value, Mapping):
        raise ctx.err(f"[{block}]", f"expected a table, got {type(value).__name__}")
    return dict(value)


def _str(value: Any, key: str, ctx: _Ctx, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise ctx.err(key, f"expected a string, got {type(value).__name__} {value!r}")
    return value


def _field(d: Mapping[str, Any], field: str, key: str, ctx: _Ctx) -> str:
    """The text field `field` of the entry `key` ("" when absent)."""
    return _str(d.get(field), f"{key}.{field}", ctx)


def _value(d: Mapping[str, Any], key: str, ctx: _Ctx, missing: str) -> float:
    """The required number ``d["value"]`` of the entry `key`."""
    if "value" not in d:
        raise ctx.err(key, missing)
    return _number(d["value"], f"{key}.value", ctx)


def _number(value: Any, key: str, ctx: _Ctx, finite: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ctx.err(key, f"expected a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if finite and not math.isfinite(v):
        raise ctx.err(key, f"expected a finite number, got {v!r}")
    return v


def _name(name: str, key: str, ctx: _Ctx) -> str:
    if not _IDENT.match(name):
        raise ctx.err(key, f"'{name}' is not a valid name (letters, digits and _, not first digit)")
    if name in _RESERVED:
        raise ctx.err(key, f"'{name}' is reserved (time 't', a function or a constant)")
    if name.startswith(DOSED_PREFIX):
        raise ctx.err(
            key, f"'{name}' is reserved ('{DOSED_PREFIX}<state>' is the total dosed into a state)"
        )
    return name


def _entries(
    table: Mapping[str, Any], block: str, ctx: _Ctx, taken: Set[str] = frozenset(), clash: str = ""
) -> Iterator[tuple[str, Any, str]]:
    """(name, raw value, key) of each entry of `table` (the block `block`), its name checked:
    a valid name, not one of `taken` (a clash is "'<name>' is already <clash>")."""
    for name, raw in table.items():
        key = f"{block}.{name}"
        _name(name, key, ctx)
        if name in taken:
            raise ctx.err(key, f"'{name}' is already {clash}")
        yield name, raw, key


def _bounds(
    d: Mapping[str, Any], value: float, key: str, ctx: _Ctx, strict: bool
) -> tuple[float, float]:
    """``d["bounds"]`` (default unbounded) as (lower, upper): two numbers (``inf`` allowed),
    lower < upper (`strict`, parameters) or lower <= upper (covariates), `value` inside."""
    bounds = d.get("bounds", [-math.inf, math.inf])
    if (
        not isinstance(bounds, (list, tuple))
        or len(bounds) != 2
        or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
    ):
        raise ctx.err(f"{key}.bounds", f"expected [lower, upper] numbers, got {bounds!r}")
    lo, hi = float(bounds[0]), float(bounds[1])
    if not (lo < hi if strict else lo <= hi):
        raise ctx.err(f"{key}.bounds", f"lower {lo} must be {'<' if strict else '<='} upper {hi}")
    if not lo <= value <= hi:
        raise ctx.err(f"{key}.value", f"{value} lies outside bounds [{lo}, {hi}]")
    return lo, hi


def _entry(value: Any, key: str, ctx: _Ctx, main: str, allowed: set[str]) -> dict[str, Any]:
    """A block entry may be a bare value (taken as `main`) or an inline table."""
    if isinstance(value, Mapping):
        unknown = set(value) - allowed
        if unknown:
            raise ctx.err(
                key,
                f"unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}",
            )
        return dict(value)
    return {main: value}


def parse_prior(text: str, where: str) -> tuple[str, tuple[float, ...]]:
    """Parse a prior such as ``"lognormal(log(2), 0.5)"`` into (family, arguments).

    Arguments are constant expressions (numbers, ``log``, ``exp``, ...). Families and their
    argument counts are in `PRIORS`; their meaning is numpyro's.
    """
    if not isinstance(text, str):
        raise SpecError(f"{where}: prior must be a string like 'lognormal(log(2), 0.5)'")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise SpecError(f"{where}: cannot parse prior {text!r}") from None
    if not isinstance(tree, ast.Call) or not isinstance(tree.func, ast.Name):
        raise SpecError(f"{where}: prior {text!r} must be a call like 'normal(0, 1)'")
    family = tree.func.id.lower()
    if family not in PRIORS:
        raise SpecError(
            f"{where}: unknown prior family '{tree.func.id}'; known: {', '.join(PRIORS)}"
        )
    if len(tree.args) != PRIORS[family] or tree.keywords:
        raise SpecError(
            f"{where}: prior {family} takes {PRIORS[family]} positional arguments, "
            f"got {len(tree.args)} in {text!r}"
        )
    args = []
    for a in tree.args:
        e = parse_expr(ast.unparse(a), where)
        if e.names:
            raise SpecError(f"{where}: prior arguments must be constants, got {e.source!r}")
        value = float(e({}))
        if not math.isfinite(value):
            raise SpecError(f"{where}: prior argument {e.source!r} is not finite")
        args.append(value)
    positive, ordered = _PRIOR_POSITIVE[family]
    for i in positive:
        if not args[i] > 0:
            raise SpecError(
                f"{where}: argument {i + 1} of {family} in {text!r} is {args[i]:g}; expected > 0"
            )
    if ordered is not None and not args[ordered[0]] < args[ordered[1]]:
        lo, hi = args[ordered[0]], args[ordered[1]]
        raise SpecError(
            f"{where}: {family} in {text!r} has lower bound {lo:g} >= upper bound {hi:g}"
        )
    return family, tuple(args)


_MODEL_FIELDS = frozenset(
    {
        "name",
        "description",
        "time_unit",
        "amount_unit",
        "references",
        "stiff",
        "version",
        "notes",
        "species",
        "breakpoints",
    }
)


def _build(data: Mapping[str, Any], source: str, species: str | None = None) -> ModelSpec:
    """Parse and check the blocks of a model file, one function per block, each after the
    blocks whose names it may use (the first error found is raised)."""
    ctx = _Ctx(source)
    _check_blocks(data, source)
    m, header = _parse_model(data, ctx, species)
    params = _parse_parameters(data, ctx)
    physio, physio_params = _parse_physiology(data, ctx, header.species, params)
    params.update(physio_params)
    covs = _parse_covariates(data, ctx, params)
    states = _parse_states(data, ctx, {*params, *covs})
    derived, derived_units = _parse_derived(data, ctx, {*params, *covs, *states})
    breakpoints = _parse_breakpoints(m, ctx, {*params, *covs, *states, *derived})
    scope = _Scope(ctx, params, covs, states, derived, breakpoints)
    # initial values and breakpoint times: static expressions (static derived names inlined)
    breakpoints = {b: scope.static(e, f"model.breakpoints.{b}") for b, e in breakpoints.items()}
    states = {
        s: _replace(st, initial=scope.static(st.initial, f"states.{s}.initial"))
        for s, st in states.items()
    }
    taken = {*states, *params, *covs, *derived}  # what an observation or a route may not be
    flows = _parse_flows(data, ctx, states, scope)
    odes = _parse_odes(data, ctx, states, scope)
    observations = _parse_observations(data, ctx, taken, scope)
    dosing = _parse_dosing(data, ctx, states, scope)
    routes = _parse_routes(data, ctx, states, taken, scope)
    time_unit, amount_unit = _parse_model_units(m, ctx)
    spec = ModelSpec(
        name=header.name,
        description=_str(m.get("description"), "model.description", ctx),
        time_unit=time_unit,
        amount_unit=amount_unit,
        references=header.references,
        parameters=_ro(params),
        covariates=_ro(covs),
        states=_ro(states),
        flows=tuple(flows),
        odes=_ro(odes),
        derived=_ro(derived),
        observations=_ro(observations),
        dosing=_ro(dosing),
        stiff=header.stiff,
        source=source,
        extra=_ro(header.extra),
        species=header.species if physio or header.species is not None else None,
        physiology=_ro(physio),
        breakpoints=_ro(breakpoints),
        derived_units=_ro({k: u for k, u in derived_units.items() if u}),
        routes=_ro(routes),
    )
    check_units(spec, spec.derived_units)
    return spec


def _check_blocks(data: Any, source: str) -> None:
    """A table whose keys are known block names."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: expected a table of blocks, got {type(data).__name__}")
    unknown = [k for k in data if k not in BLOCKS]
    if unknown:
        raise SpecError(
            f"{source}: unknown block [{unknown[0]}]; expected blocks: {', '.join(BLOCKS)}"
        )


@dataclass(frozen=True)
class _Header:
    """The facts of ``[model]`` that the other blocks and the spec need."""

    name: str
    references: tuple[str, ...]
    stiff: bool
    extra: dict[str, Any]
    species: str | None


def _parse_model(
    data: Mapping[str, Any], ctx: _Ctx, species: str | None
) -> tuple[dict[str, Any], _Header]:
    """``[model]``: its fields (units and breakpoints are parsed later, by
    `_parse_model_units` and `_parse_breakpoints`) and the species that fills
    ``[physiology]`` (`species`, else ``[model] species``)."""
    m = _table(data, "model", ctx, required=True)
    bad = set(m) - _MODEL_FIELDS
    if bad:
        raise ctx.err("model", f"unknown field(s) {sorted(bad)}; allowed: {sorted(_MODEL_FIELDS)}")
    if "name" not in m:
        raise ctx.err("model.name", "missing (every model needs a name)")
    name = _str(m["name"], "model.name", ctx)
    refs = m.get("references", [])
    if isinstance(refs, str):
        refs = [refs]
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise ctx.err("model.references", "expected a list of strings")
    stiff = m.get("stiff", False)
    if not isinstance(stiff, bool):
        raise ctx.err("model.stiff", f"expected true or false, got {stiff!r}")
    extra = {k: m[k] for k in ("version", "notes") if k in m}
    if species is not None and "physiology" not in data:
        raise ctx.err(
            "species",
            f"species = {species!r} was given, but the model has no [physiology] block (none "
            "of its values come from a species table)",
        )
    species = species if species is not None else m.get("species")
    if species is not None and not isinstance(species, str):
        raise ctx.err("model.species", f"expected a species name, got {species!r}")
    return m, _Header(name, tuple(refs), stiff, extra, species)


def _parse_model_units(m: Mapping[str, Any], ctx: _Ctx) -> tuple[str, str]:
    """``[model] time_unit`` (one of `DAYS_PER_TIME_UNIT`) and ``amount_unit``, both
    required."""
    for ukey in ("time_unit", "amount_unit"):
        if ukey not in m:
            raise ctx.err(
                f"model.{ukey}",
                "missing; every model declares its "
                + (
                    'time unit (e.g. time_unit = "h")'
                    if ukey == "time_unit"
                    else 'amount unit (e.g. amount_unit = "mg" or "cells")'
                ),
            )
    time_unit = _str(m.get("time_unit"), "model.time_unit", ctx)
    if time_unit.strip().lower() not in DAYS_PER_TIME_UNIT:
        raise ctx.err(
            "model.time_unit",
            f"unknown time unit {time_unit!r}; expected one of: " + ", ".join(DAYS_PER_TIME_UNIT),
        )
    return time_unit, _str(m.get("amount_unit"), "model.amount_unit", ctx)


def _parse_parameters(data: Mapping[str, Any], ctx: _Ctx) -> dict[str, Parameter]:
    """``[parameters]``: value (required), unit, bounds, prior, description, source."""
    params: dict[str, Parameter] = {}
    fields = {"value", "unit", "bounds", "prior", "description", "source"}
    for pname, raw, key in _entries(_table(data, "parameters", ctx), "parameters", ctx):
        d = _entry(raw, key, ctx, "value", fields)
        value = _value(d, key, ctx, "missing 'value'")
        lo, hi = _bounds(d, value, key, ctx, strict=True)
        prior = d.get("prior")
        if prior is not None:
            parse_prior(prior, f"{ctx.source}: {key}.prior")
        unit, description, source = (
            _field(d, f, key, ctx) for f in ("unit", "description", "source")
        )
        params[pname] = Parameter(pname, value, unit, (lo, hi), prior, description, source)
    return params


def _parse_physiology(
    data: Mapping[str, Any], ctx: _Ctx, species: str | None, params: Mapping[str, Parameter]
) -> tuple[dict[str, str], dict[str, Parameter]]:
    """``[physiology]``: parameter name -> physiological quantity of the species' table
    (`cellpkpd.spec.physiology`); returns the block and the parameters it fills."""
    physio = _table(data, "physiology", ctx)
    if physio and species is None:
        raise ctx.err(
            "[physiology]",
            "this model takes physiological values from a species table: give "
            "species= (e.g. load_model(..., species='mouse')) or [model] species",
        )
    if physio:
        from .physiology import lookup

    filled: dict[str, Parameter] = {}
    for pname, quantity in physio.items():
        key = f"physiology.{pname}"
        _name(pname, key, ctx)
        if pname in params:
            raise ctx.err(key, f"'{pname}' is also in [parameters]")
        if not isinstance(quantity, str):
            raise ctx.err(key, f"expected the name of a physiological quantity, got {quantity!r}")
        value, unit, ref = lookup(species, quantity, where=f"{ctx.source}: {key}")
        description = f"{quantity} of the {species} (physiology table)"
        filled[pname] = Parameter(pname, value, unit, (0.0, math.inf), None, description, ref)
    return physio, filled


def _parse_covariates(
    data: Mapping[str, Any], ctx: _Ctx, params: Mapping[str, Parameter]
) -> dict[str, Covariate]:
    """``[covariates]``: default value (required), unit, description, bounds."""
    covs: dict[str, Covariate] = {}
    table = _table(data, "covariates", ctx)
    for cname, raw, key in _entries(table, "covariates", ctx, set(params), "a parameter"):
        d = _entry(raw, key, ctx, "value", {"value", "unit", "description", "bounds"})
        value = _value(d, key, ctx, "missing 'value' (the default)")
        unit, description = _field(d, "unit", key, ctx), _field(d, "description", key, ctx)
        bounds = _bounds(d, value, key, ctx, strict=False)
        covs[cname] = Covariate(cname, value, unit, description, bounds)
    return covs


def _parse_states(data: Mapping[str, Any], ctx: _Ctx, taken: set[str]) -> dict[str, State]:
    """``[states]`` (at least one): initial value (an expression, checked once the names
    are known), unit, description."""
    raw_states = _table(data, "states", ctx, required=True)
    if not raw_states:
        raise ctx.err("[states]", "at least one state is needed")
    states: dict[str, State] = {}
    for sname, raw, key in _entries(raw_states, "states", ctx, taken, "a parameter or covariate"):
        d = _entry(raw, key, ctx, "initial", {"initial", "unit", "description"})
        initial = ctx.expr(d.get("initial", 0.0), f"{key}.initial")
        unit, description = _field(d, "unit", key, ctx), _field(d, "description", key, ctx)
        states[sname] = State(sname, initial, unit, description)
    return states


def _parse_derived(
    data: Mapping[str, Any], ctx: _Ctx, taken: set[str]
) -> tuple[dict[str, Expr], dict[str, str]]:
    """``[derived]``: name -> expression (or ``{ expr, unit }``), in evaluation order, and
    the declared units."""
    exprs: dict[str, Expr] = {}
    units: dict[str, str] = {}
    table = _table(data, "derived", ctx)
    for dname, raw, key in _entries(
        table, "derived", ctx, taken, "a parameter, covariate or state"
    ):
        d = _entry(raw, key, ctx, "expr", {"expr", "unit"})
        if "expr" not in d:
            raise ctx.err(key, "missing 'expr'")
        exprs[dname] = ctx.expr(d["expr"], key)
        units[dname] = _field(d, "unit", key, ctx)
    return _toposort(exprs, ctx), units


def _parse_breakpoints(m: Mapping[str, Any], ctx: _Ctx, taken: set[str]) -> dict[str, Expr]:
    """``[model] breakpoints``: name -> time (an expression of parameters and covariates); in
    expressions the name is 0 before that time and 1 from it on (constant per segment)."""
    raw_bp = m.get("breakpoints", {})
    if not isinstance(raw_bp, Mapping):
        raise ctx.err("model.breakpoints", 'expected a table like { peak = "Tmax" }')
    breakpoints: dict[str, Expr] = {}
    clash = "a parameter, covariate, state or derived"
    for bname, raw, key in _entries(raw_bp, "model.breakpoints", ctx, taken, clash):
        breakpoints[bname] = ctx.expr(raw, key)
    return breakpoints


class _Scope:
    """The names each kind of expression may read, checked with one-line errors.

    - `known`: flows, odes and observations: parameters, covariates, states, derived names
      (but not those that read AMT), breakpoints, ``t`` and ``dosed_<state>``;
    - `static`: initial values and breakpoint times: parameters, covariates and the derived
      names built from these alone (inlined);
    - `dose`: [dosing] fields and route fractions: the static names, the dose record's
      amount `AMT` and the derived names built from these (inlined).
    """

    def __init__(self, ctx: _Ctx, params: Mapping[str, Any], covs: Mapping[str, Any],
                 states: Mapping[str, State], derived: Mapping[str, Expr],
                 breakpoints: Mapping[str, Expr]):  # fmt: skip
        self.ctx = ctx
        blocks = (("parameters", params), ("covariates", covs), ("states", states),
                  ("derived", derived), ("model.breakpoints", breakpoints))  # fmt: skip
        for where, names in blocks:
            if AMT in names:
                raise ctx.err(f"{where}.{AMT}", f"'{AMT}' is reserved: the amount of the dose "
                              "record, read by [dosing] and [routes] expressions")  # fmt: skip
        self.dosed = {f"{DOSED_PREFIX}{s}" for s in states}
        # derived names that read AMT (directly or through another): known only where a
        # dose is given ([dosing] fields and route fractions), inlined there
        self.dose_time = _reads_amt(derived)
        everything = {*params, *covs, *states, *derived, *breakpoints, "t", *self.dosed}
        self.known = everything - self.dose_time
        for dname, e in derived.items():
            self.check(e, f"derived.{dname}", self.known | self.dose_time | {AMT})
        self.static_names, self.static_defs = _inlined(derived, {*params, *covs}, {})
        self.dose_names, self.dose_defs = _inlined(
            {k: e for k, e in derived.items() if k in self.dose_time},
            self.static_names | {AMT},
            self.static_defs,
        )

    def check(self, e: Expr, key: str, allowed: set[str] | None = None) -> Expr:
        """`e`, whose names must all be in `allowed` (default `known`)."""
        allowed = self.known if allowed is None else allowed
        missing = sorted(e.names - allowed)
        dose_only = [x for x in missing if x == AMT or x in self.dose_time]
        if dose_only:
            raise self.ctx.err(
                key,
                f"{dose_only[0]!r} in {e.source!r} "
                + ("is" if dose_only[0] == AMT else f"reads {AMT},")
                + " the amount of a dose record: only [dosing] fields and [routes] fractions "
                "may read it",
            )
        if missing:
            what = "unknown name" if len(missing) == 1 else "unknown names"
            names = sorted(allowed - self.dosed) + (
                [f"{DOSED_PREFIX}<state>"] if allowed & self.dosed else []
            )
            raise self.ctx.err(
                key,
                f"{what} {', '.join(repr(x) for x in missing)} in {e.source!r}; known: "
                + ", ".join(names),
            )
        return e

    def static(self, e: Expr, key: str) -> Expr:
        """An initial value or breakpoint time, static derived names inlined."""
        return self.check(e, key, self.static_names).inline(self.static_defs)

    def dose(self, e: Expr, key: str) -> Expr:
        """A [dosing] field or route fraction, static and dose-time derived names inlined."""
        return self.check(e, key, self.dose_names).inline(self.dose_defs)


def _inlined(
    derived: Mapping[str, Expr], names: set[str], defs: Mapping[str, Expr]
) -> tuple[set[str], dict[str, Expr]]:
    """`names` grown by the derived names (in topological order) built from them alone, and
    `defs` grown by those names' definitions with the earlier ones inlined."""
    names, defs = set(names), dict(defs)
    for dname, e in derived.items():
        if e.names <= names:
            defs[dname] = e.inline(defs)
            names.add(dname)
    return names, defs


def _state_key(sname: str, key: str, ctx: _Ctx, states: Mapping[str, State]) -> None:
    if sname not in states:
        raise ctx.err(key, f"unknown state '{sname}'; states: {', '.join(states)}")


def _parse_flows(
    data: Mapping[str, Any], ctx: _Ctx, states: Mapping[str, State], scope: _Scope
) -> list[Flow]:
    """``[flows]``: ``"source -> target"`` (or ``"source ->"``, a loss) = first-order rate."""
    flows: list[Flow] = []
    for fkey, raw in _table(data, "flows", ctx).items():
        key = f"flows.'{fkey}'"
        if "->" not in fkey:
            raise ctx.err(key, "expected 'source -> target' (or 'source ->' for a loss)")
        src, _, dst = (p.strip() for p in fkey.partition("->"))
        for s in (src, dst):
            if s:
                _state_key(s, key, ctx, states)
        if not src:
            raise ctx.err(key, "a flow needs a source state")
        if src == dst:
            raise ctx.err(key, "a flow from a state to itself")
        rate = scope.check(ctx.expr(raw, key), key)
        if not rate.names and not float(rate({})) >= 0:
            value = f"{float(rate({})):g}"
            shown = rate.source if rate.source == value else f"{rate.source} = {value}"
            raise ctx.err(
                key,
                f"rate {shown}; a flow is first order (flux = rate x amount in the source), so "
                "its rate must be >= 0 (use [odes] for other terms)",
            )
        flows.append(Flow(src, dst or None, rate))
    return flows


def _parse_odes(
    data: Mapping[str, Any], ctx: _Ctx, states: Mapping[str, State], scope: _Scope
) -> dict[str, Expr]:
    """``[odes]``: state -> extra term of its derivative."""
    odes: dict[str, Expr] = {}
    for sname, raw in _table(data, "odes", ctx).items():
        key = f"odes.{sname}"
        _state_key(sname, key, ctx, states)
        odes[sname] = scope.check(ctx.expr(raw, key), key)
    return odes


def _parse_observations(
    data: Mapping[str, Any], ctx: _Ctx, taken: set[str], scope: _Scope
) -> dict[str, Observation]:
    """``[observations]``: expression (required), unit, error model, description."""
    obs: dict[str, Observation] = {}
    table = _table(data, "observations", ctx)
    clash = "a state, parameter, covariate or derived quantity"
    for oname, raw, key in _entries(table, "observations", ctx, taken, clash):
        d = _entry(raw, key, ctx, "expr", {"expr", "unit", "error", "description"})
        if "expr" not in d:
            raise ctx.err(key, "missing 'expr'")
        error = _str(d.get("error"), f"{key}.error", ctx, "additive")
        if error not in ERROR_MODELS:
            raise ctx.err(f"{key}.error", f"'{error}' is not one of {', '.join(ERROR_MODELS)}")
        e = scope.check(ctx.expr(d["expr"], f"{key}.expr"), f"{key}.expr")
        unit, description = _field(d, "unit", key, ctx), _field(d, "description", key, ctx)
        obs[oname] = Observation(oname, e, unit, error, description)
    return obs


def _parse_dosing(
    data: Mapping[str, Any], ctx: _Ctx, states: Mapping[str, State], scope: _Scope
) -> dict[str, DosingRule]:
    """``[dosing]``: per dosed state, lag, bioavailability, rate and duration (expressions
    of the static names and the dose amount AMT)."""
    dosing: dict[str, DosingRule] = {}
    fields = ("lag", "bioavailability", "rate", "duration")
    for sname, raw in _table(data, "dosing", ctx).items():
        key = f"dosing.{sname}"
        _state_key(sname, key, ctx, states)
        if not isinstance(raw, Mapping):
            raise ctx.err(key, 'expected a table like { lag = "0", bioavailability = "1" }')
        d = _entry(raw, key, ctx, "lag", set(fields))
        rule = {f: scope.dose(ctx.expr(d[f], f"{key}.{f}"), f"{key}.{f}") for f in fields if f in d}
        dosing[sname] = DosingRule(
            sname,
            rule.get("lag", parse_expr("0", key)),
            rule.get("bioavailability", parse_expr("1", key)),
            rule.get("rate"),
            rule.get("duration"),
        )
    return dosing


def _parse_routes(
    data: Mapping[str, Any],
    ctx: _Ctx,
    states: Mapping[str, State],
    taken: set[str],
    scope: _Scope,
) -> dict[str, Mapping[str, Expr]]:
    """``[routes]``: how a dose of N (cells) of a product enters several states at once:
    route -> (state -> fraction of N, an expression like those of [dosing])."""
    routes: dict[str, Mapping[str, Expr]] = {}
    for rname, raw in _table(data, "routes", ctx).items():
        key = f"routes.{rname}"
        _name(rname, key, ctx)
        if rname in taken:
            raise ctx.err(key, f"route name '{rname}' is already a state, parameter, "
                          "covariate or derived name; give the route its own name")  # fmt: skip
        if not isinstance(raw, Mapping) or not raw:
            raise ctx.err(
                key, 'expected a table state -> fraction, like { venous = "viability", '
                'dead_blood = "1 - viability" }'
            )  # fmt: skip
        fractions = {}
        for sname, fr in raw.items():
            skey = f"{key}.{sname}"
            _state_key(sname, skey, ctx, states)
            if isinstance(fr, bool) or not isinstance(fr, (str, int, float)):
                raise ctx.err(skey, f"expected a fraction expression (text or number), got {fr!r}")
            fractions[sname] = scope.dose(ctx.expr(str(fr), skey), skey)
        routes[rname] = _ro(fractions)
    return routes


def _reads_amt(derived: Mapping[str, Expr]) -> frozenset[str]:
    """The derived names (in topological order) that read AMT, directly or through another."""
    out: set[str] = set()
    for name, e in derived.items():
        if AMT in e.names or e.names & out:
            out.add(name)
    return frozenset(out)


def _toposort(exprs: dict[str, Expr], ctx: _Ctx) -> dict[str, Expr]:
    """Order derived quantities so each comes after the ones it uses; report cycles."""
    order: dict[str, Expr] = {}
    visiting: list[str] = []

    def visit(n: str) -> None:
        if n in order:
            return
        if n in visiting:
            cycle = [*visiting[visiting.index(n) :], n]
            raise ctx.err("[derived]", "cycle: " + " -> ".join(cycle))
        visiting.append(n)
        for dep in sorted(exprs[n].names & set(exprs)):
            visit(dep)
        visiting.pop()
        order[n] = exprs[n]

    for n in exprs:
        visit(n)
    return order


# ---------------------------------------------------------------------- library
def models_dir() -> Path:
    """Folder of the bundled model library (inside the installed package, or the
    source tree's ``models/`` in a development install)."""
    packaged = resources.files("cellpkpd") / "models"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[3] / "models"


def list_models() -> dict[str, str]:
    """Names of the bundled library models mapped to their one-line descriptions."""
    out = {}
    for path in sorted(models_dir().glob("*.toml")):
        meta = tomllib.loads(read_text(path, str(path), SpecError, "model file")).get("model", {})
        desc = str(meta.get("description", "")).strip()
        out[path.stem] = desc.splitlines()[0] if desc else ""
    return out


def load_model(name_or_path: str | Path, species: str | None = None) -> ModelSpec:
    """Load a library model by name (see `list_models`) or a model file by path.

    Parameters
    ----------
    name_or_path : str or Path
        ``"one_cmt_iv"`` for a bundled model, or a path to a ``.toml`` file.
    species : str, optional
        Species whose physiology table fills the model's ``[physiology]`` block
        (``"mouse"``, ``"rat"``, ``"human"``; see `cellpkpd.spec.physiology`); default: the
        model file's ``[model] species``.

    Raises
    ------
    SpecError
        If the name is unknown (the message lists the library) or the file is invalid.
    """
    if isinstance(name_or_path, ModelSpec):
        if species is not None and species != name_or_path.species:
            raise SpecError(
                f"load_model: {name_or_path.name} is already built for species "
                f"{name_or_path.species!r}; load it from its file with species={species!r}"
            )
        return name_or_path
    if not isinstance(name_or_path, (str, Path)):
        raise SpecError(
            f"load_model: expected a model name or a path, got {type(name_or_path).__name__}"
        )
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists() or "/" in str(name_or_path):
        return ModelSpec.from_toml(p, species)
    candidate = models_dir() / f"{name_or_path}.toml"
    if not candidate.exists():
        raise SpecError(
            f"unknown model '{name_or_path}': not a file, and not in the library ("
            + ", ".join(list_models())
            + ")"
        )
    return ModelSpec.from_toml(candidate, species)


# ---------------------------------------------------------------------- describe
def _md_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    line = lambda cells: (
        "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"
    )
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def _fmt_num(v: float) -> str:
    return f"{v:.6g}"


def describe(spec: ModelSpec | str) -> Description:
    """A readable summary of a model as Markdown: header, states, flows, extra ODE terms,
    derived quantities, observations, dosing, breakpoints, parameters and covariates as
    tables (values with units, bounds, priors and sources).

    Parameters
    ----------
    spec : ModelSpec or str
        A model or a library name / path.

    Returns
    -------
    Description
        Markdown text: a `str` (print it or save it) that Jupyter renders as headings and
        tables when it is a cell's value.
    """
    spec = load_model(spec) if not isinstance(spec, ModelSpec) else spec
    kind = "linear (exact matrix-exponential solution)" if spec.is_linear else "nonlinear (ODE)"
    out = [f"# {spec.name}", "", spec.description, ""]
    out.append(f"- {kind}; time in {spec.time_unit}, amounts in {spec.amount_unit}")
    if spec.species:
        out.append(f"- species: {spec.species}")
    if spec.stiff:
        out.append("- marked stiff: solved with Kvaerno5 by default")
    if spec.references:
        out += ["", "References:", *(f"- {r}" for r in spec.references)]
    for title, header, rows in [*_equation_tables(spec), *_dose_and_value_tables(spec)]:
        out += ["", f"## {title}", "", _md_table(header, rows)]
    return Description("\n".join(out) + "\n")


#: a section of `describe`: title, column names, rows
_Table = tuple[str, list[str], list[list[str]]]


def _equation_tables(spec: ModelSpec) -> list[_Table]:
    """States (always), flows, extra ODE terms, derived quantities and observations (those
    the model has)."""
    tables: list[_Table] = [
        (
            "States",
            ["state", "initial", "unit", "description"],
            [[s.name, s.initial.source, s.unit, s.description] for s in spec.states.values()],
        )
    ]
    if spec.flows:
        rows = [[f.source, f.target or "(loss)", f.rate.source] for f in spec.flows]
        title = "Flows (first-order: flux = rate x amount in source)"
        tables.append((title, ["from", "to", "rate [1/time]"], rows))
    if spec.odes:
        rows = [[k, e.source] for k, e in spec.odes.items()]
        tables.append(("Extra terms of d(state)/dt [amount/time]", ["state", "term"], rows))
    if spec.derived:
        rows = [[k, e.source, spec.derived_units.get(k, "")] for k, e in spec.derived.items()]
        tables.append(("Derived", ["name", "expression", "unit"], rows))
    if spec.observations:
        rows = [
            [o.name, o.expr.source, o.unit, o.error, o.description]
            for o in spec.observations.values()
        ]
        tables.append(
            ("Observations", ["name", "expression", "unit", "error", "description"], rows)
        )
    return tables


def _dose_and_value_tables(spec: ModelSpec) -> list[_Table]:
    """Dosing, routes and breakpoints (those the model has), parameters (always) and
    covariates (if any)."""
    tables: list[_Table] = []
    if spec.dosing:
        rows = [
            [r.state, r.lag.source, r.bioavailability.source,
             r.rate.source if r.rate else "", r.duration.source if r.duration else ""]
            for r in spec.dosing.values()
        ]  # fmt: skip
        tables.append(("Dosing", ["state", "lag", "bioavailability", "rate", "duration"], rows))
    if spec.routes:
        rows = [[r, s, e.source] for r, fr in spec.routes.items() for s, e in fr.items()]
        title = "Routes (a dose of N into a route puts N * fraction into each state)"
        tables.append((title, ["route", "state", "fraction"], rows))
    if spec.breakpoints:
        rows = [[k, e.source] for k, e in spec.breakpoints.items()]
        title = "Breakpoints (the name is 0 before the time, 1 from it on)"
        tables.append((title, ["name", "time"], rows))
    rows = [
        [p.name, _fmt_num(p.value), p.unit, _fmt_bounds(p.bounds), p.prior or "",
         p.description, p.source]
        for p in spec.parameters.values()
    ]  # fmt: skip
    header = ["name", "value", "unit", "bounds", "prior", "description", "source"]
    tables.append(("Parameters", header, rows))
    if spec.covariates:
        rows = [
            [c.name, _fmt_num(c.value), c.unit, _fmt_bounds(c.bounds), c.description]
            for c in spec.covariates.values()
        ]
        header = ["name", "default", "unit", "bounds", "description"]
        tables.append(("Covariates", header, rows))
    return tables


def _fmt_bounds(bounds: tuple[float, float]) -> str:
    return f"[{_fmt_num(bounds[0])}, {_fmt_num(bounds[1])}]"


class Description(str):
    """Markdown text of `describe`: a plain string (print it, write it to a file), which
    Jupyter shows rendered (headings and tables) when it is a cell's value."""

    __slots__ = ()

    def _repr_markdown_(self) -> str:
        """The text with ``<`` written ``&lt;``: Markdown passes ``<name>`` through as an
        HTML tag, which Jupyter's sanitizer then drops (``dna_<organ>`` showed as
        ``dna_``)."""
        return str(self).replace("<", "&lt;")


def parameter_table(spec: ModelSpec | str) -> Any:
    """Parameters as a pandas DataFrame: name, value, unit, lower, upper, prior,
    description, source."""
    import pandas as pd

    spec = load_model(spec) if not isinstance(spec, ModelSpec) else spec
    return pd.DataFrame(
        [
            {
                "name": p.name,
                "value": p.value,
                "unit": p.unit,
                "lower": p.bounds[0],
                "upper": p.bounds[1],
                "prior": p.prior,
                "description": p.description,
                "source": p.source,
            }
            for p in spec.parameters.values()
        ]
    )
