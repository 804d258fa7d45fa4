"""Bad input: malformed model files, regimens and arguments must raise a cellpkpd error
(never a traceback from inside JAX) with one line naming the file and key, or the argument."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import check

import cellpkpd as cp
from cellpkpd.infer.data import FitData

# A valid model file; every malformed file below changes one thing in it.
BASE = """\
[model]
name = "base"
description = "one compartment with an indirect-response marker"
time_unit = "h"
amount_unit = "mg"

[parameters]
CL = { value = 2.0, unit = "L/h", bounds = [0.0, 10.0], prior = "lognormal(log(2), 1)" }
V = { value = 10.0, unit = "L" }
kin = { value = 1.0, unit = "1/h" }
kout = { value = 0.1, unit = "1/h" }

[covariates]
WT = { value = 70.0, unit = "kg" }

[states]
central = { initial = 0.0, unit = "mg" }
marker = { initial = "kin / kout", unit = "1" }

[derived]
C = "central / V"

[flows]
"central ->" = "CL / V"

[odes]
marker = "kin - kout * marker"

[observations]
conc = { expr = "C", unit = "mg/L", error = "proportional" }
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.fixture(scope="module")
def base_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("base") / "base.toml"
    path.write_text(BASE, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def iv() -> cp.ModelSpec:
    return cp.load_model("one_cmt_iv")


@pytest.fixture(scope="module")
def nonlinear() -> cp.ModelSpec:
    return cp.ModelSpec.from_dict(
        {
            "model": {"name": "mm", "time_unit": "h", "amount_unit": "mg"},
            "parameters": {"V": 10.0, "Vmax": 1.0, "Km": 1.0},
            "states": {"central": 0.0},
            "odes": {"central": "-Vmax * central / V / (Km + central / V)"},
        }
    )


@pytest.fixture(scope="module")
def bolus() -> cp.Regimen:
    return cp.Regimen([cp.Dose(time=0.0, amount=100.0, cmt="central")])


def test_base_file_is_valid(base_path: Path) -> None:
    spec = cp.load_model(base_path)
    assert spec.is_linear
    assert list(spec.states) == ["central", "marker"]


# ---------------------------------------------------------------------- model files
MODEL_FILES = {
    "unknown state in a flow": (
        edit('"central ->" = "CL / V"', '"central -> lung" = "CL / V"'),
        r"flows\.'central -> lung': unknown state 'lung'; states: central, marker",
    ),
    "unknown source state in a flow": (
        edit('"central ->" = "CL / V"', '"gut -> central" = "CL / V"'),
        r"flows\.'gut -> central': unknown state 'gut'",
    ),
    "flow without arrow": (
        edit('"central ->" = "CL / V"', '"central" = "CL / V"'),
        r"flows\.'central': expected 'source -> target'",
    ),
    "flow from a state to itself": (
        edit('"central ->" = "CL / V"', '"central -> central" = "CL / V"'),
        r"flows\.'central -> central': a flow from a state to itself",
    ),
    "eval in an expression": (
        edit('"central ->" = "CL / V"', '"central ->" = "eval(\'CL / V\')"'),
        r"flows\.'central ->': unknown function 'eval'",
    ),
    "__import__ in an expression": (
        edit('C = "central / V"', "C = \"__import__('os').getcwd()\""),
        r"derived\.C: calling attribute access '\.getcwd'",
    ),
    "attribute access in an expression": (
        edit('"central ->" = "CL / V"', '"central ->" = "CL.real / V"'),
        r"flows\.'central ->': attribute access '\.real' is not allowed",
    ),
    "indexing in an expression": (
        edit('marker = "kin - kout * marker"', 'marker = "kin - kout[0] * marker"'),
        r"odes\.marker: indexing",
    ),
    "string in an expression": (
        edit('conc = { expr = "C"', "conc = { expr = \"'C'\""),
        r"observations\.conc\.expr: constant 'C' is not allowed",
    ),
    "syntax error in an expression": (
        edit('C = "central / V"', 'C = "central / "'),
        r"derived\.C: syntax error in 'central /'",
    ),
    "empty expression": (
        edit('C = "central / V"', 'C = ""'),
        r"derived\.C: empty expression",
    ),
    "cycle in derived": (
        edit('C = "central / V"', 'C = "central / V2"\nV2 = "V * C"'),
        r"\[derived\]: cycle: (C -> V2 -> C|V2 -> C -> V2)",
    ),
    "derived using itself": (
        edit('C = "central / V"', 'C = "C / V"'),
        r"\[derived\]: cycle: C -> C",
    ),
    "missing [states] block": (
        re.sub(r"(?s)\[states\]\n.*?\n\n", "", BASE),
        r"missing block \[states\]",
    ),
    "empty [states] block": (
        re.sub(r"(?s)\[states\]\n.*?\n\n", "[states]\n\n", BASE),
        r"\[states\]: at least one state is needed",
    ),
    "missing model.name": (
        edit('name = "base"\n', ""),
        r"model\.name: missing",
    ),
    "model.name not a string": (
        edit('name = "base"', "name = 3"),
        r"model\.name: expected a string, got int 3",
    ),
    "unknown time unit": (
        edit('time_unit = "h"', 'time_unit = "fortnight"'),
        r"model\.time_unit: unknown time unit 'fortnight'; expected one of: s, sec, .*, h, ",
    ),
    "unknown field in [model]": (
        edit('name = "base"', 'name = "base"\nauthor = "me"'),
        r"model: unknown field\(s\) \['author'\]",
    ),
    "references not a list of strings": (
        edit('name = "base"', 'name = "base"\nreferences = [1, 2]'),
        r"model\.references: expected a list of strings",
    ),
    "parameter value a string": (
        edit("V = { value = 10.0", 'V = { value = "ten"'),
        r"parameters\.V\.value: expected a number, got str 'ten'",
    ),
    "parameter value a boolean": (
        edit("V = { value = 10.0", "V = { value = true"),
        r"parameters\.V\.value: expected a number, got bool True",
    ),
    "parameter value not finite": (
        edit("V = { value = 10.0", "V = { value = nan"),
        r"parameters\.V\.value: expected a finite number, got nan",
    ),
    "parameter without value": (
        edit('V = { value = 10.0, unit = "L" }', 'V = { unit = "L" }'),
        r"parameters\.V: missing 'value'",
    ),
    "bounds not a list": (
        edit("bounds = [0.0, 10.0]", "bounds = 10.0"),
        r"parameters\.CL\.bounds: expected \[lower, upper\] numbers, got 10\.0",
    ),
    "bounds with three numbers": (
        edit("bounds = [0.0, 10.0]", "bounds = [0.0, 5.0, 10.0]"),
        r"parameters\.CL\.bounds: expected \[lower, upper\]",
    ),
    "bounds reversed": (
        edit("bounds = [0.0, 10.0]", "bounds = [10.0, 0.0]"),
        r"parameters\.CL\.bounds: lower 10\.0 must be < upper 0\.0",
    ),
    "value outside bounds": (
        edit("CL = { value = 2.0", "CL = { value = 20.0"),
        r"parameters\.CL\.value: 20\.0 lies outside bounds \[0\.0, 10\.0\]",
    ),
    "covariate bounds not a list": (
        edit('unit = "kg" }', 'unit = "kg", bounds = 0 }'),
        r"covariates\.WT\.bounds: expected \[lower, upper\] numbers, got 0",
    ),
    "covariate bounds with a string": (
        edit('unit = "kg" }', 'unit = "kg", bounds = [0.0, "heavy"] }'),
        r"covariates\.WT\.bounds: expected \[lower, upper\] numbers, got \[0\.0, 'heavy'\]",
    ),
    "covariate bounds reversed": (
        edit('unit = "kg" }', 'unit = "kg", bounds = [300.0, 0.0] }'),
        r"covariates\.WT\.bounds: lower 300\.0 must be <= upper 0\.0",
    ),
    "covariate default outside bounds": (
        edit('unit = "kg" }', 'unit = "kg", bounds = [80.0, inf] }'),
        r"covariates\.WT\.value: 70\.0 lies outside bounds \[80\.0, inf\]",
    ),
    "unknown block": (
        edit("[covariates]", "[covariate]"),
        r"unknown block \[covariate\]; expected blocks: model, parameters",
    ),
    "unknown field in a parameter": (
        edit('V = { value = 10.0, unit = "L" }', 'V = { value = 10.0, units = "L" }'),
        r"parameters\.V: unknown field\(s\) \['units'\]; allowed: ",
    ),
    "parameter unit not a string": (
        edit('unit = "L" }', "unit = 1 }"),
        r"parameters\.V\.unit: expected a string, got int 1",
    ),
    "invalid parameter name": (
        edit("kin = {", "2kin = {"),
        r"parameters\.2kin: '2kin' is not a valid name",
    ),
    "reserved parameter name": (
        edit("kin = {", "exp = {"),
        r"parameters\.exp: 'exp' is reserved",
    ),
    "covariate named like a parameter": (
        edit("WT = {", "CL = {"),
        r"covariates\.CL: 'CL' is already a parameter",
    ),
    "unknown name in an expression": (
        edit('"central ->" = "CL / V"', '"central ->" = "CL / Vc"'),
        r"flows\.'central ->': unknown name 'Vc' in 'CL / Vc'; known: C, CL, V, WT",
    ),
    "unknown names in an observation": (
        edit('conc = { expr = "C"', 'conc = { expr = "Cp * F1"'),
        r"observations\.conc\.expr: unknown names 'Cp', 'F1'",
    ),
    "state initial using a state": (
        edit('initial = "kin / kout"', 'initial = "central / kout"'),
        r"states\.marker\.initial: unknown name 'central'",
    ),
    "ode for an unknown state": (
        edit('marker = "kin - kout * marker"', 'biomarker = "kin - kout * marker"'),
        r"odes\.biomarker: unknown state 'biomarker'; states: central, marker",
    ),
    "bad prior family": (
        edit('prior = "lognormal(log(2), 1)"', 'prior = "lognorm(log(2), 1)"'),
        r"parameters\.CL\.prior: unknown prior family 'lognorm'; known: normal, lognormal",
    ),
    "prior with wrong arity": (
        edit('prior = "lognormal(log(2), 1)"', 'prior = "lognormal(2)"'),
        r"parameters\.CL\.prior: prior lognormal takes 2 positional arguments, got 1",
    ),
    "prior with a parameter in it": (
        edit('prior = "lognormal(log(2), 1)"', 'prior = "lognormal(log(V), 1)"'),
        r"parameters\.CL\.prior: prior arguments must be constants, got 'log\(V\)'",
    ),
    "unknown error model": (
        edit('error = "proportional"', 'error = "poisson"'),
        r"observations\.conc\.error: 'poisson' is not one of additive, proportional",
    ),
    "observation without expr": (
        edit('conc = { expr = "C", unit', "conc = { unit"),
        r"observations\.conc: missing 'expr'",
    ),
    "dosing for an unknown state": (
        BASE + '\n[dosing]\ngut = { lag = "0.5" }\n',
        r"dosing\.gut: unknown state 'gut'",
    ),
    "dosing expression using a state": (
        BASE + '\n[dosing]\ncentral = { bioavailability = "1 / (1 + marker)" }\n',
        r"dosing\.central\.bioavailability: unknown name 'marker'",
    ),
    "unknown dosing field": (
        BASE + '\n[dosing]\ncentral = { alag = "0.5" }\n',
        r"dosing\.central: unknown field\(s\) \['alag'\]",
    ),
    "invalid TOML syntax": (
        edit('V = { value = 10.0, unit = "L" }', 'V = { value = 10.0, unit = "L" '),
        r"not valid TOML: .*line \d+",
    ),
    "invalid TOML duplicate key": (
        edit("kin = {", "CL = {"),
        r"not valid TOML: ",
    ),
    "route named like a state": (
        BASE + '\n[routes]\ncentral = { central = "1" }\n',
        r"routes\.central: route name 'central' is already a state",
    ),
    "route into an unknown state": (
        BASE + '\n[routes]\niv = { gut = "1" }\n',
        r"routes\.iv\.gut: unknown state 'gut'",
    ),
    "route fraction using a state": (
        BASE + '\n[routes]\niv = { central = "1 / (1 + marker)" }\n',
        r"routes\.iv\.central: unknown name 'marker'",
    ),
    "route not a table": (
        BASE + '\n[routes]\niv = "central"\n',
        r"routes\.iv: expected a table state -> fraction",
    ),
    "[model] not a table": (
        'model = "base"\n' + BASE[BASE.index("[parameters]") :],
        r"\[model\]: expected a table, got str",
    ),
}


@pytest.mark.parametrize("case", sorted(MODEL_FILES))
def test_malformed_model_file(case: str, tmp_path: Path) -> None:
    text, what = MODEL_FILES[case]
    path = tmp_path / "bad_model.toml"
    path.write_text(text, encoding="utf-8")
    # the message starts with the file, then the key and what is wrong
    check(cp.SpecError, "^" + re.escape(str(path)) + ": " + what, cp.load_model, path)


def test_nonexistent_model_file(tmp_path: Path) -> None:
    path = tmp_path / "no_such_model.toml"
    check(cp.SpecError, "^" + re.escape(str(path)) + ": model file not found", cp.load_model, path)


def test_model_path_is_a_directory(tmp_path: Path) -> None:
    check(
        cp.SpecError, re.escape(str(tmp_path)) + ": cannot read model file", cp.load_model, tmp_path
    )


def test_unknown_library_model_name() -> None:
    check(
        cp.SpecError,
        r"unknown model 'one_cmt_ivv': not a file, and not in the library \(.*one_cmt_iv",
        cp.load_model,
        "one_cmt_ivv",
    )


def test_from_dict_names_its_source() -> None:
    check(
        cp.SpecError,
        r"^my_model: model\.name: missing",
        cp.ModelSpec.from_dict,
        {"model": {}, "states": {"x": 0.0}},
        source="my_model",
    )
    check(
        cp.SpecError, r"<python>: expected a table of blocks, got list", cp.ModelSpec.from_dict, []
    )


def test_with_values_unknown_name(iv: cp.ModelSpec) -> None:
    check(cp.SpecError, r"with_values: unknown name 'Vd'; known: CL, V", iv.with_values, Vd=1.0)


def test_nan_flow_rate_is_reported_as_not_finite() -> None:
    data = {
        "model": {"name": "m", "time_unit": "h", "amount_unit": "mg"},
        "parameters": {"V": 1.0},
        "states": {"central": 0.0},
        "flows": {"central ->": math.nan},
    }
    check(cp.SpecError, r"flows\.'central ->': .*finite", cp.ModelSpec.from_dict, data)


def test_observation_named_like_a_derived_quantity() -> None:
    data = {
        "model": {"name": "m", "time_unit": "h", "amount_unit": "mg"},
        "parameters": {"V": 1.0},
        "states": {"central": 0.0},
        "derived": {"conc": "central / V"},
        "observations": {"conc": "2 * central / V"},
    }
    check(cp.SpecError, r"observations\.conc: 'conc' is already", cp.ModelSpec.from_dict, data)


def test_prior_dividing_by_zero() -> None:
    data = {
        "model": {"name": "m", "time_unit": "h", "amount_unit": "mg"},
        "parameters": {"V": {"value": 1.0, "prior": "normal(1 / 0, 1)"}},
        "states": {"central": 0.0},
    }
    check(cp.SpecError, r"parameters\.V\.prior: ", cp.ModelSpec.from_dict, data)


@pytest.mark.parametrize("value", [-1.0, "fast"], ids=["outside-bounds", "string"])
def test_with_values_checks_like_the_model_file(iv: cp.ModelSpec, value: Any) -> None:
    check(cp.SpecError, r"with_values: CL", iv.with_values, CL=value)


# ---------------------------------------------------------------------- doses, regimens
DOSES = {
    "negative amount": ({"amount": -1.0}, r"^Dose: amount = -1\.0 must be >= 0"),
    "NaN time": ({"time": math.nan}, r"^Dose: time = nan must be finite"),
    "infinite amount": ({"amount": math.inf}, r"^Dose: amount = inf must be finite"),
    "negative time": ({"time": -2.0}, r"^Dose: time = -2\.0 must be >= 0"),
    "time a string": ({"time": "0"}, r"^Dose: time = '0' is not a number"),
    "ss=1 without ii": ({"ss": 1}, r"^Dose: ss = 1 needs a dosing interval ii > 0, got 0\.0"),
    "ss out of range": ({"ss": 3, "ii": 12.0}, r"^Dose: ss = 3 must be 0, 1 or 2"),
    "cmt zero": ({"cmt": 0}, r"^Dose: cmt = 0 must be >= 1 \(NONMEM numbering\)"),
    "cmt a float": ({"cmt": 1.0}, r"^Dose: cmt = 1\.0 must be a state name or number"),
    "negative duration": ({"duration": -1.0}, r"^Dose: duration = -1\.0 must be >= 0"),
    "duration unknown word": ({"duration": "long"}, r"^Dose: duration = 'long' is not a number"),
    "rate zero": ({"rate": 0.0}, r"^Dose: rate = 0 would never deliver the dose"),
    "NONMEM RATE -2": ({"rate": -2}, r'^Dose: rate = -2 is NONMEM.s coding .* duration="model"'),
    "NONMEM RATE -1": ({"rate": -1.0}, r'^Dose: rate = -1\.0 is NONMEM.s coding .* rate="model"'),
    "rate and duration": (
        {"rate": 10.0, "duration": 2.0},
        r"^Dose: give either rate or duration, not both",
    ),
    "cmt and route": ({"route": "iv"}, r"^Dose: give cmt or route, not both"),
    "route not text": ({"cmt": None, "route": 1}, r"^Dose: route = 1 must be a route name"),
    "negative lag": ({"lag": -0.5}, r"^Dose: lag = -0\.5 must be >= 0"),
    "negative bioavailability": (
        {"bioavailability": -0.1},
        r"^Dose: bioavailability = -0\.1 must be >= 0",
    ),
}


@pytest.mark.parametrize("case", sorted(DOSES))
def test_bad_dose(case: str) -> None:
    changes, what = DOSES[case]
    kw = {"time": 0.0, "amount": 100.0, "cmt": "central", **changes}
    check(cp.DosingError, what, cp.Dose, **kw)


def test_events_before_is_checked() -> None:
    """Outputs at one time must see the events in order, within the dose slots."""
    sim = cp.Simulator("one_cmt_iv", solver="tsit5")
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    t = np.array([0.0, 0.0, 1.0])
    check(cp.SpecError, "events_before decreases between outputs at the same time",
          sim.solve, {}, reg, t, events_before=np.array([1, 0, 1]))  # fmt: skip
    check(cp.SpecError, r"events_before must lie in \[0, 1\]",
          sim.solve, {}, reg, t, events_before=np.array([0, 2, 2]))  # fmt: skip
    check(cp.SpecError, r"events_before has shape \(2,\)",
          sim.solve, {}, reg, t, events_before=np.array([0, 1]))  # fmt: skip
    out, status = sim.solve({}, reg, t, events_before=np.array([0, 1, 1]))
    assert int(status) == 0
    np.testing.assert_allclose(np.asarray(out["central"])[:2], [0.0, 100.0])


def test_dose_takes_zero_dimensional_arrays() -> None:
    import jax.numpy as jnp

    dose = cp.Dose(np.array(1.0), jnp.asarray(100.0), "central", lag=np.float32(0.5))
    assert (dose.time, dose.amount, dose.lag) == (1.0, 100.0, 0.5)
    assert isinstance(dose.amount, float)
    check(cp.DosingError, r"^Dose: amount = .* is not a number", cp.Dose, 0.0, np.ones(2), 1)


def test_reset_negative_time() -> None:
    check(cp.DosingError, r"^Reset: time = -1\.0 must be >= 0", cp.Reset, -1.0)


def test_regimen_with_a_non_dose_item() -> None:
    dose = cp.Dose(0.0, 100.0, "central")
    check(
        cp.DosingError,
        r"^Regimen: event 1 is a dict; expected cp\.Dose or cp\.Reset",
        cp.Regimen,
        [dose, {"time": 1.0, "amount": 5.0}],
    )


@pytest.mark.parametrize("count", [0, -3, 2.5, True])
def test_regimen_repeat_bad_count(count: Any) -> None:
    dose = cp.Dose(0.0, 100.0, "central")
    check(
        cp.DosingError,
        r"^Regimen\.repeat: count = .* must be an integer >= 1",
        cp.Regimen.repeat,
        dose,
        interval=24.0,
        count=count,
    )


def test_regimen_repeat_bad_interval() -> None:
    dose = cp.Dose(0.0, 100.0, "central")
    check(
        cp.DosingError,
        r"^Regimen\.repeat: interval = -24\.0 must be >= 0",
        cp.Regimen.repeat,
        dose,
        interval=-24.0,
        count=3,
    )
    check(
        cp.DosingError,
        r"^Regimen\.repeat: interval = 0\.0 must be > 0",
        cp.Regimen.repeat,
        dose,
        interval=0.0,
        count=3,
    )


def test_to_arrays_too_few_slots(iv: cp.ModelSpec) -> None:
    reg = cp.Regimen.repeat(cp.Dose(0.0, 1.0, "central"), interval=12.0, count=3)
    check(
        cp.DosingError,
        r"^Regimen\.to_arrays: a regimen has 3 events but max_doses = 2",
        reg.to_arrays,
        2,
        iv,
    )


def test_stack_no_regimens() -> None:
    check(cp.DosingError, r"^stack_dose_arrays: no regimens given", cp.stack_dose_arrays, [])


def test_regimen_of_a_single_dose_not_in_a_list() -> None:
    check(cp.DosingError, r"^Regimen: ", cp.Regimen, cp.Dose(0.0, 100.0, "central"))


# ---------------------------------------------------------------------- simulate arguments
T = [0.0, 1.0, 2.0]


def test_simulate_unknown_parameter_lists_known(iv: cp.ModelSpec, bolus: cp.Regimen) -> None:
    check(
        cp.SpecError,
        r"^simulate: unknown param.* 'Cl'; known: CL, V$",
        cp.simulate,
        iv,
        bolus,
        T,
        params={"Cl": 1.0},
    )


def test_simulate_parameter_given_as_covariate(iv: cp.ModelSpec, bolus: cp.Regimen) -> None:
    check(
        cp.SpecError,
        r"^simulate: unknown covariate 'CL' \('CL' is a parameter\)",
        cp.simulate,
        iv,
        bolus,
        T,
        covariates={"CL": 1.0},
    )


@pytest.mark.parametrize("value", [math.nan, [1.0, math.nan], math.inf])
def test_simulate_nan_parameter(iv: cp.ModelSpec, bolus: cp.Regimen, value: Any) -> None:
    check(
        cp.SpecError,
        r"^simulate: params\['CL'\] contains NaN or inf",
        cp.simulate,
        iv,
        bolus,
        T,
        params={"CL": value},
    )


def test_simulate_non_numeric_parameter(iv: cp.ModelSpec, bolus: cp.Regimen) -> None:
    check(
        cp.SpecError,
        r"^simulate: params\['V'\] = 'big' is not a number",
        cp.simulate,
        iv,
        bolus,
        T,
        params={"V": "big"},
    )


def test_simulate_2d_parameter(iv: cp.ModelSpec, bolus: cp.Regimen) -> None:
    check(
        cp.SpecError,
        r"^simulate: params\['V'\] must be a scalar or 1-D, got shape \(2, 2\)",
        cp.simulate,
        iv,
        bolus,
        T,
        params={"V": np.ones((2, 2))},
    )


def test_simulate_params_not_a_dict(iv: cp.ModelSpec, bolus: cp.Regimen) -> None:
    check(
        cp.SpecError,
        r"^simulate: params must be a dict name -> value, got list",
        cp.simulate,
        iv,
        bolus,
        T,
        params=[1.0, 2.0],
    )


def test_simulate_params_of_mismatched_lengths(iv: cp.ModelSpec, bolus: cp.Regimen) -> None:
    check(
        cp.SpecError,
        r"^simulate: params\['V'\] has 2 values but other inputs give 3 subjects",
        cp.simulate,
        iv,
        bolus,
        T,
        params={"CL": [1.0, 2.0, 3.0], "V": [10.0, 20.0]},
    )


def test_simulate_regimens_and_params_of_mismatched_lengths(
    iv: cp.ModelSpec, bolus: cp.Regimen
) -> None:
    check(
        cp.SpecError,
        r"^simulate: params\['CL'\] has 3 values but other inputs give 2 subjects",
        cp.simulate,
        iv,
        [bolus, bolus],
        T,
        params={"CL": [1.0, 2.0, 3.0]},
    )


TIMES = {
    "unsorted": ([0.0, 2.0, 1.0], r"times must be non-decreasing; times\[2\] = 1\.0 < times\[1\]"),
    "negative": ([-1.0, 0.0, 1.0], r"times\[0\] = -1\.0 is before the start time 0\.0"),
    "empty": ([], r"times must be a non-empty 1-D array, got shape \(0,\)"),
    "2-D": ([[0.0, 1.0], [2.0, 3.0]], r"times must be a non-empty 1-D array, got shape \(2, 2\)"),
    "scalar": (1.0, r"times must be a non-empty 1-D array, got shape \(\)"),
    "NaN": ([0.0, math.nan], r"times\[1\] = nan is not finite"),
    "strings": (["a", "b"], r"times must be numbers"),
    "missing": (None, r"times is required"),
}


@pytest.mark.parametrize("case", sorted(TIMES))
def test_simulate_bad_times(iv: cp.ModelSpec, bolus: cp.Regimen, case: str) -> None:
    times, what = TIMES[case]
    check(cp.SpecError, "^simulate: " + what, cp.simulate, iv, bolus, times)


def test_simulate_unknown_output(iv: cp.ModelSpec, bolus: cp.Regimen) -> None:
    check(
        cp.SpecError,
        r"unknown output 'cp'; known: central, conc",
        cp.simulate,
        iv,
        bolus,
        T,
        outputs=("cp",),
    )


def test_simulate_unknown_solver(iv: cp.ModelSpec, bolus: cp.Regimen) -> None:
    check(
        cp.SpecError,
        r"solver = 'rk45'; expected one of auto, exact, tsit5, kvaerno5",
        cp.simulate,
        iv,
        bolus,
        T,
        solver="rk45",
    )


def test_simulate_exact_solver_on_nonlinear_model(
    nonlinear: cp.ModelSpec, bolus: cp.Regimen
) -> None:
    check(
        cp.SpecError,
        r"solver='exact' needs a linear model; 'mm' has",
        cp.simulate,
        nonlinear,
        bolus,
        T,
        solver="exact",
    )


def test_simulate_dose_into_unknown_compartment(iv: cp.ModelSpec) -> None:
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "depot")])
    check(
        cp.DosingError,
        r"^simulate: dose 0 into unknown state 'depot'; states: central",
        cp.simulate,
        iv,
        reg,
        T,
    )


