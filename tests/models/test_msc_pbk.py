"""msc_pbk (models/msc_pbk.toml): the physiologically based kinetic model of intravenous MSCs.

Checked here: it loads for every species with a physiology table; cells are conserved
(viable + dead + cleared = cells dosed, also under random parameters, doses and infusion
durations); the lung's first-pass entrapment and its fall over the first day agree with the
published numbers cited in the model file; product and host attributes move the model the way
the biology says; species differ only through their physiology; every parameter is documented;
gradients are finite.

Compilation dominates the run time, so the tests share a few compiled programs: one
single-subject program per species (a short IV infusion on the grid `TIMES`; covariate scans
loop over it) and one three-dose mouse program for the dosing-pattern tests.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cellpkpd as cp
from cellpkpd.engine.dosing import GIVEN_DURATION
from cellpkpd.spec.model import parse_prior
from cellpkpd.spec.physiology import lookup

SPECIES = ("mouse", "rat", "human")
N = 1.0e6  # cells infused
# output grid: 30 s (during the 1-min infusion), 5 min, 15 min, 30 min, then hourly to 3 days
TIMES = np.concatenate([[0.0, 0.5 / 60, 5 / 60, 0.25, 0.5], np.arange(1.0, 73.0)])
I5MIN, I1H, I24H, I72H = 2, 5, 28, 76
ROUTES = ("artery_kidney", "artery_heart", "artery_target", "portal")  # transient route states
ORGANS = ("lung", "liver", "spleen", "kidney", "heart", "bone_marrow", "target", "rest", "muscle")
DEPOTS = ("subcutis", "peritoneum", "joint")  # local depots without radiolabel states
VIABLE = ("venous", "arterial", *ROUTES, *ORGANS, *DEPOTS)
DEAD = tuple(f"dead_{o}" for o in ("blood", *ORGANS, *DEPOTS))
LABEL = (*(f"lab_{s}" for s in (*VIABLE, *DEAD) if s.removeprefix("dead_") not in DEPOTS),)
LABEL += ("lab_free", "lab_phago_liver")
LABEL += ("lab_phago_spleen", "lab_urine")
VIABLE += ("joint_engrafted",)  # the joint's second pool (Toupet et al. 2013), no label state


@pytest.fixture(scope="module")
def specs() -> dict[str, cp.ModelSpec]:
    return {s: cp.load_model("msc_pbk", species=s) for s in SPECIES}


def iv(
    cmt: str = "venous",
    duration: float = 1 / 60,
    amount: float = N,
    dead: float = 0.0,
    label: float = 0.0,
) -> cp.Regimen:
    """`amount` cells into `cmt` (IV: venous) infused over `duration` [h] (1 min: the "bolus"
    of the biodistribution studies) from time 0; `dead` cells into dead_blood (the product's
    non-viable part) and `label` into lab_<cmt> and lab_dead_blood (a labelled product). Always
    four dose records (some of zero cells), so that every regimen of a species shares one
    compiled program (compilation dominates the run time of this file)."""
    doses = [(cmt, amount), ("dead_blood", dead), (f"lab_{cmt}", label), ("lab_dead_blood", label)]
    return cp.Regimen([cp.Dose(0.0, a, c, duration=duration) for c, a in doses])


def sim(spec: cp.ModelSpec, reg: cp.Regimen | None = None, **covariates: float):
    """One subject on `TIMES` (the species' shared compiled program)."""
    return cp.simulate(spec, reg or iv(), TIMES, covariates=covariates or None)


def auc(res, name: str) -> float:
    """Trapezoidal AUC over `TIMES` of one subject's output [unit h]."""
    return float(np.trapezoid(res[name].values[0], res.time.values))


def terminal_half_life(res, name: str, t1: float = 24.0, t2: float = 72.0) -> float:
    """Half-life [h] of an output between times t1 and t2 (log-linear)."""
    t = res.time.values
    y1, y2 = (float(res[name].values[0][np.argmin(np.abs(t - s))]) for s in (t1, t2))
    return (t2 - t1) * math.log(2.0) / math.log(y1 / y2)


# ------------------------------------------------------------------ loading and documentation
@pytest.mark.parametrize("species", SPECIES)
def test_loads_for_each_species(specs, species: str) -> None:
    spec = specs[species]
    assert spec.species == species and spec.is_linear  # solved exactly (matrix exponential)
    assert spec.time_unit == "h" and spec.amount_unit == "cells"
    assert set(spec.states) == {*VIABLE, *DEAD, "cleared", *LABEL}
    for name, quantity in spec.physiology.items():
        assert spec.parameters[name].value == lookup(species, quantity)[0]
    res = sim(spec)
    assert res.sizes == {"subject": 1, "time": TIMES.size}
    assert int(res["status"].values[0]) == 0


def test_default_species_is_mouse(specs) -> None:
    spec = cp.load_model("msc_pbk")
    assert spec.species == "mouse"
    assert spec.defaults() == specs["mouse"].defaults()


def test_every_parameter_is_documented(specs) -> None:
    spec = specs["mouse"]
    own = [p for name, p in spec.parameters.items() if name not in spec.physiology]
    assert len(own) >= 25
    for p in own:
        where = f"parameters.{p.name}"
        assert p.unit, where
        lo, hi = p.bounds
        assert lo < hi and (math.isfinite(lo) or math.isfinite(hi)), where
        assert p.prior is not None, where
        parse_prior(p.prior, where)
        assert len(p.description) > 10, where
        # a source: a cited reference, or "assumed: <reason>"
        assert len(p.source) > 20, where
        if p.source.startswith("assumed"):
            assert p.source.startswith("assumed: ") and len(p.source) > 30, where
    for c in spec.covariates.values():
        assert c.unit and c.description, c.name
    for o in spec.observations.values():
        assert o.unit and o.description and o.error in ("proportional", "lognormal", "none")
        per_mg = o.name.startswith("dna_") and o.name.endswith("_per_mg")
        if o.name.startswith("alu_") or per_mg:
            assert "LLOQ_alu" in o.description, o.name
        elif o.name.startswith("dna_"):
            assert "LLOQ_dna" in o.description, o.name
        for family, lloq in (("live_", "LLOQ_live"), ("radiolabel_", "LLOQ_radiolabel")):
            if o.name.startswith(family):
                assert lloq in o.description, o.name
    # every LLOQ parameter is documented with the unit of the observations it censors
    assert spec.parameters["LLOQ_live"].unit == spec.observations["live_lung"].unit
    assert spec.parameters["LLOQ_dna"].unit == spec.observations["dna_lung"].unit
    assert spec.parameters["LLOQ_alu"].unit == spec.observations["dna_lung_per_mg"].unit
    assert spec.parameters["LLOQ_radiolabel"].unit == spec.observations["radiolabel_lung"].unit
    assert all("doi:" in ref or "(DOI not verified)" in ref for ref in spec.references)
    assert any("srep22293" in ref for ref in spec.references)  # Wang et al. 2016


# ------------------------------------------------------------------ mass balance
@pytest.mark.parametrize("species", SPECIES)
def test_mass_balance_every_output_time(specs, species: str) -> None:
    # N cells infused over 1 min at viability 0.7 (an output time falls within the infusion);
    # several doses and longer infusions: the property test below
    spec = specs[species]
    res = sim(spec, viability=0.7)
    infused = 0.7 * N * np.clip(res.time.values * 60.0, 0.0, 1.0)
    total = sum(res[s].values[0] for s in (*VIABLE, *DEAD, "cleared"))
    np.testing.assert_allclose(total, infused, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(res["cells_accounted"].values[0], infused, rtol=1e-9, atol=1e-9)
    for s in spec.states:  # amounts never go negative beyond round-off
        assert res[s].values.min() >= -1e-9 * N, s


_MOUSE = cp.load_model("msc_pbk", species="mouse")
_STATES = list(_MOUSE.states)
_PROP_TIMES = np.array([0.0, 0.05, 0.3, 1.0, 3.0, 7.5, 12.0, 24.0, 50.0, 100.0])
_PROP_SIM = cp.Simulator(
    _MOUSE, _PROP_TIMES, outputs=("cells_accounted", "viable_total", "alu_liver"), max_doses=3
)
# every slot is an infusion, so all dosing patterns share one pytree structure: one compile
_PROP_DOSES = cp.Regimen([cp.Dose(0.0, 1.0, "venous", duration=1.0)] * 3).to_arrays(3, _MOUSE)
_PROP_RUN = jax.jit(_PROP_SIM)


def three_infusions(start, amount, duration, cmt: list[str]):
    """`_PROP_DOSES` with the given start [h], cells, duration [h] and state of each slot."""
    return eqx.tree_at(
        lambda d: (d.time, d.amount, d.duration, d.cmt, d.mode),
        _PROP_DOSES,
        (
            jnp.asarray(start, dtype=float),
            jnp.asarray(amount, dtype=float),
            jnp.asarray(duration, dtype=float),
            jnp.asarray([_STATES.index(c) for c in cmt], dtype=jnp.int32),
            jnp.full(3, GIVEN_DURATION, dtype=jnp.int32),
        ),
    )


def infused(start, amount, duration, f) -> np.ndarray:
    """Cells that entered by each of `_PROP_TIMES`: sum of f * amount * infused fraction."""
    frac = np.clip((_PROP_TIMES[:, None] - np.asarray(start)) / np.asarray(duration), 0.0, 1.0)
    return (frac * (np.asarray(f) * np.asarray(amount))).sum(axis=1)


def test_mass_balance_with_the_non_viable_part_dosed() -> None:
    # N into venous (the viable part enters) and the same N into dead_blood (the non-viable
    # part enters): all N cells are accounted for
    v = 0.8
    p = {"viability": jnp.asarray(v)}
    cmts = ["venous", "dead_blood", "venous"]
    both = _PROP_RUN(p, three_infusions([0, 0, 0], [N, N, 0], [0.25] * 3, cmts))
    only = _PROP_RUN(p, three_infusions([0, 0, 0], [N, 0, 0], [0.25] * 3, cmts))
    expected = infused([0, 0], [N, N], [0.25, 0.25], [v, 1 - v])
    np.testing.assert_allclose(both["cells_accounted"], expected, rtol=1e-9, atol=1e-9)
    # the non-viable cells carry human DNA (to lung, liver and spleen phagocytes, which degrade
    # it within hours: k_dna_phago) but never count as viable
    np.testing.assert_allclose(both["viable_total"], only["viable_total"], rtol=1e-12)
    with_dead, without = np.asarray(both["alu_liver"]), np.asarray(only["alu_liver"])
    assert np.all(with_dead[1:4] > 2 * without[1:4])  # 0.05-1 h
    assert with_dead[4] > 1.1 * without[4]  # 3 h: most of it degraded by then (k_dna_phago)
    assert np.all(with_dead >= without * (1 - 1e-9))


_RATES = [n for n, p in _MOUSE.parameters.items() if p.unit == "1/h"]
_FRACTIONS = [n for n in _MOUSE.parameters if n.startswith("E_")]
_CMTS = ("venous", "arterial", "dead_blood", *ROUTES, "muscle", *DEPOTS)
_LOCAL = ("muscle", *DEPOTS)  # local depots: their [dosing] F is the viability alone


@settings(max_examples=15, deadline=None)
@given(
    log_rates=st.lists(st.floats(-1.5, 1.5), min_size=len(_RATES), max_size=len(_RATES)),
    fractions=st.lists(st.floats(0.0, 0.9), min_size=len(_FRACTIONS), max_size=len(_FRACTIONS)),
    physiology=st.lists(st.floats(0.7, 1.4), min_size=4, max_size=4),
    viability=st.floats(0.05, 1.0),
    diameter=st.floats(5.0, 40.0),
    thawed=st.sampled_from([0.0, 1.0]),
    tissue_factor=st.floats(0.0, 5.0),
    inflammation=st.floats(0.0, 10.0),
    doses=st.lists(
        st.tuples(
            st.floats(0.0, 48.0, allow_subnormal=False),  # start [h] (XLA flushes subnormals)
            st.floats(0.0, 1e8),  # cells
            st.floats(0.01, 12.0),  # infusion duration [h]
            st.integers(0, len(_CMTS) - 1),  # a route's state, or the non-viable part (dead_blood)
        ),
        min_size=3,
        max_size=3,
    ),
)
def test_mass_balance_property(
    log_rates,
    fractions,
    physiology,
    viability,
    diameter,
    thawed,
    tissue_factor,
    inflammation,
    doses,
) -> None:
    spec = _MOUSE
    p = {n: spec.parameters[n].value * math.exp(x) for n, x in zip(_RATES, log_rates, strict=True)}
    p.update(zip(_FRACTIONS, fractions, strict=True))
    bw, co, vb, organ = physiology
    p["body_weight"] = spec.parameters["body_weight"].value * bw
    for n in ("cardiac_output", "flow_liver", "flow_spleen", "flow_kidney", "flow_heart"):
        p[n] = spec.parameters[n].value * co  # flows move together: the rest stays positive
    for n in ("volume_venous_blood", "volume_arterial_blood"):
        p[n] = spec.parameters[n].value * vb
    for n in ("volume_lung", "volume_liver", "volume_spleen", "volume_kidney", "volume_heart"):
        p[n] = spec.parameters[n].value * organ
    p.update(viability=viability, diameter=diameter, thawed=thawed, inflammation=inflammation,
             tissue_factor=tissue_factor)  # fmt: skip
    start, amount, duration, cmt = zip(*doses, strict=True)
    d = three_infusions(start, amount, duration, [_CMTS[c] for c in cmt])
    got = _PROP_RUN({k: jnp.asarray(v, dtype=float) for k, v in p.items()}, d)
    # [dosing] bioavailability: a thawed product loses f_thaw_loss of its viable cells to
    # dead_blood by a blood route (the local depots keep them), and so does the IBMIR loss
    # of its dose record (AMT cells: more with tissue factor and dose per kg)
    loss = spec.parameters["f_thaw_loss"].value * thawed
    fmax, d50 = (spec.parameters[k].value for k in ("f_ibmir_max", "dose50_ibmir"))
    per_kg = [a / p["body_weight"] for a in amount]
    ibmir = [fmax * tissue_factor / (1 + tissue_factor) * x / (x + d50) for x in per_kg]
    blood_viable = [viability * (1.0 - loss) * (1.0 - i) for i in ibmir]
    f = [
        1.0 - bv if c == 2 else viability if _CMTS[c] in _LOCAL else bv
        for c, bv in zip(cmt, blood_viable, strict=True)
    ]
    expected = infused(start, amount, duration, f)
    np.testing.assert_allclose(got["cells_accounted"], expected, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------ lung first pass, persistence
@pytest.mark.parametrize("species", SPECIES)
def test_lung_first_pass_and_fall_over_the_first_day(specs, species: str) -> None:
    res = sim(specs[species], viability=1.0)
    lung = res["frac_lung"].values[0]
    # Eggenhofer et al. 2012, Fischer et al. 2009, Lee et al. 2009: > 80% of IV MSCs are in the
    # lungs within minutes; almost none reach the arterial circulation
    assert lung[I5MIN] > 0.8
    assert res["frac_blood"].values[0, I5MIN] < 1e-3
    # ... and the lung's share falls over the first day
    assert lung[I24H] < lung[I1H] < lung[I5MIN]


def test_fractions_of_dose_divide_by_the_cells_dosed(specs) -> None:
    """frac_* divide by the cells dosed into venous and arterial (dosed_venous +
    dosed_arterial), whatever N is: the same fraction for 1e6 and 3e7 cells (a linear
    model), each the organ's cells / N; the non-viable part dosed into dead_blood does not
    count twice."""
    spec = specs["mouse"]
    small, large = sim(spec), sim(spec, iv(amount=3e7))
    np.testing.assert_allclose(large["frac_lung"].values, small["frac_lung"].values, rtol=1e-9)
    np.testing.assert_allclose(small["frac_lung"].values, small["lung"].values / N, rtol=1e-12)
    both = iv(dead=N)
    np.testing.assert_allclose(sim(spec, both)["frac_liver"].values, small["frac_liver"].values)


def test_mouse_lung_numbers_match_the_cited_studies(specs) -> None:
    res = sim(specs["mouse"], viability=1.0)
    lung = res["frac_lung"].values[0]
    # Eggenhofer et al. 2012: viable MSCs in the lungs at 24 h, none at 72 h
    assert 0.05 < lung[I24H] < 0.5
    assert lung[I72H] < 0.05
    # Lee et al. 2009: the lung's human-DNA (Alu) signal falls with a half-life of ~24 h
    assert 16.0 < terminal_half_life(res, "alu_lung", t1=5 / 60, t2=24.0) < 36.0
    # (where the label goes: tests/models/test_literature_msc.py, with the label dosed)


def test_persistence_half_life_grows_with_body_size(specs) -> None:
    # host-driven rates scale as body_weight ** -0.25: mouse < rat < human
    half = [terminal_half_life(sim(specs[s]), "viable_total") for s in SPECIES]
    assert 6.0 < half[0] < 24.0  # mouse: viable MSCs gone within ~3 days (Eggenhofer 2012)
    assert half[0] < half[1] < half[2]


# ------------------------------------------------------------------ product and host attributes
def test_larger_cells_are_trapped_more_in_the_lung(specs) -> None:
    runs = [sim(specs["mouse"], diameter=d) for d in (8.0, 12.0, 16.0, 20.0, 24.0)]  # [um]
    lung_auc = [auc(r, "viable_lung") for r in runs]
    peak = [r["frac_lung"].values.max() for r in runs]
    assert np.all(np.diff(lung_auc) > 0) and np.all(np.diff(peak) > 0)
    # small cells pass the lung: more reach the systemic organs
    systemic = [auc(r, "viable_liver") + auc(r, "viable_spleen") for r in runs]
    assert np.all(np.diff(systemic) < 0)


def test_intra_arterial_dose_bypasses_the_lung_first_pass(specs) -> None:
    venous, arterial = (sim(specs["mouse"], iv(cmt)) for cmt in ("venous", "arterial"))
    # arterial cells meet the systemic organs first; those not arrested there still reach the
    # lung (the model has one cell size, so the lung does not select small cells)
    assert arterial["frac_lung"].values[0, I5MIN] < venous["frac_lung"].values[0, I5MIN]
    for organ in ("liver", "spleen", "kidney", "heart", "bone_marrow", "target"):
        frac = f"frac_{organ}"
        assert arterial[frac].values[0, I5MIN] > 5 * venous[frac].values[0, I5MIN], organ


def labelled(cmt: str) -> cp.Regimen:
    """N labelled cells by the route whose state is `cmt`, over 1 min: the viable part into
    `cmt`, the non-viable part into dead_blood, and the label of both (lab_*)."""
    return iv(cmt, dead=N, label=N)


@pytest.mark.parametrize("species", SPECIES)
def test_mass_balance_of_cells_and_label_for_every_route(specs, species: str) -> None:
    # every route, the product's dead part and the label dosed: cells and label are both
    # conserved to 1e-9 of the dose (the exact matrix-exponential path: round-off only)
    spec = specs[species]
    infused = N * np.clip(TIMES * 60.0, 0.0, 1.0)
    for cmt in ("venous", "arterial", *ROUTES, "muscle"):
        res = sim(spec, labelled(cmt), viability=0.8)
        total = sum(res[s].values[0] for s in (*VIABLE, *DEAD, "cleared"))
        np.testing.assert_allclose(total, infused, rtol=1e-9, atol=1e-9 * N, err_msg=cmt)
        label = sum(res[s].values[0] for s in LABEL)
        np.testing.assert_allclose(label, infused, rtol=1e-9, atol=1e-9 * N, err_msg=cmt)
        np.testing.assert_allclose(res["label_accounted"].values[0], label, rtol=1e-12)
        # the fractions divide by the N dosed by that route (not by N twice)
        np.testing.assert_allclose(
            res["frac_lung"].values[0], res["lung"].values[0] / N, rtol=1e-12, err_msg=cmt
        )


@pytest.mark.parametrize("species", SPECIES)
def test_mass_balance_of_every_route_of_the_model_file(specs, species: str) -> None:
    """Every route of [routes] (`cp.Dose(route=...)`): N cells given as one bolus of a large
    dose per kg (so the bolus's first-pass arrest into the lung, the IBMIR loss and the
    thaw loss all act) are all accounted for (viable + dead + cleared = N) from the dose on,
    to 1e-9 of N (round-off of the exact path), and so is the label of iv_labelled."""
    spec = specs[species]
    bw = spec.parameters["body_weight"].value
    amount = 5e7 * bw  # 5e7 cells/kg: above dose50_bolus and dose50_ibmir
    regs = [cp.Regimen([cp.Dose(0.0, amount, route=r)]) for r in spec.routes]
    covs = {"viability": 0.8, "thawed": 1.0, "tissue_factor": 1.0, "cd49d_block": 0.5}
    covs = {k: np.full(len(regs), v) for k, v in covs.items()}
    t = TIMES[1:]
    res = cp.simulate(spec, regs, t, covariates=covs,
                      outputs=["cells_accounted", "label_accounted", "lung"])  # fmt: skip
    np.testing.assert_allclose(res["cells_accounted"].values, amount, rtol=1e-9)
    i = list(spec.routes).index("iv_labelled")
    np.testing.assert_allclose(res["label_accounted"].values[i], amount, rtol=1e-9)
    assert res["lung"].values[list(spec.routes).index("iv"), 0] > 0.5 * 0.8 * amount


@pytest.mark.parametrize("species", SPECIES)
def test_organ_artery_and_portal_routes_put_more_cells_in_that_organ(specs, species) -> None:
    """Injection into an organ's artery (or the portal vein for the liver) passes that organ
    first: more cells there than after IV, where the lung takes almost all of them first."""
    spec = specs[species]
    venous = sim(spec, iv("venous"))
    for cmt, organ in (
        ("artery_kidney", "kidney"),
        ("artery_heart", "heart"),
        ("artery_target", "target"),
        ("portal", "liver"),
    ):
        res = sim(spec, iv(cmt))
        ratio = res[f"live_{organ}"].values[0, I1H] / venous[f"live_{organ}"].values[0, I1H]
        assert ratio > 5.0, (cmt, ratio)
        # the organ arrests E of the cells on the first pass: just after the 1-min injection
        # it holds ~E of the viable dose (a little more from cells coming round again)
        if organ == "target":  # E_target: E_rest + (E_target_max - E_rest) * hill(1, infl50, n)
            v = {n: spec.parameters[n].value for n in ("E_rest", "E_target_max", "infl50")}
            hill = 1.0 / (1.0 + v["infl50"] ** spec.parameters["n_infl"].value)
            e = v["E_rest"] + (v["E_target_max"] - v["E_rest"]) * hill
        else:
            e = spec.parameters[f"E_{organ}"].value
        frac = res[f"frac_{organ}"].values[0, I5MIN] / 0.9  # viability 0.9 (default)
        assert e * 0.8 < frac < e * 1.5 + 0.05, (cmt, frac, e)


def test_intramuscular_depot_keeps_cells_local(specs) -> None:
    spec = specs["mouse"]
    im, venous = sim(spec, iv("muscle")), sim(spec, iv("venous"))
    live = im["live_muscle"].values[0]
    # local death (k_death_depot) with little release: after 24 h most viable cells are still
    # in the depot, decaying at the depot's death + release rate
    k = spec.parameters["k_death_depot"].value + spec.parameters["k_release_depot"].value
    np.testing.assert_allclose(live[I24H] / live[I5MIN], math.exp(-k * (24 - 5 / 60)), rtol=1e-3)
    assert im["viable_total"].values[0, I24H] < 1.01 * live[I24H] + 0.01 * N
    # little systemic spread: the lung sees a small fraction of what it sees after IV
    assert auc(im, "dna_lung") < 0.2 * auc(venous, "dna_lung")
    assert im["dna_muscle_per_mg"].values[0, I1H] > spec.parameters["LLOQ_alu"].value


@pytest.mark.parametrize("species", ["mouse", "human"])
def test_lower_viability_and_thawing_lower_viable_exposure(specs, species: str) -> None:
    spec = specs[species]
    fresh = auc(sim(spec, viability=0.9), "viable_total")
    lower = auc(sim(spec, viability=0.5), "viable_total")
    thawed = auc(sim(spec, viability=0.9, thawed=1.0), "viable_total")
    # the viable dose is viability x N and the model is linear: exposure scales exactly
    assert lower / fresh == pytest.approx(0.5 / 0.9, rel=1e-9)
    # a thawed product loses f_thaw_loss of its viable cells on first contact with blood
    loss = spec.parameters["f_thaw_loss"].value
    assert thawed / fresh == pytest.approx(1.0 - loss, rel=1e-9)


def test_more_inflammation_raises_homing_to_the_target(specs) -> None:
    runs = [sim(specs["mouse"], inflammation=x) for x in (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)]
    for name in ("viable_target", "alu_target"):
        assert np.all(np.diff([auc(r, name) for r in runs]) > 0), name
    assert np.all(np.diff([r["frac_target"].values.max() for r in runs]) > 0)


# ------------------------------------------------------------------ species
def test_species_differ_only_through_physiology(specs) -> None:
    mouse, human = specs["mouse"], specs["human"]
    own = [n for n in mouse.parameters if n not in mouse.physiology]
    assert own == [n for n in human.parameters if n not in human.physiology]
    assert all(mouse.parameters[n] == human.parameters[n] for n in own)
    assert mouse.covariates == human.covariates and mouse.flows == human.flows
    # the mouse model given the human physiology values is the human model
    human_physiology = {n: human.parameters[n].value for n in human.physiology}
    as_human = cp.simulate(mouse, iv(), TIMES, params=human_physiology)
    res_h, res_m = sim(human), sim(mouse)
    for name in ("frac_lung", "viable_total", "cells_accounted", "alu_liver"):
        np.testing.assert_allclose(as_human[name].values, res_h[name].values, rtol=1e-12)
    # and the time courses differ between the species
    lung_m, lung_h = res_m["frac_lung"].values[0], res_h["frac_lung"].values[0]
    assert abs(lung_h[I24H] - lung_m[I24H]) > 0.1
    # loading the same species again gives identical results
    again = sim(cp.load_model("msc_pbk", species="mouse"))
    for name in res_m.data_vars:
        np.testing.assert_array_equal(again[name].values, res_m[name].values)


# ------------------------------------------------------------------ gradients
def test_gradient_with_respect_to_every_parameter_is_finite(specs) -> None:
    spec = specs["mouse"]
    times = np.array([0.25, 4.0, 24.0, 72.0])
    simulator = cp.Simulator(spec, times, outputs=("alu_lung", "frac_target"))
    doses = simulator.doses(iv(duration=0.1))
    p0 = {n: jnp.asarray(p.value) for n, p in spec.parameters.items()}

    @jax.jit
    def f(p):
        out = simulator(p, doses)
        return jnp.sum(jnp.log(out["alu_lung"])) + 1e3 * jnp.sum(out["frac_target"])

    grad = jax.jit(jax.grad(f))(p0)
    assert set(grad) == set(spec.parameters)
    for name, g in grad.items():
        assert np.isfinite(float(g)), name
    # spot-check one against central differences (exact path: round-off only)
    # (f ~ 80 through the 55-state matrix exponential carries ~1e-12 relative round-off; over
    # h = 1e-4 that is ~1e-5 of this gradient: measured 1.5e-5, hence rel=5e-5)
    h = 1e-4
    up, down = ({**p0, "d50_lung": p0["d50_lung"] + s} for s in (h, -h))
    fd = (float(f(up)) - float(f(down))) / (2 * h)
    assert float(grad["d50_lung"]) == pytest.approx(fd, rel=5e-5)
    assert float(grad["k_death_lung"]) < 0  # faster death, less human DNA in the lung
