"""Process-wide settings that users may want to see or change: how many CPU devices JAX
has (so that batches spread over every core), and JAX's persistent compilation cache (where
compiled programs are kept between Python sessions).

CPU devices
-----------
XLA gives a CPU one device unless asked for more before JAX starts its backends (at the first
computation or ``jax.devices()``); `cellpkpd.engine.parallel` shards a batch over the
devices, so one device means one core.

- ``import cellpkpd`` calls :func:`use_cpu_cores` (one device per core), with a log line on
  the ``cellpkpd`` logger; so does the CLI. The request goes into the ``XLA_FLAGS``
  environment variable (``--xla_force_host_platform_device_count``), never over a count
  the user's ``XLA_FLAGS`` already sets.
- ``CELLPKPD_CPU_DEVICES=N`` chooses N (0 or 1 turns the request off).
- When JAX started before cellpkpd was imported (a computation ran first), the request comes
  too late: a warning says so (once JAX runs on the CPU with fewer devices than requested).
- In a notebook, ``cp.config.use_cpu_cores(n)`` before the first computation chooses n,
  and ``cp.config.devices()`` says what JAX has.

Compilation cache
-----------------
cellpkpd compiles one XLA program per model, output grid and batch shape; for the library's
cell models that takes seconds. With the persistent cache on, a second Python process (a
second ``cellpkpd simulate`` of the same model, a notebook re-run) reads the compiled program
from disk instead of compiling it again.

- The CLI turns the cache on for every command, in :func:`default_cache_dir`.
- In a notebook or script, one line turns it on: ``cp.config.enable_compilation_cache()``.
- ``CELLPKPD_COMPILATION_CACHE=0`` in the environment turns it off for both;
  ``CELLPKPD_COMPILATION_CACHE=/some/folder`` chooses the folder.

The cache is JAX's own (``jax_compilation_cache_dir``): entries are keyed by the program, the
JAX/XLA versions and the device, so a stale entry is never used for another program. It has
no size limit (one entry per model, output grid and batch shape, typically 0.1-5 MB each):
delete the folder to free the space; it is refilled as programs are compiled again.

With it, the subfolder ``cellpkpd-programs`` keeps what JAX's cache cannot skip: the traced
program itself (tracing a library cell model takes 1-2 s) and the parsed model file
(`cellpkpd._core.programs`, keyed by the model, the options, the shapes and a hash of
cellpkpd's own source); the same switch turns both on and off, and
``CELLPKPD_PROGRAM_CACHE=0`` turns off the programs alone.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jax
from jax.experimental.compilation_cache import compilation_cache

from .errors import SpecError

__all__ = [
    "CPU_DEVICES_ENV",
    "ENV",
    "Devices",
    "compilation_cache_dir",
    "compilation_cache_disabled",
    "default_cache_dir",
    "devices",
    "enable_compilation_cache",
    "use_cpu_cores",
]

ENV = "CELLPKPD_COMPILATION_CACHE"
_OFF = ("0", "off", "false", "no")
CPU_DEVICES_ENV = "CELLPKPD_CPU_DEVICES"
_FLAG = "--xla_force_host_platform_device_count"
_FLAG_VALUE = re.compile(r"--?xla_force_host_platform_device_count=(\S*)")
_log = logging.getLogger("cellpkpd")


# ---------------------------------------------------------------------- CPU devices
@dataclass
class _Request:
    """What this process asked of XLA: the count, who chose it, and the exact flag written
    into XLA_FLAGS (None where the user's own XLA_FLAGS decides)."""

    count: int
    by: str
    flag: str | None


_request: _Request | None = None


def _backends_started() -> bool:
    """Whether JAX has started its backends (after which XLA_FLAGS is no longer read)."""
    from jax._src import xla_bridge

    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started()) if started is not None else bool(getattr(xla_bridge, "_backends", {}))


def _cpu_device_count() -> int | None:
    """CPU devices JAX has (starts the backends); None without a CPU backend."""
    try:
        return len(jax.devices("cpu"))
    except RuntimeError:  # e.g. JAX_PLATFORMS=cuda
        return None


def _wanted(n: int | None) -> tuple[int, str]:
    """The count to request and who chose it: `n`, else CELLPKPD_CPU_DEVICES, else one
    device per core."""
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SpecError(f"use_cpu_cores: n = {n!r}; expected a whole number of devices >= 1")
        return n, f"use_cpu_cores({n})"
    env = os.environ.get(CPU_DEVICES_ENV, "").strip()
    if env:
        if env.isdigit():
            return max(int(env), 1), f"{CPU_DEVICES_ENV}={env}"
        warnings.warn(
            f"{CPU_DEVICES_ENV} = {env!r} is not a whole number of devices; cellpkpd asks XLA "
            "for no extra CPU devices (set it to e.g. 4, or 1 for one device)",
            stacklevel=3,
        )
        return 1, f"{CPU_DEVICES_ENV}={env} (not a number)"
    cores = os.cpu_count() or 1
    return cores, f"one per core of {cores}"


