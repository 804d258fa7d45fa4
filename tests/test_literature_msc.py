"""Published facts about MSCs that the library models must reproduce, one test per fact.

Each docstring names the source and what of it was read; each tolerance says why.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import cellpkpd as cp

# ====================================================================== msc_pkpd_host
# Scenarios of the PD model (models/msc_pkpd_host.toml), all in a 25-g mouse (the model's
# default host, where its rate constants hold as written) unless they say otherwise, simulated
# once in one batch. The calibrated values (models/calibration/msc_pkpd_host.py) were fitted to
# some of these facts; the tests check that the shipped, rounded values still reproduce them.
PD_TIMES = np.arange(0.0, 336.5, 0.5)  # two weeks [h]
PD_DOSE = 1e6  # MSCs per mouse (4e7 cells/kg), the order of mouse studies (Galleu 2017)


def _pd_regimen(amount: float = PD_DOSE, cmt: str = "blood") -> cp.Regimen:
    return cp.Regimen([cp.Dose(0.0, amount, cmt, duration=0.1)])


PD_SCENARIOS: dict[str, tuple[cp.Regimen, dict]] = {
    "typical": (_pd_regimen(), {}),
    "no_cytotoxicity": (_pd_regimen(), {"cytotoxic_activity": 0.0}),
    "apoptotic_cells_no_cytotoxicity": (
        _pd_regimen(cmt="apoptotic"),
        {"cytotoxic_activity": 0.0},
    ),
    "thawed": (_pd_regimen(), {"thawed": 1.0}),
    "human_no_cells": (cp.Regimen([]), {"body_weight": 70.0}),
    **{f"inflammation_{x}": (_pd_regimen(), {"inflammation": x}) for x in (0.0, 0.5, 2.0, 4.0)},
    "inflammation_0_high_dose": (_pd_regimen(1e9), {"inflammation": 0.0}),
}
PD_OUTPUTS = (
    "viable_msc", "msc_dna", "viable", "stunned", "med_sec", "secretion", "licensing",
    "biomarker", "pct_change", "kout_h",
)  # fmt: skip


@pytest.fixture(scope="module")
def pd_runs() -> dict[str, dict[str, np.ndarray]]:
    spec = cp.load_model("msc_pkpd_host")
    names = list(PD_SCENARIOS)
    defaults = spec.defaults()
    covs = {
        k: np.array([PD_SCENARIOS[n][1].get(k, defaults[k]) for n in names])
        for k in spec.covariates
    }
    res = cp.simulate(
        spec, [PD_SCENARIOS[n][0] for n in names], PD_TIMES, covariates=covs, outputs=PD_OUTPUTS
    )
    assert res["status"].values.tolist() == [0] * len(names)
    return {n: {o: res[o].values[i] for o in PD_OUTPUTS} for i, n in enumerate(names)}


def _at(y: np.ndarray, t: float) -> float:
    return float(np.interp(t, PD_TIMES, y))


def _peak_suppression(run: dict[str, np.ndarray]) -> float:
    return float(-run["pct_change"].min())


@pytest.mark.slow  # shares one ~30-s compile of the PD model
def test_pd_galleu2017_without_recipient_cytotoxicity_msc_have_little_effect(pd_runs) -> None:
    """Galleu et al. 2017 (Sci Transl Med 9:eaam7828): MSCs did not suppress GvHD in mice
    without recipient cytotoxic activity (the abstract's finding, as quoted in issue 15; read
    here: the Fig. 7 legend). In the model MSCs become apoptotic in vivo mainly by cytotoxic
    killing, so without it the efferocytosis path is small and only licensed secretion is left.

    Threshold 20% of the typical peak effect: a reduction of GvHD by a fifth of what MSCs do
    in a typical host would not be told apart from none in groups of ~10 mice; the model was
    calibrated to 10%, so 20% leaves room for the rounding of the shipped values."""
    ratio = _peak_suppression(pd_runs["no_cytotoxicity"]) / _peak_suppression(pd_runs["typical"])
    assert ratio < 0.20
    assert ratio == pytest.approx(0.10, abs=0.01)  # the calibration target, to rounding


@pytest.mark.slow  # shares one ~30-s compile of the PD model
def test_pd_galleu2017_apoptotic_msc_alone_are_effective(pd_runs) -> None:
    """Galleu et al. 2017 (Fig. 7 legend read): MSCs made apoptotic ex vivo (granzyme B /
    anti-FAS) and infused i.v. or i.p. reduced GvHD effector cells and were engulfed by lung
    phagocytes that then expressed IDO. In the model apoptotic MSCs dosed into `apoptotic` act
    through efferocytosis even in a host without cytotoxic activity.

    Threshold: at least half the typical effect of live MSCs at the same dose (the paper shows
    apoMSCs effective, not how they compare; half is a lower bound that excludes 'little')."""
    apo = _peak_suppression(pd_runs["apoptotic_cells_no_cytotoxicity"])
    assert apo > 0.5 * _peak_suppression(pd_runs["typical"])
    assert apo > 5.0 * _peak_suppression(pd_runs["no_cytotoxicity"])


@pytest.mark.slow  # shares one ~30-s compile of the PD model
def test_pd_krampera2006_without_ifn_gamma_msc_do_not_suppress(pd_runs) -> None:
    """Krampera et al. 2006 (Stem Cells 24:386; abstract read): the suppressive activity of
    MSCs required IFN-gamma produced by activated T and NK cells, through MSC IDO. In the model
    licensing (hill of inflammation) is exactly 0 without inflammation, so MSCs secrete
    nothing; and the mediators inhibit only the disease-driven excess of the biomarker, so a
    host without inflammation stays at its healthy level whatever the dose (exact: the
    marker's derivative is identically zero; 1e-12 leaves room for rounding)."""
    for name in ("inflammation_0.0", "inflammation_0_high_dose"):
        run = pd_runs[name]
        assert np.all(run["licensing"] == 0.0) and np.all(run["med_sec"] == 0.0), name
        np.testing.assert_allclose(run["biomarker"], 1.0, rtol=0, atol=1e-12)
    # licensing and secretion rise with inflammation
    lic = [pd_runs[f"inflammation_{x}"]["licensing"][0] for x in (0.0, 0.5, 2.0, 4.0)]
    assert np.all(np.diff(lic) > 0)
    # with inflammation the biomarker falls, but never below the healthy level B0 = 1
    for x in (0.5, 2.0, 4.0):
        run = pd_runs[f"inflammation_{x}"]
        assert run["pct_change"].min() < -1.0 and run["biomarker"].min() > 1.0, x


@pytest.mark.slow  # shares one ~30-s compile of the PD model
def test_pd_eggenhofer2012_viable_msc_in_lung_at_24_h_not_at_72_h(pd_runs) -> None:
    """Eggenhofer et al. 2012 (Front Immunol 3:297; abstract read): after i.v. infusion of
    5e5 syngeneic MSCs in C57BL/6 mice, viable MSCs were re-cultured from the lungs up to 24 h,
    not at 72 h. Calibrated as 10% of the viable infused cells viable at 24 h in a typical
    mouse (the value msc_pbk is to share); rtol 2% covers the 3-digit rounding of k_kill.
    At 72 h fewer than 1% remain (5e3 of 5e5 cells: below what re-culture recovers; assumed)."""
    run = pd_runs["typical"]
    viable_infused = 0.9 * PD_DOSE  # default viability
    assert _at(run["viable_msc"], 24.0) / viable_infused == pytest.approx(0.10, rel=0.02)
    assert _at(run["viable_msc"], 72.0) / viable_infused < 0.01


@pytest.mark.slow  # shares one ~30-s compile of the PD model
def test_pd_lee2009_msc_dna_half_life_about_a_day(pd_runs) -> None:
    """Lee et al. 2009 (Cell Stem Cell 5:54; summary read): hMSCs embolized in mouse lung
    disappeared with a half-life of about 24 h (human DNA). Taken as a host without cytotoxic
    killing of those cells; msc_dna halves from 24 h to 48 h to 2% (rounding of k_death)."""
    dna = pd_runs["no_cytotoxicity"]["msc_dna"]
    assert _at(dna, 48.0) / _at(dna, 24.0) == pytest.approx(0.5, rel=0.02)


@pytest.mark.slow  # shares one ~30-s compile of the PD model
def test_pd_francois2012_thawed_msc_recover_potency_within_24_h(pd_runs) -> None:
    """François et al. 2012 (Cytotherapy 14:147; abstract read): freshly thawed MSCs were
    refractory to IFN-gamma-induced IDO and suppressed T cells less; IFN-gamma responsiveness,
    IDO and suppression were fully restored after 24 h of culture post-thaw (Antebi et al. 2019,
    abstract read: a 24-h acclimation reactivates them). In the model the secretion per viable
    cell of a thawed product starts at p_stun of a fresh one and is >= 95% of it by 24 h
    (calibrated to 95%; 1e-3 covers the rounding of k_acclim)."""
    spec = cp.load_model("msc_pkpd_host")
    p_stun, k_acclim = spec.parameters["p_stun"].value, spec.parameters["k_acclim"].value
    fresh, thawed = pd_runs["typical"], pd_runs["thawed"]
    per_cell = {
        t: (_at(thawed["secretion"], t) / _at(thawed["viable_msc"], t))
        / (_at(fresh["secretion"], t) / _at(fresh["viable_msc"], t))
        for t in (0.5, 24.0)
    }
    assert per_cell[0.5] == pytest.approx(
        p_stun + (1 - p_stun) * (1 - math.exp(-k_acclim * 0.5)), rel=0.05
    )  # fmt: skip  (5%: cells still arriving)
    assert per_cell[24.0] >= 0.95 - 1e-3
    # and the thawed product's effect is smaller (fewer cells and less potency)
    assert _peak_suppression(thawed) < _peak_suppression(fresh)


@pytest.mark.slow  # shares one ~30-s compile of the PD model
def test_pd_pepys2003_crp_half_life_19_h_in_a_human(pd_runs) -> None:
    """Pepys & Hirschfield 2003 (J Clin Invest 111:1805; read only through secondary sources
    quoting it): the plasma half-life of CRP is ~19 h. The model's biomarker loss in a 70-kg
    human is ln(2)/19 h (rtol 1e-3: kout is given to 3 digits)."""
    assert pd_runs["human_no_cells"]["kout_h"][0] == pytest.approx(math.log(2) / 19.0, rel=1e-3)
