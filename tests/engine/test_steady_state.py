"""Steady-state records beyond the periodic dose: the constant-infusion steady state
(SS = 1/2, AMT = 0, II = 0), implied infusions that outlast the interval when their length
comes from the model (RATE = -1/-2), and steady-state doses with a lag >= II.

Expected values are closed forms (Css = R / CL; one-compartment washout; two-compartment
equilibrium; Michaelis-Menten washout through the Lambert W function) or superpositions of
the implied single doses (conftest). Each model's cases are one batch of subjects, so each
test group compiles one program per solver.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import bolus_amount, infusion_amount
from scipy.special import lambertw

import cellpkpd as cp
import cellpkpd.engine.dosing
import cellpkpd.engine.solve

D = cp.Dose
ODE_TOL = 1e-8
# exact path: matrix exponentials and a linear solve of small well-conditioned systems,
# float64 round-off only; ODE path (Tsit5, rtol = atol = 1e-8 per step; the constant-
# infusion steady state iterated until the change over an interval is < 1e-8 relative):
# global error well within 100x of that, hence 1e-6 (and atol 1e-6 mg for amounts that
# decay towards zero).
RTOL = {"exact": 1e-10, "tsit5": 1e-6}
ATOL = {"exact": 1e-10, "tsit5": 1e-6}
SOLVERS = ("exact", pytest.param("tsit5", marks=pytest.mark.slow))
CL, V = 2.0, 10.0
K = CL / V
T = np.array([0.0, 4.0, 10.0, 11.0, 14.0, 22.0, 25.0, 34.0, 40.0, 60.0])


def close(actual: Any, expected: Any, solver: str, what: str = "") -> None:
    np.testing.assert_allclose(
        np.asarray(actual, float), expected, rtol=RTOL[solver], atol=ATOL[solver], err_msg=what
    )


def quietly(*args: Any, **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return cp.simulate(*args, on_failure="nan", rtol=ODE_TOL, atol=ODE_TOL, **kw)


def after(t: np.ndarray, t_rec: float, before: Any, from_rec: Any) -> np.ndarray:
    return np.where(t < t_rec, before, from_rec)


def implied_boluses(t: np.ndarray, dose: float, t_rec: float, lag: float, ii: float) -> Any:
    """SS=1 bolus at t_rec with a lag: the dose and every implied earlier one enter at
    t_rec + lag - j ii (j = 0, 1, ...), also those that fall after t_rec (lag >= ii)."""
    return sum(bolus_amount(t, dose, CL, V, t_rec + lag - j * ii) for j in range(600))


def implied_infusions(
    t: np.ndarray, dose: float, dur: float, t_rec: float, lag: float, ii: float
) -> Any:
    """SS=1 infusion at t_rec: the dose and every implied earlier one, each `dur` long from
    t_rec + lag - j ii, by exact piecewise integration (superposition)."""
    return sum(
        infusion_amount(t, dose, dur, CL, V, t_start=t_rec + lag - j * ii) for j in range(600)
    )


# ------------------------------------------------------------------ cp.Dose, one_cmt_iv
R = 10.0  # mg/h: Css = R / CL = 5 mg/L, amount R / k = 50 mg
IV_CASES: dict[str, tuple[cp.Regimen, Any]] = {
    # SS=1 constant infusion: the state is the plateau R / k at the record (an earlier bolus
    # is zeroed out), and the infusion stops there: washout R / k e^{-k (t - 10)}
    "constant_ss1": (
        cp.Regimen([D(0.0, 80.0, "central"), D(10.0, 0.0, "central", rate=R, ss=1)]),
        lambda t: after(t, 10.0, bolus_amount(t, 80.0, CL, V), R / K * np.exp(-K * (t - 10.0))),
    ),
    # ... and with a later infusion the washout and the new input superpose
    "constant_ss1_then_infusion": (
        cp.Regimen([D(10.0, 0.0, "central", rate=R, ss=1), D(22.0, 60.0, "central", rate=R)]),
        lambda t: after(
            t,
            10.0,
            0.0 * t,
            R / K * np.exp(-K * (t - 10.0)) + infusion_amount(t, 60.0, 6.0, CL, V, 22.0),
        ),
    ),
    # SS=2: the plateau is added to the current amount (the bolus goes on decaying)
    "constant_ss2": (
        cp.Regimen([D(0.0, 80.0, "central"), D(10.0, 0.0, "central", rate=R, ss=2)]),
        lambda t: (
            bolus_amount(t, 80.0, CL, V) + after(t, 10.0, 0.0 * t, R / K * np.exp(-K * (t - 10.0)))
        ),
    ),
    # lag 15 h >= II 12 h: the implied doses entering at 13 h (and the record's own at
    # 25 h) come after the record at 10 h
    "bolus_lag_ge_ii": (
        cp.Regimen([D(10.0, 100.0, "central", ss=1, ii=12.0, lag=15.0)]),
        lambda t: after(t, 10.0, 0.0 * t, implied_boluses(t, 100.0, 10.0, 15.0, 12.0)),
    ),
    # lag equal to II: the implied dose at the record time is part of the steady state
    "bolus_lag_eq_ii": (
        cp.Regimen([D(10.0, 100.0, "central", ss=1, ii=12.0, lag=12.0)]),
        lambda t: after(t, 10.0, 0.0 * t, implied_boluses(t, 100.0, 10.0, 12.0, 12.0)),
    ),
    # an infusion (5 h) with lag 20 h, II 12 h: one implied infusion still to start (18 h)
    # and the one started at 6 h still running at the record
    "infusion_lag_ge_ii": (
        cp.Regimen([D(10.0, 100.0, "central", duration=5.0, ss=1, ii=12.0, lag=20.0)]),
        lambda t: after(t, 10.0, 0.0 * t, implied_infusions(t, 100.0, 5.0, 10.0, 20.0, 12.0)),
    ),
}


@pytest.fixture(scope="module")
def iv_batches() -> dict[str, Any]:
    return {}


# the ODE path's steady states are checked in CI against the same closed forms through data
# records (test_nonmem_steady_state_records); this batch's tsit5 twin is `extended`
@pytest.mark.parametrize(
    "solver", ["exact", pytest.param("tsit5", marks=[pytest.mark.slow, pytest.mark.extended])]
)
@pytest.mark.parametrize("name", list(IV_CASES))
def test_dose_steady_states_match_closed_forms(iv_batches, solver: str, name: str) -> None:
    if solver not in iv_batches:
        regimens = [reg for reg, _ in IV_CASES.values()]
        iv_batches[solver] = quietly(
            cp.load_model("one_cmt_iv"), regimens, T, params={"CL": CL, "V": V}, solver=solver
        )
    res = iv_batches[solver]
    i = list(IV_CASES).index(name)
    assert int(res["status"][i]) == 0, cellpkpd.engine.solve.STATUS[int(res["status"][i])]
    close(res["central"].values[i], IV_CASES[name][1](T), solver, name)


def test_constant_infusion_plateau_is_r_over_cl(iv_batches) -> None:
    """Css = R / CL = 5 mg/L at the record, whatever the earlier bolus."""
    if "exact" not in iv_batches:
        test_dose_steady_states_match_closed_forms(iv_batches, "exact", "constant_ss1")
    res = iv_batches["exact"]
    i = list(IV_CASES).index("constant_ss1")
    at = int(np.flatnonzero(T == 10.0)[0])
    np.testing.assert_allclose(res["conc"].values[i][at], R / CL, rtol=1e-12)


def test_two_compartment_constant_infusion_equilibrium() -> None:
    """At the steady state of a constant infusion every compartment has the plasma
    concentration R / CL (central R V1 / CL, peripheral R V2 / CL); the washout after the
    record is the bi-exponential free decay from there (checked against scipy's expm)."""
    from scipy.linalg import expm

    spec = cp.load_model("two_cmt_iv")
    p = {"CL": 2.0, "V1": 10.0, "Q": 4.0, "V2": 30.0}
    reg = cp.Regimen([D(5.0, 0.0, "central", rate=R, ss=1)])
    t = np.array([5.0, 8.0, 30.0])
    res = quietly(spec, reg, t, params=p, solver="exact")
    assert int(res["status"][0]) == 0
    x0 = np.array([R * p["V1"] / p["CL"], R * p["V2"] / p["CL"]])
    A = np.array([[-(p["CL"] + p["Q"]) / p["V1"], p["Q"] / p["V2"]],
                  [p["Q"] / p["V1"], -p["Q"] / p["V2"]]])  # fmt: skip
    expected = np.array([expm(A * (s - 5.0)) @ x0 for s in t])
    got = np.column_stack([res["central"].values[0], res["peripheral"].values[0]])
    np.testing.assert_allclose(got, expected, rtol=1e-10)


# ------------------------------------------------------------------ NONMEM records
MODEL_TOML = """
[model]
name = "one_cmt_dosing"
time_unit = "h"
amount_unit = "mg"
[parameters]
CL = { value = 2.0 }
V = { value = 10.0 }
R1 = { value = 20.0 }
D1 = { value = 3.0 }
tlag = { value = 0.0 }
kin = { value = 0.0 }
[states]
central = { initial = 0.0 }
[flows]
"central ->" = "CL / V"
[odes]
central = "kin"
[observations]
conc = { expr = "central / V", unit = "mg/L" }
[dosing]
central = { lag = "tlag", rate = "R1", duration = "D1" }
"""
OBS = [0.0, 5.0, 10.0, 12.0, 16.0, 22.0, 30.0, 41.0]
# subject -> (dose record, R1, D1, tlag, expected amount)
REC = {"ID": 1, "TIME": 10.0, "AMT": 100.0, "CMT": 1, "EVID": 1, "II": 12.0, "SS": 1}
DATA = {
    # 8. modelled duration 30 h > II 12 h (RATE = -2): the implied infusions started at
    # -2 h and -14 h still run after the record at 10 h
    "rate_-2_duration_30": (
        {**REC, "RATE": -2.0},
        20.0, 30.0, 0.0,
        lambda t: after(t, 10.0, 0.0 * t, implied_infusions(t, 100.0, 30.0, 10.0, 0.0, 12.0)),
    ),
    # the same length from a modelled rate (RATE = -1, R1 = 100 / 30 mg/h)
    "rate_-1_duration_30": (
        {**REC, "RATE": -1.0},
        100.0 / 30.0, 3.0, 0.0,
        lambda t: after(t, 10.0, 0.0 * t, implied_infusions(t, 100.0, 30.0, 10.0, 0.0, 12.0)),
    ),
    # ... and an explicit RATE with the same length
    "rate_given_duration_30": (
        {**REC, "RATE": 100.0 / 30.0},
        20.0, 3.0, 0.0,
        lambda t: after(t, 10.0, 0.0 * t, implied_infusions(t, 100.0, 30.0, 10.0, 0.0, 12.0)),
    ),
    # 10. a modelled lag (ALAG) of 27 h >= II 12 h on a bolus
    "model_lag_ge_ii": (
        {**REC, "RATE": 0.0},
        20.0, 3.0, 27.0,
        lambda t: after(t, 10.0, 0.0 * t, implied_boluses(t, 100.0, 10.0, 27.0, 12.0)),
    ),
    # 4. constant-infusion steady state at the modelled rate R1 = 10 mg/h (RATE = -1,
    # AMT = 0, II = 0); the lag does not apply to it
    "constant_rate_-1": (
        {**REC, "AMT": 0.0, "II": 0.0, "RATE": -1.0},
        10.0, 3.0, 2.0,
        lambda t: after(t, 10.0, 0.0 * t, 10.0 / K * np.exp(-K * (t - 10.0))),
    ),
    # ... at RATE = 8 mg/h
    "constant_rate_8": (
        {**REC, "AMT": 0.0, "II": 0.0, "RATE": 8.0},
        20.0, 3.0, 0.0,
        lambda t: after(t, 10.0, 0.0 * t, 8.0 / K * np.exp(-K * (t - 10.0))),
    ),
}  # fmt: skip
KIN = 3.0  # mg/h, the model's own zero-order input in one more subject:
# RATE = 0: the steady state of the model's own inputs, kin / k = 15 mg, which holds on
DATA["constant_rate_0_endogenous"] = (
    {**REC, "AMT": 0.0, "II": 0.0, "RATE": 0.0},
    20.0, 3.0, 0.0,
    lambda t: after(t, 10.0, KIN / K * (1.0 - np.exp(-K * t)), KIN / K + 0.0 * t),
)  # fmt: skip


@pytest.fixture(scope="module")
def dosing_model(tmp_path_factory: pytest.TempPathFactory) -> cp.ModelSpec:
    path = tmp_path_factory.mktemp("ss") / "one_cmt_dosing.toml"
    path.write_text(MODEL_TOML)
    return cp.load_model(path)


def _data() -> cp.Dataset:
    rows = []
    for sid, (rec, *_ignored) in enumerate(DATA.values(), start=1):
        rows.append({**rec, "ID": sid})
        base = {"ID": sid, "AMT": 0.0, "RATE": 0.0, "CMT": 1, "EVID": 0, "II": 0.0, "SS": 0}
        rows += [{**base, "TIME": t} for t in OBS]
    rows.sort(key=lambda r: (r["ID"], r["TIME"], r["EVID"] == 0))
    return cp.read_nonmem(pd.DataFrame(rows))


@pytest.fixture(scope="module")
def data_batches() -> dict[str, Any]:
    return {}


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("name", list(DATA))
def test_nonmem_steady_state_records(dosing_model, data_batches, solver: str, name: str) -> None:
    """Every record reports the state after its event; observations at the record time
    (listed after it) see the steady state."""
    if solver not in data_batches:
        params = {
            k: np.array([v[j] for v in DATA.values()])
            for j, k in ((1, "R1"), (2, "D1"), (3, "tlag"))
        }
        params["kin"] = np.array([KIN * (n == "constant_rate_0_endogenous") for n in DATA])
        data_batches[solver] = quietly(dosing_model, data=_data(), params=params, solver=solver)
    res = data_batches[solver]
    i = list(DATA).index(name)
    assert int(res["status"][i]) == 0, cellpkpd.engine.solve.STATUS[int(res["status"][i])]
    n = int(np.sum(np.isfinite(res["time"].values[i])))
    t = res["time"].values[i][:n]
    close(res["central"].values[i][:n], DATA[name][4](t), solver, name)


def test_issue_example_trough_of_overlapping_modelled_infusion(dosing_model, data_batches):
    """Issue 14 item 8: 100 mg over a modelled 30 h every 12 h, CL 2 L/h, V 10 L: the
    amount 12 h after the SS record is 37.2 mg by superposition (was 18.5: the implied
    infusions still running were dropped)."""
    if "exact" not in data_batches:
        test_nonmem_steady_state_records(dosing_model, data_batches, "exact", "rate_-2_duration_30")
    res = data_batches["exact"]
    i = list(DATA).index("rate_-2_duration_30")
    at = int(np.flatnonzero(res["time"].values[i] == 22.0)[0])
    reference = implied_infusions(np.array([22.0]), 100.0, 30.0, 10.0, 0.0, 12.0)[0]
    assert round(float(reference), 1) == 37.2
    np.testing.assert_allclose(res["central"].values[i][at], reference, rtol=1e-10)


@pytest.mark.slow
def test_too_many_implied_doses_for_the_slots_is_status_7(dosing_model) -> None:
    """A modelled lag of 61 h with II 12 h leaves 5 implied doses after the record, more
    than the SS_MODEL_SLOTS = 4 slots: the subject fails with status 7, never silently."""
    assert cellpkpd.engine.dosing.SS_MODEL_SLOTS == 4
    reg = cp.Regimen([D(0.0, 100.0, "central", ss=1, ii=12.0)])
    t = np.array([0.0, 30.0])
    res = quietly(dosing_model, reg, t, params={"tlag": 61.0}, solver="exact")
    assert int(res["status"][0]) == 7
    assert np.all(np.isnan(res["central"].values[0]))
    with pytest.raises(cp.SimulationError, match="implied earlier doses"):
        cp.simulate(dosing_model, reg, t, params={"tlag": 61.0}, solver="exact")
    # with the slots raised through the functional core it is solved
    sim = cp.Simulator(dosing_model, t, outputs=("conc",))
    y = sim({"tlag": 61.0}, reg.to_arrays(spec=dosing_model, ss_overlap=5))["conc"]
    expected = implied_boluses(t, 100.0, 0.0, 61.0, 12.0) / V
    np.testing.assert_allclose(y, expected, rtol=1e-10)


@pytest.mark.slow
def test_gradient_through_modelled_overlapping_infusion(dosing_model) -> None:
    """d conc / d D1 (modelled duration 30 h, II 12 h, SS=1) at 12 h and 25 h after the
    record against a central difference (h = 1e-4 h; the exact path is accurate to float64
    round-off, so the difference is good to ~1e-8 relative)."""
    import jax

    t = np.array([22.0, 35.0])
    reg = cp.Regimen([D(10.0, 100.0, "central", duration="model", ss=1, ii=12.0)])
    doses = reg.to_arrays(spec=dosing_model)
    sim = cp.Simulator(dosing_model, t, outputs=("conc",))
    f = jax.jit(lambda d1: sim({"D1": d1}, doses)["conc"])  # compiled once, not op by op
    grad = jax.jit(jax.jacfwd(f))(30.0)
    h = 1e-4
    fd = (np.asarray(f(30.0 + h)) - np.asarray(f(30.0 - h))) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6)
    assert np.all(np.abs(fd) > 1e-3)  # the derivative is not trivially zero


