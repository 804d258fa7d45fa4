"""Results carry tad (time after the most recent dose), tsfd (time since the first dose) and
dose_number coordinates, from the record times of the doses (mrgsolve's convention), for
regimens and data sets. The values are differences of the given times, so they are
compared exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cellpkpd as cp
from cellpkpd.engine.simulator import time_after_dose

nan = np.nan


@pytest.fixture(scope="module")
def iv() -> cp.ModelSpec:
    return cp.load_model("one_cmt_iv")


def test_doses_every_24_h_output_on_and_between_doses(iv: cp.ModelSpec) -> None:
    # doses at 0, 24, 48; an output at a dose time counts that dose as given (it reports
    # the amount after the dose)
    reg = cp.Regimen.repeat(cp.Dose(0.0, 100.0, "central"), interval=24.0, count=3)
    res = cp.simulate(iv, reg, [0.0, 12.0, 24.0, 36.0, 60.0], params={"CL": [1.0, 2.0]})
    for name in ("tad", "tsfd", "dose_number"):
        assert res[name].dims == ("subject", "time")
    np.testing.assert_array_equal(res["tad"].values, [[0.0, 12.0, 0.0, 12.0, 12.0]] * 2)
    np.testing.assert_array_equal(res["tsfd"].values, [[0.0, 12.0, 24.0, 36.0, 60.0]] * 2)
    np.testing.assert_array_equal(res["dose_number"].values, [[1, 1, 2, 2, 3]] * 2)
    assert res["dose_number"].dtype == np.int64
    assert res["tad"].attrs["unit"] == res["tsfd"].attrs["unit"] == "h"
    # the amount after the second dose at 24 h: 100 + 100 exp(-k 24), k = CL / V
    k = 1.0 / iv.parameters["V"].value
    assert res["central"].values[0, 2] == pytest.approx(100.0 * (1 + np.exp(-24 * k)), rel=1e-10)


def test_per_subject_regimens_before_the_first_dose_lag_and_resets(iv: cp.ModelSpec) -> None:
    times = [0.0, 12.0, 24.0, 36.0, 60.0]
    late = cp.Regimen(
        [
            cp.Dose(12.0, 100.0, "central", lag=2.0),  # counts from its record time, 12
            cp.Reset(30.0),  # not a dose: tad keeps counting from 12
            cp.Dose(40.0, 100.0, "central", reset=True),  # EVID 4: a dose
        ]
    )
    res = cp.simulate(iv, [cp.Regimen([]), late], times)
    # no doses at all: NaN, dose number 0
    np.testing.assert_array_equal(res["tad"].values[0], [nan] * 5)
    np.testing.assert_array_equal(res["dose_number"].values[0], [0] * 5)
    np.testing.assert_array_equal(res["tad"].values[1], [nan, 0.0, 12.0, 24.0, 20.0])
    np.testing.assert_array_equal(res["tsfd"].values[1], [nan, 0.0, 12.0, 24.0, 48.0])
    np.testing.assert_array_equal(res["dose_number"].values[1], [0, 1, 1, 1, 2])


def test_steady_state_dose_counts_once() -> None:
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central", ss=1, ii=12.0), cp.Dose(12.0, 100.0, 1)])
    tad, tsfd, number = time_after_dose(reg, [0.0, 6.0, 12.0, 18.0])
    np.testing.assert_array_equal(tad, [0.0, 6.0, 0.0, 6.0])
    np.testing.assert_array_equal(tsfd, [0.0, 6.0, 12.0, 18.0])
    np.testing.assert_array_equal(number, [1, 1, 2, 2])


def test_data_set_with_addl_resets_and_records_at_equal_times(iv: cp.ModelSpec) -> None:
    # ID 1: an observation listed before the dose at TIME 0 (so before it), ADDL = 2 (doses
    # at 24 and 48); ID 2: a reset at 30, an observation listed before the reset-and-dose
    # (EVID 4) at 48; ID 3: two records, padded to six (time NaN, dose number -1)
    frame = pd.DataFrame(
        {
            "ID": [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3],
            "TIME": [0, 0, 12, 24, 36, 60, 0, 30, 36, 48, 48, 50, 0, 5],
            "EVID": [0, 1, 0, 0, 0, 0, 1, 3, 0, 0, 4, 0, 1, 0],
            "AMT": [0, 100, 0, 0, 0, 0, 100, 0, 0, 0, 100, 0, 10, 0],
            "II": [0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "ADDL": [0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "CMT": 1,
            "DV": nan,
        }
    )
    res = cp.simulate(iv, data=cp.read_nonmem(frame))
    assert res["tad"].dims == ("subject", "record")
    tad = [[nan, 0, 12, 0, 12, 12], [0, 30, 36, 48, 0, 2], [0, 5, nan, nan, nan, nan]]
    tsfd = [[nan, 0, 12, 24, 36, 60], [0, 30, 36, 48, 48, 50], [0, 5, nan, nan, nan, nan]]
    number = [[0, 1, 1, 2, 2, 3], [1, 1, 1, 1, 2, 2], [1, 1, -1, -1, -1, -1]]
    np.testing.assert_array_equal(res["tad"].values, tad)
    np.testing.assert_array_equal(res["tsfd"].values, tsfd)
    np.testing.assert_array_equal(res["dose_number"].values, number)
    # the record before the dose at TIME 0 reports no drug, the one after it the dose
    np.testing.assert_array_equal(res["central"].values[0, :2], [0.0, 100.0])
