"""Published facts about infused MSCs that the library's MSC models must reproduce, one test
per fact.

Each docstring names the source and what of it was read; each tolerance says why. What could be
read of each source is said there: Lee et al. 2009 (abstract and text via PMC), Eggenhofer et
al. 2012 (abstract), Fischer et al. 2009, Kim et al. 2014, Bonios et al. 2011, Braid et al.
2018, Toupet et al. 2013, Bazhanov et al. 2016, Moll et al. 2012, Gholamrezanezhad et al. 2011
a conference abstract on In-111 from dead MSCs in dog myocardium, and two papers named by title
(Exp Neurol PMID 23059455: MSCs into the rat carotid; Cell Transplant 2010;19:219: MSCs IV to
the infarcted rat heart) (abstracts only), Toma et al. 2009 (abstract and one figure legend).

msc_pbk: the rates that no source gives were calibrated to some of these facts by
models/calibration/msc_pbk.py (its targets sit inside these tolerances; the tests check the
facts themselves, as bounds, so a re-calibration that breaks a fact fails here). All runs share
one compiled mouse program: four dose records (cells, the product's dead part, and the label
of both), one grid of output times. msc_pkpd_host: calibrated by
models/calibration/msc_pkpd_host.py; its tests are prefixed test_pd_.
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
    calibrated to 15% (the efferocytosis of intrinsic apoptotic deaths alone gives ~10%), so
    the bound leaves room for the rounding of the shipped values."""
    ratio = _peak_suppression(pd_runs["no_cytotoxicity"]) / _peak_suppression(pd_runs["typical"])
    assert ratio < 0.20
    assert ratio == pytest.approx(0.15, abs=0.01)  # the calibration target, to rounding


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
    not at 72 h. Calibrated, as msc_pbk (models/calibration/facts.py), to 0.5% of the viable
    infused cells viable at 72 h in a typical mouse (under 1%, 5e3 of 5e5 cells: below what
    re-culture recovers; the bound is assumed); rtol 2% covers the 3-digit rounding of k_kill.
    At 24 h more than 5% are still viable (the cells were there)."""
    run = pd_runs["typical"]
    viable_infused = 0.9 * PD_DOSE  # default viability
    assert _at(run["viable_msc"], 72.0) / viable_infused == pytest.approx(0.005, rel=0.02)
    assert _at(run["viable_msc"], 24.0) / viable_infused > 0.05


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


# ====================================================================== msc_pbk
# output times [h]: 30 s (during the 1-min injection), 5 min, 15 min, 1 h, 24 h, 72 h
SPECIES = ("mouse", "rat", "human")
T = np.array([0.5 / 60, 5 / 60, 0.25, 1.0, 24.0, 72.0])
I30S, I5MIN, I15MIN, I1H, I24H, I72H = range(6)
OTHER = ("liver", "spleen", "kidney", "heart", "bone_marrow", "target")  # organs besides lung


@pytest.fixture(scope="module")
def pbk() -> cp.ModelSpec:
    return cp.load_model("msc_pbk", species="mouse")


def dosed(spec, n: float, cmt: str = "venous", **covariates: float):
    """n labelled cells by the route of state `cmt` over 1 min. IV (venous): the route
    iv_labelled (as the calibration: the bolus's first-pass lung arrest reads its n cells
    per kg); other states: viable part into `cmt`, the non-viable part into dead_blood, the
    label of both into lab_<cmt> / lab_dead_blood."""
    if cmt == "venous":
        reg = cp.Regimen([cp.Dose(0.0, n, route="iv_labelled", duration=1 / 60)])
    else:
        states = (cmt, "dead_blood", f"lab_{cmt}", "lab_dead_blood")
        reg = cp.Regimen([cp.Dose(0.0, n, c, duration=1 / 60) for c in states])
    res = cp.simulate(spec, reg, T, covariates=covariates or None)
    return {k: res[k].values[0] for k in res.data_vars}


# ------------------------------------------------------------------ Lee et al. 2009
# The facts concern the infused hMSCs; the abstract gives no product viability, so the
# product is taken as fully viable (viability = 1), as in the calibration.
LEE_N = 2.0e6


def test_lee2009_most_infused_hmscs_are_in_the_lung_at_15_min(pbk) -> None:
    """Lee RH et al. Cell Stem Cell 2009;5:54-63: after 2e6 hMSCs IV in mice "most of the
    cells were trapped as emboli in lung" (human DNA by qPCR, first sample 15 min)."""
    res = dosed(pbk, LEE_N, viability=1.0)
    # "most": more than half of the dose in the lung, and more than in all other organs
    # together (the model gives > 99%: MSCs of 18 um pass the lung ~0.3% per pass)
    assert res["dna_lung"][I15MIN] > 0.5 * LEE_N
    assert res["dna_lung"][I15MIN] > sum(res[f"dna_{o}"][I15MIN] for o in OTHER)


def test_lee2009_lung_human_dna_falls_with_a_half_life_of_about_24_h(pbk) -> None:
    """Lee et al. 2009: "The cells in lung disappeared with a half-life of about 24 hr"
    (Alu / human GAPDH qPCR of lung DNA: viable cells and dead cells not yet degraded)."""
    res = dosed(pbk, LEE_N, viability=1.0)
    dna = res["dna_lung"]
    half = (T[I24H] - T[I15MIN]) * math.log(2.0) / math.log(dna[I15MIN] / dna[I24H])
    # "about 24 hr": 18-32 h (+-30%; read from a plot of few animals per time)
    assert 18.0 < half < 32.0, half
    # the same in copies per mg (what the assay reports) and above the assay's LLOQ
    per_mg = res["dna_lung_per_mg"]
    assert per_mg[I24H] / per_mg[I15MIN] == pytest.approx(dna[I24H] / dna[I15MIN], rel=1e-9)
    assert per_mg[I24H] > pbk.parameters["LLOQ_alu"].value


def test_lee2009_fewer_than_1000_human_genomes_in_each_other_tissue(pbk) -> None:
    """Lee et al. 2009: after 2e6 hMSCs IV, "<1000 cells appeared in six other tissues"
    (human DNA, 15 min to days)."""
    res = dosed(pbk, LEE_N, viability=1.0)
    for organ in OTHER:
        # the bound itself, at every time from 15 min to 3 days (the model's largest, the
        # liver at 15 min, was calibrated to 500, half the bound)
        assert res[f"dna_{organ}"][I15MIN:].max() < 1000.0, organ


