"""Programs and models kept on disk between processes (cellpkpd._core.programs): a second
process reads the traced program back instead of tracing it, with the same numbers; an entry
is never used for another model, other options or other shapes; a broken entry is rebuilt;
the ODE path's programs hold no host callback (so they can be kept at all); a model file is
parsed once and its pickle read back until the file changes.

"Another process" is played here by a new `ModelSpec` and `Simulator` (nothing of the first
run is left in memory but the module-level caches the tests clear); the CLI tests and
benchmarks/bench_cli.py run real second processes."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import tomllib
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import DESIGN_EXAMPLE as MM_IDR
from jax import export

import cellpkpd as cp
from cellpkpd._core import programs
from cellpkpd.engine.parallel import FAST_COMPILE_OPTIONS

TIMES = np.linspace(0.0, 24.0, 25)


@pytest.fixture
def folder(tmp_path, restore_cache, monkeypatch) -> Path:
    """A compilation cache of this test's own; what the module keeps in memory starts empty."""
    monkeypatch.setenv(programs.ENV, "1")
    cp.config.enable_compilation_cache(tmp_path / "cache")
    monkeypatch.setattr(programs, "_unexportable", set())
    return tmp_path / "cache" / programs.FOLDER


def _entries(folder: Path, kind: str) -> list[Path]:
    return sorted((folder / kind).glob("*")) if (folder / kind).exists() else []


def _spy(monkeypatch) -> dict[str, int]:
    """Counts of `jax.export`'s export and deserialize calls made by cellpkpd."""
    calls = {"export": 0, "deserialize": 0}
    for name in calls:
        real = getattr(export, name)

        def counted(*a, _real=real, _name=name, **kw):
            calls[_name] += 1
            return _real(*a, **kw)

        monkeypatch.setattr(export, name, counted)
    return calls


def _uncached(spec: cp.ModelSpec, reg, **kw) -> dict[str, np.ndarray]:
    """The same simulation with nothing kept on disk (the engine's own jit)."""
    with pytest.MonkeyPatch.context() as m:
        m.setenv("CELLPKPD_COMPILATION_CACHE", "0")
        res = cp.simulate(spec, reg, TIMES, **kw)
    return {k: res[k].values for k in res.data_vars}


@pytest.mark.parametrize("n", [1, 3], ids=["one subject", "three subjects, two devices"])
def test_second_run_reads_the_program_back_with_the_same_numbers(folder, monkeypatch, n):
    """The first run exports the program it traces and writes it; a new model object and
    Simulator (another process) deserialise it and trace nothing; both equal the run without
    the cache bit for bit (the same program), and the closed form (rtol 1e-12)."""
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    cl = np.linspace(1.0, 3.0, n) if n > 1 else 2.0
    calls = _spy(monkeypatch)
    first = cp.simulate(cp.load_model("one_cmt_iv"), reg, TIMES, params={"CL": cl})
    assert calls == {"export": 1, "deserialize": 0}
    assert len(_entries(folder, "exported")) == 1
    second = cp.simulate(cp.load_model("one_cmt_iv"), reg, TIMES, params={"CL": cl})
    assert calls == {"export": 1, "deserialize": 1}
    ref = _uncached(cp.load_model("one_cmt_iv"), reg, params={"CL": cl})
    for k, v in ref.items():
        np.testing.assert_array_equal(first[k].values, v)
        np.testing.assert_array_equal(second[k].values, v)
    V = cp.load_model("one_cmt_iv").parameters["V"].value
    expected = 100.0 * np.exp(-np.outer(np.atleast_1d(cl), TIMES) / V)
    np.testing.assert_allclose(second["central"].values, expected, rtol=1e-12)


def test_an_entry_is_never_used_for_another_model_or_shape(folder, monkeypatch):
    """A model with another value in its file, other output times and another batch size each
    get a program of their own, whose numbers are their own."""
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    spec = cp.load_model("one_cmt_iv")
    other = spec.with_values(V=spec.parameters["V"].value * 2.0)
    assert other.fingerprint != spec.fingerprint
    a = cp.simulate(spec, reg, TIMES)
    b = cp.simulate(other, reg, TIMES)
    c = cp.simulate(spec, reg, TIMES[:10])
    d = cp.simulate(spec, reg, TIMES, params={"CL": [1.0, 2.0]})
    assert len(_entries(folder, "exported")) == 4
    assert not np.allclose(a["conc"].values, b["conc"].values)
    for res, s, kw in ((a, spec, {}), (b, other, {})):
        np.testing.assert_array_equal(res["conc"].values, _uncached(s, reg, **kw)["conc"])
    np.testing.assert_array_equal(c["conc"].values[0], a["conc"].values[0][:10])
    np.testing.assert_array_equal(
        d["conc"].values, _uncached(spec, reg, params={"CL": [1.0, 2.0]})["conc"]
    )


