"""`sweep`: a model's metrics over any number of parameter sets, in fixed-size chunks.

Each chunk goes through `Simulator.batch` with the metrics as an on-device reduction, so a
chunk's trajectories never leave the compiled program and peak memory depends on the chunk
size, not on the number of sets. `Simulator.batch` shards each chunk over the JAX devices
(`cellpkpd.parallel.batched_map`). With ``path=``, each finished chunk is written to disk
(atomically) beside a manifest holding a hash of the sweep's inputs and the SHA-256 of each
finished chunk file, so a re-run resumes where an interrupted one stopped and refuses a chunk
file that was changed; with a `dask.distributed.Client`, chunks run on the cluster's workers.

The output grid is the union of the user's output times, the metrics' own times (window
bounds, `value_at` times) and, twice (before and after the events at that time), each time
at which a dose or reset makes the states jump; each metric reads only its own points of it
(`cellpkpd.analysis.metrics.own_points`), so its value does not depend on the other metrics.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .._core.errors import DosingError, SpecError
from .._core.memo import LRU
from ..data.simulate import outside_bounds
from ..engine.dosing import DoseArrays, Regimen, jump_times, model_lags, stack_dose_arrays
from ..engine.options import SolverOptions, merge_options
from ..engine.simulator import Simulator, check_regimen, check_times, resolve_solver
from ..engine.solve import SOLVED
from ..spec.expr import parse_expr, state_degree
from ..spec.model import ModelSpec, State, load_model
from .metrics import Metric, integral_name, named, output_unit, own_points

__all__ = [
    "RunOptions",
    "SolverOptions",
    "augment_spec",
    "evaluate_metrics",
    "run_sweep",
    "sweep",
]

MANIFEST = "manifest.json"
_FORMAT = 2  # 2: per-metric points, dose jumps on the grid, chunk checksums
#: most distinct jump times put on a sweep's grid (each adds two output times)
MAX_JUMP_TIMES = 1024


# ---------------------------------------------------------------- running integrals
def augment_spec(spec: ModelSpec, integrals: Sequence[str]) -> tuple[ModelSpec, tuple[str, ...]]:
    """Add a running-integral state ``d I_y/dt = y`` (I_y(t0) = 0) for each output y.

    Returns the augmented spec and the outputs that got one. A linear model stays linear
    (the integrand of a state, derived quantity or observation that is affine in the states
    is affine); an integrand that would make a linear model nonlinear is skipped, and its
    metrics fall back to the trapezoid on the output grid.
    """
    from types import MappingProxyType

    states = dict(spec.states)
    odes = dict(spec.odes)
    names = set(spec.states)
    done = []
    for out in dict.fromkeys(integrals):
        if out in spec.observations:
            source = spec.observations[out].expr.source
        else:
            source = out
        key = integral_name(out)
        e = parse_expr(source, f"{spec.source}: integral of '{out}'")
        if spec.is_linear and state_degree(e.tree, names, spec.derived) is None:
            continue
        unit = f"{output_unit(spec, out) or '1'}*{spec.time_unit}"
        states[key] = State(key, parse_expr("0", key), unit, f"running integral of {out}")
        odes[key] = e
        done.append(out)
    if not done:
        return spec, ()
    new = dataclasses.replace(spec, states=MappingProxyType(states), odes=MappingProxyType(odes))
    return new, tuple(done)


# ---------------------------------------------------------------- options
@dataclass(frozen=True)
class RunOptions:
    """How a batch of parameter sets is run by `cp.sweep` (and so by `cp.dose_ranging`
    and `cp.gsa.sobol`).

    Attributes
    ----------
    chunk_size : int
        Sets per chunk (> 0): one compiled, sharded evaluation each; peak memory grows
        with it, not with the number of sets.
    path : str or path, optional
        Folder for finished chunks and their manifest (a re-run resumes).
    client : dask.distributed.Client, optional
        Run the chunks on the cluster's workers.
    progress : bool
        Show a progress bar (tqdm.auto).
    """

    chunk_size: int = 100_000
    path: str | os.PathLike | None = None
    client: Any = None
    progress: bool = True

    @classmethod
    def merged(
        cls, run: RunOptions | None, where: str, progress_default: bool = True, **keywords: Any
    ) -> RunOptions:
        """`run`, or options made from the loose keywords (chunk_size, path, client,
        progress; None: not given), checked (see `merge_options`)."""
        defaults = {"progress": progress_default}
        return merge_options(cls, run, keywords, where, "run", defaults).check(where)

    def check(self, where: str) -> RunOptions:
        """This object, after checking `chunk_size` (a `SpecError` starting with `where`)."""
        size = self.chunk_size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            raise SpecError(f"{where}: chunk_size = {size!r} must be an integer > 0")
        if size <= 0:
            raise SpecError(f"{where}: chunk_size = {size} must be > 0")
        return self


# ---------------------------------------------------------------- the plan (picklable)
@dataclass(frozen=True, eq=False)
class _Plan:
    """Everything a worker needs to evaluate a chunk (pickled with cloudpickle for Dask)."""

    spec: ModelSpec
    grid: np.ndarray
    outputs: tuple[str, ...]
    solve: SolverOptions  # its solver resolved ("auto" replaced)
    metrics: tuple[tuple[str, Metric], ...]
    key: str
    # per metric: indices of its own grid points, and of the points before / after each jump
    # inside its span (see cellpkpd.analysis.metrics.own_points)
    points: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...] = ()


# by the plan's content hash, per process (a Dask worker's too): the 8 most recently used
_CACHE: LRU[str, tuple[Simulator, Any]] = LRU(8)


def _engine(plan: _Plan) -> tuple[Simulator, Any]:
    """The Simulator and reduction of a plan, built once per process."""
    hit = _CACHE.get(plan.key)
    if hit is None:
        sim = Simulator(
            plan.spec,
            plan.grid,
            outputs=plan.outputs,
            solver=plan.solve.solver,
            rtol=plan.solve.rtol,
            atol=plan.solve.atol,
            max_steps=plan.solve.max_steps,
        )
        metrics = plan.metrics
        points = plan.points or tuple((np.arange(len(plan.grid)), None, None) for _ in metrics)

        def reduce(times: Any, y: Mapping[str, Any]) -> dict[str, Any]:
            out = {}
            for (name, m), (own, pre, post) in zip(metrics, points, strict=True):
                out[name] = m.reduce(*own_points(m, times, y, own, pre, post))
            return out

        hit = _CACHE[plan.key] = (sim, reduce)
    return hit


def _run_chunk(
    plan: _Plan,
    params: Mapping[str, np.ndarray],
    doses: DoseArrays,
    size: int,
    order: np.ndarray | None = None,
):
    """Metrics and status of one chunk; inputs padded to `size` rows (one compiled shape).

    `order`: the grid points' ``events_before`` (shared (n_grid,) or per row)."""
    sim, reduce = _engine(plan)
    n = len(next(iter(params.values())))

    def pad(x: Any) -> Any:
        x = np.asarray(x)
        return np.concatenate([x, np.repeat(x[-1:], size - n, axis=0)]) if size > n else x

    p = {k: jnp.asarray(pad(v)) for k, v in params.items()}
    if doses.time.ndim == 2:
        doses = jax.tree.map(lambda x: jnp.asarray(pad(x)), doses)
    if order is not None and np.ndim(order) == 2:
        order = pad(order)
    out, status = sim.batch(p, doses, reduce=reduce, events_before=order)
    values = {k: np.asarray(v, dtype=float)[:n] for k, v in out.items()}
    return values, np.asarray(status, dtype=np.int32)[:n]


