"""The worked example of docs/models.md loads, runs and balances its mass."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import cellpkpd as cp

DOCS = Path(__file__).resolve().parents[1] / "docs" / "models.md"


def test_worked_example_of_the_model_guide(tmp_path: Path) -> None:
    text = DOCS.read_text(encoding="utf-8")
    toml = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    path = tmp_path / "cells_lung_trap.toml"
    path.write_text(toml)
    spec = cp.load_model(path)
    assert spec.is_linear
    assert "| k_trap" in cp.describe(spec)
    reg = cp.Regimen([cp.Dose(time=0.0, amount=1e6, cmt="blood", duration=0.25)])
    times = np.linspace(0, 72, 289)
    res = cp.simulate(spec, reg, times, covariates={"diameter": [15.0, 25.0]})
    total = (res["blood"] + res["lung"] + res["dead"] + res["cleared"]).values
    infused = 0.9e6 * np.clip(times / 0.25, 0.0, 1.0)
    # exact path: conservation to round-off of the matrix exponential
    np.testing.assert_allclose(total, np.broadcast_to(infused, total.shape), rtol=1e-9, atol=1e-6)
    # larger cells are trapped more
    assert res["lung"].values[1].max() > res["lung"].values[0].max()


def test_msc_library_pages_list_their_facts_routes_flows_and_limits() -> None:
    """docs/library/msc_*.md (written by docs/make_figures.py) name every published-fact test
    of their model (tests/models/test_literature_msc.py), every route and flow, and the model file's
    known limits: a fact test added or a limit written without regenerating the pages fails."""
    import importlib.util

    library = DOCS.parent / "library"
    loader = importlib.util.spec_from_file_location("make_figures", DOCS.parent / "make_figures.py")
    make_figures = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(make_figures)
    tests = {m: [t for _, t, _ in facts] for m, facts in make_figures.literature_facts().items()}
    assert set(tests) == {"msc_pbk", "msc_pkpd_host"}
    for name, names in tests.items():
        page = (library / f"{name}.md").read_text(encoding="utf-8")
        spec = cp.load_model(name)
        assert "## Facts it reproduces" in page and "## Known limits" in page
        assert all(f"(`{t}`)" in page for t in names), name
        assert all(f"| {r} | " in page for r in spec.routes), name
        assert all(f"| {f.source} | {f.target or '(lost)'} |" in page for f in spec.flows), name
        for note in spec.extra["notes"]:
            assert note.replace("|", "\\|") in page, note
