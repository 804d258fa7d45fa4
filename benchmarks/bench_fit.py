"""cp.fit (NUTS) against the same population model written by hand in numpyro + diffrax.

The problem is the simulation-recovery study of tests/infer/test_infer_recovery.py: 24 subjects,
`two_cmt_iv` (100 mg IV bolus), IIV on CL and V1, proportional error, ~20% of the
observations below the LLOQ (M3). The hand-written model is what a JAX user writes without
cellpkpd: the two-compartment ODE solved per subject with `diffrax.diffeqsolve` (Tsit5,
PID controller, rtol 1e-6 / atol 1e-9 as cellpkpd's likelihood uses, SaveAt at the record
times; `DirectAdjoint`, because diffrax 0.7.2's default RecursiveCheckpointAdjoint fails
here under numpyro's NUTS with "Closure-converted function called with different dynamic
arguments") under `jax.vmap`, the usual non-centred random effects, the same priors (the model
file's lognormal priors, HalfNormal(0.5) omegas, HalfNormal(1) proportional SD) and the same
M3 likelihood. Both run the same NUTS settings (chains in parallel on the host devices,
init at the prior medians, diagonal mass matrix) in the same process.

Run: ``python benchmarks/bench_fit.py [--chains 2] [--warmup 300] [--draws 300]``; prints a
table and writes benchmarks/results/bench_fit.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import arviz as az
import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import log_ndtr
from numpyro.infer import MCMC, NUTS, init_to_median

import cellpkpd as cp
from cellpkpd.infer.data import FitData

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "infer"))
from test_infer_recovery import POP, TRUTH, recovery_data

NAMES = list(TRUTH)


def hand_written_model(fd: FitData):
    """numpyro model: 2-cmt ODE by diffrax per subject, vmapped; M3 censoring."""
    n = len(fd.ids)
    times = jnp.asarray(fd.times)
    dose = jnp.asarray(np.asarray(fd.doses.amount)[:, 0])
    dv, observed, censored, lloq = (
        jnp.asarray(a) for a in (fd.dv, fd.observed, fd.censored, fd.lloq)
    )

    def rhs(t, y, args):
        cl, v1, q, v2 = args[0], args[1], args[2], args[3]
        c1, c2 = y[0] / v1, y[1] / v2
        return jnp.stack([-cl * c1 - q * c1 + q * c2, q * c1 - q * c2])

    term = diffrax.ODETerm(rhs)

    def subject(cl, v1, q, v2, amt, ts):
        sol = diffrax.diffeqsolve(
            term,
            diffrax.Tsit5(),
            t0=jnp.zeros_like(ts[0]),
            t1=ts[-1],
            dt0=None,
            y0=jnp.stack([amt, jnp.zeros_like(amt)]),
            args=jnp.stack([cl, v1, q, v2]),
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-9),
            max_steps=4096,
            adjoint=diffrax.DirectAdjoint(),
            throw=False,
        )
        return sol.ys[:, 0] / v1

    def model():
        cl = numpyro.sample("CL", dist.LogNormal(jnp.log(2.0), 1.0))
        v1 = numpyro.sample("V1", dist.LogNormal(jnp.log(10.0), 1.0))
        q = numpyro.sample("Q", dist.LogNormal(jnp.log(4.0), 1.0))
        v2 = numpyro.sample("V2", dist.LogNormal(jnp.log(30.0), 1.0))
        om_cl = numpyro.sample("omega_CL", dist.HalfNormal(0.5))
        om_v1 = numpyro.sample("omega_V1", dist.HalfNormal(0.5))
        sigma = numpyro.sample("sigma_prop_conc", dist.HalfNormal(1.0))
        with numpyro.plate("subject", n):
            eta_cl = numpyro.sample("eta_CL", dist.Normal(0.0, 1.0))
            eta_v1 = numpyro.sample("eta_V1", dist.Normal(0.0, 1.0))
        cl_i = cl * jnp.exp(om_cl * eta_cl)
        v1_i = v1 * jnp.exp(om_v1 * eta_v1)
        pred = jax.vmap(subject, (0, 0, None, None, 0, 0))(cl_i, v1_i, q, v2, dose, times)
        sd = jnp.maximum(sigma * jnp.abs(pred), 1e-12)
        ll = jnp.where(
            censored,
            log_ndtr((lloq - pred) / sd),
            dist.Normal(pred, sd).log_prob(dv),
        )
        numpyro.factor("data", jnp.sum(jnp.where(observed, ll, 0.0)))

    return model


def min_ess(idata) -> float:
    return float(az.summary(idata, var_names=NAMES, kind="diagnostics")["ess_bulk"].min())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--draws", type=int, default=300)
    args = ap.parse_args()
    data, frac = recovery_data()
    spec = cp.load_model("two_cmt_iv")
    fd = FitData.build(spec, data)
    kw = {"chains": args.chains, "warmup": args.warmup, "draws": args.draws, "seed": 1}

    start = time.perf_counter()
    idata = cp.fit(spec, data, POP, progress=False, **kw)
    t_cp = time.perf_counter() - start
    ess_cp = min_ess(idata)

    model = hand_written_model(fd)
    mcmc = MCMC(
        NUTS(model, init_strategy=init_to_median(num_samples=15)),
        num_warmup=args.warmup,
        num_samples=args.draws,
        num_chains=args.chains,
        chain_method="parallel" if jax.local_device_count() >= args.chains else "sequential",
        progress_bar=False,
    )
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(1))
    t_hand = time.perf_counter() - start
    ess_hand = min_ess(az.from_numpyro(mcmc))

    rows = {
        "cellpkpd": {"wall_s": t_cp, "min_ess_bulk": ess_cp, "ess_per_s": ess_cp / t_cp},
        "numpyro_diffrax": {
            "wall_s": t_hand,
            "min_ess_bulk": ess_hand,
            "ess_per_s": ess_hand / t_hand,
        },
    }
    ratio = rows["cellpkpd"]["ess_per_s"] / rows["numpyro_diffrax"]["ess_per_s"]
    print(f"{'':18s} {'wall [s]':>9s} {'min ESS':>8s} {'ESS/s':>8s}")
    for k, r in rows.items():
        print(f"{k:18s} {r['wall_s']:9.1f} {r['min_ess_bulk']:8.0f} {r['ess_per_s']:8.2f}")
    print(f"cellpkpd / hand-written ESS/s: {ratio:.1f}x (target >= 3x)")
    result = {
        "problem": "tests/infer/test_infer_recovery.py: 24 subjects, two_cmt_iv, IIV CL and V1, "
        f"proportional error, {frac:.0%} below LLOQ (M3)",
        "settings": {**vars(args), "seed": 1},
        "results": rows,
        "ess_per_s_ratio": ratio,
        "machine": {
            "platform": platform.platform(),
            "devices": [str(d) for d in jax.devices()],
            "jax": jax.__version__,
            "numpyro": numpyro.__version__,
            "diffrax": diffrax.__version__,
        },
        "note": "wall time includes compilation for both",
    }
    out = Path(__file__).parent / "results" / "bench_fit.json"
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
