"""Units of model files: parsing with pint and the load-time dimension checks."""

from __future__ import annotations

import copy
import re
import tomllib
from typing import Any

import numpy as np
import pytest

import cellpkpd as cp
from cellpkpd.spec.model import models_dir
from cellpkpd.spec.units import format_unit, parse_unit, registry, time_factor

MODELS = models_dir()


def _library(name: str) -> dict[str, Any]:
    with (MODELS / f"{name}.toml").open("rb") as fh:
        return tomllib.load(fh)


def _load(data: dict[str, Any], source: str = "m.toml") -> cp.ModelSpec:
    return cp.ModelSpec.from_dict(data, source=source)


def _raises(data: dict[str, Any], message: str, source: str = "m.toml") -> None:
    with pytest.raises(cp.SpecError, match="^" + re.escape(message)):
        _load(data, source)


def _small(**blocks: Any) -> dict[str, Any]:
    """One compartment in mg and h, with units on everything; `blocks` replace blocks."""
    data = {
        "model": {"name": "small", "time_unit": "h", "amount_unit": "mg"},
        "parameters": {
            "CL": {"value": 2.0, "unit": "L/h"},
            "V": {"value": 10.0, "unit": "L"},
            "ka": {"value": 1.0, "unit": "1/h"},
            "tlag": {"value": 0.5, "unit": "h"},
        },
        "states": {"depot": {"unit": "mg"}, "central": {"unit": "mg"}},
        "flows": {"depot -> central": "ka", "central ->": "CL / V"},
        "observations": {"conc": {"expr": "central / V", "unit": "mg/L"}},
    }
    data.update(copy.deepcopy(blocks))
    return data


# ---------------------------------------------------------------------- registry
@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("cells", "cells"),
        ("cell", "cells"),
        ("copies/ug", "copies/ug"),
        ("copies/µg", "copies/ug"),
        ("AU/(cell*h)", "AU/(cells*h)"),
        ("L/h", "L/h"),
        ("mL/min", "mL/min"),
        ("1/day", "1/d"),
        ("1", "1"),
        ("%", "%"),
        ("GE/ug", "GE/ug"),
        ("IU/mL", "IU/mL"),
    ],
)
def test_unit_strings_of_cell_therapy_models_parse(text: str, shown: str) -> None:
    assert format_unit(parse_unit(text, "here")) == shown


def test_cells_copies_and_au_are_their_own_dimensions() -> None:
    cells, copies, au = (parse_unit(u, "here") for u in ("cells", "copies", "AU"))
    dims = {str(u.dimensionality) for u in (cells, copies, au)}
    assert len(dims) == 3 and not any(u.dimensionless for u in (cells, copies, au))
    # copies per cell times cells is copies, exactly
    assert parse_unit("copies/cell", "here") * cells == copies


def test_time_factor_converts_between_time_units() -> None:
    # exact calendar factors
    assert time_factor("d", "h", "here") == 24.0
    assert time_factor("week", "d", "here") == 7.0
    assert time_factor("min", "h", "here") == pytest.approx(1 / 60, rel=1e-15)


def test_empty_unit_is_undeclared() -> None:
    assert parse_unit("", "here") is None and parse_unit("  ", "here") is None


@pytest.mark.parametrize(
    ("text", "why"), [("furlongz", "not defined"), ("2 mg", "a quantity"), ("3", "a number")]
)
def test_a_string_that_is_not_a_unit_is_an_error(text: str, why: str) -> None:
    with pytest.raises(cp.SpecError, match=rf"^here: unknown unit '{text}' \(.*{why}"):
        parse_unit(text, "here")


def test_one_registry_for_the_package() -> None:
    assert registry() is registry()


# ---------------------------------------------------------------------- library
@pytest.mark.parametrize("name", sorted(cp.list_models()))
def test_every_library_model_passes_the_unit_checks(name: str) -> None:
    spec = cp.load_model(name)
    assert spec.time_unit and spec.amount_unit


