"""What a fit stores and hands on: the log-likelihood of every error model is log p(DV)
(checked by hand with scipy), a MAP fit's omegas do not flow silently into `cp.predict`,
`VirtualPopulation.from_posterior` or the VPC replicates of `simulate_study`, and a failure
inside a fit is a one-line FitError.
Small MAP fits of the (exact-path) one-compartment oral model keep these fast."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import cellpkpd as cp

DOSE = 100.0  # [mg] into the depot
TIMES = [0.5, 1.0, 2.0, 4.0, 8.0, 24.0]  # [h]
DV = {1: [3.1, 4.2, 4.0, 3.3, 2.1, 0.02], 2: [2.0, 3.4, 3.9, 3.0, 1.7, 0.6]}  # [mg/L]
LLOQ = 0.05  # [mg/L]: subject 1's last record (0.02) is censored


def _data(lloq: bool = True) -> cp.Dataset:
    rows = []
    for i, dv in DV.items():
        rows.append({"ID": i, "TIME": 0.0, "AMT": DOSE, "EVID": 1, "CMT": 1, "DV": np.nan})
        rows += [
            {"ID": i, "TIME": t, "AMT": 0.0, "EVID": 0, "CMT": 2, "DV": y}
            for t, y in zip(TIMES, dv, strict=True)
        ]
    frame = pd.DataFrame(rows)
    if lloq:
        frame["LLOQ"] = LLOQ
    return cp.read_nonmem(frame)


def _first(idata, name: str) -> float:
    return float(idata.posterior[name].values.ravel()[0])


@pytest.mark.slow
# combined covers the additive and proportional formulas (its SD has both terms)
@pytest.mark.parametrize("error", ["lognormal", "combined"])
def test_log_likelihood_is_the_density_of_dv_for_every_error_model(error: str) -> None:
    """log_likelihood holds log p(DV | draw) per record: for log-normal error the density of
    DV itself, norm.logpdf(log DV, log IPRED, sigma) - log DV (the Jacobian of DV -> log DV;
    before, the -log DV term was missing), and for a censored record (M3) log P(DV < LLOQ)
    = norm.logcdf on the error model's scale. The hand computation uses the stored IPRED and
    sigmas of the same draw, so only float64 round-off separates them (rtol 1e-9)."""
    pop = cp.Population(error={"conc": error})
    idata = cp.fit("one_cmt_oral", _data(), pop, method="map", steps=20, progress=False)
    ipred = idata.posterior_predictive["ipred"].values[0, 0]
    ll = idata.log_likelihood["obs"].values[0, 0]
    obs = idata.observed_data
    observed, censored = obs["observed"].values, obs["censored"].values
    dv = obs["obs"].values
    assert censored.sum() == 1 and censored[0, -1]
    dv, ipred = np.where(observed, dv, 1.0), np.where(observed, ipred, 1.0)  # no log(0)
    if error == "lognormal":
        s = _first(idata, "sigma_log_conc")
        expect = stats.norm.logpdf(np.log(dv), np.log(ipred), s) - np.log(dv)
        expect_cens = stats.norm.logcdf(np.log(LLOQ), np.log(ipred), s)
    else:
        add, prop = _first(idata, "sigma_add_conc"), _first(idata, "sigma_prop_conc")
        sd = np.sqrt(add**2 + (prop * ipred) ** 2)
        expect = stats.norm.logpdf(dv, ipred, sd)
        expect_cens = stats.norm.logcdf(LLOQ, ipred, sd)
    quantified = observed & ~censored
    np.testing.assert_allclose(ll[quantified], expect[quantified], rtol=1e-9)
    np.testing.assert_allclose(ll[censored], expect_cens[censored], rtol=1e-9)
    assert np.all(ll[~observed] == 0.0)


@pytest.fixture(scope="module")
def map_fit():
    pop = cp.Population(random_effects={"CL": 0.3}, error={"conc": "proportional"})
    with pytest.warns(UserWarning, match="not estimates"):
        return cp.fit("one_cmt_oral", _data(lloq=False), pop, method="map", steps=200,
                      progress=False)  # fmt: skip


@pytest.mark.slow
def test_predict_refuses_a_map_fits_omegas_without_explicit_omega(map_fit) -> None:
    """A MAP fit's omega_CL is a joint mode (it grows with its prior scale), so predict
    refuses it; with omega= the virtual subjects' log CL spread is the given SD: 2000
    subjects around one (MAP) typical value, so the sample SD of log CL is 0.25 within
    4 of its standard errors (0.25 / sqrt(2 * 2000) = 0.004)."""
    assert map_fit.posterior.attrs["method"] == "map"
    reg = cp.Regimen([cp.Dose(0.0, DOSE, "depot")])
    with pytest.raises(cp.SpecError, match=r"MAP fit.*omega_CL = .* pass omega=\{'CL': \.\.\.\}"):
        cp.predict(map_fit, "one_cmt_oral", reg, [1.0, 4.0], n=10)
    with pytest.raises(cp.SpecError, match=r"omega\['V'\] is not a random effect"):
        cp.predict(map_fit, "one_cmt_oral", reg, [1.0], n=10, omega={"CL": 0.2, "V": 0.1})
    with pytest.raises(cp.SpecError, match=r"omega\['CL'\] = -0.1 must be finite and >= 0"):
        cp.predict(map_fit, "one_cmt_oral", reg, [1.0], n=10, omega={"CL": -0.1})
    n = 2000
    res = cp.predict(map_fit, "one_cmt_oral", reg, [24.0], n=n, seed=3, omega={"CL": 0.25})
    assert res["conc"].shape == (n, 1)
    spec = cp.load_model("one_cmt_oral")
    pick = np.zeros(n, dtype=int)  # the MAP fit's one draw
    from cellpkpd.infer.posterior import posterior_subjects

    z = np.random.default_rng(0).standard_normal((n, 1))
    subjects = posterior_subjects(map_fit.posterior, spec, {}, pick, z, "test", omega={"CL": 0.25})
    sd = np.log(subjects["CL"]).std(ddof=1)
    assert abs(sd - 0.25) < 4 * 0.25 / np.sqrt(2 * n)


@pytest.mark.slow
def test_from_posterior_refuses_a_map_fits_omegas_without_explicit_omega(map_fit) -> None:
    """As predict: refused without omega=; with it, the log CL spread of the virtual
    population is the given 0.25 (tolerance as in the predict test), not the MAP omega."""
    with pytest.raises(cp.SpecError, match=r"VirtualPopulation\.from_posterior: the fit is a MAP"):
        cp.VirtualPopulation.from_posterior(map_fit, "one_cmt_oral", n=10)
    n = 2000
    vp = cp.VirtualPopulation.from_posterior(
        map_fit, "one_cmt_oral", n=n, seed=0, omega={"CL": 0.25}
    )
    sd = np.log(vp.params["CL"]).std(ddof=1)
    assert abs(sd - 0.25) < 4 * 0.25 / np.sqrt(2 * n)
    omega_map = _first(map_fit, "omega_CL")
    assert abs(omega_map - 0.25) > 4 * 0.25 / np.sqrt(2 * n)  # the test can tell them apart
    # V has no random effect: one typical value for every subject
    assert np.ptp(vp.params["V"]) == 0.0


@pytest.mark.slow
def test_simulate_study_and_vpc_refuse_a_map_fits_omegas_without_explicit_omega(map_fit) -> None:
    """VPC replicates, like predict: simulate_study (and plots.vpc, which calls it) refuse a
    MAP fit's omega_CL; with omega={'CL': 0} every replicate subject is the MAP fit's own
    typical prediction, so its IPRED equals the fit's stored PRED (same solver path; only
    round-off, rtol 1e-9), and with omega={'CL': 0.25} the replicates spread."""
    from cellpkpd.infer.posterior import simulate_study

    pop = cp.Population(random_effects={"CL": 0.3}, error={"conc": "proportional"})
    data = _data(lloq=False)
    with pytest.raises(cp.SpecError, match=r"simulate_study: the fit is a MAP fit.*omega="):
        simulate_study(map_fit, "one_cmt_oral", data, pop, n=2)
    with pytest.raises(cp.SpecError, match=r"simulate_study: omega\['V'\] is not a random"):
        simulate_study(map_fit, "one_cmt_oral", data, pop, n=2, omega={"CL": 0.1, "V": 0.1})
    with pytest.raises(cp.SpecError, match=r"simulate_study: the fit is a MAP fit"):
        cp.plots.vpc(map_fit, data, spec="one_cmt_oral", population=pop, n=2)
    fixed = simulate_study(map_fit, "one_cmt_oral", data, pop, n=3, seed=1, omega={"CL": 0.0})
    pred = map_fit.posterior_predictive["pred"].values[0, 0]
    ok = fixed["observed"].values
    for r in range(3):
        np.testing.assert_allclose(fixed["ipred"].values[r][ok], pred[ok], rtol=1e-9)
    spread = simulate_study(map_fit, "one_cmt_oral", data, pop, n=3, seed=1, omega={"CL": 0.25})
    last = spread["ipred"].values[:, :, -1]  # 24 h: depends on CL most
    assert np.ptp(np.log(last)) > 0.05
    import matplotlib.pyplot as plt

    fig = cp.plots.vpc(map_fit, data, spec="one_cmt_oral", population=pop, n=5, omega={"CL": 0.2})
    plt.close(fig)


NAN_MODEL = """
[model]
name = "one_cmt_oral_nan"
description = "an elimination rate that is NaN for every CL > 0"
time_unit = "h"
amount_unit = "mg"