# ------------------------------------------------------------------ Eggenhofer et al. 2012
EGG_N = 5.0e5


def test_eggenhofer2012_label_is_mostly_in_the_lung_at_1_h(pbk) -> None:
    """Eggenhofer E et al. Front Immunol 2012;3:297 (abstract): 5e5 Cr-51-labelled MSCs IV in
    mice; "One hour after MSC infusion the majority of Cr-51 was found in the lungs"."""
    res = dosed(pbk, EGG_N, viability=1.0)
    lung = res["radiolabel_lung"][I1H]
    # "majority": more than half of the injected activity, and more than any other organ
    assert lung > 0.5
    assert all(lung > res[f"radiolabel_{o}"][I1H] for o in (*OTHER, "blood"))


def test_eggenhofer2012_label_is_mainly_in_the_liver_at_24_h(pbk) -> None:
    """Eggenhofer et al. 2012: "after 24 h Cr-51 was mainly found in the liver"; "cell debris
    may be transported to the liver"."""
    for viability in (1.0, 0.9):  # with and without a non-viable part in the product
        res = dosed(pbk, EGG_N, viability=viability)
        liver = res["radiolabel_liver"][I24H]
        # "mainly": more than in any other organ (lung included); the calibration target,
        # liver = 2 x lung, leaves room
        others = [res[f"radiolabel_{o}"][I24H] for o in ("lung", *OTHER[1:], "blood")]
        assert liver > max(others), (viability, liver, others)
        # and the spleen takes up label too (debris and free label go to both phagocyte beds)
        assert res["radiolabel_spleen"][I24H] > pbk.parameters["LLOQ_radiolabel"].value


def test_eggenhofer2012_viable_cells_only_in_the_lung_up_to_24_h(pbk) -> None:
    """Eggenhofer et al. 2012: "viable donor MSC were present in the lungs up to 24 h after
    infusion ... No viable MSC were found in the other organs examined at any time"
    (re-culture of blood, lungs, liver, spleen, kidneys and bone marrow at 5 min-72 h)."""
    res = dosed(pbk, EGG_N, viability=1.0)
    lloq = pbk.parameters["LLOQ_live"].value  # cells; what a re-culture / BLI can detect
    # viable cells in the lung above the detection limit at 5 min, 1 h and 24 h
    assert all(res["live_lung"][i] > 10 * lloq for i in (I5MIN, I1H, I24H))
    # below it in each other organ examined, at every time
    for organ in ("blood", "liver", "spleen", "kidney", "bone_marrow"):
        assert res[f"live_{organ}"][I5MIN:].max() < lloq, organ


def test_eggenhofer2012_under_1_percent_of_the_dose_viable_at_72_h(pbk) -> None:
    """Eggenhofer et al. 2012: viable MSCs in the lungs up to 24 h, "after which they
    disappeared" (none recovered at 72 h)."""
    res = dosed(pbk, EGG_N, viability=1.0)
    # "disappeared": < 1% of the dose viable anywhere (the calibration target is 0.5%)
    assert res["viable_total"][I72H] / EGG_N < 0.01
    assert res["live_lung"][I24H] / EGG_N > 0.05  # while a day earlier they were there


# ------------------------------------------------------------------ de Witte et al. 2018
def test_dewitte2018_monocytes_carry_msc_material_from_the_lungs_to_the_liver(pbk) -> None:
    """de Witte SFH et al. Stem Cells 2018;36:602-615 (read only as its authors' consortium
    summarises it: "infused MSC are rapidly phagocytosed by monocytes, which subsequently
    migrate from the lungs to other body sites"). In msc_pbk the label of dead MSCs held by
    lung phagocytes leaves the lung only with them, to liver and spleen phagocytes (k_debris,
    calibrated to Eggenhofer's liver label at 24 h). Check: switching that transport off
    (k_debris = 0) leaves more label in the lung and less in liver + spleen at 24 h and 72 h,
    by more than 10% of the lung's own label (a clear, not a rounding, difference; the paper
    gives no rate to test against)."""
    states = ("venous", "dead_blood", "lab_venous", "lab_dead_blood")
    reg = cp.Regimen([cp.Dose(0.0, EGG_N, c, duration=1 / 60) for c in states])
    k_debris = pbk.parameters["k_debris"].value  # the file's value is the first subject's
    res = cp.simulate(pbk, [reg, reg], T, params={"k_debris": np.array([k_debris, 0.0])},
                      covariates={"viability": np.ones(2)})  # fmt: skip
    lung = res["radiolabel_lung"].values
    mps = res["radiolabel_liver"].values + res["radiolabel_spleen"].values
    for i in (I24H, I72H):
        assert lung[1, i] - lung[0, i] > 0.1 * lung[0, i], i
        assert mps[0, i] > mps[1, i], i


# ------------------------------------------------------------------ Gholamrezanezhad et al. 2011
def test_gholamrezanezhad2011_human_msc_label_leaves_the_lung_for_liver_and_spleen(pbk) -> None:
    """Gholamrezanezhad A et al. 2011 (abstract only; 4 patients with cirrhosis, 250-400e6
    MSCs IV, In-111-oxine, whole-body planar imaging to 10 days, decay-corrected region-of-
    interest shares): the activity "was first observed to accumulate in the lungs"; from the
    images immediately after infusion to day 10 the lungs' share fell from 27.0-33.5% to
    2.0-5.4%, the liver's rose from 0-2.8% to 13.0-17.4% and the spleen's from 2.0-10.2% to
    30.1-42.2%. msc_pbk (human, route iv_labelled, 3e8 cells over 30 min, assumed; the first
    image taken as the end of the infusion): the lung holds more label than liver + spleen at
    first, and each organ's own fold change to day 10 lies in the range the reported ranges
    allow (the patients' values are not paired, so the bounds pair the extremes): the lung's
    label falls 5.0- to 16.75-fold (27.0 / 5.4 to 33.5 / 2.0), the liver's rises more than
    4.6-fold (13.0 / 2.8; its lowest first value, 0%, sets no upper bound) and the spleen's
    2.95- to 21.1-fold (30.1 / 10.2 to 42.2 / 2.0). Within-organ ratios cancel each organ's
    quantification factor (attenuation, overlap), which the absolute shares do not: the ROI
    shares do not add up to the injected activity (the lungs held ~30% at the start), so they
    are not compared. Not reproduced: the study's spleen above liver (model: liver ~8x
    spleen at day 10), a feature of the patients' cirrhosis; see the model's known limits."""
    spec = cp.load_model("msc_pbk", species="human")  # (pbk, the mouse: lists the fact in docs)
    reg = cp.Regimen([cp.Dose(0.0, 3e8, route="iv_labelled", duration=0.5)])
    outputs = ["radiolabel_lung", "radiolabel_liver", "radiolabel_spleen"]
    res = cp.simulate(spec, reg, [0.5, 240.0], outputs=outputs)
    lung, liver, spleen = (res[o].values[0] for o in outputs)
    assert lung[0] > liver[0] + spleen[0], (lung[0], liver[0], spleen[0])
    assert 5.0 < lung[0] / lung[1] < 16.75, lung[0] / lung[1]
    assert liver[1] / liver[0] > 13.0 / 2.8, liver[1] / liver[0]
    assert 30.1 / 10.2 < spleen[1] / spleen[0] < 42.2 / 2.0, spleen[1] / spleen[0]


