"""Safe model expressions: Python syntax parsed with `ast`, checked against a whitelist,
evaluated with `jax.numpy`. Nothing is ever passed to `eval` or `exec`.

Allowed: numbers, names, ``+ - * / ** %``, unary ``-``/``+``/``not``, comparisons,
``and``/``or``, ``a if cond else b``, and calls of the functions in `FUNCTIONS`
with positional arguments. Constants ``pi``, ``e`` and ``inf`` are predefined.
"""

from __future__ import annotations

import ast
import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp

from .._core.errors import SpecError

__all__ = ["CONSTANTS", "FUNCTIONS", "Expr", "parse_expr", "state_degree"]


def _hill(x: Any, x50: Any, n: Any = 1.0) -> Any:
    """Hill function x^n / (x50^n + x^n), safe at x = 0."""
    xn = jnp.power(jnp.maximum(x, 0.0), n)
    return xn / (jnp.power(x50, n) + xn)


def _min(*args: Any) -> Any:
    out = args[0]
    for a in args[1:]:
        out = jnp.minimum(out, a)
    return out


def _max(*args: Any) -> Any:
    out = args[0]
    for a in args[1:]:
        out = jnp.maximum(out, a)
    return out


# name -> (function, minimum number of arguments, maximum number of arguments)
FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "exp": (jnp.exp, 1, 1),
    "log": (jnp.log, 1, 1),
    "log10": (jnp.log10, 1, 1),
    "log2": (jnp.log2, 1, 1),
    "log1p": (jnp.log1p, 1, 1),
    "expm1": (jnp.expm1, 1, 1),
    "sqrt": (jnp.sqrt, 1, 1),
    "abs": (jnp.abs, 1, 1),
    "sign": (jnp.sign, 1, 1),
    "floor": (jnp.floor, 1, 1),
    "ceil": (jnp.ceil, 1, 1),
    "sin": (jnp.sin, 1, 1),
    "cos": (jnp.cos, 1, 1),
    "tanh": (jnp.tanh, 1, 1),
    "pow": (jnp.power, 2, 2),
    "min": (_min, 2, 64),
    "max": (_max, 2, 64),
    "clip": (jnp.clip, 3, 3),
    "where": (jnp.where, 3, 3),
    "hill": (_hill, 2, 3),
    "logit": (lambda p: jnp.log(p) - jnp.log1p(-p), 1, 1),
    "expit": (lambda x: 1.0 / (1.0 + jnp.exp(-x)), 1, 1),
    "step": (lambda x: jnp.where(x >= 0, 1.0, 0.0), 1, 1),
}

CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "inf": math.inf}

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: jnp.power(a, b),
    ast.Mod: lambda a, b: jnp.mod(a, b),
}
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: jnp.less,
    ast.LtE: jnp.less_equal,
    ast.Gt: jnp.greater,
    ast.GtE: jnp.greater_equal,
    ast.Eq: jnp.equal,
    ast.NotEq: jnp.not_equal,
}
_OPNAMES = {
    ast.FloorDiv: "//",
    ast.MatMult: "@",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.Invert: "~",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"attribute access '.{node.attr}'"
    if isinstance(node, ast.Subscript):
        return "indexing '[...]'"
    if isinstance(node, ast.Lambda):
        return "lambda"
    if isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.DictComp, ast.SetComp)):
        return "comprehension"
    if isinstance(node, (ast.List, ast.Tuple, ast.Dict, ast.Set)):
        return "container literal"
    if isinstance(node, ast.NamedExpr):
        return "assignment ':='"
    if isinstance(node, (ast.JoinedStr, ast.FormattedValue)):
        return "f-string"
    if isinstance(node, ast.Constant):
        return f"constant {node.value!r}"
    op = _OPNAMES.get(type(node)) or _OPNAMES.get(type(getattr(node, "op", None)))
    if op:
        return f"operator '{op}'"
    return type(node).__name__


