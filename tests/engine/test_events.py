"""NONMEM event semantics against known answers, on both solver paths.

Every expected value is derived here from closed forms (tests/conftest.py: one-compartment
bolus and zero-order infusion, Bateman absorption with F and lag, two-compartment
bi-exponential, steady-state geometric sums and superposition); the closed forms are
themselves checked against scipy's ``solve_ivp`` at rtol 1e-12 first.

Compilation dominates the run time (~1-3 s per program on the exact path, ~3-10 s on the ODE
path), so the cases of each model are simulated together as one batch of subjects (one
compiled program per model and solver) and checked one by one in parametrized tests.
All batches share the output times `TIMES`.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import (
    MODELS,
    bateman_central,
    bateman_depot,
    bolus_amount,
    infusion_amount,
    ss_bolus_amount,
    ss_bolus_trough,
    ss_infusion_amount_closed,
    ss_infusion_amount_sum,
    two_cmt_bolus,
    two_cmt_infusion,
)
from scipy.integrate import solve_ivp

import cellpkpd as cp
import cellpkpd.engine.solve

SOLVERS = ("exact", "tsit5")
# exact path: matrix exponentials of 1x1/2x2 (augmented 2x2/4x4) well-conditioned systems;
# only float64 round-off remains (~1e-14 relative), so 1e-10 is loose enough.
# ODE path: Tsit5 with rtol = atol = ODE_TOL = 1e-8 per step; the global error after the
# steps of a segment (and the steady-state iteration, stopped at a change < 1e-8) stays
# well within 100x of that, hence rtol 1e-6 and, for amounts that decay towards zero (a
# depot long after absorption), atol 1e-6 [mg] (concentrations: [mg/L], V >= 7 L).
RTOL = {"exact": 1e-10, "tsit5": 1e-6}
ATOL = {"exact": 0.0, "tsit5": 1e-6}
ODE_TOL = 1e-8

# shared output times: every 0.5 h over two days, plus a repeated time at a dose time (12 h)
# and a time just before it (a record at a dose time reports the amount AFTER the dose)
TIMES = np.sort(np.concatenate([np.linspace(0.0, 48.0, 97), [12.0 - 1e-6, 12.0]]))


def assert_close(actual: Any, expected: Any, solver: str, what: str = "") -> None:
    np.testing.assert_allclose(
        np.asarray(actual, dtype=float),
        expected,
        rtol=RTOL[solver],
        atol=ATOL[solver],
        err_msg=what,
    )


# ------------------------------------------------------------------ closed forms vs scipy
def _ivp_linear(
    A: np.ndarray,
    t_eval: np.ndarray,
    boluses: list[tuple[float, int, float]] = (),
    infusions: list[tuple[float, float, int, float]] = (),
) -> np.ndarray:
    """Reference solution of dx/dt = A x + u(t) by solve_ivp (rtol 1e-12), integrated
    piecewise between discontinuities. boluses: (time, state, amount); infusions: (start,
    end, state, rate). Outputs at an event time are taken after the event."""
    n = A.shape[0]
    t_end = float(t_eval[-1])
    cuts = sorted({0.0, t_end, *(b[0] for b in boluses), *(i[0] for i in infusions)})
    cuts = sorted({*cuts, *(min(i[1], t_end) for i in infusions)})
    x = np.zeros(n)
    out = np.full((t_eval.size, n), np.nan)
    for a, b in itertools.pairwise(cuts):
        for tb, s, amt in boluses:
            if tb == a:
                x[s] += amt
        u = np.zeros(n)
        for t0, t1, s, rate in infusions:
            if t0 <= a < t1:
                u[s] += rate
        last = b == cuts[-1]
        sel = (t_eval >= a) & ((t_eval <= b) if last else (t_eval < b))
        te = t_eval[sel]
        end_saved = te.size > 0 and te[-1] == b
        sol = solve_ivp(
            lambda t, y, u=u: A @ y + u,
            (a, b),
            x,
            method="DOP853",
            t_eval=te if end_saved else np.append(te, b),
            rtol=1e-12,
            atol=1e-14,
        )
        out[sel] = sol.y[:, : te.size].T
        x = sol.y[:, -1].copy()
    return out


ONE_CMT = np.array([[-0.2]])  # CL = 2, V = 10
ORAL = np.array([[-1.5, 0.0], [1.5, -0.3]])  # ka = 1.5, CL = 3, V = 10
TWO_CMT = np.array([[-0.2 - 0.4, 4.0 / 30.0], [0.4, -4.0 / 30.0]])  # CL 2, V1 10, Q 4, V2 30
T_REF = np.linspace(0.0, 30.0, 61)


def test_closed_form_infusion_matches_solve_ivp() -> None:
    ref = _ivp_linear(ONE_CMT, T_REF, infusions=[(2.0, 7.0, 0, 20.0)])[:, 0]
    np.testing.assert_allclose(infusion_amount(T_REF, 100.0, 5.0, 2.0, 10.0, 2.0), ref, 1e-9)


def test_closed_form_bateman_with_lag_and_f_matches_solve_ivp() -> None:
    ref = _ivp_linear(ORAL, T_REF, boluses=[(1.5, 0, 0.7 * 100.0)])
    got = bateman_central(T_REF, 100.0, 1.5, 3.0, 10.0, F=0.7, lag=1.0, t_dose=0.5)
    np.testing.assert_allclose(got, ref[:, 1], rtol=1e-9, atol=1e-12)
    got = bateman_depot(T_REF, 100.0, 1.5, F=0.7, lag=1.0, t_dose=0.5)
    np.testing.assert_allclose(got, ref[:, 0], rtol=1e-9, atol=1e-12)


def test_closed_form_two_cmt_bolus_matches_solve_ivp() -> None:
    ref = _ivp_linear(TWO_CMT, T_REF, boluses=[(0.0, 0, 100.0)])
    central, peripheral = two_cmt_bolus(T_REF, 100.0, 2.0, 10.0, 4.0, 30.0)
    np.testing.assert_allclose(central, ref[:, 0], rtol=1e-9)
    np.testing.assert_allclose(peripheral, ref[:, 1], rtol=1e-9, atol=1e-12)


def test_closed_form_two_cmt_infusion_matches_solve_ivp() -> None:
    ref = _ivp_linear(TWO_CMT, T_REF, infusions=[(2.0, 9.0, 0, 100.0 / 7.0)])
    central, peripheral = two_cmt_infusion(T_REF, 100.0, 7.0, 2.0, 10.0, 4.0, 30.0, 2.0)
    np.testing.assert_allclose(central, ref[:, 0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(peripheral, ref[:, 1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("duration", [3.0, 12.0, 24.0, 30.0])
def test_closed_form_steady_state_infusion_matches_long_run(duration: float) -> None:
    """60 intervals of 12 h from zero reach steady state (e^{-0.2 * 12 * 60} ~ 1e-63);
    the last interval must match the superposition sum (and the closed form if T <= tau)."""
    tau, n = 12.0, 60
    rate = 100.0 / duration
    s = np.linspace(0.0, 2 * tau, 49)
    t_eval = (n - 1) * tau + s
    infusions = [(j * tau, j * tau + duration, 0, rate) for j in range(n)]
    ref = _ivp_linear(ONE_CMT, t_eval, infusions=infusions)[:, 0]
    # after the last dose no further doses: both forms assume the same
    got = ss_infusion_amount_sum(s, 100.0, duration, 2.0, 10.0, tau)
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    if duration <= tau:
        closed = ss_infusion_amount_closed(s, 100.0, duration, 2.0, 10.0, tau)
        np.testing.assert_allclose(closed, got, rtol=1e-12)


def test_closed_form_steady_state_bolus_is_the_geometric_sum() -> None:
    s = np.linspace(0.0, 24.0, 49)
    total = sum(bolus_amount(s + j * 12.0, 100.0, 2.0, 10.0) for j in range(400))
    np.testing.assert_allclose(ss_bolus_amount(s, 100.0, 2.0, 10.0, 12.0), total, rtol=1e-12)
    np.testing.assert_allclose(ss_bolus_trough(100.0, 2.0, 10.0, 12.0), total[24], rtol=1e-12)


# ------------------------------------------------------------------ cases and batches
Expected = Callable[[np.ndarray, dict[str, float]], dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Case:
    """One subject of a batch: its regimen, parameters and closed-form state amounts."""

    regimen: cp.Regimen
    params: dict[str, float]
    expected: Expected


def iv(fn: Callable[..., np.ndarray]) -> Expected:
    """Expected for a one-state model: fn(t, params) -> central amount [mg]."""
    return lambda t, p: {"central": fn(t, p)}


D = cp.Dose  # short alias for the case tables


def _ss_after(t: np.ndarray, t_ss: float, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """`before` until the SS=1 dose time, `after` from it (SS=1 replaces the state)."""
    return np.where(t < t_ss, before, after)


IV_P = {"CL": 2.0, "V": 10.0}
# --- one_cmt_iv (library model): boluses, infusions, F, lag, repeats, steady state
IV_CASES: dict[str, Case] = {
    # 1. IV bolus; also checks the time-0 record reports the amount after the dose (12.)
    "bolus": Case(
        cp.Regimen([D(0.0, 100.0, "central")]),
        IV_P,
        iv(lambda t, p: bolus_amount(t, 100.0, p["CL"], p["V"])),
    ),
    "bolus_cmt_number": Case(
        cp.Regimen([D(3.0, 100.0, 1)]),
        {"CL": 1.3, "V": 7.0},
        iv(lambda t, p: bolus_amount(t, 100.0, p["CL"], p["V"], t_dose=3.0)),
    ),
    # 2. zero-order infusion, during and after
    "infusion": Case(
        cp.Regimen([D(2.0, 100.0, "central", duration=5.0)]),
        {"CL": 3.0, "V": 12.0},
        iv(lambda t, p: infusion_amount(t, 100.0, 5.0, p["CL"], p["V"], t_start=2.0)),
    ),
    # 3. Regimen.repeat = superposition (doses at 0, 12, 24, 36; TIMES has 12 twice)
    "repeat_bolus": Case(
        cp.Regimen.repeat(D(0.0, 100.0, "central"), interval=12.0, count=4),
        {"CL": 1.5, "V": 8.0},
        iv(
            lambda t, p: sum(
                bolus_amount(t, 100.0, p["CL"], p["V"], t_dose=12.0 * j) for j in range(4)
            )
        ),
    ),
    "repeat_infusion": Case(
        cp.Regimen.repeat(D(1.0, 60.0, "central", duration=2.0), interval=8.0, count=5),
        IV_P,
        iv(
            lambda t, p: sum(
                infusion_amount(t, 60.0, 2.0, p["CL"], p["V"], t_start=1.0 + 8.0 * j)
                for j in range(5)
            )
        ),
    ),
    # 5. a lag time shifts the profile exactly
    "lag_bolus": Case(
        cp.Regimen([D(0.0, 100.0, "central", lag=2.5)]),
        IV_P,
        iv(lambda t, p: bolus_amount(t, 100.0, p["CL"], p["V"], t_dose=2.5)),
    ),
    "lag_infusion": Case(
        cp.Regimen([D(1.0, 100.0, "central", duration=3.0, lag=2.0)]),
        IV_P,
        iv(lambda t, p: infusion_amount(t, 100.0, 3.0, p["CL"], p["V"], t_start=3.0)),
    ),
    # 6. bioavailability: bolus; infusion with fixed duration (F scales the rate);
    #    infusion with fixed rate (F scales the duration: 60 mg at 25 mg/h = 2.4 h)
    "F_bolus": Case(
        cp.Regimen([D(0.0, 100.0, "central", bioavailability=0.6)]),
        IV_P,
        iv(lambda t, p: bolus_amount(t, 60.0, p["CL"], p["V"])),
    ),
    "F_infusion_duration": Case(
        cp.Regimen([D(1.0, 100.0, "central", duration=4.0, bioavailability=0.6)]),
        IV_P,
        iv(lambda t, p: infusion_amount(t, 60.0, 4.0, p["CL"], p["V"], t_start=1.0)),
    ),
    "F_infusion_rate": Case(
        cp.Regimen([D(1.0, 100.0, "central", rate=25.0, bioavailability=0.6)]),
        IV_P,
        iv(lambda t, p: infusion_amount(t, 60.0, 2.4, p["CL"], p["V"], t_start=1.0)),
    ),
    # 10. non-steady-state overlapping infusions: running infusions add their rates
    "overlapping_infusions": Case(
        cp.Regimen(
            [D(0.0, 100.0, "central", duration=10.0), D(4.0, 50.0, "central", duration=10.0)]
        ),
        IV_P,
        iv(
            lambda t, p: (
                infusion_amount(t, 100.0, 10.0, p["CL"], p["V"])
                + infusion_amount(t, 50.0, 10.0, p["CL"], p["V"], t_start=4.0)
            )
        ),
    ),
    "overlapping_repeat": Case(
        cp.Regimen.repeat(D(0.0, 100.0, "central", duration=20.0), interval=8.0, count=4),
        IV_P,
        iv(
            lambda t, p: sum(
                infusion_amount(t, 100.0, 20.0, p["CL"], p["V"], t_start=8.0 * j) for j in range(4)
            )
        ),
    ),
    # 8. SS=1 bolus: the state after the SS dose is the steady state (the earlier dose is
    #    ignored), and the curve after it decays from there
    "ss1_bolus": Case(
        cp.Regimen([D(0.0, 50.0, "central"), D(10.0, 100.0, "central", ss=1, ii=12.0)]),
        IV_P,
        iv(
            lambda t, p: _ss_after(
                t,
                10.0,
                bolus_amount(t, 50.0, p["CL"], p["V"]),
                ss_bolus_amount(np.maximum(t - 10.0, 0), 100.0, p["CL"], p["V"], 12.0),
            )
        ),
    ),
    # SS=1 then the regular doses: a periodic steady state from time 0
    "ss1_bolus_then_doses": Case(
        cp.Regimen([D(0.0, 100.0, "central", ss=1, ii=12.0)])
        + cp.Regimen.repeat(D(12.0, 100.0, "central"), interval=12.0, count=3),
        {"CL": 1.0, "V": 10.0},
        iv(
            lambda t, p: (
                ss_bolus_amount(t, 100.0, p["CL"], p["V"], 12.0)
                + sum(bolus_amount(t, 100.0, p["CL"], p["V"], t_dose=12.0 * j) for j in (1, 2, 3))
            )
        ),
    ),
    # SS=1 infusion (T < tau); an infusion running at the SS time is stopped
    "ss1_infusion": Case(
        cp.Regimen(
            [
                D(0.0, 30.0, "central", duration=15.0),
                D(10.0, 100.0, "central", duration=3.0, ss=1, ii=12.0),
            ]
        ),
        {"CL": 3.0, "V": 12.0},
        iv(
            lambda t, p: _ss_after(
                t,
                10.0,
                infusion_amount(t, 30.0, 15.0, p["CL"], p["V"]),
                ss_infusion_amount_closed(
                    np.maximum(t - 10.0, 0), 100.0, 3.0, p["CL"], p["V"], 12.0
                ),
            )
        ),
    ),
    # SS=1 infusion given by rate, with F (50 mg at 40 mg/h = 1.25 h)
    "ss1_infusion_rate_F": Case(
        cp.Regimen([D(10.0, 100.0, "central", rate=40.0, bioavailability=0.5, ss=1, ii=12.0)]),
        IV_P,
        iv(
            lambda t, p: _ss_after(
                t,
                10.0,
                0.0 * t,
                ss_infusion_amount_closed(
                    np.maximum(t - 10.0, 0), 50.0, 1.25, p["CL"], p["V"], 12.0
                ),
            )
        ),
    ),
    # 10. SS=1 with II shorter than the infusion: past infusions still run at the SS time
    "ss1_infusion_overlap": Case(
        cp.Regimen([D(10.0, 100.0, "central", duration=30.0, ss=1, ii=12.0)]),
        IV_P,
        iv(
            lambda t, p: _ss_after(
                t,
                10.0,
                0.0 * t,
                ss_infusion_amount_sum(np.maximum(t - 10.0, 0), 100.0, 30.0, p["CL"], p["V"], 12.0),
            )
        ),
    ),
    "ss1_infusion_overlap_multiple": Case(  # duration an exact multiple of II
        cp.Regimen([D(4.0, 100.0, "central", duration=24.0, ss=1, ii=12.0)]),
        {"CL": 1.0, "V": 10.0},
        iv(
            lambda t, p: _ss_after(
                t,
                4.0,
                0.0 * t,
                ss_infusion_amount_sum(np.maximum(t - 4.0, 0), 100.0, 24.0, p["CL"], p["V"], 12.0),
            )
        ),
    ),
    # 9. SS=2 adds the steady state to the current amount; a running infusion goes on
    "ss2_bolus": Case(
        cp.Regimen(
            [
                D(0.0, 30.0, "central", duration=15.0),
                D(10.0, 100.0, "central", ss=2, ii=12.0),
            ]
        ),
        IV_P,
        iv(
            lambda t, p: (
                infusion_amount(t, 30.0, 15.0, p["CL"], p["V"])
                + np.where(
                    t >= 10.0,
                    ss_bolus_amount(np.maximum(t - 10.0, 0), 100.0, p["CL"], p["V"], 12.0),
                    0.0,
                )
            )
        ),
    ),
    "ss2_infusion": Case(
        cp.Regimen(
            [D(0.0, 50.0, "central"), D(10.0, 100.0, "central", duration=3.0, ss=2, ii=12.0)]
        ),
        IV_P,
        iv(
            lambda t, p: (
                bolus_amount(t, 50.0, p["CL"], p["V"])
                + np.where(
                    t >= 10.0,
                    ss_infusion_amount_closed(
                        np.maximum(t - 10.0, 0), 100.0, 3.0, p["CL"], p["V"], 12.0
                    ),
                    0.0,
                )
            )
        ),
    ),
}

ORAL_P = {"ka": 1.5, "CL": 3.0, "V": 10.0}


def oral(dose: float, F: float = 1.0, lag: float = 0.0, t_dose: float = 0.0) -> Expected:
    def f(t: np.ndarray, p: dict[str, float]) -> dict[str, np.ndarray]:
        return {
            "central": bateman_central(t, dose, p["ka"], p["CL"], p["V"], F, lag, t_dose),
            "depot": bateman_depot(t, dose, p["ka"], F, lag, t_dose),
        }

    return f


def oral_sum(parts: list[Expected]) -> Expected:
    def f(t: np.ndarray, p: dict[str, float]) -> dict[str, np.ndarray]:
        vals = [g(t, p) for g in parts]
        return {s: sum(v[s] for v in vals) for s in ("central", "depot")}

    return f


def oral_ss(dose: float, tau: float, t_ss: float, n_past: int = 2000) -> Expected:
    """SS=1 oral dose at t_ss: sum of Bateman curves of the dose and n_past earlier ones
    (nothing before t_ss)."""

    def f(t: np.ndarray, p: dict[str, float]) -> dict[str, np.ndarray]:
        s = np.maximum(t - t_ss, 0.0)[None, :] + tau * np.arange(n_past + 1)[:, None]
        out = oral(dose)(s.ravel(), p)
        return {k: np.where(t >= t_ss, v.reshape(s.shape).sum(0), 0.0) for k, v in out.items()}

    return f


# --- one_cmt_oral (library model): depot = CMT 1, central = CMT 2
ORAL_CASES: dict[str, Case] = {
    "bateman_cmt_number": Case(cp.Regimen([D(0.0, 100.0, 1)]), ORAL_P, oral(100.0)),
    "repeat": Case(
        cp.Regimen.repeat(D(0.0, 100.0, "depot"), interval=12.0, count=4),
        {"ka": 0.8, "CL": 2.8, "V": 32.0},
        oral_sum([oral(100.0, t_dose=12.0 * j) for j in range(4)]),
    ),
    # 5. Dose(lag=...) shifts the profile; TIMES has t = lag exactly (depot = dose there)
    "lag": Case(cp.Regimen([D(0.0, 100.0, "depot", lag=1.5)]), ORAL_P, oral(100.0, lag=1.5)),
    "lag_F_later_dose": Case(
        cp.Regimen([D(2.0, 100.0, "depot", lag=0.75, bioavailability=0.7)]),
        ORAL_P,
        oral(100.0, F=0.7, lag=0.75, t_dose=2.0),
    ),
    # 8. SS=1 oral dose (two states at steady state)
    "ss1": Case(
        cp.Regimen([D(10.0, 100.0, "depot", ss=1, ii=12.0)]), ORAL_P, oral_ss(100.0, 12.0, 10.0)
    ),
    # SS=1 with a lag: the lag applies to the dose and to all the implied earlier doses
    # (NONMEM help, ABSORPTION LAG PARAMETER), and the SS record resets the state at its
    # own time; so between the record time (10 h) and the lagged dose (12 h) the state is
    # the tail of the previous, implied, dose at 0 h
    "ss1_lag": Case(
        cp.Regimen([D(10.0, 100.0, "depot", ss=1, ii=12.0, lag=2.0)]),
        ORAL_P,
        lambda t, p: {
            k: np.where(t >= 10.0, v, 0.0)
            for k, v in oral_sum(
                [oral(100.0, lag=2.0, t_dose=10.0 - 12.0 * j) for j in range(400)]
            )(t, p).items()
        },
    ),
    # 9. SS=2 on top of an earlier dose
    "ss2": Case(
        cp.Regimen([D(0.0, 100.0, "depot"), D(10.0, 100.0, "depot", ss=2, ii=12.0)]),
        ORAL_P,
        oral_sum([oral(100.0), oral_ss(100.0, 12.0, 10.0)]),
    ),
}

# --- one_cmt_oral with a model-file lag and bioavailability (5., 6.)
ORAL_LAG_P = {"ka": 1.5, "CL": 3.0, "V": 10.0, "tlag": 0.75, "F1": 0.6}
ORAL_LAG_CASES: dict[str, Case] = {
    "model_lag_F": Case(cp.Regimen([D(0.0, 100.0, "depot")]), ORAL_LAG_P, oral(100.0, 0.6, 0.75)),
    # the dose's own lag and F combine with the model's: lag 0.75 + 0.5, F 0.6 * 0.5
    "model_and_dose_lag_F": Case(
        cp.Regimen([D(1.0, 100.0, "depot", lag=0.5, bioavailability=0.5)]),
        {**ORAL_LAG_P, "tlag": 0.75},
        oral(100.0, 0.3, 1.25, t_dose=1.0),
    ),
    "model_lag_other_values": Case(
        cp.Regimen.repeat(D(0.0, 100.0, "depot"), interval=12.0, count=2),
        {**ORAL_LAG_P, "tlag": 2.0, "F1": 0.9},
        oral_sum([oral(100.0, 0.9, 2.0), oral(100.0, 0.9, 2.0, t_dose=12.0)]),
    ),
}


# --- one compartment with an initial amount A0 and modelled F1, rate R1, duration D1
IV_EVENTS_TOML = """
[model]
name = "one_cmt_iv_events"
description = "One compartment: initial amount, zero-order input kin, modelled F, rate, duration"
time_unit = "h"
amount_unit = "mg"

