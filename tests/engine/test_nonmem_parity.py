"""NONMEM parity of per-record data items: time-varying covariates under NOCB (NONMEM's and
mrgsolve's convention) and LOCF, the dose record's own values for [dosing] rules, and
columns matched to model names in any case.

Sources: NONMEM Users Guide VI (PREDPP), III.B.2 "Time-Varying Concomitant Variables" (the
system is advanced to a record with the values of that record); NONMEM help, ABSORPTION LAG
and BIOAVAILABILITY FRACTION (computed with the dose record; ADDL copies alike); mrgsolve
``mrgsim(nocb = TRUE)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cellpkpd as cp
from cellpkpd._core.errors import DataError
from cellpkpd.infer.data import FitData
from cellpkpd.infer.likelihood import solve_draws

ORAL_WT = """
[model]
name = "oral_wt"
time_unit = "h"
amount_unit = "mg"
[parameters]
ka = { value = 1.3, unit = "1/h" }
V = { value = 8.0, unit = "L" }
[covariates]
WT = { value = 70.0, unit = "kg" }
LAGT = { value = 0.0, unit = "h" }
[states]
depot = { initial = 0.0, unit = "mg" }
central = { initial = 0.0, unit = "mg" }
[derived]
CL = "1.1 * (WT / 70) ** 0.75"
[flows]
"depot -> central" = "ka"
"central ->" = "CL / V"
[observations]
conc = { expr = "central / V", unit = "mg/L", error = "proportional" }
[dosing]
depot = { lag = "LAGT" }
"""

KA, V, DOSE = 1.3, 8.0, 100.0
TIMES = np.array([0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0])
WEIGHTS = np.array([60.0, 75.0, 90.0, 50.0, 100.0, 80.0, 65.0])


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> cp.ModelSpec:
    path = tmp_path_factory.mktemp("models") / "oral_wt.toml"
    path.write_text(ORAL_WT)
    return cp.load_model(path)


def _weight_frame(n_subjects: int = 1) -> pd.DataFrame:
    """A dose at 0 (WT as the first observation) and observations with WT changing at
    every record."""
    rows = []
    for i in range(n_subjects):
        w = WEIGHTS * (1.0 + 0.1 * i)
        rows.append({"ID": i + 1, "TIME": 0.0, "AMT": DOSE, "EVID": 1, "CMT": 1, "WT": w[0]})
        for t, wt in zip(TIMES, w, strict=True):
            rows.append({"ID": i + 1, "TIME": t, "AMT": 0.0, "EVID": 0, "CMT": 2, "DV": 1.0,
                         "WT": wt})  # fmt: skip
    return pd.DataFrame(rows)


def _piecewise_central(
    times: np.ndarray, weights: np.ndarray, convention: str, ka: float = KA
) -> np.ndarray:
    """Central amount of the oral model by hand: on each interval between records the
    system is linear with k = CL(WT) / V, WT that of the record ending the interval (NOCB)
    or starting it (LOCF); depot A1 and central A2 advance by the two-exponential solution."""
    a1, a2, out = DOSE, 0.0, [0.0]
    for i in range(1, times.size):
        h = times[i] - times[i - 1]
        w = weights[i] if convention == "nocb" else weights[i - 1]
        k = 1.1 * (w / 70.0) ** 0.75 / V
        e1, e2 = np.exp(-ka * h), np.exp(-k * h)
        a2 = a2 * e2 + a1 * ka / (ka - k) * (e2 - e1)
        a1 = a1 * e1
        out.append(a2)
    return np.asarray(out)


@pytest.mark.parametrize("convention", ["nocb", "locf"])
def test_weight_changing_at_every_record_matches_the_piecewise_closed_form(
    spec: cp.ModelSpec, convention: str
) -> None:
    data = cp.read_nonmem(_weight_frame(), covariates=convention)
    assert data.covariate_convention == convention and f"({convention})" in repr(data)
    expected = _piecewise_central(np.r_[0.0, TIMES], np.r_[WEIGHTS[0], WEIGHTS], convention)
    # the other convention's answer differs by far more than the tolerances below
    other = _piecewise_central(
        np.r_[0.0, TIMES], np.r_[WEIGHTS[0], WEIGHTS], "locf" if convention == "nocb" else "nocb"
    )
    assert np.max(np.abs(other - expected) / np.maximum(expected, 1e-12)) > 1e-2
    # exact path: matrix exponentials, only float64 round-off remains (measured ~3e-15)
    res = cp.simulate(spec, data=data, solver="exact", outputs=["central"])
    np.testing.assert_allclose(res["central"].values[0], expected, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_weight_changing_at_every_record_on_the_ode_path(spec: cp.ModelSpec) -> None:
    """The same NOCB closed form through diffrax's segments (one compilation: the record
    lookup is shared with the exact path)."""
    data = cp.read_nonmem(_weight_frame())
    expected = _piecewise_central(np.r_[0.0, TIMES], np.r_[WEIGHTS[0], WEIGHTS], "nocb")
    res = cp.simulate(spec, data=data, solver="tsit5", rtol=1e-10, atol=1e-12)
    # ODE at rtol 1e-10 (measured ~3e-12 relative)
    np.testing.assert_allclose(res["central"].values[0], expected, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("convention", ["nocb", "locf"])
def test_fit_predictions_follow_the_data_sets_convention(
    spec: cp.ModelSpec, convention: str
) -> None:
    """The likelihood's solver (IPRED, PRED, VPC replicates all go through it) sees the
    weight exactly as cp.simulate(data=) does, under either convention."""
    data = cp.read_nonmem(_weight_frame(2), covariates=convention)
    fd = FitData.build(spec, data)
    assert fd.tv is not None and fd.tv.nocb == (convention == "nocb")
    pop = cp.Population(error={"conc": "proportional"})
    params = {"ka": np.full((1, 2), KA), "V": np.full((1, 2), V)}
    pred = solve_draws(spec, fd, pop, params, "exact")[0]
    for i in range(2):
        w = WEIGHTS * (1.0 + 0.1 * i)
        central = _piecewise_central(np.r_[0.0, TIMES], np.r_[w[0], w], convention)
        # exact path: round-off only
        np.testing.assert_allclose(pred[i, 1:], central[1:] / V, rtol=1e-10, atol=1e-12)


LAG_ROWS = {
    "ID": [1, 1, 1, 1, 1],
    "TIME": [0.0, 0.0, 0.5, 1.5, 3.0],
    "AMT": [DOSE, 0, 0, 0, 0],
    "EVID": [1, 0, 0, 0, 0],
    "CMT": [1, 1, 1, 1, 1],
    "DV": [None, 1.0, 1.0, 1.0, 1.0],
    "LAGT": [1.0, 0.0, 0.0, 0.0, 0.0],
}


@pytest.mark.parametrize(
    ("convention", "solver"),
    [("nocb", "exact"), ("locf", "exact"), pytest.param("nocb", "tsit5", marks=pytest.mark.slow)],
)
def test_dose_lag_uses_the_dose_records_own_covariate(
    spec: cp.ModelSpec, convention: str, solver: str
) -> None:
    """NONMEM computes ALAG with the dose record: LAGT = 1 on the dose at 0 delays it to
    1 h although the observation at 0 after it says LAGT = 0 (under either convention)."""
    data = cp.read_nonmem(pd.DataFrame(LAG_ROWS), covariates=convention)
    res = cp.simulate(spec, data=data, solver=solver, rtol=1e-10, atol=1e-12)
    t = np.asarray(LAG_ROWS["TIME"])
    expected = np.where(t >= 1.0, DOSE * np.exp(-KA * (t - 1.0)), 0.0)
    # exact: round-off; tsit5 at rtol 1e-10
    np.testing.assert_allclose(res["depot"].values[0], expected, rtol=1e-8, atol=1e-10)


def test_additional_doses_take_the_initiating_records_bioavailability(tmp_path: Path) -> None:
    """ADDL copies use the values of the record that holds them (NONMEM's F applies to the
    dose and to all its additional doses), not those in force at their times."""
    path = tmp_path / "iv_f.toml"
    path.write_text(
        '[model]\nname = "iv_f"\ntime_unit = "h"\namount_unit = "mg"\n'
        '[parameters]\nk = { value = 0.1, unit = "1/h" }\n'
        '[covariates]\nFB = { value = 1.0, unit = "1" }\n[states]\ncentral = { initial = 0.0 }\n'
        '[flows]\n"central ->" = "k"\n[dosing]\ncentral = { bioavailability = "FB" }\n'
    )
    df = pd.DataFrame(
        {"ID": 1, "TIME": [0.0, 5.0, 15.0], "AMT": [10.0, 0, 0], "EVID": [1, 0, 0],
         "II": [10.0, 0, 0], "ADDL": [1, 0, 0], "CMT": 1, "FB": [0.5, 0.2, 0.2]}
    )  # fmt: skip
    for convention in ("nocb", "locf"):
        res = cp.simulate(cp.load_model(path), data=cp.read_nonmem(df, covariates=convention))
        # both doses at F = 0.5: 5 e^{-0.5} at 5 h; 5 e^{-1.5} + 5 e^{-0.5} at 15 h
        expected = [5.0, 5 * np.exp(-0.5), 5 * np.exp(-1.5) + 5 * np.exp(-0.5)]
        np.testing.assert_allclose(res["central"].values[0], expected, rtol=1e-10)


def test_observation_expression_uses_its_own_records_value(tmp_path: Path) -> None:
    """Two observations at the same time with different covariate values report the state
    through their own record's value (NONMEM's $ERROR sees the record it is called with)."""
    path = tmp_path / "scale.toml"
    path.write_text(
        '[model]\nname = "scale"\ntime_unit = "h"\namount_unit = "mg"\n'
        '[covariates]\nS = { value = 1.0, unit = "1" }\n'
        "[states]\ncentral = { initial = 0.0 }\n"
        '[observations]\ny = { expr = "central * S", unit = "1", error = "additive" }\n'
    )
    df = pd.DataFrame(
        {"ID": 1, "TIME": [0.0, 1.0, 1.0], "AMT": [4.0, 0, 0], "EVID": [1, 0, 0], "CMT": 1,
         "DV": [None, 1.0, 1.0], "S": [1.0, 2.0, 3.0]}
    )  # fmt: skip
    for convention in ("nocb", "locf"):
        res = cp.simulate(cp.load_model(path), data=cp.read_nonmem(df, covariates=convention))
        np.testing.assert_allclose(res["y"].values[0], [4.0, 8.0, 12.0], rtol=1e-12)


def test_lower_case_columns_are_used_for_model_covariates_and_parameters(
    spec: cp.ModelSpec,
) -> None:
    """A column ``wt`` is the model covariate WT and ``KA`` the parameter ka: both used
    (the result is the closed form with that weight and ka = 2, not the model's 1.3), and
    the warning names only the column the model ignores."""
    frame = _weight_frame().assign(KA=2.0, SITE=3.0).rename(columns={"WT": "wt"})
    data = cp.read_nonmem(frame)
    assert data.model_columns(spec) == {"wt": "WT", "KA": "ka"}
    assert data.ignored_columns(spec) == ("SITE",)
    with pytest.warns(UserWarning, match=r"columns SITE of .* are ignored \(used: WT, ka\)"):
        res = cp.simulate(spec, data=data, outputs=["central"])
    expected = _piecewise_central(np.r_[0.0, TIMES], np.r_[WEIGHTS[0], WEIGHTS], "nocb", 2.0)
    # exact path: round-off only
    np.testing.assert_allclose(res["central"].values[0], expected, rtol=1e-10, atol=1e-12)


def test_fit_rejects_a_lower_case_parameter_column(spec: cp.ModelSpec) -> None:
    data = cp.read_nonmem(_weight_frame().assign(v=9.0))
    with pytest.raises(DataError, match=r"column v names a parameter of model 'oral_wt' \(V\)"):
        FitData.build(spec, data)


def test_column_matching_two_model_names_in_case_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "two.toml"
    path.write_text(
        '[model]\nname = "two"\ntime_unit = "h"\namount_unit = "mg"\n'
        '[parameters]\nk = { value = 0.1, unit = "1/h" }\n'
        '[covariates]\nFb = { value = 1.0, unit = "1" }\nFB = { value = 1.0, unit = "1" }\n'
        '[states]\ncentral = { initial = 0.0 }\n[flows]\n"central ->" = "k * Fb * FB"\n'
    )
    data = cp.read_nonmem(pd.DataFrame({"ID": 1, "TIME": [0.0, 1.0], "fb": [1.0, 2.0]}))
    with pytest.raises(DataError, match="column fb matches FB and Fb of model 'two'"):
        data.model_columns(cp.load_model(path))


def test_missing_values_after_the_last_value_take_it_under_nocb() -> None:
    df = pd.DataFrame({"ID": 1, "TIME": [0.0, 1.0, 2.0, 3.0], "WT": [None, 60.0, None, None]})
    (s,) = cp.read_nonmem(df).subjects()
    np.testing.assert_array_equal(s.covariates["WT"], [60.0, 60.0, 60.0, 60.0])
    df = pd.DataFrame({"ID": 1, "TIME": [0.0, 1.0, 2.0], "WT": [50.0, None, 70.0]})
    (s,) = cp.read_nonmem(df).subjects()
    np.testing.assert_array_equal(s.covariates["WT"], [50.0, 70.0, 70.0])  # from the next
    (s,) = cp.read_nonmem(df, covariates="locf").subjects()
    np.testing.assert_array_equal(s.covariates["WT"], [50.0, 50.0, 70.0])  # from the previous


def test_read_nonmem_rejects_an_unknown_convention() -> None:
    df = pd.DataFrame({"ID": [1], "TIME": [0.0]})
    with pytest.raises(DataError, match=r"covariates = 'LOCB'; expected 'nocb'"):
        cp.read_nonmem(df, covariates="LOCB")
