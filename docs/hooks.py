"""MkDocs hook: publish the example notebooks of ../notebooks under notebooks/ in the site.

The notebooks are committed without outputs. A page shows the executed copy
``build/notebooks/<name>.ipynb`` (git-ignored) when there is one whose cells are those of the
committed notebook, with its figures and tables; CI writes these copies with
``jupyter nbconvert --execute`` before building the site (see notebooks/README.md). Otherwise
the page shows the committed notebook without outputs and says so in the build log (at info
level, so a developer's ``mkdocs build --strict`` still passes without running them); CI's
``.ci/check_notebook_pages.py`` then fails on the page with no image. mkdocs-jupyter renders
either without running it (``execute: false`` in mkdocs.yml), so the notebooks run once.

It also writes ``stylesheets/xarray.css`` into the site (and links it from every page): the
stylesheet that xarray puts in each of its HTML reprs, each selector prefixed with
``.md-typeset .jupyter-wrapper``. In a page, mkdocs-material's rules for ``pre``, ``ul`` and
``li`` (``.md-typeset pre`` and co.) outrank xarray's one-class selectors, so a Dataset showed
its text fallback above a repr whose grid had fallen apart; the prefixed copy, read from the
installed xarray at build time, outranks them.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "build" / "notebooks"

log = logging.getLogger("mkdocs.hooks.notebooks")

#: where the prefixed xarray stylesheet goes in the site, and the prefix of its selectors
XARRAY_CSS = "stylesheets/xarray.css"
SCOPE = ".md-typeset .jupyter-wrapper"


def _cells(path: Path) -> list[tuple[str, str]]:
    """The (cell type, source) of each cell of a notebook file: what executing leaves as it was."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [
        (c["cell_type"], "".join(c["source"]) if isinstance(c["source"], list) else c["source"])
        for c in cells
    ]


def notebook_source(notebook: Path, executed: Path = EXECUTED) -> Path:
    """The file to publish for ``notebook``: its executed copy in ``executed`` if that copy has
    the same cells, else the notebook itself (no copy, or one left from an older version)."""
    copy = executed / notebook.name
    if not copy.is_file():
        log.info("%s: no executed copy in %s, shown without outputs", notebook.name, executed)
        return notebook
    if _cells(copy) != _cells(notebook):
        log.info(
            "%s: executed copy in %s is out of date, shown without outputs", notebook.name, executed
        )
        return notebook
    return copy


@event_priority(100)  # before mkdocs-jupyter's on_files, which converts them
def on_files(files: Files, config) -> Files:
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
        source = notebook_source(nb)
        files.append(
            File(
                f"notebooks/{nb.name}",
                src_dir=str(source.parent.parent),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files


def scoped_css(css: str, scope: str = SCOPE) -> str:
    """`css` with every selector of its rules prefixed by `scope` (rules for ``:root``,
    ``html`` and ``body``, which set xarray's colour variables, are kept as they are;
    comments are dropped). Flat stylesheets only: an ``@`` rule is refused."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    if "@" in css:
        raise ValueError("scoped_css: @ rules (media queries, imports) are not handled")
    rules = []
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        parts = [" ".join(sel.split()) for sel in selectors.split(",") if sel.strip()]
        scoped = [p if re.match(r"(:root|html|body)\b", p) else f"{scope} {p}" for p in parts]
        rules.append(",\n".join(scoped) + " {" + body.rstrip() + "\n}")
    return "\n\n".join(rules) + "\n"


def xarray_css() -> str | None:
    """xarray's notebook stylesheet from the installed package, scoped; None without xarray."""
    try:
        from importlib.resources import files

        css = files("xarray").joinpath("static", "css", "style.css").read_text(encoding="utf-8")
    except (ImportError, FileNotFoundError, OSError):
        return None
    return scoped_css(css)


def on_config(config):
    if XARRAY_CSS not in config["extra_css"]:
        config["extra_css"].append(XARRAY_CSS)
    return config


def on_post_build(config) -> None:
    css = xarray_css()
    if css is None:
        log.warning("xarray is not installed: %s not written", XARRAY_CSS)
        return
    out = Path(config["site_dir"]) / XARRAY_CSS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "/* written by docs/hooks.py from the installed xarray's notebook stylesheet */\n" + css,
        encoding="utf-8",
    )
