"""Tests of cellpkpd.spec.physiology: the species tables (completeness, units, mass and flow
balance, cross-species ordering and allometry), allometric scaling, error messages, and
the ``[physiology]`` block of a model file filled from the tables."""

from __future__ import annotations

import math

import pytest

import cellpkpd as cp
from cellpkpd import physiology as ph
from cellpkpd._core.errors import SpecError
from cellpkpd.spec.model import ModelSpec

SPECIES = ("mouse", "rat", "human")
ORGANS = ("lung", "heart", "liver", "spleen", "kidney", "brain", "bone_marrow", "muscle", "rest")
# the naming scheme model files are written against (a contract; spelled out, not imported)
SCHEME = (
    "body_weight",
    "cardiac_output",
    *(f"volume_{o}" for o in ORGANS),
    *(f"flow_{o}" for o in ORGANS),
    "volume_blood",
    "volume_arterial_blood",
    "volume_venous_blood",
    "hematocrit",
)


def unit_of(quantity: str) -> str:
    if quantity == "body_weight":
        return "kg"
    if quantity == "hematocrit":
        return "1"
    if quantity == "cardiac_output" or quantity.startswith("flow_"):
        return "L/h"
    assert quantity.startswith("volume_")
    return "L"


def value(species: str, quantity: str) -> float:
    return ph.lookup(species, quantity).value


def present(species: str, kind: str) -> list[str]:
    """Organs of the scheme with a tabulated ``<kind>_<organ>`` for the species."""
    return [o for o in ORGANS if f"{kind}_{o}" in ph.quantities(species)]


# ------------------------------------------------------------------ completeness
def test_species_and_scheme():
    assert ph.list_species() == list(SPECIES)
    assert ph.QUANTITIES == SCHEME
    assert ph.ORGANS == ORGANS


@pytest.mark.parametrize("species", SPECIES)
def test_every_quantity_present_or_a_documented_gap(species):
    have = set(ph.quantities(species))
    gaps = set(ph.GAPS[species])
    assert have | gaps == set(SCHEME), "every quantity is either tabulated or a named gap"
    assert not have & gaps
    assert ph.quantities(species) == [q for q in SCHEME if q in have], "scheme order"
    for q in gaps:  # a gap says why in one line
        assert ph.GAPS[species][q] and "\n" not in ph.GAPS[species][q]


def test_gaps_are_only_the_known_ones():
    # whole-table quantities and the organs that the MSC models need most are never gaps
    always = {
        "body_weight",
        "cardiac_output",
        "hematocrit",
        "volume_blood",
        "volume_arterial_blood",
        "volume_venous_blood",
        "volume_rest",
        "flow_rest",
        *(f"{k}_{o}" for k in ("volume", "flow") for o in ("lung", "liver", "spleen")),
        *(f"{k}_{o}" for k in ("volume", "flow") for o in ("heart", "kidney", "brain")),
    }
    for s in SPECIES:
        assert not always & set(ph.GAPS[s]), s
    assert ph.GAPS["human"] == {}


@pytest.mark.parametrize("species", SPECIES)
def test_units_and_sources(species):
    for q in ph.quantities(species):
        v, unit, source = ph.lookup(species, q)
        assert unit == unit_of(q), q
        assert isinstance(v, float) and math.isfinite(v) and v > 0, q
        assert source and "\n" not in source, q


@pytest.mark.parametrize("species", SPECIES)
def test_derived_values_say_so(species):
    # fractions of body weight / cardiac output name their table and the multiplication
    for q in ph.quantities(species):
        src = ph.lookup(species, q).source
        if q.startswith("volume_") and q not in ("volume_rest",):
            assert "kg" in src, (q, src)
        if q.startswith("flow_") and q not in ("flow_lung", "flow_rest"):
            assert "% CO" in src and "cardiac output" in src, (q, src)
    assert "remainder" in ph.lookup(species, "volume_rest").source
    assert "remainder" in ph.lookup(species, "flow_rest").source
    for gap_organ in (q.split("_", 1)[1] for q in ph.GAPS[species] if q.startswith("volume_")):
        assert gap_organ in ph.lookup(species, "volume_rest").source


