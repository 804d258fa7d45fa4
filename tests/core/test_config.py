"""cp.config: JAX's persistent compilation cache, on by one call (the CLI makes it) and off by
CELLPKPD_COMPILATION_CACHE=0; a compiled program lands in the folder and is read back. The CPU
devices asked of XLA (on import, by CELLPKPD_CPU_DEVICES, by the user's XLA_FLAGS or by
cp.config.use_cpu_cores), checked in fresh processes, where JAX has not started yet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cellpkpd as cp
from cellpkpd.cli.main import main


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def test_enabled_cache_keeps_a_compiled_program_on_disk(tmp_path, restore_cache):
    folder = cp.config.enable_compilation_cache(tmp_path / "cache", min_compile_seconds=0.0)
    assert folder == tmp_path / "cache" and cp.config.compilation_cache_dir() == folder

    def f(x):  # a program of its own (the constant makes its key unique to this test)
        return jnp.sin(x) * 12.345678 + jnp.cumsum(x)

    np.testing.assert_allclose(jax.jit(f)(jnp.arange(7.0)), f(np.arange(7.0)))
    assert _entries(folder), "no compiled program was written to the cache"


def test_off_switch_leaves_jax_untouched(tmp_path, monkeypatch, restore_cache):
    monkeypatch.setenv("CELLPKPD_COMPILATION_CACHE", "0")
    before = jax.config.jax_compilation_cache_dir
    assert cp.config.compilation_cache_disabled()
    assert cp.config.enable_compilation_cache(tmp_path / "never") is None
    assert jax.config.jax_compilation_cache_dir == before
    assert not (tmp_path / "never").exists()


def test_environment_variable_names_the_default_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLPKPD_COMPILATION_CACHE", str(tmp_path / "here"))
    assert cp.config.default_cache_dir() == tmp_path / "here"
    monkeypatch.setenv("CELLPKPD_COMPILATION_CACHE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cp.config.default_cache_dir() == tmp_path / "xdg" / "cellpkpd" / "jax"


def test_no_home_folder_is_a_one_line_error(monkeypatch):
    monkeypatch.delenv("CELLPKPD_COMPILATION_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    with pytest.raises(cp.SpecError, match="no home folder to keep it in; set XDG_CACHE_HOME"):
        cp.config.default_cache_dir()


def test_unwritable_folder_is_a_one_line_error(tmp_path, restore_cache):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(cp.SpecError, match=r"^enable_compilation_cache: cannot write to .*file"):
        cp.config.enable_compilation_cache(blocker / "cache")
    with pytest.raises(cp.SpecError, match="min_compile_seconds = -1"):
        cp.config.enable_compilation_cache(tmp_path, min_compile_seconds=-1)


def test_cli_turns_on_the_cache_in_the_folder_it_is_given(
    tmp_path, monkeypatch, capsys, restore_cache
):
    folder = tmp_path / "cli-cache"
    monkeypatch.setenv("CELLPKPD_COMPILATION_CACHE", str(folder))
    code = main(["simulate", "one_cmt_iv", "--dose", "100", "--end", "24", "--output",
                 str(tmp_path / "out")])  # fmt: skip
    capsys.readouterr()
    assert code == 0
    assert cp.config.compilation_cache_dir() == folder
    assert folder.is_dir()


# ---------------------------------------------------------------------- CPU devices
def _fresh(code: str, **env: str) -> dict:
    """Run `code` in a new Python process (JAX not started) with `env` added to an
    environment without XLA_FLAGS or CELLPKPD_CPU_DEVICES; `code` prints one JSON line."""
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "CELLPKPD_CPU_DEVICES")}
    proc = subprocess.run(
        [sys.executable, "-W", "always", "-c", textwrap.dedent(code)],
        env={**base, **env}, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["stderr"] = proc.stderr
    return out


REPORT = """
import json, os
import cellpkpd as cp
d = cp.config.devices()
print(json.dumps({"flags": os.environ.get("XLA_FLAGS"), "cpu": d.cpu_devices,
                  "requested": d.requested, "by": d.requested_by, "text": str(d)}))