def _too_late(want: int, have: int | None, by: str, too_late: str) -> None:
    """Report a request that came after JAX started with another number of CPU devices."""
    if have is None or have == want:
        return
    msg = (
        f"cellpkpd asked for {want} CPU devices ({by}), but JAX had already started with "
        f"{have}; batches use {have} core{'s' if have != 1 else ''}. Request them before the "
        "first JAX computation (import cellpkpd first, or call cp.config.use_cpu_cores() "
        f"after a kernel restart), or set XLA_FLAGS={_FLAG}={want} before Python starts"
    )
    if too_late == "raise":
        raise RuntimeError(msg)
    if jax.default_backend() == "cpu":  # on a GPU the CPU devices do not run the batches
        warnings.warn(msg, stacklevel=3)


def use_cpu_cores(n: int | None = None, *, too_late: Literal["raise", "warn"] = "raise") -> int:
    """Ask XLA for `n` CPU (host) devices, so that batches spread over `n` cores.

    Parameters
    ----------
    n : int, optional
        Number of CPU devices. Default: ``$CELLPKPD_CPU_DEVICES`` when set (0 or 1: no
        request), else one per core (``os.cpu_count()``).
    too_late : {"raise", "warn"}
        What to do when JAX has already started its backends with another number of CPU
        devices: raise, or warn (and only when JAX computes on the CPU). ``import
        cellpkpd`` and the CLI warn.

    Returns
    -------
    int
        The number of CPU devices JAX has, or will have when it starts.

    Raises
    ------
    SpecError
        `n` is not a whole number >= 1.
    RuntimeError
        With ``too_late="raise"``: JAX already started with another number of CPU devices
        (XLA reads the request only when it starts: restart the Python kernel, then call
        this first).

    Notes
    -----
    The request is written into the ``XLA_FLAGS`` environment variable
    (``--xla_force_host_platform_device_count=n``) of this process (and so of the processes
    it starts); a count that ``XLA_FLAGS`` had before cellpkpd set it is left as it is (a
    different `n` is then reported with a warning). `devices` shows the outcome.
    """
    global _request
    want, by = _wanted(n)
    flags = os.environ.get("XLA_FLAGS", "")
    ours = _request.flag if _request is not None else None
    user = _FLAG_VALUE.search(flags) if ours is None or ours not in flags.split() else None
    if user is not None:  # the user's XLA_FLAGS decides
        value = user.group(1)
        count = int(value) if value.isdigit() else 1
        if n is not None and n != count:
            warnings.warn(
                f"use_cpu_cores({n}): XLA_FLAGS already asks for {count} CPU devices "
                f"({user.group(0)}); left as it is (remove it from XLA_FLAGS to choose here)",
                stacklevel=2,
            )
        if _backends_started():
            _too_late(count, _cpu_device_count(), "XLA_FLAGS", too_late)
        _request = _Request(count, "XLA_FLAGS", None)
        return count
    if _backends_started():
        have = _cpu_device_count()
        _too_late(want, have, by, too_late)
        if have is not None and have != want:  # devices() shows the request that came late
            _request = _Request(want, by, ours)
        return have if have is not None else want
    kept = [f for f in flags.split() if f != ours]
    flag = f"{_FLAG}={want}" if want > 1 else None
    os.environ["XLA_FLAGS"] = " ".join([*kept, *([flag] if flag else [])])
    if not os.environ["XLA_FLAGS"]:
        del os.environ["XLA_FLAGS"]
    _request = _Request(want, by, flag)
    _log.info(
        "cellpkpd: %d CPU device%s for JAX (%s; see cp.config.devices())",
        want,
        "s" if want > 1 else "",
        by,
    )
    return want


@dataclass(frozen=True)
class Devices:
    """What JAX computes on (see `devices`).

    Attributes
    ----------
    backend : str
        JAX's default backend (``"cpu"``, ``"gpu"``, ``"tpu"``): where batches run.
    devices : tuple of str
        The default backend's devices, the ones a batch is sharded over.
    cpu_devices : int
        CPU devices (0 without a CPU backend).
    requested : int or None
        CPU devices asked of XLA (by `use_cpu_cores` or the user's ``XLA_FLAGS``); None when
        nothing was asked.
    requested_by : str
        Who chose `requested`: ``"one per core of 16"``, ``"CELLPKPD_CPU_DEVICES=4"``,
        ``"use_cpu_cores(4)"`` or ``"XLA_FLAGS"``.
    """

    backend: str
    devices: tuple[str, ...]
    cpu_devices: int
    requested: int | None
    requested_by: str

    def __str__(self) -> str:
        shown = ", ".join(self.devices[:4]) + (", ..." if len(self.devices) > 4 else "")
        text = f"JAX computes on {self.backend}: {len(self.devices)} device(s) ({shown})"
        if self.requested is not None:
            text += f"; {self.requested} CPU device(s) requested ({self.requested_by})"
            if self.requested != self.cpu_devices:
                text += f", but JAX started before the request and has {self.cpu_devices}"
        return text


