"""Global sensitivity analysis (`cp.gsa`): Sobol indices by SALib, models through cp.sweep."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cellpkpd as cp

PI_BOX = {name: (-math.pi, math.pi) for name in ("x1", "x2", "x3")}


def ishigami(x: np.ndarray, a: float = 7.0, b: float = 0.1) -> np.ndarray:
    return np.sin(x[:, 0]) + a * np.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * np.sin(x[:, 0])


# analytic indices for a = 7, b = 0.1 (Ishigami & Homma 1990; Saltelli et al. 2008, ch. 4)
ISHIGAMI_S1 = [0.3139, 0.4424, 0.0]
ISHIGAMI_ST = [0.5576, 0.4424, 0.2437]


@pytest.mark.parametrize("seed", [0, 1])
def test_ishigami_indices_match_analytic_values(seed):
    # n = 8192 base samples (40960 evaluations): measured errors are below 0.003 and the
    # bootstrap 95% half-widths below 0.03, so 0.02 (the bar) holds with margin
    table = cp.gsa.sobol_function(ishigami, PI_BOX, n=8192, seed=seed)
    assert list(table.columns) == ["metric", "parameter", "S1", "S1_conf", "ST", "ST_conf"]
    assert list(table["parameter"]) == ["x1", "x2", "x3"]
    np.testing.assert_allclose(table["S1"], ISHIGAMI_S1, atol=0.02)
    np.testing.assert_allclose(table["ST"], ISHIGAMI_ST, atol=0.02)
    assert (table["S1_conf"] > 0).all() and (table["ST_conf"] < 0.05).all()


def test_sobol_function_is_reproducible_and_checks_its_input():
    a = cp.gsa.sobol_function(ishigami, PI_BOX, n=256, seed=3)
    b = cp.gsa.sobol_function(ishigami, PI_BOX, n=256, seed=3)
    np.testing.assert_array_equal(a[["S1", "ST", "S1_conf"]], b[["S1", "ST", "S1_conf"]])
    with pytest.raises(cp.SpecError, match=r"func returned shape \(1280, 1\); expected \(1280,\)"):
        cp.gsa.sobol_function(lambda x: x[:, :1], PI_BOX, n=256)
    with pytest.raises(cp.SpecError, match=r"bounds\['x1'\] = \(1, 1\) must be finite"):
        cp.gsa.sobol_function(ishigami, {"x1": (1, 1)}, n=256)
    with pytest.raises(cp.SpecError, match=r"bounds\['x1'\] = 3 must be a pair"):
        cp.gsa.sobol_function(ishigami, {"x1": 3}, n=256)
    with pytest.raises(cp.SpecError, match="n = 1 must be an integer >= 2"):
        cp.gsa.sobol_function(ishigami, PI_BOX, n=1)


def test_one_compartment_auc_depends_on_clearance_only():
    # AUC(0, inf) = dose / CL does not depend on V; a bolus's Cmax = dose / V (at t = 0) does
    # not depend on CL. Bounds: CL in [1, 4] L/h, V in [5, 20] L (log-uniform); by 240 h at
    # most exp(-240 / 20) = 6e-6 of the dose is left, so the window AUC is dose / CL.
    spec = cp.load_model("one_cmt_iv")
    regimen = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    times = np.linspace(0.0, 240.0, 49)
    metrics = {"auc": cp.metrics.auc("conc"), "cmax": cp.metrics.cmax("conc")}
    table, samples = cp.gsa.sobol(
        spec, regimen, times, {"CL": (1.0, 4.0), "V": (5.0, 20.0)}, metrics, n=512, seed=0,
        log=True, return_samples=True,
    )  # fmt: skip
    idx = table.set_index(["metric", "parameter"])
    # the inputs that do not act give exactly zero terms in the Jansen estimator of ST
    assert idx.loc[("auc", "V"), "ST"] == pytest.approx(0.0, abs=1e-3)
    assert idx.loc[("cmax", "CL"), "ST"] == pytest.approx(0.0, abs=1e-3)
    # one-input functions: S1 = ST = 1 up to sampling error (bootstrap 95% CI ~0.1 at n=512)
    for metric, name in (("auc", "CL"), ("cmax", "V")):
        assert idx.loc[(metric, name), "ST"] == pytest.approx(1.0, abs=0.1)
        assert idx.loc[(metric, name), "S1"] == pytest.approx(1.0, abs=0.1)
    # the model was evaluated through cp.sweep on all n * (d + 2) samples, inside the bounds
    assert samples.sizes["sample"] == 512 * 4
    assert samples["CL"].min() >= 1.0 and samples["CL"].max() <= 4.0
    expected = 100.0 / samples["CL"].values
    np.testing.assert_allclose(samples["auc"].values, expected, rtol=1e-5)


def test_sobol_model_bad_input():
    spec = cp.load_model("one_cmt_iv")
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    m = {"auc": cp.metrics.auc("conc")}
    times = np.linspace(0.0, 24.0, 5)
    with pytest.raises(cp.SpecError, match="bounds name 'ka' is not a parameter or covariate"):
        cp.gsa.sobol(spec, reg, times, {"ka": (1.0, 2.0)}, m, n=8)
    with pytest.raises(cp.SpecError, match=r"bounds\['CL'\] = \(0, 2\) must be > 0 on a log"):
        cp.gsa.sobol(spec, reg, times, {"CL": (0.0, 2.0)}, m, n=8, log=["CL"])
    with pytest.raises(cp.SpecError, match="log name 'V' is not in bounds"):
        cp.gsa.sobol(spec, reg, times, {"CL": (1.0, 2.0)}, m, n=8, log=["V"])