def test_msc_pbk_alu_observations_are_checked_through_the_unit_of_mg_per_L() -> None:
    # mg_per_L declares its unit, so alu_* (copies/cell * cells / (L * mg/L)) is checked:
    # a wrong declared unit of mg_per_L is caught in the observations
    data = _library("msc_pbk")
    assert cp.load_model("msc_pbk").derived_units["mg_per_L"] == "mg/L"
    data["derived"]["mg_per_L"] = {"expr": "1e6", "unit": "mg/mL"}
    _raises(
        data,
        "msc_pbk.toml: observations.alu_blood.expr: the expression has unit copies*mL/(L*mg), "
        "expected copies/mg (the same dimension, but 1 copies*mL/(L*mg) = 0.001 copies/mg; "
        "units are not converted)",
        "msc_pbk.toml",
    )


def test_msc_pbk_flow_rate_in_l_per_h_is_an_error_naming_file_key_and_units() -> None:
    data = _library("msc_pbk")
    data["flows"]["venous -> lung"] = "E_lung * cardiac_output"
    _raises(
        data,
        "msc_pbk.toml: flows.'venous -> lung': rate has unit L/h, expected 1/h",
        "msc_pbk.toml",
    )


def test_cart_ck_breakpoint_in_hours_in_a_day_model_is_an_error() -> None:
    data = _library("cart_ck")
    data["parameters"]["Tmax"]["unit"] = "h"
    _raises(
        data,
        "m.toml: model.breakpoints.peak: the time has unit h, expected d (the same dimension, "
        "but 1 h = 0.0416667 d; units are not converted: give rates and times in the model's "
        "time unit, day)",
    )


# ---------------------------------------------------------------------- checks
def test_small_model_with_consistent_units_loads() -> None:
    spec = _load(_small(dosing={"depot": {"lag": "tlag", "bioavailability": "1"}}))
    assert spec.flows[1].rate.source == "CL / V"


def test_rate_constant_in_another_time_unit_is_rejected_not_read_as_per_hour() -> None:
    data = _small()
    data["parameters"]["ka"] = {"value": 24.0, "unit": "1/d"}
    _raises(
        data,
        "m.toml: flows.'depot -> central': rate has unit 1/d, expected 1/h (the same dimension, "
        "but 1 1/d = 0.0416667 1/h; units are not converted: give rates and times in the "
        "model's time unit, h)",
    )
    # the same model in days loads
    data["model"]["time_unit"] = "d"
    data["parameters"]["CL"]["unit"] = "L/d"
    data["parameters"]["tlag"]["unit"] = "d"
    assert _load(data).time_unit == "d"


def test_a_derived_quantity_with_a_unit_gives_a_number_its_unit() -> None:
    # ka in 1/d converted by hand: checked through the declared unit of the derived quantity
    data = _small(derived={"ka_h": {"expr": "ka / 24", "unit": "1/h"}})
    data["parameters"]["ka"] = {"value": 24.0, "unit": "1/d"}
    data["flows"]["depot -> central"] = "ka_h"
    assert _load(data).derived_units == {"ka_h": "1/h"}
    # without the number the declared unit is checked against the expression
    data["derived"]["ka_h"] = {"expr": "ka", "unit": "1/h"}
    _raises(data, "m.toml: derived.ka_h: the expression has unit 1/d, expected 1/h")
    data["derived"]["ka_h"] = {"expr": "ka", "unit": "L"}
    _raises(data, "m.toml: derived.ka_h: the expression has unit 1/d, expected L")


def test_ode_term_must_be_state_unit_per_time() -> None:
    data = _small(odes={"central": "CL"})
    _raises(data, "m.toml: odes.central: the term has unit L/h, expected mg/h")
    data["odes"] = {"central": "CL * central / V"}
    assert _load(data).odes["central"].source == "CL * central / V"


def test_observation_in_another_unit_of_the_same_dimension_is_an_error() -> None:
    data = _small()
    data["observations"]["conc"]["unit"] = "ng/mL"
    _raises(
        data,
        "m.toml: observations.conc.expr: the expression has unit mg/L, expected ng/mL (the "
        "same dimension, but 1 mg/L = 1000 ng/mL; units are not converted)",
    )
    # a written conversion factor: not checked ("where every part has a unit")
    data["observations"]["conc"]["expr"] = "1e6 * central / V"
    assert _load(data).observations["conc"].unit == "ng/mL"
    data["observations"]["conc"] = {"expr": "central", "unit": "mg/L"}
    _raises(data, "m.toml: observations.conc.expr: the expression has unit mg, expected mg/L")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"lag": "V"}, "dosing.depot.lag: lag has unit L, expected h"),
        ({"duration": "ka"}, "dosing.depot.duration: duration has unit 1/h, expected h"),
        ({"rate": "CL"}, "dosing.depot.rate: rate has unit L/h, expected mg/h"),
        ({"bioavailability": "tlag"}, "dosing.depot.bioavailability: bioavailability has unit h"),
    ],
)
def test_dosing_fields_have_their_units(rule: dict, message: str) -> None:
    _raises(_small(dosing={"depot": rule}), "m.toml: " + message)