# ------------------------------------------------------------------ Fischer et al. 2009
def test_fischer2009_larger_cells_pass_the_lung_less(pbk) -> None:
    """Fischer UM et al. Stem Cells Dev 2009;18:683-692 (abstract only): in rats, "NSC and
    MAPC pulmonary passage was 2-fold and BMMC passage was 30-fold increased as compared to
    MSCs" (cells in arterial blood during IV infusion); "larger stem and progenitor cells
    are initially trapped inside the lungs"."""
    diameters = (7.0, 10.0, 14.0, 18.0, 22.0)  # um; BMMC ~7, MSC ~18 (assumed)
    # per pass, as calibrated: a NONMEM-style dose into venous (no bolus arrest)
    arterial = [per_pass(pbk, diameter=d)["arterial"][0] for d in diameters]
    # passage (cells reaching arterial blood during the injection) falls with diameter
    assert np.all(np.diff(arterial) < 0)
    # 7-um vs 18-um cells: ~30-fold; 20-45 (the arterial pool also holds cells that came
    # round again, and Fischer's fold change is a mean of few rats)
    ratio = arterial[0] / arterial[3]
    assert 20.0 < ratio < 45.0, ratio


def per_pass(spec, **covariates: float):
    """1e6 fully viable cells into venous over 1 min (cmt=, no bolus arrest), outputs at 30 s:
    the arterial pool is the cells that passed the lung per pass (and a few that came round)."""
    reg = cp.Regimen([cp.Dose(0.0, 1e6, "venous", duration=1 / 60)])
    res = cp.simulate(spec, reg, [0.5 / 60], covariates={"viability": 1.0, **covariates})
    return {k: res[k].values[0] for k in res.data_vars}


@pytest.mark.parametrize("species", SPECIES)
def test_fischer2009_blocking_cd49d_raises_lung_passage(pbk, species) -> None:
    """Fischer et al. 2009 (abstract only): "Inhibition of MSC CD49d significantly increased
    MSC pulmonary passage" (rats; no fold change given). msc_pbk: per-pass passage (cells in
    arterial blood 30 s into a 1-min infusion) of 18-um MSCs rises with the blocked fraction
    cd49d_block (0, 0.5, 1), and full blockade raises it 1.5-fold, the calibration's assumed
    size (r_cd49d); tolerance 1.4-1.6: the arterial pool also holds cells that came round
    again. The same in mouse, rat and human (the effect acts on the per-pass arrest alone)."""
    spec = cp.load_model("msc_pbk", species=species)  # (pbk: lists the fact in the docs)
    arterial = [per_pass(spec, cd49d_block=b)["arterial"][0] for b in (0.0, 0.5, 1.0)]
    assert np.all(np.diff(arterial) > 0), arterial
    assert 1.4 < arterial[2] / arterial[0] < 1.6, arterial[2] / arterial[0]


@pytest.mark.parametrize("species", SPECIES)
def test_fischer2009_two_boluses_pass_the_lung_more_than_one(pbk, species) -> None:
    """Fischer et al. 2009 (abstract only): "Infusion via two boluses increased pulmonary MSC
    passage as compared to single bolus administration" (rats; no dose or fold change given).
    msc_pbk (route iv, 1-min boluses, fully viable 18-um cells): the same 4e7 cells/kg as
    two half boluses 5 min apart put more cells beyond the lung 20 min after the first
    (viable cells outside the lung: those that passed it) than one bolus, 1.5-fold, the
    calibration's assumed size at this dose (dose50_bolus); tolerance 1.4-1.6 (the 5-min
    offset and cells that came round again). The arrest reads the bolus's cells per kg, so
    the gain is the same in mouse, rat and human at the same dose per kg; at a clinical
    2e6 cells/kg it is smaller but still above 1."""
    spec = cp.load_model("msc_pbk", species=species)  # (pbk: lists the fact in the docs)
    regs = []
    for per_kg in (4e7, 2e6):
        bolus = lambda t, n: cp.Dose(t, n, per="kg", route="iv", duration=1 / 60)
        regs += [cp.Regimen([bolus(0.0, per_kg)]),
                 cp.Regimen([bolus(0.0, per_kg / 2), bolus(5 / 60, per_kg / 2)])]  # fmt: skip
    res = cp.simulate(spec, regs, [20 / 60], covariates={"viability": np.ones(4)},
                      outputs=["viable_total", "live_lung"])  # fmt: skip
    beyond = (res["viable_total"].values - res["live_lung"].values)[:, 0]
    gain_ref, gain_clinical = beyond[1] / beyond[0], beyond[3] / beyond[2]
    assert 1.4 < gain_ref < 1.6, gain_ref
    assert 1.0 < gain_clinical < gain_ref, gain_clinical


# ------------------------------------------------------------------ routes
def test_renal_artery_injection_puts_more_cells_in_the_kidney_than_iv(pbk) -> None:
    """Renal-artery injection puts more MSCs in the kidney than IV: "Maximum efficacy of
    mesenchymal stem cells in rat model of renal ischemia-reperfusion injury: renal artery
    administration with optimal numbers", PLoS One 2014;9:e92347 (abstract and a figure
    legend read; authors not read): 24 h after 1e6 CM-DiI-labelled MSCs, the renal-artery
    group "showed obviously increased renal retention of grafted MSCs compared with" tail
    vein and carotid artery; histology, no numbers, so the direction is tested, with a
    5-fold margin. In the model the cells meet the kidney's capillaries before the lung's.
    (All three species: test_msc_pbk.py,
    test_organ_artery_and_portal_routes_put_more_cells_in_that_organ.)"""
    ia, iv = dosed(pbk, 1e6, "artery_kidney"), dosed(pbk, 1e6, "venous")
    # viable cells and donor DNA in the kidney at 1 h and 24 h: at least 5-fold more (the
    # model gives E_kidney / the IV share, ~50-fold with the file's values)
    for name in ("live_kidney", "dna_kidney"):
        for i in (I1H, I24H):
            assert ia[name][i] > 5 * iv[name][i], (name, i)