# ------------------------------------------------------------------ nonlinear model
MM_TOML = """
[model]
name = "one_cmt_mm"
time_unit = "h"
amount_unit = "mg"
[parameters]
V = { value = 10.0 }
Vmax = { value = 20.0 }
Km = { value = 2.0 }
[states]
central = { initial = 0.0 }
[derived]
C = "central / V"
[odes]
central = "-Vmax * C / (Km + C)"
[observations]
conc = { expr = "C", unit = "mg/L" }
"""


@pytest.mark.slow
def test_nonlinear_constant_infusion_steady_state(tmp_path: Path) -> None:
    """Michaelis-Menten elimination under a constant infusion R < Vmax: Css = Km R /
    (Vmax - R) (R = Vmax Css / (Km + Css)); after the record the infusion has stopped and
    C follows the Lambert-W washout C = Km W(C0/Km exp((C0 - Vmax/V t)/Km))."""
    path = tmp_path / "mm.toml"
    path.write_text(MM_TOML)
    spec = cp.load_model(path)
    Vm, Km, Vd, rate = 20.0, 2.0, 10.0, 12.0
    reg = cp.Regimen([D(0.0, 30.0, "central"), D(5.0, 0.0, "central", rate=rate, ss=1)])
    t = np.array([5.0, 6.0, 10.0, 20.0])
    res = quietly(spec, reg, t, solver="tsit5")
    assert int(res["status"][0]) == 0
    c0 = Km * rate / (Vm - rate)
    s = t - 5.0
    washout = Km * np.real(lambertw(c0 / Km * np.exp((c0 - Vm / Vd * s) / Km)))
    # the iteration stops at a change < 1e-8 relative per interval; Tsit5 at rtol 1e-8 and
    # atol 1e-8 mg on the amount, i.e. 1e-9 mg/L, which bounds the washout's tail
    np.testing.assert_allclose(res["conc"].values[0], washout, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------ input checks
def test_constant_infusion_dose_arguments() -> None:
    with pytest.raises(cp.DosingError, match=r"ss = 1 needs a dosing interval ii > 0.*amount = 0"):
        D(0.0, 100.0, "central", rate=10.0, ss=1)
    with pytest.raises(cp.DosingError, match="constant infusion: give its rate"):
        D(0.0, 0.0, "central", duration="model", ss=1)
    with pytest.raises(cp.DosingError, match="constant infusion: give its rate"):
        D(0.0, 0.0, "central", duration=4.0, ss=2)
    dose = D(0.0, 0.0, "central", rate="model", ss=2)
    assert (dose.amount, dose.ii, dose.ss) == (0.0, 0.0, 2)
