"""The exact path on defective and nearly defective matrices, and across breakpoints.

A chain of transit compartments with one rate k (depot -> a1 -> ... -> a4 -> out) has the
system matrix -k I + k N (N the subdiagonal shift): a single Jordan block, with one
eigenvalue of multiplicity 5 and one eigenvector. An eigen-decomposition cannot represent it
(and rates that differ by 1e-9 give eigenvectors conditioned like 1e36): that is why the
exact path exponentiates by scaling and squaring of a Taylor polynomial, which needs no
eigenvectors (`cellpkpd.engine.solve.expm_small`). These tests hold it to the closed form
(the Erlang amounts D (k t)^j / j! exp(-k t)), to SciPy's Pade exponential and to a tight
SciPy ODE solve, for one
subject (one exponential per distinct output gap) and for a batch large enough to be planned
(one exponential per distinct (region, length) pair of each subject; 30 geometric output
gaps, more than `FEW_LENGTHS`, so the plan is counted again by the sort).

Tolerance: rtol 1e-10 with atol 1e-12 of the dose. Two exponential algorithms on the same
matrix agree to ~1e-14 relative to its norm; the scan sums at most a few hundred products;
1e-10 leaves room for both and would still catch an error of an eigen-based method, which
loses ~all digits on these matrices.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
from scipy.integrate import solve_ivp

import cellpkpd as cp
from cellpkpd.engine.simulator import PLAN_MIN_SUBJECTS

STATES = ("a0", "a1", "a2", "a3", "a4")
DOSE = 100.0  # mg into a0 at t = 0
TIMES = np.concatenate([[0.0], np.geomspace(0.05, 60.0, 30)])  # h; 30 distinct gaps
RTOL, ATOL = 1e-10, 1e-12 * DOSE


def chain(spread: float = 0.0, breakpoint: bool = False) -> cp.ModelSpec:
    """depot a0 -> a1 -> a2 -> a3 -> a4 -> out; state j leaves at k (1 + j spread), and with
    `breakpoint` at k2 (1 + j spread) from t = Tb on."""
    model = {"name": "chain", "time_unit": "h", "amount_unit": "mg"}
    rate = "k"
    if breakpoint:
        model["breakpoints"] = {"late": "Tb"}
        rate = "k * (1 - late) + k2 * late"
    flows = {}
    for j, s in enumerate(STATES):
        target = STATES[j + 1] if j + 1 < len(STATES) else ""
        flows[f"{s} -> {target}".strip()] = f"({rate}) * (1 + {j} * spread)"
    return cp.ModelSpec.from_dict(
        {
            "model": model,
            "parameters": {
                "k": {"value": 0.7, "unit": "1/h"},
                "k2": {"value": 0.15, "unit": "1/h"},
                "Tb": {"value": 6.0, "unit": "h"},
                "spread": {"value": spread, "unit": "1"},
            },
            "states": {s: {"initial": 0.0} for s in STATES},
            "flows": flows,
        }
    )


def matrix(k: float, spread: float) -> np.ndarray:
    n = len(STATES)
    rates = k * (1.0 + spread * np.arange(n))
    return np.diag(-rates) + np.diag(rates[:-1], -1)


def erlang(k: float, t: np.ndarray) -> np.ndarray:
    """Amounts (time, state) of the Jordan-block chain after a bolus DOSE into a0."""
    return np.stack(
        [DOSE * (k * t) ** j / math.factorial(j) * np.exp(-k * t) for j in range(len(STATES))],
        axis=-1,
    )


def dop853(A: np.ndarray, t: np.ndarray) -> np.ndarray:
    """SciPy's DOP853 at rtol 1e-13 (no matrix exponential at all)."""
    x0 = np.zeros(len(STATES))
    x0[0] = DOSE
    sol = solve_ivp(lambda _, y: A @ y, (0.0, t[-1]), x0, method="DOP853", t_eval=t,
                    rtol=1e-13, atol=1e-16 * DOSE)  # fmt: skip
    return sol.y.T


