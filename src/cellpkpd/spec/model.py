"""Model specification: TOML model files (or Python dicts) parsed into a frozen `ModelSpec`.

A model file has the blocks ``[model]``, ``[parameters]``, ``[covariates]``, ``[states]``,
``[flows]``, ``[odes]``, ``[derived]``, ``[observations]`` and ``[dosing]`` (see the model-file
guide in the README). Everything is validated while reading: errors are one line naming the
file and key, the value, and what was expected.
"""

from __future__ import annotations

import ast
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .._core.errors import SpecError
from .._core.io import read_text
from .._core.memo import without_memos
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
    "Parameter",
    "State",
    "describe",
    "list_models",
    "load_model",
    "models_dir",
    "output_unit",
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
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(data, source=str(path), species=species)

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
            if k in params:
                value = _number(v, k, ctx)
                lo, hi = params[k].bounds
                if not lo <= value <= hi:
                    raise ctx.err(k, f"{value} lies outside bounds [{lo}, {hi}]")
                params[k] = _replace(params[k], value=value)
            elif k in covs:
                value = _number(v, k, ctx)
                lo, hi = covs[k].bounds
                if not lo <= value <= hi:
                    raise ctx.err(k, f"{value} lies outside bounds [{lo}, {hi}]")
                covs[k] = _replace(covs[k], value=value)
            else:
                raise SpecError(
                    f"{self.source}: with_values: unknown name '{k}'; known: "
                    + ", ".join([*params, *covs])
                )
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
        # starts without them
        return without_memos(self.__dict__)

    def _repr_markdown_(self) -> str:
        """Jupyter's display of a model: `describe` (states, flows, parameters with units
        and sources, as tables)."""
        return str(describe(self))


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


# ---------------------------------------------------------------------- validation
class _Ctx:
    def __init__(self, source: str):
        self.source = source

    def err(self, key: str, msg: str) -> SpecError:
        return SpecError(f"{self.source}: {key}: {msg}")


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