def test_a_broken_entry_is_rebuilt(folder, monkeypatch):
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    first = cp.simulate(cp.load_model("one_cmt_iv"), reg, TIMES)
    (entry,) = _entries(folder, "exported")
    entry.write_bytes(b"not a program")
    calls = _spy(monkeypatch)
    again = cp.simulate(cp.load_model("one_cmt_iv"), reg, TIMES)
    assert calls == {"export": 1, "deserialize": 1}  # read, refused, exported again
    np.testing.assert_array_equal(again["conc"].values, first["conc"].values)
    assert entry.read_bytes() != b"not a program"


@pytest.mark.parametrize("switch", ["CELLPKPD_COMPILATION_CACHE", programs.ENV])
def test_either_switch_turns_it_off(folder, monkeypatch, switch):
    monkeypatch.setenv(switch, "0")
    assert programs.program_dir() is None
    calls = _spy(monkeypatch)
    cp.simulate("one_cmt_iv", cp.Regimen([cp.Dose(0.0, 100.0, "central")]), TIMES)
    assert calls == {"export": 0, "deserialize": 0}
    assert not _entries(folder, "exported")


def test_a_second_cli_process_reads_the_program_and_model_back(tmp_path):
    """Two `cellpkpd simulate` processes on one cache folder: the first writes the program and
    the parsed model, the second reads both (neither is written again) and writes the same
    CSV, byte for byte."""
    env = {**os.environ, "CELLPKPD_COMPILATION_CACHE": str(tmp_path / "c"), programs.ENV: "1"}
    kept = tmp_path / "c" / programs.FOLDER
    written = []
    for run in ("a", "b"):
        cmd = [sys.executable, "-m", "cellpkpd", "simulate", "two_cmt_iv", "--dose", "100",
               "--output", str(tmp_path / run)]  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        written.append({p: p.stat().st_mtime_ns for p in kept.rglob("*") if p.is_file()})
    assert len(written[0]) == 2  # one program, one model
    assert written[1] == written[0]
    csv = [(tmp_path / r / "two_cmt_iv_simulation.csv").read_bytes() for r in ("a", "b")]
    assert csv[0] == csv[1]


def test_ode_programs_have_no_host_callback_and_are_kept(folder, tmp_path, monkeypatch):
    """diffrax checks its save times with equinox's error_if, a host callback in equinox's
    default mode: a program with one is neither kept by JAX's compilation cache nor
    exportable. The ODE path traces those checks without it (`_ts_checks_without_callbacks`),
    so its programs are kept, and read back with the same numbers, compiled with the ODE
    path's XLA options (`FAST_COMPILE_OPTIONS`) when exported and when read back."""
    path = tmp_path / "mm_idr.toml"
    path.write_text(MM_IDR)
    spec = cp.load_model(path)
    sim = cp.Simulator(spec, TIMES, solver="tsit5")
    doses = sim.doses(cp.Regimen([cp.Dose(0.0, 100.0, "central")]))
    jaxpr = str(jax.make_jaxpr(lambda p: sim(p, doses))({}))
    assert "callback" not in jaxpr
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    calls = _spy(monkeypatch)
    options = []
    real_callable = programs._callable
    monkeypatch.setattr(
        programs, "_callable", lambda e, d, o=None: options.append(o) or real_callable(e, d, o)
    )
    first = cp.simulate(spec, reg, TIMES, solver="tsit5")
    second = cp.simulate(cp.load_model(path), reg, TIMES, solver="tsit5")
    assert calls == {"export": 1, "deserialize": 1}
    # exported without the ODE path's XLA options (a traced call), run with them both times
    assert options == [dict(FAST_COMPILE_OPTIONS)] * 2
    ref = _uncached(spec, reg, solver="tsit5")
    for k, v in ref.items():
        np.testing.assert_array_equal(first[k].values, v)
        np.testing.assert_array_equal(second[k].values, v)


def test_traced_inputs_use_the_engine_jit(folder, monkeypatch):
    """Inside a caller's transformation (here grad through the batch) nothing is exported."""
    spec = cp.load_model("one_cmt_iv")
    sim = cp.Simulator(spec, TIMES, outputs=("conc",))
    doses = sim.doses(cp.Regimen([cp.Dose(0.0, 100.0, "central")]))
    calls = _spy(monkeypatch)
    g = jax.grad(lambda cl: sim.batch({"CL": cl}, doses)[0]["conc"].sum())(np.array([2.0, 3.0]))
    assert calls == {"export": 0, "deserialize": 0}
    assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g) < 0)


