"""Shared test helpers: closed-form pharmacokinetic solutions written independently of the
engine (plain numpy), and small fixtures.

Every function returns AMOUNTS [mg] in the named compartment unless its name says
``conc``; time arguments are absolute [h]. A dose given at ``t_dose`` contributes nothing
before ``t_dose`` and its full effect AT ``t_dose`` (NONMEM: a record at a dose time reports
the state after the dose).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# One persistent JAX compilation cache for the whole run, shared by the pytest-xdist workers
# (which inherit the variable from the controller that imports this file first): a program
# compiled by one test or worker is read back by the others, and the CLI tests use it through
# the same variable. A folder of this run's own is removed when the run ends.
if "CELLPKPD_COMPILATION_CACHE" not in os.environ:
    os.environ["CELLPKPD_COMPILATION_CACHE"] = str(
        Path(tempfile.gettempdir()) / f"cellpkpd-test-jax-cache-{os.getpid()}"
    )
    os.environ["CELLPKPD_TEST_OWN_CACHE"] = "1"
# ... but not the traced programs kept beside it (cellpkpd._core.programs): exporting every
# program a test traces costs time the tests rarely win back (few programs repeat across
# workers); tests/core/test_programs.py turns them on for its own tests and processes
os.environ.setdefault("CELLPKPD_PROGRAM_CACHE", "0")
import cellpkpd as _cp

_cp.config.enable_compilation_cache()


# Modules (or classes) whose tests take the most time, heaviest first (seconds of one core,
# measured with --durations on 2 cores). pytest-xdist (--dist loadscope) hands out whole
# modules in collection order, so running the heavy ones first leaves light ones for the end
# and both workers finish together (longest-processing-time-first scheduling); the others keep
# their order after these.
HEAVY_FIRST = (
    "test_events.py", "test_infer_nonlinear.py", "test_infer.py", "test_steady_state.py",
    "test_simulate.py", "test_routes.py", "test_msc_pkpd_host.py", "test_literature_msc.py",
    "test_literature_msc_host.py", "test_figure_review.py", "test_merge.py",
    "test_sweep_options.py",
    "test_sweep.py", "test_gradients.py", "test_plots.py", "test_metrics.py",
    "test_infer_likelihood.py", "test_cli_fit.py", "test_parallel.py", "test_msc_pbk.py",
    "test_infer_recovery.py", "test_population.py",
)  # fmt: skip


@pytest.fixture
def restore_cache():
    """Put this worker's cache settings back after the test (other tests share them)."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    before = (
        jax.config.jax_compilation_cache_dir,
        jax.config.jax_persistent_cache_min_compile_time_secs,
    )
    yield
    jax.config.update("jax_compilation_cache_dir", before[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
    compilation_cache.reset_cache()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(HEAVY_FIRST)))  # stable


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CELLPKPD_TEST_OWN_CACHE") and not os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(os.environ["CELLPKPD_COMPILATION_CACHE"], ignore_errors=True)


ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
SHARED_DATA = Path("/work/shared/data")
if not SHARED_DATA.exists():  # a checkout elsewhere may keep the shared data beside the repo
    SHARED_DATA = ROOT.parent / "shared" / "data"


# ------------------------------------------------------------------ one compartment, IV
def bolus_amount(t, dose, CL, V, t_dose=0.0):
    """One-compartment IV bolus: A(t) = D exp(-k (t - t_dose)), k = CL / V; 0 before."""
    s = np.asarray(t, dtype=float) - t_dose
    k = CL / V
    return np.where(s >= 0, dose * np.exp(-k * np.maximum(s, 0.0)), 0.0)


def infusion_amount(t, amount, duration, CL, V, t_start=0.0):
    """One-compartment zero-order infusion of `amount` over `duration` from `t_start`.

    During: A = R / k (1 - exp(-k s)); after: A = R / k (1 - exp(-k T)) exp(-k (s - T)),
    with R = amount / duration, s = t - t_start, T = duration; 0 before the start.
    """
    s = np.asarray(t, dtype=float) - t_start
    k = CL / V
    R = amount / duration
    during = R / k * (1.0 - np.exp(-k * np.clip(s, 0.0, None)))
    after = R / k * (1.0 - np.exp(-k * duration)) * np.exp(-k * np.clip(s - duration, 0.0, None))
    return np.where(s <= 0, 0.0, np.where(s < duration, during, after))


def ss_bolus_amount(s, dose, CL, V, tau):
    """Amount a time s >= 0 after an SS=1 bolus (steady state for `dose` every `tau`, no
    later doses): the geometric sum D e^{-k s} (1 + e^{-k tau} + ...)
    = D e^{-k s} / (1 - e^{-k tau})."""
    k = CL / V
    return dose * np.exp(-k * np.asarray(s, dtype=float)) / (1.0 - np.exp(-k * tau))