def _run_chunk_remote(
    plan_bytes: bytes, params: Any, doses: Any, size: int, order: Any = None
) -> Any:
    """Dask task: unpickle the plan (cached per worker process by its key) and run."""
    import cloudpickle

    plan = cloudpickle.loads(plan_bytes)
    return _run_chunk(plan, params, doses, size, order)


# ---------------------------------------------------------------- inputs
def _samples(
    spec: ModelSpec, samples: Any, covariates: Mapping[str, Any] | None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int | None]:
    """(per-sample arrays, shared scalars, n) validated against the model."""
    try:
        import pandas as pd

        if isinstance(samples, pd.DataFrame):
            samples = {str(c): samples[c].to_numpy() for c in samples.columns}
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    if samples is None:
        samples = {}
    if not isinstance(samples, Mapping):
        raise SpecError(
            f"sweep: samples must be a dict name -> array (n,) or a pandas DataFrame, got "
            f"{type(samples).__name__}"
        )
    if covariates is not None and not isinstance(covariates, Mapping):
        raise SpecError(
            f"sweep: covariates must be a dict name -> value, got {type(covariates).__name__}"
        )
    known = {**spec.parameters, **spec.covariates}
    arrays: dict[str, np.ndarray] = {}
    shared: dict[str, np.ndarray] = {}
    n: int | None = None
    lengths: dict[str, int] = {}
    for arg, given in (("samples", samples), ("covariates", covariates or {})):
        for k, v in given.items():
            if k not in known:
                raise SpecError(
                    f"sweep: {arg} has unknown name '{k}'; model '{spec.name}' has parameters "
                    f"{', '.join(spec.parameters) or 'none'} and covariates "
                    f"{', '.join(spec.covariates) or 'none'}"
                )
            if k in arrays or k in shared:
                raise SpecError(f"sweep: '{k}' is given in both samples and covariates")
            try:
                a = np.asarray(v, dtype=float)
            except (TypeError, ValueError):
                raise SpecError(f"sweep: {arg}['{k}'] is not numeric: {v!r:.60}") from None
            if a.ndim > 1 or (arg == "samples" and a.ndim == 0):
                raise SpecError(
                    f"sweep: {arg}['{k}'] must be 1-D (one value per sample), got shape {a.shape}"
                )
            if not np.all(np.isfinite(a)):
                i = int(np.flatnonzero(~np.isfinite(a.reshape(-1)))[0])
                raise SpecError(f"sweep: {arg}['{k}'][{i}] = {a.reshape(-1)[i]} is not finite")
            bad = outside_bounds(spec, k, a)  # a parameter's or a covariate's bounds
            if bad is not None:
                raise SpecError(
                    f"sweep: {arg}['{k}'][{bad.first}] = {bad.values[bad.first]} lies outside "
                    f"its bounds [{bad.lo}, {bad.hi}]"
                )
            if a.ndim == 0:
                shared[k] = a
                continue
            lengths[k] = a.size
            arrays[k] = a
    if lengths:
        sizes = sorted(set(lengths.values()))
        if len(sizes) > 1:
            desc = ", ".join(f"{k}: {v}" for k, v in lengths.items())
            raise SpecError(f"sweep: samples have different lengths ({desc})")
        n = sizes[0]
        if n == 0:
            raise SpecError("sweep: samples are empty (0 parameter sets)")
    return arrays, shared, n


