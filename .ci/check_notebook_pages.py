"""Check that every example notebook's page of a built docs site shows at least one image.

Usage: ``python .ci/check_notebook_pages.py SITE_DIR`` (run by .ci/run after ``mkdocs build``).
A notebook of notebooks/ whose page is missing, or whose page has no ``<img>`` (the figures
that executing it drew, embedded as image/png), fails: the page was built from the notebook
without outputs, e.g. because its executed copy in build/notebooks/ was missing or out of date
(docs/hooks.py). A page that shows an xarray repr must also link the scoped xarray stylesheet
that docs/hooks.py writes (``stylesheets/xarray.css``, present in the site): without it the
repr shows its text fallback above sections whose grid has fallen apart. Exit status 1 names
each such page, one line each.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


class _ImageCounter(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images += 1


def count_images(page: Path) -> int:
    """Number of ``<img>`` tags in an HTML file."""
    parser = _ImageCounter()
    parser.feed(page.read_text(encoding="utf-8"))
    parser.close()
    return parser.images


def problems(site: Path, notebooks: Path = NOTEBOOKS) -> list[str]:
    """One line for each notebook of ``notebooks`` whose page in ``site`` is missing or has no
    image; an empty list when all pass."""
    found = []
    names = sorted(nb.stem for nb in notebooks.glob("*.ipynb"))
    if not names:
        return [f"{notebooks}: no notebooks found"]
    for name in names:
        # use_directory_urls (MkDocs' default): notebooks/NAME/index.html; else notebooks/NAME.html
        pages = [site / "notebooks" / name / "index.html", site / "notebooks" / f"{name}.html"]
        page = next((p for p in pages if p.is_file()), None)
        if page is None:
            found.append(f"{name}: no page in {site / 'notebooks'}")
        elif (n := count_images(page)) == 0:
            found.append(f"{page}: no image (was the notebook executed before the build?)")
        else:
            print(f"{page.relative_to(site)}: {n} images")
        if page is not None and (problem := xarray_style_problem(site, page)):
            found.append(problem)
    return found


XARRAY_CSS = "stylesheets/xarray.css"


def xarray_style_problem(site: Path, page: Path) -> str | None:
    """A line when ``page`` shows an xarray HTML repr but the site lacks, or the page does not
    link, the scoped xarray stylesheet (docs/hooks.py); None otherwise."""
    html = page.read_text(encoding="utf-8")
    if "xr-wrap" not in html:
        return None
    if not (site / XARRAY_CSS).is_file() or XARRAY_CSS not in html:
        return (
            f"{page}: an xarray repr without {XARRAY_CSS} (written by docs/hooks.py): it "
            "shows its text fallback above a repr without its grid"
        )
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python .ci/check_notebook_pages.py SITE_DIR", file=sys.stderr)
        return 2
    site = Path(argv[0])
    if not site.is_dir():
        print(f"{site}: not a directory (build the site first)", file=sys.stderr)
        return 2
    found = problems(site)
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