"""


@pytest.mark.slow
def test_import_asks_for_one_cpu_device_per_core_and_says_so():
    cores = os.cpu_count() or 1
    out = _fresh(REPORT)
    assert out["requested"] == cores and out["by"] == f"one per core of {cores}"
    assert out["cpu"] == cores and "warn" not in out["stderr"].lower()
    if cores > 1:
        assert out["flags"] == f"--xla_force_host_platform_device_count={cores}"
    assert f"{cores} CPU device(s) requested (one per core of {cores})" in out["text"]


@pytest.mark.slow
def test_environment_chooses_the_count_and_the_users_xla_flags_win():
    three = _fresh(REPORT, CELLPKPD_CPU_DEVICES="3")
    assert (three["cpu"], three["requested"], three["by"]) == (3, 3, "CELLPKPD_CPU_DEVICES=3")
    off = _fresh(REPORT, CELLPKPD_CPU_DEVICES="1")
    assert off["cpu"] == 1 and off["flags"] is None
    flags = "--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=4"
    user = _fresh(REPORT, CELLPKPD_CPU_DEVICES="3", XLA_FLAGS=flags)
    assert (user["cpu"], user["requested"], user["by"]) == (4, 4, "XLA_FLAGS")
    assert user["flags"].startswith("--xla_cpu_enable_fast_math=false")  # left as it was


@pytest.mark.slow
def test_explicit_request_before_jax_starts_and_a_clear_error_after():
    out = _fresh(
        """
        import json
        import cellpkpd as cp
        n = cp.config.use_cpu_cores(3)
        import jax.numpy as jnp
        jnp.ones(2).block_until_ready()  # JAX starts with 3 CPU devices
        same = cp.config.use_cpu_cores(3)  # nothing to change: no error
        try:
            cp.config.use_cpu_cores(5)
            late = None
        except RuntimeError as exc:
            late = str(exc)
        print(json.dumps({"n": n, "same": same, "cpu": cp.config.devices().cpu_devices,
                          "late": late}))
        """
    )
    assert (out["n"], out["same"], out["cpu"]) == (3, 3, 3)
    assert out["late"].startswith("cellpkpd asked for 5 CPU devices (use_cpu_cores(5)), but JAX "
                                  "had already started with 3")  # fmt: skip
    assert "before the first JAX computation" in out["late"] and "\n" not in out["late"]


@pytest.mark.slow
def test_jax_started_before_the_import_is_a_warning_not_silence():
    out = _fresh(
        """
        import json
        import jax.numpy as jnp
        jnp.ones(2).block_until_ready()  # JAX starts with XLA's one CPU device
        import cellpkpd as cp
        d = cp.config.devices()
        print(json.dumps({"cpu": d.cpu_devices, "text": str(d)}))
        """,
        CELLPKPD_CPU_DEVICES="2",
    )
    assert out["cpu"] == 1
    assert "cellpkpd asked for 2 CPU devices (CELLPKPD_CPU_DEVICES=2), but JAX had already " \
        "started with 1" in out["stderr"]  # fmt: skip
    assert "but JAX started before the request and has 1" in out["text"]


def test_use_cpu_cores_rejects_a_count_that_is_not_a_whole_number():
    for bad in (0, -2, 2.5, True):
        with pytest.raises(cp.SpecError, match=r"^use_cpu_cores: n = .*; expected a whole number"):
            cp.config.use_cpu_cores(bad)


def test_use_cpu_cores_after_start_with_the_same_count_is_quiet(recwarn):
    have = len(jax.devices("cpu"))
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        pytest.skip("this process asked for no CPU devices")
    assert cp.config.use_cpu_cores(too_late="warn") == have
    assert not [w for w in recwarn if "CPU devices" in str(w.message)]
