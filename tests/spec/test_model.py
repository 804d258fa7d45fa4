# (the DESIGN.md example below is copied verbatim, long lines included)
"""Tests of cellpkpd.spec.model: model files and Python construction, the bundled library,
structural linearity, and packaging of the library in a wheel."""

from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

import cellpkpd as cp
import cellpkpd.spec.model
from cellpkpd.spec.model import models_dir

ROOT = Path(__file__).resolve().parents[2]
DESIGN = Path("/work/shared/DESIGN.md")
LIBRARY = ("one_cmt_iv", "one_cmt_oral", "two_cmt_iv")

# The example model file of DESIGN.md ("a user's file must load exactly like this"), verbatim.
from conftest import DESIGN_EXAMPLE  # noqa: E402


def _python_example() -> dict:
    """The DESIGN.md example as nested Python dicts (ModelSpec.from_dict)."""
    inf = math.inf
    return {
        "model": {
            "name": "one_cmt_mm_idr",
            "description": (
                "One compartment, Michaelis-Menten elimination, indirect-response biomarker"
            ),
            "time_unit": "h",
            "amount_unit": "mg",
            "references": [
                "Dayneka NL, Garg V, Jusko WJ. J Pharmacokinet Biopharm 1993;21:457-478"
            ],
        },
        "parameters": {
            "V": {
                "value": 10.0,
                "unit": "L",
                "bounds": [0.0, inf],
                "prior": "lognormal(log(10), 0.5)",
            },
            "Vmax": {"value": 5.0, "unit": "mg/h", "bounds": [0.0, inf]},
            "Km": {"value": 2.0, "unit": "mg/L", "bounds": [0.0, inf]},
            "kin": {"value": 10.0, "unit": "1/h"},
            "kout": {"value": 0.5, "unit": "1/h"},
            "IC50": {"value": 1.0, "unit": "mg/L"},
        },
        "covariates": {
            "inflammation": {
                "value": 1.0,
                "unit": "1",
                "description": "host inflammation relative to typical",
            }
        },
        "states": {
            "central": {"initial": 0.0, "unit": "mg"},
            "marker": {"initial": "kin * inflammation / kout", "unit": "1"},
        },
        "derived": {"C": "central / V"},
        "flows": {},
        "odes": {
            "central": "-Vmax * C / (Km + C)",
            "marker": "kin * inflammation * (1 - C / (IC50 + C)) - kout * marker",
        },
        "observations": {
            "conc": {"expr": "C", "unit": "mg/L", "error": "proportional"},
            "biomarker": {"expr": "marker", "unit": "1", "error": "additive"},
        },
        "dosing": {"central": {"lag": "0", "bioavailability": "1"}},
    }


def _linear_base(**blocks: dict) -> dict:
    """A small one-compartment model; `blocks` replace or add blocks."""
    data = {
        "model": {"name": "base", "time_unit": "h", "amount_unit": "mg"},
        "parameters": {"CL": 2.0, "V": 10.0, "kin": 1.0, "kout": 0.1},
        "states": {"central": 0.0, "marker": "kin / kout"},
        "flows": {"central ->": "CL / V"},
        "observations": {"conc": "central / V"},
    }
    data.update(blocks)
    return data


@pytest.fixture(scope="module")
def example_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "one_cmt_mm_idr.toml"
    path.write_text(DESIGN_EXAMPLE, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def example(example_path: Path) -> cp.ModelSpec:
    return cp.load_model(example_path)


# ---------------------------------------------------------------------- DESIGN example
@pytest.mark.skipif(not DESIGN.exists(), reason="DESIGN.md not beside this checkout")
def test_design_example_is_copied_verbatim() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DESIGN.read_text(encoding="utf-8"), re.S)
    assert DESIGN_EXAMPLE in blocks


def test_design_example_model_block(example: cp.ModelSpec, example_path: Path) -> None:
    assert example.name == "one_cmt_mm_idr"
    assert example.description.startswith("One compartment, Michaelis-Menten elimination")
    assert example.time_unit == "h"
    assert example.amount_unit == "mg"
    assert example.references == (
        "Dayneka NL, Garg V, Jusko WJ. J Pharmacokinet Biopharm 1993;21:457-478",
    )
    assert example.source == str(example_path)
    assert example.stiff is False