def test_simulate_cmt_number_out_of_range(iv: cp.ModelSpec) -> None:
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central"), cp.Dose(1.0, 100.0, 2)])
    check(
        cp.DosingError,
        r"^simulate: dose 1 has cmt = 2; the model has states 1\.\.1",
        cp.simulate,
        iv,
        reg,
        T,
    )


def test_to_arrays_cmt_number_out_of_range(iv: cp.ModelSpec) -> None:
    reg = cp.Regimen([cp.Dose(0.0, 100.0, 3)])
    check(
        cp.DosingError,
        r"^Regimen: event 0 has cmt = 3; the model has states 1\.\.1 \(central\)",
        reg.to_arrays,
        None,
        iv,
    )


def test_simulate_numpy_cmt_out_of_range(iv: cp.ModelSpec) -> None:
    reg = cp.Regimen([cp.Dose(0.0, 100.0, np.int64(5))])
    check(cp.DosingError, r"^simulate: dose 0 has cmt = 5", cp.simulate, iv, reg, T)


@pytest.mark.parametrize("field", ["rate", "duration"])
def test_simulate_model_rate_without_dosing_rule(iv: cp.ModelSpec, field: str) -> None:
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central", **{field: "model"})])
    check(
        cp.DosingError,
        rf"^simulate: dose 0 asks for the modelled {field} of 'central', but "
        rf".*one_cmt_iv\.toml has no \[dosing\]\.central\.{field}",
        cp.simulate,
        iv,
        reg,
        T,
    )


