"""Write the example notebooks (without outputs) from the cells below.

Run ``python notebooks/make_notebooks.py`` after editing a story here; CI executes each
notebook once with ``jupyter nbconvert --execute`` (.ci/run) and the docs site shows the
executed copies (``pytest --nbmake notebooks/`` runs them locally without keeping outputs).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def md(text: str):
    return new_markdown_cell(text.strip())


def code(text: str):
    return new_code_cell(text.strip())


NOTEBOOKS = {}

NOTEBOOKS["01_quickstart"] = [
    md("""
# 01 · Quick start: load a model, simulate a dose, plot it

A model is a readable TOML file with units. Here we take the library's one-compartment
model with first-order absorption, look at it, give one oral dose, and then change the dose
and the regimen.
"""),
    code("""
import numpy as np

import cellpkpd as cp

cp.list_models()
"""),
    code("""
spec = cp.load_model("one_cmt_oral")
print(spec.summary())
cp.parameter_table(spec)[["name", "value", "unit", "description"]]
"""),
    md("The compartment diagram is drawn from the model file: a box per state, an arrow per flow."),
    code("cp.plots.diagram(spec)"),
    md("""
## One dose

320 mg into the depot (gut) at time 0, observed for 24 h. The result is an
`xarray.Dataset` with one variable per state and observation, each with its unit.
"""),
    code("""
times = np.linspace(0.0, 24.0, 97)  # h
res = cp.simulate(spec, cp.Regimen([cp.Dose(time=0.0, amount=320.0, cmt="depot")]), times)
print(res["conc"].attrs["unit"], float(res["conc"].max()))
cp.plots.timecourse(res, ["conc"], spec=spec)
"""),
    md("""
## Change the dose and the regimen

Three subjects at once: 320 mg once, 640 mg once, and 320 mg every 12 h. A list of
regimens gives one per subject.
"""),
    code("""
once = cp.Regimen([cp.Dose(0.0, 320.0, cmt="depot")])
double = cp.Regimen([cp.Dose(0.0, 640.0, cmt="depot")])
bid = cp.Regimen.repeat(cp.Dose(0.0, 320.0, cmt="depot"), interval=12.0, count=4)
times = np.linspace(0.0, 48.0, 193)
res = cp.simulate(spec, [once, double, bid], times)
cp.plots.timecourse(res, ["conc", "depot"], spec=spec,
                    labels=["320 mg once", "640 mg once", "320 mg every 12 h"])
"""),
    md("""
## Between-subject variability

200 virtual subjects with log-normal clearance and volume (30% and 20% CV): the plot
switches to the median and the 5-95% and 25-75% bands.
"""),
    code("""
rng = np.random.default_rng(0)
n = 200
params = {"CL": spec.parameters["CL"].value * np.exp(0.3 * rng.standard_normal(n)),
          "V": spec.parameters["V"].value * np.exp(0.2 * rng.standard_normal(n))}
res = cp.simulate(spec, bid, times, params=params)
cp.plots.timecourse(res, ["conc"], spec=spec, log=True)
"""),
]

NOTEBOOKS["02_msc_biodistribution"] = [
    md("""
# 02 · A mouse biodistribution study, fitted, and a patient's organs by route

**The question.** A sponsor infuses human MSCs intravenously into mice and measures, at
sacrifice, human DNA (Alu qPCR, in genome equivalents per organ) and the Cr-51 label of the
cells (fraction of injected activity) in lung, liver and spleen. How fast do the cells die in
the lung, and how fast is the DNA of the dead cells cleared? And what would a patient's
organs see after 2 million cells/kg, given intravenously or into the renal artery?

`msc_pbk` is the model: viable and dead cells per organ, lung first-pass arrest, DNA that
outlives the cell until phagocytes degrade it, and a radiolabel that leaks from cells and is
taken up by liver and spleen phagocytes. Its `iv_labelled` route puts a radiolabelled
product's viable and dead cells (and their label) into the blood in one dose. The same file
gives a mouse or a human through its physiology table (`species=`).
"""),
    code("""
