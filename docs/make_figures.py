"""Generate the model-library pages and the figures of the docs and the README.

Run from the repository root after changing a model file or a plot:

    python docs/make_figures.py

It writes docs/library/<model>.md (description, diagram, states, flows, routes, observations,
parameter table, the published facts it reproduces (from the docstrings of
tests/models/test_literature_msc*.py), its known limits (``notes`` of its ``[model]`` block),
references) with docs/library/<model>.png (`cp.plots.diagram`), and
docs/images/biodistribution.png (shown in the README). The outputs are committed, so the
documentation builds without running models; tests/plots/test_plots.py checks that every library
model has its page.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

import cellpkpd as cp
from cellpkpd.plots._diagram import rate_tags

DOCS = Path(__file__).resolve().parent


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def model_page(name: str) -> str:
    spec = cp.load_model(name)
    fig = cp.plots.diagram(spec)
    fig.savefig(DOCS / "library" / f"{name}.png", dpi=110)
    out = [f"# {name}", "", spec.description, ""]
    out += [
        f"Time in {spec.time_unit}, amounts in {spec.amount_unit}"
        + (f"; species table: {spec.species}" if spec.species else "")
        + ("; linear: solved exactly" if spec.is_linear else "; nonlinear: solved with diffrax")
        + '. Load it with `cp.load_model("'
        + name
        + '")`.',
        "",
        f"![{name} compartment diagram]({name}.png)",
        "",
        "## States",
        "",
        "| state | unit | description |",
        "|---|---|---|",
    ]
    out += [f"| {s.name} | {s.unit} | {_cell(s.description)} |" for s in spec.states.values()]
    if spec.flows:
        tags = rate_tags(spec)
        out += ["", "## Flows", "", f"First-order transfers; rate in 1/{spec.time_unit}."]
        out[-1] += " The diagram writes a short rate on its arrow and a long one as its tag"
        out[-1] += " (r1, r2, ...), the `diagram` column here."
        out += ["", "| diagram | from | to | rate |", "|---|---|---|---|"]
        for f in spec.flows:
            rate = f.rate.source.strip()
            tag = tags.get(rate, f"`{_cell(rate)}`")
            out.append(f"| {tag} | {f.source} | {f.target or '(lost)'} | `{_cell(rate)}` |")
    if spec.odes:
        out += ["", "## Extra ODE terms", "", f"| state | d(state)/dt [{spec.amount_unit}/"]
        out[-1] += f"{spec.time_unit}] |"
        out += ["|---|---|"]
        out += [f"| {k} | `{_cell(e.source)}` |" for k, e in spec.odes.items()]
    if spec.routes:
        out += ["", "## Routes", "", "`cp.Dose(time, amount, route=name)` puts `amount` times"]
        out[-1] += " each fraction into its state."
        out += ["", "| route | state | fraction |", "|---|---|---|"]
        out += [
            f"| {r} | {state} | `{_cell(e.source)}` |"
            for r, fractions in spec.routes.items()
            for state, e in fractions.items()
        ]
    out += ["", "## Observations", "", "| name | unit | error | description |", "|---|---|---|---|"]
    out += [
        f"| {o.name} | {o.unit} | {o.error} | {_cell(o.description)} |"
        for o in spec.observations.values()
    ]
    if spec.covariates:
        out += [
            "",
            "## Covariates",
            "",
            "| name | default | unit | bounds | description |",
            "|---|---|---|---|---|",
        ]
        out += [
            f"| {c.name} | {c.value:g} | {c.unit} | [{c.bounds[0]:g}, {c.bounds[1]:g}] | "
            f"{_cell(c.description)} |"
            for c in spec.covariates.values()
        ]
    table = cp.parameter_table(spec)
    out += ["", "## Parameters", "", "| name | value | unit | prior | description | source |"]
    out += ["|---|---|---|---|---|---|"]
    for row in table.itertuples():
        out.append(
            f"| {row.name} | {row.value:g} | {row.unit} | {_cell(row.prior or '')} | "
            f"{_cell(row.description)} | {_cell(row.source)} |"
        )
    if spec.physiology:
        out += ["", "Parameters filled from the species table (`cp.physiology`): "]
        out[-1] += ", ".join(f"`{k}`" for k in spec.physiology) + "."
    facts = literature_facts().get(name, [])
    if facts:
        out += ["", "## Facts it reproduces", ""]
        out += [
            "Published facts (and a route comparison), each a test with its tolerance and "
            "why, in " + ", ".join(sorted({f"`{where}`" for where, _, _ in facts})) + "."
        ]
        out += [""] + [f"- {_cell(text)} (`{test}`)" for _, test, text in facts]
    notes = spec.extra.get("notes")
    if notes:
        out += ["", "## Known limits", ""]
        out += [f"- {_cell(n)}" for n in ([notes] if isinstance(notes, str) else notes)]
    out += ["", "## References", ""]
    out += [f"- {_cell(r)}" for r in spec.references] or ["- none given"]
    return "\n".join(out) + "\n"


# the test files of published facts, and in each the fixture a test takes naming its model
LITERATURE = {
    DOCS.parent / "tests" / "models" / "test_literature_msc.py": {
        "pbk": "msc_pbk",
        "site_runs": "msc_pbk",
        "depot_runs": "msc_pbk",
        "pd_runs": "msc_pkpd_host",
    },
    DOCS.parent / "tests" / "models" / "test_literature_msc_host.py": {"runs": "msc_pkpd_host"},
}


def literature_facts() -> dict[str, list[tuple[str, str, str]]]:
    """Model name -> [(test file, test name, first paragraph of its docstring)] for the tests
    of published facts (one test per fact, its citation in the docstring)."""
    facts: dict[str, list[tuple[str, str, str]]] = {}
    for path, fixture_model in LITERATURE.items():
        where = path.relative_to(DOCS.parent).as_posix()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
                continue
            args = [a.arg for a in node.args.args]
            model = next((fixture_model[a] for a in args if a in fixture_model), None)
            doc = ast.get_docstring(node)
            if model and doc:
                first = " ".join(doc.split("\n\n")[0].split())
                facts.setdefault(model, []).append((where, node.name, first))
    return facts


def readme_figure() -> None:
    spec = cp.load_model("msc_pbk")
    times = np.concatenate([[0.0], np.geomspace(0.01, 168.0, 80)])
    res = cp.simulate(spec, cp.Regimen([cp.Dose(0.0, 1e6, cmt="venous")]), times)
    fig = cp.plots.biodistribution(
        res, spec, log_time=True, title="msc_pbk: 1e6 MSCs IV in a mouse, viable cells per organ"
    )
    fig.savefig(DOCS / "images" / "biodistribution.png", dpi=100)


def main() -> None:
    names = list(cp.list_models())
    for name in names:
        (DOCS / "library" / f"{name}.md").write_text(model_page(name), encoding="utf-8")
    index = ["# Model library", "", "| model | description |", "|---|---|"]
    index += [f"| [{n}]({n}.md) | {_cell(d)} |" for n, d in cp.list_models().items()]
    (DOCS / "library" / "index.md").write_text("\n".join(index) + "\n", encoding="utf-8")
    readme_figure()


if __name__ == "__main__":
    main()