[parameters]
CL = { value = 2.0, unit = "L/h" }
V = { value = 10.0, unit = "L" }
A0 = { value = 0.0, unit = "mg" }
F1 = { value = 1.0, unit = "1" }
R1 = { value = 20.0, unit = "mg/h" }
D1 = { value = 3.0, unit = "h" }
kin = { value = 0.0, unit = "mg/h" }

[states]
central = { initial = "A0", unit = "mg" }

[flows]
"central ->" = "CL / V"

[odes]
central = "kin"

[observations]
conc = { expr = "central / V", unit = "mg/L", error = "proportional" }

[dosing]
central = { bioavailability = "F1", rate = "R1", duration = "D1" }
"""

EV_P = {"CL": 2.0, "V": 10.0, "A0": 0.0, "F1": 0.8, "R1": 20.0, "D1": 3.0, "kin": 0.0}
EV_RESET_P = {**EV_P, "A0": 5.0, "F1": 1.0}


def _a0(t: np.ndarray, p: dict[str, float], since: float = 0.0) -> np.ndarray:
    return p["A0"] * np.exp(-p["CL"] / p["V"] * (t - since))


def _before_reset(t: np.ndarray, p: dict[str, float]) -> np.ndarray:
    """A0 decaying plus a 100 mg infusion over 10 h from 0 (stopped by the reset at 6)."""
    return _a0(t, p) + infusion_amount(t, 100.0, 10.0, p["CL"], p["V"])


EVENT_CASES: dict[str, Case] = {
    # 7. modelled rate: 80 mg (F1 = 0.8) at R1 = 20 mg/h, so 4 h; modelled duration: D1 = 3 h
    "model_rate": Case(
        cp.Regimen([D(1.0, 100.0, "central", rate="model")]),
        EV_P,
        iv(lambda t, p: infusion_amount(t, 80.0, 4.0, p["CL"], p["V"], t_start=1.0)),
    ),
    "model_duration": Case(
        cp.Regimen([D(1.0, 100.0, "central", duration="model")]),
        EV_P,
        iv(lambda t, p: infusion_amount(t, 80.0, 3.0, p["CL"], p["V"], t_start=1.0)),
    ),
    "model_F_bolus": Case(
        cp.Regimen([D(1.0, 100.0, "central")]),
        EV_P,
        iv(lambda t, p: bolus_amount(t, 80.0, p["CL"], p["V"], t_dose=1.0)),
    ),
    # 11. EVID 3: back to the initial amount at 6 h; the running infusion stops
    "reset_evid3": Case(
        cp.Regimen(
            [D(0.0, 100.0, "central", duration=10.0), cp.Reset(6.0), D(20.0, 40.0, "central")]
        ),
        EV_RESET_P,
        iv(
            lambda t, p: np.where(
                t < 6.0,
                _before_reset(t, p),
                _a0(t, p, 6.0) + bolus_amount(t, 40.0, p["CL"], p["V"], t_dose=20.0),
            )
        ),
    ),
    # records at the same time act in their order: a dose then a reset at 6 h leaves the
    # initial amount (NONMEM processes event records one by one, in data order)
    "dose_then_reset_same_time": Case(
        cp.Regimen(
            [D(0.0, 100.0, "central", duration=10.0), D(6.0, 40.0, "central"), cp.Reset(6.0)]
        ),
        EV_RESET_P,
        iv(lambda t, p: np.where(t < 6.0, _before_reset(t, p), _a0(t, p, 6.0))),
    ),
    # EVID 4: reset, then dose
    "reset_dose_evid4": Case(
        cp.Regimen([D(0.0, 100.0, "central", duration=10.0), D(6.0, 40.0, "central", reset=True)]),
        EV_RESET_P,
        iv(
            lambda t, p: np.where(
                t < 6.0,
                _before_reset(t, p),
                _a0(t, p, 6.0) + bolus_amount(t, 40.0, p["CL"], p["V"], t_dose=6.0),
            )
        ),
    ),
    "reset_infusion_evid4": Case(
        cp.Regimen(
            [
                D(0.0, 100.0, "central", duration=10.0),
                D(6.0, 40.0, "central", duration=2.0, reset=True),
            ]
        ),
        EV_RESET_P,
        iv(
            lambda t, p: np.where(
                t < 6.0,
                _before_reset(t, p),
                _a0(t, p, 6.0) + infusion_amount(t, 40.0, 2.0, p["CL"], p["V"], t_start=6.0),
            )
        ),
    ),
}

# --- two_cmt_iv (13.)
TWO_P = {"CL": 2.0, "V1": 10.0, "Q": 4.0, "V2": 30.0}


def two(dose: float, t_dose: float = 0.0) -> Expected:
    def f(t: np.ndarray, p: dict[str, float]) -> dict[str, np.ndarray]:
        c, q = two_cmt_bolus(t, dose, p["CL"], p["V1"], p["Q"], p["V2"], t_dose)
        return {"central": c, "peripheral": q}

    return f


def two_ss(dose: float, tau: float, n_past: int = 2000) -> Expected:
    def f(t: np.ndarray, p: dict[str, float]) -> dict[str, np.ndarray]:
        s = t[None, :] + tau * np.arange(n_past + 1)[:, None]
        out = two(dose)(s.ravel(), p)
        return {k: v.reshape(s.shape).sum(0) for k, v in out.items()}

    return f


TWO_CASES: dict[str, Case] = {
    "bolus": Case(cp.Regimen([D(0.0, 100.0, "central")]), TWO_P, two(100.0)),
    "bolus_other_params": Case(
        cp.Regimen([D(2.0, 100.0, "central")]),
        {"CL": 5.0, "V1": 20.0, "Q": 1.0, "V2": 50.0},
        two(100.0, 2.0),
    ),
    "repeat": Case(
        cp.Regimen.repeat(D(0.0, 100.0, "central"), interval=12.0, count=4),
        TWO_P,
        lambda t, p: {
            k: sum(two(100.0, 12.0 * j)(t, p)[k] for j in range(4))
            for k in ("central", "peripheral")
        },
    ),
    "ss1_bolus": Case(
        cp.Regimen([D(0.0, 100.0, "central", ss=1, ii=12.0)]), TWO_P, two_ss(100.0, 12.0)
    ),
    # SS=1 infusion longer than the interval (18 h every 12 h) in two compartments
    "ss1_infusion_overlap": Case(
        cp.Regimen([D(6.0, 100.0, "central", duration=18.0, ss=1, ii=12.0)]),
        TWO_P,
        lambda t, p: {
            k: np.where(t >= 6.0, v, 0.0)
            for k, v in zip(
                ("central", "peripheral"),
                (
                    sum(parts)
                    for parts in zip(
                        *(
                            two_cmt_infusion(np.maximum(t - 6.0, 0.0) + 12.0 * j, 100.0, 18.0, **p)
                            for j in range(2000)
                        ),
                        strict=True,
                    )
                ),
                strict=True,
            )
        },
    ),
}


# ------------------------------------------------------------------ running the batches
def _write_oral_lag_model(directory: Path) -> Path:
    """models/one_cmt_oral.toml with parameters tlag, F1 and
    [dosing] depot = { lag = "tlag", bioavailability = "F1" }."""
    text = (MODELS / "one_cmt_oral.toml").read_text()
    old = 'depot = { lag = "0", bioavailability = "1" }'
    assert old in text, "models/one_cmt_oral.toml changed its [dosing] block"
    text = text.replace(old, 'depot = { lag = "tlag", bioavailability = "F1" }')
    text = text.replace(
        "[parameters]\n",
        '[parameters]\ntlag = { value = 0.0, unit = "h" }\nF1 = { value = 1.0, unit = "1" }\n',
        1,
    )
    path = directory / "one_cmt_oral_lag.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, cp.ModelSpec]:
    d = tmp_path_factory.mktemp("models")
    (d / "one_cmt_iv_events.toml").write_text(IV_EVENTS_TOML)
    return {
        "iv": cp.load_model("one_cmt_iv"),
        "oral": cp.load_model("one_cmt_oral"),
        "oral_lag": cp.load_model(str(_write_oral_lag_model(d))),
        "events": cp.load_model(str(d / "one_cmt_iv_events.toml")),
        "two": cp.load_model("two_cmt_iv"),
    }


GROUPS: dict[str, tuple[str, dict[str, Case]]] = {
    "iv": ("iv", IV_CASES),
    # one_cmt_oral cases run on the copy with [dosing] depot = { lag = "tlag",
    # bioavailability = "F1" } (defaults 0 and 1: the library model), sharing one compiled
    # program with the model-file lag cases; the library file itself runs in the
    # theophylline test
    "oral": ("oral_lag", {**ORAL_CASES, **ORAL_LAG_CASES}),
    "events": ("events", EVENT_CASES),
    "two": ("two", TWO_CASES),
}
_BATCHES: dict[tuple[Any, ...], xr.Dataset] = {}


def simulate_quietly(*args: Any, **kw: Any) -> xr.Dataset:
    """cp.simulate with failed subjects as NaN (checked per case through `status`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return cp.simulate(*args, on_failure="nan", rtol=ODE_TOL, atol=ODE_TOL, **kw)


def batch(specs: dict[str, cp.ModelSpec], group: str, solver: str) -> xr.Dataset:
    """All cases of a group as one batch of subjects (compiled once per group and solver)."""
    key = (group, solver, id(specs))
    if key not in _BATCHES:
        model, cases = GROUPS[group]
        spec = specs[model]
        names = list(cases)
        defaults = spec.defaults()
        keys = {k for c in names for k in cases[c].params}
        params = {k: np.array([cases[c].params.get(k, defaults[k]) for c in names]) for k in keys}
        regimens = [cases[c].regimen for c in names]
        _BATCHES[key] = simulate_quietly(spec, regimens, TIMES, params=params, solver=solver)
    return _BATCHES[key]


def check_case(
    specs: dict[str, cp.ModelSpec], group: str, name: str, solver: str
) -> tuple[xr.Dataset, int]:
    _, cases = GROUPS[group]
    res = batch(specs, group, solver)
    i = list(cases).index(name)
    case = cases[name]
    assert int(res["status"][i]) == 0, (
        f"solve failed: {cellpkpd.engine.solve.STATUS[int(res['status'][i])]}"
    )
    expected = case.expected(TIMES, case.params)
    for state, amount in expected.items():
        assert res[state].dtype == np.float64
        assert_close(res[state].values[i], amount, solver, f"{group}/{name}: {state}")
    volume = case.params.get("V", case.params.get("V1"))
    assert_close(res["conc"].values[i], expected["central"] / volume, solver, "conc")
    return res, i


# engine bugs, kept as strict xfails until fixed: (group, case) -> (solvers, reason)
KNOWN_BUGS: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {}


def _param(solver: str, group: str, name: str, extended: tuple[str, ...] = ()) -> Any:
    solvers, reason = KNOWN_BUGS.get((group, name), ((), ""))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if solver in solvers else []
    if solver in extended:
        marks.append(pytest.mark.extended)
    return pytest.param(solver, name, id=f"{solver}-{name}", marks=marks)


def cases_of(group: str, names: Any = None, extended: tuple[str, ...] = ()) -> list[Any]:
    """The (solver, case) parameters of a group; cases on the solvers in `extended` are
    marked `extended` (left out of the default run)."""
    return [_param(s, group, c, extended) for s in SOLVERS for c in (names or GROUPS[group][1])]


# ------------------------------------------------------------------ the event cases
@pytest.mark.parametrize(("solver", "name"), cases_of("iv"))
def test_one_cmt_iv_events_match_closed_forms(specs, solver: str, name: str) -> None:
    check_case(specs, "iv", name, solver)


# the ODE path meets every NONMEM record kind in CI through the one_cmt_iv and two_cmt_iv cases;
# its one_cmt_oral twin is `extended`
@pytest.mark.parametrize(("solver", "name"), cases_of("oral", ORAL_CASES, extended=("tsit5",)))
def test_one_cmt_oral_events_match_bateman(specs, solver: str, name: str) -> None:
    check_case(specs, "oral", name, solver)


@pytest.mark.parametrize(("solver", "name"), cases_of("oral", ORAL_LAG_CASES))
def test_model_file_lag_and_bioavailability(specs, solver: str, name: str) -> None:
    check_case(specs, "oral", name, solver)


@pytest.mark.parametrize(("solver", "name"), cases_of("events"))
def test_modelled_rate_duration_and_resets(specs, solver: str, name: str) -> None:
    check_case(specs, "events", name, solver)


@pytest.mark.parametrize(("solver", "name"), cases_of("two"))
def test_two_cmt_iv_matches_biexponential(specs, solver: str, name: str) -> None:
    check_case(specs, "two", name, solver)


@pytest.mark.parametrize("solver", SOLVERS)
def test_record_at_dose_time_reports_amount_after_dose(specs, solver: str) -> None:
    """12. explicit values at dose times (TIMES holds 12 h twice and 12 h - 1e-6)."""
    res, i = check_case(specs, "iv", "repeat_bolus", solver)
    k = 1.5 / 8.0
    conc = res["conc"].values[i]
    at = lambda t: np.flatnonzero(TIMES == t)
    assert_close(conc[at(0.0)], [100.0 / 8.0], solver)
    before = 100.0 / 8.0 * np.exp(-k * (12.0 - 1e-6))
    after = 100.0 / 8.0 * (1.0 + np.exp(-12.0 * k))
    assert_close(conc[at(12.0 - 1e-6)], [before], solver)
    assert_close(conc[at(12.0)], [after, after], solver)
    # a lagged dose enters at time + lag: the depot holds the dose exactly then
    res, i = check_case(specs, "oral", "lag", solver)
    assert_close(res["depot"].values[i][at(1.5)], [100.0], solver)
    assert_close(res["depot"].values[i][at(1.0)], [0.0], solver)


@pytest.mark.parametrize("solver", SOLVERS)
def test_state_right_after_ss_dose_is_steady_state(specs, solver: str) -> None:
    """8. at the SS=1 dose time: bolus D / (1 - e^{-k tau}) = trough + D; infusion: the
    pre-dose trough, R/k (1 - e^{-kT}) e^{-k(tau - T)} / (1 - e^{-k tau})."""
    at10 = np.flatnonzero(TIMES == 10.0)[0]
    res, i = check_case(specs, "iv", "ss1_bolus", solver)
    peak = 100.0 / (1.0 - np.exp(-0.2 * 12.0))
    assert_close(res["central"].values[i][at10], peak, solver)
    assert_close(peak - 100.0, ss_bolus_trough(100.0, 2.0, 10.0, 12.0), "exact")
    res, i = check_case(specs, "iv", "ss1_infusion", solver)
    k, R, T, tau = 3.0 / 12.0, 100.0 / 3.0, 3.0, 12.0
    trough = R / k * (1 - np.exp(-k * T)) * np.exp(-k * (tau - T)) / (1 - np.exp(-k * tau))
    assert_close(res["central"].values[i][at10], trough, solver)


# ------------------------------------------------------------------ NONMEM data records
OBS = np.array([0.0, 0.5, 1.0, 2.0, 5.0, 6.0, 8.0, 12.0, 12.5, 20.0, 24.0, 30.0, 36.0, 47.5])


def _records(sid: int, doses: list[dict[str, float]]) -> list[dict[str, float]]:
    """Dose/reset records and observation records at OBS; at equal times the dose or reset
    record comes first, so an observation there sees the state after it."""
    base = {"AMT": 0.0, "RATE": 0.0, "CMT": 1, "II": 0.0, "ADDL": 0, "SS": 0, "DV": np.nan}
    rows = [{**base, "ID": sid, "EVID": 1, **d} for d in doses]
    rows += [{**base, "ID": sid, "TIME": t, "EVID": 0} for t in OBS]
    return sorted(rows, key=lambda r: (r["TIME"], r["EVID"] == 0))


DATA_SUBJECTS: dict[str, tuple[list[dict[str, float]], dict[str, float], Expected]] = {
    # 4. ADDL/II = the explicit doses (next subject) = superposition
    "addl": (
        [{"TIME": 0.0, "AMT": 100.0, "II": 12.0, "ADDL": 3}],
        {**EV_P, "F1": 1.0},
        iv(lambda t, p: sum(bolus_amount(t, 100.0, 2.0, 10.0, 12.0 * j) for j in range(4))),
    ),
    "explicit": (
        [{"TIME": 12.0 * j, "AMT": 100.0} for j in range(4)],
        {**EV_P, "F1": 1.0},
        iv(lambda t, p: sum(bolus_amount(t, 100.0, 2.0, 10.0, 12.0 * j) for j in range(4))),
    ),
    # 7. RATE = -1 (rate R1 from the model), RATE = -2 (duration D1), with F1 = 0.8
    "rate_-1": (
        [{"TIME": 1.0, "AMT": 100.0, "RATE": -1.0}],
        EV_P,
        iv(lambda t, p: infusion_amount(t, 80.0, 4.0, 2.0, 10.0, 1.0)),
    ),
    "rate_-2": (
        [{"TIME": 1.0, "AMT": 100.0, "RATE": -2.0}],
        EV_P,
        iv(lambda t, p: infusion_amount(t, 80.0, 3.0, 2.0, 10.0, 1.0)),
    ),
    # 11. EVID 3 and EVID 4 records, a 10 mg/h infusion running from 0
    "evid3": (
        [{"TIME": 0.0, "AMT": 100.0, "RATE": 10.0}, {"TIME": 6.0, "EVID": 3, "CMT": np.nan}],
        EV_RESET_P,
        iv(lambda t, p: np.where(t < 6.0, _before_reset(t, p), _a0(t, p, 6.0))),
    ),
    "evid4": (
        [{"TIME": 0.0, "AMT": 100.0, "RATE": 10.0}, {"TIME": 6.0, "EVID": 4, "AMT": 40.0}],
        EV_RESET_P,
        iv(
            lambda t, p: np.where(
                t < 6.0, _before_reset(t, p), _a0(t, p, 6.0) + bolus_amount(t, 40.0, 2.0, 10.0, 6.0)
            )
        ),
    ),
    # 8. SS=1 with ADDL: a periodic steady state from time 0; SS=1 infusion by RATE
    "ss1_addl": (
        [{"TIME": 0.0, "AMT": 100.0, "II": 12.0, "ADDL": 3, "SS": 1}],
        {**EV_P, "F1": 1.0},
        iv(
            lambda t, p: (
                ss_bolus_amount(t, 100.0, 2.0, 10.0, 12.0)
                + sum(bolus_amount(t, 100.0, 2.0, 10.0, 12.0 * j) for j in (1, 2, 3))
            )
        ),
    ),
    "ss1_rate_addl": (
        [{"TIME": 0.0, "AMT": 100.0, "RATE": 50.0, "II": 12.0, "ADDL": 2, "SS": 1}],
        {**EV_P, "F1": 1.0},
        iv(
            lambda t, p: (
                ss_infusion_amount_closed(t, 100.0, 2.0, 2.0, 10.0, 12.0)
                + sum(infusion_amount(t, 100.0, 2.0, 2.0, 10.0, 12.0 * j) for j in (1, 2))
            )
        ),
    ),
    # 9. SS=2 with a zero-order endogenous input kin at its baseline A0 = kin V / CL = 5 mg:
    # superposition adds the dose's own steady state to the current (baseline) amount
    "ss2_endogenous": (
        [{"TIME": 10.0, "AMT": 100.0, "II": 12.0, "SS": 2}],
        {**EV_P, "F1": 1.0, "kin": 1.0, "A0": 5.0},
        iv(
            lambda t, p: (
                5.0
                + np.where(
                    t >= 10.0, ss_bolus_amount(np.maximum(t - 10.0, 0), 100.0, 2.0, 10.0, 12.0), 0
                )
            )
        ),
    ),
}


@pytest.fixture(scope="module")
def nonmem_data() -> cp.Dataset:
    rows = []
    for sid, (doses, _, _) in enumerate(DATA_SUBJECTS.values(), start=1):
        rows += _records(sid, doses)
    return cp.read_nonmem(pd.DataFrame(rows))


@pytest.mark.parametrize(
    ("solver", "name"), [_param(s, "data", c) for s in SOLVERS for c in DATA_SUBJECTS]
)
def test_nonmem_records_match_closed_forms(specs, nonmem_data, solver: str, name: str) -> None:
    """4., 7., 8., 11. via read_nonmem: ADDL, RATE -1/-2, EVID 3/4, SS with ADDL. Every
    record (doses and resets included) reports the state after its event."""
    key = ("data", solver, id(specs))
    if key not in _BATCHES:
        params = {
            k: np.array([p[k] for _, p, _ in DATA_SUBJECTS.values()])
            for k in ("A0", "F1", "R1", "D1", "kin")
        }
        _BATCHES[key] = simulate_quietly(
            specs["events"], data=nonmem_data, params=params, solver=solver
        )
    res = _BATCHES[key]
    i = list(DATA_SUBJECTS).index(name)
    _, p, expected = DATA_SUBJECTS[name]
    assert int(res["status"][i]) == 0
    n = int(np.sum(np.isfinite(res["time"].values[i])))
    t = res["time"].values[i][:n]
    assert_close(res["central"].values[i][:n], expected(t, p)["central"], solver, name)
    if name == "addl":  # the same as the explicit doses at every observation record
        j = list(DATA_SUBJECTS).index("explicit")
        obs = lambda k: res["central"].values[k][res["evid"].values[k] == 0]
        assert_close(obs(i), obs(j), solver)


@pytest.mark.parametrize("solver", SOLVERS)
def test_records_at_equal_times_act_in_file_order(specs, solver: str) -> None:
    """As NONMEM reads records: an observation listed before the dose at its TIME reports
    the amount before the dose (a trough), one listed after it the amount after; the dose
    record itself reports the amount after its dose; an ADDL copy acts before the
    observation records at its time (mrgsolve's default); an EVID 3 reset listed after an
    observation leaves that observation alone. The fit's likelihood uses the same order."""
    k, V, D = 2.0 / 10.0, 10.0, 100.0
    base = {"ID": 1, "AMT": 0.0, "CMT": 1, "II": 0.0, "ADDL": 0, "DV": 1.0}
    rows = [
        {**base, "TIME": 0.0, "EVID": 0},  # before the first dose: 0
        {**base, "TIME": 0.0, "EVID": 1, "AMT": D, "DV": np.nan},
        {**base, "TIME": 0.0, "EVID": 0},  # after it: D
        {**base, "TIME": 12.0, "EVID": 0},  # trough before the second dose
        {**base, "TIME": 12.0, "EVID": 1, "AMT": D, "II": 12.0, "ADDL": 1, "DV": np.nan},
        {**base, "TIME": 12.0, "EVID": 0},  # peak
        {**base, "TIME": 24.0, "EVID": 0},  # the ADDL copy at 24 h has acted
        {**base, "TIME": 30.0, "EVID": 0},  # listed before the reset at 30 h
        {**base, "TIME": 30.0, "EVID": 3, "CMT": np.nan, "DV": np.nan},
        {**base, "TIME": 30.0, "EVID": 0},  # after it: 0
    ]
    data = cp.read_nonmem(pd.DataFrame(rows))
    assert data.subjects()[0].events_before.tolist() == [0, 1, 1, 1, 2, 2, 3, 3, 4, 4]
    a12 = D * np.exp(-12 * k)
    a24 = (a12 + D) * np.exp(-12 * k) + D
    expected = [0.0, D, D, a12, a12 + D, a12 + D, a24, a24 * np.exp(-6 * k), 0.0, 0.0]
    res = simulate_quietly(specs["iv"], data=data, solver=solver)
    assert int(res["status"][0]) == 0
    assert_close(res["central"].values[0], expected, solver)
    # the likelihood's predictions (what cp.fit compares with DV) follow the same order
    from cellpkpd.infer.data import FitData
    from cellpkpd.infer.likelihood import solve_draws

    fd = FitData.build(specs["iv"], data)
    draws = {"CL": np.full((1, 1), 2.0), "V": np.full((1, 1), V)}
    pred = solve_draws(specs["iv"], fd, cp.Population(), draws, solver)[0][0]
    assert_close(pred[fd.observed[0]], np.asarray(expected)[fd.observed[0]] / V, solver)


@pytest.mark.parametrize("solver", SOLVERS)
def test_steady_state_takes_the_parameters_of_its_record(specs, solver: str) -> None:
    """NONMEM computes an SS dose's steady state with the parameters of the SS record: CL
    given as a data column, 4 L/h until 100 h and 1 L/h from then on; an SS=1 bolus at
    200 h reaches D / (1 - exp(-CL/V ii)) with CL = 1, not the first record's CL = 4 or the
    model file's CL = 2."""
    rows = [
        {"ID": 1, "TIME": 0.0, "EVID": 0, "AMT": 0.0, "CMT": 1, "CL": 4.0},
        {"ID": 1, "TIME": 100.0, "EVID": 0, "AMT": 0.0, "CMT": 1, "CL": 1.0},
        {"ID": 1, "TIME": 200.0, "EVID": 1, "AMT": 100.0, "CMT": 1, "SS": 1, "II": 12.0,
         "CL": 1.0},
        {"ID": 1, "TIME": 206.0, "EVID": 0, "AMT": 0.0, "CMT": 1, "CL": 1.0},
    ]  # fmt: skip
    data = cp.read_nonmem(pd.DataFrame(rows))
    peak = 100.0 / (1.0 - np.exp(-1.0 / 10.0 * 12.0))
    res = simulate_quietly(specs["iv"], data=data, solver=solver)
    assert int(res["status"][0]) == 0
    assert_close(res["central"].values[0][2:], [peak, peak * np.exp(-0.6)], solver)


_BREAKPOINT_SS = """
[model]
name = "bp_ss"
time_unit = "h"
amount_unit = "mg"
breakpoints = { faster = "Tsw" }
[parameters]
CL = { value = 2.0, bounds = [0.0, inf] }
V = { value = 10.0, bounds = [0.0, inf] }
Tsw = { value = 30.0, bounds = [0.0, inf] }
[states]
central = { initial = 0.0 }
[flows]
"central ->" = "CL / V * (1 + faster)"
"""


@pytest.mark.parametrize("solver", ["exact", pytest.param("tsit5", marks=pytest.mark.extended)])
def test_steady_state_in_a_model_with_breakpoints(tmp_path: Path, solver: str) -> None:
    """An SS=1 bolus at 0 in a model whose elimination doubles at Tsw = 30 h: the steady
    state takes the flags at its record (k = 0.2/h), the switch comes later."""
    path = tmp_path / "bp_ss.toml"
    path.write_text(_BREAKPOINT_SS)
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central", ss=1, ii=12.0)])
    times = np.array([0.0, 6.0, 36.0])
    res = simulate_quietly(cp.load_model(path), reg, times, solver=solver)
    assert int(res["status"][0]) == 0
    peak = 100.0 / (1.0 - np.exp(-0.2 * 12.0))
    expected = [peak, peak * np.exp(-1.2), peak * np.exp(-0.2 * 30.0 - 0.4 * 6.0)]
    assert_close(res["central"].values[0], expected, solver)


def test_exact_path_keeps_nearly_equal_segment_lengths_apart() -> None:
    """Segment lengths share a matrix exponential only within 1e-10 relative: 1 h and
    1 + 1e-8 h at k = 50/h over a 5e4 h horizon stay apart (once merged by a tolerance
    scaled to the horizon: 5e-7 relative error)."""
    spec = cp.load_model("one_cmt_iv")
    times = np.array([0.0, 1.0 + 1e-8, 100.0, 101.0, 5e4])
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central"), cp.Dose(100.0, 100.0, "central")])
    res = cp.simulate(spec, reg, times, params={"CL": 500.0, "V": 10.0})
    central = res["central"].values[0]
    np.testing.assert_allclose(central[1], 100.0 * np.exp(-50.0 * (1.0 + 1e-8)), rtol=1e-11)
    np.testing.assert_allclose(central[3], 100.0 * np.exp(-50.0), rtol=1e-11)


# ------------------------------------------------------------------ subjects and data sets
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("name", ["bolus", "repeat_bolus"])
def test_each_subject_equals_its_single_simulation(specs, solver: str, name: str) -> None:
    """14. in a batch with different regimens (numbers and times of doses) and parameters,
    every subject equals its own single-subject simulation (and its closed form)."""
    res, i = check_case(specs, "iv", name, solver)
    case = IV_CASES[name]
    single = simulate_quietly(specs["iv"], case.regimen, TIMES, params=case.params, solver=solver)
    assert single.sizes["subject"] == 1
    assert int(single["status"][0]) == 0
    for v in ("central", "conc"):
        assert_close(res[v].values[i], single[v].values[0], solver, v)


@pytest.mark.parametrize("solver", SOLVERS)
def test_theophylline_data_set_matches_bateman(specs, theophylline_csv, solver: str) -> None:
    """15. simulate(spec, data=) on the theophylline data with typical values: each
    subject's records follow the Bateman function of its own dose."""
    spec = specs["oral"]
    p = spec.defaults()
    data = cp.read_nonmem(theophylline_csv)
    res = cp.simulate(spec, data=data, solver=solver, rtol=ODE_TOL, atol=ODE_TOL)
    frame = data.frame
    assert res.sizes["subject"] == 12
    for i, sid in enumerate(res["subject"].values):
        rec = frame[frame["ID"] == sid]
        dose = float(rec.loc[rec["EVID"] == 1, "AMT"].iloc[0])
        t = rec["TIME"].to_numpy(dtype=float)
        n = t.size
        np.testing.assert_array_equal(res["time"].values[i][:n], t)
        central = bateman_central(t, dose, p["ka"], p["CL"], p["V"])
        assert_close(res["central"].values[i][:n], central, solver, f"ID {sid}")
        assert_close(res["conc"].values[i][:n], central / p["V"], solver, f"ID {sid}")
        depot = bateman_depot(t, dose, p["ka"])
        assert_close(res["depot"].values[i][:n], depot, solver, f"ID {sid}")