def ss_bolus_trough(dose, CL, V, tau):
    """Pre-dose steady-state amount, D e^{-k tau} / (1 - e^{-k tau})."""
    k = CL / V
    return dose * np.exp(-k * tau) / (1.0 - np.exp(-k * tau))


def ss_infusion_amount_sum(s, amount, duration, CL, V, tau, n_past=2000):
    """Amount a time s >= 0 after an SS=1 infusion (no later doses), by superposing the
    dose at 0 and `n_past` earlier ones at -tau, -2 tau, ... (works for duration > tau,
    where past infusions are still running)."""
    s = np.asarray(s, dtype=float)
    j = np.arange(n_past + 1)[:, None]
    return infusion_amount(s[None, :] + j * tau, amount, duration, CL, V).sum(axis=0)


def ss_infusion_amount_closed(s, amount, duration, CL, V, tau):
    """Closed form of `ss_infusion_amount_sum` for duration <= tau: the current infusion
    plus the geometric sum of the past ones, R/k (1 - e^{-kT}) e^{-k(s - T)} e^{-k tau} /
    (1 - e^{-k tau})."""
    assert duration <= tau
    s = np.asarray(s, dtype=float)
    k = CL / V
    R = amount / duration
    past = R / k * (1 - np.exp(-k * duration)) * np.exp(-k * (s - duration + tau))
    return infusion_amount(s, amount, duration, CL, V) + past / (1.0 - np.exp(-k * tau))


# ------------------------------------------------------------------ first-order absorption
def bateman_central(t, dose, ka, CL, V, F=1.0, lag=0.0, t_dose=0.0):
    """Central amount after an oral dose: F D ka / (ka - k) (e^{-k s} - e^{-ka s}),
    s = t - t_dose - lag >= 0 (0 before); k = CL / V, ka != k."""
    s = np.asarray(t, dtype=float) - t_dose - lag
    k = CL / V
    sp = np.maximum(s, 0.0)
    val = F * dose * ka / (ka - k) * (np.exp(-k * sp) - np.exp(-ka * sp))
    return np.where(s >= 0, val, 0.0)


def bateman_depot(t, dose, ka, F=1.0, lag=0.0, t_dose=0.0):
    """Depot amount after an oral dose: F D e^{-ka s} for s = t - t_dose - lag >= 0."""
    s = np.asarray(t, dtype=float) - t_dose - lag
    return np.where(s >= 0, F * dose * np.exp(-ka * np.maximum(s, 0.0)), 0.0)


# ------------------------------------------------------------------ two compartments
def two_cmt_bolus(t, dose, CL, V1, Q, V2, t_dose=0.0):
    """Central and peripheral amounts after a bolus into central (bi-exponential).

    Micro-constants k10 = CL/V1, k12 = Q/V1, k21 = Q/V2; alpha > beta are the roots of
    s^2 - (k10 + k12 + k21) s + k10 k21 = 0. Central: D [(alpha - k21) e^{-alpha t} +
    (k21 - beta) e^{-beta t}] / (alpha - beta); peripheral: D k12 (e^{-beta t} -
    e^{-alpha t}) / (alpha - beta).
    """
    s = np.asarray(t, dtype=float) - t_dose
    sp = np.maximum(s, 0.0)
    k10, k12, k21 = CL / V1, Q / V1, Q / V2
    tot = k10 + k12 + k21
    disc = np.sqrt(tot**2 - 4.0 * k10 * k21)
    alpha, beta = (tot + disc) / 2.0, (tot - disc) / 2.0
    ea, eb = np.exp(-alpha * sp), np.exp(-beta * sp)
    central = dose * ((alpha - k21) * ea + (k21 - beta) * eb) / (alpha - beta)
    peripheral = dose * k12 * (eb - ea) / (alpha - beta)
    return np.where(s >= 0, central, 0.0), np.where(s >= 0, peripheral, 0.0)


def two_cmt_infusion(t, amount, duration, CL, V1, Q, V2, t_start=0.0):
    """Central and peripheral amounts during and after a zero-order infusion into central:
    the bolus response integrated over the infusion window, term by term. With the unit
    bolus response sum_i c_i e^{-l_i t}: during, R sum_i c_i (1 - e^{-l_i s}) / l_i; after,
    R sum_i c_i (1 - e^{-l_i T}) e^{-l_i (s - T)} / l_i (s = t - t_start, T = duration)."""
    s = np.asarray(t, dtype=float) - t_start
    k10, k12, k21 = CL / V1, Q / V1, Q / V2
    tot = k10 + k12 + k21
    disc = np.sqrt(tot**2 - 4.0 * k10 * k21)
    alpha, beta = (tot + disc) / 2.0, (tot - disc) / 2.0
    R = amount / duration
    coef = {
        "central": ((alpha - k21) / (alpha - beta), (k21 - beta) / (alpha - beta)),
        "peripheral": (-k12 / (alpha - beta), k12 / (alpha - beta)),
    }
    during_s = np.clip(s, 0.0, duration)
    after_s = np.clip(s - duration, 0.0, None)
    out = []
    for name in ("central", "peripheral"):
        total = 0.0
        for c, lam in zip(coef[name], (alpha, beta), strict=True):
            total = total + R * c * (1 - np.exp(-lam * during_s)) / lam * np.exp(-lam * after_s)
        out.append(np.where(s <= 0, 0.0, total))
    return out[0], out[1]


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def theophylline_csv() -> Path:
    path = SHARED_DATA / "theophylline.csv"
    if not path.exists():
        pytest.skip("shared theophylline data not present")
    return path