def test_design_example_parameters(example: cp.ModelSpec) -> None:
    p = example.parameters
    assert list(p) == ["V", "Vmax", "Km", "kin", "kout", "IC50"]  # file order
    assert p["V"].value == 10.0
    assert p["V"].unit == "L"
    assert p["V"].bounds == (0.0, math.inf)
    assert p["V"].prior == "lognormal(log(10), 0.5)"
    assert (p["Vmax"].value, p["Vmax"].unit) == (5.0, "mg/h")
    assert (p["Km"].value, p["Km"].unit) == (2.0, "mg/L")
    assert (p["kin"].value, p["kout"].value, p["IC50"].value) == (10.0, 0.5, 1.0)
    # no bounds given: unbounded; no prior given: None
    assert p["kin"].bounds == (-math.inf, math.inf)
    assert p["kin"].prior is None
    assert cellpkpd.spec.model.parse_prior(p["V"].prior, "V") == ("lognormal", (math.log(10), 0.5))


def test_design_example_covariates_states_derived(example: cp.ModelSpec) -> None:
    cov = example.covariates["inflammation"]
    assert (cov.value, cov.unit) == (1.0, "1")
    assert cov.description == "host inflammation relative to typical"
    assert list(example.states) == ["central", "marker"]
    assert example.state_names == ("central", "marker")
    central, marker = example.states["central"], example.states["marker"]
    assert central.unit == "mg"
    assert central.initial.is_constant
    assert float(central.initial({})) == 0.0
    assert marker.initial.names == {"kin", "inflammation", "kout"}
    assert float(marker.initial(example.defaults())) == pytest.approx(20.0)
    assert list(example.derived) == ["C"]
    assert example.derived["C"].source == "central / V"
    assert example.flows == ()
    assert example.odes["central"].source == "-Vmax * C / (Km + C)"
    assert example.odes["marker"].names == {"kin", "inflammation", "C", "IC50", "kout", "marker"}


def test_design_example_observations_and_dosing(example: cp.ModelSpec) -> None:
    obs = example.observations
    assert list(obs) == ["conc", "biomarker"]
    assert (obs["conc"].expr.source, obs["conc"].unit, obs["conc"].error) == (
        "C",
        "mg/L",
        "proportional",
    )
    assert (obs["biomarker"].expr.source, obs["biomarker"].error) == ("marker", "additive")
    assert list(example.dosing) == ["central"]
    rule = example.dosing["central"]
    assert (rule.lag.source, rule.bioavailability.source) == ("0", "1")
    assert rule.rate is None
    assert rule.duration is None


def test_design_example_is_nonlinear(example: cp.ModelSpec) -> None:
    assert example.is_linear is False
    assert "nonlinear" in example.summary()


def test_design_example_defaults(example: cp.ModelSpec) -> None:
    assert example.defaults() == {
        "V": 10.0,
        "Vmax": 5.0,
        "Km": 2.0,
        "kin": 10.0,
        "kout": 0.5,
        "IC50": 1.0,
        "inflammation": 1.0,
    }


def test_design_example_simulates_at_baseline(example: cp.ModelSpec) -> None:
    # no dose: the biomarker stays at its baseline kin * inflammation / kout = 20
    res = cp.simulate(example, None, [0.0, 12.0], covariates={"inflammation": 2.0})
    np.testing.assert_allclose(res["biomarker"].values, [[40.0, 40.0]], rtol=1e-8)
    np.testing.assert_array_equal(res["conc"].values, [[0.0, 0.0]])


def test_from_dict_builds_the_same_model_as_toml(example: cp.ModelSpec) -> None:
    built = cp.ModelSpec.from_dict(_python_example())
    assert built.source == "<python>"
    assert dataclasses.replace(built, source="x") == dataclasses.replace(example, source="x")
    assert built.is_linear == example.is_linear


def test_from_toml_and_load_model_agree(example_path: Path, example: cp.ModelSpec) -> None:
    assert cp.ModelSpec.from_toml(example_path) == example
    assert cp.load_model(str(example_path)) == example


def test_spec_is_immutable(example: cp.ModelSpec) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        example.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        example.parameters["V"] = None  # type: ignore[index]


