"""Writing a simulation from the ``cellpkpd`` CLI (``simulate``, ``demo``): the long CSV
table and the PNG figure, with lines labelled by the inputs that differ between subjects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import cellpkpd as cp

from ._options import check_folder


def write_results(
    res: Any,
    spec: cp.ModelSpec,
    folder: str | Path,
    stem: str,
    *,
    log: bool,
    title: str,
    varied: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``folder/stem.csv`` (long table) and ``folder/stem.png``; return their paths."""
    out = check_folder(folder)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out / f"{stem}.csv", out / f"{stem}.png"
    table = res.reset_coords(drop=True).to_dataframe().reset_index()
    if "status" in res.coords:  # 0 = solved; else a key of cellpkpd.engine.solve.STATUS
        table["status"] = res["status"].to_series().reindex(table["subject"]).to_numpy()
    table.to_csv(csv_path, index=False)
    if res.sizes["subject"] == 1 and any(str(v).startswith("frac_") for v in res.data_vars):
        # one subject of a biodistribution model: the fraction of the dose per organ (log
        # axis when it spans decades, or with --log), the figure a biodistribution study
        # reports; several subjects (e.g. --param lists) keep one labelled line each
        fig = cp.plots.biodistribution(res, spec, log=True if log else None, title=title)
    else:
        names = list(spec.observations) or list(spec.states)
        labels = subject_labels(res, spec, varied or {})
        fig = cp.plots.timecourse(
            res, [n for n in names if n in res], spec=spec, log=log, title=title, labels=labels
        )
    fig.savefig(png_path, dpi=120)
    return csv_path, png_path


def subject_labels(res: Any, spec: cp.ModelSpec, varied: dict[str, Any]) -> list[str]:
    """'subject 0', or 'subject 0: CL = 1.5 L/h' for the inputs that differ between subjects."""
    units = {k: p.unit for k, p in spec.parameters.items()}
    units.update({k: c.unit for k, c in spec.covariates.items()})
    arrays = {k: np.broadcast_to(v, (res.sizes["subject"],)) for k, v in varied.items()}
    arrays = {k: v for k, v in arrays.items() if np.ndim(varied[k]) == 1}
    labels = []
    for i, s in enumerate(res["subject"].values):
        parts = [
            f"{k} = {v[i]:.3g} {'' if units.get(k) == '1' else units.get(k, '')}".rstrip()
            for k, v in arrays.items()
        ]
        labels.append(f"subject {s}" + (": " + ", ".join(parts) if parts else ""))
    return labels