import numpy as np
import pandas as pd

import cellpkpd as cp

mouse = cp.load_model("msc_pbk", species="mouse")
human = cp.load_model("msc_pbk", species="human")
print("routes:", ", ".join(mouse.routes))
"""),
    md("""
## The mouse study

Five sacrifice times (1, 6, 24, 48 and 72 h), three mice each, 500,000 cells IV. The data
here are simulated from `msc_pbk` at known values of the two rates the study is meant to
measure, with 30% (qPCR) and 15% (gamma counter) log-normal assay error; values below an
assay's LLOQ (`LLOQ_dna` genome equivalents per organ, `LLOQ_radiolabel` of the injected
activity) are reported as censored (M3).
The dose rows name the route in `CMT`; each observation row names its assay.
"""),
    code("""
truth = {"k_death_lung": 0.10, "k_clear_dead": 0.04}  # 1/h, at the 25-g reference mouse
assays = {"dna_lung": 0.3, "dna_liver": 0.3, "dna_spleen": 0.3,
          "radiolabel_lung": 0.15, "radiolabel_liver": 0.15, "radiolabel_spleen": 0.15}
sacrifice = np.array([1.0, 6.0, 24.0, 48.0, 72.0])  # h
dose = cp.Regimen([cp.Dose(0.0, 5e5, route="iv_labelled")])
sim = cp.simulate(mouse, dose, sacrifice, params=truth)
lloq = {a: mouse.parameters["LLOQ_dna"].value if a.startswith("dna") else
        mouse.parameters["LLOQ_radiolabel"].value for a in assays}
rng = np.random.default_rng(2)
rows = []
for j, t in enumerate(sacrifice):
    for k in range(3):
        animal = 3 * j + k + 1
        rows.append(dict(ID=animal, TIME=0.0, AMT=5e5, CMT="iv_labelled", EVID=1, DV=np.nan,
                         MDV=1, CENS=0))
        for assay, cv in assays.items():
            y = float(sim[assay].values[0, j]) * np.exp(cv * rng.standard_normal())
            below = y < lloq[assay]
            rows.append(dict(ID=animal, TIME=t, AMT=0.0, CMT=assay, EVID=0,
                             DV=lloq[assay] if below else y, MDV=0, CENS=int(below)))
table = pd.DataFrame(rows)
obs = table[table.EVID == 0]
print(f"{len(obs)} measurements in {table.ID.nunique()} mice, {int(obs.CENS.sum())} below the LLOQ")
obs.pivot_table(index="TIME", columns="CMT", values="DV", aggfunc="median")
"""),
    md("""
## The fit

