"""Where a `cellpkpd simulate` run spends its time, in one process: import, `cp.simulate`
and writing the CSV and PNG (the CLI's own `write_results`, into a temporary folder).

Not collected by pytest; run it twice with the same cache folder (the first run fills JAX's
persistent compilation cache, the second reads it, as a second CLI run does)::

    CELLPKPD_COMPILATION_CACHE=/tmp/cellpkpd-cache python benchmarks/cli_phases.py
    CELLPKPD_COMPILATION_CACHE=/tmp/cellpkpd-cache python benchmarks/cli_phases.py

The case is ``cellpkpd simulate msc_pbk --dose 1e6`` (route iv, 169 hourly outputs, all of
the model's states and outputs). Prints one line of phase times [s].
"""

from __future__ import annotations

import tempfile
import time

T0 = time.perf_counter()

import numpy as np  # noqa: E402

import cellpkpd as cp  # noqa: E402
from cellpkpd.cli._output import write_results  # noqa: E402


def main() -> int:
    imported = time.perf_counter() - T0
    cp.config.use_cpu_cores(too_late="warn")
    cp.config.enable_compilation_cache()
    spec = cp.load_model("msc_pbk")
    reg = cp.Regimen([cp.Dose(0.0, 1e6, route="iv")])
    t = time.perf_counter()
    res = cp.simulate(spec, reg, np.linspace(0.0, 168.0, 169), on_failure="nan")
    simulated = time.perf_counter() - t
    t = time.perf_counter()
    write_results(res, spec, tempfile.mkdtemp(), "msc_pbk_simulation", log=False,
                  title="msc_pbk", varied={})  # fmt: skip
    written = time.perf_counter() - t
    print(f"import {imported:.2f}  simulate {simulated:.2f}  write {written:.2f}  "
          f"total {time.perf_counter() - T0:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