def test_simulate_ss2_on_nonlinear_model(nonlinear: cp.ModelSpec) -> None:
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central", ss=2, ii=12.0)])
    check(
        cp.DosingError,
        r"^simulate: dose 0 has ss = 2 .* needs a linear model; 'mm' is nonlinear",
        cp.simulate,
        nonlinear,
        reg,
        T,
    )


def test_simulate_on_failure_invalid(iv: cp.ModelSpec, bolus: cp.Regimen) -> None:
    check(
        cp.SpecError,
        r"^simulate: on_failure = 'ignore'; expected 'raise' or 'nan'",
        cp.simulate,
        iv,
        bolus,
        T,
        on_failure="ignore",
    )


@pytest.mark.parametrize("regimen", [cp.Dose(0.0, 1.0, "central"), "daily", [1, 2]])
def test_simulate_regimen_of_wrong_type(iv: cp.ModelSpec, regimen: Any) -> None:
    check(
        cp.SpecError,
        r"^simulate: regimen must be a cp\.Regimen or a list of them, got ",
        cp.simulate,
        iv,
        regimen,
        T,
    )


def test_simulate_empty_regimen_list(iv: cp.ModelSpec) -> None:
    check(cp.SpecError, r"^simulate: regimen is an empty list", cp.simulate, iv, [], T)