def test_a_model_file_is_parsed_once_until_it_changes(folder, tmp_path, monkeypatch):
    path = tmp_path / "m.toml"
    path.write_text(MM_IDR)
    built = {"n": 0}
    real = cp.ModelSpec.from_dict.__func__

    def counted(cls, *a, **kw):
        built["n"] += 1
        return real(cls, *a, **kw)

    monkeypatch.setattr(cp.ModelSpec, "from_dict", classmethod(counted))
    a = cp.load_model(path)
    b = cp.load_model(path)
    assert built["n"] == 1 and len(_entries(folder, "specs")) == 1
    assert b.fingerprint == a.fingerprint and str(cp.describe(b)) == str(cp.describe(a))
    assert b.parameters == a.parameters and b.routes == a.routes
    path.write_text(MM_IDR.replace("Vmax = { value = 5.0", "Vmax = { value = 6.0"))
    c = cp.load_model(path)
    assert built["n"] == 2 and c.parameters["Vmax"].value == 6.0
    assert c.fingerprint != a.fingerprint
    assert cp.load_model(path, species=None).fingerprint == c.fingerprint


def test_a_model_pickles_with_the_standard_pickle():
    """Read-only mappings travel as plain dicts and come back read-only; the copy is the same
    model (same fingerprint, same numbers); a model changed by with_values is another."""
    spec = cp.load_model("msc_pbk")
    back = pickle.loads(pickle.dumps(spec))
    assert back.fingerprint == spec.fingerprint
    assert type(back.parameters) is type(spec.parameters)
    assert type(back.routes["iv"]) is type(spec.routes["iv"])
    with pytest.raises(TypeError):
        back.parameters["x"] = 1  # type: ignore[index]
    assert back.parameters == spec.parameters and back.routes == spec.routes
    assert copy.deepcopy(spec).fingerprint == spec.fingerprint
    changed = spec.with_values(E_liver=0.5)
    assert changed.fingerprint != spec.fingerprint
    # a model built in Python (no file): the fingerprint hashes the pickled object
    built = cp.ModelSpec.from_dict(tomllib.loads(MM_IDR), source="<python>")
    other = built.with_values(Vmax=6.0)
    assert built.fingerprint == built.fingerprint and other.fingerprint != built.fingerprint


def test_a_jax_setting_that_changes_the_program_changes_the_key(folder, monkeypatch):
    """A program traced under another matmul precision is another program: it is exported
    again, not read back."""
    reg = cp.Regimen([cp.Dose(0.0, 100.0, "central")])
    calls = _spy(monkeypatch)
    cp.simulate(cp.load_model("one_cmt_iv"), reg, TIMES)
    with jax.default_matmul_precision("float32"):
        cp.simulate(cp.load_model("one_cmt_iv"), reg, TIMES)
    assert calls == {"export": 2, "deserialize": 0}
    assert len(_entries(folder, "exported")) == 2


def test_the_key_holds_versions_of_packages_not_imported_yet(monkeypatch):
    """diffrax is imported on the ODE path's first use, after the first key is made (loading
    the model); its version still keys every entry (read from the installed metadata)."""
    first = programs.code_fingerprint()
    real = programs.metadata.version
    monkeypatch.setattr(
        programs.metadata, "version", lambda n: "0.0.1-other" if n == "diffrax" else real(n)
    )
    monkeypatch.setattr(programs, "_fingerprint", None)
    assert programs.code_fingerprint() != first


def test_a_model_built_in_python_has_one_fingerprint_in_every_process(tmp_path):
    """Sets inside a model (the names an expression uses) iterate in an order that depends on
    Python's hash seed; the fingerprint does not."""
    script = tmp_path / "fp.py"
    script.write_text(
        "import tomllib, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parents[1])!r})\n"
        "from conftest import DESIGN_EXAMPLE\n"
        "import cellpkpd as cp\n"
        "s = cp.ModelSpec.from_dict(tomllib.loads(DESIGN_EXAMPLE), source='<python>')\n"
        "print(s.fingerprint, cp.load_model('one_cmt_iv').with_values(V=3.0).fingerprint)\n"
    )
    seen = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "CELLPKPD_COMPILATION_CACHE": "0"}
        done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                              text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
        seen.add(done.stdout.split()[-2] + done.stdout.split()[-1])
    assert len(seen) == 1


def test_other_code_keeps_equinox_checks_with_callbacks(tmp_path):
    """The ODE path changes the mode of equinox's run-time checks only while this thread
    traces its solves: a check traced by other code afterwards still raises from a host
    callback (equinox's default), and a call with unsorted output times is a one-line error
    before anything is traced."""
    import equinox.internal as eqxi

    path = tmp_path / "mm_idr.toml"
    path.write_text(MM_IDR)
    sim = cp.Simulator(cp.load_model(path), solver="tsit5", outputs=("central",))
    doses = sim.doses(cp.Regimen([cp.Dose(0.0, 100.0, "central")]))
    jax.make_jaxpr(lambda p: sim(p, doses, TIMES))({})
    jaxpr = jax.make_jaxpr(lambda x: eqxi.error_if(x, x < 0, "negative"))(np.arange(3.0))
    assert "callback" in str(jaxpr)
    with pytest.raises(cp.SpecError, match=r"^Simulator: times must be non-decreasing; times\[2\]"):
        sim({}, doses, np.array([0.0, 2.0, 1.0]))