# ------------------------------------------------------------------ Toma et al. 2009
def test_toma2009_14_percent_of_arterially_arrested_msc_remain_in_muscle_at_72_h(pbk) -> None:
    """Toma C et al. Circ Res 2009 (abstract and Fig. 6 legend only): rat MSCs (23 um) injected
    into the iliac artery arrested in the cremaster microvessels on the first pass; "When
    intravital microscopy was performed 3 days following injection, the number of MSCs in the
    cremaster further decreased to 14% of the initial number, because of cell death in situ"
    (Fig. 6: "loss of most of the injected cells (86%)"). msc_pbk (250-g rat, route ia, fully
    viable fresh cells): of the viable cells arrested in the rest of the body (muscle), 13-15%
    remain at 72 h (viable cells in `rest` at 72 h / at 5 min). k_death_tissue was calibrated to
    14% (models/calibration/msc_pbk.py); the abstract gives an integer percentage without a
    spread, so the tolerance is +-1 point. Not tested: the 92% first-pass arrest of the same
    abstract (see the model's known limits: the route ia spreads the cells by cardiac output and
    the rest of the body arrests E_rest of them per pass)."""
    spec = cp.load_model("msc_pbk", species="rat")  # (pbk, the mouse: lists the fact in docs)
    res = cp.simulate(spec, cp.Regimen([cp.Dose(0.0, 1e6, route="ia")]), [5 / 60, 72.0],
                      covariates={"viability": 1.0}, outputs=["rest"])  # fmt: skip
    rest = res["rest"].values[0]
    assert rest[0] > 0.0
    assert 0.13 < rest[1] / rest[0] < 0.15, rest[1] / rest[0]


# ------------------------------------------------------------------ intra-arterial: the brain
def test_in111_of_carotid_infused_msc_mostly_leaves_the_rat_brain_within_24_h(pbk) -> None:
    """Exp Neurol, PMID 23059455, "Intra-arterial infusion of human bone marrow-derived
    mesenchymal stem cells results in transient localization in the brain after cerebral
    ischemia in rats" (abstract only; authors not read): In-111-oxine-labelled human BMMSCs
    infused into the external carotid artery of sham-operated and MCAO rats, SPECT immediately
    after the infusion and 24 h later: "IA infusion of BMMSCs in rats resulted in immediate cell
    entrapment in the brain, but the majority of the signal disappeared during the next 24 h
    and relocated to the internal organs". msc_pbk (250-g rat, route ia_target with the label
    of the cells, fully viable fresh cells; inflammation 0 for the sham and 1 for the MCAO
    rats): the label in the target (the brain region the artery feeds) at 24 h is below half of
    its value at 5 min and at 1 h, and the label in liver + spleen rises from 1 h to 24 h; of
    the label that leaves the target's arrested cells by 24 h, more than half is in the
    internal organs (lung, liver, spleen, kidney) rather than excreted. The abstract gives no
    number, so each bound is its word ("majority") with no tolerance added; the model gives
    0.48 (from 1 h) and 0.47 (from 5 min), and 56% of the lost label in the organs (42% in
    urine).

    The target's label (decay-corrected: if the SPECT counts were not, In-111's 67-h half-life
    takes off another 21% by 24 h and the bound is easier) leaves with its viable cells at
    (k_death_target + k_release_tissue) x allometry + k_leak; the label of cells that die there
    follows within about an hour (k_label_dead). With the file's other values the bound holds
    while k_death_target >= 0.0354/h (25-g mouse; the file's 0.0392/h is k_death_tissue,
    calibrated to Toma et al. 2009), or k_leak >= 0.0029/h (file 0.005/h): the loss of viable
    cells Toma saw in muscle (14% at 72 h, 0.0273/h in the rat) would leave 53% of the label at
    24 h, so the fact needs the label to leave the brain faster than the cells leave muscle.
    Not compared: the share of the dose the brain traps at first (the abstract gives none; the
    model's first pass arrests E_target, 18% at inflammation 1 and 2% at 0, and sends the rest
    to the lung: see the model's known limits), the cells' proteolytic treatment before the
    infusion (which the abstract says transiently modified their adhesion proteins), human
    cells in rats (the abstract does not say whether the rats were immunosuppressed), and the
    MCAO rats' ischaemic above contralateral hemisphere at 24 h (the contralateral hemisphere
    is part of the rest of the body here, which the route bypasses)."""
    spec = cp.load_model("msc_pbk", species="rat")  # (pbk, the mouse: lists the fact in docs)
    route = ("artery_target", "dead_blood", "lab_artery_target", "lab_dead_blood")
    via_artery = cp.Regimen([cp.Dose(0.0, 1e6, c, duration=1 / 60) for c in route])
    # the label of cells arrested in the target, alone (1 cell-equivalent: outputs are shares)
    arrested = cp.Regimen([cp.Dose(0.0, 1.0, c) for c in ("target", "lab_target")])
    outputs = ["radiolabel_target", "radiolabel_liver", "radiolabel_spleen", "radiolabel_lung",
               "radiolabel_kidney", "radiolabel_urine"]  # fmt: skip
    res = cp.simulate(spec, [via_artery, via_artery, arrested], T, outputs=outputs,
                      covariates={"viability": np.ones(3),
                                  "inflammation": np.array([0.0, 1.0, 1.0])})  # fmt: skip
    lab = {o.removeprefix("radiolabel_"): res[o].values for o in outputs}
    for i, host in enumerate(("sham", "MCAO")):
        target = lab["target"][i]
        assert target[I24H] < 0.5 * target[I1H], (host, target[I24H] / target[I1H])
        assert target[I24H] < 0.5 * target[I5MIN], (host, target[I24H] / target[I5MIN])
        mps = lab["liver"][i] + lab["spleen"][i]
        assert mps[I24H] > mps[I1H], (host, mps[I1H], mps[I24H])
    lost = 1.0 - lab["target"][2][I24H]
    organs = sum(lab[o][2][I24H] for o in ("lung", "liver", "spleen", "kidney"))
    assert organs > 0.5 * lost and organs > lab["urine"][2][I24H], (organs, lost)


