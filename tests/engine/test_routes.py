"""[routes]: one dose of N into a route puts N * fraction_s (an expression of the dose
record's parameters and covariates, in place of the state's [dosing] bioavailability) into
each state s of the route; it must equal the sum of the equivalent single-state doses."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest

import cellpkpd as cp
from cellpkpd._core.errors import DosingError, SpecError
from cellpkpd.cli.main import main

TIMES = np.array([0.5, 1.0, 3.0, 8.0])


def model(routes=None, nonlinear=False) -> cp.ModelSpec:
    d = {
        "model": {"name": "rt", "time_unit": "h", "amount_unit": "cells"},
        "parameters": {
            "k": {"value": 0.3},
            "kd": {"value": 0.1},
            "fv": {"value": 0.8},
        },
        "covariates": {"via": {"value": 0.9}},
        "states": {s: {"initial": 0.0} for s in ("a", "b", "dead")},
        "flows": {"a -> b": "k", "b ->": "kd", "dead ->": "kd"},
        # a route's fraction takes the place of this F = 0.5
        "dosing": {"a": {"bioavailability": "0.5"}},
        "routes": routes or {"iv": {"a": "fv * via", "dead": "1 - fv * via"}},
        "observations": {"share": {"expr": "(a + b) / max(dosed_dead, 1)", "error": "none"}},
    }
    if nonlinear:
        d["odes"] = {"b": "-0.01 * b * b"}
    return cp.ModelSpec.from_dict(d)


def cmt_doses(t, n, fa, **kw) -> list[cp.Dose]:
    """The route dose as two single-state doses ([dosing] F of 'a' is 0.5)."""
    rate = kw.pop("rate", None)
    ra = None if rate is None else rate * fa
    rd = None if rate is None else rate * (1 - fa)
    return [
        cp.Dose(t, n, "a", bioavailability=fa / 0.5, rate=ra, **kw),
        cp.Dose(t, n, "dead", bioavailability=1 - fa, rate=rd, **kw),
    ]


def states(res) -> np.ndarray:
    return np.stack([np.asarray(res[s]) for s in ("a", "b", "dead")])


@pytest.mark.parametrize(
    "solver, kw",
    [("exact", {}), ("exact", {"duration": 2.0}), ("exact", {"lag": 0.7}),
     pytest.param("tsit5", {"rate": 5e5}, marks=pytest.mark.slow)],
    ids=["exact-bolus", "exact-dur", "exact-lag", "ode-rate"],
)  # fmt: skip
def test_route_dose_equals_sum_of_cmt_doses(solver, kw):
    spec = model()
    fa = 0.8 * 0.9
    r1 = cp.Regimen([cp.Dose(0.0, 1e6, route="iv", **kw), cp.Dose(4.0, 2e5, "b")])
    r2 = cp.Regimen([*cmt_doses(0.0, 1e6, fa, **kw), cp.Dose(4.0, 2e5, "b")])
    a = states(cp.simulate(spec, r1, times=TIMES, solver=solver, rtol=1e-12, atol=1e-6))
    b = states(cp.simulate(spec, r2, times=TIMES, solver=solver, rtol=1e-12, atol=1e-6))
    # same events through the same engine: equal to rounding (rtol 1e-10)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-9)


def test_route_fractions_and_dosing_may_use_derived_names_of_parameters_and_covariates():
    """A [derived] name built from parameters and covariates alone (here f = fv * via) may
    stand in route fractions, [dosing] fields and initial values; the model reads as if the
    expression were written there (same results to rounding, rtol 1e-12)."""
    spec = model()
    d = {
        "model": {"name": "rt", "time_unit": "h", "amount_unit": "cells"},
        "parameters": {"k": {"value": 0.3}, "kd": {"value": 0.1}, "fv": {"value": 0.8}},
        "covariates": {"via": {"value": 0.9}},
        "states": {s: {"initial": 0.0} for s in ("a", "b", "dead")},
        "derived": {"f": "fv * via", "g": "2 * f", "a_level": "a / g"},
        "flows": {"a -> b": "k", "b ->": "kd", "dead ->": "kd"},
        "dosing": {"a": {"bioavailability": "0.5"}, "b": {"lag": "g"}},
        "routes": {"iv": {"a": "f", "dead": "1 - f"}},
        "observations": {"share": {"expr": "(a + b) / max(dosed_dead, 1)", "error": "none"}},
    }
    spec2 = cp.ModelSpec.from_dict(d)
    assert spec2.routes["iv"]["a"].source == "f"  # shown as written
    assert spec2.routes["iv"]["a"].names == {"fv", "via"}
    assert spec2.dosing["b"].lag.names == {"fv", "via"}
    reg = cp.Regimen([cp.Dose(0.0, 1e6, route="iv"), cp.Dose(1.0, 2e5, "b")])
    via = np.array([0.5, 0.9])
    a = states(cp.simulate(spec2, reg, times=TIMES, covariates={"via": via}))
    reg_b = cp.Regimen([cp.Dose(0.0, 1e6, route="iv"), cp.Dose(1.0, 2e5, "b", lag=2 * 0.8 * 0.5)])
    b = states(cp.simulate(spec, reg_b, times=TIMES, covariates={"via": 0.5}))
    np.testing.assert_allclose(a[:, :1], b, rtol=1e-12, atol=1e-9)
    d["routes"] = {"iv": {"a": "a_level"}}
    with pytest.raises(SpecError, match=r"routes\.iv\.a: unknown name 'a_level'"):
        cp.ModelSpec.from_dict(d)


def amt_model(**changes) -> dict:
    """model() whose route loses a dose-size-dependent share: loss = lmax * AMT / (AMT +
    D50), written once as a [derived] name that reads AMT (the dose record's amount)."""
    d = {
        "model": {"name": "rt_amt", "time_unit": "h", "amount_unit": "cells"},
        "parameters": {"k": {"value": 0.3}, "kd": {"value": 0.1}, "fv": {"value": 0.8},
                       "lmax": {"value": 0.5}, "D50": {"value": 1e6}},
        "covariates": {"via": {"value": 0.9}},
        "states": {s: {"initial": 0.0} for s in ("a", "b", "dead")},
        "derived": {"loss": "lmax * AMT / (AMT + D50)", "f": "fv * via * (1 - loss)"},
        "flows": {"a -> b": "k", "b ->": "kd", "dead ->": "kd"},
        "dosing": {"a": {"bioavailability": "0.5"}},
        "routes": {"iv": {"a": "f", "dead": "1 - f"}},
        "observations": {"share": {"expr": "(a + b) / max(dosed_dead, 1)", "error": "none"}},
    }  # fmt: skip
    d.update(changes)
    return d


def test_route_fraction_may_read_the_dose_amount_amt():
    """A route fraction (and a [dosing] field) may read AMT, the amount of the dose record,
    directly or through a [derived] name (as NONMEM's $PK reads the AMT data item): each dose
    of a regimen gets the fraction of its own size. Against single-state doses with the
    fractions computed by hand (rtol 1e-10); the derived name is not an output."""
    spec = cp.ModelSpec.from_dict(amt_model())
    assert spec.dose_time_derived == {"loss", "f"}
    assert spec.routes["iv"]["a"].names == {"fv", "via", "lmax", "AMT", "D50"}
    doses = [(0.0, 1e6), (4.0, 3e5)]
    reg = cp.Regimen([cp.Dose(t, n, route="iv") for t, n in doses])
    got = states(cp.simulate(spec, reg, times=TIMES * 2))
    fa = lambda n: 0.8 * 0.9 * (1 - 0.5 * n / (n + 1e6))
    ref = cp.Regimen([x for t, n in doses for x in cmt_doses(t, n, fa(n))])
    want = states(cp.simulate(model(), ref, times=TIMES * 2, covariates={"via": 0.9}))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-9)
    with pytest.raises(SpecError, match="unknown output 'loss'"):
        cp.Simulator(spec, TIMES, outputs=["loss"])


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"flows": {"a -> b": "k * (1 + AMT)", "b ->": "kd", "dead ->": "kd"}},
         r"flows\.'a -> b'.*'AMT' in .* is the amount of a dose record: only \[dosing\]"),
        ({"observations": {"x": {"expr": "a * loss", "error": "none"}}},
         r"observations\.x.*'loss' in .* reads AMT"),
        ({"states": {"a": {"initial": "AMT"}, "b": {}, "dead": {}}},
         r"states\.a\.initial.*'AMT'"),
        ({"parameters": {"AMT": {"value": 1.0}, "k": {"value": 0.3}, "kd": {"value": 0.1},
                         "fv": {"value": 0.8}, "lmax": {"value": 0.5}, "D50": {"value": 1e6}}},
         r"parameters\.AMT: 'AMT' is reserved"),
    ],
    ids=["flow", "observation-via-derived", "initial", "parameter-named-AMT"],
)  # fmt: skip
def test_amt_outside_dosing_and_routes_is_refused(changes, match):
    with pytest.raises(SpecError, match=match):
        cp.ModelSpec.from_dict(amt_model(**changes))


