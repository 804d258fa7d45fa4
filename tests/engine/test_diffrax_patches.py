"""What the ODE path changes in equinox while it traces a diffrax solve
(`cellpkpd.engine.solve._ts_checks_without_callbacks`): chains of
``equinox.internal.prevbefore`` (diffrax applies it 100 times to t1 in its integration loop)
are computed by one loop, with the same values as the real chain, and other code keeps the
real function."""

from __future__ import annotations

import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import numpy as np

from cellpkpd.engine import solve

#: normal, subnormal, signed zeros, the ends of the float64 range, inf and NaN, and t1
#: values of the engine (ZERO_SPAN, output times)
VALUES = np.array(
    [1.0, 168.0, 2.0**-40, 1e-300, np.finfo(float).tiny, 5e-324, 1e-320, 0.0, -0.0, -1.0,
     -1e-310, -3.5, np.inf, -np.inf, np.nan, np.finfo(float).max, -np.finfo(float).max]
)  # fmt: skip


def _real_chain(x, k):
    real = getattr(eqxi.prevbefore, "cellpkpd_wraps", eqxi.prevbefore)
    for _ in range(k):
        x = real(x)
    return x


def _patched_chain(x, k):
    with solve._ts_checks_without_callbacks():
        for _ in range(k):
            x = eqxi.prevbefore(x)
    return x


def _bits(x):
    return np.asarray(x, dtype=np.float64).view(np.int64)


def test_a_chain_of_prevbefore_gives_the_values_of_the_real_chain():
    """100 calls (diffrax's count) and 3, on every kind of float64 (including -0.0 and the
    subnormals JAX treats as zero), eagerly, under jit and under vmap: bit for bit."""
    for k in (1, 3, 100):
        want = _bits(jax.jit(lambda x, k=k: _real_chain(x, k))(VALUES))
        assert np.array_equal(_bits(jax.jit(lambda x, k=k: _patched_chain(x, k))(VALUES)), want)
        assert np.array_equal(_bits(jax.vmap(lambda x, k=k: _patched_chain(x, k))(VALUES)), want)
    eager = np.array([_patched_chain(jnp.asarray(v), 5) for v in VALUES[:4]])
    assert np.array_equal(_bits(eager), _bits(jax.jit(lambda x: _real_chain(x, 5))(VALUES[:4])))


def test_the_chain_is_one_loop_and_keeps_the_derivative():
    """The compiled program holds one loop, not 100 unrolled steps (what the patch is for: the
    99 shorter loops of the chain's earlier calls are dead code), and
    the derivative passes through as through the real function (prevbefore's jvp is 1)."""
    ours = jax.jit(lambda x: _patched_chain(x, 100)).lower(1.0).as_text()
    real = jax.jit(lambda x: _real_chain(x, 100)).lower(1.0).as_text()
    assert ours.count("stablehlo.while") == 1 and "stablehlo.while" not in real
    assert len(ours.splitlines()) * 10 < len(real.splitlines())
    assert float(jax.grad(lambda x: _patched_chain(x, 100))(2.0)) == 1.0


def test_outside_a_solve_prevbefore_is_the_real_function():
    """Outside the context (and after it), equinox's own function runs, unrolled, and the
    chain's memory of the solve's results is gone."""
    with solve._ts_checks_without_callbacks():
        pass
    jaxpr = str(jax.make_jaxpr(lambda x: eqxi.prevbefore(eqxi.prevbefore(x)))(1.0))
    assert jaxpr.count("nextafter") == 2 and "while" not in jaxpr
    assert getattr(solve._ts_checks, "chain", None) is None


def test_a_tsit5_solve_traces_one_prevbefore_loop_and_leaks_no_tracer():
    """In a real solve (diffrax's own loop calling equinox's prevbefore 100 times) the
    lowered program holds a few ``next_after`` operations, not ~100 (what the patch is
    for; it would silently stop working were diffrax to bind the function at import), and
    under ``jax.checking_leaks`` the chain keeps no tracer (the real function runs)."""
    import cellpkpd as cp

    spec = cp.load_model("one_cmt_oral")
    sim = cp.Simulator(spec, np.linspace(0.0, 24.0, 5), solver="tsit5", outputs=("conc",))
    doses = sim.doses(cp.Regimen([cp.Dose(0.0, 100.0, "depot")]))
    text = jax.jit(lambda p: sim(p, doses)).lower({}).as_text()
    assert 0 < text.count("chlo.next_after") <= 4
    with jax.checking_leaks():
        out = sim({}, doses)
    np.testing.assert_allclose(np.asarray(out["conc"]), np.asarray(sim({}, doses)["conc"]))
