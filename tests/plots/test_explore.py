"""cp.explore: sliders drive one compiled simulator, headlessly (no Jupyter kernel): set a
slider value, check the redrawn data against a closed form or a fresh cp.simulate, and that
the program was traced once however often the sliders moved."""

from __future__ import annotations

import numpy as np
import pytest

import cellpkpd as cp

pytest.importorskip("ipywidgets")

from conftest import check, infusion_amount


def _two_infusions_conc(times, amount, CL, V):
    """One compartment, `amount` [mg] infused over 1 h at 0 and at 12 h: conc [mg/L]."""
    first = infusion_amount(times, amount, 1.0, CL, V)
    return (first + infusion_amount(times, amount, 1.0, CL, V, t_start=12.0)) / V


def test_explore_one_compartment_sliders_redraw_closed_form_without_recompiling():
    reg = cp.Regimen.repeat(cp.Dose(0.0, 100.0, "central", duration=1.0), interval=12.0, count=2)
    times = np.linspace(0.0, 36.0, 73)
    ex = cp.explore("one_cmt_iv", reg, times, params=["CL"])
    assert set(ex.sliders) == {"CL", "dose"}  # no covariates; V left fixed
    cl = ex.sliders["CL"]
    # log slider over CL = 2 L/h x/÷ 10, labelled with its unit; the dose in mg
    assert type(cl).__name__ == "FloatLogSlider" and cl.description == "CL [L/h]"
    np.testing.assert_allclose([10**cl.min, 10**cl.max], [0.2, 20.0], rtol=1e-12)
    assert ex.sliders["dose"].description == "dose [mg]" and ex.sliders["dose"].value == 100.0
    assert "application/vnd.jupyter.widget-view+json" in ex._repr_mimebundle_()
    png = ex.image.value

    cl.value = 3.0
    ex.sliders["dose"].value = 250.0
    # exact path against the closed form: only float64 round-off remains
    expected = _two_infusions_conc(times, 250.0, CL=3.0, V=10.0)
    np.testing.assert_allclose(ex.data["conc"], expected, rtol=1e-10, atol=1e-12)
    assert ex.data["conc"].dtype == np.float64
    line = ex.figure.axes[0].lines[0]
    np.testing.assert_array_equal(line.get_ydata(), ex.data["conc"])
    assert ex.figure.axes[0].get_ylim()[1] >= expected.max()  # rescaled to the new curve
    assert ex.image.value != png  # the picture shown was redrawn
    assert ex.values == {"CL": 3.0, "dose": 250.0} and ex.status == ""

    ex.log = True  # log axes and back: the linear axis autoscales again
    assert ex.figure.axes[0].get_yscale() == "log"
    ex.log = False
    ax = ex.figure.axes[0]
    assert ax.get_yscale() == "linear" and ax.get_ylim()[1] >= expected.max()

    ex.reset()  # several sliders, one redraw, back to the model's values
    np.testing.assert_allclose(
        ex.data["conc"], _two_infusions_conc(times, 100.0, CL=2.0, V=10.0), rtol=1e-10, atol=1e-12
    )
    # five redraws, one trace: the slider values are inputs of the compiled program
    assert ex.traces == 1 and ex._run._cache_size() == 1


def test_explore_msc_pbk_covariate_body_weight_and_dose_match_simulate():
    """A cell model: route dose per kg, the viability covariate, body weight (the per-kg
    dose follows it) and the dose; the biodistribution view redraws too."""
    reg = cp.Regimen([cp.Dose(0.0, 4e7, per="kg", route="iv")])
    times = np.linspace(0.0, 72.0, 37)
    ex = cp.explore("msc_pbk", reg, times, params=["body_weight"], covariates=["viability"])
    assert list(ex.sliders) == ["body_weight", "viability", "dose"]
    assert ex.sliders["dose"].description == "dose [cells/kg]"
    via = ex.sliders["viability"]
    assert type(via).__name__ == "FloatSlider" and (via.min, via.max) == (0.0, 1.0)  # bounds
    assert len(ex.figure.axes) == 4  # the first 4 observations
    assert ex.biodistribution_figure is not None and ex.view == "time course"

    via.value = 0.6
    ex.sliders["body_weight"].value = 0.03
    ex.sliders["dose"].value = 8e7
    ex.view = "biodistribution"
    compared = ["viable_total", "viable_lung", "frac_lung", "frac_liver"]
    res = cp.simulate(
        "msc_pbk",
        cp.Regimen([cp.Dose(0.0, 8e7, per="kg", route="iv")]),
        times,
        params={"body_weight": 0.03},
        covariates={"viability": 0.6},
        outputs=compared,
    )
    # same exact-path arithmetic on both sides: 1e-10 leaves room for the summation order.
    # A few outputs of the one program stand for all (fewer outputs: a quicker compile here)
    for name in compared:
        np.testing.assert_allclose(ex.data[name], res[name].values[0], rtol=1e-10, err_msg=name)
    assert res["amount_given"].values[0] == pytest.approx(8e7 * 0.03)
    organs = {ln.get_label(): ln for ln in ex.biodistribution_figure.axes[0].lines}
    np.testing.assert_array_equal(organs["lung"].get_ydata(), 100.0 * ex.data["frac_lung"])
    assert ex.traces == 1 and ex._run._cache_size() == 1


def test_explore_bad_names_raise_one_line_errors():
    """Checked before anything is compiled."""
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    times = [0.0, 1.0, 2.0]
    check(cp.SpecError, r"params names unknown 'Cl'; known: CL, V", cp.explore,
          "one_cmt_iv", reg, times, params=["Cl"])  # fmt: skip
    check(cp.SpecError, r"covariates names unknown 'wt'; known: none", cp.explore,
          "one_cmt_iv", reg, times, covariates=["wt"])  # fmt: skip
    check(cp.SpecError, r"'viability' is a covariate: pass it in covariates=", cp.explore,
          "msc_pbk", None, times, params=["viability"])  # fmt: skip
    check(cp.SpecError, r"outputs names unknown 'cp'; known: central, conc", cp.explore,
          "one_cmt_iv", reg, times, outputs=["cp"])  # fmt: skip
    check(cp.SpecError, r"ranges names 'V', which has no slider; sliders: CL, dose", cp.explore,
          "one_cmt_iv", reg, times, params=["CL"], ranges={"V": (1.0, 20.0)})  # fmt: skip
    check(cp.SpecError, r"'CL' is logarithmic; its range \[0, 10\] needs low > 0", cp.explore,
          "one_cmt_iv", reg, times, ranges={"CL": (0.0, 10.0)})  # fmt: skip
    check(cp.SpecError, r"'CL' starts at 50, outside its slider \[0.2, 20\]", cp.explore,
          "one_cmt_iv", reg, times, ranges={"CL": (0.2, 20.0)}, values={"CL": 50.0})  # fmt: skip
    check(cp.SpecError, r"values\['viability'\] = 1.5 is outside the covariate's bounds \[0, 1\]",
          cp.explore, "msc_pbk", None, times, values={"viability": 1.5})  # fmt: skip
    check(cp.DosingError, r"explore: dose 0 into unknown state 'depot'", cp.explore,
          "one_cmt_iv", cp.Regimen([cp.Dose(0.0, 1.0, "depot")]), times)  # fmt: skip
