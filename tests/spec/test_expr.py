"""Tests of cellpkpd.spec.expr: the whitelisted expression compiler (evaluation, rejected
constructs, names, structural linearity)."""

from __future__ import annotations

import math
import re

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cellpkpd as cp
from cellpkpd.spec.expr import CONSTANTS, FUNCTIONS, Expr, parse_expr, state_degree

WHERE = "models/m.toml: flows.'central ->'"


def ev(source: str, **env: object) -> np.ndarray:
    """Parse and evaluate `source` with `env`, as a NumPy array."""
    return np.asarray(parse_expr(source, WHERE)(env))


# ---------------------------------------------------------------------- evaluation
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 + 2 * 3 - 4 / 2", 5.0),
        ("(1 + 2) * 3", 9.0),
        ("2 ** 3 ** 2", 512.0),  # right-associative, as in Python
        ("-2 ** 2", -4.0),  # unary minus binds looser than **
        ("+3 - -2", 5.0),
        ("7 % 3", 1.0),
        ("10 / 4", 2.5),
        ("1e-3 * 2", 0.002),
        ("2 * pi", 2 * math.pi),
        ("log(e)", 1.0),
        ("-inf < 0", True),
    ],
)
def test_arithmetic_on_constants(source: str, expected: float) -> None:
    np.testing.assert_allclose(ev(source), expected, rtol=1e-15)


def test_arithmetic_with_names_is_float64_and_vectorised() -> None:
    x = jnp.asarray([0.5, 1.0, 2.0])
    out = parse_expr("CL / V * x ** 2 - 1", WHERE)({"CL": 2.0, "V": 4.0, "x": x})
    assert out.shape == (3,)
    assert out.dtype == jnp.float64
    np.testing.assert_allclose(out, 0.5 * np.array([0.5, 1.0, 2.0]) ** 2 - 1, rtol=1e-15)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("x < y", [True, False, False]),
        ("x <= y", [True, True, False]),
        ("x > y", [False, False, True]),
        ("x >= y", [False, True, True]),
        ("x == y", [False, True, False]),
        ("x != y", [True, False, True]),
        ("0 < x < 3", [True, True, False]),  # chained comparison: both must hold
        ("x < 2 and y > 1", [True, False, False]),
        ("x > 2 or y < 2", [False, False, True]),
        ("not x > 1", [True, False, False]),
    ],
)
def test_comparisons_and_logic(source: str, expected: list[bool]) -> None:
    x = jnp.asarray([1.0, 2.0, 3.0])
    y = jnp.asarray([2.0, 2.0, 1.0])
    np.testing.assert_array_equal(ev(source, x=x, y=y), expected)


