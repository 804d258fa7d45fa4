"""Published facts about infused MSCs that the library's MSC models must reproduce.

One test per fact, the citation in its docstring and the tolerance (and why) in a comment.
What could be read of each source is said there: Lee et al. 2009 (abstract and text via PMC),
Eggenhofer et al. 2012 (abstract), Fischer et al. 2009 (abstract only).

msc_pbk: the rates that no source gives were calibrated to some of these facts by
models/calibration/msc_pbk.py (its targets sit inside these tolerances; the tests check the
facts themselves, as bounds, so a re-calibration that breaks a fact fails here). All runs share
one compiled mouse program: four dose records (cells, the product's dead part, and the label
of both), one grid of output times.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import cellpkpd as cp

# output times [h]: 30 s (during the 1-min injection), 5 min, 15 min, 1 h, 24 h, 72 h
T = np.array([0.5 / 60, 5 / 60, 0.25, 1.0, 24.0, 72.0])
I30S, I5MIN, I15MIN, I1H, I24H, I72H = range(6)
OTHER = ("liver", "spleen", "kidney", "heart", "bone_marrow", "target")  # organs besides lung


@pytest.fixture(scope="module")
def pbk() -> cp.ModelSpec:
    return cp.load_model("msc_pbk", species="mouse")


def dosed(spec, n: float, cmt: str = "venous", **covariates: float):
    """n labelled cells by the route of state `cmt` over 1 min: viable part into `cmt`, the
    non-viable part into dead_blood, the label of both into lab_<cmt> / lab_dead_blood."""
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


# ------------------------------------------------------------------ Fischer et al. 2009
def test_fischer2009_larger_cells_pass_the_lung_less(pbk) -> None:
    """Fischer UM et al. Stem Cells Dev 2009;18:683-692 (abstract only): in rats, "NSC and
    MAPC pulmonary passage was 2-fold and BMMC passage was 30-fold increased as compared to
    MSCs" (cells in arterial blood during IV infusion); "larger stem and progenitor cells
    are initially trapped inside the lungs"."""
    diameters = (7.0, 10.0, 14.0, 18.0, 22.0)  # um; BMMC ~7, MSC ~18 (assumed)
    arterial = [dosed(pbk, 1e6, diameter=d)["arterial"][I30S] for d in diameters]
    # passage (cells reaching arterial blood during the injection) falls with diameter
    assert np.all(np.diff(arterial) < 0)
    # 7-um vs 18-um cells: ~30-fold; 20-45 (the arterial pool also holds cells that came
    # round again, and Fischer's fold change is a mean of few rats)
    ratio = arterial[0] / arterial[3]
    assert 20.0 < ratio < 45.0, ratio


# ------------------------------------------------------------------ routes
def test_renal_artery_injection_puts_more_cells_in_the_kidney_than_iv(pbk) -> None:
    """Renal-artery injection puts more MSCs in the kidney than IV (issue 15's fact; e.g.
    the intra-arterial vs intravenous comparisons of MSC delivery to the kidney): the cells
    meet the kidney's capillaries before the lung's. (All three species: test_msc_pbk.py,
    test_organ_artery_and_portal_routes_put_more_cells_in_that_organ.)"""
    ia, iv = dosed(pbk, 1e6, "artery_kidney"), dosed(pbk, 1e6, "venous")
    # viable cells and donor DNA in the kidney at 1 h and 24 h: at least 5-fold more (the
    # model gives E_kidney / the IV share, ~50-fold with the file's values)
    for name in ("live_kidney", "dna_kidney"):
        for i in (I1H, I24H):
            assert ia[name][i] > 5 * iv[name][i], (name, i)