# ------------------------------------------------------------------ label of dead MSCs
def test_in111_of_dead_msc_leaves_dog_myocardium_with_a_half_life_of_2_3_h(pbk) -> None:
    """Conference abstract "PO-Thur-Eve-General-22: 111In-tropolone labeled mesenchymal stem
    cells: in vivo radiotracer kinetics" (abstract only; authors and journal not read):
    1.5e7 In-111-tropolone-labelled MSCs killed by ultrasound and injected into the myocardium
    of a normal dog; "Analysis of the 111In SPECT images indicated a biological half-life of
    2.3 hours", and In-111 released by dead MSCs labelled live MSCs only 0.2-0.3% (vs 53% for
    labelling): "111In leaked from dead MSC does not label other viable MSC and will be rapidly
    cleared from the myocardium". msc_pbk: k_label_dead was derived from the 2.3 h with a 20-kg
    dog (the abstract gives no body weight; the model's allometry). Here a 20-kg host (the human
    physiology table with body_weight = 20: the label of dead heart cells leaves by
    k_label_dead x allometry alone), dead labelled cells dosed into the heart (dead_heart,
    lab_dead_heart) beside as many viable cells (heart): the heart's label halves in 2.3 h
    (rel 1%: the 4-digit rounding of k_label_dead; one dog, no spread reported; a 10-30-kg dog
    would give 1.9-2.6 h), and the viable cells take up none of the released label (model:
    exactly none; reported 0.2-0.3%). The abstract also says some In-111 was still in the
    myocardium at 13 h, which the one exponential leaves at 2%."""
    spec = cp.load_model("msc_pbk", species="human")  # (pbk, the mouse: lists the fact in docs)
    reg = cp.Regimen([cp.Dose(0.0, 1.5e7, c) for c in ("heart", "dead_heart", "lab_dead_heart")])
    res = cp.simulate(spec, reg, [0.0, 2.3, 13.0], params={"body_weight": 20.0},
                      outputs=["radiolabel_heart", "lab_heart"])  # fmt: skip
    label = res["radiolabel_heart"].values[0]
    assert label[1] / label[0] == pytest.approx(0.5, rel=0.01)
    assert np.all(res["lab_heart"].values[0] <= 0.003 * label[0])


# ------------------------------------------------------------------ lung injury, intramyocardial
SITE_T = np.array([1.0, 4.0, 24.0])  # h
SITE_CASES = (  # name: (route, lung_injury)
    ("iv", "iv", 0.0), ("iv_injured_lung", "iv", 1.0),
    ("intramyocardial", "intramyocardial", 0.0), ("intracoronary", "ia_heart", 0.0),
)  # fmt: skip


@pytest.fixture(scope="module")
def site_runs() -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """msc_pbk in a typical mouse, rat and human (one batch: a species is its physiology
    parameters), 1e6 fully viable fresh cells by each route of SITE_CASES: donor DNA (viable +
    dead cells) in lung and heart, as fractions of the dose, at 1, 4 and 24 h."""
    pbk = cp.load_model("msc_pbk", species="mouse")
    by_species = {sp: cp.load_model("msc_pbk", species=sp).defaults() for sp in SPECIES}
    cases = [(sp, c) for sp in SPECIES for c in SITE_CASES]
    regs = [cp.Regimen([cp.Dose(0.0, 1e6, route=c[1])]) for _, c in cases]
    params = {k: np.array([by_species[sp][k] for sp, _ in cases]) for k in pbk.physiology}
    covs = {"viability": np.ones(len(cases)), "lung_injury": np.array([c[2] for _, c in cases])}
    res = cp.simulate(pbk, regs, SITE_T, params=params, covariates=covs,
                      outputs=["dna_lung", "dna_heart"])  # fmt: skip
    return {
        (sp, c[0]): {o: res[o].values[i] / 1e6 for o in ("dna_lung", "dna_heart")}
        for i, (sp, c) in enumerate(cases)
    }


@pytest.mark.parametrize("species", SPECIES)
def test_kim2014_more_msc_remain_in_injured_lungs_at_1_4_and_24_h(site_runs, species) -> None:
    """Kim YS et al. Tuberc Respir Dis 2014;77:116-123 (abstract only): after IV adipose MSCs,
    human Alu DNA "remained more in mice with elastase-induced emphysema at 1, 4, and 24 hours
    after MSCs injection than the control lungs without emphysema". msc_pbk: lung_injury = 1
    (the emphysema mice) against 0, in each species. The abstract gives the direction only, so
    the test checks the direction at each time (strictly more) and that the difference grows
    with time (it comes from slower removal, not from arrest, which is > 99% in both); its
    size follows from the assumed r_lung_injury."""
    healthy = site_runs[species, "iv"]["dna_lung"]
    injured = site_runs[species, "iv_injured_lung"]["dna_lung"]
    assert np.all(injured > healthy), (injured, healthy)
    assert np.all(np.diff(injured / healthy) > 0), injured / healthy


def test_bonios2011_intramyocardial_injection_retains_13_6_percent_in_the_rat_heart(site_runs):
    """Bonios M et al. J Nucl Cardiol 2011;18:443-450 (abstract only): 1 h after
    intramyocardial injection of FDG-labelled cells into the normal rat heart, 13.6% +- 2.3%
    were retained in the heart (PET); after IV injection 0.8% +- 1.1%; the cells escaped to the
    lungs via the coronary veins. msc_pbk's f_washout_heart was calibrated to the 13.6%
    (models/calibration/msc_pbk.py), so the test allows the reported SD (13.6 +- 2.3%), and IV
    must put < 2.0% (0.8% + 1.1 SD) in the heart, the washed-out cells reaching the lung."""
    im, iv = site_runs["rat", "intramyocardial"], site_runs["rat", "iv"]
    assert 0.113 < im["dna_heart"][0] < 0.159, im["dna_heart"][0]
    assert iv["dna_heart"][0] < 0.02, iv["dna_heart"][0]
    assert im["dna_lung"][0] > 0.5  # escaped via the coronary veins (model: ~85%; see limits)