def _build(data: Mapping[str, Any], source: str, species: str | None = None) -> ModelSpec:
    ctx = _Ctx(source)
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: expected a table of blocks, got {type(data).__name__}")
    unknown = [k for k in data if k not in BLOCKS]
    if unknown:
        raise SpecError(
            f"{source}: unknown block [{unknown[0]}]; expected blocks: {', '.join(BLOCKS)}"
        )

    # [model]
    m = _table(data, "model", ctx, required=True)
    allowed_model = {
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
    bad = set(m) - allowed_model
    if bad:
        raise ctx.err("model", f"unknown field(s) {sorted(bad)}; allowed: {sorted(allowed_model)}")
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

    def expr(value: Any, key: str) -> Expr:
        return parse_expr(value, f"{source}: {key}")

    # [parameters]
    params: dict[str, Parameter] = {}
    for pname, raw in _table(data, "parameters", ctx).items():
        key = f"parameters.{pname}"
        _name(pname, key, ctx)
        d = _entry(
            raw, key, ctx, "value", {"value", "unit", "bounds", "prior", "description", "source"}
        )
        if "value" not in d:
            raise ctx.err(key, "missing 'value'")
        value = _number(d["value"], f"{key}.value", ctx)
        lo, hi = _bounds(d, value, key, ctx, strict=True)
        prior = d.get("prior")
        if prior is not None:
            parse_prior(prior, f"{source}: {key}.prior")
        params[pname] = Parameter(
            pname,
            value,
            _str(d.get("unit"), f"{key}.unit", ctx),
            (lo, hi),
            prior,
            _str(d.get("description"), f"{key}.description", ctx),
            _str(d.get("source"), f"{key}.source", ctx),
        )

    # [physiology]: parameters whose values come from the species' physiology table
    physio = _table(data, "physiology", ctx)
    if physio and species is None:
        raise ctx.err(
            "[physiology]",
            "this model takes physiological values from a species table: give "
            "species= (e.g. load_model(..., species='mouse')) or [model] species",
        )
    if physio:
        from .physiology import lookup

    for pname, quantity in physio.items():
        key = f"physiology.{pname}"
        _name(pname, key, ctx)
        if pname in params:
            raise ctx.err(key, f"'{pname}' is also in [parameters]")
        if not isinstance(quantity, str):
            raise ctx.err(key, f"expected the name of a physiological quantity, got {quantity!r}")
        value, unit, ref = lookup(species, quantity, where=f"{source}: {key}")
        params[pname] = Parameter(
            pname,
            value,
            unit,
            (0.0, math.inf),
            None,
            f"{quantity} of the {species} (physiology table)",
            ref,
        )

    # [covariates]
    covs: dict[str, Covariate] = {}
    for cname, raw in _table(data, "covariates", ctx).items():
        key = f"covariates.{cname}"
        _name(cname, key, ctx)
        if cname in params:
            raise ctx.err(key, f"'{cname}' is already a parameter")
        d = _entry(raw, key, ctx, "value", {"value", "unit", "description", "bounds"})
        if "value" not in d:
            raise ctx.err(key, "missing 'value' (the default)")
        value = _number(d["value"], f"{key}.value", ctx)
        covs[cname] = Covariate(
            cname,
            value,
            _str(d.get("unit"), f"{key}.unit", ctx),
            _str(d.get("description"), f"{key}.description", ctx),
            _bounds(d, value, key, ctx, strict=False),
        )

    # [states]
    raw_states = _table(data, "states", ctx, required=True)
    if not raw_states:
        raise ctx.err("[states]", "at least one state is needed")
    states: dict[str, State] = {}
    for sname, raw in raw_states.items():
        key = f"states.{sname}"
        _name(sname, key, ctx)
        if sname in params or sname in covs:
            raise ctx.err(key, f"'{sname}' is already a parameter or covariate")
        d = _entry(raw, key, ctx, "initial", {"initial", "unit", "description"})
        states[sname] = State(
            sname,
            expr(d.get("initial", 0.0), f"{key}.initial"),
            _str(d.get("unit"), f"{key}.unit", ctx),
            _str(d.get("description"), f"{key}.description", ctx),
        )

    # [derived]
    raw_derived = _table(data, "derived", ctx)
    derived_exprs: dict[str, Expr] = {}
    derived_units: dict[str, str] = {}
    for dname, raw in raw_derived.items():
        key = f"derived.{dname}"
        _name(dname, key, ctx)
        if dname in params or dname in covs or dname in states:
            raise ctx.err(key, f"'{dname}' is already a parameter, covariate or state")
        d = _entry(raw, key, ctx, "expr", {"expr", "unit"})
        if "expr" not in d:
            raise ctx.err(key, "missing 'expr'")
        derived_exprs[dname] = expr(d["expr"], key)
        derived_units[dname] = _str(d.get("unit"), f"{key}.unit", ctx)
    derived = _toposort(derived_exprs, ctx)

    # [model] breakpoints: name -> time (expression of parameters and covariates); in
    # expressions the name is 0 before that time and 1 from it on (constant per segment)
    raw_bp = m.get("breakpoints", {})
    if not isinstance(raw_bp, Mapping):
        raise ctx.err("model.breakpoints", 'expected a table like { peak = "Tmax" }')
    breakpoints: dict[str, Expr] = {}
    taken = set(params) | set(covs) | set(states) | set(derived)
    for bname, raw in raw_bp.items():
        key = f"model.breakpoints.{bname}"
        _name(bname, key, ctx)
        if bname in taken:
            raise ctx.err(key, f"'{bname}' is already a parameter, covariate, state or derived")
        breakpoints[bname] = expr(raw, key)

    dosed = {f"{DOSED_PREFIX}{s}" for s in states}
    for where, names in (("parameters", params), ("covariates", covs), ("states", states),
                         ("derived", derived), ("model.breakpoints", breakpoints)):  # fmt: skip
        if AMT in names:
            raise ctx.err(f"{where}.{AMT}", f"'{AMT}' is reserved: the amount of the dose "
                          "record, read by [dosing] and [routes] expressions")  # fmt: skip
    # derived names that read the dose amount AMT (directly or through another): known
    # only where a dose is given ([dosing] fields and route fractions), inlined there
    dose_time = _reads_amt(derived)
    known = set(params) | set(covs) | set(states) | set(derived) | set(breakpoints) | {"t"}
    known |= dosed
    known -= dose_time

    def check_names(e: Expr, key: str, allowed: set[str]) -> Expr:
        missing = sorted(e.names - allowed)
        dose_only = [x for x in missing if x == AMT or x in dose_time]
        if dose_only:
            raise ctx.err(
                key,
                f"{dose_only[0]!r} in {e.source!r} "
                + ("is" if dose_only[0] == AMT else f"reads {AMT},")
                + " the amount of a dose record: only [dosing] fields and [routes] fractions "
                "may read it",
            )
        if missing:
            what = "unknown name" if len(missing) == 1 else "unknown names"
            names = sorted(allowed - dosed) + (
                [f"{DOSED_PREFIX}<state>"] if allowed & dosed else []
            )
            raise ctx.err(
                key,
                f"{what} {', '.join(repr(x) for x in missing)} in {e.source!r}; known: "
                + ", ".join(names),
            )
        return e

    for dname, e in derived.items():
        check_names(e, f"derived.{dname}", known | dose_time | {AMT})
    # static: known before the solve (parameters, covariates, and the derived quantities
    # built from them alone); initial values, breakpoints, [dosing] fields and route
    # fractions may use these; a static derived name is inlined into them
    static = set(params) | set(covs)
    static_defs: dict[str, Expr] = {}
    for dname, e in derived.items():  # topological order
        if e.names <= static:
            static_defs[dname] = e.inline(static_defs)
            static.add(dname)

    def check_static(e: Expr, key: str) -> Expr:
        return check_names(e, key, static).inline(static_defs)

    # at a dose record: the static names, the record's amount AMT and the derived names
    # built from these alone
    at_dose = static | {AMT}
    dose_defs = dict(static_defs)
    for dname, e in derived.items():
        if dname in dose_time and e.names <= at_dose:
            dose_defs[dname] = e.inline(dose_defs)
            at_dose.add(dname)

    def check_dose(e: Expr, key: str) -> Expr:
        return check_names(e, key, at_dose).inline(dose_defs)

    for bname, e in list(breakpoints.items()):
        breakpoints[bname] = check_static(e, f"model.breakpoints.{bname}")
    for sname, st in list(states.items()):
        states[sname] = _replace(st, initial=check_static(st.initial, f"states.{sname}.initial"))

    # [flows]
    flows: list[Flow] = []
    for fkey, raw in _table(data, "flows", ctx).items():
        key = f"flows.'{fkey}'"
        if "->" not in fkey:
            raise ctx.err(key, "expected 'source -> target' (or 'source ->' for a loss)")
        src, _, dst = (p.strip() for p in fkey.partition("->"))
        for s in (src, dst):
            if s and s not in states:
                raise ctx.err(key, f"unknown state '{s}'; states: {', '.join(states)}")
        if not src:
            raise ctx.err(key, "a flow needs a source state")
        if src == dst:
            raise ctx.err(key, "a flow from a state to itself")
        rate = check_names(expr(raw, key), key, known)
        if not rate.names and not float(rate({})) >= 0:
            value = f"{float(rate({})):g}"
            shown = rate.source if rate.source == value else f"{rate.source} = {value}"
            raise ctx.err(
                key,
                f"rate {shown}; a flow is first order (flux = rate x amount in the source), so "
                "its rate must be >= 0 (use [odes] for other terms)",
            )
        flows.append(Flow(src, dst or None, rate))

    # [odes]
    odes: dict[str, Expr] = {}
    for sname, raw in _table(data, "odes", ctx).items():
        key = f"odes.{sname}"
        if sname not in states:
            raise ctx.err(key, f"unknown state '{sname}'; states: {', '.join(states)}")
        odes[sname] = check_names(expr(raw, key), key, known)

    # [observations]
    obs: dict[str, Observation] = {}
    for oname, raw in _table(data, "observations", ctx).items():
        key = f"observations.{oname}"
        _name(oname, key, ctx)
        if oname in states or oname in params or oname in covs or oname in derived:
            raise ctx.err(
                key, f"'{oname}' is already a state, parameter, covariate or derived quantity"
            )
        d = _entry(raw, key, ctx, "expr", {"expr", "unit", "error", "description"})
        if "expr" not in d:
            raise ctx.err(key, "missing 'expr'")
        error = _str(d.get("error"), f"{key}.error", ctx, "additive")
        if error not in ERROR_MODELS:
            raise ctx.err(f"{key}.error", f"'{error}' is not one of {', '.join(ERROR_MODELS)}")
        obs[oname] = Observation(
            oname,
            check_names(expr(d["expr"], f"{key}.expr"), f"{key}.expr", known),
            _str(d.get("unit"), f"{key}.unit", ctx),
            error,
            _str(d.get("description"), f"{key}.description", ctx),
        )

    # [dosing]
    dosing: dict[str, DosingRule] = {}
    for sname, raw in _table(data, "dosing", ctx).items():
        key = f"dosing.{sname}"
        if sname not in states:
            raise ctx.err(key, f"unknown state '{sname}'; states: {', '.join(states)}")
        if not isinstance(raw, Mapping):
            raise ctx.err(key, 'expected a table like { lag = "0", bioavailability = "1" }')
        d = _entry(raw, key, ctx, "lag", {"lag", "bioavailability", "rate", "duration"})
        rule = {}
        for fld in ("lag", "bioavailability", "rate", "duration"):
            if fld in d:
                e = expr(d[fld], f"{key}.{fld}")
                rule[fld] = check_dose(e, f"{key}.{fld}")
        dosing[sname] = DosingRule(
            sname,
            rule.get("lag", parse_expr("0", key)),
            rule.get("bioavailability", parse_expr("1", key)),
            rule.get("rate"),
            rule.get("duration"),
        )

    # [routes]: how a dose of N (cells) of a product enters several states at once
    routes: dict[str, Mapping[str, Expr]] = {}
    for rname, raw in _table(data, "routes", ctx).items():
        key = f"routes.{rname}"
        _name(rname, key, ctx)
        if rname in states or rname in params or rname in covs or rname in derived:
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
            if sname not in states:
                raise ctx.err(skey, f"unknown state '{sname}'; states: {', '.join(states)}")
            if isinstance(fr, bool) or not isinstance(fr, (str, int, float)):
                raise ctx.err(skey, f"expected a fraction expression (text or number), got {fr!r}")
            fractions[sname] = check_dose(expr(str(fr), skey), skey)
        routes[rname] = _ro(fractions)

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
    spec = ModelSpec(
        name=name,
        description=_str(m.get("description"), "model.description", ctx),
        time_unit=time_unit,
        amount_unit=_str(m.get("amount_unit"), "model.amount_unit", ctx),
        references=tuple(refs),
        parameters=_ro(params),
        covariates=_ro(covs),
        states=_ro(states),
        flows=tuple(flows),
        odes=_ro(odes),
        derived=_ro(derived),
        observations=_ro(obs),
        dosing=_ro(dosing),
        stiff=stiff,
        source=source,
        extra=_ro(extra),
        species=species if physio or species is not None else None,
        physiology=_ro(dict(physio)),
        breakpoints=_ro(breakpoints),
        derived_units=_ro({k: u for k, u in derived_units.items() if u}),
        routes=_ro(routes),
    )
    check_units(spec, spec.derived_units)
    return spec


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
    facts = [f"- {kind}; time in {spec.time_unit}, amounts in {spec.amount_unit}"]
    if spec.species:
        facts.append(f"- species: {spec.species}")
    if spec.stiff:
        facts.append("- marked stiff: solved with Kvaerno5 by default")
    out += facts
    if spec.references:
        out += ["", "References:", *(f"- {r}" for r in spec.references)]
    out += ["", "## States", ""]
    out.append(
        _md_table(
            ["state", "initial", "unit", "description"],
            [[s.name, s.initial.source, s.unit, s.description] for s in spec.states.values()],
        )
    )
    if spec.flows:
        out += ["", "## Flows (first-order: flux = rate x amount in source)", ""]
        out.append(
            _md_table(
                ["from", "to", "rate [1/time]"],
                [[f.source, f.target or "(loss)", f.rate.source] for f in spec.flows],
            )
        )
    if spec.odes:
        out += ["", "## Extra terms of d(state)/dt [amount/time]", ""]
        out.append(_md_table(["state", "term"], [[k, e.source] for k, e in spec.odes.items()]))
    if spec.derived:
        out += ["", "## Derived", ""]
        out.append(
            _md_table(
                ["name", "expression", "unit"],
                [[k, e.source, spec.derived_units.get(k, "")] for k, e in spec.derived.items()],
            )
        )
    if spec.observations:
        out += ["", "## Observations", ""]
        out.append(
            _md_table(
                ["name", "expression", "unit", "error", "description"],
                [
                    [o.name, o.expr.source, o.unit, o.error, o.description]
                    for o in spec.observations.values()
                ],
            )
        )
    if spec.dosing:
        out += ["", "## Dosing", ""]
        rows = [
            [
                r.state,
                r.lag.source,
                r.bioavailability.source,
                r.rate.source if r.rate else "",
                r.duration.source if r.duration else "",
            ]
            for r in spec.dosing.values()
        ]
        out.append(_md_table(["state", "lag", "bioavailability", "rate", "duration"], rows))
    if spec.routes:
        out += ["", "## Routes (a dose of N into a route puts N * fraction into each state)", ""]
        rows = [[r, s, e.source] for r, fr in spec.routes.items() for s, e in fr.items()]
        out.append(_md_table(["route", "state", "fraction"], rows))
    if spec.breakpoints:
        out += ["", "## Breakpoints (the name is 0 before the time, 1 from it on)", ""]
        out.append(
            _md_table(["name", "time"], [[k, e.source] for k, e in spec.breakpoints.items()])
        )
    out += ["", "## Parameters", ""]
    out.append(
        _md_table(
            ["name", "value", "unit", "bounds", "prior", "description", "source"],
            [
                [
                    p.name,
                    _fmt_num(p.value),
                    p.unit,
                    f"[{_fmt_num(p.bounds[0])}, {_fmt_num(p.bounds[1])}]",
                    p.prior or "",
                    p.description,
                    p.source,
                ]
                for p in spec.parameters.values()
            ],
        )
    )
    if spec.covariates:
        out += ["", "## Covariates", ""]
        out.append(
            _md_table(
                ["name", "default", "unit", "bounds", "description"],
                [
                    [
                        c.name,
                        _fmt_num(c.value),
                        c.unit,
                        f"[{_fmt_num(c.bounds[0])}, {_fmt_num(c.bounds[1])}]",
                        c.description,
                    ]
                    for c in spec.covariates.values()
                ],
            )
        )
    return Description("\n".join(out) + "\n")


class Description(str):
    """Markdown text of `describe`: a plain string (print it, write it to a file), which
    Jupyter shows rendered (headings and tables) when it is a cell's value."""

    __slots__ = ()

    def _repr_markdown_(self) -> str:
        return str(self)


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