def test_named_values_match_their_tables():
    # spot checks against the cited numbers, by hand
    assert value("mouse", "body_weight") == 0.025
    assert value("rat", "body_weight") == 0.25
    assert value("human", "body_weight") == 70.0
    # Brown 1997 Table 22: QCC 16.5 (mouse) and 14.0 (rat) L/h/kg^0.75; ICRP 89: 6.5 L/min
    assert value("mouse", "cardiac_output") == pytest.approx(16.5 * 0.025**0.75, rel=1e-12)
    assert value("rat", "cardiac_output") == pytest.approx(14.0 * 0.25**0.75, rel=1e-12)
    assert value("human", "cardiac_output") == pytest.approx(390.0, rel=1e-12)
    # Brown 1997 Table 21: mouse liver 5.5% BW, human liver 2.57% BW
    assert value("mouse", "volume_liver") == pytest.approx(0.055 * 0.025, rel=1e-12)
    assert value("human", "volume_liver") == pytest.approx(0.0257 * 70.0, rel=1e-12)
    # Brown 1997 Tables 21 and 23: rat muscle 40.43% BW and 27.8% CO
    assert value("rat", "volume_muscle") == pytest.approx(0.4043 * 0.25, rel=1e-12)
    assert value("rat", "flow_muscle") == pytest.approx(
        0.278 * value("rat", "cardiac_output"), rel=1e-12
    )
    # Brown 1997 Table 23: mouse kidney 9.1% CO
    assert value("mouse", "flow_kidney") == pytest.approx(
        0.091 * value("mouse", "cardiac_output"), rel=1e-12
    )
    # liver + spleen = total liver flow (Brown 1997 Table 23: mouse 16.1%, rat 18.3%;
    # ICRP 89: human 25.5%)
    for s, total in (("mouse", 0.161), ("rat", 0.183), ("human", 0.255)):
        got = (value(s, "flow_liver") + value(s, "flow_spleen")) / value(s, "cardiac_output")
        assert got == pytest.approx(total, rel=1e-12), s


# ------------------------------------------------------------------ balances
@pytest.mark.parametrize("species", SPECIES)
def test_volumes_plus_blood_sum_to_body_weight(species):
    total = sum(value(species, f"volume_{o}") for o in present(species, "volume"))
    total += value(species, "volume_blood")
    # exact by construction of volume_rest; 1% is the tolerance the contract promises
    assert total == pytest.approx(value(species, "body_weight"), rel=0.01)
    assert total == pytest.approx(value(species, "body_weight"), rel=1e-12)


@pytest.mark.parametrize("species", SPECIES)
def test_organ_flows_sum_to_cardiac_output(species):
    organs = [o for o in present(species, "flow") if o != "lung"]
    total = sum(value(species, f"flow_{o}") for o in organs)
    assert total == pytest.approx(value(species, "cardiac_output"), rel=1e-12)
    assert value(species, "flow_lung") == value(species, "cardiac_output")


@pytest.mark.parametrize("species", SPECIES)
def test_blood_split(species):
    blood = value(species, "volume_blood")
    art, ven = value(species, "volume_arterial_blood"), value(species, "volume_venous_blood")
    assert art + ven == pytest.approx(blood, rel=1e-12)
    assert art == pytest.approx(blood / 3.0, rel=1e-12)
    assert "Bernareggi" in ph.lookup(species, "volume_arterial_blood").source


@pytest.mark.parametrize("species", SPECIES)
def test_physiologically_sane(species):
    bw = value(species, "body_weight")
    co = value(species, "cardiac_output")
    assert 0.3 < value(species, "hematocrit") < 0.6
    assert 0.04 < value(species, "volume_blood") / bw < 0.1
    assert value(species, "volume_rest") > 0 and value(species, "flow_rest") > 0
    for o in ORGANS:  # no single organ (but the lung) takes more than half of the output
        if f"flow_{o}" in ph.quantities(species) and o not in ("lung", "rest"):
            assert value(species, f"flow_{o}") < 0.5 * co, o


# ------------------------------------------------------------------ across species
def test_body_weight_and_cardiac_output_order():
    for q in ("body_weight", "cardiac_output", "volume_blood", "volume_liver"):
        m, r, h = (value(s, q) for s in SPECIES)
        assert m < r < h, q


def test_cardiac_output_allometric_from_human():
    # CO ~ BW^0.75 across mammals: each species within a factor 2 of the prediction from man
    co_h, bw_h = value("human", "cardiac_output"), value("human", "body_weight")
    for s in ("mouse", "rat"):
        predicted = ph.allometric(co_h, value(s, "body_weight"), bw_h, 0.75)
        assert 0.5 < value(s, "cardiac_output") / predicted < 2.0, s
    # and the rodents' cardiac output per BW is higher than man's (it scales with BW^-0.25)
    per_kg = {s: value(s, "cardiac_output") / value(s, "body_weight") for s in SPECIES}
    assert per_kg["mouse"] > per_kg["rat"] > per_kg["human"]