def test_simulate_unknown_model_name(bolus: cp.Regimen) -> None:
    check(cp.SpecError, r"^unknown model 'no_such_model'", cp.simulate, "no_such_model", bolus, T)


@pytest.mark.parametrize("name", ["rtol", "atol"])
@pytest.mark.parametrize("value", [-1e-6, 0.0, math.nan])
def test_simulate_bad_tolerance(iv: cp.ModelSpec, bolus: cp.Regimen, name: str, value) -> None:
    check(
        cp.SpecError,
        rf"{name} = .* must be a positive number",
        cp.simulate,
        iv,
        bolus,
        T,
        **{name: value},
    )


def test_simulator_unknown_parameter(iv: cp.ModelSpec, bolus: cp.Regimen) -> None:
    sim = cp.Simulator(iv, T)
    check(
        cp.SpecError,
        r"^one_cmt_iv: unknown parameter or covariate 'Vd'; known: CL, V",
        sim,
        {"Vd": 1.0},
        bolus,
    )


def test_simulate_unknown_output_as_list(iv: cp.ModelSpec, bolus: cp.Regimen) -> None:
    check(cp.SpecError, r"unknown output 'cp'", cp.simulate, iv, bolus, T, outputs=["cp"])


def test_simulate_accepts_outputs_as_a_list(iv: cp.ModelSpec, bolus: cp.Regimen) -> None:
    res = cp.simulate(iv, bolus, T, outputs=["conc"])
    assert list(res.data_vars) == ["conc"]