def test_conditional_expression_is_elementwise() -> None:
    x = jnp.asarray([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(ev("x if x > 0 else -x", x=x), [2.0, 0.0, 3.0])
    np.testing.assert_array_equal(ev("1 if x >= 0 else 0", x=x), [0.0, 1.0, 1.0])
    # also with a scalar test
    assert float(ev("a if b > 1 else 2 * a", a=3.0, b=0.5)) == 6.0


# numpy reference of every whitelisted function; arguments inside each function's domain
_X = np.array([0.1, 0.5, 0.9])
_Y = np.array([0.3, 0.2, 2.0])
_Z = np.array([2.0, 3.0, 1.0])
REFERENCE = {
    "exp": (lambda x: np.exp(x), (_X,)),
    "log": (lambda x: np.log(x), (_X,)),
    "log10": (lambda x: np.log10(x), (_X,)),
    "log2": (lambda x: np.log2(x), (_X,)),
    "log1p": (lambda x: np.log1p(x), (_X,)),
    "expm1": (lambda x: np.expm1(x), (_X,)),
    "sqrt": (lambda x: np.sqrt(x), (_X,)),
    "abs": (lambda x: np.abs(x), (_X - 0.5,)),
    "sign": (lambda x: np.sign(x), (_X - 0.5,)),
    "floor": (lambda x: np.floor(x), (3 * _X - 1,)),
    "ceil": (lambda x: np.ceil(x), (3 * _X - 1,)),
    "sin": (lambda x: np.sin(x), (_Z,)),
    "cos": (lambda x: np.cos(x), (_Z,)),
    "tanh": (lambda x: np.tanh(x), (_Z - 2,)),
    "pow": (lambda x, y: np.power(x, y), (_Z, _Y)),
    "min": (lambda *a: np.minimum.reduce(a), (_X, _Y, 0.4 + 0 * _X)),
    "max": (lambda *a: np.maximum.reduce(a), (_X, _Y, 0.4 + 0 * _X)),
    "clip": (lambda x, lo, hi: np.clip(x, lo, hi), (_Z, 1.5, 2.5)),
    "where": (lambda c, a, b: np.where(c, a, b), (_X > 0.3, _Y, _Z)),
    "hill": (lambda x, x50, n=1.0: x**n / (x50**n + x**n), (_Z, _Y, 2.0)),
    "logit": (lambda p: np.log(p / (1 - p)), (_X,)),
    "expit": (lambda x: 1 / (1 + np.exp(-x)), (_Z - 2,)),
    "step": (lambda x: (x >= 0).astype(float), (_X - 0.5,)),
}


def test_reference_covers_every_function() -> None:
    # a function added to FUNCTIONS needs a numpy reference here
    assert set(FUNCTIONS) == set(REFERENCE)


@pytest.mark.parametrize("fname", sorted(REFERENCE))
def test_function_matches_numpy(fname: str) -> None:
    ref, args = REFERENCE[fname]
    names = [f"a{i}" for i in range(len(args))]
    out = ev(f"{fname}({', '.join(names)})", **dict(zip(names, args, strict=True)))
    # XLA's and NumPy's transcendental kernels may differ in the last bits
    np.testing.assert_allclose(out, ref(*args), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("source", ["1 / 0", "1.0 / (2.0 - 2.0)"])
def test_constant_division_by_zero_is_ieee_inf(source: str) -> None:
    assert np.isinf(ev(source))


def test_array_division_by_zero_is_ieee_inf() -> None:
    np.testing.assert_array_equal(ev("x / (1 - 1)", x=jnp.asarray([1.0, -1.0])), [np.inf, -np.inf])


def test_hill_default_exponent_and_zero() -> None:
    np.testing.assert_allclose(ev("hill(x, 2)", x=jnp.asarray([0.0, 2.0, 6.0])), [0, 0.5, 0.75])


def test_min_max_take_many_arguments() -> None:
    assert float(ev("min(5, 3, 4, 8)")) == 3.0
    assert float(ev("max(5, 3, 4, 8)")) == 8.0


# ---------------------------------------------------------------------- names
def test_names_are_collected_without_functions_or_constants() -> None:
    e = parse_expr("CL / V * exp(-k * t) + hill(C, EC50, n) + pi * e - inf", WHERE)
    assert e.names == frozenset({"CL", "V", "k", "t", "C", "EC50", "n"})
    assert not e.is_constant


def test_number_source_is_a_constant_expression() -> None:
    e = parse_expr(2.5, WHERE)
    assert isinstance(e, Expr)
    assert e.is_constant
    assert float(e({})) == 2.5
    assert parse_expr(3, WHERE)({}) == 3.0
    assert set(CONSTANTS) == {"pi", "e", "inf"}


def test_equal_sources_compare_equal() -> None:
    assert parse_expr("CL / V", "a") == parse_expr(" CL / V ", "b")


# ---------------------------------------------------------------------- rejections
REJECTED = [
    ("eval('1 + 1')", r"unknown function 'eval'"),
    ("exec('x = 1')", r"unknown function 'exec'"),
    ("__import__('os')", r"unknown function '__import__'"),
    ("getattr(x, 'y')", r"unknown function 'getattr'"),
    ("foo(x)", r"unknown function 'foo'.*allowed: .*exp"),
    ("x.y", r"attribute access '\.y'"),
    ("x.__class__", r"attribute access '\.__class__'"),
    ("os.system('ls')", r"calling attribute access '\.system'"),
    ("x[0]", r"indexing"),
    ("lambda x: x", r"lambda"),
    ("(lambda: 1)()", r"calling lambda"),
    ("[v for v in x]", r"comprehension"),
    ("max((v for v in x), 1)", r"comprehension"),
    ("{k: 1 for k in x}", r"comprehension"),
    ("'abc'", r"constant 'abc'"),
    ("x + 'a'", r"constant 'a'"),
    ("True", r"constant True"),
    ("None", r"constant None"),
    ("1j", r"constant 1j"),
    ("f'{x}'", r"f-string"),
    ("[1, 2]", r"container literal"),
    ("(1, 2)", r"container literal"),
    ("(x := 1)", r"assignment ':='"),
    ("hill(x, x50=1)", r"keyword arguments"),
    ("max(*x, 1)", r"argument unpacking"),
    ("exp(x, y)", r"exp\(\) takes 1 arguments, got 2"),
    ("clip(x)", r"clip\(\) takes 3 arguments, got 1"),
    ("min(x)", r"min\(\) takes 2 to 64 arguments, got 1"),
    ("hill(x)", r"hill\(\) takes 2 to 3 arguments, got 1"),
    ("x // y", r"operator '//'"),
    ("x @ y", r"operator '@'"),
    ("x & y", r"operator '&'"),
    ("x ^ y", r"operator '\^'"),
    ("~x", r"operator '~'"),
    ("x +", r"syntax error in 'x \+'"),
    ("import os", r"syntax error"),
    ("x if y", r"syntax error"),
    ("1 = 2", r"syntax error"),
    ("", r"empty expression"),
    ("   ", r"empty expression"),
]


@pytest.mark.parametrize(("source", "construct"), REJECTED)
def test_rejected_construct_names_location_and_construct(source: str, construct: str) -> None:
    with pytest.raises(cp.SpecError, match=re.escape(WHERE) + ": .*" + construct) as info:
        parse_expr(source, WHERE)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("source", [None, [1, 2], {"a": 1}, True])
def test_non_string_source_is_rejected(source: object) -> None:
    with pytest.raises(cp.SpecError, match=re.escape(WHERE) + ": expected an expression"):
        parse_expr(source, WHERE)  # type: ignore[arg-type]


@pytest.mark.parametrize(("source", "op"), [("x is y", "is"), ("x in y", "in")])
def test_identity_and_membership_operators_are_named(source: str, op: str) -> None:
    with pytest.raises(cp.SpecError, match=f"operator '{op}'"):
        parse_expr(source, WHERE)


def test_nothing_is_executed() -> None:
    # a rejected expression must fail in the checker, before any evaluation
    with pytest.raises(cp.SpecError):
        parse_expr("__import__('os').system('touch /tmp/cellpkpd_pwned')", WHERE)
    with pytest.raises(cp.SpecError):
        parse_expr("().__class__.__bases__[0].__subclasses__()", WHERE)


# ---------------------------------------------------------------------- state_degree
STATES = {"central", "periph"}


@pytest.mark.parametrize(
    ("source", "degree"),
    [
        ("CL / V", 0),
        ("exp(-k) * 2 + max(a, b)", 0),
        ("k if k > 0 else 1", 0),
        ("central", 1),
        ("-central", 1),
        ("+central", 1),
        ("central / V", 1),
        ("kin - kout * central", 1),
        ("(central + periph) / V - k12 * periph", 1),
        ("exp(-k) * central", 1),
        ("2 * (central - 3 * periph) + 1", 1),
        ("central * periph", None),
        ("central * central", None),
        ("central ** 2", None),
        ("central ** 1", None),  # conservative: powers of states are not analysed
        ("V / central", None),
        ("1 / (central + 1)", None),
        ("exp(central)", None),
        ("max(central, 0)", None),
        ("central % 2", None),
        ("not central", None),
        ("central > 1", None),
        ("Vmax * central / (Km + central)", None),
        ("t", None),
        ("k * t", None),
        ("exp(-t) * central", None),
    ],
)
def test_state_degree(source: str, degree: int | None) -> None:
    assert state_degree(parse_expr(source, WHERE).tree, STATES, {}) == degree


def test_state_degree_follows_derived_quantities() -> None:
    derived = {
        "C": parse_expr("central / V", "d"),
        "k": parse_expr("CL / V", "d"),
        "kt": parse_expr("k * t", "d"),
        "Cn": parse_expr("C * C", "d"),
    }
    deg = lambda s: state_degree(parse_expr(s, WHERE).tree, STATES, derived)
    assert deg("k") == 0
    assert deg("k * C") == 1
    assert deg("Vmax * C / (Km + C)") is None
    assert deg("kt") is None
    assert deg("Cn") is None


# ---------------------------------------------------------------------- property test
_NAMES = ("a", "b", "c")
_BINARY = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
}


def _leaf() -> st.SearchStrategy[tuple[str, object]]:
    name = st.sampled_from(_NAMES).map(lambda n: (n, lambda env, n=n: env[n]))
    number = st.floats(0.25, 8.0, allow_nan=False).map(lambda v: (repr(v), lambda env, v=v: v))
    return name | number


def _extend(
    children: st.SearchStrategy[tuple[str, object]],
) -> st.SearchStrategy[tuple[str, object]]:
    def binary(op: str, x: tuple, y: tuple) -> tuple:
        f = _BINARY[op]
        return f"({x[0]} {op} {y[0]})", lambda env: f(x[1](env), y[1](env))

    def negate(x: tuple) -> tuple:
        return f"(-{x[0]})", lambda env: -x[1](env)

    def absolute(x: tuple) -> tuple:
        return f"abs({x[0]})", lambda env: np.abs(x[1](env))

    def choose(c: tuple, x: tuple, y: tuple) -> tuple:
        return (
            f"({x[0]} if {c[0]} > {y[0]} else {y[0]})",
            lambda env: np.where(c[1](env) > y[1](env), x[1](env), y[1](env)),
        )

    return st.one_of(
        st.builds(binary, st.sampled_from(sorted(_BINARY)), children, children),
        st.builds(negate, children),
        st.builds(absolute, children),
        st.builds(choose, children, children, children),
    )


# XLA on CPU flushes subnormal numbers to zero (NumPy keeps them): keep every value either 0
# or far from the subnormal range, so that no intermediate result of <= 10 leaves is subnormal
_VALUE = st.floats(-5.0, 5.0, allow_nan=False).filter(lambda v: v == 0.0 or abs(v) > 1e-3)
_VALUES = st.lists(_VALUE, min_size=3, max_size=3)


@settings(max_examples=50, deadline=None)
@given(
    tree=st.recursive(_leaf(), _extend, max_leaves=10),
    a=_VALUES,
    b=_VALUES,
    c=_VALUES,
)
def test_random_arithmetic_matches_numpy(tree: tuple, a: list, b: list, c: list) -> None:
    source, reference = tree
    values = {"a": np.array(a), "b": np.array(b), "c": np.array(c)}
    out = parse_expr(source, WHERE)({k: jnp.asarray(v) for k, v in values.items()})
    with np.errstate(all="ignore"):
        expected = reference(values)
    # + - * / are correctly rounded IEEE operations in both, done in the same order:
    # the results agree to the last bit (also inf and nan from division by zero)
    np.testing.assert_allclose(
        np.broadcast_to(np.asarray(out), (3,)), np.broadcast_to(expected, (3,)), rtol=1e-14
    )
