"""Spread a per-subject function over a batch: chunks on each device, devices in parallel.

`batched_map` is how `Simulator.batch` (and the code built on it) evaluates many subjects:
the batch is padded and split across the available JAX devices with `jax.shard_map`; on
each device, `jax.lax.map` walks over fixed-size chunks and `jax.vmap` evaluates a chunk.
Chunks bound the memory in use, and they also make ODE solves cheaper: under `vmap`, every
subject of a vmapped batch takes as many solver steps as the slowest one, so smaller
batches waste fewer steps.

On CPU, cellpkpd asks XLA for one host device per core when it is imported
(`cp.config.use_cpu_cores`), unless ``XLA_FLAGS`` already sets the count or
``CELLPKPD_CPU_DEVICES`` says otherwise, so the same code uses every core of a laptop and
every GPU of a server; ``cp.config.devices()`` shows what JAX has.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from .._core.programs import cached_program

__all__ = [
    "EXACT_FAST_COMPILE_BELOW",
    "FAST_COMPILE_OPTIONS",
    "batch_size",
    "batched_map",
    "supported_compiler_options",
]

#: XLA options that trade a little run time for a faster compile: XLA's CPU fusion emitters
#: off. `Simulator` compiles its batch programs with them on the ODE path (tsit5, kvaerno5)
#: and, on the exact path, for batches of fewer than `EXACT_FAST_COMPILE_BELOW` subjects.
#: Measured (2 cores; one run each of ``bench_library.py --n 10000`` with and without
#: ``XLA_FLAGS=--xla_cpu_use_fusion_emitters=false``): the batch program of msc_pkpd_host
#: (diffrax's Tsit5) compiled in 2.20 s instead of 3.17 s, cart_ck's Tsit5 in 1.79 s
#: instead of 2.26 s, two_cmt_iv's in 1.59 s instead of 2.00 s, with warm calls within -10%
#: to +18%; msc_pbk's exact program for one subject in 2.2-2.3 s instead of 3.1-3.2 s
#: (``compile_breakdown.py msc_pbk 1``, 2 pairs).
FAST_COMPILE_OPTIONS: Mapping[str, Any] = {"xla_cpu_use_fusion_emitters": False}
#: the exact path keeps XLA's defaults from this many subjects on: at 10,000 its warm calls
#: were up to 37% slower with `FAST_COMPILE_OPTIONS` (two_cmt_iv 0.019 -> 0.026 s, msc_pbk
#: 0.121 -> 0.137 s), at 1,000 equal within the noise (two_cmt_iv 10.7 / 11.2 ms, msc_pbk
#: 39 / 36 ms, cart_ck 32 / 37 ms, medians of 7 warm calls with / without)
EXACT_FAST_COMPILE_BELOW = 1000


def batch_size(tree: Any) -> int:
    """Length of the leading axis shared by every array leaf of `tree`."""
    sizes = {int(np.shape(x)[0]) for x in jax.tree.leaves(tree)}
    if len(sizes) != 1:
        raise ValueError(f"batched inputs disagree on the number of subjects: {sorted(sizes)}")
    return sizes.pop()


def batched_map(
    fn: Callable[[Any, Any], Any],
    *,
    chunk_size: int | None = None,
    devices: Sequence[Any] | None = None,
    program_key: str | None = None,
    compiler_options: Mapping[str, Any] | Callable[[int], Mapping[str, Any] | None] | None = None,
) -> Callable[[Any, Any], Any]:
    """Vectorise ``fn(one_subject, shared)`` over the leading axis of its first argument.

    Parameters
    ----------
    fn : callable
        Pure function of (a pytree for one subject, a pytree shared by all subjects).
    chunk_size : int, optional
        Subjects evaluated at once per device (default: all of a device's share).
    devices : sequence of jax.Device, optional
        Devices to shard over (default: `jax.devices()`).
    program_key : str, optional
        A name of everything `fn` computes (e.g. a hash of its model and options): with the
        compilation cache on, the traced program is kept on disk under it, the batch size,
        the chunks and the devices (`cellpkpd._core.programs.cached_program`), so another
        process skips tracing it. None: not kept.
    compiler_options : mapping, or callable of the batch size, optional
        XLA options of the compiled program (``jax.jit``'s `compiler_options`), e.g.
        `FAST_COMPILE_OPTIONS`, or a function of the number of subjects giving them; those
        this XLA does not know are dropped (`supported_compiler_options`).

    Returns
    -------
    callable
        ``g(batched, shared)`` -> ``fn``'s outputs stacked along a leading axis of length
        n (the batch size). Compiled once per input shape.
    """
    devs = list(devices) if devices is not None else jax.devices()
    cache: dict[Any, Any] = {}

    def run(batched: Any, shared: Any) -> Any:
        n = batch_size(batched)
        nd = max(1, min(len(devs), n))
        per_device = math.ceil(n / nd)
        # as few chunks as chunk_size allows, then equal chunks: padding < nd * n_chunks
        n_chunks = math.ceil(per_device / (chunk_size or per_device))
        chunk = math.ceil(per_device / n_chunks)
        key = (n, nd, chunk)
        g = cache.get(key)
        if g is None:
            given = compiler_options(n) if callable(compiler_options) else compiler_options
            options = supported_compiler_options(given)
            g = _build(fn, devs[:nd], n, chunk, options)
            if program_key is not None:
                where = tuple(str(d) for d in devs[:nd])
                name = f"{program_key} {key} {where} {sorted((options or {}).items())}"
                g = cached_program(g, name, devs[:nd], compiler_options=options)
            cache[key] = g
        return g(batched, shared)

    return run


def supported_compiler_options(options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The entries of `options` (XLA compile options) that this jaxlib's XLA knows, or None
    when there are none: an option XLA no longer has would make every compile fail."""
    if not options:
        return None
    kept = {k: v for k, v in options.items() if _known_option(k, v)}
    return kept or None


@functools.cache
def _known_option(name: str, value: Any) -> bool:
    # one trivial compile per option and process (~10 ms); XLA rejects unknown names
    try:
        jax.jit(lambda x: x + 1.0, compiler_options={name: value}).lower(1.0).compile()
    except Exception:  # (INVALID_ARGUMENT: No such compile option)
        return False
    return True


def _build(
    fn: Callable, devs: list[Any], n: int, chunk: int, options: dict[str, Any] | None = None
) -> Callable:
    """The batch program, compiled with `options` when called on arrays; called with traced
    values (inside a caller's ``jit``, or by ``jax.export``) it is the same program without
    them, as JAX takes compiler options only on the outermost ``jit``."""
    nd = len(devs)
    per_device = math.ceil(n / (nd * chunk)) * chunk
    total = per_device * nd

    def local(batched: Any, shared: Any) -> Any:
        # batched leaves: (1, n_chunks, chunk, ...) on this device
        chunks = jax.tree.map(lambda x: x[0], batched)
        out = jax.lax.map(lambda c: jax.vmap(fn, in_axes=(0, None))(c, shared), chunks)
        return jax.tree.map(lambda y: y[None], out)

    if nd > 1:
        mesh = Mesh(np.asarray(devs), ("devices",))
        local = jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(P("devices"), P()),
            out_specs=P("devices"),
            check_vma=False,
        )

    def pad(x: Any) -> Any:
        # repeat the last subject to fill the devices' chunks; sliced off afterwards
        if total > n:
            x = jnp.concatenate([x, jnp.repeat(x[-1:], total - n, axis=0)])
        return x.reshape((nd, per_device // chunk, chunk, *x.shape[1:]))

    def whole(batched: Any, shared: Any) -> Any:
        out = local(jax.tree.map(pad, batched), shared)
        return jax.tree.map(lambda y: y.reshape((total, *y.shape[3:]))[:n], out)

    plain = jax.jit(whole)
    if not options:
        return plain
    top = jax.jit(whole, compiler_options=options)

    def program(batched: Any, shared: Any) -> Any:
        traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((batched, shared)))
        return (plain if traced else top)(batched, shared)

    return program
