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
