"""Issue 18: a model in Jupyter. `ModelSpec._repr_markdown_` and `cp.describe(spec)` render
(with mistune, the Markdown renderer of nbconvert, raw HTML passed through as Jupyter's
renderers do) as HTML tables of states, flows, parameters with units and sources, with
every row there and no text lost to a tag; printing still gives the text."""

from __future__ import annotations

import html
import re

import pytest

import cellpkpd as cp

mistune = pytest.importorskip("mistune")


def _tables(markdown: str) -> dict[str, list[list[str]]]:
    """Rendered tables by their heading: rows of cell texts (header row left out)."""
    rendered = mistune.html(markdown)
    out = {}
    for title, body in re.findall(r"<h2>(.*?)</h2>\s*<table>(.*?)</table>", rendered, re.S):
        body = body.split("<tbody>", 1)[1]
        rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
        cells = [[html.unescape(c).strip() for c in re.findall(r"<td>(.*?)</td>", r, re.S)]
                 for r in rows]  # fmt: skip
        out[html.unescape(title).split(" (")[0]] = cells
    return out


def test_msc_pbk_renders_as_tables_with_every_row_unit_and_source() -> None:
    spec = cp.load_model("msc_pbk")
    tables = _tables(spec._repr_markdown_())
    assert {"States", "Flows", "Parameters", "Observations", "Routes"} <= set(tables)
    assert [r[0] for r in tables["States"]] == list(spec.states)
    assert len(tables["Flows"]) == len(spec.flows)
    first = tables["Flows"][0]
    assert (first[0], first[1]) == (spec.flows[0].source, spec.flows[0].target or "(loss)")
    params = {r[0]: r for r in tables["Parameters"]}
    assert list(params) == list(spec.parameters)
    for name, p in spec.parameters.items():
        # columns: name, value, unit, bounds, prior, description, source
        assert params[name][2] == p.unit and params[name][6] == p.source, name
    assert [r[0] for r in tables["Observations"]] == list(spec.observations)


def test_angle_brackets_survive_rendering() -> None:
    """`dna_<organ>` in a description was read as an HTML tag and dropped."""
    text = cp.describe("msc_pbk")
    assert "dna_<organ>" in text  # the plain text keeps it
    rendered = mistune.html(text._repr_markdown_())
    assert "<organ>" not in rendered
    assert "dna_&lt;organ&gt;" in rendered or "dna_&lt;organ>" in rendered


def test_text_display_still_works() -> None:
    spec = cp.load_model("msc_pbk")
    assert repr(spec).startswith("ModelSpec(name='msc_pbk'")
    assert spec.summary().startswith("msc_pbk: ")
    text = cp.describe(spec)
    assert isinstance(text, str) and text.startswith("# msc_pbk\n")
    assert spec._repr_markdown_() == text._repr_markdown_()