def weighted_doses(
    spec: ModelSpec,
    regimens: Sequence[Regimen],
    rows: np.ndarray,
    values: Mapping[str, Any],
    where: str,
) -> DoseArrays:
    """Dose arrays of many samples, sample i given ``regimens[rows[i]]`` with its doses per
    kg of body weight (``cp.Dose(..., per="kg")``, a unit such as ``cells/kg``) times its own
    weight: the input `cp.simulate` reads it from (`body_weight_name`: ``body_weight`` or
    ``WT``) in `values` (arrays (n,) or scalars), else the model's value (e.g. from its
    ``[physiology]`` table). Used by `cp.sweep` and `cp.dose_ranging`.

    An amount is linear in the weight: each regimen's arrays at 0 kg hold the amounts that
    are not per kg, those at 1 kg add the per-kg ones, and each sample scales the
    difference by its weight (the arrays are built once per regimen, not per sample).
    """
    from ..engine.simulator import body_weight_name

    name, factor = body_weight_name(spec, where)
    weight = values[name] if name in values else spec.defaults()[name]
    weight = np.broadcast_to(np.asarray(weight, dtype=float), rows.shape) * factor
    if not np.all(weight > 0):  # also NaN
        i = int(np.flatnonzero(~(weight > 0))[0])
        raise DosingError(f"{where}: a dose per kg, but sample {i} has {name} = {weight[i]:g} kg")
    at = lambda w: stack_dose_arrays([r.resolve(spec, w) for r in regimens], spec=spec)
    fixed, per_unit = at(0.0), at(1.0)
    amount = fixed.amount[rows] + weight[:, None] * (per_unit.amount - fixed.amount)[rows]
    doses = jax.tree.map(lambda x: x[rows], fixed)
    return eqx.tree_at(lambda d: d.amount, doses, amount)


def per_body_weight(spec: ModelSpec, regimen: Regimen) -> bool:
    """True if a dose of `regimen` is per kg of body weight (see `Dose.per_body_weight`)."""
    return any(d.per_body_weight(spec) for d in regimen.doses)


def _doses(
    spec: ModelSpec, regimen: Any, n: int | None, values: Mapping[str, Any]
) -> tuple[DoseArrays, int]:
    """Dose arrays, shared (max_doses,) or one row per set, and the number of sets;
    `values`: the sets' inputs, which hold their body weights for per-kg doses."""
    if isinstance(regimen, Regimen):
        check_regimen(spec, regimen, "sweep: regimen")
        if per_body_weight(spec, regimen):  # one row per set: its own weight
            d = weighted_doses(spec, [regimen], np.zeros(n or 1, dtype=int), values, "sweep")
            return jax.tree.map(np.asarray, d), n or 1
        return regimen.to_arrays(None, spec), n or 1
    if isinstance(regimen, DoseArrays):
        d = regimen.resolve(tuple(spec.states), "sweep: regimen", tuple(spec.routes))
        if d.time.ndim == 1:
            return d, n or 1
        if d.time.ndim != 2:
            raise DosingError(
                f"sweep: regimen DoseArrays must have shape (max_doses,) or (n, max_doses), "
                f"got {tuple(d.time.shape)}"
            )
        m = int(d.time.shape[0])
        if n is not None and m != n:
            raise DosingError(f"sweep: regimen has {m} rows of doses but samples give {n} sets")
        return jax.tree.map(np.asarray, d), m
    if isinstance(regimen, Sequence) and regimen and all(isinstance(r, Regimen) for r in regimen):
        if n is not None and len(regimen) != n:
            raise DosingError(
                f"sweep: {len(regimen)} regimens but samples give {n} sets (give one regimen "
                "per set, or a single Regimen)"
            )
        for i, r in enumerate(regimen):
            check_regimen(spec, r, f"sweep: regimen {i}")
        if any(per_body_weight(spec, r) for r in regimen):
            # distinct regimens resolved once each (a shared regimen: one, not n)
            first: dict[int, int] = {}
            rows = np.array([first.setdefault(id(r), len(first)) for r in regimen])
            unique = list({id(r): r for r in regimen}.values())
            d = weighted_doses(spec, unique, rows, values, "sweep")
        else:
            d = stack_dose_arrays(list(regimen), None, spec)
        return jax.tree.map(np.asarray, d), len(regimen)
    if regimen is None:
        return Regimen([]).to_arrays(None, spec), n or 1
    raise DosingError(
        "sweep: regimen must be a cp.Regimen, a list of them (one per set) or a DoseArrays, "
        f"got {type(regimen).__name__}"
    )