# ------------------------------------------------------------------ allometry
def test_allometric_hand_computed():
    # 10 L/h in a 70 kg man -> a 0.025 kg mouse: 10 * (0.025/70)^0.75 = 0.0259795...
    assert ph.allometric(10.0, 0.025) == pytest.approx(10.0 * (0.025 / 70.0) ** 0.75, rel=1e-15)
    assert ph.allometric(10.0, 0.025) == pytest.approx(0.0259795, rel=1e-5)
    # a rate: 1/h -> (1/2800)^-0.25 = 2800^0.25 = 7.2742 /h
    assert ph.allometric(1.0, 0.025, 70.0, -0.25) == pytest.approx(2800.0**0.25, rel=1e-15)
    assert ph.allometric(1.0, 0.025, 70.0, -0.25) == pytest.approx(7.27427, rel=1e-5)
    # identities: same weight, exponent 0, exponent 1 (volumes are proportional)
    assert ph.allometric(3.5, 70.0) == 3.5
    assert ph.allometric(3.5, 0.25, 70.0, 0.0) == 3.5
    assert ph.allometric(7.0, 35.0, 70.0, 1.0) == pytest.approx(3.5, rel=1e-15)
    assert ph.allometric(2.0, 16.0, 1.0, 0.25) == pytest.approx(4.0, rel=1e-15)
    assert ph.allometric(0.0, 1.0) == 0.0
    assert ph.allometric(-1.0, 70.0) == -1.0  # a signed value (e.g. a log) scales too


def test_scale_to_uses_table_body_weights():
    assert ph.scale_to("mouse", 0.1) == pytest.approx(0.1 * (0.025 / 70.0) ** -0.25, rel=1e-15)
    assert ph.scale_to("human", 0.1) == pytest.approx(0.1, rel=1e-15)
    assert ph.scale_to("rat", 2.0, from_species="mouse", exponent=1.0) == pytest.approx(20.0)
    # round trip
    x = ph.scale_to("mouse", 0.3, from_species="rat", exponent=0.75)
    assert ph.scale_to("rat", x, from_species="mouse", exponent=0.75) == pytest.approx(0.3)
    assert "-0.25" in ph.allometric.__doc__ and "1/time" in ph.allometric.__doc__


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((1.0, -0.025), r"^allometric: body_weight = -0\.025 \[kg\] must be > 0$"),
        ((1.0, 0.0), r"body_weight = 0\.0 \[kg\] must be > 0"),
        ((1.0, math.nan), r"body_weight = nan \[kg\] must be > 0"),
        ((1.0, math.inf), r"body_weight = inf \[kg\] must be > 0"),
        ((1.0, "heavy"), r"body_weight = 'heavy' \[kg\] must be a number"),
        ((1.0, True), r"body_weight = True \[kg\] must be a number"),
        ((1.0, 1.0, 0.0), r"reference_weight = 0\.0 \[kg\] must be > 0"),
        ((1.0, 1.0, -70.0), r"reference_weight = -70\.0 \[kg\] must be > 0"),
        ((math.nan, 1.0), r"value = nan must be a finite number"),
        (("1", 1.0), r"value = '1' must be a finite number"),
        ((1.0, 1.0, 70.0, math.inf), r"exponent = inf must be finite"),
        ((1.0, 1.0, 70.0, None), r"exponent = None must be a number"),
    ],
)
def test_allometric_bad_numbers(args, match):
    with pytest.raises(SpecError, match=match):
        ph.allometric(*args)


# ------------------------------------------------------------------ errors
def test_unknown_species_lists_known():
    with pytest.raises(
        SpecError, match=r"^physiology: unknown species 'dog'; known: mouse, rat, human$"
    ):
        ph.lookup("dog", "cardiac_output")
    with pytest.raises(SpecError, match=r"^here: unknown species 'pig'; known: mouse, rat, human$"):
        ph.lookup("pig", "body_weight", where="here")
    for bad in (None, 3, ""):
        with pytest.raises(SpecError, match="unknown species"):
            ph.lookup(bad, "body_weight")
    with pytest.raises(SpecError, match="unknown species 'dog'; known: mouse, rat, human"):
        ph.quantities("dog")
    with pytest.raises(SpecError, match="unknown species 'dog'"):
        ph.table("dog")
    with pytest.raises(SpecError, match="unknown species 'cat'"):
        ph.scale_to("cat", 1.0)
    with pytest.raises(SpecError, match="unknown species 'cat'"):
        ph.scale_to("mouse", 1.0, from_species="cat")


def test_species_names_are_case_insensitive():
    assert ph.lookup("Mouse", "body_weight") == ph.lookup("mouse", "body_weight")
    assert ph.lookup(" HUMAN ", "hematocrit").value == value("human", "hematocrit")


def test_unknown_quantity_lists_known():
    with pytest.raises(SpecError) as info:
        ph.lookup("mouse", "volume_pancreas", where="m.toml: physiology.V_p")
    msg = str(info.value)
    assert msg.startswith("m.toml: physiology.V_p: unknown quantity 'volume_pancreas' for mouse;")
    assert "\n" not in msg
    assert "known: body_weight, cardiac_output, volume_lung" in msg
    assert all(q in msg for q in ph.quantities("mouse"))