def test_bonios2011_intracoronary_delivery_retains_15_4_percent_in_the_rat_heart(site_runs):
    """Bonios M et al. J Nucl Cardiol 2011;18:443-450 (abstract only; FDG-labelled
    cardiosphere-derived cells, not MSCs but of a similar size class, PET at 1 h, rats with
    acute ischaemia-reperfusion): cardiac retention 15.4% +- 5.5% after intracoronary delivery,
    similar to intramyocardial injection (P = NS), with lung activity 19.9% +- 5.6%; after IV
    delivery lung activity was highest (55.1% +- 9.3%) with "very low cardiac retention
    (0.8% +- 1.06%)". msc_pbk (rat; routes ia_heart and iv, donor DNA at 1 h): E_heart was
    calibrated to the 15.4% (models/calibration/msc_pbk.py), so the test allows the reported SD
    (9.9-20.9%); IV puts < 1.86% (0.8% + 1 SD) in the heart, and more in the lung than
    intracoronary delivery. The lung's share after intracoronary delivery (model ~84%, the
    cells the heart does not arrest all reach the lung) is above the reported 19.9%: see the
    model's known limits."""
    ic, iv = site_runs["rat", "intracoronary"], site_runs["rat", "iv"]
    assert 0.099 < ic["dna_heart"][0] < 0.209, ic["dna_heart"][0]
    assert iv["dna_heart"][0] < 0.008 + 0.0106, iv["dna_heart"][0]
    assert iv["dna_lung"][0] > ic["dna_lung"][0], (iv["dna_lung"][0], ic["dna_lung"][0])


def test_infarct_raises_the_label_of_iv_msc_in_the_rat_heart_not_in_the_lung(pbk) -> None:
    """Cell Transplant 2010;19:219-230, "Time-dependent migration of systemically delivered bone
    marrow mesenchymal stem cells to the infarcted heart" (abstract only; authors not read):
    5e6 Tc-99m-HMPAO-labelled rat BM-MSCs through the tail vein 7 days after MI, gamma camera
    at 5, 15, 30 and 60 min: "The cells migrated mainly to the lungs (approximately 70%)";
    "MI markedly increased the amount of cells in the heart, but not in the lungs, during the
    period of observation (4.55 +/- 0.32 vs. 6.34 +/- 0.67% of uptake in infarcted hearts)".
    msc_pbk (250-g rat, route iv_labelled, 5e6 fully viable cells over 1 min): the infarct is
    the target tissue in place of a share of the heart (the heart's mass and flow times
    1 - share, the target's the share of them: perfusion per gram like the heart's;
    inflammation 1, the typical disease state), the normal heart is the heart of a rat without
    it (inflammation 0). The abstract gives no infarct size, so three shares are run (10%, 30%,
    50%): at every imaging time the label of the heart with its infarct (heart + target) is
    above that of the normal heart, the infarct's label per gram above the rest of the heart's,
    the lung's label differs by < 1% (no difference reported) and holds more than half of the
    activity ("mainly"; model 99%, the region-of-interest shares are not compared). Direction
    only: the model's infarcted / normal heart ratio is 1.016, 1.049 and 1.082 at the three
    shares (E_target / E_heart = 0.18 / 0.155 per gram), not the reported 1.39.

    Why not the size: the heart's region of interest held 4.55% of the counts in normal rats,
    where the model puts 0.009% of an IV dose of 18-um cells in the heart (all the cells that
    pass the lung: 0.09%; Bonios et al. 2011 measured 0.8% by PET), so the reported counts are
    mostly not cells arrested in the myocardium (blood pool, lung overlap) and their ratio is
    not the ratio of arrested cells; the 1.79 points the infarct adds are more than the model
    lets past the lung at all. Fitting E_target_max to 1.39 would fit the unknown background,
    infarct size and infarct perfusion (0.79 at a 50% share, above its bound of 1 at 30%): see
    models/calibration/literature_leads.md. The direction holds while E_target at inflammation
    1 exceeds E_heart, i.e. E_target_max > 0.424 with the assumed infl50 = 2 and n_infl = 1.
    Not compared: the heart's and lungs' fall within the hour and the DAPI cells in infarcted
    areas at 7 days."""
    spec = cp.load_model("msc_pbk", species="rat")  # (pbk, the mouse: lists the fact in docs)
    d = spec.defaults()
    shares = np.array([0.0, 0.1, 0.3, 0.5])  # 0: the normal heart
    params = {
        "volume_heart": d["volume_heart"] * (1 - shares),
        "flow_heart": d["flow_heart"] * (1 - shares),
        "f_V_target": np.where(shares > 0, shares * d["volume_heart"] / d["body_weight"],
                               d["f_V_target"]),
        "f_Q_target": np.where(shares > 0, shares * d["flow_heart"] / d["cardiac_output"],
                               d["f_Q_target"]),
    }  # fmt: skip
    covs = {"viability": np.ones(4), "inflammation": (shares > 0).astype(float)}
    reg = cp.Regimen([cp.Dose(0.0, 5e6, route="iv_labelled", duration=1 / 60)])
    times = np.array([5.0, 15.0, 30.0, 60.0]) / 60
    outputs = ["radiolabel_heart", "radiolabel_target", "radiolabel_lung"]
    res = cp.simulate(spec, [reg] * 4, times, params=params, covariates=covs, outputs=outputs)
    heart, target, lung = (res[o].values for o in outputs)
    region = heart + np.where(shares[:, None] > 0, target, 0.0)  # heart with its infarct
    for i in (1, 2, 3):
        assert np.all(region[i] > region[0]), (shares[i], region[i] / region[0])
        infarct_volume = params["f_V_target"][i] * d["body_weight"]
        per_gram = (target[i] / infarct_volume) / (heart[i] / params["volume_heart"][i])
        assert np.all(per_gram > 1.0), (shares[i], per_gram)
        np.testing.assert_allclose(lung[i], lung[0], rtol=0.01)
    assert np.all(lung > 0.5), lung.min()


# ------------------------------------------------------------------ local depots
DEPOT_T = np.array([1.0, 24.0, 21 * 24.0, 28 * 24.0, 30 * 24.0, 150 * 24.0, 180 * 24.0])  # h
I_DAY1, I_21D, I_28D, I_30D, I_150D, I_180D = 1, 2, 3, 4, 5, 6
DEPOT_ROUTES = ("sc", "ip", "im", "intra_articular", "iv")
DEPOT_OUT = ("live_subcutis", "live_peritoneum", "live_muscle", "dna_joint", "live_spleen",
             "viable_total", "dna_lung")  # fmt: skip


