"""NUTS fits of the theophylline data (Boeckmann, Sheiner & Beal 1994; 12 subjects, oral
dose) with `one_cmt_oral`, IIV on ka, CL and V: additive, then combined residual error.

Run: ``python benchmarks/fit_theophylline.py [--chains 4] [--warmup 1000] [--draws 1000]``.
Prints posterior medians and 90% intervals of ka, CL, V and the omegas, with the wall time
of each fit, then all of it as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import cellpkpd as cp

NAMES = ("ka", "CL", "V", "omega_ka", "omega_CL", "omega_V")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    args = ap.parse_args()
    data = cp.datasets.theophylline()
    results = {}
    for error in ("additive", "combined"):
        pop = cp.Population(random_effects={"ka": 0.5, "CL": 0.5, "V": 0.5}, error={"conc": error})
        start = time.perf_counter()
        idata = cp.fit(
            "one_cmt_oral",
            data,
            pop,
            chains=args.chains,
            warmup=args.warmup,
            draws=args.draws,
            progress=False,
        )
        wall = time.perf_counter() - start
        post = idata.posterior
        row = {"wall_s": round(wall, 1), "divergences": int(idata.sample_stats["diverging"].sum())}
        sig = [k for k in post.data_vars if k.startswith("sigma_")]
        for k in (*NAMES, *sig):
            v = np.asarray(post[k].values).ravel()
            q = np.quantile(v, [0.05, 0.5, 0.95])
            row[k] = {
                "median": round(float(q[1]), 4),
                "q05": round(float(q[0]), 4),
                "q95": round(float(q[2]), 4),
            }
        import arviz as az

        summ = az.summary(idata, var_names=[*NAMES, *sig], kind="diagnostics")
        row["min_ess_bulk"] = float(summ["ess_bulk"].min())
        row["max_r_hat"] = float(summ["r_hat"].max())
        results[error] = row
        print(
            f"== {error} error: {wall:.1f} s, {row['divergences']} divergences, "
            f"min bulk ESS {row['min_ess_bulk']:.0f}, max R-hat {row['max_r_hat']:.3f}"
        )
        for k in (*NAMES, *sig):
            r = row[k]
            print(f"  {k:16s} {r['median']:9.4f}  90% [{r['q05']:.4f}, {r['q95']:.4f}]")
    print(json.dumps({"settings": vars(args), "fits": results}))


if __name__ == "__main__":
    main()