def test_gap_quantity_says_why():
    with pytest.raises(SpecError) as info:
        ph.lookup("mouse", "volume_bone_marrow")
    msg = str(info.value)
    assert msg.startswith("physiology: no sourced value of 'volume_bone_marrow' for mouse (")
    assert "available: body_weight," in msg and "\n" not in msg
    # the human and rat tables have it
    assert value("human", "volume_bone_marrow") == pytest.approx(1.170 / 73.0 * 70.0)
    assert value("rat", "volume_bone_marrow") == pytest.approx(0.03 * 0.25)


def test_lookup_returns_value_unit_source():
    q = ph.lookup("rat", "hematocrit")
    v, unit, source = q
    assert (v, unit) == (0.46, "1")
    assert "Davies" in source
    assert (q.value, q.unit, q.source) == (v, unit, source)
    assert ph.TABLES["rat"]["hematocrit"] == q


# ------------------------------------------------------------------ table()
def test_table_shape():
    df = ph.table()
    assert list(df.columns) == ["species", "quantity", "value", "unit", "source"]
    assert len(df) == sum(len(ph.quantities(s)) for s in SPECIES)
    assert set(df["species"]) == set(SPECIES)
    assert not df.duplicated(["species", "quantity"]).any()
    assert (df["value"] > 0).all()
    one = ph.table("rat")
    assert one.shape == (len(ph.quantities("rat")), 5)
    assert set(one["species"]) == {"rat"}
    row = one.set_index("quantity").loc["cardiac_output"]
    assert row["value"] == value("rat", "cardiac_output") and row["unit"] == "L/h"
    assert len(ph.table("human")) == len(SCHEME)


# ------------------------------------------------------------------ model files
def _model(**model_extra) -> dict:
    return {
        "model": {"name": "lung_first_pass", "time_unit": "h", "amount_unit": "cells"}
        | model_extra,
        "physiology": {
            "QC": "cardiac_output",
            "V_lung": "volume_lung",
            "V_ven": "volume_venous_blood",
        },
        "parameters": {"k_trap": {"value": 0.5, "unit": "1/h"}},
        "states": {"venous": {"initial": 0.0}, "lung": {"initial": 0.0}},
        "flows": {"venous -> lung": "QC / V_ven", "lung -> venous": "k_trap"},
    }


@pytest.mark.parametrize("species", SPECIES)
def test_model_physiology_block_filled_from_table(species):
    spec = ModelSpec.from_dict(_model(), source="lung.toml", species=species)
    assert spec.species == species
    for name, quantity in (("QC", "cardiac_output"), ("V_lung", "volume_lung")):
        p = spec.parameters[name]
        ref = ph.lookup(species, quantity)
        assert (p.value, p.unit, p.source) == (ref.value, ref.unit, ref.source)
        assert quantity in p.description and species in p.description
    assert spec.parameters["k_trap"].value == 0.5
    assert spec.physiology["V_ven"] == "volume_venous_blood"


def test_model_species_from_model_block():
    spec = ModelSpec.from_dict(_model(species="rat"))
    assert spec.parameters["QC"].value == value("rat", "cardiac_output")
    # the argument wins over the file
    spec = ModelSpec.from_dict(_model(species="rat"), species="human")
    assert spec.parameters["QC"].value == value("human", "cardiac_output")


def test_model_without_species_is_an_error():
    with pytest.raises(SpecError, match=r"^lung\.toml: \[physiology\]: .*give species="):
        ModelSpec.from_dict(_model(), source="lung.toml")


def test_model_unknown_species_or_quantity():
    with pytest.raises(
        SpecError,
        match=r"^lung\.toml: physiology\.QC: unknown species 'dog'; known: mouse, rat, human$",
    ):
        ModelSpec.from_dict(_model(), source="lung.toml", species="dog")
    data = _model()
    data["physiology"]["V_gut"] = "volume_gut"
    with pytest.raises(
        SpecError, match=r"^lung\.toml: physiology\.V_gut: unknown quantity 'volume_gut' for mouse"
    ):
        ModelSpec.from_dict(data, source="lung.toml", species="mouse")


def test_load_model_file_with_species(tmp_path):
    path = tmp_path / "lung.toml"
    path.write_text(
        '[model]\nname = "lung"\ntime_unit = "h"\namount_unit = "cells"\n\n'
        '[physiology]\nQC = "cardiac_output"\nV_lung = "volume_lung"\n\n'
        '[states]\nlung = { initial = 0.0 }\n\n[flows]\n"lung ->" = "QC / V_lung"\n',
        encoding="utf-8",
    )
    spec = cp.load_model(path, species="mouse")
    assert spec.parameters["V_lung"].value == value("mouse", "volume_lung")
    assert spec.parameters["QC"].unit == "L/h"


def test_docstring_examples():
    import doctest

    result = doctest.testmod(ph)
    assert result.attempted >= 2 and result.failed == 0
