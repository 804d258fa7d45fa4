"""Calibrate the uncited rates of models/msc_pbk.toml to published facts (mouse, IV).

Run from the repository root: ``python models/calibration/msc_pbk.py`` (about a minute on one
core: one compile, then a least-squares fit over the compiled simulator). It prints the values
to write into the model file, whose ``source`` fields say "calibrated to ... by
models/calibration/msc_pbk.py".

Facts (targets; the test of each fact, with its tolerance, is in
tests/models/test_literature_msc.py):

* Fischer et al. 2009, Stem Cells Dev 18:683 (abstract only): bone-marrow mononuclear cells
  passed the rat lung 30-fold more than MSCs (cells in arterial blood during an IV infusion).
  Target: cells in arterial blood 30 s into a 1-min infusion of 1e6 cells into venous (cmt=,
  no bolus arrest), 7-um cells / 18-um cells = 30 (diameters assumed; the abstract gives
  none).
* Lee et al. 2009, Cell Stem Cell 5:54 (abstract and the text's summary): after 2e6 hMSCs IV in
  mice "< 1,000 cells appeared in six other tissues"; the cells in lung "disappeared with a
  half-life of about 24 hr" (human DNA by qPCR). Targets: the largest human-DNA content of a
  non-lung organ at 15 min = 500 genome equivalents (half the bound); lung DNA falls from
  15 min to 24 h with a half-life of 24 h (facts.LUNG_DNA_HALF_LIFE_H).
* Eggenhofer et al. 2012, Front Immunol 3:297 (abstract): viable MSCs in the lungs up to 24 h,
  then none (72 h); after 24 h Cr-51 "mainly found in the liver". Targets: viable cells at
  72 h = 0.5% of the dose (facts.VIABLE_FRACTION_72H, the target msc_pkpd_host shares);
  liver label = 2 x lung label at 24 h.

* Fischer et al. 2009 (abstract only): "Infusion via two boluses increased pulmonary MSC
  passage as compared to single bolus administration" (no dose, no fold change). Target: at a
  bolus of 4e7 cells/kg (D_REF, assumed: between Eggenhofer's 2e7 and Lee's 8e7 cells/kg)
  two half boluses pass 1.5-fold as many 18-um cells through the lung on the first pass as
  one bolus (BOLUS_SPLIT_GAIN, assumed: below the 2-fold that the same abstract calls an
  increase for NSC and MAPC). Measured as the viable cells outside the lung 20 min after
  the first bolus (route iv, 1-min boluses 5 min apart), as in the test.

Six targets, six parameters: d50_lung, n_lung, dose50_bolus, k_death_lung, k_clear_dead,
k_debris (the label of cells that die in the lung leaves it only with monocytes that carry it
to liver and spleen, de Witte et al. 2018, so k_debris sets the liver / lung label ratio).
Every other parameter stays at its file value. The product is fully viable (viability = 1):
the facts concern the infused cells, and neither abstract gives the product's viability.
The doses are by the route iv_labelled over 1 min (the bolus arrest reads each study's cells
per kg: Lee 2e6, Eggenhofer 5e5 cells in a 25-g mouse).

Then, with those values, one more target (its own parameter, solved alone):

* Fischer et al. 2009 (abstract only): "Inhibition of MSC CD49d significantly increased MSC
  pulmonary passage". Target: full blockade (cd49d_block = 1) raises the arterial cells of
  18-um MSCs (as for the 30-fold target) 1.5-fold (CD49D_GAIN, assumed as above); parameter
  r_cd49d.

Then, with those values, two more targets in the rat (each its own parameter, solved alone):

* Bonios et al. 2011, J Nucl Cardiol 18:443 (abstract only): 15.4% +- 5.5% of FDG-labelled
  cardiosphere-derived cells (not MSCs, of a similar size class) retained in the heart 1 h
  after intracoronary delivery in rats with acute ischaemia-reperfusion (PET). Target: donor
  cells (viable + dead) in the heart at 1 h = 15.4% of the dose (route ia_heart; parameter
  E_heart, the heart's per-pass arrest, which the route's first pass reads).
* Toma et al. 2009, Circ Res (abstract and Fig. 6 legend only; rat MSCs of 23 um into
  the iliac artery, intravital microscopy of the cremaster muscle): the MSCs arrested on the
  first pass fell "to 14% of the initial number" at 3 days, "because of cell death in situ".
  Target: of the cells arrested in the rest of the body (muscle) after an arterial dose
  (route ia), 14% are there at 72 h (rest at 72 h / rest at 5 min; parameter
  k_death_tissue; the loss is death plus the release k_release_tissue, at its file value).
  k_death_target ("as other tissues", assumed) is printed with the same value. A bound, not a
  target, checks it: Exp Neurol PMID 23059455 (abstract only; In-111 MSCs into the rat
  carotid, "the majority of the signal disappeared during the next 24 h") is tested in
  tests/models/test_literature_msc.py (the target's label after route ia_target at 24 h is
  below half its 1-h value: 0.48 with the printed values).

Not used as a target: Cell Transplant 2010;19:219 (abstract only; infarcted / normal rat heart
gamma-camera counts 1.39 after IV) for E_target_max: the counts are mostly not arrested cells
and the abstract gives no infarct size (models/calibration/literature_leads.md, item 8); its
direction is tested.

These later parameters act a little on the targets of the first fit (cells that come round
to the heart, deaths outside the lung), which uses their file values: the shipped values are
a fixed point, a second run prints them unchanged.

Then, with those values, one more target in the rat (its own parameter, solved alone):

* Bonios et al. 2011 (abstract only): 13.6% of FDG-labelled
  cardiosphere-derived cells retained in the normal rat heart 1 h after intramyocardial
  injection (PET); the cells escaped to the lungs via the coronary veins. Target: donor cells
  (viable + dead) in the heart at 1 h = 13.6% of the dose (route intramyocardial; parameter
  f_washout_heart).

And the death rates of the local depots (mouse, 1e6 fully viable cells; each its own parameter,
solved alone; k_release_depot stays at its file value). The studies used hosts without
adaptive immunity, so these are the rates of such a host:

* Braid et al. 2018, Cytotherapy 20:232 (abstract only; athymic nude mice, 1e6 luciferase
  MSCs, BLI): "MSCs implanted IP or SC were only detected for 3 to 4 weeks"; IM they
  "survived more than 5 months". Targets: viable cells at the site fall to LLOQ_live (the
  detection limit) at 24.5 days (subcutis, peritoneum: k_death_subcutis,
  k_death_peritoneum) and at 180 days (muscle: k_death_depot; six months, past the reported
  bound of five).
* Toupet et al. 2013, Arthritis Rheum 65:1786 (abstract only; 1e6 human AD-MSCs into the knee
  of SCID mice): "15% of the IA-injected AD-MSCs were detectable in the joint for the first
  month and 1.5% of the AD-MSCs engrafted over the long term, at least 6 months". Targets:
  donor DNA in the joint = 15% of the dose at 30 days and 1.5% at 180 days (k_death_joint
  and f_engraft_joint together: the engrafted share does not die locally).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from facts import LUNG_DNA_HALF_LIFE_H, VIABLE_FRACTION_72H  # shared with msc_pkpd_host
from scipy.optimize import brentq, least_squares

import cellpkpd as cp

jax.config.update("jax_enable_x64", True)

FITTED = ("d50_lung", "n_lung", "dose50_bolus", "k_death_lung", "k_clear_dead", "k_debris")
OTHER = ("liver", "spleen", "kidney", "heart", "bone_marrow", "target")  # the six other tissues
N_LEE, N_EGG = 2.0e6, 5.0e5  # cells in a 25-g mouse
D_REF = 4.0e7  # cells/kg: the bolus of the split-dose target (assumed)
BOLUS_SPLIT_GAIN = 1.5  # first-pass passage, two half boluses / one bolus (assumed size)
CD49D_GAIN = 1.5  # per-pass passage, CD49d blocked / untreated (assumed size)
TIMES = np.array([0.25, 24.0, 72.0])  # h
D_BMMC, D_MSC = 7.0, 18.0  # um (assumed)


def fischer_runs(spec: cp.ModelSpec):
    """Jitted runs of Fischer's two measures (mouse): `arterial(p)`, the cells in arterial
    blood 30 s into a 1-min infusion of 1e6 cells into venous (cmt=); `beyond(p)`, the viable
    cells outside the lung 20 min after D_REF cells/kg as one bolus and as two half boluses
    5 min apart (route iv), as a pair."""
    sim_a = cp.Simulator(spec, np.array([0.5 / 60]), outputs=("arterial",), max_doses=1)
    d_a = sim_a.doses(cp.Regimen([cp.Dose(0.0, 1.0e6, "venous", duration=1 / 60)]))
    sim_b = cp.Simulator(spec, np.array([20 / 60]), outputs=("viable_total", "live_lung"),
                         max_doses=2)  # fmt: skip
    n = D_REF * spec.parameters["body_weight"].value
    bolus = lambda t, a: cp.Dose(t, a, route="iv", duration=1 / 60)
    d_one = sim_b.doses(cp.Regimen([bolus(0.0, n)]))
    d_two = sim_b.doses(cp.Regimen([bolus(0.0, n / 2), bolus(5 / 60, n / 2)]))
    run_a = jax.jit(lambda p: sim_a(p, d_a)["arterial"])

    @jax.jit
    def beyond(p):
        out = [sim_b(p, d) for d in (d_one, d_two)]
        return jnp.stack([o["viable_total"].ravel() - o["live_lung"].ravel() for o in out])

    return (lambda p: float(np.asarray(run_a(p)).ravel()[0])), (
        lambda p: np.asarray(beyond(p)).ravel()
    )


def r_cd49d(spec: cp.ModelSpec, fitted: dict[str, float]) -> float:
    """r_cd49d such that full CD49d blockade raises the arterial cells of 18-um MSCs (Fischer's
    measure) CD49D_GAIN-fold, with the values fitted before."""
    arterial, _ = fischer_runs(spec.with_values(**fitted))
    base = {"viability": jnp.asarray(1.0), "diameter": jnp.asarray(D_MSC)}
    free = arterial({**base, "cd49d_block": jnp.asarray(0.0)})
    gain = lambda r: math.log(
        arterial({**base, "cd49d_block": jnp.asarray(1.0), "r_cd49d": jnp.asarray(r)})
        / free
        / CD49D_GAIN
    )
    return brentq(gain, 1e-4, 2.0, xtol=1e-14, rtol=1e-12)


def main() -> dict[str, float]:
    spec = cp.load_model("msc_pbk", species="mouse")
    dna = tuple(f"dna_{o}" for o in ("lung", *OTHER))
    outputs = (*dna, "viable_total", "radiolabel_lung", "radiolabel_liver")
    sim = cp.Simulator(spec, TIMES, outputs=outputs, max_doses=1)
    lee, egg = (
        sim.doses(cp.Regimen([cp.Dose(0.0, n, route="iv_labelled", duration=1 / 60)]))
        for n in (N_LEE, N_EGG)
    )
    run = jax.jit(lambda p, doses: sim(p, doses))
    arterial, beyond = fischer_runs(spec)

    def residuals(x: np.ndarray) -> np.ndarray:
        p = dict(zip(FITTED, np.exp(x), strict=True))
        pj = {**{k: jnp.asarray(v) for k, v in p.items()}, "viability": jnp.asarray(1.0)}
        out_lee, out_egg = (
            {k: np.asarray(v).ravel() for k, v in run(pj, d).items()} for d in (lee, egg)
        )
        fischer = arterial({**pj, "diameter": jnp.asarray(D_BMMC)}) / arterial(
            {**pj, "diameter": jnp.asarray(D_MSC)}
        )
        one, two = beyond({**pj, "diameter": jnp.asarray(D_MSC)})
        split = two / one
        lee_other = max(out_lee[f"dna_{o}"][0] for o in OTHER)
        lee_half = out_lee["dna_lung"][1] / out_lee["dna_lung"][0]
        egg_72 = out_egg["viable_total"][2] / N_EGG
        egg_label = out_egg["radiolabel_liver"][1] / out_egg["radiolabel_lung"][1]
        got = np.array([fischer, split, lee_other, lee_half, egg_72, egg_label])
        half = 2.0 ** (-(TIMES[1] - TIMES[0]) / LUNG_DNA_HALF_LIFE_H)
        target = np.array([30.0, BOLUS_SPLIT_GAIN, 500.0, half, VIABLE_FRACTION_72H, 2.0])
        return np.log(got / target)

    x0 = np.log([spec.parameters[k].value for k in FITTED])
    fit = least_squares(residuals, x0, method="lm", xtol=1e-10, ftol=1e-10)
    values = dict(zip(FITTED, np.exp(fit.x), strict=True))
    print(f"max |log(model / target)| = {np.abs(fit.fun).max():.2e} after {fit.nfev} runs")
    values["r_cd49d"] = r_cd49d(spec, values)
    values["E_heart"] = e_heart(values)
    values["k_death_tissue"] = death_tissue(values)
    values["k_death_target"] = values["k_death_tissue"]  # assumed: as other tissues
    values["f_washout_heart"] = washout_heart(values)
    values.update(depot_deaths(values))
    for k, v in values.items():
        print(f"{k} = {float(f'{v:.4g}')!r}")
    return values


def e_heart(fitted: dict[str, float]) -> float:
    """E_heart such that 15.4% of an intracoronary dose (route ia_heart) is in the rat heart at
    1 h (Bonios et al. 2011), with the values fitted before."""
    return heart_at_1_h(fitted, "ia_heart", "E_heart", 0.154)


def death_tissue(fitted: dict[str, float]) -> float:
    """k_death_tissue such that 14% of the MSCs arrested in the rest of the body (muscle) after
    an arterial dose (route ia) are still there at 72 h in the rat (Toma et al. 2009), with the
    values fitted before. Without release this is ln(1 / 0.14) / 72 h = 0.0273/h in the rat;
    the release k_release_tissue takes its share of that loss."""
    spec = cp.load_model("msc_pbk", species="rat").with_values(**fitted)
    sim = cp.Simulator(spec, np.array([5 / 60, 72.0]), outputs=("rest",))
    doses = sim.doses(cp.Regimen([cp.Dose(0.0, 1.0, route="ia")]))
    run = jax.jit(lambda k: sim({"k_death_tissue": k, "viability": jnp.asarray(1.0)}, doses))

    def remaining(k: float) -> float:
        rest = np.asarray(run(jnp.asarray(k))["rest"]).ravel()
        return math.log(rest[1] / rest[0] / 0.14)

    return brentq(remaining, 1e-4, 1.0, xtol=1e-14, rtol=1e-12)


def washout_heart(fitted: dict[str, float]) -> float:
    """f_washout_heart such that 13.6% of an intramyocardial dose is in the rat heart at 1 h
    (Bonios et al. 2011), with the lung values just fitted."""
    return heart_at_1_h(fitted, "intramyocardial", "f_washout_heart", 0.136)


def heart_at_1_h(fitted: dict[str, float], route: str, name: str, target: float) -> float:
    """The value in [0, 1] of parameter `name` that leaves the fraction `target` of a dose by
    `route` in the rat heart at 1 h (donor DNA: cells alive or dead), with `fitted`."""
    spec = cp.load_model("msc_pbk", species="rat").with_values(**fitted)
    sim = cp.Simulator(spec, np.array([1.0]), outputs=("dna_heart",))
    doses = sim.doses(cp.Regimen([cp.Dose(0.0, 1.0, route=route)]))
    run = jax.jit(lambda v: sim({name: v, "viability": jnp.asarray(1.0)}, doses))
    retained = lambda v: float(np.asarray(run(jnp.asarray(v))["dna_heart"]).ravel()[0]) - target
    return brentq(retained, 0.0, 1.0, xtol=1e-12)


#: local depots: (route, death-rate parameter, output, time [h], target value for 1e6 cells;
#: None: the model's LLOQ_live)
DEPOTS = (
    ("sc", "k_death_subcutis", "live_subcutis", 24.5 * 24.0, None),
    ("ip", "k_death_peritoneum", "live_peritoneum", 24.5 * 24.0, None),
    ("im", "k_death_depot", "live_muscle", 180.0 * 24.0, None),
)
#: Toupet et al. 2013: donor DNA in the joint per 1e6 cells at 30 and 180 days
TOUPET = (np.array([30.0, 180.0]) * 24.0, np.array([0.15e6, 0.015e6]))


def depot_deaths(fitted: dict[str, float]) -> dict[str, float]:
    """The depot death rates (mouse) that meet Braid et al. 2018's and Toupet et al. 2013's
    targets (see the module docstring), with the values fitted before."""
    spec = cp.load_model("msc_pbk", species="mouse").with_values(**fitted)
    out = {}
    for route, name, output, t, target in DEPOTS:
        target = spec.parameters["LLOQ_live"].value if target is None else target
        sim = cp.Simulator(spec, np.array([t]), outputs=(output,))
        doses = sim.doses(cp.Regimen([cp.Dose(0.0, 1.0e6, route=route)]))
        run = jax.jit(
            lambda k, sim=sim, doses=doses, name=name: sim(
                {name: k, "viability": jnp.asarray(1.0)}, doses
            )
        )
        value = lambda k, run=run, output=output, target=target: math.log(
            float(np.asarray(run(jnp.asarray(k))[output]).ravel()[0]) / target
        )
        out[name] = brentq(value, 1e-6, 0.1, xtol=1e-14, rtol=1e-12)
    out.update(joint(spec))
    return out


def joint(spec: cp.ModelSpec) -> dict[str, float]:
    """k_death_joint and f_engraft_joint such that donor DNA in the joint is 15% of an
    intra-articular dose at 30 days and 1.5% at 180 days (Toupet et al. 2013)."""
    times, target = TOUPET
    sim = cp.Simulator(spec, times, outputs=("dna_joint",))
    doses = sim.doses(cp.Regimen([cp.Dose(0.0, 1.0e6, route="intra_articular")]))
    run = jax.jit(
        lambda k, f: sim(
            {"k_death_joint": k, "f_engraft_joint": f, "viability": jnp.asarray(1.0)}, doses
        )
    )

    def residuals(x: np.ndarray) -> np.ndarray:
        k, f = math.exp(x[0]), 1.0 / (1.0 + math.exp(-x[1]))
        got = np.asarray(run(jnp.asarray(k), jnp.asarray(f))["dna_joint"]).ravel()
        return np.log(got / target)

    fit = least_squares(residuals, [math.log(0.003), -4.0], method="lm", xtol=1e-12, ftol=1e-12)
    assert np.abs(fit.fun).max() < 1e-8, fit.fun
    return {"k_death_joint": math.exp(fit.x[0]), "f_engraft_joint": 1 / (1 + math.exp(-fit.x[1]))}


if __name__ == "__main__":
    main()