@pytest.fixture(scope="module")
def depot_runs() -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """msc_pbk in a typical mouse, rat and human, 1e6 fully viable fresh cells by each local
    route (and IV for comparison), outputs at 1 h, 1 day, 21, 28, 30, 150 and 180 days, as
    cells."""
    pbk = cp.load_model("msc_pbk", species="mouse")
    by_species = {sp: cp.load_model("msc_pbk", species=sp).defaults() for sp in SPECIES}
    cases = [(sp, r) for sp in SPECIES for r in DEPOT_ROUTES]
    regs = [cp.Regimen([cp.Dose(0.0, 1e6, route=r)]) for _, r in cases]
    params = {k: np.array([by_species[sp][k] for sp, _ in cases]) for k in pbk.physiology}
    covs = {"viability": np.ones(len(cases))}
    res = cp.simulate(pbk, regs, DEPOT_T, params=params, covariates=covs, outputs=list(DEPOT_OUT))
    return {c: {o: res[o].values[i] for o in DEPOT_OUT} for i, c in enumerate(cases)}


def test_braid2018_sc_and_ip_msc_detected_3_to_4_weeks_im_more_than_5_months(depot_runs) -> None:
    """Braid LR et al. Cytotherapy 2018 (abstract only; 1e6 luciferase MSCs in athymic nude
    mice, BLI): "MSCs implanted IP or SC were only detected for 3 to 4 weeks", whereas "MSCs
    ... survived more than 5 months in situ when administered IM". msc_pbk (mouse): viable cells
    at the site are above the detection limit LLOQ_live at 21 days and below it at 28 days (SC,
    IP: the reported window is the tolerance), and above it at 150 days (IM). The depot death
    rates were calibrated to these (models/calibration/msc_pbk.py: crossings at 24.5 days and,
    for IM, at 180 days), so the test checks the reported window and bound, not the
    calibration's choice."""
    lloq = cp.load_model("msc_pbk").parameters["LLOQ_live"].value
    for route, out in (("sc", "live_subcutis"), ("ip", "live_peritoneum")):
        live = depot_runs["mouse", route][out]
        assert live[I_21D] > lloq > live[I_28D], (route, live[I_21D], live[I_28D])
    assert depot_runs["mouse", "im"]["live_muscle"][I_150D] > lloq


def test_toupet2013_15_percent_of_intra_articular_msc_in_the_joint_for_a_month(depot_runs):
    """Toupet K et al. Arthritis Rheum 2013;65:1786-1794 (abstract only; 1e6 human AD-MSCs
    into the knee of SCID mice): "15% of the IA-injected AD-MSCs were detectable in the joint
    for the first month". msc_pbk (mouse, route intra_articular): donor DNA in the joint stays
    at or above 15% of the dose through the first 30 days (k_death_joint was calibrated to
    15% at 30 days; tolerance 13-17% at 30 days, the rounding of a reported "15%") and most
    of it stays local: less than 1% of the dose in the lung at 1 day (Satue et al. 2019, abstract:
    "a few donor MSCs" in the lung of one rat at 1 day)."""
    run = depot_runs["mouse", "intra_articular"]
    frac = run["dna_joint"] / 1e6
    assert 0.13 < frac[I_30D] < 0.17, frac[I_30D]
    assert np.all(frac[: I_30D + 1] >= frac[I_30D])
    assert run["dna_lung"][I_DAY1] < 0.01 * 1e6, run["dna_lung"][I_DAY1]


def test_toupet2013_1_5_percent_of_intra_articular_msc_engrafted_at_6_months(pbk, depot_runs):
    """Toupet et al. 2013 (abstract only): "1.5% of the AD-MSCs engrafted over the long term,
    at least 6 months" (human Alu qPCR of the injected joint, SCID mice). msc_pbk (mouse,
    route intra_articular): donor DNA in the joint at 180 days is 1.5% of the dose (k_death_joint
    and f_engraft_joint were calibrated to 15% at 30 days and 1.5% at 180 days; tolerance
    1.3-1.7%, the rounding of a reported "1.5%"), it is above the assay's LLOQ_dna, and it is
    viable (live_joint): engrafted cells, not undegraded DNA of dead ones. The one-pool model
    gave ~1e-5 here."""
    run = depot_runs["mouse", "intra_articular"]
    frac = run["dna_joint"][I_180D] / 1e6
    assert 0.013 < frac < 0.017, frac
    assert run["dna_joint"][I_180D] > 100 * pbk.parameters["LLOQ_dna"].value
    live = cp.simulate(pbk, cp.Regimen([cp.Dose(0.0, 1e6, route="intra_articular")]),
                       [DEPOT_T[I_180D]], covariates={"viability": 1.0})["live_joint"]  # fmt: skip
    assert float(live.values[0, 0]) > 0.95 * run["dna_joint"][I_180D]


@pytest.mark.parametrize("species", SPECIES)
def test_bazhanov2016_fewer_than_0_05_percent_of_ip_msc_reach_the_spleen_in_a_day(
    depot_runs, species
) -> None:
    """Bazhanov N et al. Stem Cell Res Ther 2016;7:27 (abstract only): after IP infusion of
    human MSCs in mice, "Less than 0.05 % of the live injected cells were detected in the spleen
    and jejunal lymph nodes" at 1 day. msc_pbk (route ip; no lymph-node state): viable cells in
    the spleen at 1 day < 0.05% of the dose, in each species (the bound as reported), and the
    viable cells outside the peritoneum < 1% (little systemic spread, as after any local
    route here: the same holds for SC, IM and intra-articular)."""
    for route, site in (("ip", "live_peritoneum"), ("sc", "live_subcutis"), ("im", "live_muscle")):
        run = depot_runs[species, route]
        outside = run["viable_total"][I_DAY1] - run[site][I_DAY1]
        assert outside < 0.01 * 1e6, (route, outside)
    assert depot_runs[species, "ip"]["live_spleen"][I_DAY1] < 5e-4 * 1e6


