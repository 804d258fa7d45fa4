"""Which published facts pin down msc_pbk's 'assumed' parameters: the elasticity of each tested
fact to each parameter whose source says 'assumed'.

A parameter is 'assumed' when no source gives its value and no fact of the literature tests
(tests/models/test_literature_msc.py) was used to calibrate it (models/calibration/msc_pbk.py).
This script shows, for each, how much the tested facts move with it: the elasticity
d log(fact) / d log(parameter) at the model file's values, by forward-mode differentiation
through the simulator (`jax.jacfwd`; exact derivatives of the same solves the tests run).
An elasticity e means that doubling the parameter multiplies the fact by about 2**e.

- |e| < 0.05 for every fact: no tested fact constrains the parameter (doubling it moves every
  fact by < 3.5%), so no fact here could calibrate it; its value is a stated assumption.
- a larger |e|: a fact depends on it; the fact is already used to calibrate another parameter
  (see msc_pbk.py), or it is a bound the model meets with room (Lee 2009's < 1,000 genomes).

Run from the repository root (~2-4 min on 2 cores)::

    python models/calibration/msc_pbk_assumed.py            # prints the table
    python models/calibration/msc_pbk_assumed.py --write    # and docs/library/msc_pbk_assumed.md

It prints one row per assumed parameter: the largest |e|, the fact it belongs to, and the
elasticities of every fact. The facts are computed as the tests compute them (same species,
route, dose, times and outputs); each is listed in FACTS with its citation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import cellpkpd as cp

#: facts' scalars with |e| below this for every fact: not constrained by any tested fact
FREE = 0.05


@dataclass(frozen=True)
class Fact:
    """A tested fact as one positive scalar of one simulation."""

    name: str
    citation: str
    species: str
    route: str
    amount: float  # cells
    times: tuple[float, ...]  # h
    outputs: tuple[str, ...]
    value: Callable[[dict[str, jnp.ndarray]], jnp.ndarray]
    #: the tests' covariates: a fully viable product unless the test keeps the model's default
    covariates: tuple[tuple[str, float], ...] = (("viability", 1.0),)
    duration: float = 0.0  # h: an infusion (0: a bolus)
    #: the states dosed (cmt=, `amount` each) in place of the route's, e.g. a route's cells
    #: with their label; `route` then only names the route in the page
    cmts: tuple[str, ...] = ()
    #: parameters the test sets (a study's lesion, say), from the species' default values
    setup: Callable[[dict[str, float]], dict[str, float]] | None = None


OTHER = ("liver", "spleen", "kidney", "heart", "bone_marrow")
#: the carotid route with its label, as the test doses it (route ia_target has no label states)
IA_TARGET_LABELLED = ("artery_target", "dead_blood", "lab_artery_target", "lab_dead_blood")
#: an infarct in place of this share of the rat heart, perfusion per gram like the heart's
#: (one of the test's three shares; the per-gram ratio of infarct to heart does not depend on it)
INFARCT_SHARE = 0.3


def _infarct(d: dict[str, float], s: float = INFARCT_SHARE) -> dict[str, float]:
    return {
        "volume_heart": d["volume_heart"] * (1 - s),
        "flow_heart": d["flow_heart"] * (1 - s),
        "f_V_target": s * d["volume_heart"] / d["body_weight"],
        "f_Q_target": s * d["flow_heart"] / d["cardiac_output"],
    }


def _lost_label_in_organs(o: dict[str, jnp.ndarray]) -> jnp.ndarray:
    """Of the label of cells arrested in the target (1 cell-equivalent), the share of what
    left it by the output time that is in lung, liver, spleen and kidney."""
    organs = sum(o[f"radiolabel_{k}"][0] for k in ("lung", "liver", "spleen", "kidney"))
    return organs / (1.0 - o["radiolabel_target"][0])


FACTS = (
    Fact("lung DNA half-life [h]", "Lee 2009: ~24 h", "mouse", "iv_labelled", 2e6, (0.25, 24.0),
         ("dna_lung",),
         lambda o: 23.75 * math.log(2) / jnp.log(o["dna_lung"][0] / o["dna_lung"][1]),
         duration=1 / 60),
    Fact("most DNA outside the lung [GE]", "Lee 2009: < 1,000 per tissue", "mouse",
         "iv_labelled", 2e6, (0.25, 1.0, 4.0, 24.0), tuple(f"dna_{o}" for o in OTHER),
         lambda o: jnp.max(jnp.stack([o[f"dna_{k}"] for k in OTHER])), duration=1 / 60),
    Fact("label in the lung at 1 h [fraction]", "Eggenhofer 2012: mostly lung", "mouse",
         "iv_labelled", 5e5, (1.0,), ("radiolabel_lung",), lambda o: o["radiolabel_lung"][0],
         duration=1 / 60),
    Fact("label liver / lung at 24 h", "Eggenhofer 2012: mainly liver", "mouse", "iv_labelled",
         5e5, (24.0,), ("radiolabel_liver", "radiolabel_lung"),
         lambda o: o["radiolabel_liver"][0] / o["radiolabel_lung"][0], duration=1 / 60),
    Fact("viable at 72 h [fraction]", "Eggenhofer 2012: < 1%", "mouse", "iv_labelled", 5e5,
         (72.0,), ("viable_total",), lambda o: o["viable_total"][0] / 5e5, duration=1 / 60),
    Fact("viable outside the lung at 24 h [fraction]", "Eggenhofer 2012: only in the lung",
         "mouse", "iv_labelled", 5e5, (24.0,), ("viable_total", "viable_lung"),
         lambda o: (o["viable_total"][0] - o["viable_lung"][0]) / 5e5, duration=1 / 60),
    Fact("heart after intracoronary, 1 h [fraction]", "Bonios 2011: 15.4%", "rat", "ia_heart",
         1.0, (1.0,), ("dna_heart",), lambda o: o["dna_heart"][0]),
    Fact("heart after intramyocardial, 1 h [fraction]", "Bonios 2011: 13.6%", "rat",
         "intramyocardial", 1.0, (1.0,), ("dna_heart",), lambda o: o["dna_heart"][0]),
    Fact("heart after IV, 1 h [fraction]", "Bonios 2011: 0.8%", "rat", "iv", 1.0, (1.0,),
         ("dna_heart",), lambda o: o["dna_heart"][0]),
    Fact("muscle cells left at 72 h [fraction]", "Toma 2009: 14%", "rat", "ia", 1.0,
         (5 / 60, 72.0), ("viable_rest",),
         lambda o: o["viable_rest"][1] / o["viable_rest"][0]),
    Fact("brain label 24 h / 1 h after carotid MSCs", "Exp Neurol PMID 23059455: < 0.5",
         "rat", "ia_target", 1e6, (1.0, 24.0), ("radiolabel_target",),
         lambda o: o["radiolabel_target"][1] / o["radiolabel_target"][0], duration=1 / 60,
         covariates=(("viability", 1.0), ("inflammation", 1.0)), cmts=IA_TARGET_LABELLED),
    Fact("brain label lost by 24 h that is in organs [fraction]",
         "Exp Neurol PMID 23059455: relocated to organs", "rat", "target", 1.0, (24.0,),
         tuple(f"radiolabel_{k}" for k in ("target", "lung", "liver", "spleen", "kidney")),
         _lost_label_in_organs, cmts=("target", "lab_target")),
    Fact("infarct / heart label per gram after IV", "Cell Transplant 2010: MI raises it",
         "rat", "iv_labelled", 5e6, (1.0,), ("radiolabel_target", "radiolabel_heart"),
         lambda o: o["radiolabel_target"][0] / o["radiolabel_heart"][0]
         * (1 - INFARCT_SHARE) / INFARCT_SHARE, duration=1 / 60,
         covariates=(("viability", 1.0), ("inflammation", 1.0)), setup=_infarct),
    Fact("kidney after renal-artery injection, 1 h", "PLoS One 2014: more than IV", "mouse",
         "ia_kidney", 1.0, (1.0,), ("dna_kidney",), lambda o: o["dna_kidney"][0]),
    Fact("lung label fold fall, day 0 -> 10", "Gholamrezanezhad 2011: 5-17x", "human",
         "iv_labelled", 3e8, (0.5, 240.0), ("radiolabel_lung",),
         lambda o: o["radiolabel_lung"][0] / o["radiolabel_lung"][1], duration=0.5,
         covariates=()),
    Fact("spleen label fold rise, day 0 -> 10", "Gholamrezanezhad 2011: 3-21x", "human",
         "iv_labelled", 3e8, (0.5, 240.0), ("radiolabel_spleen",),
         lambda o: o["radiolabel_spleen"][1] / o["radiolabel_spleen"][0], duration=0.5,
         covariates=()),
    Fact("IP cells in the spleen at 1 day [fraction]", "Bazhanov 2016: < 0.05%", "mouse", "ip",
         1.0, (24.0,), ("live_spleen",), lambda o: o["live_spleen"][0]),
    Fact("IM cells left at 150 days [fraction]", "Braid 2018: IM > 5 months", "mouse", "im",
         1.0, (150 * 24.0,), ("live_muscle",), lambda o: o["live_muscle"][0]),
)  # fmt: skip


def assumed(spec: cp.ModelSpec) -> list[str]:
    """The parameters whose source starts with 'assumed'."""
    return [k for k, p in spec.parameters.items() if p.source.lower().startswith("assumed")]


def elasticities(fact: Fact, names: list[str]) -> tuple[float, np.ndarray]:
    """The fact at the model file's values, and d log(fact) / d log(parameter) for each name
    there."""
    spec = cp.load_model("msc_pbk", species=fact.species)
    sim = cp.Simulator(spec, np.array(fact.times), outputs=fact.outputs)
    if fact.cmts:
        dose = [cp.Dose(0.0, fact.amount, c, duration=fact.duration) for c in fact.cmts]
    else:
        dose = [cp.Dose(0.0, fact.amount, route=fact.route, duration=fact.duration)]
    doses = sim.doses(cp.Regimen(dose))
    base = np.array([spec.parameters[k].value for k in names])
    cov = {k: jnp.asarray(v) for k, v in fact.covariates}
    setup = fact.setup(spec.defaults()) if fact.setup else {}
    fixed = {k: jnp.asarray(v) for k, v in setup.items()}

    def log_fact(log_p: jnp.ndarray) -> jnp.ndarray:
        p = {k: jnp.exp(v) for k, v in zip(names, log_p, strict=True)}
        return jnp.log(fact.value(sim({**fixed, **p, **cov}, doses)))

    at = jnp.log(jnp.asarray(base))
    value, jac = jax.jit(lambda x: (log_fact(x), jax.jacfwd(log_fact)(x)))(at)
    return float(np.exp(value)), np.asarray(jac)


def markdown(spec: cp.ModelSpec, names: list[str], values: list[float], table: np.ndarray) -> str:
    """The page docs/library/msc_pbk_assumed.md."""
    lines = [
        "# msc_pbk: what the published facts say about its assumed parameters",
        "",
        "Generated by `python models/calibration/msc_pbk_assumed.py --write` (see its "
        "docstring). Elasticity e = d log(fact) / d log(parameter) at the model file's values "
        "(forward-mode derivatives through the same solves the literature tests run): doubling "
        f"the parameter multiplies the fact by about 2^e. **free**: |e| < {FREE} for every "
        "tested fact, so no fact here could calibrate it; its value is a stated assumption. "
        "Otherwise the fact that moves most with it: a point fact already used to calibrate "
        "another parameter, or a bound the model meets (see the facts' values below).",
        "",
        f"{sum(bool(np.all(np.abs(table[:, j]) < FREE)) for j in range(len(names)))} of the "
        f"{len(names)} assumed parameters move no tested fact (free); the others are held "
        "only by bounds or by facts whose own calibrated parameter absorbs them.",
        "",
        "| parameter | value | unit | largest abs(e) | fact that moves most |",
        "|---|---|---|---|---|",
    ]
    for j, k in enumerate(names):
        col = table[:, j]
        i = int(np.argmax(np.abs(col)))
        p = spec.parameters[k]
        what = "**free**" if abs(col[i]) < FREE else f"{FACTS[i].name} (e = {col[i]:+.2f})"
        lines.append(f"| `{k}` | {p.value:.4g} | {p.unit} | {abs(col[i]):.3f} | {what} |")
    lines += [
        "",
        "The facts, as tests/models/test_literature_msc.py computes them, and their values at "
        "the model file's values:",
        "",
        "| fact | published | species | route | model |",
        "|---|---|---|---|---|",
    ]
    for f, v in zip(FACTS, values, strict=True):
        route = f"`{f.route}`" if not f.cmts else "cmt= " + ", ".join(f"`{c}`" for c in f.cmts)
        lines.append(f"| {f.name} | {f.citation} | {f.species} | {route} | {v:.4g} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write docs/library/msc_pbk_assumed.md")
    args = ap.parse_args(argv)
    spec = cp.load_model("msc_pbk")
    names = [k for k in assumed(spec) if spec.parameters[k].value > 0]
    skipped = [k for k in assumed(spec) if k not in names]
    runs = [elasticities(f, names) for f in FACTS]
    values = [v for v, _ in runs]
    table = np.stack([e for _, e in runs])  # (facts, params)
    out: dict[str, dict[str, float]] = {}
    print(f"elasticity d log(fact) / d log(parameter); |e| < {FREE}: no tested fact moves")
    for j, k in enumerate(names):
        col = table[:, j]
        i = int(np.argmax(np.abs(col)))
        out[k] = {f.name: float(col[n]) for n, f in enumerate(FACTS)}
        verdict = "free" if abs(col[i]) < FREE else f"{FACTS[i].name} ({FACTS[i].citation})"
        print(f"{k:<18} max |e| {abs(col[i]):7.3f}  {verdict}")
    if skipped:
        print("not differentiated (value 0, no log scale):", ", ".join(skipped))
    for f, v in zip(FACTS, values, strict=True):
        print(f"fact {f.name}: {v:.4g} ({f.citation})")
    if args.write:
        path = Path(__file__).resolve().parents[2] / "docs" / "library" / "msc_pbk_assumed.md"
        path.write_text(markdown(spec, names, values, table))
        print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
