"""MkDocs hook: publish the example notebooks of ../notebooks under notebooks/ in the site.

The notebooks are committed without outputs. A page shows the executed copy
``build/notebooks/<name>.ipynb`` (git-ignored) when there is one whose cells are those of the
committed notebook, with its figures and tables; CI writes these copies with
``jupyter nbconvert --execute`` before building the site (see notebooks/README.md). Otherwise
the page shows the committed notebook without outputs and says so in the build log (at info
level, so a developer's ``mkdocs build --strict`` still passes without running them); CI's
``.ci/check_notebook_pages.py`` then fails on the page with no image. mkdocs-jupyter renders
either without running it (``execute: false`` in mkdocs.yml), so the notebooks run once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "build" / "notebooks"

log = logging.getLogger("mkdocs.hooks.notebooks")


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
