"""Generate the model-library pages and the figures of the docs and the README.

Run from the repository root after changing a model file or a plot:

    python docs/make_figures.py

It writes docs/library/<model>.md (description, diagram, states, observations, parameter
table, references) with docs/library/<model>.png (`cp.plots.diagram`), and
docs/images/biodistribution.png (shown in the README). The outputs are committed, so the
documentation builds without running models; tests/test_plots.py checks that every library
model has its page.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import cellpkpd as cp

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
    out += ["", "## References", ""]
    out += [f"- {_cell(r)}" for r in spec.references] or ["- none given"]
    return "\n".join(out) + "\n"


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
