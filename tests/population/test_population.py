"""Population features: categorical covariate effects (levels from the data)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import cellpkpd as cp
from cellpkpd.population.effects import categorical_levels, level_name


def test_categorical_levels_and_names() -> None:
    # the reference is the most frequent level, the smallest on ties
    assert categorical_levels([1, 0, 1, 2, 1]) == (1.0, [0.0, 2.0])
    assert categorical_levels([2, 0, 2, 0]) == (0.0, [2.0])
    assert level_name(1.0) == "1" and level_name(-2.5) == "m2p5"


def _sex_study(n: int = 16, seed: int = 4) -> tuple[cp.Dataset, float]:
    """One-compartment IV bolus; CL of SEX = 1 subjects is exp(0.5) = 1.65x that of the
    (more frequent) SEX = 0 ones; IIV 0.1 on CL, proportional error 0.1."""
    rng = np.random.default_rng(seed)
    sex = np.array([0] * 10 + [1] * (n - 10))
    effect = 0.5
    cl = 2.0 * np.exp(effect * sex + 0.1 * rng.standard_normal(n))
    times = np.array([0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0])
    conc = 100.0 / 10.0 * np.exp(-cl[:, None] / 10.0 * times[None, :])
    conc = conc * (1.0 + 0.1 * rng.standard_normal(conc.shape))
    rows = []
    for i in range(n):
        rows.append({"ID": i + 1, "TIME": 0.0, "AMT": 100.0, "EVID": 1, "CMT": 1, "SEX": sex[i]})
        for j, t in enumerate(times):
            rows.append({"ID": i + 1, "TIME": t, "AMT": 0.0, "EVID": 0, "CMT": 1, "DV": conc[i, j]})
    return cp.read_nonmem(pd.DataFrame(rows)), effect


@pytest.mark.slow
def test_categorical_covariate_effect_is_recovered() -> None:
    data, effect = _sex_study()
    pop = cp.Population(
        random_effects={"CL": 0.3},
        covariate_effects={"CL": {"SEX": "categorical"}},
        error={"conc": "proportional"},
    )
    idata = cp.fit("one_cmt_iv", data, pop, method="map", steps=2000, progress=False)
    post = idata.posterior
    # reference level 0 (10 of 16 subjects): one coefficient, for level 1
    assert "beta_CL_SEX_1" in post and "beta_CL_SEX_0" not in post
    beta = float(post["beta_CL_SEX_1"].values.ravel()[0])
    # 6 vs 10 subjects with 7 observations each and IIV 0.1: the log-ratio's standard error
    # is ~0.05, so 0.15 is three of them
    assert beta == pytest.approx(effect, abs=0.15)
    cl_i = post["CL_i"].values.reshape(-1, 16)[0]
    assert np.median(cl_i[10:]) / np.median(cl_i[:10]) == pytest.approx(np.exp(effect), rel=0.2)
    # predict needs the level of each virtual subject (and, from a MAP fit, explicit omegas:
    # its omega_* are not estimates)
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    iiv = {"CL": 0.1}
    with pytest.raises(cp.SpecError, match="covariates\\['SEX'\\]"):
        cp.predict(idata, "one_cmt_iv", reg, [1.0, 2.0], n=4, omega=iiv)
    # a level the fit never saw is an error, not silently the reference level
    unseen = r"level\(s\) 2 that the fit did not see; its levels are 0 \(reference\), 1"
    with pytest.raises(cp.SpecError, match=unseen):
        cp.predict(
            idata, "one_cmt_iv", reg, [1.0, 2.0], n=4, covariates={"SEX": [0, 1, 2, 1]}, omega=iiv
        )
    res = cp.predict(
        idata, "one_cmt_iv", reg, [1.0], n=4, covariates={"SEX": [0, 1, 0, 1]}, omega=iiv
    )
    assert np.all(np.isfinite(res["conc"].values))


def test_unknown_covariate_form_is_rejected() -> None:
    with pytest.raises(cp.SpecError, match="categorical"):
        cp.Population(covariate_effects={"CL": {"SEX": "ordinal"}}).validate(
            cp.load_model("one_cmt_iv")
        )


def test_correlation_needs_two_random_effects() -> None:
    with pytest.raises(cp.SpecError, match=">= 2 parameters"):
        cp.Population(random_effects={"CL": 0.3}, correlation=True)


@pytest.mark.extended
def test_full_covariance_with_lkj_prior_finds_the_correlation() -> None:
    """30 subjects whose log CL and log V have correlation 0.8 (omegas 0.3): the NUTS
    posterior correlation of the LKJ model is clearly positive. (The joint MAP is not used:
    over the etas it shrinks the correlation to ~0.4 here.)"""
    rng = np.random.default_rng(5)
    n, rho, omega = 30, 0.8, 0.3
    cov = omega**2 * np.array([[1.0, rho], [rho, 1.0]])
    eta = rng.multivariate_normal(np.zeros(2), cov, size=n)
    cl, v = 2.0 * np.exp(eta[:, 0]), 10.0 * np.exp(eta[:, 1])
    times = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0])
    rows = []
    for i in range(n):
        rows.append({"ID": i + 1, "TIME": 0.0, "AMT": 100.0, "EVID": 1, "CMT": 1})
        conc = 100.0 / v[i] * np.exp(-cl[i] / v[i] * times)
        conc = conc * (1.0 + 0.05 * rng.standard_normal(times.size))
        for t, c in zip(times, conc, strict=True):
            rows.append({"ID": i + 1, "TIME": t, "AMT": 0.0, "EVID": 0, "CMT": 1, "DV": c})
    data = cp.read_nonmem(pd.DataFrame(rows))
    pop = cp.Population(
        random_effects={"CL": 0.5, "V": 0.5}, error={"conc": "proportional"}, correlation=True
    )
    with warnings.catch_warnings():  # a short run: ESS warnings are expected
        warnings.filterwarnings("ignore", "fit: ", RuntimeWarning)
        idata = cp.fit("one_cmt_iv", data, pop, chains=2, warmup=200, draws=200, progress=False)
    corr = idata.posterior["corr_iiv"]
    assert corr.dims[-2:] == ("iiv", "iiv_") and list(corr["iiv"].values) == ["CL", "V"]
    r = corr.values.reshape(-1, 2, 2)
    np.testing.assert_allclose(r[:, 0, 0], 1.0, atol=1e-9)
    # the simulated etas' sample correlation is 0.83; with 30 subjects its posterior SD is
    # ~0.1 and LKJ(2) shrinks a little towards 0, so a median > 0.5 is a safe bound
    assert np.median(r[:, 0, 1]) > 0.5
    # predict draws correlated new subjects: the log CL - log V correlation is positive
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    res = cp.predict(idata, "one_cmt_iv", reg, [1.0, 24.0], n=400, seed=2)
    assert res["conc"].shape == (400, 2)


def test_effect_factor_forms_on_numpy_and_jax() -> None:
    import jax.numpy as jnp

    from cellpkpd.population.effects import effect_factor

    x = np.array([35.0, 70.0, 140.0])
    expected = {
        "power": (x / 70.0) ** 0.02,
        "exponential": np.exp(0.02 * (x - 70.0)),
        "linear": 1.0 + 0.02 * (x - 70.0),
    }
    beta = 0.02
    for form, want in expected.items():
        got_np = effect_factor(form, x, beta, 70.0)
        assert isinstance(got_np, np.ndarray)
        np.testing.assert_allclose(got_np, want, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(effect_factor(form, jnp.asarray(x), beta, 70.0)),
                                   want, rtol=1e-12)  # fmt: skip
    with pytest.raises(cp.SpecError, match="expected power, exponential or linear"):
        effect_factor("cubic", x, 1.0, 70.0)
