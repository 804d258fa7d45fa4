"""cp.config: JAX's persistent compilation cache, on by one call (the CLI makes it) and off by
CELLPKPD_COMPILATION_CACHE=0; a compiled program lands in the folder and is read back."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

import cellpkpd as cp
from cellpkpd.cli.main import main


@pytest.fixture
def restore_cache():
    """Put this worker's cache settings back after the test (other tests share them)."""
    before = (
        jax.config.jax_compilation_cache_dir,
        jax.config.jax_persistent_cache_min_compile_time_secs,
    )
    yield
    jax.config.update("jax_compilation_cache_dir", before[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
    compilation_cache.reset_cache()


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
