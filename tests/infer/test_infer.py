"""Population fits (first part of the fitting issue): Population validation, data for
fitting, MAP on the theophylline data, and a NUTS smoke run with the InferenceData layout."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import cellpkpd as cp
import cellpkpd.infer.posterior
from cellpkpd.infer.data import FitData

POP = cp.Population(random_effects={"ka": 0.5, "CL": 0.5, "V": 0.5}, error={"conc": "additive"})


@pytest.mark.parametrize(
    ("population", "message"),
    [
        (cp.Population(random_effects={"Cl": 0.3}), "unknown parameter 'Cl'"),
        (cp.Population(random_effects={"CL": 0.3}, fixed=["CL"]), "both fixed"),
        (cp.Population(covariate_effects={"CL": {"WT": "cubic"}}), "expected power"),
        (cp.Population(error={"cp": "additive"}), "unknown observation 'cp'"),
        (cp.Population(error={"conc": "poisson"}), "expected additive"),
        (cp.Population(covariate_effects={"CL": {"WT": "power"}}, fixed=["CL"]), "both fixed"),
    ],
)
def test_population_is_checked_against_the_model(population: cp.Population, message: str) -> None:
    with pytest.raises(cp.SpecError, match=message):
        population.validate(cp.load_model("one_cmt_oral"))


def test_population_rejects_effects_on_physiology_values() -> None:
    spec = cp.load_model("msc_pbk", species="mouse")
    with pytest.raises(cp.SpecError, match="mouse physiology table"):
        cp.Population(random_effects={"cardiac_output": 0.2}).validate(spec)


def test_population_rejects_bad_scale() -> None:
    with pytest.raises(cp.SpecError, match="must be a scale > 0"):
        cp.Population(random_effects={"CL": -1.0})


def test_fit_data_layout_and_errors() -> None:
    spec = cp.load_model("one_cmt_oral")
    fd = FitData.build(spec, cp.datasets.theophylline())
    assert fd.outputs == ("conc",)
    assert fd.times.shape == (12, 12) and int(fd.observed.sum()) == 132
    df = pd.DataFrame(
        {
            "ID": [1, 1, 2],
            "TIME": [0.0, 1.0, 0.0],
            "AMT": [100.0, 0, 100.0],
            "EVID": [1, 0, 1],
            "CMT": [1, 2, 1],
            "DV": [None, 1.0, None],
        }
    )
    # a subject with doses only (a dropout) is kept and adds nothing to the likelihood
    fd = FitData.build(spec, cp.read_nonmem(df))
    assert fd.observed.tolist() == [[False, True], [False, False]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pop = cp.Population(random_effects={"CL": 0.3})
        idata = cp.fit(spec, cp.read_nonmem(df), pop, method="map", steps=5, progress=False)
    ll = idata.log_likelihood["obs"].values
    assert np.all(ll[..., 1, :] == 0.0) and np.isfinite(ll[..., 0, 1]).all()
    no_obs = df.assign(DV=None)
    with pytest.raises(cp.DataError, match="no observations to fit"):
        FitData.build(spec, cp.read_nonmem(no_obs))
    with pytest.raises(cp.DataError, match="no column AGE"):
        cp.fit(
            spec,
            cp.datasets.theophylline(),
            cp.Population(covariate_effects={"CL": {"AGE": "power"}}),
            method="map",
            steps=1,
        )


@pytest.mark.slow
def test_map_fit_of_theophylline_is_near_the_published_estimates() -> None:
    """MAP takes the non-centred model (the centred joint mode puts every omega at 0 and
    every subject at the typical values) and warns that its omegas are not estimates."""
    with pytest.warns(UserWarning, match="omega_\\* are not estimates"):
        idata = cp.fit(
            "one_cmt_oral", cp.datasets.theophylline(), POP, method="map", steps=2500,
            progress=False,
        )  # fmt: skip
    post = idata.posterior
    assert "data" not in post  # the likelihood factor is not a variable
    # individual values follow each subject's data: IPRED is not PRED
    assert float(post["CL_i"].std()) > 0.1 * float(post["CL"].mean())
    pp = idata.posterior_predictive
    assert float(np.nanmax(np.abs(pp["ipred"] - pp["pred"]))) > 0.5
    est = {k: float(post[k].values.ravel()[0]) for k in ("ka", "CL", "V")}
    # Pinheiro & Bates (2000) nlme fit: ka = exp(0.45) = 1.57 /h, CL = exp(-3.21) L/h/kg x
    # 69.6 kg (mean weight) = 2.8 L/h, V = CL/ke = 0.455 L/kg x 69.6 = 31.7 L; the
    # joint MAP of a hierarchical model is not the ML estimate, so allow 20%
    assert est["ka"] == pytest.approx(1.57, rel=0.2)
    assert est["CL"] == pytest.approx(2.8, rel=0.2)
    assert est["V"] == pytest.approx(31.7, rel=0.2)
    assert set(idata.groups()) >= {"posterior", "log_likelihood", "observed_data"}


@pytest.mark.extended  # NUTS in CI: test_infer_nonlinear.py (4 chains), notebook 03
def test_nuts_smoke_run_gives_inference_data_by_subject() -> None:
    data = cp.datasets.theophylline()
    with pytest.warns(RuntimeWarning):  # a short run: R-hat / ESS warnings are expected
        idata = cp.fit("one_cmt_oral", data, POP, chains=2, warmup=150, draws=100, progress=False)
    post = idata.posterior
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 100
    assert list(post["CL_i"].dims) == ["chain", "draw", "subject"]
    assert list(post["subject"].values) == list(data.ids)
    assert idata.log_likelihood["obs"].shape == (2, 100, 12, 12)
    assert "diverging" in idata.sample_stats
    # the median of a short run is already in the right region
    assert float(post["CL"].median()) == pytest.approx(2.8, rel=0.3)


@pytest.mark.slow
def test_predict_new_regimen_from_a_fit() -> None:
    idata = cp.fit(
        "one_cmt_oral",
        cp.datasets.theophylline(),
        POP,
        method="svi",
        steps=1500,
        draws=200,
        progress=False,
    )
    times = np.linspace(0.0, 48.0, 49)
    reg = cp.Regimen.repeat(cp.Dose(0.0, 320.0, "depot"), interval=12.0, count=4)
    res = cp.predict(idata, "one_cmt_oral", reg, times, n=500, seed=1)
    conc = res["conc"].values
    assert conc.shape == (500, 49) and np.all(np.isfinite(conc))
    # between-subject spread: the 5th and 95th percentiles of the peak differ clearly
    peak = conc.max(axis=1)
    assert np.quantile(peak, 0.95) > 1.3 * np.quantile(peak, 0.05)
    # typical peak of 320 mg every 12 h lies in the observed theophylline range (mg/L)
    assert 5.0 < np.median(peak) < 30.0
    with pytest.raises(cp.SpecError, match="n = 0"):
        cp.predict(idata, "one_cmt_oral", reg, times, n=0)


BIODISTRIBUTION = """
[model]
name = "three_organ_biodistribution"
description = "Cells injected into blood, trapped in lung, cleared through liver"
time_unit = "h"
amount_unit = "cells"