@pytest.mark.parametrize("max_steps", [0, -1])
def test_simulate_bad_max_steps(nonlinear: cp.ModelSpec, bolus: cp.Regimen, max_steps: int) -> None:
    check(
        cp.SpecError,
        r"max_steps",
        cp.simulate,
        nonlinear,
        bolus,
        T,
        max_steps=max_steps,
    )


# ------------------------------------------------- second review: values out of range
def test_model_file_negative_constant_flow_rate(tmp_path: Path) -> None:
    path = tmp_path / "neg.toml"
    path.write_text(edit('"central ->" = "CL / V"', '"central ->" = "-0.5"'), encoding="utf-8")
    check(cp.SpecError, r"flows\.'central ->': rate -0\.5; a flow is first order", cp.load_model,
          path)  # fmt: skip


@pytest.mark.parametrize(
    ("prior", "message"),
    [
        ("lognormal(log(2), -1)", r"argument 2 of lognormal in .* is -1; expected > 0"),
        ("uniform(2, 1)", r"uniform in 'uniform\(2, 1\)' has lower bound 2 >= upper bound 1"),
        ("gamma(0, 1)", r"argument 1 of gamma .* is 0; expected > 0"),
        ("truncnormal(0, 1, 3, 2)", r"truncnormal .* has lower bound 3 >= upper bound 2"),
    ],
)
def test_model_file_prior_arguments_out_of_range(tmp_path: Path, prior: str, message: str) -> None:
    path = tmp_path / "prior.toml"
    path.write_text(edit('prior = "lognormal(log(2), 1)"', f'prior = "{prior}"'), encoding="utf-8")
    check(cp.SpecError, r"parameters\.CL\.prior: " + message, cp.load_model, path)


def test_species_for_a_model_without_physiology() -> None:
    check(cp.SpecError, r"species = 'dog' was given, but the model has no \[physiology\]",
          cp.load_model, "one_cmt_iv", species="dog")  # fmt: skip


@pytest.mark.parametrize("solver", ["exact", "tsit5"])
def test_simulate_parameter_that_makes_rates_infinite(
    iv: cp.ModelSpec, bolus: cp.Regimen, solver: str
) -> None:
    # V = 0 lies inside the bounds [0, inf] but divides by zero: a failed subject, not a
    # crash from inside the exponential's sizing
    check(cp.SimulationError, r"subject 0: non-finite state", cp.simulate, iv, bolus, [0.0, 1.0],
          params={"V": 0.0}, solver=solver)  # fmt: skip
    out, status = cp.Simulator(iv, [0.0, 1.0], solver=solver).batch(
        {"V": np.array([0.0, 10.0])}, cp.Simulator(iv).doses(bolus)
    )
    assert status.tolist() == [2, 0]
    np.testing.assert_allclose(np.asarray(out["conc"])[1], [10.0, 10.0 * math.exp(-0.2)])


