"""Virtual populations and dose-ranging (`cp.VirtualPopulation`, `cp.dose_ranging`)."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import numpyro.distributions as dist
import pytest
from scipy.stats import norm

import cellpkpd as cp

N_BIG = 20_000


@pytest.fixture(scope="module")
def one_cmt():
    return cp.load_model("one_cmt_iv")


@pytest.fixture(scope="module")
def host():
    return cp.load_model("msc_pkpd_host")


# ---------------------------------------------------------------------- VirtualPopulation
def test_lognormal_variability_and_correlation_match_request(one_cmt):
    rho = 0.5
    pop = cp.VirtualPopulation(
        one_cmt,
        N_BIG,
        random_effects={"CL": 0.3, "V": 0.2},
        correlation=[[1.0, rho], [rho, 1.0]],
        seed=11,
    )
    assert len(pop) == N_BIG
    eta_cl = np.log(pop.params["CL"] / 2.0)  # typical CL = 2 L/h, V = 10 L (model file)
    eta_v = np.log(pop.params["V"] / 10.0)
    # sampling error of a normal SD is omega / sqrt(2n) (0.0015 for CL), of its mean
    # omega / sqrt(n), of a correlation (1 - rho^2) / sqrt(n) (0.0053): allow 4 standard errors
    for eta, omega in ((eta_cl, 0.3), (eta_v, 0.2)):
        assert abs(eta.std(ddof=1) - omega) < 4 * omega / math.sqrt(2 * N_BIG)
        assert abs(eta.mean()) < 4 * omega / math.sqrt(N_BIG)
    assert abs(np.corrcoef(eta_cl, eta_v)[0, 1] - rho) < 4 * (1 - rho**2) / math.sqrt(N_BIG)
    assert pop.params["CL"].dtype == np.float64


def test_covariate_distributions_strings_and_numpyro(host):
    pop = cp.VirtualPopulation(
        host,
        N_BIG,
        covariates={
            "inflammation": "lognormal(log(2), 0.25)",
            "viability": "uniform(0.5, 1)",
            "potency": dist.Gamma(4.0, 4.0),
            "thawed": 1.0,
        },
        seed=3,
    )
    logi = np.log(pop.covariates["inflammation"])
    assert abs(logi.mean() - math.log(2)) < 4 * 0.25 / math.sqrt(N_BIG)
    assert abs(logi.std(ddof=1) - 0.25) < 4 * 0.25 / math.sqrt(2 * N_BIG)
    v = pop.covariates["viability"]
    assert v.min() >= 0.5 and v.max() <= 1.0
    # uniform(0.5, 1): mean 0.75, SD 0.5 / sqrt(12)
    assert abs(v.mean() - 0.75) < 4 * (0.5 / math.sqrt(12)) / math.sqrt(N_BIG)
    # Gamma(4, rate 4): mean 1, SD 0.5
    assert abs(pop.covariates["potency"].mean() - 1.0) < 4 * 0.5 / math.sqrt(N_BIG)
    assert np.all(pop.covariates["thawed"] == 1.0)
    # undeclared covariates keep the model-file defaults
    assert np.all(
        pop.covariates["cytotoxic_activity"] == host.covariates["cytotoxic_activity"].value
    )
    frame = pop.to_frame()
    assert frame.shape == (N_BIG, len(host.parameters) + len(host.covariates))
    assert frame.index.name == "subject"


def test_covariate_effect_power_is_exact(one_cmt):
    pop = cp.VirtualPopulation(
        one_cmt,
        500,
        covariates={"WT": "lognormal(log(70), 0.2)"},
        covariate_effects={
            "CL": {"WT": ("power", 0.75, 70.0)},
            "V": {"WT": ("linear", 0.01, 70.0)},
        },
        seed=5,
    )
    wt = pop.covariates["WT"]
    np.testing.assert_allclose(pop.params["CL"], 2.0 * (wt / 70.0) ** 0.75, rtol=1e-14)
    np.testing.assert_allclose(pop.params["V"], 10.0 * (1 + 0.01 * (wt - 70.0)), rtol=1e-14)
    assert "WT" in pop.to_frame() and "WT" not in pop.model_covariates()


def test_exponential_effect_uses_model_default_as_reference(host):
    pop = cp.VirtualPopulation(
        host,
        100,
        covariates={"inflammation": "uniform(0, 2)"},
        covariate_effects={"k_kill": {"inflammation": ("exponential", 0.5)}},
        seed=2,
    )
    x = pop.covariates["inflammation"]  # reference: the model's default 1.0
    typical = host.parameters["k_kill"].value  # the model file's typical value
    np.testing.assert_allclose(pop.params["k_kill"], typical * np.exp(0.5 * (x - 1.0)), rtol=1e-14)


def test_seeds_are_reproducible(one_cmt):
    kw = dict(random_effects={"CL": 0.3}, covariates={"WT": "normal(70, 10)"},
              covariate_effects={"V": {"WT": ("power", 1.0, 70.0)}})  # fmt: skip
    a = cp.VirtualPopulation(one_cmt, 50, seed=7, **kw)
    b = cp.VirtualPopulation(one_cmt, 50, seed=7, **kw)
    c = cp.VirtualPopulation(one_cmt, 50, seed=8, **kw)
    np.testing.assert_array_equal(a.to_frame(), b.to_frame())
    assert not np.allclose(a.params["CL"], c.params["CL"])
    key = jax.random.PRNGKey(7)
    np.testing.assert_array_equal(
        cp.VirtualPopulation(one_cmt, 50, seed=key, **kw).to_frame(), a.to_frame()
    )
    g1 = cp.VirtualPopulation(one_cmt, 50, seed=np.random.default_rng(1), **kw)
    g2 = cp.VirtualPopulation(one_cmt, 50, seed=np.random.default_rng(1), **kw)
    np.testing.assert_array_equal(g1.to_frame(), g2.to_frame())


WT_ON_CL = {"CL": {"WT": ("power", 1, 70)}}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(random_effects={"Cl": 0.3}), "random effect on unknown parameter 'Cl'"),
        (dict(random_effects={"CL": -0.1}), r"random_effects\['CL'\] = -0.1 must be >= 0"),
        (dict(covariates={"weight": 70.0}), "unknown covariate 'weight'"),
        (dict(covariates={"WT": "lognormal(70)"}, covariate_effects=WT_ON_CL),
         "lognormal takes 2 positional arguments"),
        (dict(covariates={"WT": "wobbly(1, 2)"}, covariate_effects=WT_ON_CL),
         "unknown prior family 'wobbly'"),
        (dict(covariates={"WT": [1.0, 2.0]}, covariate_effects=WT_ON_CL),
         r"array of shape \(2,\); expected \(10,\)"),
        (dict(covariates={"WT": 70.0}, covariate_effects={"CL": {"WT": ("cubic", 1.0, 70.0)}}),
         "form 'cubic'"),
        (dict(covariates={"WT": 70.0}, covariate_effects={"CL": {"WT": ("power", 1.0)}}),
         "'WT' is not a model covariate; give \\(form, coef, ref\\)"),
        (dict(random_effects={"CL": 0.3, "V": 0.3}, correlation=[[1, 2], [2, 1]]),
         "not positive definite"),
        (dict(random_effects={"CL": 0.3}, correlation=np.eye(2)),
         r"shape \(2, 2\); expected \(1, 1\)"),
        (dict(typical={"Q": 1.0}), "typical value for unknown parameter 'Q'"),
        (dict(seed="abc"), "seed = 'abc'"),
    ],
)  # fmt: skip
def test_bad_population_input_names_the_culprit(one_cmt, kwargs, match):
    with pytest.raises(cp.SpecError, match=match):
        cp.VirtualPopulation(one_cmt, 10, **kwargs)


def test_population_bounds_and_size_checked(host):
    with pytest.raises(cp.SpecError, match="n = 0 must be an integer >= 1"):
        cp.VirtualPopulation(host, 0)
    # Imax is bounded to [0, 1]: a wide log-normal spread around 0.8 leaves the bounds
    with pytest.raises(cp.SpecError, match=r"values of 'Imax' fall outside its bounds \[0, 1\]"):
        cp.VirtualPopulation(host, 1000, random_effects={"Imax": 1.0}, seed=0)


def _fake_posterior(draws: dict[str, np.ndarray], population: dict) -> object:
    import arviz as az

    idata = az.from_dict(posterior={k: np.asarray(v)[None, :] for k, v in draws.items()})
    idata.posterior.attrs["population"] = json.dumps(population)
    return idata


def test_from_posterior_draws_typical_values_omegas_and_covariate_effects(one_cmt):
    m = 4000
    rng = np.random.default_rng(0)
    cl_draws = rng.lognormal(math.log(3.0), 0.05, m)
    idata = _fake_posterior(
        {"CL": cl_draws, "V": np.full(m, 12.0), "omega_CL": np.full(m, 0.25),
         "beta_V_WT": np.full(m, 1.0)},
        {"random_effects": {"CL": 1.0}, "covariate_effects": {"V": {"WT": "power"}}},
    )  # fmt: skip
    pop = cp.VirtualPopulation.from_posterior(
        idata, one_cmt, n=N_BIG, seed=1, covariates={"WT": "uniform(50, 90)"}
    )
    # V: one posterior value, power effect with beta = 1 around the median weight
    wt = pop.covariates["WT"]
    np.testing.assert_allclose(pop.params["V"], 12.0 * wt / np.median(wt), rtol=1e-12)
    # CL: log-SD = sqrt(0.05^2 + 0.25^2) (uncertainty + variability), median 3
    log_cl = np.log(pop.params["CL"])
    sd = math.hypot(0.05, 0.25)
    assert abs(log_cl.std(ddof=1) - sd) < 4 * sd / math.sqrt(2 * N_BIG)
    assert abs(log_cl.mean() - math.log(3.0)) < 4 * sd / math.sqrt(N_BIG)
    again = cp.VirtualPopulation.from_posterior(
        idata, one_cmt, n=N_BIG, seed=1, covariates={"WT": "uniform(50, 90)"}
    )
    np.testing.assert_array_equal(again.params["CL"], pop.params["CL"])
    with pytest.raises(cp.SpecError, match=r"give covariates\['WT'\] \(used by V\)"):
        cp.VirtualPopulation.from_posterior(idata, one_cmt, n=10)
    with pytest.raises(cp.SpecError, match="no posterior group"):
        cp.VirtualPopulation.from_posterior(object(), one_cmt, n=10)


def test_from_posterior_follows_the_fit_like_predict(one_cmt):
    """from_posterior and cp.predict build subjects the same way (one helper): the fit's
    covariate reference (not the new subjects' median), categorical levels with an error
    for an unseen one, and correlated etas when the fit estimated a correlation."""
    m = 2000
    idata = _fake_posterior(
        {"CL": np.full(m, 3.0), "V": np.full(m, 12.0), "omega_CL": np.full(m, 0.3),
         "omega_V": np.full(m, 0.3), "beta_V_WT": np.full(m, 1.0),
         "beta_CL_SEX_1": np.full(m, np.log(0.5)),
         "L_iiv": np.broadcast_to(np.array([[1.0, 0.0], [0.9, math.sqrt(1 - 0.81)]]), (m, 2, 2))},
        {"random_effects": {"CL": 1.0, "V": 1.0},
         "covariate_effects": {"V": {"WT": "power"}, "CL": {"SEX": "categorical"}}},
    )  # fmt: skip
    post = idata.posterior
    post.attrs["covariate_references"] = json.dumps({"WT": 70.0})
    post.attrs["categorical_levels"] = json.dumps({"SEX": [0.0, [1.0]]})
    sex = np.tile([0.0, 1.0], N_BIG // 2)
    pop = cp.VirtualPopulation.from_posterior(
        idata, one_cmt, n=N_BIG, seed=2, covariates={"WT": "uniform(60, 100)", "SEX": sex}
    )
    wt = pop.covariates["WT"]
    eta_cl = np.log(pop.params["CL"] / np.where(sex == 1, 1.5, 3.0))
    eta_v = np.log(pop.params["V"] / (12.0 * wt / 70.0))  # the fit's reference, 70 kg
    # the fit's reference (70 kg), not the new subjects' median weight (80 kg here, which
    # would shift every log V by log(70/80) = -0.13)
    assert abs(eta_v.mean()) < 4 * 0.3 / math.sqrt(N_BIG)
    assert abs(np.corrcoef(eta_cl, eta_v)[0, 1] - 0.9) < 0.02
    assert abs(eta_cl.std(ddof=1) - 0.3) < 0.01
    with pytest.raises(cp.SpecError, match=r"level\(s\) 2 that the fit did not see"):
        cp.VirtualPopulation.from_posterior(
            idata, one_cmt, n=4, covariates={"WT": 70.0, "SEX": [0.0, 1.0, 2.0, 1.0]}
        )
    with pytest.raises(cp.SpecError, match=r"give covariates\['SEX'\]"):
        cp.VirtualPopulation.from_posterior(idata, one_cmt, n=4, covariates={"WT": 70.0})


def test_predict_uses_the_fits_covariate_reference(one_cmt):
    # V = 12 L x (WT / 70)^1 with the fit's reference 70 kg recorded in the posterior: a
    # 100-mg bolus starts at 100 / V whatever the new subjects' median weight (80 kg here)
    m = 50
    idata = _fake_posterior(
        {"CL": np.full(m, 3.0), "V": np.full(m, 12.0), "beta_V_WT": np.full(m, 1.0)},
        {"random_effects": {}, "covariate_effects": {"V": {"WT": "power"}}},
    )
    idata.posterior.attrs["covariate_references"] = json.dumps({"WT": 70.0})
    wt = np.array([60.0, 100.0])
    res = cp.predict(idata, one_cmt, cp.Regimen([cp.Dose(0.0, 100.0, "central")]), [0.0],
                     n=2, covariates={"WT": wt})  # fmt: skip
    np.testing.assert_allclose(res["conc"].values[:, 0], 100.0 / (12.0 * wt / 70.0), rtol=1e-12)


# ---------------------------------------------------------------------- dose_ranging
TIMES = np.linspace(0.0, 480.0, 97)  # [h]; CL/V = 0.2/h, so exp(-96) of a dose remains at 480 h


def _regimens():
    single = cp.Regimen([cp.Dose(0.0, 1.0, "central")])
    daily = cp.Regimen.repeat(cp.Dose(0.0, 1.0, "central", duration=1.0), interval=24.0, count=4)
    return {"single": single, "daily x4": daily}


def test_auc_per_arm_equals_dose_over_clearance(one_cmt):
    metrics = {"auc": cp.metrics.auc("conc"), "cmax": cp.metrics.cmax("conc")}
    doses = [10.0, 100.0, 1000.0]
    table = cp.dose_ranging(
        one_cmt,
        {"dose": doses, "regimen": _regimens(), "CL": [1.0, 2.0]},
        None,
        TIMES,
        metrics,
        target={"auc": (">=", 45.0)},
    )
    assert len(table) == 3 * 2 * 2 * 2  # arms x metrics
    auc = table[table.metric == "auc"]
    count = auc["regimen"].map({"single": 1, "daily x4": 4})
    expected = auc["dose"] * count / auc["CL"]  # AUC(0, inf) = total dose / CL [mg/L*h]
    # running-integral state on the exact path: float64 round-off only; 1e-6 as the issue asks
    np.testing.assert_allclose(auc["median"], expected, rtol=1e-6)
    np.testing.assert_allclose(auc["p05"], expected, rtol=1e-6)
    np.testing.assert_allclose(auc["p95"], expected, rtol=1e-6)
    # no variability: the target (AUC >= 45) is met by all or none
    np.testing.assert_array_equal(auc["pta"], (expected >= 45.0).astype(float))
    assert 0 < auc["pta"].sum() < len(auc)
    assert set(auc["unit"]) == {"mg/L*h"} and set(auc["target"]) == {">= 45"}
    # a bolus peaks at dose / V at t = 0 (the output time after the dose)
    cmax = table[(table.metric == "cmax") & (table.regimen == "single")]
    np.testing.assert_allclose(cmax["median"], cmax["dose"] / 10.0, rtol=1e-12)
    assert cmax["pta"].isna().all() and (table["n"] == 1).all() and (table["n_failed"] == 0).all()
    assert table.attrs["dose_unit"] == "mg"
    assert list(table.columns[:4]) == ["arm", "dose", "regimen", "CL"]


def test_pta_matches_population_and_lognormal_closed_form(one_cmt):
    n = 400
    pop = cp.VirtualPopulation(one_cmt, n, random_effects={"CL": 0.3}, seed=4)
    target = 40.0
    table, samples = cp.dose_ranging(
        one_cmt,
        {"dose": [50.0, 100.0], "regimen": {"single": _regimens()["single"]}},
        pop,
        TIMES,
        {"auc": cp.metrics.auc("conc")},
        target={"auc": (">=", target)},
        return_samples=True,
    )
    for _, row in table.iterrows():
        auc = row["dose"] / pop.params["CL"]  # exact per subject
        # the same subjects, so the same fraction (no subject sits within 1e-6 of the target)
        assert row["pta"] == pytest.approx(np.mean(auc >= target), abs=1e-12)
        assert row["median"] == pytest.approx(np.median(auc), rel=1e-6)
        assert row["p95"] == pytest.approx(np.percentile(auc, 95), rel=1e-6)
        # and close to the population value P(CL <= dose / target) = Phi(log(D / (T CL)) / omega)
        p = norm.cdf(math.log(row["dose"] / (target * 2.0)) / 0.3)
        assert abs(row["pta"] - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-9
    assert samples.sizes["sample"] == 2 * n
    np.testing.assert_array_equal(samples["arm"].values, np.repeat([0, 1], n))


def test_arm_list_equals_grid_and_attributes_override_population(host):
    spec = host
    reg = cp.Regimen([cp.Dose(0.0, 1.0, "blood", duration=0.5)])
    times = np.arange(0.0, 169.0, 24.0)
    metrics = {"dna_auc": cp.metrics.auc("msc_dna"), "supp": cp.metrics.max_pct_change("biomarker")}
    pop = cp.VirtualPopulation(spec, 3, covariates={"viability": 0.5}, seed=0)
    grid = cp.dose_ranging(
        spec, {"dose": [1e6, 1e7], "viability": [0.7, 0.9]}, pop, times, metrics, regimen=reg
    )
    arms = [
        {"dose": d, "viability": v, "regimen": ("regimen", reg)}
        for d in (1e6, 1e7)
        for v in (0.7, 0.9)
    ]
    listed = cp.dose_ranging(spec, arms, pop, times, metrics)
    cols = ["dose", "viability", "median", "p05", "p95"]
    np.testing.assert_allclose(grid[cols].to_numpy(float), listed[cols].to_numpy(float), rtol=1e-12)
    assert list(grid["metric"]) == list(listed["metric"])
    # linear cell kinetics: DNA AUC scales with dose; the arm's viability (not the
    # population's 0.5) is used, and it changes the effect
    dna = grid[grid.metric == "dna_auc"].set_index(["dose", "viability"])["median"]
    assert dna[(1e7, 0.7)] == pytest.approx(10 * dna[(1e6, 0.7)], rel=1e-6)
    supp = grid[grid.metric == "supp"].set_index(["dose", "viability"])["median"]
    assert supp[(1e7, 0.7)] != pytest.approx(supp[(1e7, 0.9)], rel=1e-6)


@pytest.mark.parametrize(
    ("arms", "kw", "match"),
    [
        ({"dose": [1.0], "weight": [1.0]}, {}, "arm factor 'weight' is not"),
        ({"dose": [1.0]}, {"regimen": None}, "arm 0 has no regimen"),
        ({"dose": [-1.0]}, {}, "arm 0 dose = -1.0 must be a number >= 0"),
        ({"dose": ["a"]}, {}, "arm 0 dose = 'a' is not a number"),
        ({"dose": [1.0], "regimen": {"x": "daily"}}, {}, "regimen must be a cp.Regimen"),
        ({"dose": [1.0]}, {"target": {"cmax": (">=", 1.0)}}, "target for unknown metric 'cmax'"),
        ({"dose": [1.0]}, {"target": {"auc": ("=>", 1.0)}}, r"target\['auc'\] = \('=>', 1.0\)"),
        ([], {}, "arms is empty"),
    ],
)
def test_bad_dose_ranging_input(one_cmt, arms, kw, match):
    kw = {"regimen": _regimens()["single"], **kw}
    with pytest.raises((cp.SpecError, cp.DosingError), match=match):
        cp.dose_ranging(one_cmt, arms, None, TIMES, {"auc": cp.metrics.auc("conc")}, **kw)


def test_population_of_another_model_is_refused(one_cmt, host):
    pop = cp.VirtualPopulation(host, 2)
    with pytest.raises(cp.SpecError, match="drawn for model msc_pkpd_host, not one_cmt_iv"):
        cp.dose_ranging(
            one_cmt, {"dose": [1.0]}, pop, TIMES, {"auc": cp.metrics.auc("conc")},
            regimen=_regimens()["single"],
        )  # fmt: skip


def _np_percentile_with_inf(x, q):
    """numpy.percentile on values with +inf (numpy alone gives NaN next to inf): +inf as a
    huge finite value, and a result that interpolates towards it read as +inf."""
    p = np.percentile(np.where(np.isinf(x), 1e300, x), q)
    return np.inf if p >= 1e290 else p


@pytest.mark.slow
def test_subjects_whose_metric_is_inf_count_in_pta_and_percentiles(one_cmt):
    # time_to(conc, 1) "below" within 48 h: a subject with CL < 0.48 L/h (C0 = 10 mg/L) never
    # gets there, +inf; it is solved and must count as not attaining "<= 24 h" (they used
    # to be dropped, biasing the PTA up and the percentiles down)
    n = 400
    pop = cp.VirtualPopulation(one_cmt, n, random_effects={"CL": 1.0}, seed=5)
    unit = cp.Regimen([cp.Dose(time=0.0, amount=1.0, cmt="central")])
    late = cp.Regimen([cp.Dose(time=1.0, amount=1.0, cmt="central")])  # baseline conc 0
    metrics = {
        "to": cp.metrics.time_to("conc", 1.0, "below"),
        "hl": cp.metrics.half_life("conc"),
        "drop": cp.metrics.max_pct_change("conc"),  # 0/0 from a zero baseline: NaN
    }
    with pytest.warns(RuntimeWarning, match="metric 'drop' is NaN .* for 400 of 400 solved"):
        table, samples = cp.dose_ranging(
            one_cmt,
            {"dose": [100.0], "regimen": {"at 0": unit, "at 1": late}},
            pop,
            np.linspace(0.0, 48.0, 49),
            metrics,
            target={"to": ("<=", 24.0), "drop": (">=", 50.0)},
            return_samples=True,
        )
    y = samples["to"].values[:n]
    k = pop.params["CL"] / pop.params["V"]
    never = np.log(100.0 / pop.params["V"]) / k > 48.0  # closed-form crossing after 48 h
    assert never.sum() == 27 and np.array_equal(np.isinf(y), never)
    row = table[(table.metric == "to") & (table.regimen == "at 0")].iloc[0]
    assert row["n"] == n and row["n_failed"] == 0
    # the same subjects in numpy: PTA over all 400, percentiles with the infs at the top
    assert row["pta"] == np.mean(y <= 24.0)
    for col, q in (("median", 50), ("p05", 5), ("p95", 95)):
        assert row[col] == pytest.approx(_np_percentile_with_inf(y, q), rel=1e-12)
    assert row["p95"] == np.inf  # 27 of 400 (6.75%) never get below 1 mg/L
    # a NaN metric is reported as NaN (with the warning above), never dropped
    drop = table[(table.metric == "drop") & (table.regimen == "at 1")].iloc[0]
    assert np.isnan(drop["median"]) and np.isnan(drop["pta"]) and drop["n"] == n


def test_percentile_with_infinities_matches_numpy_where_numpy_is_defined():
    from cellpkpd.analysis.doseranging import _percentile

    rng = np.random.default_rng(0)
    x = rng.normal(size=37)
    for q in (0, 5, 37.5, 50, 95, 100):
        assert _percentile(x, q) == pytest.approx(np.percentile(x, q), rel=1e-14, abs=1e-15)
    x[[3, 9]] = np.inf
    x[5] = -np.inf
    for q in (0, 5, 50, 95, 100):
        want = _np_percentile_with_inf(np.where(np.isneginf(x), -1e300, x), q)
        want = -np.inf if want <= -1e290 else want
        assert _percentile(x, q) == pytest.approx(want, rel=1e-12)
    assert np.isnan(_percentile(np.array([1.0, np.nan]), 50))
