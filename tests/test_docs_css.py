"""docs/hooks.py writes xarray's notebook stylesheet into the site with every selector scoped
under `.md-typeset .jupyter-wrapper`, so that mkdocs-material's `.md-typeset pre/ul/li` rules
no longer outrank it (a Dataset's HTML repr showed its text fallback and lost its grid)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _hooks():
    pytest.importorskip("mkdocs")  # the docs extra
    spec = importlib.util.spec_from_file_location("hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _specificity(selector: str) -> tuple[int, int]:
    """(classes + attributes + pseudo-classes, elements) of a simple selector list item."""
    classes = len(re.findall(r"\.[\w-]+|\[[^\]]*\]|:(?!:)[\w-]+", selector))
    elements = len(re.findall(r"(?:^|[\s>+~])([a-z][\w-]*)", selector))
    return classes, elements


def test_scoped_css_prefixes_each_selector_and_keeps_the_variables() -> None:
    hooks = _hooks()
    css = """/* comment */
:root { --xr-x: 1px; }
.xr-text-repr-fallback { display: none; }
.xr-var-list,
.xr-var-item { display: contents; }
"""
    out = hooks.scoped_css(css)
    assert ":root { --xr-x: 1px;" in out and "comment" not in out
    assert ".md-typeset .jupyter-wrapper .xr-text-repr-fallback { display: none;" in out
    assert (
        ".md-typeset .jupyter-wrapper .xr-var-list,\n.md-typeset .jupyter-wrapper .xr-var-item"
        in out
    )
    with pytest.raises(ValueError, match="@ rules"):
        hooks.scoped_css("@media print { .a { color: red; } }")


def test_installed_xarray_stylesheet_outranks_material_rules() -> None:
    """Every rule of xarray's stylesheet that sets display is scoped, and the scoped
    fallback rule outranks `.md-typeset pre` (1 class, 1 element)."""
    hooks = _hooks()
    pytest.importorskip("xarray")
    css = hooks.xarray_css()
    assert css is not None
    rules = re.findall(r"([^{}]+)\{([^{}]*)\}", css)
    assert len(rules) > 50
    for selectors, _body in rules:
        for sel in selectors.split(","):
            sel = sel.strip()
            assert sel.startswith(hooks.SCOPE) or re.match(r"(:root|html|body)\b", sel), sel
    fallback = next(s.strip() for s, _ in rules if s.strip().endswith(".xr-text-repr-fallback"))
    assert _specificity(fallback) > _specificity(".md-typeset pre")
    assert _specificity(hooks.SCOPE + " .xr-var-item") > _specificity(".md-typeset ul li")


def test_the_site_links_the_stylesheet_and_the_build_writes_it(tmp_path: Path) -> None:
    hooks = _hooks()
    pytest.importorskip("xarray")
    config = {"extra_css": ["stylesheets/notebooks.css"], "site_dir": str(tmp_path)}
    hooks.on_config(config)
    hooks.on_config(config)  # once only
    assert config["extra_css"] == ["stylesheets/notebooks.css", hooks.XARRAY_CSS]
    hooks.on_post_build(config)
    written = (tmp_path / hooks.XARRAY_CSS).read_text(encoding="utf-8")
    assert ".md-typeset .jupyter-wrapper .xr-text-repr-fallback" in written


def test_page_check_wants_the_stylesheet_where_an_xarray_repr_is_shown(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("check", ROOT / ".ci" / "check_notebook_pages.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "01_a.ipynb").write_text("{}", encoding="utf-8")
    page = tmp_path / "site" / "notebooks" / "01_a" / "index.html"
    page.parent.mkdir(parents=True)
    repr_html = "<img src='x.png'><div class='xr-wrap'><pre class='xr-text-repr-fallback'>"
    page.write_text(repr_html, encoding="utf-8")
    (found,) = check.problems(tmp_path / "site", notebooks)
    assert "an xarray repr without stylesheets/xarray.css" in found
    page.write_text(f"<link href='../../{check.XARRAY_CSS}'>{repr_html}", encoding="utf-8")
    assert len(check.problems(tmp_path / "site", notebooks)) == 1  # linked, not written
    (tmp_path / "site" / "stylesheets").mkdir()
    (tmp_path / "site" / check.XARRAY_CSS).write_text("/* */", encoding="utf-8")
    assert check.problems(tmp_path / "site", notebooks) == []
    page.write_text("<img src='x.png'>", encoding="utf-8")  # no xarray repr: no stylesheet needed
    assert check.problems(tmp_path / "site", notebooks) == []