def test_simulate_output_that_is_not_finite_warns(tmp_path: Path, bolus: cp.Regimen) -> None:
    # the states are fine, an observation is NaN: kept (a 0/0 ratio before the first dose is
    # common) but never silent
    path = tmp_path / "nan.toml"
    text = edit('C = "central / V"', 'C = "central / V * log(kin / kout - 12)"')
    path.write_text(text, encoding="utf-8")
    with pytest.warns(RuntimeWarning, match=r"output 'conc' is NaN or inf at 3 of 3 points .*"
                      r"subject 0 at time 0"):  # fmt: skip
        res = cp.simulate(cp.load_model(path), bolus, [0.0, 1.0, 2.0])
    assert int(res["status"][0]) == 0


@pytest.mark.parametrize(
    ("rule", "dose"),
    [
        ('bioavailability = "-0.5"', {}),
        ('lag = "-1"', {}),
        ('duration = "0"', {"duration": "model"}),
        ('rate = "2 * CL - 9"', {"rate": "model"}),  # no unit check: a number scales CL
    ],
)
@pytest.mark.parametrize("solver", ["exact", "tsit5"])
def test_simulate_dosing_block_values_out_of_range(
    tmp_path: Path, rule: str, dose: dict, solver: str
) -> None:
    # each used to give negative amounts, a silently ignored lag or a dose that vanished
    path = tmp_path / "dosing.toml"
    path.write_text(BASE + f"\n[dosing]\ncentral = {{ {rule} }}\n", encoding="utf-8")
    regimen = cp.Regimen([cp.Dose(0.0, 100.0, "central", **dose)])
    check(cp.SimulationError, r"\[dosing\] gives lag >= 0", cp.simulate, cp.load_model(path),
          regimen, [0.0, 1.0, 2.0], solver=solver)  # fmt: skip


@pytest.mark.parametrize(
    ("metric", "time"),
    [
        (cp.metrics.auc("conc", 100.0, 200.0), "100"),
        (cp.metrics.value_at("conc", 100.0), "100"),
        (cp.metrics.time_above("conc", 0.01, 0.0, 48.0), "48"),
    ],
)
def test_metric_window_outside_the_result_grid(
    iv: cp.ModelSpec, bolus: cp.Regimen, metric: Any, time: str
) -> None:
    # these gave 0, the last grid value and 24 h (true 34.5 h) before
    res = cp.simulate(iv, bolus, np.linspace(0.0, 24.0, 25))
    check(cp.SpecError, rf"time {time} is outside the result's time grid \[0, 24\]", metric, res)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "map", "steps": 0}, r"fit: steps = 0; expected an integer >= 1"),
        ({"method": "svi", "steps": 5, "draws": 0}, r"fit: draws = 0; expected an integer >= 1"),
        ({"chains": 0}, r"fit: chains = 0; expected an integer >= 1"),
        ({"seed": "a"}, r"fit: seed = 'a'; expected an integer >= 0"),
        ({"population": cp.Population(fixed=["CL", "V"])}, r"fixes every parameter"),
        ({"population": {"CL": 0.3}}, r"population must be a cp.Population, got dict"),
    ],
)
def test_fit_arguments(iv: cp.ModelSpec, kwargs: dict, message: str) -> None:
    data = cp.read_nonmem(_frame())
    check(cp.SpecError, message, cp.fit, iv, data, progress=False, **kwargs)


def _frame() -> Any:
    import pandas as pd

    return pd.DataFrame({"ID": [1, 1, 1], "TIME": [0.0, 1.0, 2.0], "AMT": [100.0, 0, 0],
                         "DV": [None, 5.0, 3.0]})  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fixed": "CL"}, r"fixed must be a list of parameter names, got 'CL'"),
        ({"random_effects": ["CL"]}, r"random_effects must be a dict, got list"),
        ({"covariate_effects": {"CL": "WT"}}, r"covariate_effects\['CL'\] must be a dict"),
    ],
)
def test_population_argument_types(kwargs: dict, message: str) -> None:
    check(cp.SpecError, message, cp.Population, **kwargs)


def test_simulator_arguments_of_the_wrong_type(iv: cp.ModelSpec, bolus: cp.Regimen) -> None:
    sim = cp.Simulator(iv, [0.0, 1.0])
    check(cp.SpecError, r"params must be a dict name -> value\(s\), got list", sim, [2.0, 10.0],
          bolus)  # fmt: skip
    check(cp.DosingError, r"doses must be a cp.Regimen .* got NoneType", sim, {"CL": 2.0}, None)
    check(cp.SpecError, r"predict: idata must be the InferenceData of cp.fit, got NoneType",
          cp.predict, None, iv, bolus, [0.0, 1.0], n=2)  # fmt: skip


def test_dose_ranging_target_must_be_finite(iv: cp.ModelSpec, bolus: cp.Regimen) -> None:
    check(cp.SpecError, r"target\['auc'\] = .*a finite value", cp.dose_ranging, iv,
          {"dose": [1.0]}, None, [0.0, 1.0], {"auc": cp.metrics.auc("conc")}, regimen=bolus,
          target={"auc": (">=", math.nan)})  # fmt: skip


def test_fit_observations_mapping_to_an_unknown_observation(iv: cp.ModelSpec) -> None:
    check(cp.SpecError, r"observations\[1\] = 'cp' is not an observation of model 'one_cmt_iv'",
          cp.fit, iv, cp.read_nonmem(_frame()), method="map", steps=5, progress=False,
          observations={1: "cp"})  # fmt: skip


def test_fit_power_effect_of_a_covariate_that_is_zero(iv: cp.ModelSpec) -> None:
    frame = _frame().assign(WT=[70.0, 70.0, 0.0])  # weight missing coded as 0, at the 2nd record
    pop = cp.Population(covariate_effects={"CL": {"WT": "power"}})
    check(cp.DataError, r"power effect of 'WT' on CL needs WT > 0, but the data hold WT = 0",
          cp.fit, iv, cp.read_nonmem(frame), pop, method="map", steps=5,
          progress=False)  # fmt: skip


# ---------------------------------------------------------------------- covariate bounds
@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> cp.ModelSpec:
    """BASE with body weight bounded to [1, 300] kg."""
    path = tmp_path_factory.mktemp("bounded") / "bounded.toml"
    path.write_text(edit('unit = "kg" }', 'unit = "kg", bounds = [1.0, 300.0] }'), "utf-8")
    return cp.load_model(path)


def test_covariate_bounds_are_read_and_default_to_unbounded(
    bounded: cp.ModelSpec, base_path: Path
) -> None:
    assert bounded.covariates["WT"].bounds == (1.0, 300.0)
    assert cp.load_model(base_path).covariates["WT"].bounds == (-math.inf, math.inf)
    assert "| [1, 300] |" in cp.describe(bounded)


