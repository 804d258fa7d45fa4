"""Process-wide settings that users may want to see or change: JAX's persistent compilation
cache (where compiled programs are kept between Python sessions).

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
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

from .errors import SpecError

ENV = "CELLPKPD_COMPILATION_CACHE"
_OFF = ("0", "off", "false", "no")


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