# ---------------------------------------------------------------------- library
@pytest.mark.parametrize("name", LIBRARY)
def test_library_model_loads_by_name(name: str) -> None:
    spec = cp.load_model(name)
    assert spec.name == name
    assert spec.is_linear
    assert spec.description
    assert spec.references and all(r.strip() for r in spec.references)
    assert spec.time_unit == "h"
    assert spec.amount_unit == "mg"
    for p in spec.parameters.values():
        assert p.unit, f"{name}: parameter {p.name} has no unit"
        assert p.bounds[0] >= 0.0
        assert p.prior is not None
        assert p.bounds[0] <= p.value <= p.bounds[1]
    for s in spec.states.values():
        assert s.unit, f"{name}: state {s.name} has no unit"
    assert "conc" in spec.observations
    assert spec.observations["conc"].unit == "mg/L"
    assert Path(spec.source).name == f"{name}.toml"


def test_library_model_structure() -> None:
    iv, oral, two = (cp.load_model(n) for n in LIBRARY)
    assert list(iv.states) == ["central"]
    assert [(f.source, f.target) for f in iv.flows] == [("central", None)]
    assert list(oral.states) == ["depot", "central"]  # CMT 1 = depot, CMT 2 = central
    assert set(oral.parameters) == {"ka", "CL", "V"}
    assert "depot" in oral.dosing
    assert list(two.states) == ["central", "peripheral"]
    assert set(two.parameters) == {"CL", "V1", "Q", "V2"}
    assert {f.key for f in two.flows} == {
        "central ->",
        "central -> peripheral",
        "peripheral -> central",
    }


def test_list_models_includes_library_with_descriptions() -> None:
    models = cp.list_models()
    assert isinstance(models, dict)
    for name in LIBRARY:
        assert name in models
        assert models[name] == cp.load_model(name).description.splitlines()[0]
        assert "\n" not in models[name]


def test_models_dir_holds_the_library() -> None:
    for name in LIBRARY:
        assert (models_dir() / f"{name}.toml").is_file()


def test_load_model_passes_a_spec_through(example: cp.ModelSpec) -> None:
    assert cp.load_model(example) is example


# ---------------------------------------------------------------------- with_values
def test_with_values_returns_a_changed_copy(example: cp.ModelSpec) -> None:
    changed = example.with_values(V=20.0, inflammation=3.0)
    assert changed.parameters["V"].value == 20.0
    assert changed.parameters["V"].unit == "L"  # the rest of the parameter is kept
    assert changed.parameters["V"].prior == example.parameters["V"].prior
    assert changed.covariates["inflammation"].value == 3.0
    assert changed.defaults()["V"] == 20.0
    # the original is unchanged
    assert example.parameters["V"].value == 10.0
    assert example.covariates["inflammation"].value == 1.0
    assert changed.states == example.states
    assert changed.name == example.name


def test_with_values_rejects_unknown_names(example: cp.ModelSpec) -> None:
    with pytest.raises(cp.SpecError, match=r"with_values: unknown name 'VV'; known: V, Vmax"):
        example.with_values(VV=1.0)


# ---------------------------------------------------------------------- derived order
def test_derived_may_use_a_later_defined_derived() -> None:
    spec = cp.ModelSpec.from_dict(
        _linear_base(
            derived={"k_total": "k_el + k_extra", "k_el": "CL / V", "k_extra": "0.1 * k_el"},
            flows={"central ->": "k_total"},
        )
    )
    order = list(spec.derived)
    assert set(order) == {"k_total", "k_el", "k_extra"}
    assert order.index("k_el") < order.index("k_extra") < order.index("k_total")
    # evaluating in that order gives the value
    env = spec.defaults()
    for name, e in spec.derived.items():
        env[name] = e(env)
    assert float(env["k_total"]) == pytest.approx(1.1 * 2.0 / 10.0)
    assert spec.is_linear  # flow rate from derived constants only


def test_derived_depending_on_a_state_makes_a_flow_nonlinear() -> None:
    spec = cp.ModelSpec.from_dict(
        _linear_base(
            parameters={"Vmax": 5.0, "Km": 2.0, "V": 10.0, "kin": 1.0, "kout": 0.1},
            derived={"k_mm": "Vmax / (Km + C) / V", "C": "central / V"},
            flows={"central ->": "k_mm"},
        )
    )
    assert list(spec.derived) == ["C", "k_mm"]
    assert not spec.is_linear


# ---------------------------------------------------------------------- linearity
def test_affine_ode_with_zero_order_input_is_linear() -> None:
    spec = cp.ModelSpec.from_dict(_linear_base(odes={"marker": "kin - kout * marker"}))
    assert spec.is_linear


