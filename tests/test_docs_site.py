"""The docs site's notebook pages: docs/hooks.py publishes an executed copy only while it is up to
date, and .ci/check_notebook_pages.py fails a page without an image. (CI runs the check on the
real site after executing the notebooks; these tests build nothing and run no notebook.)"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _notebook(path: Path, sources: list[str], outputs: bool = False) -> None:
    cells = [
        {
            "cell_type": "code",
            "metadata": {},
            "source": s.splitlines(keepends=True),
            "execution_count": 1 if outputs else None,
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "1\n"}]
            if outputs
            else [],
        }
        for s in sources
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}),
        encoding="utf-8",
    )


def test_check_fails_on_a_notebook_page_without_an_image(tmp_path: Path) -> None:
    check = _load(ROOT / ".ci" / "check_notebook_pages.py")
    notebooks = tmp_path / "notebooks"
    _notebook(notebooks / "01_a.ipynb", ["1"])
    _notebook(notebooks / "02_b.ipynb", ["2"])
    _notebook(notebooks / "03_c.ipynb", ["3"])
    site = tmp_path / "site" / "notebooks"
    (site / "01_a").mkdir(parents=True)
    (site / "01_a" / "index.html").write_text(
        '<div class="jp-RenderedImage"><img src="data:image/png;base64,iVBORw0KGgo="/></div>'
    )
    (site / "02_b").mkdir()
    (site / "02_b" / "index.html").write_text("<pre>print('no figure')</pre> &lt;img&gt;")
    found = check.problems(tmp_path / "site", notebooks)
    assert len(found) == 2
    assert "02_b" in found[0] and "no image" in found[0]
    assert found[1].startswith("03_c: no page")
    (site / "02_b" / "index.html").write_text('<p><img alt="x" src="x.png"></p>')
    (site / "03_c.html").write_text("<img src='data:image/png;base64,AAAA'>")
    assert check.problems(tmp_path / "site", notebooks) == []


def test_hook_shows_the_executed_copy_only_while_its_cells_are_the_notebooks(
    tmp_path: Path,
) -> None:
    pytest.importorskip("mkdocs")  # the docs extra
    hooks = _load(ROOT / "docs" / "hooks.py")
    notebook = tmp_path / "notebooks" / "01_a.ipynb"
    executed = tmp_path / "build" / "notebooks"
    _notebook(notebook, ["import numpy as np\n", "np.ones(2)"])
    assert hooks.notebook_source(notebook, executed) == notebook  # no copy
    _notebook(executed / notebook.name, ["import numpy as np\n", "np.ones(2)"], outputs=True)
    assert hooks.notebook_source(notebook, executed) == executed / notebook.name
    _notebook(notebook, ["import numpy as np\n", "np.ones(3)"])  # edited since it was executed
    assert hooks.notebook_source(notebook, executed) == notebook