def _jump_grid(
    doses: DoseArrays, static: np.ndarray, lags: np.ndarray
) -> tuple[np.ndarray, dict[float, int], np.ndarray, np.ndarray, np.ndarray]:
    """The sweep's grid: the static times plus each jump time inside (static[0], static[-1]]
    twice (a point before the events at that time, then one after, which is also the static
    time's point if there is one).

    Returns the grid, the index of each static time's point, the jump times and the indices
    of their points before and after."""
    from ..engine.dosing import BOLUS, DOSE, RESET_DOSE

    kind = np.asarray(doses.kind)
    bolus = ((kind == DOSE) | (kind == RESET_DOSE)) & (np.asarray(doses.mode) == BOLUS)
    unknown = bolus & np.isnan(lags[np.clip(np.asarray(doses.cmt), 0, len(lags) - 1)])
    if unknown.any():
        warnings.warn(
            "sweep: a bolus goes into a state whose [dosing] lag depends on the parameters; "
            "its jump time is not on the grid, so crossings and trapezoids next to it are "
            "interpolated across the jump",
            RuntimeWarning,
            stacklevel=5,
        )
    rec, bol = jump_times(doses, lags)
    jumps = np.unique(np.concatenate([rec.ravel(), bol.ravel()]))
    jumps = jumps[np.isfinite(jumps) & (jumps > static[0]) & (jumps <= static[-1])]
    if jumps.size > MAX_JUMP_TIMES:
        warnings.warn(
            f"sweep: {jumps.size} distinct dose/reset times (more than {MAX_JUMP_TIMES}); they "
            "are not put on the grid, so crossings and trapezoids are interpolated across "
            "jumps between output times",
            RuntimeWarning,
            stacklevel=5,
        )
        jumps = jumps[:0]
    is_jump = set(jumps.tolist())
    grid: list[float] = []
    index: dict[float, int] = {}
    pre: list[int] = []
    post: list[int] = []
    for t in np.union1d(static, jumps).tolist():
        if t in is_jump:
            pre.append(len(grid))
            grid.append(t)
            post.append(len(grid))
        index[t] = len(grid)
        grid.append(t)
    return (
        np.asarray(grid, dtype=float),
        index,
        jumps,
        np.asarray(pre, dtype=np.int32),
        np.asarray(post, dtype=np.int32),
    )


def _order(
    doses: DoseArrays, lags: np.ndarray, jumps: np.ndarray, pre: np.ndarray, n_grid: int
) -> np.ndarray | None:
    """``events_before`` of the grid points: each point before a jump comes before the
    first dose-array entry with an event at that time, every other point after all."""
    if jumps.size == 0:
        return None
    rec, bol = jump_times(doses, lags)
    n = doses.max_doses
    both = np.where(np.isnan(rec), -1.0, rec), np.where(np.isnan(bol), -1.0, bol)
    rows, inverse = np.unique(np.concatenate(both, axis=-1).reshape(-1, 2 * n), axis=0,
                              return_inverse=True)  # fmt: skip
    rec, bol = rows[:, :n], rows[:, n:]  # distinct dose rows (e.g. one per arm)
    hit = (rec[:, :, None] == jumps) | (bol[:, :, None] == jumps)  # (rows, n, n_jumps)
    first = np.where(hit.any(1), hit.argmax(1), n)
    table = np.full((rows.shape[0], n_grid), n, dtype=np.int32)
    table[:, pre] = first
    order = table[np.ravel(inverse)]
    return order[0] if np.ndim(doses.time) == 1 else order


def _fingerprint(spec: ModelSpec) -> dict[str, Any]:
    src = lambda e: None if e is None else e.source
    return {
        "name": spec.name,
        "parameters": {k: [p.value, list(p.bounds)] for k, p in spec.parameters.items()},
        "covariates": {k: c.value for k, c in spec.covariates.items()},
        "states": {k: src(s.initial) for k, s in spec.states.items()},
        "flows": [[f.source, f.target, src(f.rate)] for f in spec.flows],
        "odes": {k: src(e) for k, e in spec.odes.items()},
        "derived": {k: src(e) for k, e in spec.derived.items()},
        "observations": {k: src(o.expr) for k, o in spec.observations.items()},
        "dosing": {
            k: [src(r.lag), src(r.bioavailability), src(r.rate), src(r.duration)]
            for k, r in spec.dosing.items()
        },
        "breakpoints": {k: src(e) for k, e in spec.breakpoints.items()},
        "stiff": spec.stiff,
    }


