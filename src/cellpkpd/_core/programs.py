"""Traced programs and loaded models kept on disk between processes, beside JAX's persistent
compilation cache: what a second ``cellpkpd simulate`` of the same model skips.

JAX's compilation cache (`cellpkpd._core.config.enable_compilation_cache`) saves the XLA
compilation, but each new process still traces the program (Python running the engine's
code under JAX, ~1-2 s for a library cell model) and lowers it before it can look the
compilation up. This module keeps the traced program itself (`jax.export`, serialised
StableHLO) and the parsed model (a pickled `ModelSpec`, so pint and the parser are not run
again), in ``<compilation cache folder>/cellpkpd-programs``. It is on whenever the
compilation cache is on (the CLI; ``cp.config.enable_compilation_cache()`` in a notebook) and
off with it (``CELLPKPD_COMPILATION_CACHE=0``); ``CELLPKPD_PROGRAM_CACHE=0`` turns off this
part alone.

What keys an entry, so that a stale entry is never used:

- the caller's key, which must name everything the program depends on (for a simulator: a
  hash of the whole pickled model, the output times and names, the engine options and the
  plan; `Simulator._program_key`); callers whose program depends on something that cannot be
  hashed by content (a user's Python function) pass no key and are not cached;
- the shapes, dtypes and tree structure of the arguments, the devices' platform and number;
- `code_fingerprint`: a hash of every source file of the installed cellpkpd (an edited
  checkout invalidates its entries), and the versions of Python, JAX, jaxlib, equinox and
  diffrax, with the environment variables that change what they trace (``EQX_ON_ERROR``).

A program that `jax.export` cannot serialise (e.g. host callbacks) is compiled as before;
an unreadable or incompatible entry is rebuilt and overwritten; a folder that cannot be
written leaves the run as it would be without the cache. Entries are small (~0.1-1 MB);
delete the folder to free the space.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["cached_object", "cached_program", "code_fingerprint", "program_dir"]

#: subfolder of the compilation cache folder that holds the entries of this module
FOLDER = "cellpkpd-programs"

T = TypeVar("T")

#: distributions whose versions key the entries (what traces, lowers and parses)
DEPENDENCIES = ("jax", "jaxlib", "equinox", "diffrax", "lineax", "optimistix", "numpy", "pint")

_lock = threading.RLock()
_fingerprint: str | None = None
_stat: tuple[Any, ...] | None = None
#: keys whose export failed in this process (not tried again)
_unexportable: set[str] = set()


#: environment variable that turns this module off alone (0/off/false/no), leaving JAX's
#: compilation cache on
ENV = "CELLPKPD_PROGRAM_CACHE"


def program_dir() -> Path | None:
    """The folder of the entries, or None when the compilation cache is off (or this module
    alone, by ``CELLPKPD_PROGRAM_CACHE=0``)."""
    from .config import compilation_cache_dir, compilation_cache_disabled

    off = os.environ.get(ENV, "").strip().lower() in ("0", "off", "false", "no")
    if off or compilation_cache_disabled():
        return None
    folder = compilation_cache_dir()
    return None if folder is None else folder / FOLDER


def code_fingerprint() -> str:
    """SHA-256 of the installed cellpkpd's source files and of the versions (and settings)
    of what traces its programs and parses its models.

    The files' contents are hashed again whenever one of them changes size or time (a stat of
    each file per call, ~1 ms; an edited checkout under ``%autoreload`` gets new keys); the
    versions are read from the installed distributions' metadata, so a package that is not
    imported yet (diffrax, imported on the ODE path's first use) still counts."""
    global _fingerprint, _stat
    root = Path(__file__).resolve().parents[1]
    files = sorted(root.rglob("*.py"))
    stat = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    with _lock:
        if _fingerprint is None or stat != _stat:
            h = hashlib.sha256()
            for path in files:
                h.update(str(path.relative_to(root)).encode())
                h.update(path.read_bytes())
            versions = [sys.version]
            for name in DEPENDENCIES:
                try:
                    versions.append(f"{name} {metadata.version(name)}")
                except metadata.PackageNotFoundError:
                    versions.append(f"{name} -")
            versions.append(f"EQX_ON_ERROR={os.environ.get('EQX_ON_ERROR', '')}")
            h.update(repr(versions).encode())
            _fingerprint, _stat = h.hexdigest(), stat
        return _fingerprint


def _settings() -> tuple[Any, ...]:
    """The JAX settings that change a traced program, read at each use (a user may change
    them between two calls)."""
    c = jax.config
    return (c.jax_enable_x64, c.jax_default_matmul_precision, c.jax_numpy_dtype_promotion)


def _digest(*parts: Any) -> str:
    full = (code_fingerprint(), _settings(), *parts)
    return hashlib.sha256(repr(full).encode()).hexdigest()[:40]


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _write(path: Path, data: bytes) -> None:
    """Write atomically (another process may read or write the same entry); give up
    silently on a folder that cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass


def cached_object(kind: str, key: Any, build: Callable[[], T]) -> T:
    """`build()`, or its pickle kept on disk under (`kind`, `key`, `code_fingerprint`).

    `key` must name every input of `build` (e.g. a model file's bytes and the species).
    Without the cache folder, `build()` itself; an entry that does not unpickle is
    rebuilt.
    """
    folder = program_dir()
    if folder is None:
        return build()
    path = folder / kind / f"{_digest(kind, key)}.pkl"
    data = _read(path)
    if data is not None:
        try:
            return pickle.loads(data)  # (our own cache folder)
        except Exception:  # (a truncated or foreign entry: rebuild it)
            pass
    obj = build()
    try:
        blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # (not picklable: nothing to keep)
        return obj
    _write(path, blob)
    return obj


def _signature(leaves: list[Any]) -> tuple[Any, ...]:
    return tuple(
        (tuple(np.shape(x)), str(jax.numpy.result_type(x)), bool(getattr(x, "weak_type", False)))
        for x in leaves
    )


def cached_program(
    jitted: Callable[..., Any],
    key: str | None,
    devices: Sequence[Any] | None = None,
    compiler_options: dict[str, Any] | None = None,
) -> Callable[..., Any]:
    """`jitted` (a function of pytrees of arrays that JAX can trace: a `jax.jit` function, or
    one that calls a `jax.jit` function with compiler options when given arrays and one
    without them when traced), whose traced program is kept on
    disk under `key` and the arguments' structure, shapes and dtypes (`jax.export`).

    `devices`: those `jitted` is sharded over (several: its program is called on a mesh of
    them, as `jax.export` requires); `compiler_options`: the XLA options `jitted` is
    compiled with, given again to the program read back (`key` must name them). With `key`
    None or the cache off, `jitted` itself.
    Calls with traced arguments (inside
    a caller's `jit`, `grad` or `vmap`) go to `jitted`. The result is the same pytree
    `jitted` returns; the values are those of the same program.
    """
    if key is None:
        return jitted
    devs = list(devices) if devices else jax.devices()[:1]
    where = (devs[0].platform, len(devs), len(jax.devices()))
    # programs this function already holds, by the arguments' structure and the JAX
    # settings: a later call with the same ones neither hashes the source nor reads disk
    loaded: dict[tuple[Any, ...], Callable[..., Any]] = {}

    def call(*args: Any) -> Any:
        folder = program_dir()
        leaves, tree = jax.tree.flatten(args)
        if folder is None or any(isinstance(x, jax.core.Tracer) for x in leaves):
            return jitted(*args)
        here = (tree, _signature(leaves), _settings())
        f = loaded.get(here)
        if f is None:
            full = _digest(key, str(tree), here[1], where)
            if full in _unexportable:
                return jitted(*args)
            path = folder / "exported" / f"{full}.bin"
            f = _load_or_export(jitted, tree, leaves, path, devs, compiler_options)
            if f is None:
                with _lock:
                    _unexportable.add(full)
                return jitted(*args)
            loaded[here] = f
        return f(*leaves)

    return call


def _load_or_export(
    jitted: Callable[..., Any],
    tree: Any,
    leaves: list[Any],
    path: Path,
    devices: list[Any],
    options: dict[str, Any] | None = None,
) -> Callable[..., Any] | None:
    """The deserialised program at `path`, or `jitted` exported (and written there); None
    when it cannot be exported."""
    from jax import export

    data = _read(path)
    if data is not None:
        try:
            return _callable(export.deserialize(bytearray(data)), devices, options)
        except Exception:  # (truncated, or written by another JAX: rebuild)
            pass
    flat = jax.jit(lambda *xs: jitted(*jax.tree.unflatten(tree, xs)))
    try:
        exported = export.export(flat)(*leaves)
        blob = exported.serialize()
    except Exception:  # (e.g. host callbacks, or flatbuffers missing)
        return None
    _write(path, bytes(blob))
    return _callable(exported, devices, options)


def _callable(
    exported: Any, devices: list[Any], options: dict[str, Any] | None = None
) -> Callable[..., Any]:
    if exported.nr_devices == 1:
        return jax.jit(exported.call, compiler_options=options)
    # a sharded program runs on a mesh of as many devices as it was exported for
    # (its inputs and outputs replicated there: `cellpkpd.engine.parallel` shards inside)
    mesh = Mesh(np.asarray(devices[: exported.nr_devices]), ("devices",))
    whole = NamedSharding(mesh, PartitionSpec())
    return jax.jit(
        exported.call,
        in_shardings=tuple(whole for _ in exported.in_avals),
        out_shardings=jax.tree.unflatten(exported.out_tree, [whole] * len(exported.out_avals)),
        compiler_options=options,
    )