def pade(A1: np.ndarray, t: np.ndarray, A2: np.ndarray | None = None, tb: float = 0.0):
    """SciPy's exponential: x(t) = expm(A1 t) x0, or across a switch to A2 at tb."""
    x0 = np.zeros(len(STATES))
    x0[0] = DOSE
    out = []
    for ti in t:
        if A2 is None or ti < tb:
            out.append(scipy.linalg.expm(A1 * ti) @ x0)
        else:
            out.append(scipy.linalg.expm(A2 * (ti - tb)) @ scipy.linalg.expm(A1 * tb) @ x0)
    return np.asarray(out)


def simulate(spec: cp.ModelSpec, params: dict[str, np.ndarray]) -> np.ndarray:
    """Amounts (subject, time, state) by the exact path."""
    reg = cp.Regimen([cp.Dose(0.0, DOSE, cmt="a0")])
    res = cp.simulate(spec, reg, TIMES, params=params, outputs=list(STATES), solver="exact")
    assert np.all(res["status"].values == 0)
    return np.stack([res[s].values for s in STATES], axis=-1)


N = PLAN_MIN_SUBJECTS + 8  # planned: one exponential per distinct (region, length)
KS = 0.7 * np.exp(np.linspace(-1.5, 1.5, N))  # 0.16 to 3.1 per h


@pytest.mark.parametrize("n", [1, N], ids=["one_subject", "planned_batch"])
def test_jordan_block_chain_equals_the_erlang_closed_form(n: int) -> None:
    """A defective matrix (one Jordan block of size 5): the closed form, every subject."""
    ks = KS[:n] if n > 1 else np.array([0.7])
    got = simulate(chain(), {"k": ks})
    for i, k in enumerate(ks):
        np.testing.assert_allclose(got[i], erlang(k, TIMES), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("spread", [1e-9, 1e-5])
def test_nearly_defective_chain_equals_a_tight_ode_solve(spread: float) -> None:
    """Rates 1e-9 (or 1e-5) apart: distinct eigenvalues with nearly parallel eigenvectors
    (an eigen-decomposition loses ~all digits). Reference: SciPy's DOP853 at rtol 1e-13
    (rtol 1e-9 here: the sum of its local errors). SciPy's Pade exponential
    (`scipy.linalg.expm`) is accurate only relative to the matrix's norm here: it differed
    from both by up to 5e-8 relative in the smallest amounts at 1e-9. And the Erlang closed
    form, to the size of the spread."""
    ks = KS[:: N // 8]
    got = simulate(chain(spread), {"k": ks, "spread": np.full(ks.size, spread)})
    for i, k in enumerate(ks):
        np.testing.assert_allclose(got[i], dop853(matrix(k, spread), TIMES), rtol=1e-9, atol=ATOL)
        # the first-order change of the amounts is < 5 j k t spread relative (j <= 4)
        np.testing.assert_allclose(got[i], erlang(k, TIMES), rtol=1e3 * spread, atol=ATOL)


@pytest.mark.parametrize("n", [1, N], ids=["one_subject", "planned_batch"])
def test_defective_chain_across_a_breakpoint(n: int) -> None:
    """The rates switch from k to k2 at the breakpoint Tb (its own for each subject; one
    subject has an output exactly at Tb): the Erlang form before Tb, SciPy's exponentials
    composed across Tb after it."""
    ks = KS[:n] if n > 1 else np.array([0.7])
    tbs = np.linspace(2.0, 20.0, ks.size) if n > 1 else np.array([TIMES[20]])
    got = simulate(chain(breakpoint=True), {"k": ks, "Tb": tbs})
    for i, (k, tb) in enumerate(zip(ks, tbs, strict=True)):
        ref = pade(matrix(k, 0.0), TIMES, matrix(0.15, 0.0), tb)
        np.testing.assert_allclose(got[i], ref, rtol=RTOL, atol=ATOL)
        before = TIMES < tb
        np.testing.assert_allclose(got[i][before], erlang(k, TIMES[before]), rtol=RTOL, atol=ATOL)