[parameters]
k_trap = { value = 2.0, unit = "1/h", prior = "lognormal(log(1), 1)" }
k_release = { value = 0.3, unit = "1/h", prior = "lognormal(log(0.5), 1)" }
k_liver = { value = 0.5, unit = "1/h", prior = "lognormal(log(0.5), 1)" }
k_clear = { value = 0.1, unit = "1/h", prior = "lognormal(log(0.2), 1)" }

[states]
blood = { initial = 0.0, unit = "cells" }
lung = { initial = 0.0, unit = "cells" }
liver = { initial = 0.0, unit = "cells" }

[flows]
"blood -> lung" = "k_trap"
"lung -> blood" = "k_release"
"blood -> liver" = "k_liver"
"liver ->" = "k_clear"

[observations]
blood_cells = { expr = "blood", unit = "cells", error = "lognormal" }
lung_cells = { expr = "lung", unit = "cells", error = "lognormal" }
liver_cells = { expr = "liver", unit = "cells", error = "lognormal" }
"""


@pytest.mark.extended  # in CI: notebook 02 fits a terminal-sacrifice study (3 mice per time)
def test_terminal_sacrifice_design_recovers_the_truth(tmp_path) -> None:
    """One animal per time point (no repeated measures, no IIV), three organs each."""
    path = tmp_path / "biodistribution.toml"
    path.write_text(BIODISTRIBUTION)
    spec = cp.load_model(path)
    truth = {k: p.value for k, p in spec.parameters.items()}
    times = np.array([0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 24.0, 36.0, 48.0])
    outputs = ("blood_cells", "lung_cells", "liver_cells")
    res = cp.simulate(spec, cp.Regimen([cp.Dose(0.0, 1e6, "blood")]), times, outputs=outputs)
    rng = np.random.default_rng(7)
    rows = []
    for i, t in enumerate(times):  # animal i + 1 is sacrificed at times[i]
        rows.append({"ID": i + 1, "TIME": 0.0, "AMT": 1e6, "EVID": 1, "CMT": "blood"})
        for o in outputs:
            dv = float(res[o].values[0, i]) * np.exp(0.1 * rng.standard_normal())
            rows.append({"ID": i + 1, "TIME": t, "AMT": 0.0, "EVID": 0, "CMT": o, "DV": dv})
    data = cp.read_nonmem(pd.DataFrame(rows))
    pop = cp.Population()  # naive pooling: one typical value each
    with warnings.catch_warnings():
        # a short run: an ESS < 400 warning for one of the seven quantities is expected
        warnings.filterwarnings("ignore", "fit: bulk ESS", RuntimeWarning)
        idata = cp.fit(spec, data, pop, chains=2, warmup=300, draws=300, seed=2, progress=False)
    post = idata.posterior
    assert set(idata.observed_data["output"].values.ravel()) == set(outputs)
    for name, value in truth.items():
        lo, hi = np.quantile(post[name].values, [0.05, 0.95])
        assert lo < value < hi, f"{name}: [{lo:.3g}, {hi:.3g}] misses {value}"
    # 36 lognormal observations with SD 0.1: the residual SD is recovered within its interval
    lo, hi = np.quantile(post["sigma_log_blood_cells"].values, [0.05, 0.95])
    assert lo < 0.1 * 2.5 and hi > 0.1 / 2.5
    assert int(idata.sample_stats["diverging"].sum()) == 0
    # without random effects PRED equals IPRED
    pp = idata.posterior_predictive
    np.testing.assert_allclose(pp["pred"].values, pp["ipred"].values, rtol=1e-12)


_CRCL_MODEL = """
[model]
name = "crcl"
time_unit = "h"
amount_unit = "mg"
[parameters]
CL = { value = 4.0, unit = "L/h", bounds = [0.0, inf], prior = "lognormal(log(4), 1)", description = "clearance at CRCL 100 mL/min" }
V = { value = 20.0, unit = "L", bounds = [0.0, inf], prior = "lognormal(log(20), 1)", description = "volume" }
[covariates]
CRCL = { value = 100.0, unit = "mL/min", description = "creatinine clearance" }
[states]
central = { initial = 0.0, unit = "mg" }
[flows]
"central ->" = "CL * CRCL / 100 / V"
[observations]
conc = { expr = "central / V", unit = "mg/L", error = "proportional" }
"""  # noqa: E501


def test_time_varying_model_covariate_enters_the_fit(tmp_path) -> None:
    """Renal function falls from CRCL 100 to 25 mL/min at 8 h (acute kidney injury): the
    fit's predictions follow the covariate record by record, exactly as cp.simulate(data=)
    does (piecewise closed form, 1e-9), and MAP recovers CL and V within 5 %. (Holding each
    subject's first CRCL, as fits did before, gave CL 2.87 and V 31.0 on these data.)"""
    path = tmp_path / "crcl.toml"
    path.write_text(_CRCL_MODEL)
    spec = cp.load_model(path)
    cl, v, dose = 4.0, 20.0, 200.0
    times = np.array([1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0])
    k1, k2 = cl * 1.0 / v, cl * 0.25 / v
    conc = np.where(
        times <= 8.0, dose / v * np.exp(-k1 * times), dose / v * np.exp(-8 * k1 - k2 * (times - 8))
    )
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        rows.append({"ID": i + 1, "TIME": 0.0, "AMT": dose, "EVID": 1, "CMT": 1, "CRCL": 100.0})
        noisy = conc * (1.0 + 0.05 * rng.standard_normal(times.size))
        for t, c in zip(times, noisy, strict=True):
            crcl = 100.0 if t < 8.0 else 25.0
            rows.append({"ID": i + 1, "TIME": t, "AMT": 0.0, "EVID": 0, "CMT": 1, "DV": c,
                         "CRCL": crcl})  # fmt: skip
    # the records say CRCL from each record on (LOCF); under NOCB it would fall at 6 h
    data = cp.read_nonmem(pd.DataFrame(rows), covariates="locf")
    fd = FitData.build(spec, data)
    assert fd.tv is not None and list(fd.tv.values) == ["CRCL"]
    np.testing.assert_array_equal(fd.covariates["CRCL"], 100.0)  # the baseline
    # predictions at the true parameters: the likelihood's solver = cp.simulate(data=) =
    # the piecewise closed form
    from cellpkpd.infer.likelihood import solve_draws

    pop = cp.Population(error={"conc": "proportional"})
    pred = solve_draws(spec, fd, pop, {"CL": np.full((1, 6), cl), "V": np.full((1, 6), v),
                                        "CRCL": np.full((1, 6), 100.0)}, "exact")[0]  # fmt: skip
    sim = cp.simulate(spec, data=data)["conc"].values
    ok = fd.observed
    np.testing.assert_allclose(pred[ok], sim[ok], rtol=1e-9)
    np.testing.assert_allclose(pred[ok].reshape(6, -1), np.tile(conc, (6, 1)), rtol=1e-9)
    idata = cp.fit(spec, data, pop, method="map", steps=1500, progress=False, seed=0)
    assert float(idata.posterior["CL"].values.ravel()[0]) == pytest.approx(cl, rel=0.05)
    assert float(idata.posterior["V"].values.ravel()[0]) == pytest.approx(v, rel=0.05)


def test_fit_data_outputs_are_only_the_measured_ones(tmp_path) -> None:
    """Dose records measure nothing: a study that measures only the lung must not give the
    model's first observation (blood_cells) a residual error to sample."""
    path = tmp_path / "bio.toml"
    path.write_text(BIODISTRIBUTION)
    spec = cp.load_model(path)
    df = pd.DataFrame(
        {"ID": [1, 1, 1], "TIME": [0.0, 1.0, 2.0], "AMT": [1e6, 0, 0], "EVID": [1, 0, 0],
         "CMT": ["blood", "lung_cells", "lung_cells"], "DV": [None, 5e5, 4e5]}
    )  # fmt: skip
    fd = FitData.build(spec, cp.read_nonmem(df))
    assert fd.outputs == ("lung_cells",)
    assert fd.output.tolist() == [[0, 0, 0]]


_ONE_CMT = """
[model]
name = "wt_{kind}"
time_unit = "h"
amount_unit = "mg"
[parameters]
CL = {{ value = 4.0, unit = "L/h", bounds = [0.0, inf], prior = "lognormal(log(4), 1)", description = "clearance" }}
V = {{ value = 20.0, unit = "L", bounds = [0.0, inf], prior = "lognormal(log(20), 1)", description = "volume" }}
{covariates}
[states]
central = {{ initial = 0.0, unit = "mg" }}
[flows]
"central ->" = "{flow}"
[observations]
conc = {{ expr = "central / V", unit = "mg/L", error = "proportional" }}
"""  # noqa: E501


def test_covariate_effect_follows_a_covariate_that_changes_within_subjects(tmp_path) -> None:
    """Every subject weighs 70 kg at its first dose and 35-140 kg at its second (24 h) and
    after, which under NOCB (the default) holds back to the 12-h sample, and
    CL = CL_70 (WT / 70) ** 0.75 follows the weight record by record: the fit's
    predictions equal cp.simulate(data=) of a model that writes the effect into its flow
    (1e-9), and MAP recovers the exponent, which the first-record weight (70 kg for all)
    cannot identify at all."""
    plain = tmp_path / "plain.toml"
    plain.write_text(_ONE_CMT.format(kind="plain", covariates="", flow="CL / V"))
    explicit = tmp_path / "explicit.toml"
    explicit.write_text(_ONE_CMT.format(
        kind="explicit",
        covariates='[covariates]\nWT = { value = 70.0, unit = "kg", description = "weight" }',
        flow="CL * (WT / 70) ** 0.75 / V",
    ))  # fmt: skip
    weights = [35.0, 50.0, 70.0, 90.0, 110.0, 140.0]
    times = np.array([1.0, 4.0, 8.0, 12.0, 25.0, 28.0, 32.0, 36.0, 44.0])
    rows = []
    for i, w in enumerate(weights):
        for t0 in (0.0, 24.0):
            wt = 70.0 if t0 == 0.0 else w
            rows.append({"ID": i + 1, "TIME": t0, "AMT": 100.0, "EVID": 1, "CMT": 1, "DV": None,
                         "WT": wt})  # fmt: skip
        for t in times:
            rows.append({"ID": i + 1, "TIME": t, "AMT": 0.0, "EVID": 0, "CMT": 1, "DV": 1.0,
                         "WT": 70.0 if t < 24.0 else w})  # fmt: skip
    frame = pd.DataFrame(rows).sort_values(["ID", "TIME"], kind="stable").reset_index(drop=True)
    truth = cp.simulate(cp.load_model(explicit), data=cp.read_nonmem(frame))["conc"].values
    spec = cp.load_model(plain)
    fd = FitData.build(spec, cp.read_nonmem(frame))
    assert list(fd.varying) == ["WT"] and fd.tv is None  # WT is not a model covariate
    np.testing.assert_array_equal(fd.covariates["WT"], 70.0)
    pop = cp.Population(covariate_effects={"CL": {"WT": "power"}}, error={"conc": "proportional"})
    from cellpkpd.infer.likelihood import solve_draws

    pred = solve_draws(spec, fd, pop, {"CL": np.full((1, 6), 4.0), "V": np.full((1, 6), 20.0)},
                        "exact", {"beta_CL_WT": np.array([0.75])})[0]  # fmt: skip
    ok = fd.observed
    np.testing.assert_allclose(pred[ok], truth[ok], rtol=1e-9)
    # noisy data at the truth; MAP recovers CL_70, V and the exponent
    rng = np.random.default_rng(1)
    obs = frame["EVID"] == 0
    frame.loc[obs, "DV"] = truth[ok] * (1.0 + 0.03 * rng.standard_normal(int(ok.sum())))
    data = cp.read_nonmem(frame)
    idata = cp.fit(spec, data, pop, method="map", steps=2000, progress=False, seed=0)
    post = idata.posterior
    assert float(post["beta_CL_WT"].values.ravel()[0]) == pytest.approx(0.75, abs=0.05)
    assert float(post["CL"].values.ravel()[0]) == pytest.approx(4.0, rel=0.03)
    assert float(post["V"].values.ravel()[0]) == pytest.approx(20.0, rel=0.03)
    # the VPC replicates follow the weight too: at the fitted values they match the data
    vpc = cellpkpd.infer.posterior.simulate_study(idata, spec, data, pop, n=2, seed=0)
    ipred = vpc["ipred"].values[0]
    np.testing.assert_allclose(ipred[ok], truth[ok], rtol=0.05)


def test_fit_warns_when_a_proportional_error_meets_a_prediction_of_zero() -> None:
    """A sample listed before the first dose (prediction 0) under a proportional error has
    a residual SD of 0: the fit says which data row, instead of a silent -2e22."""
    df = pd.DataFrame(
        {"ID": [1, 1, 1, 1, 2, 2, 2], "TIME": [0.0, 0.0, 1.0, 6.0, 0.0, 1.0, 6.0],
         "AMT": [0, 100, 0, 0, 100, 0, 0], "EVID": [0, 1, 0, 0, 1, 0, 0], "CMT": 1,
         "DV": [0.2, np.nan, 8.3, 3.1, np.nan, 7.9, 2.9]}
    )  # fmt: skip
    pop = cp.Population(error={"conc": "proportional"})
    with pytest.warns(UserWarning, match=r"data rows 1\) are predicted as 0"):
        cp.fit("one_cmt_iv", cp.read_nonmem(df), pop, method="map", steps=20, progress=False)