def devices() -> Devices:
    """The devices JAX computes on, and the CPU devices cellpkpd asked for.

    Returns
    -------
    Devices
        Prints as one line, e.g. ``JAX computes on cpu: 2 device(s) (TFRT_CPU_0,
        TFRT_CPU_1); 2 CPU device(s) requested (one per core of 2)``.

    Notes
    -----
    Starts JAX's backends (as any computation does): a later `use_cpu_cores` with another
    count comes too late.
    """
    req = _request
    if req is None:
        match = _FLAG_VALUE.search(os.environ.get("XLA_FLAGS", ""))
        if match is not None and match.group(1).isdigit():
            req = _Request(int(match.group(1)), "XLA_FLAGS", None)
    return Devices(
        backend=jax.default_backend(),
        devices=tuple(str(d) for d in jax.devices()),
        cpu_devices=_cpu_device_count() or 0,
        requested=req.count if req is not None else None,
        requested_by=req.by if req is not None else "",
    )


# ---------------------------------------------------------------------- compilation cache


def default_cache_dir() -> Path:
    """Folder of the persistent compilation cache when none is given.

    Returns
    -------
    pathlib.Path
        ``$CELLPKPD_COMPILATION_CACHE`` when it names a folder, else
        ``$XDG_CACHE_HOME/cellpkpd/jax`` (``~/.cache/cellpkpd/jax`` without XDG_CACHE_HOME).

    Raises
    ------
    SpecError
        No variable names a folder and there is no home folder.
    """
    env = os.environ.get(ENV, "").strip()
    if env and env.lower() not in (*_OFF, "1", "on", "true", "yes"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = Path.home() / ".cache"
        except RuntimeError:  # no HOME and no passwd entry (e.g. a container's bare uid)
            raise SpecError(
                "compilation cache: no home folder to keep it in; set XDG_CACHE_HOME or "
                f"{ENV}=/some/folder (or {ENV}=0)"
            ) from None
    return Path(base) / "cellpkpd" / "jax"


def compilation_cache_disabled() -> bool:
    """True when ``CELLPKPD_COMPILATION_CACHE`` is 0/off/false/no (the off switch)."""
    return os.environ.get(ENV, "").strip().lower() in _OFF


def enable_compilation_cache(
    path: str | os.PathLike[str] | None = None, *, min_compile_seconds: float = 0.5
) -> Path | None:
    """Keep compiled XLA programs on disk, so later processes skip their compilation.

    Parameters
    ----------
    path : str or path-like, optional
        Cache folder (created if missing). Default: :func:`default_cache_dir`.
    min_compile_seconds : float
        Only programs whose compilation took at least this long [s] are written (small
        programs are faster to compile than to read back). Default 0.5.

    Returns
    -------
    pathlib.Path or None
        The folder in use, or None when ``CELLPKPD_COMPILATION_CACHE=0`` switched it off
        (nothing is changed then).

    Raises
    ------
    SpecError
        The folder cannot be created or written, or `min_compile_seconds` is negative.

    Notes
    -----
    Sets JAX's ``jax_compilation_cache_dir`` and ``jax_persistent_cache_min_compile_time_secs``
    for this process; call it before the first simulation to cache every program.
    """
    if compilation_cache_disabled():
        return None
    if not (min_compile_seconds >= 0.0):
        raise SpecError(
            f"enable_compilation_cache: min_compile_seconds = {min_compile_seconds!r}; "
            "expected a number of seconds >= 0"
        )
    folder = Path(path).expanduser() if path is not None else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".cellpkpd-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SpecError(
            f"enable_compilation_cache: cannot write to {folder} ({exc.strerror or exc}); "
            f"pass another path= or set {ENV}=0"
        ) from None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    # JAX decides once per process whether the cache is used (at the first compilation):
    # start over, so that enabling it after a first simulation still takes effect
    compilation_cache.reset_cache()
    return folder


def compilation_cache_dir() -> Path | None:
    """The folder of the persistent compilation cache in use, or None when it is off."""
    folder = jax.config.jax_compilation_cache_dir
    return Path(folder) if folder else None