# ------------------------------------------------------------------ IBMIR (product attribute)
@pytest.mark.parametrize("species", SPECIES)
def test_moll2012_ibmir_loss_grows_with_tissue_factor_and_dose_per_kg(species) -> None:
    """Moll G et al. Stem Cells 2012;30:1565-1574 (abstract only): MSCs trigger an instant
    blood-mediated inflammatory reaction (IBMIR) "dependent on the cell dose, the choice of
    MSC donor, and particularly the cell-passage number" (prothrombotic tissue factor rises
    with extended culture). msc_pbk: the viable cells of an IV dose 6 min after infusion fall
    with the product's tissue_factor and with the dose per kg (strictly, each step), never
    below (1 - f_ibmir_max) of the product without tissue factor, and the lost cells are
    accounted as dead (cells_accounted equals the cells given, rtol 1e-9). The abstract gives
    directions only, so the size of the loss follows from assumed parameters. The bolus's
    first-pass lung arrest, which also reads the dose per kg (and spares the arrested cells
    the seconds of death in blood), is switched off here (dose50_bolus = 1e30) so that only
    IBMIR depends on the dose."""
    spec = cp.load_model("msc_pbk", species=species)
    tf, per_kg = np.array([0.0, 0.5, 2.0]), np.array([1e6, 3e6, 1e7])
    cases = [(a, b) for a in tf for b in per_kg]
    regs = [cp.Regimen([cp.Dose(0.0, b, per="kg", route="iv")]) for _, b in cases]
    covs = {"tissue_factor": np.array([a for a, _ in cases]), "viability": np.ones(len(cases))}
    no_bolus = {"dose50_bolus": np.full(len(cases), 1e30)}
    res = cp.simulate(spec, regs, [0.1], covariates=covs, params=no_bolus,
                      outputs=["viable_total", "cells_accounted"])  # fmt: skip
    given = res["amount_given"].values.ravel()
    viable = (res["viable_total"].values[:, 0] / given).reshape(len(tf), len(per_kg))
    assert np.all(np.diff(viable, axis=0) < 0)  # more tissue factor, fewer viable cells
    assert np.all(np.diff(viable[1:], axis=1) < 0)  # a larger dose per kg loses more
    np.testing.assert_allclose(viable[0], viable[0, 0], rtol=1e-9)  # none without tissue factor
    assert np.all(viable >= (1 - spec.parameters["f_ibmir_max"].value) * viable[0])
    np.testing.assert_allclose(res["cells_accounted"].values[:, 0], given, rtol=1e-9)


# ------------------------------------------------------------------ one cell-fate core
# msc_pbk (where the cells are) and msc_pkpd_host (what they do) must tell the same story of
# how long the infused cells live: both are calibrated to the same persistence targets
# (models/calibration/facts.py) and share the thawed product's loss, the reference animal and
# the allometric exponent of their host-driven rates.
CORE_T = np.array([1.0, 6.0, 24.0, 48.0, 72.0])  # h
SHARED = ("f_thaw_loss", "BW_ref", "b_allo")


@pytest.fixture(scope="module")
def core_runs() -> dict[tuple[str, float], tuple[np.ndarray, np.ndarray]]:
    """Viable fraction of 1e6 fully viable cells given IV (route iv), fresh and thawed, in each
    species' typical host: (msc_pbk viable_total, msc_pkpd_host viable_msc) / 1e6. Each model
    is one batch of six subjects (3 species x fresh/thawed): a species is its physiology
    parameters (msc_pbk) and body weight (both), so one compiled program serves all three."""
    reg = cp.Regimen([cp.Dose(0.0, 1e6, route="iv")])
    cases = [(sp, th) for sp in SPECIES for th in (0.0, 1.0)]
    by_species = {sp: cp.load_model("msc_pbk", species=sp).defaults() for sp in SPECIES}
    pbk = cp.load_model("msc_pbk", species="mouse")
    covs = {"viability": np.ones(6), "thawed": np.array([th for _, th in cases])}
    params = {k: np.array([by_species[sp][k] for sp, _ in cases]) for k in pbk.physiology}
    a = cp.simulate(pbk, [reg] * 6, CORE_T, params=params, covariates=covs,
                    outputs=["viable_total"])["viable_total"].values / 1e6  # fmt: skip
    covs["body_weight"] = params["body_weight"]
    b = cp.simulate(cp.load_model("msc_pkpd_host"), [reg] * 6, CORE_T, covariates=covs,
                    outputs=["viable_msc"])["viable_msc"].values / 1e6  # fmt: skip
    return {case: (a[i], b[i]) for i, case in enumerate(cases)}


def test_one_cell_fate_core_shared_parameters_are_equal() -> None:
    """The parameters the two MSC models share have one value (a change to one file that is
    not made in the other fails here)."""
    pbk, pd = cp.load_model("msc_pbk"), cp.load_model("msc_pkpd_host")
    for name in SHARED:
        assert pbk.parameters[name].value == pd.parameters[name].value, name


@pytest.mark.slow  # one batch of each model
def test_one_cell_fate_core_viable_fraction_agrees_in_mouse_rat_human(core_runs) -> None:
    """Issue 15 ("one cell-fate core, two views"): after the same IV dose, msc_pbk and
    msc_pkpd_host give the same viable fraction of the infused cells from 1 h to 72 h, fresh
    and thawed, in a typical mouse, rat and human. Both calibrations aim at Eggenhofer et
    al. 2012's < 1% at 72 h (target 0.5%, mouse) and scale their rates alike; what differs is
    their anatomy (msc_pbk: organ-specific death, blood transit; msc_pkpd_host: one lung
    site), so rtol 2% (the models differ by < 0.6%)."""
    for (sp, th), (pbk, pd) in core_runs.items():
        np.testing.assert_allclose(pd, pbk, rtol=0.02, err_msg=f"{sp}, thawed={th}")
    mouse = core_runs["mouse", 0.0][0]
    assert mouse[-1] == pytest.approx(0.005, rel=0.05)  # the shared target (facts.py)


@pytest.mark.slow  # one batch of each model
def test_one_cell_fate_core_thawed_product_loses_f_thaw_loss_in_both_models(core_runs) -> None:
    """A freshly thawed product loses the fraction f_thaw_loss of its cells on first contact
    with blood (complement; Moll et al. 2014, abstract: freeze-thawed MSCs have impaired blood
    regulatory properties), in both models and every species: thawed / fresh viable cells =
    1 - f_thaw_loss at every time. rtol 1e-3: in msc_pbk the loss is a dose fraction (exact);
    in msc_pkpd_host the lysis adds to the first-pass exit from blood, so the thawed cells
    reach the lung (where they die) ~0.2 min earlier, 2e-4 fewer in the mouse."""
    loss = cp.load_model("msc_pbk").parameters["f_thaw_loss"].value
    for sp in SPECIES:
        for model in (0, 1):
            ratio = core_runs[sp, 1.0][model] / core_runs[sp, 0.0][model]
            np.testing.assert_allclose(ratio, 1.0 - loss, rtol=1e-3, err_msg=f"{sp} {model}")
