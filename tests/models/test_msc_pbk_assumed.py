"""docs/library/msc_pbk_assumed.md (written by models/calibration/msc_pbk_assumed.py --write)
lists exactly the parameters of models/msc_pbk.toml whose source says 'assumed', each with its
file value: the page is re-generated when a parameter is sourced, calibrated or changed."""

from __future__ import annotations

import re
from pathlib import Path

import cellpkpd as cp

PAGE = Path(__file__).resolve().parents[2] / "docs" / "library" / "msc_pbk_assumed.md"


def test_page_lists_the_assumed_parameters_with_their_values() -> None:
    spec = cp.load_model("msc_pbk")
    assumed = {
        k: p.value
        for k, p in spec.parameters.items()
        if p.source.lower().startswith("assumed") and p.value > 0
    }
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", PAGE.read_text(), flags=re.MULTILINE)
    listed = {k: float(v) for k, v in rows}
    rerun = "re-run: python models/calibration/msc_pbk_assumed.py --write"
    assert set(listed) == set(assumed), rerun
    for k, v in assumed.items():
        assert abs(listed[k] - v) <= 5e-4 * abs(v), (k, listed[k], v)  # printed to 4 digits