def _check(node: ast.AST, where: str, source: str, names: set[str]) -> None:
    """Walk the tree once; raise SpecError on anything outside the whitelist."""

    def bad(what: str) -> SpecError:
        return SpecError(f"{where}: {what} is not allowed in model expressions: {source!r}")

    if isinstance(node, ast.Expression):
        _check(node.body, where, source, names)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise bad(_describe(node))
    elif isinstance(node, ast.Name):
        names.add(node.id)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise bad(_describe(node))
        _check(node.left, where, source, names)
        _check(node.right, where, source, names)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            raise bad(_describe(node))
        _check(node.operand, where, source, names)
    elif isinstance(node, ast.BoolOp):
        for v in node.values:
            _check(v, where, source, names)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _CMPOPS:
                raise bad(_describe(op))
        _check(node.left, where, source, names)
        for c in node.comparators:
            _check(c, where, source, names)
    elif isinstance(node, ast.IfExp):
        for sub in (node.test, node.body, node.orelse):
            _check(sub, where, source, names)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise bad("calling " + _describe(node.func))
        fname = node.func.id
        if fname not in FUNCTIONS:
            raise SpecError(
                f"{where}: unknown function '{fname}' in {source!r}; allowed: "
                + ", ".join(sorted(FUNCTIONS))
            )
        if node.keywords:
            raise bad("keyword arguments")
        lo, hi = FUNCTIONS[fname][1:]
        if not lo <= len(node.args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise SpecError(
                f"{where}: {fname}() takes {want} arguments, got {len(node.args)} in {source!r}"
            )
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise bad("argument unpacking '*'")
            _check(a, where, source, names)
    else:
        raise bad(_describe(node))


@dataclass(frozen=True)
class Expr:
    """A parsed, whitelisted model expression.

    Attributes
    ----------
    source : str
        The expression as written.
    names : frozenset of str
        Free names used (parameters, covariates, states, derived quantities, ``t``),
        excluding function names and the constants ``pi``, ``e``, ``inf``.
    """

    source: str
    tree: ast.Expression = field(repr=False, compare=False)
    names: frozenset[str] = field(compare=False)

    @property
    def is_constant(self) -> bool:
        """True if the expression uses no names (a plain number)."""
        return not self.names

    def __call__(self, env: Mapping[str, Any]) -> Any:
        """Evaluate with `jax.numpy`; `env` maps every name in `names` to a value."""
        return _eval(self.tree.body, env)

    def inline(self, defs: Mapping[str, Expr]) -> Expr:
        """This expression with each name in `defs` replaced by its expression (already
        inlined itself). `source` stays as written, so it still reads as the model file
        does; `names` are those of the result."""
        used = self.names & set(defs)
        if not used:
            return self

        class _Sub(ast.NodeTransformer):
            def visit_Name(self, node: ast.Name) -> ast.AST:
                if node.id in used:
                    return copy.deepcopy(defs[node.id].tree.body)
                return node

        tree = ast.fix_missing_locations(_Sub().visit(copy.deepcopy(self.tree)))
        names = (self.names - used).union(*(defs[n].names for n in used))
        return Expr(self.source, tree, frozenset(names))


def parse_expr(source: str | float | int, where: str) -> Expr:
    """Parse and check an expression.

    Parameters
    ----------
    source : str or number
        The expression text, e.g. ``"CL / V"``; a number is accepted as a constant.
    where : str
        Location used in error messages, e.g. ``"models/x.toml: flows.'central ->'"``.

    Raises
    ------
    SpecError
        On a syntax error or anything outside the whitelist (attribute access,
        indexing, lambda, unknown functions, strings, ...).
    """
    if isinstance(source, bool) or not isinstance(source, (str, int, float)):
        raise SpecError(
            f"{where}: expected an expression (string) or a number, got "
            f"{type(source).__name__} {source!r}"
        )
    if not isinstance(source, str) and not math.isfinite(source):
        raise SpecError(f"{where}: {source!r} is not a finite number")
    text = repr(float(source)) if not isinstance(source, str) else source.strip()
    if not text:
        raise SpecError(f"{where}: empty expression")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise SpecError(f"{where}: syntax error in {text!r}: {exc.msg}") from None
    names: set[str] = set()
    _check(tree, where, text, names)
    return Expr(text, tree, frozenset(names - set(CONSTANTS)))


def _eval(node: ast.AST, env: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return jnp.asarray(float(node.value))
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        return jnp.asarray(CONSTANTS[node.id])
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, env), _eval(node.right, env))
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, env)
        if isinstance(node.op, ast.USub):
            return -v
        if isinstance(node.op, ast.Not):
            return jnp.logical_not(v)
        return v
    if isinstance(node, ast.BoolOp):
        combine = jnp.logical_and if isinstance(node.op, ast.And) else jnp.logical_or
        out = _eval(node.values[0], env)
        for v in node.values[1:]:
            out = combine(out, _eval(v, env))
        return out
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        out = None
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, env)
            r = _CMPOPS[type(op)](left, right)
            out = r if out is None else jnp.logical_and(out, r)
            left = right
        return out
    if isinstance(node, ast.IfExp):
        return jnp.where(_eval(node.test, env), _eval(node.body, env), _eval(node.orelse, env))
    if isinstance(node, ast.Call):
        fn = FUNCTIONS[node.func.id][0]  # type: ignore[attr-defined]
        return fn(*(_eval(a, env) for a in node.args))
    raise AssertionError(f"unchecked node {type(node).__name__}")  # pragma: no cover


def state_degree(
    node: ast.AST,
    states: set[str],
    derived: Mapping[str, Expr],
    _memo: dict[str, int | None] | None = None,
) -> int | None:
    """Polynomial degree of an expression in the state variables.

    Returns 0 (no state, no ``t``), 1 (affine in the states), or None (nonlinear in the
    states, or dependent on time ``t``). Used to recognise linear models structurally.
    """
    memo = {} if _memo is None else _memo
    deg = lambda n: state_degree(n, states, derived, memo)
    if isinstance(node, ast.Expression):
        return deg(node.body)
    if isinstance(node, ast.Constant):
        return 0
    if isinstance(node, ast.Name):
        if node.id == "t":
            return None
        if node.id in states:
            return 1
        if node.id in derived:
            if node.id not in memo:
                memo[node.id] = deg(derived[node.id].tree)
            return memo[node.id]
        return 0
    if isinstance(node, ast.UnaryOp):
        d = deg(node.operand)
        return d if isinstance(node.op, (ast.USub, ast.UAdd)) or d == 0 else None
    if isinstance(node, ast.BinOp):
        a, b = deg(node.left), deg(node.right)
        if a is None or b is None:
            return None
        if isinstance(node.op, (ast.Add, ast.Sub)):
            return max(a, b)
        if isinstance(node.op, ast.Mult):
            return a + b if a + b <= 1 else None
        if isinstance(node.op, ast.Div):
            return a if b == 0 else None
        return 0 if a == b == 0 else None
    children = [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr)]
    if isinstance(node, ast.Call):
        children = list(node.args)
    return 0 if all(deg(c) == 0 for c in children) else None