def test_dosed_state_must_be_in_the_amount_unit() -> None:
    data = _small(dosing={"depot": {"lag": "0"}})
    data["states"]["depot"]["unit"] = "ug"
    _raises(data, "m.toml: states.depot.unit: the dosed state 'depot' has unit ug, expected mg")


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("CL + V", "adds L/h and L (different dimensions) in 'CL + V'"),
        ("CL / V + ka * 1", "rate has unit"),  # "* 1" keeps the unit: checked, and fine
        ("exp(CL)", "the argument of exp() has unit L/h, expected dimensionless"),
        ("ka * exp(-t)", "the argument of exp() has unit h, expected dimensionless"),
        ("ka * (V / V) ** CL", "the exponent has unit L/h, expected dimensionless"),
        ("ka * V ** f", "a quantity in L raised to a non-constant power"),
        ("ka * hill(V, CL)", "hill() of L and L/h (different dimensions)"),
        ("ka * (t < V)", "compares h and L (different dimensions)"),
        ("max(ka, CL)", "max() of 1/h and L/h (different dimensions)"),
    ],
)
def test_expression_unit_errors(expr: str, message: str) -> None:
    data = _small(covariates={"f": {"value": 0.5, "unit": "1"}})
    data["flows"]["depot -> central"] = expr
    if message == "rate has unit":
        assert _load(data).flows[0].rate.source == expr
        return
    with pytest.raises(cp.SpecError, match=re.escape(message)):
        _load(data)


def test_same_dimension_in_different_units_cannot_be_added() -> None:
    data = _small(derived={"total": "central + dose_ug"}, covariates={})
    data["parameters"]["dose_ug"] = {"value": 1.0, "unit": "ug"}
    _raises(
        data,
        "m.toml: derived.total: adds mg and ug (the same dimension in different units: the "
        "numbers cannot be combined as they are) in 'central + dose_ug'",
    )


def test_a_name_without_a_unit_leaves_its_expressions_unchecked() -> None:
    data = _small()
    data["parameters"]["CL"] = 2.0  # no unit declared
    data["flows"]["central ->"] = "CL"  # would be L/h
    assert _load(data).parameters["CL"].unit == ""


def test_numbers_next_to_plus_take_the_other_unit() -> None:
    data = _small(covariates={"f": {"value": 0.5, "unit": "1"}})
    data["flows"]["depot -> central"] = "ka * (1 - f) + 0 * ka"
    _load(data)
    data["flows"]["depot -> central"] = "max(ka, 0.0)"
    _load(data)


@pytest.mark.parametrize("key", ["time_unit", "amount_unit"])
def test_missing_time_or_amount_unit_is_an_error(key: str) -> None:
    data = _small()
    del data["model"][key]
    _raises(data, f"m.toml: model.{key}: missing; every model declares its ")


def test_unknown_unit_string_names_the_key() -> None:
    data = _small()
    data["parameters"]["V"]["unit"] = "Lx"
    _raises(data, "m.toml: parameters.V.unit: unknown unit 'Lx' (")
    data = _small()
    data["model"]["amount_unit"] = "widgets"
    _raises(data, "m.toml: model.amount_unit: unknown unit 'widgets' (")


# ---------------------------------------------------------------------- doses with units
_CELLS = {
    "model": {"name": "cells", "time_unit": "h", "amount_unit": "cells"},
    "parameters": {"k": {"value": 0.1, "unit": "1/h"}},
    "covariates": {"body_weight": {"value": 25.0, "unit": "g"}},
    "states": {"blood": {"unit": "cells"}},
    "flows": {"blood ->": "k"},
}


@pytest.fixture(scope="module")
def cells() -> cp.ModelSpec:
    return cp.ModelSpec.from_dict(_CELLS, source="cells.toml")


