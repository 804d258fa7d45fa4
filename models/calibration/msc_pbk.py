"""Calibrate the uncited rates of models/msc_pbk.toml to published facts (mouse, IV).

Run from the repository root: ``python models/calibration/msc_pbk.py`` (about a minute on one
core: one compile, then a least-squares fit over the compiled simulator). It prints the values
to write into the model file, whose ``source`` fields say "calibrated to ... by
models/calibration/msc_pbk.py".

Facts (targets; the test of each fact, with its tolerance, is in
tests/models/test_literature_msc.py):

* Fischer et al. 2009, Stem Cells Dev 18:683 (abstract only): bone-marrow mononuclear cells
  passed the rat lung 30-fold more than MSCs. Target: per-pass passage (1 - E_lung) of a 7-um
  cell / that of an 18-um cell = 30 (diameters assumed; the abstract gives none).
* Lee et al. 2009, Cell Stem Cell 5:54 (abstract and the text's summary): after 2e6 hMSCs IV in
  mice "< 1,000 cells appeared in six other tissues"; the cells in lung "disappeared with a
  half-life of about 24 hr" (human DNA by qPCR). Targets: the largest human-DNA content of a
  non-lung organ at 15 min = 500 genome equivalents (half the bound); lung DNA falls from
  15 min to 24 h with a half-life of 24 h (facts.LUNG_DNA_HALF_LIFE_H).
* Eggenhofer et al. 2012, Front Immunol 3:297 (abstract): viable MSCs in the lungs up to 24 h,
  then none (72 h); after 24 h Cr-51 "mainly found in the liver". Targets: viable cells at
  72 h = 0.5% of the dose (facts.VIABLE_FRACTION_72H, the target msc_pkpd_host shares);
  liver label = 2 x lung label at 24 h.

Five targets, five parameters: d50_lung, n_lung, k_death_lung, k_clear_dead, k_label_dead.
Every other parameter stays at its file value. The product is fully viable (viability = 1):
the facts concern the infused cells, and neither abstract gives the product's viability.

Then, with those values, one more target in the rat (its own parameter, solved alone):

* Bonios et al. 2011, J Nucl Cardiol 18:443 (abstract only): 13.6% of FDG-labelled
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
  month". Target: donor DNA in the joint at 30 days = 15% of the dose (k_death_joint).
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

FITTED = ("d50_lung", "n_lung", "k_death_lung", "k_clear_dead", "k_label_dead")
OTHER = ("liver", "spleen", "kidney", "heart", "bone_marrow", "target")  # the six other tissues
N_LEE = 2.0e6
TIMES = np.array([0.25, 24.0, 72.0])  # h
D_BMMC, D_MSC = 7.0, 18.0  # um (assumed)


def passage(d: float, d50: float, n: float) -> float:
    """Per-pass lung passage 1 - hill(d, d50, n) = d50^n / (d50^n + d^n)."""
    return 1.0 / (1.0 + (d / d50) ** n)


def main() -> dict[str, float]:
    spec = cp.load_model("msc_pbk", species="mouse")
    dna = tuple(f"dna_{o}" for o in ("lung", *OTHER))
    outputs = (*dna, "viable_total", "radiolabel_lung", "radiolabel_liver")
    sim = cp.Simulator(spec, TIMES, outputs=outputs, max_doses=4)
    dose = [
        cp.Dose(0.0, N_LEE, c, duration=1 / 60)
        for c in ("venous", "dead_blood", "lab_venous", "lab_dead_blood")
    ]
    doses = sim.doses(cp.Regimen(dose))
    run = jax.jit(lambda p: sim(p, doses))

    def residuals(x: np.ndarray) -> np.ndarray:
        p = dict(zip(FITTED, np.exp(x), strict=True))
        out = run({**{k: jnp.asarray(v) for k, v in p.items()}, "viability": jnp.asarray(1.0)})
        out = {k: np.asarray(v).ravel() for k, v in out.items()}
        fischer = passage(D_BMMC, p["d50_lung"], p["n_lung"]) / passage(
            D_MSC, p["d50_lung"], p["n_lung"]
        )
        lee_other = max(out[f"dna_{o}"][0] for o in OTHER)
        lee_half = out["dna_lung"][1] / out["dna_lung"][0]
        egg_72 = out["viable_total"][2] / N_LEE
        egg_label = out["radiolabel_liver"][1] / out["radiolabel_lung"][1]
        got = np.array([fischer, lee_other, lee_half, egg_72, egg_label])
        half = 2.0 ** (-(TIMES[1] - TIMES[0]) / LUNG_DNA_HALF_LIFE_H)
        target = np.array([30.0, 500.0, half, VIABLE_FRACTION_72H, 2.0])
        return np.log(got / target)

    x0 = np.log([spec.parameters[k].value for k in FITTED])
    fit = least_squares(residuals, x0, method="lm", xtol=1e-10, ftol=1e-10)
    values = dict(zip(FITTED, np.exp(fit.x), strict=True))
    print(f"max |log(model / target)| = {np.abs(fit.fun).max():.2e} after {fit.nfev} runs")
    values["f_washout_heart"] = washout_heart(values)
    values.update(depot_deaths(values))
    for k, v in values.items():
        print(f"{k} = {float(f'{v:.4g}')!r}")
    return values


def washout_heart(fitted: dict[str, float]) -> float:
    """f_washout_heart such that 13.6% of an intramyocardial dose is in the rat heart at 1 h
    (Bonios et al. 2011), with the lung values just fitted."""
    spec = cp.load_model("msc_pbk", species="rat").with_values(**fitted)
    sim = cp.Simulator(spec, np.array([1.0]), outputs=("dna_heart",))
    doses = sim.doses(cp.Regimen([cp.Dose(0.0, 1.0, route="intramyocardial")]))
    run = jax.jit(lambda f: sim({"f_washout_heart": f, "viability": jnp.asarray(1.0)}, doses))
    retained = lambda f: float(np.asarray(run(jnp.asarray(f))["dna_heart"]).ravel()[0]) - 0.136
    return brentq(retained, 0.0, 1.0, xtol=1e-12)


#: local depots: (route, death-rate parameter, output, time [h], target value for 1e6 cells;
#: None: the model's LLOQ_live)
DEPOTS = (
    ("sc", "k_death_subcutis", "live_subcutis", 24.5 * 24.0, None),
    ("ip", "k_death_peritoneum", "live_peritoneum", 24.5 * 24.0, None),
    ("im", "k_death_depot", "live_muscle", 180.0 * 24.0, None),
    ("intra_articular", "k_death_joint", "dna_joint", 30.0 * 24.0, 0.15e6),
)


def depot_deaths(fitted: dict[str, float]) -> dict[str, float]:
    """The depot death rates (mouse) that meet Braid et al. 2018's and Toupet et al. 2013's
    targets (see the module docstring), with the values fitted before."""
    spec = cp.load_model("msc_pbk", species="mouse").with_values(**fitted)
    out = {}
    for route, name, output, t, target in DEPOTS:
        target = spec.parameters["LLOQ_live"].value if target is None else target
        sim = cp.Simulator(spec, np.array([t]), outputs=(output,))
        doses = sim.doses(cp.Regimen([cp.Dose(0.0, 1.0e6, route=route)]))
        run = jax.jit(lambda k, sim=sim, doses=doses, name=name: sim(
            {name: k, "viability": jnp.asarray(1.0)}, doses
        ))
        value = lambda k, run=run, output=output, target=target: math.log(
            float(np.asarray(run(jnp.asarray(k))[output]).ravel()[0]) / target
        )
        out[name] = brentq(value, 1e-6, 0.1, xtol=1e-14, rtol=1e-12)
    return out


if __name__ == "__main__":
    main()