def test_affine_ode_through_derived_is_linear() -> None:
    spec = cp.ModelSpec.from_dict(
        _linear_base(
            derived={"C": "central / V"},
            odes={"marker": "kin * (1 - 0.5 * C) - kout * marker", "central": "-0.01 * C"},
        )
    )
    assert spec.is_linear


def test_flow_rate_depending_on_a_state_is_nonlinear() -> None:
    for rate in ("CL / (V + central)", "0.01 * central", "CL / V * marker", "exp(-central)"):
        spec = cp.ModelSpec.from_dict(_linear_base(flows={"central ->": rate}))
        assert not spec.is_linear, rate


def test_nonlinear_ode_is_nonlinear() -> None:
    for ode in ("-0.1 * marker * central", "-marker ** 2", "kin / (1 + central)"):
        spec = cp.ModelSpec.from_dict(_linear_base(odes={"marker": ode}))
        assert not spec.is_linear, ode


@pytest.mark.parametrize(
    "blocks",
    [
        {"flows": {"central ->": "CL / V * exp(-0.1 * t)"}},
        {"odes": {"marker": "kin * exp(-0.1 * t) - kout * marker"}},
        {"odes": {"marker": "kin * where(t < 24, 1, 0) - kout * marker"}},
        {"derived": {"k": "CL / V * (1 + t)"}, "flows": {"central ->": "k"}},
    ],
    ids=["flow", "ode", "ode-where", "derived"],
)
def test_use_of_time_makes_a_model_nonlinear(blocks: dict) -> None:
    assert not cp.ModelSpec.from_dict(_linear_base(**blocks)).is_linear


def test_time_in_an_observation_keeps_the_model_linear() -> None:
    # observations do not enter the dynamics
    spec = cp.ModelSpec.from_dict(_linear_base(observations={"conc": "central / V * (1 + t)"}))
    assert spec.is_linear


