"""`cp.simulate`: the one entry point for a regimen (simulated by the engine) or a NONMEM-style
data set, whose subjects are simulated with their own records like mrgsolve's
``mrgsim(data=)``; and the bounds check of a data set's columns (`check_data_bounds`, here and
in fits) through the one check of model inputs, `spec.model.outside_bounds` (re-exported
here for sweeps and virtual populations)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import xarray as xr

from .._core.display import with_units
from .._core.errors import DataError, SimulationError, SpecError
from ..engine.dosing import Regimen, stack_dose_arrays, traced_path
from ..engine.simulator import (
    amount_given,
    batch_inputs,
    check_regimen,
    dose_coords,
    failure_message,
    full_params,
    outputs_tuple,
    resolve_solver,
    simulate_regimens,
    simulator_for,
)
from ..engine.solve import SOLVED
from ..spec.model import ModelSpec, OutsideBounds, load_model, output_unit, outside_bounds
from .nonmem import Dataset, record_inputs

__all__ = ["OutsideBounds", "check_data_bounds", "outside_bounds", "simulate", "simulate_data"]


def simulate(
    spec: ModelSpec | str,
    regimen: Regimen | Sequence[Regimen] | None = None,
    times: Any = None,
    params: Mapping[str, Any] | None = None,
    covariates: Mapping[str, Any] | None = None,
    solver: str = "auto",
    rtol: float = 1e-8,
    atol: float = 1e-8,
    *,
    data: Dataset | None = None,
    outputs: Sequence[str] | None = None,
    max_steps: int = 100_000,
    on_failure: str = "raise",
) -> xr.Dataset:
    """Simulate a model for one or many subjects.

    Parameters
    ----------
    spec : ModelSpec or str
        Model, library name or path to a model file.
    regimen : Regimen or list of Regimen, optional
        One regimen for every subject, or one per subject. None: no doses.
    times : array, shape (n_times,)
        Output times [model time unit], non-decreasing, >= 0.
    params, covariates : dict, optional
        Name -> scalar or array (n,) for n subjects; unnamed ones take the model's values.
    solver : {"auto", "exact", "tsit5", "kvaerno5"}
    rtol, atol : float
        ODE tolerances (relative; absolute in amount units).
    data : Dataset, optional
        A NONMEM-style data set (`cp.read_nonmem`): every subject is simulated with its own
        doses, covariates and record times, like mrgsolve's ``mrgsim(data=)``; `regimen`,
        `times` and `covariates` must then be omitted. Columns naming a covariate or
        parameter of the model (in any case) are used per record, under the data set's
        convention (``read_nonmem(covariates="nocb" | "locf")``); a warning names the
        columns that are ignored.
    outputs : sequence of str, optional
        States, observations or derived quantities to return (default: all states and
        observations).
    max_steps : int
        Step limit of each ODE segment.
    on_failure : {"raise", "nan"}
        A failed subject raises `SimulationError` naming it and the reason, or (``"nan"``)
        gets NaN values with a warning; the ``status`` coordinate says which.

    Returns
    -------
    xarray.Dataset
        One variable per output, dims ``("subject", "time")``, attribute ``unit``;
        coordinates ``subject``, ``time``, ``status`` (0 = solved) and, dims
        ``("subject", "time")``, ``tad`` (time after the most recent dose [time]), ``tsfd``
        (time since the first dose [time]) and ``dose_number`` (see `time_after_dose`). With
        `data`, dims ``("subject", "record")`` and the coordinates ``time``, ``row``,
        ``evid`` and ``dv`` of each record too.
    """
    spec = load_model(spec) if not isinstance(spec, ModelSpec) else spec
    if on_failure not in ("raise", "nan"):
        raise SpecError(f"simulate: on_failure = {on_failure!r}; expected 'raise' or 'nan'")
    given = {"regimen": regimen, "times": times, "params": params, "covariates": covariates}
    found = next((w for k, v in given.items() if (w := traced_path(v, k))), None)
    if found is not None:
        raise SpecError(
            f"simulate: {found} is a traced JAX value; "
            "cp.simulate returns concrete numbers (an xarray.Dataset) and cannot be "
            "differentiated, jitted or vmapped: use cp.Simulator(spec, times, outputs=...)"
            "(params, regimen.to_arrays(n, spec)), which can"
        )
    if data is not None:
        if regimen is not None or times is not None or covariates is not None:
            raise SpecError(
                "simulate: with data=, doses, times and covariates come from the data set; "
                "omit regimen, times and covariates"
            )
        return simulate_data(
            spec,
            data,
            params=params,
            solver=solver,
            rtol=rtol,
            atol=atol,
            outputs=outputs,
            max_steps=max_steps,
            on_failure=on_failure,
        )
    return simulate_regimens(
        spec,
        regimen,
        times,
        params,
        covariates,
        solver,
        rtol,
        atol,
        outputs=outputs,
        max_steps=max_steps,
        on_failure=on_failure,
    )


def check_data_bounds(spec: ModelSpec, source: str, subjects: Sequence[Any]) -> None:
    """Data columns (`SubjectData.covariates`) named like a parameter or covariate of
    `spec` must lie within its bounds at every record (`cp.simulate(data=)`, fits).

    Raises
    ------
    DataError
        Naming the data row, the subject's ID, the column and value, and the bounds.
    """
    for c in subjects[0].covariates if subjects else ():
        for s in subjects:
            bad = outside_bounds(spec, c, s.covariates[c])
            if bad is not None:
                raise DataError(
                    f"{source} row {s.rows[bad.first]} (ID {s.id}): {c} = {bad.value:g} lies "
                    f"outside the bounds [{bad.lo:g}, {bad.hi:g}] of {bad.kind} {c} in "
                    f"{spec.source}; expected a value within them"
                )


def simulate_data(
    spec: ModelSpec,
    data: Dataset,
    params: Mapping[str, Any] | None,
    solver: str,
    rtol: float,
    atol: float,
    outputs: Sequence[str] | None,
    max_steps: int,
    on_failure: str,
) -> xr.Dataset:
    """Every subject of a NONMEM-style data set with its own records (mrgsim(data=))."""
    if not isinstance(data, Dataset):
        raise SpecError(
            f"simulate: data must be a cp.Dataset (from cp.read_nonmem), got {type(data).__name__}"
        )
    subjects = data.subjects(spec)
    n = len(subjects)
    used = _used_columns(spec, data, params)
    check_data_bounds(spec, data.source, subjects)
    values, n_p = batch_inputs(spec, params, None, n)
    if n_p != n:
        raise SpecError(f"simulate: params give {n_p} values but the data set has {n} subjects")
    n_rec = max(s.times.size for s in subjects)
    pad = lambda a: np.concatenate([a, np.repeat(a[-1:], n_rec - a.size)])
    times = np.stack([pad(s.times.astype(float)) for s in subjects])
    p = full_params(spec, values, n)
    varying = [c for c in used if any(s.is_time_varying(c) for s in subjects)]
    for c in used:
        if c not in varying:
            p[c] = jnp.asarray([s.covariates[c][0] for s in subjects], dtype=float)
    regimens = [s.regimen for s in subjects]
    for s in subjects:
        check_regimen(spec, s.regimen, f"{data.source}: ID {s.id}")
    doses = stack_dose_arrays(regimens, None, spec)
    # per-record values under the data set's convention (NOCB or LOCF), each dose and
    # output with its own record's values
    tv = record_inputs(subjects, varying, doses.max_doses) if varying else None
    solver = resolve_solver(spec, solver)
    sim = simulator_for(
        spec,
        None,
        outputs=outputs_tuple(outputs),
        solver=solver,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
    )
    order = np.stack([pad(s.events_before) for s in subjects])
    out, status = sim.batch(p, doses, jnp.asarray(times), tv, events_before=order)
    status = np.asarray(status)
    _report_failures(spec, status, [s.id for s in subjects], on_failure)
    return _record_dataset(spec, data, sim, subjects, out, status, times, order)


def _used_columns(spec: ModelSpec, data: Dataset, params: Mapping[str, Any] | None) -> list[str]:
    """The model's names of the data columns `spec` uses; warns of the ignored columns
    and refuses a name given both as a column and in `params`."""
    # data columns named like a parameter or covariate of the model (in any case) are used,
    # per record, under the model's spelling; the others are read and said to be ignored
    used = list(data.model_columns(spec).values())
    ignored = data.ignored_columns(spec)
    if ignored:
        warnings.warn(
            f"simulate: data columns {', '.join(ignored)} of {data.source} name no covariate "
            f"or parameter of model '{spec.name}' and are ignored (used: "
            f"{', '.join(used) or 'none'})",
            UserWarning,
            stacklevel=4,
        )
    clash = sorted(set(used) & set(params or {}))
    if clash:
        raise SpecError(
            f"simulate: {', '.join(clash)} given both in params and as data column(s) of "
            f"{data.source}; drop one"
        )
    return used


def _report_failures(spec: ModelSpec, status: np.ndarray, ids: list[Any], on_failure: str) -> None:
    """Subjects whose solve failed: a SimulationError, or a warning (their values NaN)."""
    if np.any(status != SOLVED):
        msg = failure_message(status, ids)
        if on_failure == "raise":
            raise SimulationError(f"{spec.name}: {msg}")
        warnings.warn(f"{spec.name}: {msg}; their values are NaN", RuntimeWarning, stacklevel=4)


def _record_dataset(
    spec: ModelSpec,
    data: Dataset,
    sim: Any,
    subjects: Sequence[Any],
    out: Mapping[str, Any],
    status: np.ndarray,
    times: np.ndarray,
    order: np.ndarray,
) -> xr.Dataset:
    """The outputs at each subject's records (dims subject, record; NaN past a subject's
    last record or where its solve failed) with the records' time, row, EVID, DV, time
    after dose and the status and amount given of each subject."""
    n, n_rec = times.shape
    valid = np.stack([np.arange(n_rec) < s.times.size for s in subjects])
    dims = ("subject", "record")

    def padded(get: Any, fill: Any, dtype: Any = float) -> np.ndarray:
        arr = np.full((n, n_rec), fill, dtype=dtype)
        for i, s in enumerate(subjects):
            arr[i, : s.times.size] = get(s)
        return arr

    data_vars = {}
    for name in sim.outputs:
        v = np.array(out[name], dtype=float)
        v[status != SOLVED] = np.nan
        v[~valid] = np.nan
        data_vars[name] = xr.Variable(dims, v, attrs={"unit": output_unit(spec, name)})
    coords = {
        "subject": np.asarray([s.id for s in subjects]),
        "record": np.arange(n_rec),
        "time": (dims, np.where(valid, times, np.nan), {"unit": spec.time_unit}),
        "row": (dims, padded(lambda s: s.rows, -1, int)),
        "evid": (dims, padded(lambda s: s.evid, -1, int)),
        "dv": (dims, padded(lambda s: s.dv, np.nan)),
        "status": ("subject", status),
    }
    # time after dose at each record, the records at equal times in file order
    regimens = [s.regimen for s in subjects]
    dose = dose_coords(regimens, times, n, spec.time_unit, order, valid)
    coords.update({k: (dims, *v) for k, v in dose.items()})
    attrs = {"unit": spec.amount_unit, "description": "total amount dosed (before F)"}
    coords["amount_given"] = ("subject", amount_given(regimens, n), attrs)
    return with_units(
        xr.Dataset(
            data_vars,
            coords=coords,
            attrs={"model": spec.name, "solver": sim.solver, "source": data.source},
        )
    )