@pytest.mark.parametrize(
    ("kwargs", "amount", "duration"),
    [
        ({"amount": "2e6 cells"}, 2e6, 0.0),
        ({"amount": "2 Mcells", "duration": "1 d"}, 2e6, 24.0),
        ({"amount": 2e6, "duration": "30 min"}, 2e6, 0.5),
        ({"amount": "2e6", "duration": "90"}, 2e6, 90.0),  # numbers: model units
    ],
)
def test_dose_with_units_is_converted_to_the_model_units(
    cells: cp.ModelSpec, kwargs: dict, amount: float, duration: float
) -> None:
    dose = cp.Dose(0.0, cmt="blood", **kwargs).resolve(cells)
    # exact conversions (powers of ten, 24 h per day, 60 min per hour)
    assert dose.amount == pytest.approx(amount, rel=1e-15)
    assert dose.duration == pytest.approx(duration, rel=1e-15)
    assert dose.units == () and dose.per is None


def test_dose_rate_lag_and_ii_with_units(cells: cp.ModelSpec) -> None:
    dose = cp.Dose(0.0, "1e6 cells", "blood", rate="1e5 cells/min", lag="15 min").resolve(cells)
    assert (dose.rate, dose.lag) == pytest.approx((6e6, 0.25), rel=1e-15)
    dose = cp.Dose(0.0, 1e6, "blood", ss=1, ii="1 d").resolve(cells)
    assert dose.ii == 24.0


def test_to_arrays_converts_units_with_the_model(cells: cp.ModelSpec) -> None:
    reg = cp.Regimen([cp.Dose(0.0, "2e6 cells", "blood", duration="1 d")])
    arrays = reg.to_arrays(spec=cells)
    assert float(arrays.duration[0]) == 24.0 and float(arrays.amount[0]) == 2e6
    with pytest.raises(cp.DosingError, match=r"need the model \(spec=\) to convert them"):
        reg.to_arrays()


def test_per_kg_dose_takes_each_subjects_body_weight(cells: cp.ModelSpec) -> None:
    # 2e6 cells/kg x 20, 25, 30 g = 4e4, 5e4, 6e4 cells; bolus then exp(-0.1 t)
    for dose in (
        cp.Dose(0.0, "2e6 cells/kg", "blood"),
        cp.Dose(0.0, "2e6/kg", "blood"),
        cp.Dose(0.0, 2e6, "blood", per="kg"),
        cp.Dose(0.0, "2 Mcells", "blood", per="kg"),
    ):
        res = cp.simulate(
            cells, cp.Regimen([dose]), [0.0, 1.0], covariates={"body_weight": [20, 25, 30]}
        )
        given = np.array([4e4, 5e4, 6e4])
        np.testing.assert_allclose(res["amount_given"].values, given, rtol=1e-14)
        assert res["amount_given"].attrs["unit"] == "cells"
        # closed form of the bolus, exact solver: 1e-12
        np.testing.assert_allclose(
            res["blood"].values, given[:, None] * np.exp(-0.1 * np.array([0.0, 1.0])), rtol=1e-12
        )


def test_msc_pbk_per_kg_dose_uses_the_physiology_body_weight() -> None:
    spec = cp.load_model("msc_pbk")  # mouse
    bw = spec.parameters["body_weight"].value
    dose = cp.Dose(0.0, "2e6 cells/kg", "venous")
    assert dose.per_body_weight(spec)
    assert dose.resolve(spec, bw).amount == pytest.approx(2e6 * bw, rel=1e-15)
    # what cp.simulate takes for each subject: the [physiology] body weight, or a given one
    from cellpkpd.engine.simulator import _body_weight_kg, full_params

    p = full_params(spec, {"body_weight": [bw, 0.03]}, 2)
    np.testing.assert_array_equal(_body_weight_kg(spec, p, 2), [bw, 0.03])


def test_dose_amount_in_another_amount_unit_converts() -> None:
    spec = cp.load_model("one_cmt_iv")  # mg
    assert cp.Dose(0.0, "500 ug", "central").resolve(spec).amount == pytest.approx(0.5, 1e-15)
    assert cp.Dose(0.0, "5 mg/kg", "central").resolve(spec, 70.0).amount == pytest.approx(350.0)