Both rates are estimated (maximum a posteriori, with the model file's priors); every other
parameter stays at its file value. Each assay has its own log-normal residual error.
"""),
    code("""
study = cp.read_nonmem(table)
fixed = [p for p in mouse.parameters if p not in truth]
pop = cp.Population(error={a: "lognormal" for a in assays}, fixed=fixed)
fit = cp.fit(mouse, study, pop, method="map", steps=400, seed=1, progress=False)
estimate = {k: float(fit.posterior[k].values.ravel()[0]) for k in truth}
pd.DataFrame({"true": truth, "estimate": estimate,
              "model file": {k: mouse.parameters[k].value for k in truth}})
"""),
    md("One goodness-of-fit figure per assay type: qPCR in genome equivalents, the label as a fraction."),
    code("cp.plots.gof(fit, log=True, outputs=[a for a in assays if a.startswith('dna')])"),
    code("cp.plots.gof(fit, log=True, outputs=[a for a in assays if a.startswith('radiolabel')])"),
    md("""
## A patient at 2 million cells/kg: IV or into the renal artery

The fitted rates hold for the 25-g reference mouse; the model scales host-driven rates to a
70-kg patient with body weight to the power `b_allo` (-1/4), and the physiology table gives
the patient's organ volumes and blood flows. A dose per kg (`per="kg"`) takes the patient's
body weight; the result records the cells given. An intravenous dose meets the lung first;
a renal-artery dose (`ia_kidney`) passes the kidney first.
"""),
    code("""
times = np.concatenate([[0.0], np.geomspace(0.01, 168.0, 60)])  # h
routes = {"IV": "iv", "renal artery": "ia_kidney"}
res = {name: cp.simulate(human, cp.Regimen([cp.Dose(0.0, 2e6, per="kg", route=r)]), times,
                         params=estimate)
       for name, r in routes.items()}
print(f"cells given: {float(res['IV']['amount_given'].values[0]):.3g}")
rows = {}
for name, r in res.items():
    for t in (1.0, 24.0):
        at = r.sel(time=times[np.argmin(abs(times - t))])
        rows[(name, f"{t:g} h")] = {o: 100 * float(at[f"frac_{o}"].values[0])
                                    for o in ("lung", "kidney", "liver", "spleen")}
table = pd.DataFrame(rows).T.rename_axis(["route", "time"]).add_suffix(" [% of dose]")
print(table.to_string(float_format="{:.3g}".format))
"""),
    code("cp.plots.biodistribution(res['IV'], human, log_time=True, title='human, 2e6 cells/kg IV')"),
    code("""
cp.plots.biodistribution(res["renal artery"], human, log_time=True,
                         title="human, 2e6 cells/kg into the renal artery")
"""),
    md("""
What the model assumes, and where its rates come from (calibrated to Lee 2009, Eggenhofer
2012, Fischer 2009, Bonios 2011, Toma 2009, Braid 2018 and Toupet 2013, most of them read as
abstracts only), is listed on its library page, `docs/library/msc_pbk.md`. The parameters no
source gives are marked 'assumed'; which published facts move each of them (and which move
none) is on `docs/library/msc_pbk_assumed.md`. The two rates fitted here stand in for what a
sponsor's own study measures: with real data, the same `cp.fit` call estimates them.
"""),
]

NOTEBOOKS["03_fit_data"] = [
    md("""
# 03 · Fitting data: theophylline

This notebook fits the classic theophylline data (12 subjects, oral 320 mg-ish doses by weight)
bundled with cellpkpd, with NUTS, checks the sampler's diagnostics, and judges the fit
with goodness-of-fit plots and a visual predictive check. The run is kept short for CI
(2 chains x 100 draws); use 4 x 1000 for a real analysis.
"""),
    code("""
import warnings

import cellpkpd as cp

data = cp.datasets.theophylline()
spec = cp.load_model("one_cmt_oral")
pop = cp.Population(random_effects={"ka": 0.5, "CL": 0.5, "V": 0.5}, error={"conc": "combined"})
with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # short run: ESS below 400 is expected
    # the data's WT and DOSE_MGKG columns are no covariates of this model: cellpkpd says
    # so in a UserWarning, silenced here as we know it
    warnings.filterwarnings("ignore", "fit: data columns WT, DOSE_MGKG", UserWarning)
    idata = cp.fit(spec, data, pop, method="nuts", chains=2, warmup=100, draws=100, seed=0,
                   progress=False)
cp.fit_summary(idata)
"""),
    md("""
The summary gives each quantity with its unit: typical values, between-subject SDs (of
log), residual SDs, with the sampler's diagnostics. R-hat near 1 and no divergences: the
chains agree. Trace and pair plots:
"""),
    code("cp.plots.posterior(idata, kind='trace')"),
    code("cp.plots.gof(idata)"),
    md("""
## Visual predictive check

Replicate studies simulated from the posterior (new between-subject and residual
variability, same doses and sampling times); observed percentiles should lie in the
simulated prediction intervals.
"""),
    code("""
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "simulate: data columns WT, DOSE_MGKG", UserWarning)
    fig = cp.plots.vpc(idata, data, spec=spec, population=pop, n=50, seed=0)
fig
"""),
    md("""