def test_route_fraction_from_covariates_per_subject():
    spec = model()
    via = np.array([0.5, 0.9])
    res = cp.simulate(
        spec, cp.Regimen([cp.Dose(0.0, 1e6, route="iv")]), times=TIMES, covariates={"via": via}
    )
    for i, v in enumerate(via):
        ref = cp.simulate(spec, cp.Regimen(cmt_doses(0.0, 1e6, 0.8 * v)), times=TIMES,
                          covariates={"via": v})  # fmt: skip
        # one subject of a batch vs the same subject alone (rtol 1e-10)
        np.testing.assert_allclose(states(res)[:, i], states(ref)[:, 0], rtol=1e-10, atol=1e-9)
    assert float(res["dead"][1, 0]) < float(res["dead"][0, 0])  # more viable, fewer dead


@pytest.mark.slow
def test_route_ss_dose_linear_equals_cmt_ss_doses_and_nonlinear_refused():
    spec = model()
    fa = 0.72
    r1 = cp.Regimen([cp.Dose(0.0, 1e6, route="iv", ss=1, ii=12.0)])
    r2 = cp.Regimen([
        cp.Dose(0.0, 1e6, "a", bioavailability=fa / 0.5, ss=1, ii=12.0),
        cp.Dose(0.0, 1e6, "dead", bioavailability=1 - fa, ss=2, ii=12.0),
    ])  # fmt: skip
    a = states(cp.simulate(spec, r1, times=TIMES))
    b = states(cp.simulate(spec, r2, times=TIMES))
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-9)
    with pytest.raises(DosingError, match=r"route 'iv'.*needs a linear model"):
        cp.simulate(model(nonlinear=True), r1, times=TIMES)