# The example model file of DESIGN.md, verbatim (test_model checks it still matches):
# one compartment, Michaelis-Menten elimination, indirect-response biomarker.
# ruff: noqa: E501
DESIGN_EXAMPLE = """\
[model]
name = "one_cmt_mm_idr"
description = "One compartment, Michaelis-Menten elimination, indirect-response biomarker"
time_unit = "h"
amount_unit = "mg"
references = ["Dayneka NL, Garg V, Jusko WJ. J Pharmacokinet Biopharm 1993;21:457-478"]

[parameters]
V    = { value = 10.0, unit = "L",      bounds = [0.0, inf], prior = "lognormal(log(10), 0.5)" }
Vmax = { value = 5.0,  unit = "mg/h",   bounds = [0.0, inf] }
Km   = { value = 2.0,  unit = "mg/L",   bounds = [0.0, inf] }
kin  = { value = 10.0, unit = "1/h" }
kout = { value = 0.5,  unit = "1/h" }
IC50 = { value = 1.0,  unit = "mg/L" }

[covariates]
inflammation = { value = 1.0, unit = "1", description = "host inflammation relative to typical" }

[states]
central = { initial = 0.0, unit = "mg" }
marker  = { initial = "kin * inflammation / kout", unit = "1" }

[derived]
C = "central / V"

[flows]
# none here: elimination is nonlinear; a linear model would say "central ->" = "CL / V"

[odes]
central = "-Vmax * C / (Km + C)"
marker  = "kin * inflammation * (1 - C / (IC50 + C)) - kout * marker"

[observations]
conc   = { expr = "C", unit = "mg/L", error = "proportional" }
biomarker = { expr = "marker", unit = "1", error = "additive" }

[dosing]   # optional, per dosed state, as NONMEM's ALAGn/Fn/Rn/Dn and mrgsolve's ALAG_/F_/R_/D_
central = { lag = "0", bioavailability = "1" }   # also rate = "..." (used when RATE = -1), duration = "..." (RATE = -2)
"""


# ------------------------------------------------------------------ bad-input checks
def check(exc_type: type[Exception], match: str, fn: Callable[..., Any], *args: Any, **kw: Any):
    """Call `fn`; it must raise `exc_type` (a cellpkpd error) with a one-line message matching
    `match`, raised by cellpkpd's own code (not from inside JAX, diffrax or NumPy)."""
    import cellpkpd as cp

    with pytest.raises(exc_type, match=match) as info:
        fn(*args, **kw)
    err = info.value
    assert isinstance(err, cp.CellPKPDError), type(err)
    assert "\n" not in str(err)
    raised_in = Path(str(info.traceback[-1].path)).as_posix()
    assert "/cellpkpd/" in raised_in, raised_in
    return err


# the smallest `cellpkpd doses` configuration: two subjects, two arms (CLI and bad-input tests)
DOSES_SMALL = """
model = "one_cmt_iv"
seed = 1
[times]
start = 0
end = 400
step = 8
[regimens.single]
doses = [{ time = 0, amount = 1, cmt = "central" }]
[arms]
dose = [10, 100]
[population]
n = 2
random_effects = { CL = 0.2 }
[metrics]
auc = { kind = "auc", output = "conc" }
[target]
auc = [">=", 20]
"""


def simulate_scenarios(
    spec: Any,
    regimens: dict[str, Any],
    params: dict[str, dict[str, float]],
    covariates: dict[str, dict[str, float]],
    times: Any,
    outputs: tuple[str, ...],
) -> dict[str, dict[str, np.ndarray]]:
    """Named scenarios (a regimen, parameter and covariate overrides each, the model's values
    otherwise) in one cp.simulate call, every one solved: name -> output -> array (time,)."""
    names = list(regimens)
    defaults = spec.defaults()
    p = {k: np.array([params[n].get(k, defaults[k]) for n in names]) for k in spec.parameters}
    c = {k: np.array([covariates[n].get(k, defaults[k]) for n in names]) for k in spec.covariates}
    res = _cp.simulate(
        spec, [regimens[n] for n in names], times, params=p, covariates=c, outputs=outputs
    )
    assert res["status"].values.tolist() == [0] * len(names)
    return {n: {o: res[o].values[i] for o in outputs} for i, n in enumerate(names)}
