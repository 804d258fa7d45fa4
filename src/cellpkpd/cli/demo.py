"""``cellpkpd demo``: a bundled example (two_cmt_iv, a week of daily infusions to five
virtual subjects) simulated and written as a table and a plot."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

import cellpkpd as cp

from ._options import FORMAT, check_folder, text_table
from ._output import write_results

# two_cmt_iv, 100 mg as a 1-h infusion every 24 h for 7 days, 5 virtual subjects
DEMO_SEED = 20240601
DEMO_SUBJECTS = 5
DEMO_OMEGA = 0.3  # SD of log(CL) and log(V1) between subjects (about 30 % CV)


def register(sub: Any) -> None:
    """Add the command to the CLI's sub-parsers (``argparse`` ``_SubParsersAction``)."""
    p = sub.add_parser(
        "demo",
        help="simulate a bundled example and write its table and plot",
        description=(
            "Simulate the library model two_cmt_iv: 100 mg as a 1-h infusion every 24 h for\n"
            f"7 days, output every 0.5 h from 0 to 168 h, for {DEMO_SUBJECTS} virtual subjects "
            "whose CL\nand V1 vary log-normally between subjects (SD of the logs "
            f"{DEMO_OMEGA:g}, fixed seed\n{DEMO_SEED}). Writes two_cmt_iv_demo.csv and "
            "two_cmt_iv_demo.png (concentration\nvs time, one line per subject, log y-axis) "
            "into the output folder."
        ),
        formatter_class=FORMAT,
    )
    p.add_argument(
        "--output",
        default="cellpkpd-demo",
        metavar="DIR",
        help="folder for the CSV and PNG, created if needed (default: ./cellpkpd-demo)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Simulate the example, write its table and plot, print peak and trough per subject."""
    check_folder(args.output)
    spec = cp.load_model("two_cmt_iv")
    dose = cp.Dose(time=0.0, amount=100.0, cmt="central", duration=1.0)  # 100 mg over 1 h
    regimen = cp.Regimen.repeat(dose, interval=24.0, count=7)  # daily for 7 days
    times = np.linspace(0.0, 168.0, 337)  # every 0.5 h [h]
    rng = np.random.default_rng(DEMO_SEED)
    eta = rng.normal(0.0, DEMO_OMEGA, size=(2, DEMO_SUBJECTS))
    params = {
        "CL": spec.parameters["CL"].value * np.exp(eta[0]),  # [L/h]
        "V1": spec.parameters["V1"].value * np.exp(eta[1]),  # [L]
    }
    res = cp.simulate(spec, regimen, times, params=params)
    title = (
        f"{spec.name}: 100 mg as 1-h infusion every 24 h x 7, {DEMO_SUBJECTS} subjects "
        f"(CL, V1 log-normal, SD {DEMO_OMEGA:g})"
    )
    csv_path, png_path = write_results(
        res, spec, args.output, f"{spec.name}_demo", log=True, title=title, varied=params
    )
    conc = res["conc"]
    unit = conc.attrs.get("unit", "")
    peak = conc.sel(time=slice(144.0, 168.0)).max("time").values
    trough = conc.sel(time=168.0).values
    print(
        f"{spec.name} demo: 100 {spec.amount_unit} as a 1-{spec.time_unit} infusion every "
        f"24 {spec.time_unit} for 7 days, {DEMO_SUBJECTS} virtual subjects"
    )
    rows = [
        (str(s), f"{cl:.3g}", f"{v1:.3g}", f"{pk:.3g}", f"{tr:.3g}")
        for s, cl, v1, pk, tr in zip(
            res["subject"].values, params["CL"], params["V1"], peak, trough, strict=True
        )
    ]
    header = (
        "subject",
        f"CL [{spec.parameters['CL'].unit}]",
        f"V1 [{spec.parameters['V1'].unit}]",
        f"peak day 7 [{unit}]",
        f"conc at 168 h [{unit}]",
    )
    print(text_table(header, rows))
    print(f"table: {csv_path}")
    print(f"plot:  {png_path}")
    return 0