@pytest.mark.slow
def test_route_gradient_wrt_fraction_parameter_matches_central_difference():
    spec = model()
    sim = cp.Simulator(spec, times=TIMES, outputs=("dead",), solver="exact")
    reg = cp.Regimen([cp.Dose(0.0, 1e6, route="iv", duration=1.0)])

    @jax.jit  # compiled once, not op by op
    def f(fv):
        return sim(dict(fv=fv), reg)["dead"][2]

    g = float(jax.jit(jax.grad(f))(0.8))
    h = 1e-5
    fd = (float(f(0.8 + h)) - float(f(0.8 - h))) / (2 * h)
    # f is linear in fv (dead = N (1 - fv via) g(t)): central difference exact to rounding
    assert g == pytest.approx(fd, rel=1e-7)
    assert g < 0


@pytest.mark.slow
def test_dosed_counts_route_amount_for_each_state_and_msc_pbk_accounts_every_cell():
    spec = cp.load_model("msc_pbk")
    res = cp.simulate(spec, cp.Regimen([cp.Dose(0.0, 1e6, route="iv")]), times=[1.0, 72.0])
    total = sum(np.asarray(res[s]) for s in spec.states)
    # viable + dead + cleared = every cell of the dose (mass balance, to rounding)
    np.testing.assert_allclose(total, 1e6, rtol=1e-9)
    assert float(res["amount_given"][0]) == 1e6  # the result records the cells given
    # fractions of the dose divide by the route's N (cells_dosed counts the route dose's AMT
    # once, although route iv doses lung, venous and dead_blood); rtol 1e-12: one division
    for organ in ("lung", "liver", "spleen"):
        np.testing.assert_allclose(res[f"frac_{organ}"], res[organ] / 1e6, rtol=1e-12)