def test_cli_simulate_takes_doses_and_durations_with_units(capsys, tmp_path) -> None:
    from cellpkpd.cli.main import main

    model = tmp_path / "cells.toml"
    model.write_text(
        '[model]\nname = "cells"\ntime_unit = "h"\namount_unit = "cells"\n'
        '[parameters]\nk = { value = 0.1, unit = "1/h" }\n'
        '[covariates]\nbody_weight = { value = 25.0, unit = "g" }\n'
        '[states]\nblood = { initial = 0.0, unit = "cells" }\n[flows]\n"blood ->" = "k"\n'
    )
    code = main(["simulate", str(model), "--dose", "2e6 cells/kg", "--duration", "1 d",
                 "--end", "24", "--step", "24", "--output", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2e+06 cells/kg into blood (24-h infusion)" in out
    import pandas as pd

    tab = pd.read_csv(next(tmp_path.glob("*.csv")))
    # 5e4 cells over 24 h at k = 0.1/h: R/k (1 - exp(-2.4)), R = 5e4/24; closed form 1e-9
    expected = 5e4 / 24 / 0.1 * (1 - np.exp(-2.4))
    assert tab["blood"].iloc[-1] == pytest.approx(expected, rel=1e-9)


def test_describe_shows_the_declared_unit_of_a_derived_quantity() -> None:
    text = cp.describe("msc_pbk")
    assert re.search(r"\| mg_per_L +\| 1e6 +\| mg/L +\|", text)


@pytest.mark.parametrize("text", ["4e7/kg", "2e6 / kg", " 1.5e+6/kg ", ".5/kg", "3/kg", "-2E-3/kg"])
def test_a_number_per_kg_reads_as_pint_reads_it(text: str) -> None:
    """``"2e6/kg"`` is read without pint (a CLI run with ``--dose 4e7/kg`` skips importing
    pint and building its registry, ~0.3 s): the same number and unit string as pint's."""
    from cellpkpd.spec.units import split_quantity

    q = registry().parse_expression(text.strip())
    assert split_quantity(text) == (float(q.magnitude), str(q.units))


@pytest.mark.parametrize("name", ["msc_pbk", "msc_pkpd_host", "cart_ck", "two_cmt_iv"])
def test_per_kg_factor_without_pint_is_pints_answer(name: str, monkeypatch) -> None:
    """The factor and the per-kg flag of ``1 / kilogram`` for each library model's amount
    unit, read without pint, equal pint's (`per_kg_factor` with the shortcut disabled)."""
    from cellpkpd.spec import units

    spec = cp.load_model(name)
    fast = units.per_kg_factor(units.PER_KG, spec, "test")
    monkeypatch.setattr(units, "_PLAIN_AMOUNTS", frozenset())  # pint's path
    assert fast == units.per_kg_factor(units.PER_KG, spec, "test") == (1.0, True)
    # a scaled dimensionless amount unit is not factor 1: pint answers it
    pct = copy.copy(spec)
    object.__setattr__(pct, "amount_unit", "percent")
    assert units.per_kg_factor(units.PER_KG, pct, "test") == (100.0, True)


@pytest.mark.parametrize("text", ["1e6/kg2", "/kg", "\uff13/kg", "inf/kg", "2e6 cells/kg"])
def test_other_quantities_go_to_pint(text: str) -> None:
    """Only an ASCII number over ``kg`` takes the shortcut: a fullwidth digit, a unit that
    only starts with kg, a bare ``/kg`` or a unit before ``/kg`` are pint's to read (or to
    reject)."""
    from cellpkpd.spec import units

    assert units._PER_KG.fullmatch(text) is None


def test_a_broken_pint_cache_builds_the_registry_without_it(monkeypatch, tmp_path):
    """pint's cache of its definitions (in the compilation cache folder when that is on) is
    a speed-up only: a registry that fails to build from it (e.g. a half-written entry of a
    killed run) is built without it, with the same units."""
    import pint

    from cellpkpd.spec import units

    real = pint.UnitRegistry

    def fragile(*a, cache_folder=None, **kw):
        if cache_folder is not None:
            raise EOFError("Ran out of input")  # what a truncated pickle raises
        return real(*a, cache_folder=cache_folder, **kw)

    monkeypatch.setattr(pint, "UnitRegistry", fragile)
    ureg = units._new_registry(str(tmp_path / "pint"))
    assert str(ureg.parse_expression("2e6 cells/kg").units) == "cell / kilogram"
