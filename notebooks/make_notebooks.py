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
2012 and Fischer 2009, most of which were read as abstracts only), is listed on its library
page, `docs/library/msc_pbk.md`.
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

import arviz as az
import numpy as np
import pandas as pd

import cellpkpd as cp

data = cp.datasets.theophylline()
spec = cp.load_model("one_cmt_oral")
pop = cp.Population(random_effects={"ka": 0.5, "CL": 0.5, "V": 0.5}, error={"conc": "combined"})
with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # short run: ESS below 400 is expected
    idata = cp.fit(spec, data, pop, method="nuts", chains=2, warmup=100, draws=100, seed=0,
                   progress=False)
az.summary(idata, var_names=["ka", "CL", "V", "omega_ka", "omega_CL", "omega_V",
                             "sigma_add_conc", "sigma_prop_conc"])
"""),
    md("R-hat near 1 and no divergences: the chains agree. Trace and pair plots:"),
    code("cp.plots.posterior(idata, kind='trace')"),
    code("cp.plots.gof(idata)"),
    md("""
## Visual predictive check

Replicate studies simulated from the posterior (new between-subject and residual
variability, same doses and sampling times); observed percentiles should lie in the
simulated prediction intervals.
"""),
    code("""
study = getattr(cp.infer, "simulate_study", None)
if study is not None:
    sims = study(idata, spec, data, pop, 50, 0)
else:  # the same by hand: posterior draw -> etas -> cp.simulate(data=) -> residual error
    post = idata.posterior.stack(sample=("chain", "draw"))
    rng = np.random.default_rng(0)
    n_sub = idata.posterior.sizes["subject"]
    reps = []
    for _ in range(50):
        d = rng.integers(post.sizes["sample"])
        p = {k: float(post[k][d]) * np.exp(float(post[f"omega_{k}"][d]) * rng.standard_normal(n_sub))
             for k in ("ka", "CL", "V")}
        ipred = cp.simulate(spec, data=data, params=p)["conc"].values
        sd = np.hypot(float(post["sigma_add_conc"][d]), float(post["sigma_prop_conc"][d]) * ipred)
        reps.append(ipred + sd * rng.standard_normal(ipred.shape))
    sims = np.array(reps)
cp.plots.vpc(idata, data, simulated=sims)
"""),
    md("""
A fit of a cell-therapy model to a mouse biodistribution study (qPCR and radiolabel per
organ at sacrifice, values below the LLOQ censored) is in notebook 02.
"""),
]

NOTEBOOKS["04_host_dependent_effect"] = [
    md("""
# 04 · The same dose, different hosts

`msc_pkpd_host` links MSC persistence to an immunomodulatory effect: host cytotoxic cells
kill the infused MSCs, recipient phagocytes engulf the apoptotic cells and respond with
regulatory mediators (efferocytosis), and licensed viable MSCs secrete their own. An
inflammatory biomarker falls through an indirect response, which inhibits only its
disease-driven excess. The default host is a 25-g mouse. Here every host gets the same dose;
only inflammation and cytotoxic activity differ.
"""),
    code("""
import numpy as np

import cellpkpd as cp

spec = cp.load_model("msc_pkpd_host")
cp.plots.diagram(spec)
"""),
    code("""
hosts = {
    "low inflammation, low cytotoxicity": (0.3, 0.3),
    "low inflammation, high cytotoxicity": (0.3, 2.0),
    "high inflammation, low cytotoxicity": (2.0, 0.3),
    "high inflammation, high cytotoxicity": (2.0, 2.0),
}
infl, cyto = (np.array(v) for v in zip(*hosts.values()))
dose = cp.Regimen([cp.Dose(0.0, 1e6, cmt="blood")])  # 1e6 cells IV in a 25-g mouse (4e7/kg)
times = np.linspace(0.0, 24.0 * 14, 337)  # two weeks [h]
res = cp.simulate(spec, dose, times, covariates={"inflammation": infl, "cytotoxic_activity": cyto})
cp.plots.timecourse(res, ["viable_msc", "mediator_eff", "mediator_sec", "pct_change"], spec=spec,
                    labels=list(hosts))
"""),
    code("""
for name, i in zip(hosts, range(len(hosts))):
    v = res["viable_msc"].values[i]
    peak = np.argmax(v)
    t_half = times[peak + np.argmax(v[peak:] < v[peak] / 2)]
    print(f"{name:>38}: viable MSCs halve by {t_half:5.1f} h, "
          f"largest biomarker change {res['pct_change'].values[i].min():6.1f} %")
"""),
    md("""
In this model a cytotoxic host clears the viable cells several times faster, yet the
biomarker is suppressed more: the MSCs it kills become apoptotic, recipient phagocytes
engulf them and respond with `mediator_eff`, which carries most of the effect, while the
longer-lived cells of a host with little cytotoxicity secrete comparatively little
(`mediator_sec`), as Galleu et al. 2017 found in GvHD mice. Inflammation licenses the
secretion (IFN-gamma) and sets how much disease-driven excess there is to suppress.
Persistence alone is a poor guide to the effect.
"""),
]

NOTEBOOKS["05_dose_ranging"] = [
    md("""
# 05 · Dose ranging in a virtual population

Which MSC dose suppresses the inflammatory biomarker by half in most patients, and how
does the answer change with product viability? A virtual population with variability in
MSC killing, efferocytosis and host state is evaluated in every arm of a dose x viability
grid; the table reports each metric's median and 5-95% range per arm and the probability
of target attainment (PTA).
"""),
    code("""
import numpy as np

import cellpkpd as cp

spec = cp.load_model("msc_pkpd_host")
vpop = cp.VirtualPopulation(
    spec, 300,
    random_effects={"k_kill": 0.5, "k_eff": 0.4, "y_eff": 0.5},
    covariates={"inflammation": "lognormal(0, 0.4)", "cytotoxic_activity": "lognormal(0, 0.5)"},
    seed=1,
)
vpop.to_frame().describe().loc[["mean", "std", "min", "max"]]
"""),
    code("""
times = np.linspace(0.0, 24.0 * 28, 169)  # 4 weeks [h]
metrics = {"suppression": cp.metrics.max_pct_change("biomarker"),  # % decrease from baseline
           "mediator_auc": cp.metrics.auc("mediator_eff")}
table = cp.dose_ranging(
    spec,
    {"dose": [1e7, 2e7, 4e7, 1e8, 3e8], "viability": [0.7, 0.95]},
    vpop, times, metrics,
    target={"suppression": (">=", 50.0)},  # at least half of the baseline gone
    regimen=cp.Regimen([cp.Dose(0.0, 1.0, cmt="blood")]),
)
table[table.metric == "suppression"]
"""),
    code("cp.plots.dose_response(table, 'suppression')"),
    code("cp.plots.target_attainment(table, 'suppression')"),
    md("""
The dose that reaches the target in 90% of patients is read off the PTA curve. The two
viabilities barely differ in this model: non-viable cells enter the apoptotic pool and are
engulfed by recipient phagocytes, so they still drive the efferocytosis response that
carries most of the effect (notebook 04).
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