# ---------------------------------------------------------------------- packaging
@pytest.mark.slow
def test_library_models_are_in_the_wheel(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("cellpkpd-*.whl")
    source_models = sorted(p.name for p in (ROOT / "models").glob("*.toml"))
    assert set(LIBRARY) <= {Path(n).stem for n in source_models}
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for model in source_models:
            member = f"cellpkpd/models/{model}"
            assert member in names, f"{member} missing from {wheel.name}"
            # and it is a valid model file
            cp.ModelSpec.from_dict(tomllib.loads(zf.read(member).decode()), source=member)
        zf.extractall(tmp_path / "site")
    # import the unpacked wheel (ahead of the editable install) and load by library name
    code = (
        "import cellpkpd as cp, pathlib, sys; "
        "root = pathlib.Path(sys.argv[1]).resolve(); "
        "assert pathlib.Path(cp.__file__).resolve().is_relative_to(root), cp.__file__; "
        "spec = cp.load_model('one_cmt_iv'); "
        "assert pathlib.Path(spec.source).resolve().is_relative_to(root), spec.source; "
        "assert set(sys.argv[2:]) <= set(cp.list_models()); print('ok')"
    )
    site = tmp_path / "site"
    out = subprocess.run(
        [sys.executable, "-c", code, str(site), *LIBRARY],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"},
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_describe_lists_states_flows_and_parameters_with_units() -> None:
    spec = cp.load_model("two_cmt_iv")
    text = cp.describe(spec)
    assert text.startswith("# two_cmt_iv")
    for name, p in spec.parameters.items():
        assert f"| {name}" in text and p.unit in text
    assert re.search(r"\| central +\| peripheral +\| Q / V1", text)
    assert "(loss)" in text
    table = cp.parameter_table("two_cmt_iv")
    assert list(table["name"]) == list(spec.parameters)
    assert table.loc[table["name"] == "CL", "unit"].item() == "L/h"


def test_describe_and_modelspec_render_as_markdown_in_jupyter() -> None:
    """Issue 18: as a Jupyter cell's value, cp.describe(spec) and a ModelSpec show the
    rendered Markdown tables (IPython asks for _repr_markdown_), not an escaped string; the
    description is still a plain str for printing and saving."""
    spec = cp.load_model("two_cmt_iv")
    text = cp.describe(spec)
    assert isinstance(text, str) and type(text).__name__ == "Description"
    assert text._repr_markdown_() == str(text)
    assert spec._repr_markdown_() == str(text)
    assert "## Parameters" in text and re.search(r"\| CL +\| 2 +\| L/h", text)


_DOSED = """
[model]
name = "dosed"
time_unit = "h"
amount_unit = "mg"
[parameters]
CL = { value = 2.0, unit = "L/h", bounds = [0.0, inf], prior = "lognormal(log(2), 1)", description = "clearance" }
V = { value = 10.0, unit = "L", bounds = [0.0, inf], prior = "lognormal(log(10), 1)", description = "volume" }
[states]
central = { initial = 0.0, unit = "mg" }
[flows]
"central ->" = "CL / V"
[observations]
frac = { expr = "central / max(dosed_central, 1)", unit = "1", error = "additive" }
"""  # noqa: E501


def test_dosed_state_is_the_total_dosed_by_regimen_or_data(tmp_path: Path) -> None:
    """``dosed_<state>``: the subject's total AMT into the state, whatever the regimen or
    data set (ADDL copies included, before bioavailability); without doses the fraction is
    0, not 0/0."""
    import pandas as pd

    path = tmp_path / "dosed.toml"
    path.write_text(_DOSED)
    spec = cp.load_model(path)
    assert spec.dosed_names == ("dosed_central",)
    k, times = 0.2, np.array([1.0, 30.0])
    regs = [
        cp.Regimen([cp.Dose(0.0, 100.0, "central")]),
        cp.Regimen([cp.Dose(0.0, 300.0, "central", bioavailability=0.5)]),
        cp.Regimen([]),
    ]
    res = cp.simulate(spec, regs, times)
    np.testing.assert_allclose(res["frac"].values[0], np.exp(-k * times), rtol=1e-12)
    np.testing.assert_allclose(res["frac"].values[1], 0.5 * np.exp(-k * times), rtol=1e-12)
    np.testing.assert_array_equal(res["frac"].values[2], 0.0)
    # a data set: 100 mg with ADDL = 2 every 12 h (300 mg in all) and a second subject
    df = pd.DataFrame(
        {"ID": [1, 1, 2, 2], "TIME": [0.0, 30.0, 0.0, 30.0], "AMT": [100.0, 0, 50.0, 0],
         "EVID": [1, 0, 1, 0], "CMT": 1, "II": [12.0, 0, 0, 0], "ADDL": [2, 0, 0, 0]}
    )  # fmt: skip
    sim = cp.simulate(spec, data=cp.read_nonmem(df))
    a30 = 100.0 * sum(np.exp(-k * (30.0 - t)) for t in (0.0, 12.0, 24.0))
    np.testing.assert_allclose(sim["frac"].values[:, 1], [a30 / 300.0, np.exp(-6.0)], rtol=1e-12)


def test_dosed_prefix_is_reserved(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(_DOSED.replace("[states]", "[covariates]\ndosed_x = 1.0\n[states]"))
    with pytest.raises(cp.SpecError, match=r"covariates.dosed_x.*'dosed_x' is reserved"):
        cp.load_model(path)
    path.write_text(_DOSED.replace("dosed_central", "dosed_periph"))
    with pytest.raises(cp.SpecError, match=r"unknown name 'dosed_periph'.*dosed_<state>"):
        cp.load_model(path)


def test_output_unit_is_one_rule_for_states_observations_and_derived_names() -> None:
    from cellpkpd.spec.model import output_unit

    data = tomllib.loads(DESIGN_EXAMPLE)
    data["states"]["central"] = {"initial": 0.0}  # no unit: the model's amount unit
    data["derived"] = {"C": {"expr": "central / V", "unit": "mg/L"}, "twice": "2 * C"}
    spec = cp.ModelSpec.from_dict(data)
    assert output_unit(spec, "central") == "mg" and output_unit(spec, "marker") == "1"
    assert output_unit(spec, "conc") == "mg/L"  # an observation: its own unit
    assert output_unit(spec, "C") == "mg/L" and output_unit(spec, "twice") == ""
    assert output_unit(spec, "not_an_output") == ""
    # metrics and plots use the same rule
    from cellpkpd.plots._common import unit_of

    assert cp.metrics.output_unit is output_unit
    assert unit_of("central", None, spec) == "mg" and unit_of("central", {"unit": "g"}, spec) == "g"