A fit of a cell-therapy model to a mouse biodistribution study (qPCR and radiolabel per
organ at sacrifice, values below the LLOQ censored) is in notebook 02.
"""),
]

NOTEBOOKS["04_host_dependent_effect"] = [
    md("""
# 04 · The same dose, different hosts

`msc_pkpd_host` links MSC persistence to an immunomodulatory effect. Host cytotoxic cells
(CD8+ T, NK) make the infused MSCs apoptotic; recipient phagocytes engulf the apoptotic
cells and respond with a regulatory mediator (`mediator_eff`, efferocytosis); viable MSCs
licensed by the host's inflammation (IFN-gamma) secrete their own (`mediator_sec`). An
inflammatory biomarker falls through an indirect response that inhibits only its
disease-driven excess, never the healthy level.

Every host below gets the same dose, 4e7 cells/kg intravenously (1e6 cells in a 25-g
mouse, the species the model's rates are given for); only the host differs. The model's
notes say which facts it was built to reproduce: little effect without recipient cytotoxic
activity (Galleu 2017), no licensing without inflammation (Krampera 2006).
"""),
    code("""
import numpy as np
import pandas as pd

import cellpkpd as cp

spec = cp.load_model("msc_pkpd_host")
cp.plots.diagram(spec)
"""),
    md("""
## Cytotoxic activity: faster clearance, more effect

Four mice with typical inflammation (1) and cytotoxic activity from none (0, e.g.
perforin-deficient or lymphodepleted) to twice the typical. The dose is given per kg
through the model's `iv` route; `cp.simulate` takes each subject's body weight from the
`body_weight` covariate (default 0.025 kg) and records the cells given.
"""),
    code("""
dose = cp.Regimen([cp.Dose(0.0, 4e7, per="kg", route="iv")])  # cells/kg
times = np.linspace(0.0, 168.0, 337)  # one week [h]
cytotoxic = {"none (0)": 0.0, "low (0.5)": 0.5, "typical (1)": 1.0, "high (2)": 2.0}
res = cp.simulate(spec, dose, times,
                  covariates={"cytotoxic_activity": np.array(list(cytotoxic.values()))})
labels = [f"cytotoxic activity {k}" for k in cytotoxic]
print(f"cells given per mouse: {float(res['amount_given'].values[0]):.3g}")


def host_table(res, names):
    \"\"\"One row per host: persistence, engulfment, mediator peaks and the biomarker nadir.\"\"\"
    given = res["amount_given"].values
    rows = {}
    for i, name in enumerate(names):
        viable = res["viable_msc"].values[i]
        change = res["pct_change"].values[i]
        fall = 0.0 if change.min() >= 0 else -change.min()  # none without inflammation
        rows[name] = {
            "viable at 24 h [% of dose]": 100 * np.interp(24.0, times, viable) / given[i],
            "viable at 72 h [% of dose]": 100 * np.interp(72.0, times, viable) / given[i],
            "engulfed by 7 d [% of dose]": 100 * res["efferocytosed"].values[i, -1] / given[i],
            "peak mediator_eff [AU]": res["mediator_eff"].values[i].max(),
            "peak mediator_sec [AU]": res["mediator_sec"].values[i].max(),
            "largest biomarker fall [% of baseline]": fall,
            "at [h]": times[np.argmin(change)] if fall > 1e-9 else np.nan,
        }
    return pd.DataFrame(rows).T


by_cytotoxicity = host_table(res, list(cytotoxic))
by_cytotoxicity.style.format("{:.3g}")
"""),
    md("""
The cells: viable MSCs on a log axis (they fall by orders of magnitude within days) and the
cumulative number engulfed by phagocytes. The more cytotoxic the host, the faster the
viable cells go and the more of them are engulfed as apoptotic cells.
"""),
    code("""
cp.plots.timecourse(res, ["viable_msc", "efferocytosed"], spec=spec, log=True, labels=labels,
                    ncols=2, title="4e7 MSCs/kg IV in mice: the cells")
"""),
    md("""
The effect: the efferocytosis mediator follows the number of cells engulfed, the secreted
one the number of viable cells, and the biomarker falls with their sum, each taken
relative to its IC50 per kg.
"""),
    code("""
cp.plots.timecourse(res, ["mediator_eff", "mediator_sec", "pct_change"], spec=spec,
                    labels=labels, ncols=3, title="4e7 MSCs/kg IV in mice: mediators and effect")
"""),
    code("""
none, typical = by_cytotoxicity.loc["none (0)"], by_cytotoxicity.loc["typical (1)"]
fall = "largest biomarker fall [% of baseline]"
print(f"without cytotoxic activity {none['viable at 72 h [% of dose]']:.3g}% of the cells are "
      f"still viable at 72 h (typical host: {typical['viable at 72 h [% of dose]']:.3g}%), yet "
      f"the biomarker falls by {none[fall]:.1f}% instead of {typical[fall]:.1f}% "
      f"({100 * none[fall] / typical[fall]:.0f}% of the typical effect)")
ratio = typical["peak mediator_eff [AU]"] / typical["peak mediator_sec [AU]"]
print(f"typical host: peak mediator_eff is {ratio:.0f} x peak mediator_sec "
      "(their IC50s per kg are equal in the model file)")
"""),
    md("""
Persistence is a poor guide to the effect in this model: the host that keeps its MSCs
longest responds least, because most of the effect comes from phagocytes engulfing the
MSCs that the host's cytotoxic cells make apoptotic (Galleu 2017), while the secretion of
the surviving cells contributes little (the printout above gives the numbers).

## Inflammation: licensing, and how much there is to suppress

Four mice with typical cytotoxic activity and inflammation from none (0, a healthy host)
to three times the typical. Inflammation does not change the fate of the cells in this
model, so the viable cells and the efferocytosis mediator are the same in all four (checked
below) and are not drawn again; it licenses the secretion and sets the disease-driven
excess of the biomarker.
"""),
    code("""
inflammation = {"none (0)": 0.0, "low (0.3)": 0.3, "typical (1)": 1.0, "high (3)": 3.0}
res_i = cp.simulate(spec, dose, times,
                    covariates={"inflammation": np.array(list(inflammation.values()))})
for name in ("viable_msc", "mediator_eff"):
    v = res_i[name].values
    print(f"{name}: largest difference between the four hosts "
          f"{np.abs(v - v[2]).max() / v.max():.1e} of its peak")
by_inflammation = host_table(res_i, list(inflammation))
by_inflammation["baseline biomarker [1]"] = res_i["biomarker"].values[:, 0]
by_inflammation["lowest biomarker [1]"] = res_i["biomarker"].values.min(axis=1)
by_inflammation.iloc[:, 3:].style.format("{:.3g}", na_rep="-")
"""),
    code("""
cp.plots.timecourse(res_i, ["mediator_sec", "biomarker", "pct_change"], spec=spec,
                    labels=[f"inflammation {k}" for k in inflammation], ncols=3,
                    title="4e7 MSCs/kg IV in mice with typical cytotoxic activity")
"""),
    md("""
Without inflammation the MSCs are not licensed (no secreted mediator) and the biomarker
stays at its healthy level, 1: the mediators inhibit only the disease-driven excess, so
there is nothing to suppress (Krampera 2006). The more inflamed the host, the higher its
baseline and the larger the fall, in % of baseline and in absolute terms (table above).

## Which cells carry the effect

Galleu et al. gave MSCs made apoptotic ex vivo (apoMSCs) to mice without cytotoxic
activity, and they worked. In the model, such cells are dosed into the `apoptotic` state;
a host without phagocytes (phagocytic capacity 0) engulfs nothing.
"""),
    code("""
live = dose
apoptotic = cp.Regimen([cp.Dose(0.0, 4e7, per="kg", cmt="apoptotic")])
cases = {
    "typical host, live MSCs": (live, 1.0, 1.0),
    "no cytotoxic activity, live MSCs": (live, 0.0, 1.0),
    "no cytotoxic activity, apoptotic MSCs": (apoptotic, 0.0, 1.0),
    "typical cytotoxicity, no phagocytes, live MSCs": (live, 1.0, 0.0),
}
regimens, cyto, phago = zip(*cases.values())
res_c = cp.simulate(spec, list(regimens), times,
                    covariates={"cytotoxic_activity": np.array(cyto),
                                "phagocytic_capacity": np.array(phago)})
host_table(res_c, list(cases)).iloc[:, 2:].style.format("{:.3g}")
"""),
    md("""
Apoptotic MSCs restore the effect in a host that cannot kill the cells, and without
phagocytes even a typical host responds little: in this model the effect needs the
engulfment of apoptotic MSCs, whoever made them apoptotic. Where these rates and
targets come from, and which are assumed, is listed on the model's library page
(`docs/library/msc_pkpd_host.md`).
"""),
]

NOTEBOOKS["05_dose_ranging"] = [
    md("""
# 05 · Dose ranging in a virtual population

Which dose of MSCs per kg lowers an inflammatory biomarker by at least 20% of its baseline
in 90% of patients, and how do the product's viability and cryopreservation move that
dose? A virtual population of adults with variability in MSC killing, efferocytosis and
host state (`msc_pkpd_host`, body weight 70 kg) is evaluated in every arm of a dose x
product grid; the table reports each arm's median and 5-95% range and the probability of
target attainment (PTA).
"""),
    code("""
import numpy as np
import pandas as pd

import cellpkpd as cp

spec = cp.load_model("msc_pkpd_host")
body_weight = 70.0  # kg: every virtual patient
vpop = cp.VirtualPopulation(
    spec, 200,
    random_effects={"k_kill": 0.5, "k_eff": 0.4, "y_eff": 0.5},
    covariates={"inflammation": "lognormal(0, 0.4)", "cytotoxic_activity": "lognormal(0, 0.5)",
                "body_weight": body_weight},
    seed=1,
)
print(vpop)
varying = vpop.to_frame(varying_only=True)  # the other columns hold one value each
varying.describe().loc[["mean", "std", "min", "50%", "max"]].style.format("{:.3g}")
"""),
    md("""
Only the columns that vary are shown; every other parameter and covariate keeps its
model-file value (the product's, too: viability 0.9, potency 1, fresh).

## What each product attribute does, in a typical patient

The model's product covariates are `viability` (the non-viable cells are mostly necrotic
and cleared without an effect), `potency` (scales the licensed secretion) and `thawed`
(1 = infused right after thawing: some cells lysed in blood, the survivors secrete less
until they acclimate). One typical 70-kg patient, 2e7 cells/kg IV, each attribute changed
alone from a fresh product of viability 0.95 and potency 1:
"""),
    code("""
times = np.linspace(0.0, 24.0 * 28, 169)  # 4 weeks [h]
reference = {"viability": 0.95, "potency": 1.0, "thawed": 0.0}
variants = {"reference": {}, "viability 0.7": {"viability": 0.7},
            "viability 0.5": {"viability": 0.5}, "thawed": {"thawed": 1.0},
            "potency 0.5": {"potency": 0.5}, "potency 2": {"potency": 2.0}}
covariates = {k: np.array([v.get(k, reference[k]) for v in variants.values()]) for k in reference}
covariates["body_weight"] = np.full(len(variants), body_weight)
typical = cp.simulate(spec, cp.Regimen([cp.Dose(0.0, 2e7, per="kg", route="iv")]), times,
                      covariates=covariates)
fall = -typical["pct_change"].values.min(axis=1)
pd.DataFrame({"largest biomarker fall [% of baseline]": fall,
              "relative to reference": fall / fall[0]}, index=list(variants)).style.format("{:.3g}")
"""),
    md("""
Viability moves the effect most: the non-viable cells of a product are mostly cleared
without one. Thawing (some cells lysed, the survivors stunned) and a twofold change of
potency move it less (the table gives how much), because in this model most of the
effect comes from phagocytes engulfing MSCs that the host made apoptotic, and potency
scales only the secretion of the surviving cells (notebook 04). The grid below varies
viability and thawing, the two attributes that manufacturing and logistics set.

## The dose x product grid

Seven doses from 1e6 to 1e8 cells/kg, three products: the fresh reference (viability
0.95), a fresh product of viability 0.7, and the reference infused right after thawing.
`cp.dose_ranging` multiplies the regimen's amounts by `dose`; the regimen is one cell per kg
(`per="kg"`, each virtual patient's body weight), so `dose` is in cells/kg.
"""),
    code("""
products = {"fresh, 95% viable": {"viability": 0.95, "thawed": 0.0},
            "fresh, 70% viable": {"viability": 0.7, "thawed": 0.0},
            "thawed, 95% viable": {"viability": 0.95, "thawed": 1.0}}
doses = [1e6, 3e6, 1e7, 2e7, 3e7, 5e7, 1e8]  # cells/kg
metrics = {"suppression": cp.metrics.max_pct_change("biomarker")}  # % decrease from baseline
table = cp.dose_ranging(
    spec, [{"dose": d, **p} for p in products.values() for d in doses], vpop, times, metrics,
    target={"suppression": (">=", 20.0)},  # a fall of at least 20% of the baseline
    regimen=cp.Regimen([cp.Dose(0.0, 1.0, per="kg", route="iv")]),  # x dose [cells/kg]
)
table["product"] = np.repeat(list(products), len(doses) * len(metrics))  # arms in order
summary = table.pivot(index="dose", columns="product", values=["median", "pta"])
summary.index = [f"{d:.0e}" for d in summary.index]
summary.rename_axis("dose [cells/kg]").style.format("{:.2f}")
"""),
    md("""
Suppression against dose, one line per product (median, and the 5-95% range of the
virtual patients as a band); the dashed line is the target.
"""),
    code("cp.plots.dose_response(table, 'suppression', by=['product'], log_y=False)"),
    code("""
fig = cp.plots.target_attainment(table, "suppression", by=["product"], target=0.9)
fig.set_size_inches(10.5, 4.6)  # wider: the legend beside the axes takes half the default width
fig
"""),
    md("""
The dotted lines mark, per product, the lowest dose whose PTA reaches 90%, interpolated
in log(dose) between the doses of the grid, as the plot does:
"""),
    code("""
from cellpkpd.analysis.doseranging import dose_for_attainment

reach = dose_for_attainment(table, "suppression", pta=0.9, by=["product"]).set_index("product")
reference = reach.loc["fresh, 95% viable", "dose"]
for name, d in reach["dose"].items():
    print(f"{name:>18}: PTA 90% from {d:.3g} cells/kg ({d / reference:.2f} x the reference)")
clinical = table[table.dose <= 1e7].groupby("product").pta.max()
print("highest PTA at 1e7 cells/kg or less:",
      ", ".join(f"{k} {100 * v:.0f}%" for k, v in clinical.items()))
"""),
    md("""
A less viable product, or one infused straight after thawing, needs a somewhat higher
dose for the same PTA; the printout gives how much. Doses of 1-10 million cells/kg, the
range of most clinical MSC trials, reach the target in few of these virtual patients.
Read this as what the model implies, not as a clinical prediction: its IC50s per kg were
set by a mouse design target (4e7 cells/kg gives half the maximal effect in a typical
mouse) and the biomarker and its target are illustrative (see the model's library page,
`docs/library/msc_pkpd_host.md`).
"""),
]

NOTEBOOKS["06_gpu_sweep_and_gsa"] = [
    md("""
# 06 · Parameter sweeps and global sensitivity analysis (CPU here, GPU the same)

`cp.sweep` evaluates a model over many parameter sets in fixed-size chunks, each chunk
sharded over the available JAX devices; `cp.gsa.sobol` builds a Sobol design with SALib
and evaluates it with `cp.sweep`. This notebook runs on two CPU cores in about a minute.

**On GPUs**: install JAX with CUDA (`pip install -U "jax[cuda12]"`) and run the same code:
cellpkpd shards each chunk over every visible GPU (`jax.devices()`), no change needed.
Raise `chunk_size` to fill the GPU memory (1e5-1e6 sets per chunk for small models): on one
H200, a sweep of 1e6 sets of a nonlinear PK-PD model (169 times, 5 metrics, float64) ran at
~350,000 sets/s (`benchmarks/README.md`). For
speed on consumer GPUs, compute in float32: set `JAX_ENABLE_X64=0` in the environment
before importing cellpkpd (check the accuracy against a float64 run first). With
`path="runs/name"` a sweep writes each chunk to disk and resumes after an interruption;
with a `dask.distributed.Client` (`client=`) it spreads chunks over a cluster.
"""),
    code("""
import jax
import numpy as np

import cellpkpd as cp

print(jax.devices())
spec = cp.load_model("msc_pbk")
reg = cp.Regimen([cp.Dose(0.0, 1e6, cmt="venous")])
# a uniform grid (every 15 min for a week): the exact path of a linear model computes one
# matrix exponential per distinct interval between output times and doses, so a uniform
# grid costs one per set (a log-spaced grid of 61 times costs 61, ~13x slower here)
times = np.arange(0.0, 168.25, 0.25)
"""),
    md("""
## A sweep: cell diameter x inflammation, 400 virtual products and hosts

`chunk_size` bounds the memory: each chunk is one vectorised solve, and msc_pbk has 55
states (cells, dead cells and radiolabel per organ), so 100 sets per chunk keep a laptop's
memory use near 5 GB. On a GPU, raise it until the device memory is full.
"""),
    code("""
rng = np.random.default_rng(0)
n = 400
samples = {"diameter": rng.uniform(10.0, 30.0, n), "inflammation": rng.uniform(0.0, 4.0, n)}
metrics = {"lung_peak": cp.metrics.cmax("frac_lung"),
           "target_cell_h": cp.metrics.auc("viable_target")}
out = cp.sweep(spec, reg, times, samples, metrics, chunk_size=100, progress=False)
out
"""),
    code("""
from matplotlib.figure import Figure

fig = Figure(figsize=(9, 3.6), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
sc = ax1.scatter(samples["diameter"], 100 * out["lung_peak"].values, c=samples["inflammation"], s=6)
ax1.set_xlabel("cell diameter [um]")
ax1.set_ylabel("peak fraction of dose in lung [%]")
sc2 = ax2.scatter(samples["inflammation"], out["target_cell_h"].values, c=samples["diameter"], s=6)
ax2.set_xlabel("inflammation [1]")
ax2.set_ylabel("viable cells in target x time [cells h]")
ax2.set_yscale("log")
fig.colorbar(sc, ax=ax1, label="inflammation [1]")
fig.colorbar(sc2, ax=ax2, label="diameter [um]")
fig
"""),
    md("""
## Sobol indices

Which inputs drive the cell exposure of the target tissue? First-order (S1) and total
(ST) indices with bootstrap 95% intervals, over ranges of product, host and model
parameters.
"""),
    code("""
bounds = {"diameter": (12.0, 25.0), "inflammation": (0.2, 4.0), "E_target_max": (0.2, 0.8),
          "k_death_target": (0.01, 0.1), "k_death_lung": (0.02, 0.15)}
indices = cp.gsa.sobol(spec, reg, times, bounds,
                       {"target_cell_h": cp.metrics.auc("viable_target")}, n=64, seed=0,
                       chunk_size=100)
indices
"""),
    code("cp.plots.sobol(indices)"),
]


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells)
        for i, cell in enumerate(nb.cells):  # stable ids: re-running changes no file
            cell["id"] = hashlib.sha1(f"{name}/{i}".encode()).hexdigest()[:8]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        nbformat.write(nb, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