def _hash(parts: Mapping[str, Any], arrays: Mapping[str, Any]) -> str:
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode())
    for k in sorted(arrays):
        a = np.ascontiguousarray(np.asarray(arrays[k]))
        h.update(f"|{k}|{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- disk
def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _chunk_file(folder: Path, i: int) -> Path:
    return folder / f"chunk_{i:06d}.npz"


def _open_folder(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Create or check the sweep's folder; returns its manifest (with ``chunks``: file name
    -> SHA-256 of each finished chunk)."""
    if folder.exists() and not folder.is_dir():
        raise SpecError(f"sweep: path '{folder}' is a file, expected a folder for the chunks")
    folder.mkdir(parents=True, exist_ok=True)
    mf = folder / MANIFEST
    if mf.exists():
        try:
            old = json.loads(mf.read_text())
        except (OSError, ValueError):
            raise SpecError(f"sweep: path '{folder}' has an unreadable {MANIFEST}") from None
        if old.get("hash") != manifest["hash"]:
            raise SpecError(
                f"sweep: path '{folder}' holds a different sweep (model '{old.get('model')}', "
                f"{old.get('n_samples')} sets, metrics {', '.join(old.get('metrics', []))}); "
                "use another path or delete it"
            )
        if not isinstance(old.get("chunks", {}), dict):
            raise SpecError(f"sweep: path '{folder}' has an unreadable {MANIFEST}")
        old.setdefault("chunks", {})
        return old
    if any(p.name.startswith("chunk_") for p in folder.iterdir()):
        raise SpecError(f"sweep: path '{folder}' holds chunk files but no {MANIFEST}; not a sweep")
    manifest = {**manifest, "chunks": {}}
    _write_manifest(folder, manifest)
    return manifest


def _write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    text = json.dumps(manifest, indent=1).encode()
    _atomic_write(folder / MANIFEST, lambda f: f.write(text))


def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load_chunk(file: Path, names: Sequence[str], n: int) -> tuple[dict, np.ndarray] | None:
    try:
        with np.load(file) as z:
            values = {k: np.asarray(z[k]) for k in names}
            status = np.asarray(z["status"])
    except (OSError, KeyError, ValueError, EOFError):
        return None  # unreadable: recomputed
    if status.shape != (n,) or any(v.shape != (n,) for v in values.values()):
        return None
    return values, status


def _save_chunk(
    folder: Path, manifest: dict[str, Any], i: int, values: Mapping[str, np.ndarray], status: Any
) -> None:
    """Write chunk `i`: its SHA-256 goes into the manifest first, then the file (both
    atomically), so a chunk file on disk always has its checksum recorded."""
    import io

    buf = io.BytesIO()
    np.savez(buf, status=status, **values)
    data = buf.getvalue()
    file = _chunk_file(folder, i)
    manifest["chunks"][file.name] = hashlib.sha256(data).hexdigest()
    _write_manifest(folder, manifest)
    _atomic_write(file, lambda f: f.write(data))


# ---------------------------------------------------------------- sweep
def sweep(
    spec: ModelSpec | str,
    regimen: Regimen | Sequence[Regimen] | DoseArrays | None,
    times: Any,
    samples: Mapping[str, Any] | Any,
    metrics: Mapping[str, Metric] | Sequence[Metric],
    *,
    covariates: Mapping[str, Any] | None = None,
    chunk_size: int | None = None,
    path: str | os.PathLike | None = None,
    client: Any = None,
    progress: bool | None = None,
    solver: str | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    species: str | None = None,
    outputs_dtype: Any = None,
    run: RunOptions | None = None,
    solver_options: SolverOptions | None = None,
) -> xr.Dataset:
    """Metrics of a model over many parameter sets, chunked, sharded and resumable.

    Parameters
    ----------
    spec : ModelSpec or str
        The model, a library name or a path to a model file.
    regimen : Regimen, list of Regimen, DoseArrays or None
        One regimen for every set, one per set, or dose arrays with a leading set axis
        ``(n, max_doses)`` (or ``(max_doses,)``, shared).
    times : array, shape (n_times,)
        Output times [model time unit] the metrics are read on. Each metric reads these
        plus its own window bounds and `value_at` time (never another metric's), and
        crossing and integral metrics also read both sides of each jump (bolus, reset,
        steady-state dose) inside that span.
    samples : dict name -> array (n,) or pandas.DataFrame
        Parameter and covariate values, one per set; unnamed ones take the model's values.
    metrics : dict name -> Metric, or a list of Metric (named by their default names)
    covariates : dict, optional
        Further covariate (or parameter) values: scalars shared by all sets, or arrays (n,).
    chunk_size : int
        Sets per chunk (> 0; default 100,000): each chunk is one compiled, sharded evaluation
        (the last one is padded to the same shape), and peak memory grows with it, not with n.
    path : str or path, optional
        Folder for the finished chunks and a manifest (with the SHA-256 of each chunk file);
        a re-run with the same inputs loads finished chunks instead of recomputing them; a
        folder holding another sweep, or a chunk file whose checksum differs from the
        manifest's, is refused (`SpecError` naming the file).
    client : dask.distributed.Client, optional
        Run the chunks on the cluster's workers (results gathered in order, written to
        `path` as they finish).
    progress : bool
        Show a progress bar (tqdm.auto: terminal or Jupyter; default True).
    solver, rtol, atol
        As in `cp.simulate` (defaults ``"auto"``, 1e-8, 1e-8).
    species : str, optional
        Species for a library model's ``[physiology]`` (when `spec` is a name).
    outputs_dtype : dtype, optional
        Store metric values in this dtype (e.g. ``np.float32``); default float64.
    run : RunOptions, optional
        chunk_size, path, client and progress as one object (instead of the keywords; a
        keyword that differs from it is a `SpecError`).
    solver_options : SolverOptions, optional
        solver, rtol, atol (and max_steps) as one object, likewise.

    Returns
    -------
    xarray.Dataset
        Dims ``("sample",)``: one variable per metric (attribute ``unit``), the sample inputs,
        and ``status`` (0 = solved; a failed set has NaN metrics and a warning says how many
        failed and names the first few). Attributes ``chunks_computed`` and
        ``chunks_loaded`` say how many chunks were evaluated and read from `path`.

    Notes
    -----
    Integral metrics (`cp.metrics.auc`, `cp.metrics.cell_days`) use a running-integral
    state added to the model (`augment_spec`) and are exact to solver precision; with
    steady-state doses or resets in the regimen (an integral has no steady state, a reset
    would zero it) they fall back to the linear-up/log-down trapezoid on the output grid.
    Window bounds, `value_at` times and, twice (before and after the events at that time),
    each jump time are added to the output grid; each metric reads only its own points of
    it (`cellpkpd.analysis.metrics.own_points`), so a metric has the same value whichever other
    metrics are requested, and the value it has on a `cp.simulate` result with the same
    output times (where the result can answer it). Sets are evaluated by
    the same compiled program whichever chunk or device holds them, so results do not depend
    on `chunk_size`, the number of devices or the Dask cluster.

    A regimen with doses per kg of body weight (``cp.Dose(..., per="kg")`` or a unit such
    as ``cells/kg``) gives each set its own amounts: the per-kg amount times the set's body
    weight (``body_weight`` or ``WT`` in `samples` or `covariates`, else the model's value,
    e.g. from its ``[physiology]`` table), as `cp.simulate` and `cp.dose_ranging` do.

    `run_sweep` is the same with the options only as the two objects, for code that
    passes them on.
    """
    if not isinstance(spec, ModelSpec):
        spec = load_model(spec, species=species)
    return run_sweep(
        spec,
        regimen,
        times,
        samples,
        metrics,
        covariates=covariates,
        run=RunOptions.merged(
            run, "sweep", chunk_size=chunk_size, path=path, client=client, progress=progress
        ),
        solver_options=SolverOptions.merged(
            solver_options, "sweep", solver=solver, rtol=rtol, atol=atol
        ),
        outputs_dtype=outputs_dtype,
    )


def run_sweep(
    spec: ModelSpec | str,
    regimen: Regimen | Sequence[Regimen] | DoseArrays | None,
    times: Any,
    samples: Mapping[str, Any] | Any,
    metrics: Mapping[str, Metric] | Sequence[Metric],
    *,
    covariates: Mapping[str, Any] | None = None,
    run: RunOptions | None = None,
    solver_options: SolverOptions | None = None,
    outputs_dtype: Any = None,
) -> xr.Dataset:
    """`sweep` with its run and solver options as objects only (defaults: ``RunOptions()``,
    ``SolverOptions()``); the other arguments and the result as in `sweep`."""
    spec = spec if isinstance(spec, ModelSpec) else load_model(spec)
    run = RunOptions.merged(run, "sweep")
    solve = SolverOptions.merged(solver_options, "sweep")
    mets = named(metrics, "sweep: metrics")
    bound = {k: m.bind(spec) for k, m in mets.items()}
    times_arr = check_times(times, "sweep")
    arrays, shared, n = _samples(spec, samples, covariates)
    doses, n = _doses(spec, regimen, n, {**arrays, **shared})
    grid = _sweep_grid(spec, bound, times_arr, doses)
    plan, key = _plan(spec, bound, times_arr, arrays, shared, doses, grid, solve, run, n)
    size = int(min(run.chunk_size, n))
    n_chunks = -(-n // size)
    folder = None if run.path is None else Path(run.path)
    manifest = None
    if folder is not None:
        manifest = {
            "hash": key,
            "model": spec.name,
            "n_samples": n,
            "chunk_size": size,
            "n_chunks": n_chunks,
            "metrics": list(bound),
            "format": _FORMAT,
        }
        manifest = _open_folder(folder, manifest)
    inputs = _ChunkInputs(spec, arrays, shared, doses, grid, size, n)
    results = _load_finished(folder, manifest, list(bound), size, n, n_chunks)
    loaded = len(results)
    todo = [i for i in range(n_chunks) if i not in results]
    computed = _execute(plan, inputs, todo, results, run, folder, manifest, loaded)
    return _dataset(spec, mets, bound, arrays, results, n, n_chunks, outputs_dtype, {
        "model": spec.name,
        "solver": plan.solve.solver,
        "time_unit": spec.time_unit,
        "chunk_size": size,
        "n_chunks": n_chunks,
        "chunks_computed": computed,
        "chunks_loaded": loaded,
        "sweep_hash": key,
        **({"path": str(folder)} if folder is not None else {}),
    })  # fmt: skip


@dataclass(frozen=True)
class _Grid:
    """A sweep's output grid (`_jump_grid`) and each metric's points on it."""

    grid: np.ndarray
    jumps: np.ndarray
    pre: np.ndarray  # grid index of the point before each jump
    points: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]
    lags: np.ndarray
    shared_order: np.ndarray | None  # events_before of a regimen shared by every set


def _sweep_grid(
    spec: ModelSpec, bound: Mapping[str, Metric], times: np.ndarray, doses: DoseArrays
) -> _Grid:
    """The output grid: the user's times, the metrics' own times and each jump twice."""
    for name, m in bound.items():
        for t in m.needs().times:
            if t < 0:
                raise SpecError(f"sweep: metric '{name}' needs time {t}, before the start 0")
    extra = [t for m in bound.values() for t in m.needs().times]
    static = np.unique(np.concatenate([times, np.asarray(extra, dtype=float)]))
    lags = model_lags(spec)
    grid, index, jumps, pre, post = _jump_grid(doses, static, lags)
    points = []
    for m in bound.values():
        own_t = np.union1d(times, np.asarray(m.needs().times, dtype=float))
        inside = (jumps > own_t[0]) & (jumps <= own_t[-1])
        own = np.asarray([index[t] for t in own_t.tolist()], dtype=np.int32)
        points.append((own, pre[inside], post[inside]))
    shared_order = _order(doses, lags, jumps, pre, grid.size) if doses.time.ndim == 1 else None
    return _Grid(grid, jumps, pre, tuple(points), lags, shared_order)


def _plan(
    spec: ModelSpec,
    bound: Mapping[str, Metric],
    times: np.ndarray,
    arrays: Mapping[str, np.ndarray],
    shared: Mapping[str, np.ndarray],
    doses: DoseArrays,
    grid: _Grid,
    solve: SolverOptions,
    run: RunOptions,
    n: int,
) -> tuple[_Plan, str]:
    """The picklable plan (augmented model, outputs, metrics, compiled-engine key) and the
    hash of the whole sweep's inputs (what a resumable folder is checked against)."""
    resolve_solver(spec, solve.solver)  # a clear error for a bad solver before augmenting
    wanted = [o for m in bound.values() for o in m.needs().integrals]
    if doses.has_ss or doses.has_reset:
        # a running integral has no steady state and a reset would zero it: integrals
        # then fall back to the trapezoid on the output grid
        wanted = []
    aug, got = augment_spec(spec, wanted)
    solve = dataclasses.replace(solve, solver=resolve_solver(aug, solve.solver))
    outputs = tuple(dict.fromkeys([o for m in bound.values() for o in m.needs().outputs]))
    outputs = outputs + tuple(integral_name(o) for o in got)
    metric_items = tuple(bound.items())
    parts = {
        "format": _FORMAT,
        "model": _fingerprint(spec),
        "metrics": [[k, repr(m)] for k, m in metric_items],
        "solver": solve.solver,
        "rtol": float(solve.rtol),
        "atol": float(solve.atol),
        "chunk_size": int(run.chunk_size),
        "n": n,
        "doses_static": [doses.has_infusion, doses.has_ss, doses.has_reset, doses.ss_overlap],
    }
    if solve.max_steps != SolverOptions.max_steps:  # (sweeps hashed before it keep their hash)
        parts["max_steps"] = int(solve.max_steps)
    hashed = {"times": times, "grid": grid.grid}
    hashed.update({f"sample:{k}": v for k, v in arrays.items()})
    hashed.update({f"shared:{k}": v for k, v in shared.items()})
    for field in ("time", "amount", "cmt", "duration", "rate", "lag", "bioavailability", "ii"):
        hashed[f"dose:{field}"] = np.asarray(getattr(doses, field))
    hashed["dose:kind"] = np.asarray(doses.kind)
    hashed["dose:mode"] = np.asarray(doses.mode)
    hashed["dose:ss"] = np.asarray(doses.ss)
    key = _hash(parts, hashed)
    # the compiled engine depends on the model, grid, outputs and metrics, not on the values
    # swept: later sweeps of the same design (other samples, doses) reuse its compilation
    engine_keys = ("format", "model", "metrics", "solver", "rtol", "atol", "max_steps")
    engine_parts = {k: parts[k] for k in engine_keys if k in parts}
    engine_arrays = {"grid": grid.grid, "outputs": np.asarray(outputs)}
    for j, (own, a, b) in enumerate(grid.points):
        engine_arrays.update({f"own{j}": own, f"pre{j}": a, f"post{j}": b})
    engine_key = _hash(engine_parts, engine_arrays)
    plan = _Plan(aug, grid.grid, outputs, solve, metric_items, engine_key, grid.points)
    return plan, key


@dataclass(frozen=True)
class _ChunkInputs:
    """Cuts the sweep's inputs into chunks of `size` sets."""

    spec: ModelSpec
    arrays: Mapping[str, np.ndarray]
    shared: Mapping[str, np.ndarray]
    doses: DoseArrays
    grid: _Grid
    size: int
    n: int

    def __call__(self, i: int) -> tuple[dict[str, np.ndarray], DoseArrays, np.ndarray | None]:
        """Parameters, doses and grid-point order of chunk `i`."""
        lo, hi = i * self.size, min(self.n, (i + 1) * self.size)
        p = {k: v[lo:hi] for k, v in self.arrays.items()}
        for k, v in self.shared.items():
            p[k] = np.full(hi - lo, float(v))
        if not p:  # no inputs vary: one column of the model's values sets the batch size
            defaults = self.spec.defaults()
            first = next(iter(defaults), None)
            if first is not None:
                p[first] = np.full(hi - lo, defaults[first])
        d, order, g = self.doses, self.grid.shared_order, self.grid
        if d.time.ndim == 2:
            d = jax.tree.map(lambda x: np.asarray(x)[lo:hi], d)
            order = _order(d, g.lags, g.jumps, g.pre, g.grid.size)
        return p, d, order


def _load_finished(
    folder: Path | None,
    manifest: Mapping[str, Any] | None,
    names: Sequence[str],
    size: int,
    n: int,
    n_chunks: int,
) -> dict[int, tuple[dict, np.ndarray]]:
    """The chunks already in `folder` (readable and matching the manifest's checksum)."""
    results: dict[int, tuple[dict, np.ndarray]] = {}
    if folder is None or manifest is None:
        return results
    for i in range(n_chunks):
        file = _chunk_file(folder, i)
        # a chunk file whose checksum differs from the manifest's is refused (the checksum
        # is recorded before the file is written; a file without one is recomputed)
        if not (file.exists() and file.name in manifest["chunks"]):
            continue
        if _sha256(file) != manifest["chunks"][file.name]:
            raise SpecError(
                f"sweep: chunk file '{file}' does not match its SHA-256 in {MANIFEST} "
                "(changed after it was written); delete it to recompute it"
            )
        hit = _load_chunk(file, names, min(n, (i + 1) * size) - i * size)
        if hit is not None:
            results[i] = hit
    return results


def _execute(
    plan: _Plan,
    inputs: _ChunkInputs,
    todo: Sequence[int],
    results: dict[int, tuple[dict, np.ndarray]],
    run: RunOptions,
    folder: Path | None,
    manifest: dict[str, Any] | None,
    loaded: int,
) -> int:
    """Evaluate the chunks `todo` here or on `run.client`, adding each to `results` (and
    to `folder`) as it finishes; returns how many were computed."""
    bar = None
    if run.progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=inputs.n,
            desc=f"sweep {inputs.spec.name}",
            unit="set",
            initial=loaded and sum(r[1].size for r in results.values()),
        )

    def finish(i: int, res: tuple[dict, np.ndarray]) -> None:
        values, status = res
        if folder is not None and manifest is not None:
            _save_chunk(folder, manifest, i, values, status)
        results[i] = (values, status)
        if bar is not None:
            bar.update(status.size)

    try:
        if run.client is None:
            for i in todo:
                p, d, order = inputs(i)
                finish(i, _run_chunk(plan, p, d, inputs.size, order))
        elif todo:
            import cloudpickle
            from dask.distributed import as_completed

            blob = run.client.scatter(cloudpickle.dumps(plan), broadcast=True)
            futures = {}
            for i in todo:
                p, d, order = inputs(i)
                fut = run.client.submit(
                    _run_chunk_remote, blob, p, d, inputs.size, order, pure=False
                )
                futures[fut] = i
            for fut, res in as_completed(list(futures), with_results=True):
                finish(futures[fut], res)
    finally:
        if bar is not None:
            bar.close()
    return len(todo)