[parameters]
ka = { value = 1.5, unit = "1/h" }
CL = { value = 2.8, unit = "L/h" }
V = { value = 32.0, unit = "L" }

[states]
depot = { initial = 0.0, unit = "mg" }
central = { initial = 0.0, unit = "mg" }

[flows]
"depot -> central" = "ka"
"central ->" = "sqrt(-CL / V) * sqrt(CL / V)"

[observations]
conc = { expr = "central / V", unit = "mg/L", error = "proportional" }
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", ["nuts", "map"])
def test_a_failure_inside_a_fit_is_a_one_line_fit_error(tmp_path, method: str) -> None:
    """Every solve gives NaN: NUTS finds no valid initial value, MAP's loss is not finite;
    both are a FitError of one line naming the method and what to try, not a traceback
    from numpyro or JAX."""
    path = tmp_path / "nan.toml"
    path.write_text(NAN_MODEL)
    spec = cp.load_model(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(cp.FitError) as err:
            cp.fit(spec, _data(lloq=False), method=method, chains=1, warmup=5, draws=5,
                   steps=5, progress=False)  # fmt: skip
    text = str(err.value)
    assert "\n" not in text and f"fit(method='{method}')" in text
    assert "cp.simulate(spec, data=data)" in text
    assert err.value.__cause__ is None