def test_dosed_state_counts_route_dose_amount():
    res = cp.simulate(model(), cp.Regimen([cp.Dose(0.0, 1e6, route="iv"), cp.Dose(1.0, 5.0, "a")]),
                      times=TIMES, outputs=("a", "b", "share"))  # fmt: skip
    # dosed_dead = the route dose's AMT 1e6 (the cmt dose into 'a' is not counted); rtol 1e-12
    np.testing.assert_allclose(res["share"], (res["a"] + res["b"]) / 1e6, rtol=1e-12)


def test_describe_lists_routes():
    text = cp.describe(model())
    assert "## Routes" in text and "1 - fv * via" in text


@pytest.mark.slow
def test_cli_route_and_default_route_dose_all_cells(capsys, tmp_path, monkeypatch):
    figures = []
    draw = cp.plots.biodistribution

    def spy(*args, **kw):
        figures.append(draw(*args, **kw))
        return figures[-1]

    monkeypatch.setattr(cp.plots, "biodistribution", spy)
    code = main(["simulate", "msc_pbk", "--dose", "1e6", "--end", "24", "--output", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert code == 0 and "route iv (lung, venous, dead_blood)" in out
    # the plot of a biodistribution model is the biodistribution figure: % of dose per
    # organ on a log axis, one line per frac_* organ
    (fig,) = figures
    (ax,) = fig.axes
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "fraction of dose [%]"
    assert len(ax.get_lines()) == sum(
        str(v).startswith("frac_") for v in cp.load_model("msc_pbk").observations
    )
    assert (tmp_path / "msc_pbk_simulation.png").stat().st_size > 10_000
    table = pd.read_csv(tmp_path / "msc_pbk_simulation.csv")
    spec = cp.load_model("msc_pbk")
    total = table[list(spec.states)].sum(axis=1).to_numpy()
    np.testing.assert_allclose(total[1:], 1e6, rtol=1e-9)  # viable + dead + cleared = dose
    code = main(["simulate", "msc_pbk", "--dose", "1e6", "--route", "ia", "--end", "2",
                 "--output", str(tmp_path)])  # fmt: skip
    out, _ = capsys.readouterr()
    assert code == 0 and "route ia (arterial, dead_blood)" in out
    code = main(["simulate", "msc_pbk", "--dose", "1", "--route", "nasal", "--output",
                 str(tmp_path)])  # fmt: skip
    _, err = capsys.readouterr()
    assert code != 0 and "--route nasal: unknown route" in err and "iv, ia" in err


@pytest.mark.parametrize(
    "routes, match",
    [
        ({"a": {"a": "1"}}, "routes.a: route name 'a' is already a state"),
        ({"iv": {"nowhere": "1"}}, "routes.iv.nowhere: unknown state 'nowhere'"),
        ({"iv": {"a": "fv * zz"}}, "routes.iv.a: unknown name 'zz'"),
        ({"iv": {}}, "routes.iv: expected a table state -> fraction"),
        ({"2iv": {"a": "1"}}, "'2iv' is not a valid name"),
    ],
)
def test_bad_routes_block_names_key(routes, match):
    with pytest.raises(SpecError, match=match):
        model(routes)


def test_dose_route_errors():
    with pytest.raises(DosingError, match="give cmt or route, not both"):
        cp.Dose(0.0, 1.0, "a", route="iv")
    with pytest.raises(DosingError, match="no target"):
        cp.Dose(0.0, 1.0)
    with pytest.raises(DosingError, match="unknown route 'po'; routes: iv"):
        cp.simulate(model(), cp.Regimen([cp.Dose(0.0, 1.0, route="po")]), times=TIMES)


def test_data_route_column_and_cmt_route_name_dose_the_route(tmp_path):
    spec = model()
    csv = tmp_path / "d.csv"
    csv.write_text(
        "ID,TIME,EVID,AMT,CMT,ROUTE,DV,via\n"
        "1,0,1,1e6,.,iv,.,0.5\n1,1,0,.,a,.,1,0.5\n1,3,0,.,dead,.,1,0.5\n"
        "2,0,1,1e6,iv,.,.,0.9\n2,1,0,.,a,.,1,0.9\n2,3,0,.,dead,.,1,0.9\n"
    )
    data = cp.read_nonmem(csv)
    subjects = data.subjects(spec)
    assert [s.regimen.doses[0].route for s in subjects] == ["iv", "iv"]
    res = cp.simulate(spec, data=data)
    np.testing.assert_array_equal(res["amount_given"], [1e6, 1e6])
    for i, v in enumerate((0.5, 0.9)):
        ref = cp.simulate(spec, cp.Regimen(cmt_doses(0.0, 1e6, 0.8 * v)), times=[1.0, 3.0],
                          covariates={"via": v})  # fmt: skip
        # the data set's route dose vs the two cmt doses (rtol 1e-10)
        for s in ("a", "dead"):
            got = np.asarray(res[s]).reshape(2, -1)[i, 1:]  # records at 1 and 3 h
            np.testing.assert_allclose(got, np.asarray(ref[s]).ravel(), rtol=1e-10)


def test_data_route_errors_name_row(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("ID,TIME,EVID,AMT,CMT,ROUTE\n1,0,1,1e6,a,iv\n")
    with pytest.raises(cp.DataError, match=r"row 1.*not both"):
        cp.read_nonmem(csv)
    csv.write_text("ID,TIME,EVID,AMT,ROUTE\n1,0,1,1e6,po\n")
    with pytest.raises(cp.DataError, match="ROUTE = po is not a route of model 'rt'"):
        cp.read_nonmem(csv).subjects(model())


def test_every_msc_pbk_route_accounts_every_cell_and_arterial_routes_favour_their_organ():
    """Each route of msc_pbk doses all N cells (viable part and dead part; a labelled route the
    label too): cells and label are each conserved to 1e-9 (mass balance, rounding only). A
    route into an organ's artery or the portal vein puts more viable cells in that organ at 1 h
    than IV does (first pass through that organ before the lung: the point of the route)."""
    spec = cp.load_model("msc_pbk")
    routes = list(spec.routes)
    regimens = [cp.Regimen([cp.Dose(0.0, 1e6, route=r, duration=1 / 60)]) for r in routes]
    res = cp.simulate(spec, regimens, times=[1.0, 72.0])
    label = [s for s in spec.states if s.startswith("lab_")]
    cells = [s for s in spec.states if s not in label]
    for i, r in enumerate(routes):
        np.testing.assert_allclose(sum(res[s].values[i] for s in cells), 1e6, rtol=1e-9)
        lab = sum(res[s].values[i] for s in label)
        np.testing.assert_allclose(lab, 1e6 if "labelled" in r else 0.0, rtol=1e-9, atol=1e-6)
    iv = routes.index("iv")
    for r, organ in [("ia_kidney", "kidney"), ("ia_heart", "heart"), ("ia_target", "target"),
                     ("intraportal", "liver")]:  # fmt: skip
        live = res[f"live_{organ}"].values[:, 0]
        assert live[routes.index(r)] > 10 * live[iv], (r, live[routes.index(r)], live[iv])
