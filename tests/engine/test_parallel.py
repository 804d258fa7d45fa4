"""Batches: chunking and sharding over devices give the same numbers as one vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cellpkpd as cp
from cellpkpd.engine.parallel import batch_size, batched_map


def test_batched_map_matches_vmap_for_any_chunk_and_device_count() -> None:
    f = lambda b, s: {"y": jnp.sin(b["x"]) * s["a"] + b["x"] ** 2}
    x = jnp.linspace(0.0, 3.0, 37)
    expected = jax.vmap(f, in_axes=(0, None))({"x": x}, {"a": 2.0})["y"]
    for devices in (jax.devices()[:1], jax.devices()):
        for chunk in (None, 1, 5, 36, 100):
            got = batched_map(f, chunk_size=chunk, devices=devices)({"x": x}, {"a": 2.0})["y"]
            assert got.shape == (37,)
            # same operations per element; XLA's vectorised sin may differ in the last
            # bit between a SIMD body and its scalar tail, so compare to 1 ulp
            np.testing.assert_allclose(got, expected, rtol=4e-16, atol=0)


def test_batch_size_rejects_disagreeing_leaves() -> None:
    with pytest.raises(ValueError, match="disagree"):
        batch_size({"a": np.zeros(3), "b": np.zeros(4)})


@pytest.mark.parametrize("solver", ["exact", pytest.param("tsit5", marks=pytest.mark.extended)])
def test_simulator_batch_same_for_every_chunk_size(solver: str) -> None:
    spec = cp.load_model("two_cmt_iv")
    times = np.linspace(0.0, 48.0, 49)
    sim = cp.Simulator(spec, times, outputs=("conc",), solver=solver)
    rng = np.random.default_rng(3)
    n = 23
    params = {
        "CL": jnp.asarray(2.0 * np.exp(0.3 * rng.standard_normal(n))),
        "V1": jnp.asarray(10.0 * np.exp(0.3 * rng.standard_normal(n))),
    }
    doses = sim.doses(cp.Regimen.repeat(cp.Dose(1.0, 100.0, "central", duration=0.5), 12.0, 3))
    ref, status = sim.batch(params, doses, chunk_size=n)
    assert np.all(np.asarray(status) == 0)
    for chunk in (1, 4, 8):
        out, _ = sim.batch(params, doses, chunk_size=chunk)
        # vmap over a different batch size may fuse differently: round-off only
        np.testing.assert_allclose(out["conc"], ref["conc"], rtol=1e-12, atol=1e-15)


def test_ode_save_window_too_small_is_detected_and_rerun() -> None:
    # the window is sized from record times {0, 5}; a 20 h lag moves the second dose to
    # 25 h, so [0, 25) holds more outputs than the window: status 4, then a full re-run
    spec = cp.load_model("one_cmt_iv")
    times = np.linspace(0.0, 40.0, 81)
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central"), cp.Dose(5.0, 50.0, "central", lag=20.0)])
    sim = cp.Simulator(spec, times, solver="tsit5", window=8)
    _, status = sim.batch({"CL": jnp.array([2.0])}, sim.doses(reg))
    assert int(status[0]) == 4
    ode = cp.simulate(spec, reg, times, solver="tsit5")
    exact = cp.simulate(spec, reg, times, solver="exact")
    np.testing.assert_allclose(ode["conc"].values, exact["conc"].values, rtol=1e-6)


def test_host_devices_requested() -> None:
    # cellpkpd asks XLA for one CPU device per core unless the user chose otherwise
    import os

    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        assert len(jax.devices("cpu")) >= 1
    else:  # pragma: no cover - the flag is set on import
        pytest.fail("XLA_FLAGS was not set by cellpkpd")


def test_kvaerno5_batch_of_several_subjects() -> None:
    # regression: the implicit solver's linear solves failed when sharded over devices
    spec = cp.load_model("two_cmt_iv")
    times = np.linspace(0.0, 48.0, 13)
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    stiff = cp.simulate(spec, reg, times, params={"CL": [1.0, 2.0, 3.0]}, solver="kvaerno5")
    exact = cp.simulate(spec, reg, times, params={"CL": [1.0, 2.0, 3.0]})
    np.testing.assert_allclose(stiff["conc"].values, exact["conc"].values, rtol=1e-6)


def test_default_chunk_fills_a_gpu_and_stays_small_on_cpu(monkeypatch):
    """Inner vectorised chunks: small on CPU (lockstep ODE steps, cache), large on a GPU
    (chunks of 256 left an H200 idle: 2,660 vs 356,381 sets/s in bench_sweep)."""
    import jax

    from cellpkpd.engine.simulator import default_chunk

    assert jax.default_backend() == "cpu"
    assert (default_chunk("tsit5"), default_chunk("exact")) == (256, 128)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert default_chunk("tsit5") == default_chunk("exact") == 1 << 20


def test_ode_chunk_of_mixed_regimens_equals_each_alone_without_extra_save_work(
    monkeypatch,
) -> None:
    """Subjects with 1 and 2 doses solved in one vmap: the 1-dose subject's padding segment
    has length 0. The results equal each subject solved alone (rtol 1e-12: the same steps),
    and diffrax's save loop runs about as often as for the subjects alone. Given to diffrax
    as t0 == t1 inside the vmapped solve, that segment's save loop walked all 200 output
    times at every step of the other subject (42x the save work here, 10-40x the time of
    msc_pkpd_host's mixed scenarios; see `cellpkpd.engine.solve.ZERO_SPAN`)."""
    import diffrax

    calls = {"n": 0}
    real = diffrax.SaveAt

    def counting_saveat(**kw):
        def fn(t, y, args):
            jax.debug.callback(lambda _: calls.__setitem__("n", calls["n"] + 1), t)
            return y

        return real(**kw, fn=fn)

    monkeypatch.setattr(diffrax, "SaveAt", counting_saveat)
    spec = cp.load_model("two_cmt_iv")
    times = np.linspace(0.0, 48.0, 200)
    one = cp.Regimen([cp.Dose(0.0, 100.0, cmt="central")])
    two = cp.Regimen([cp.Dose(0.0, 100.0, cmt="central"), cp.Dose(12.0, 50.0, cmt="central")])
    sim = cp.Simulator(spec, times, outputs=("central",), solver="tsit5", max_doses=2)
    solve = lambda d: sim.solve({}, d)[0]["central"]
    mixed = jax.jit(jax.vmap(solve))(sim.doses([one, two]))
    mixed_calls, calls["n"] = calls["n"], 0
    alone = [jax.jit(solve)(sim.doses(reg)) for reg in (one, two)]
    alone_calls = calls["n"]
    for k in range(2):
        np.testing.assert_allclose(mixed[k], alone[k], rtol=1e-12)
    # the pair saves what both save alone, plus one pass over the 200 output times for each
    # zero-length segment beside a running one (measured 1406 vs 609); it was 25,508 (42x)
    assert mixed_calls < 3 * alone_calls, (mixed_calls, alone_calls)


def test_ode_batch_groups_equal_schedules_and_returns_subjects_in_the_callers_order() -> None:
    """On the ODE path `Simulator.batch` solves the subjects ordered by dose schedule (so a
    large batch's chunks mostly hold one schedule) and returns them in the caller's order:
    each subject's result equals its solve alone (rtol 1e-12: the same steps)."""
    from cellpkpd.engine.simulator import _regimen_order

    spec = cp.load_model("two_cmt_iv")
    times = np.linspace(0.0, 48.0, 50)
    d = lambda t: cp.Dose(t, 100.0, cmt="central")
    schedules = [cp.Regimen([d(0.0)]), cp.Regimen([d(0.0), d(12.0)]),
                 cp.Regimen([d(0.0), d(6.0), d(24.0)])]  # fmt: skip
    regs = [schedules[(2 * i) % 3] for i in range(12)]  # 1, 3, 2, 1, 3, 2, ... doses
    cl = spec.parameters["CL"].value * np.exp(0.3 * np.sin(np.arange(12.0)))
    sim = cp.Simulator(spec, times, outputs=("central",), solver="tsit5", max_doses=3)
    doses = sim.doses(regs)
    order = _regimen_order({"d": doses})
    assert [len(regs[i].doses) for i in order] == [1] * 4 + [2] * 4 + [3] * 4
    assert _regimen_order({"d": sim.doses([regs[i] for i in order])}) is None  # in order
    out, status = sim.batch({"CL": cl}, doses)
    assert np.all(np.asarray(status) == 0)
    for k in range(12):
        alone, _ = sim.batch({"CL": cl[k : k + 1]}, sim.doses([regs[k]]))
        np.testing.assert_allclose(out["central"][k], alone["central"][0], rtol=1e-12)


def test_batch_programs_get_their_xla_options_and_unknown_ones_are_dropped(monkeypatch):
    """The ODE path's batch programs are compiled with `FAST_COMPILE_OPTIONS` (XLA's CPU
    fusion emitters off: faster compiles, see its comment), the exact path's too below
    `EXACT_FAST_COMPILE_BELOW` subjects and with XLA's defaults from there on; an option
    this XLA does not know is dropped instead of failing every compile; a batch with an
    option gives the numbers of one without it, also inside a caller's jit (exported and
    read back with them: tests/core/test_programs.py)."""
    from cellpkpd.engine import parallel

    assert parallel.supported_compiler_options(None) is None
    assert parallel.supported_compiler_options({"xla_no_such_option_here": True}) is None
    both = {"xla_no_such_option_here": True, **parallel.FAST_COMPILE_OPTIONS}
    assert parallel.supported_compiler_options(both) == dict(parallel.FAST_COMPILE_OPTIONS)

    seen = []
    real = parallel._build
    monkeypatch.setattr(
        parallel,
        "_build",
        lambda *a: seen.append(a[-1]) or real(*a),  # type: ignore[func-returns-value]
    )
    spec = cp.load_model("one_cmt_oral")
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "depot")])
    t = np.linspace(0.0, 24.0, 7)
    fast = dict(parallel.FAST_COMPILE_OPTIONS)
    ode = cp.simulate(spec, reg, t, solver="tsit5", rtol=1e-10, atol=1e-10)
    assert seen and all(o == fast for o in seen)
    seen.clear()
    exact = cp.simulate(spec, reg, t, solver="exact")
    assert seen and all(o == fast for o in seen)  # a small exact batch: compile first
    seen.clear()
    n = parallel.EXACT_FAST_COMPILE_BELOW
    many = cp.simulate(spec, reg, t, params={"CL": np.full(n, 2.8)}, solver="exact")
    assert seen and all(o is None for o in seen)  # a large one: XLA's faster code
    np.testing.assert_allclose(ode["conc"], exact["conc"], rtol=1e-8, atol=1e-12)
    np.testing.assert_array_equal(many["conc"].values[:1], exact["conc"].values)
    plain = batched_map(lambda b, s: jnp.sin(b) * s, devices=jax.devices()[:1])
    optioned = batched_map(
        lambda b, s: jnp.sin(b) * s,
        devices=jax.devices()[:1],
        compiler_options=parallel.FAST_COMPILE_OPTIONS,
    )
    x = jnp.linspace(0.0, 3.0, 11)
    np.testing.assert_allclose(optioned(x, 2.0), plain(x, 2.0), rtol=4e-16, atol=0)
    # inside a caller's jit (JAX takes compiler options on the outermost jit only)
    np.testing.assert_allclose(jax.jit(optioned)(x, 2.0), plain(x, 2.0), rtol=4e-16, atol=0)