def _dataset(
    spec: ModelSpec,
    mets: Mapping[str, Metric],
    bound: Mapping[str, Metric],
    arrays: Mapping[str, np.ndarray],
    results: Mapping[int, tuple[dict, np.ndarray]],
    n: int,
    n_chunks: int,
    outputs_dtype: Any,
    attrs: Mapping[str, Any],
) -> xr.Dataset:
    """The chunks' metrics and status as one Dataset (dim ``sample``); a warning names
    the sets that failed to solve (their metrics are NaN)."""
    status = np.concatenate([results[i][1] for i in range(n_chunks)]).astype(np.int32)
    dtype = np.dtype(outputs_dtype) if outputs_dtype is not None else np.float64
    failed = np.flatnonzero(status != SOLVED)
    if failed.size:
        first = ", ".join(str(i) for i in failed[:5])
        more = ", ..." if failed.size > 5 else ""
        warnings.warn(
            f"sweep: {failed.size} of {n} parameter sets failed to solve (samples {first}{more}); "
            "their metrics are NaN",
            RuntimeWarning,
            stacklevel=4,
        )
    data_vars: dict[str, Any] = {}
    for name, m in bound.items():
        v = np.concatenate([results[i][0][name] for i in range(n_chunks)]).astype(float)
        v[status != SOLVED] = np.nan
        data_vars[name] = xr.Variable(
            ("sample",), v.astype(dtype), attrs={"unit": m.unit(spec), "metric": repr(mets[name])}
        )
    for k, v in arrays.items():
        if k not in data_vars:
            unit = spec.parameters[k].unit if k in spec.parameters else spec.covariates[k].unit
            data_vars[k] = xr.Variable(("sample",), v, attrs={"unit": unit})
    data_vars["status"] = xr.Variable(("sample",), status)
    return xr.Dataset(data_vars, coords={"sample": np.arange(n)}, attrs=dict(attrs))


def evaluate_metrics(
    spec_or_sim: Any,
    metrics: Mapping[str, Metric] | Any,
    regimen: Any,
    times: Any,
    params: Mapping[str, Any] | None = None,
    covariates: Mapping[str, Any] | None = None,
    **kw: Any,
) -> Any:
    """Metrics of one or many parameter sets as a pandas DataFrame (one row per set; each
    metric in its own unit, see `cellpkpd.analysis.metrics`).

    A convenience over `sweep` (which computes the metrics on the device, with running
    integrals, so integrals are exact to solver precision). `spec_or_sim` is a ModelSpec,
    library name or a `cp.Simulator` (its spec is used); `params` maps parameter names to
    one value or an array of values (one set per element); `kw` goes to `sweep`.
    """
    spec = spec_or_sim.spec if isinstance(spec_or_sim, Simulator) else spec_or_sim
    samples = {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in (params or {}).items()}
    if kw.get("run") is None:
        kw.setdefault("progress", False)
    out = sweep(spec, regimen, times, samples, metrics, covariates=covariates, **kw)
    return out.to_dataframe()