@pytest.mark.parametrize("wt", [[70.0, 0.5, 80.0], 400.0], ids=["array", "scalar"])
def test_simulate_covariate_outside_its_bounds(bounded: cp.ModelSpec, wt: Any) -> None:
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    where = " \\(subject 1\\)" if np.ndim(wt) else ""
    value = "0.5" if np.ndim(wt) else "400.0"
    check(cp.SpecError, rf"^simulate: covariates\['WT'\] = {value}{where} lies outside its "
          r"bounds \[1\.0, 300\.0\] in ", cp.simulate, bounded, reg, [0.0, 1.0],
          covariates={"WT": wt})  # fmt: skip
    assert cp.simulate(bounded, reg, [0.0, 1.0], covariates={"WT": [1.0, 300.0]}).sizes == {
        "subject": 2, "time": 2}  # fmt: skip  # the bounds are closed


def _weights_frame(wt: list[float]) -> Any:
    import pandas as pd

    return pd.DataFrame({"ID": [1, 1, 1, 2, 2, 2], "TIME": [0.0, 1.0, 2.0] * 2,
                         "AMT": [100.0, 0, 0] * 2, "DV": [None, 5.0, 3.0] * 2,
                         "WT": wt})  # fmt: skip


def test_data_covariate_outside_its_bounds(bounded: cp.ModelSpec) -> None:
    data = cp.read_nonmem(_weights_frame([70.0, 70.0, 70.0, 60.0, -1.0, 60.0]))
    # the 5th record (ID 2, its second): a weight of -1 (a missing-value code) is not used
    msg = r"^<DataFrame> row 5 \(ID 2\): WT = -1 lies outside the bounds \[1, 300\] of covariate WT"
    check(cp.DataError, msg, cp.simulate, bounded, data=data)
    check(cp.DataError, msg, cp.fit, bounded, data, method="map", steps=5, progress=False)
    ok = cp.read_nonmem(_weights_frame([70.0, 70.0, 70.0, 60.0, 300.0, 60.0]))
    assert FitData.build(bounded, ok).covariates["WT"].tolist() == [70.0, 60.0]  # closed bounds


def test_virtual_population_covariate_outside_its_bounds(bounded: cp.ModelSpec) -> None:
    # normal(70, 200) draws some weights below 1 kg among 50 subjects (seed 0)
    check(cp.SpecError, r"^VirtualPopulation: covariates\['WT'\] gives \d+ of 50 values outside "
          r"its bounds \[1, 300\] in .* \(first: subject \d+, -?[\d.]+\)",
          cp.VirtualPopulation, bounded, 50, covariates={"WT": "normal(70, 200)"},
          seed=0)  # fmt: skip
    check(cp.SpecError, r"^VirtualPopulation.from_arrays: covariates\['WT'\] gives 1 of 2 values "
          r"outside its bounds \[1, 300\] in .* \(first: subject 1, 0\)",
          cp.VirtualPopulation.from_arrays, bounded, covariates={"WT": [70.0, 0.0]})  # fmt: skip
    pop = cp.VirtualPopulation(bounded, 50, covariates={"WT": "uniform(1, 300)"}, seed=0)
    assert pop.covariates["WT"].min() >= 1.0


def test_sweep_and_with_values_check_covariate_bounds(bounded: cp.ModelSpec) -> None:
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    check(cp.SpecError, r"sweep: samples\['WT'\]\[1\] = 0\.0 lies outside its bounds",
          cp.sweep, bounded, reg, [0.0, 1.0], {"WT": [70.0, 0.0]},
          metrics={"cmax": cp.metrics.cmax("conc")})  # fmt: skip
    check(cp.SpecError, r"with_values: WT: 0\.0 lies outside bounds \[1\.0, 300\.0\]",
          bounded.with_values, WT=0.0)  # fmt: skip


# ---------------------------------------------------------------------- units
@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '"central ->" = "CL / V"',
            '"central ->" = "CL"',
            r"base\.toml: flows\.'central ->': rate has unit L/h, expected 1/h$",
        ),
        (
            'kin = { value = 1.0, unit = "1/h" }',
            'kin = { value = 24.0, unit = "1/d" }',
            r"base\.toml: states\.marker\.initial: the initial value has unit h/d, expected 1 "
            r"\(the same dimension, but 1 h/d = 0\.0416667 1; units are not converted\)$",
        ),
        (
            'unit = "mg/L", error',
            'unit = "ng/mL", error',
            r"base\.toml: observations\.conc\.expr: the expression has unit mg/L, expected "
            r"ng/mL \(the same dimension, but 1 mg/L = 1000 ng/mL; units are not converted\)$",
        ),
        (
            'V = { value = 10.0, unit = "L" }',
            'V = { value = 10.0, unit = "litre_s" }',
            r"base\.toml: parameters\.V\.unit: unknown unit 'litre_s' \('litre_s' is not "
            r"defined in the unit registry\); expected a unit such as",
        ),
        ('time_unit = "h"\n', "", r"base\.toml: model\.time_unit: missing; every model"),
        ('amount_unit = "mg"\n', "", r"base\.toml: model\.amount_unit: missing; every model"),
    ],
    ids=["flow-unit", "rate-in-days", "obs-scale", "unknown-unit", "no-time", "no-amount"],
)
def test_model_unit_errors(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = tmp_path / "base.toml"
    path.write_text(edit(old, new), encoding="utf-8")
    check(cp.SpecError, message, cp.load_model, path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"amount": "1e6 bananas"}, r"Dose: amount = '1e6 bananas' is not a number with a unit"),
        ({"amount": 1.0, "duration": "2 mg"}, r"Dose: duration = '2 mg' is not a time"),
        ({"amount": 1.0, "per": "m2"}, r"Dose: per = 'm2'; expected 'kg'"),
        ({"amount": 1.0, "per": "kg", "rate": 2.0}, r"Dose: per='kg' with a rate"),
        ({"time": "1 d", "amount": 1.0}, r"Dose: time = '1 d' is not a number; give the record"),
    ],
)
def test_dose_unit_strings(kwargs: dict, message: str) -> None:
    kwargs = {"time": 0.0, **kwargs}
    check(cp.DosingError, message, cp.Dose, cmt="central", **kwargs)


def test_dose_units_that_do_not_convert(iv: cp.ModelSpec) -> None:
    check(cp.DosingError, r"^simulate: a dose per kg of body weight, but one_cmt_iv has no "
          r"body weight \(a body_weight or WT covariate", cp.simulate, iv,
          cp.Regimen([cp.Dose(0.0, "5 mg/kg", "central")]), [0.0, 1.0])  # fmt: skip
    per_kg = cp.Regimen([cp.Dose(0.0, 5.0, "central", per="kg")])
    check(cp.DosingError, r"^simulate: a dose per kg of body weight, but one_cmt_iv has no",
          cp.simulate, iv, per_kg, [0.0, 1.0])  # fmt: skip
    check(cp.DosingError, r"^Dose into 'central': amount in cells does not convert to the "
          r"model's amount unit mg \(nor mg per kg of body weight\)$", cp.simulate, iv,
          cp.Regimen([cp.Dose(0.0, "1e6 cells", "central")]), [0.0, 1.0])  # fmt: skip
    check(cp.DosingError, r"^Dose into 'central': amount 5 mg/kg needs the subject's body "
          r"weight \[kg\]", cp.Dose(0.0, "5 mg/kg", "central").resolve, iv)  # fmt: skip
    twice = cp.Dose(0.0, "5 mg/kg", "central", per="kg")
    check(cp.DosingError, r"^Dose into 'central': amount 5 mg/kg is already per kg; per='kg' "
          r"would multiply", twice.resolve, iv, 70.0)  # fmt: skip


