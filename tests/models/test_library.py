"""Every library model: loads, validates, simulates its defaults for 1 and 1,000 subjects,
and differentiates (the gradient of an observation w.r.t. every parameter is finite)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cellpkpd as cp

LIBRARY = sorted(cp.list_models())


def _regimen(spec: cp.ModelSpec) -> cp.Regimen:
    """A 1-h infusion into the first dosed state (or the first state)."""
    state = next(iter(spec.dosing), next(iter(spec.states)))
    return cp.Regimen([cp.Dose(0.0, 1e6 if spec.amount_unit == "cells" else 100.0, state, 1.0)])


def test_library_lists_the_cell_therapy_models() -> None:
    models = cp.list_models()
    for name in ("msc_pbk", "msc_pkpd_host", "cart_ck", "one_cmt_iv", "one_cmt_oral"):
        assert models[name], name  # a one-line description


@pytest.mark.parametrize("name", LIBRARY)
def test_library_model_metadata(name: str) -> None:
    spec = cp.load_model(name)
    assert spec.description and spec.references and spec.time_unit and spec.amount_unit
    for p in spec.parameters.values():
        assert p.unit is not None and p.source, (name, p.name)
        if p.name not in spec.physiology:
            assert p.description and p.prior, (name, p.name)
    assert f"# {name}" in cp.describe(spec)


# solver="auto": exact for a linear model, Kvaerno5 for one marked stiff, Tsit5 otherwise. The
# rule is measured by benchmarks/bench_library.py (auto's warm time over the fastest solver's
# on each library model, N = 10,000: see benchmarks/README.md); this records the choice per
# model, so a model change that flips it is seen here.
AUTO = {
    "cart_ck": "exact", "msc_pbk": "exact", "msc_pkpd_host": "tsit5",
    "one_cmt_iv": "exact", "one_cmt_oral": "exact", "two_cmt_iv": "exact",
}  # fmt: skip


def test_auto_solver_of_every_library_model() -> None:
    from cellpkpd.engine.simulator import resolve_solver

    assert set(AUTO) == set(LIBRARY)
    for name in LIBRARY:
        assert resolve_solver(cp.load_model(name), "auto") == AUTO[name], name


# the MSC models (~70 s each: compile-bound) are differentiated in their own test files
# (test_msc_pbk.py, test_msc_pkpd_host.py), msc_pkpd_host simulated for 1,000 subjects there
# and msc_pbk for 400 parameter sets in notebook 06
_EXTENDED_HERE = ("msc_pbk", "msc_pkpd_host")


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.extended) if n in _EXTENDED_HERE else n for n in LIBRARY],
)
def test_library_model_simulates_1_and_1000_subjects_and_differentiates(name: str) -> None:
    spec = cp.load_model(name)
    times = np.linspace(0.0, 48.0 if spec.time_unit == "h" else 60.0, 25)
    reg = _regimen(spec)
    one = cp.simulate(spec, reg, times)
    assert one.sizes["subject"] == 1
    rng = np.random.default_rng(0)
    free = [k for k, p in spec.parameters.items() if k not in spec.physiology]
    first = free[0]
    lo, hi = spec.parameters[first].bounds
    values = np.clip(spec.parameters[first].value * np.exp(0.2 * rng.standard_normal(1000)), lo, hi)
    many = cp.simulate(spec, reg, times, params={first: values})
    for var in many.data_vars:
        assert np.all(np.isfinite(many[var].values)), (name, var)
    obs = next(iter(spec.observations))
    sim = cp.Simulator(spec, times, outputs=(obs,))
    doses = sim.doses(reg)
    base = {k: jnp.asarray(v) for k, v in spec.defaults().items() if k in spec.parameters}
    grad = jax.jit(jax.grad(lambda p: jnp.sum(sim(p, doses)[obs])))(base)
    bad = [k for k, g in grad.items() if not np.isfinite(float(g))]
    assert not bad, (name, bad)