# ---------------------------------------------------------------------- traced values
# Inside jax.grad / jit / vmap the numbers of a dose are tracers: their ranges are checked
# with equinox.error_if when the program runs (the message is in the runtime error); what
# selects compiled machinery (flags, slot counts, output grids) must be concrete.
TRACED_DOSES = {
    "negative amount": ("amount", -1.0, {}, r"Dose: amount \(traced\) must be finite and >= 0"),
    "NaN time": ("time", math.nan, {}, r"Dose: time \(traced\) must be finite and >= 0"),
    "negative duration": ("duration", -1.0, {}, r"Dose: duration \(traced\) must be finite"),
    "negative lag": ("lag", -0.5, {}, r"Dose: lag \(traced\) must be finite and >= 0"),
    "negative bioavailability": ("bioavailability", -0.1, {}, r"bioavailability \(traced\)"),
    "rate zero": ("rate", 0.0, {}, r"Dose: rate \(traced\) must be > 0"),
    "ss with ii zero": ("ii", 0.0, {"ss": 1}, r"Dose: ss = 1 needs a dosing interval ii > 0"),
}


@pytest.mark.parametrize("transform", ["jit", "grad"])
@pytest.mark.parametrize("case", sorted(TRACED_DOSES))
def test_bad_traced_dose_value_raises_when_run(case: str, transform: str) -> None:
    import jax

    field, value, extra, what = TRACED_DOSES[case]

    def build(v):
        kw = {"time": 0.0, "amount": 100.0, "cmt": "central", **extra, field: v}
        return getattr(cp.Dose(**kw), field)

    fn = jax.jit(build) if transform == "jit" else jax.grad(build)
    with pytest.raises(Exception, match=what):
        jax.block_until_ready(fn(value))


@pytest.mark.parametrize(
    "field, what", [("ss", "selects steady-state dosing"), ("reset", "selects a reset"),
                    ("cmt", "names the dosed state")],
)  # fmt: skip
def test_traced_dose_flag_is_rejected(field: str, what: str) -> None:
    import jax

    def build(v):
        kw = {"time": 0.0, "amount": 100.0, "cmt": "central", "ii": 12.0, field: v}
        return cp.Dose(**kw).amount

    check(cp.DosingError, rf"^Dose: {field} is a traced JAX value; it is a flag that {what}",
          jax.jit(build), 1)  # fmt: skip


def test_traced_dose_array_is_rejected() -> None:
    import jax
    import jax.numpy as jnp

    build = jax.jit(lambda a: cp.Dose(0.0, a, "central").amount)
    check(cp.DosingError, r"^Dose: amount is a traced array of shape \(3,\)", build, jnp.ones(3))


def test_regimen_repeat_traced_count_and_interval() -> None:
    import jax

    dose = cp.Dose(0.0, 100.0, "central")
    check(cp.DosingError, r"^Regimen\.repeat: count is a traced JAX value; it sets the number",
          jax.jit(lambda c: cp.Regimen.repeat(dose, 24.0, c).doses[0].amount), 3)  # fmt: skip
    last_time = jax.jit(lambda i: cp.Regimen.repeat(dose, i, 3).doses[-1].time)
    assert float(last_time(24.0)) == 48.0
    with pytest.raises(Exception, match=r"Regimen\.repeat: interval \(traced\) must be > 0"):
        jax.block_until_ready(last_time(0.0))


def test_traced_steady_state_infusion_takes_the_default_slots() -> None:
    import jax

    from cellpkpd.engine.dosing import SS_MODEL_SLOTS

    def slots(dur, ss_overlap):
        reg = cp.Regimen([cp.Dose(0.0, 100.0, "central", duration=dur, ss=1, ii=12.0)])
        return reg.to_arrays(2, ["central"], ss_overlap=ss_overlap).ss_overlap

    # the slots fix the compiled shape: a traced duration cannot size them, so they are
    # those of a model-decided length (a solve that needs more reports status 7)
    assert jax.jit(lambda d: jax.numpy.zeros(slots(d, None)))(30.0).shape == (SS_MODEL_SLOTS,)
    assert jax.jit(lambda d: jax.numpy.zeros(slots(d, 6)))(30.0).shape == (6,)
    assert slots(30.0, None) == 2  # concrete: ceil(30 / 12) - 1


def test_traced_values_at_the_concrete_edge_say_what_to_differentiate(
    iv: cp.ModelSpec, bolus: cp.Regimen
) -> None:
    import jax
    import jax.numpy as jnp

    def simulate_cl(cl):
        return cp.simulate(iv, bolus, T, params={"CL": cl})["conc"].values.sum()

    check(cp.SpecError, r"^simulate: params\['CL'\] is a traced JAX value; .* use cp\.Simulator",
          jax.grad(simulate_cl), 2.0)  # fmt: skip

    def simulate_amount(a):
        reg = cp.Regimen([cp.Dose(0.0, a, "central")])
        return cp.simulate(iv, reg, T)["conc"].values.sum()

    check(cp.SpecError, r"^simulate: regimen event 0 amount is a traced JAX value",
          jax.jit(simulate_amount), 1.0)  # fmt: skip
    check(cp.SpecError, r"^Simulator: times are traced JAX values; .* sim\(params, doses, times\)",
          jax.jit(lambda t: cp.Simulator(iv, jnp.stack([t]))), 1.0)  # fmt: skip
    check(cp.SpecError, r"^VirtualPopulation: typical\['CL'\] is a traced JAX value; .* "
          r"differentiate through cp\.Simulator",
          jax.jit(lambda cl: cp.VirtualPopulation(iv, 4, typical={"CL": cl}).params["CL"]),
          2.0)  # fmt: skip
    check(cp.SpecError, r"^value_at: time is a traced JAX value; it fixes a time of the output",
          jax.jit(lambda t: cp.metrics.value_at("conc", t).time), 1.0)  # fmt: skip
    check(cp.SpecError, r"^auc: start is a traced JAX value; a window bound",
          jax.jit(lambda t: cp.metrics.auc("conc", start=t).start), 1.0)  # fmt: skip
    res = cp.simulate(iv, bolus, T)
    metric_on_result = jax.jit(lambda x: cp.metrics.time_above("conc", x)(res).values)
    check(cp.SpecError, r"^metric time_above_conc: threshold is a traced JAX value; .* "
          r"metric\.reduce", metric_on_result, 1.0)  # fmt: skip
