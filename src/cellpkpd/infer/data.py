"""`FitData`: a NONMEM-style data set as the padded per-subject arrays a fit's likelihood
reads (record times, observations, censoring, doses, covariates that change within a
subject), built and checked once per fit."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._core.errors import DataError, SpecError
from ..data.nonmem import Dataset, record_inputs
from ..data.simulate import check_data_bounds
from ..engine.dosing import DoseArrays, stack_dose_arrays
from ..engine.solve import TimeVarying
from ..spec.model import ModelSpec

__all__ = ["FitData"]


@dataclass(frozen=True)
class FitData:
    """A data set as padded arrays for the likelihood, built once per fit.

    Attributes
    ----------
    ids : list
        Subject IDs.
    times : array (n, R)
        Record times [time] (padded by repeating the last).
    dv : array (n, R)
        Observed values (0 where not observed).
    output : int array (n, R)
        Index into `outputs` of the observation each record measures.
    observed : bool array (n, R)
        Records that enter the likelihood (EVID 0, MDV 0).
    censored : bool array (n, R)
        Observed records below the LLOQ.
    lloq : array (n, R)
    covariates : dict str -> array (n,)
        Each subject's covariate value at its first record (its baseline: the value the
        ``<p>_i`` individual parameters of a fit refer to).
    doses : DoseArrays (n, max_doses)
    outputs : tuple of str
        Model observations measured in the data.
    rows : int array (n, R)
        Row of the data file of each record (-1 for padding).
    tv : TimeVarying or None
        The model covariates (``[covariates]`` of the model file) that change within a
        subject, per record, under the data set's convention (NOCB or LOCF,
        `cp.read_nonmem`), exactly as `cp.simulate(data=)` uses them (`record_inputs`):
        the model's expressions see them change at the record times. None if none changes.
    varying : dict str -> array (n, R)
        Every data covariate that changes within some subject, per record (padded with the
        last value): covariate effects of a `cp.Population` on such a covariate change the
        parameter record by record, under the same convention.
    events_before : int array (n, R) or None
        How many of the subject's dose-array events act before each record
        (`SubjectData.events_before`): records at equal times act in file order.
    """

    ids: list[Any]
    times: np.ndarray
    dv: np.ndarray
    output: np.ndarray
    observed: np.ndarray
    censored: np.ndarray
    lloq: np.ndarray
    covariates: dict[str, np.ndarray]
    doses: DoseArrays
    outputs: tuple[str, ...]
    rows: np.ndarray
    tv: TimeVarying | None = None
    varying: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    events_before: np.ndarray | None = None
    records: TimeVarying | None = None

    @classmethod
    def build(
        cls,
        spec: ModelSpec,
        data: Dataset,
        observations: Mapping[Any, str] | None = None,
        error_models: Mapping[str, str] | None = None,
        effect_covariates: Iterable[str] = (),
    ) -> FitData:
        """Convert a `Dataset`: which output each record measures comes from its CMT (a
        model observation's name, or a state mapped by `observations`, or the model's only
        observation). With `error_models` (observation -> residual error model, as
        `Population.error_model` gives), an uncensored observation with DV <= 0 of an
        observation with log-normal error is a `DataError`. Columns are matched in any
        case to the model's covariates and parameters and to `effect_covariates` (those of
        the fit's covariate effects), and keyed by those names."""
        if not isinstance(data, Dataset):
            raise SpecError(f"fit: data must be a cp.Dataset, got {type(data).__name__}")
        effect_covariates = tuple(effect_covariates)
        _check_no_parameter_columns(spec, data, effect_covariates)
        subjects = data.subjects(spec, effect_covariates)
        check_data_bounds(spec, data.source, subjects)  # covariate columns within bounds
        per, used = _record_outputs(spec, data, subjects, observations, error_models)
        R = max(s.times.size for s in subjects)

        def pad(a: np.ndarray, fill: Any) -> np.ndarray:
            return np.concatenate([a, np.full(R - a.size, fill, dtype=np.asarray(a).dtype)])

        cov_names = list(subjects[0].covariates)
        doses = stack_dose_arrays([s.regimen for s in subjects], None, spec)
        varying = {
            c: np.stack(
                [pad(np.asarray(s.covariates[c], float), s.covariates[c][-1]) for s in subjects]
            )
            for c in cov_names
            if any(s.is_time_varying(c) for s in subjects)
        }
        # one mechanism with cp.simulate(data=): the convention and each dose's and
        # output's own record
        model_varying = [c for c in varying if c in spec.covariates]
        return cls(
            ids=[s.id for s in subjects],
            times=np.stack([pad(s.times, s.times[-1]) for s, _, _ in per]),
            dv=np.stack([pad(np.where(o, np.nan_to_num(s.dv), 0.0), 0.0) for s, o, _ in per]),
            output=np.stack(
                [
                    pad(np.array([used.index(x) if x in used else 0 for x in nm]), 0)
                    for *_, nm in per
                ]
            ),
            observed=np.stack([pad(o, False) for _, o, _ in per]),
            censored=np.stack([pad(o & s.cens, False) for s, o, _ in per]),
            lloq=np.stack([pad(np.nan_to_num(s.lloq, nan=0.0), 0.0) for s, _, _ in per]),
            covariates={c: np.array([s.covariates[c][0] for s in subjects]) for c in cov_names},
            doses=doses,
            outputs=tuple(used),
            rows=np.stack([pad(s.rows, -1) for s in subjects]),
            tv=(record_inputs(subjects, model_varying, doses.max_doses) if model_varying else None),
            varying=varying,
            events_before=np.stack([pad(s.events_before, s.events_before[-1]) for s in subjects]),
            records=record_inputs(subjects, (), doses.max_doses),
        )


def _check_no_parameter_columns(spec: ModelSpec, data: Dataset, effect_covariates: tuple) -> None:
    """A data column that names a model parameter is a `DataError`: fits estimate them."""
    for c, name in data.model_columns(spec, effect_covariates).items():
        if name in spec.parameters:
            spelled = "" if c == name else f" ({name})"
            raise DataError(
                f"{data.source}: column {c} names a parameter of model "
                f"'{spec.name}'{spelled}; cp.fit estimates parameters and does not read "
                f"them from data (drop or rename the column; to hold {name} at the model "
                f"file's value use Population(fixed=['{name}']))"
            )


def _record_outputs(
    spec: ModelSpec,
    data: Dataset,
    subjects: list[Any],
    observations: Mapping[Any, str] | None,
    error_models: Mapping[str, str] | None,
) -> tuple[list[tuple[Any, np.ndarray, list[str]]], list[str]]:
    """Per subject (subject, observed records, the observation each record measures), and
    the observations measured, in order of appearance; see `FitData.build`."""
    obs_names = list(spec.observations)
    if not obs_names:
        raise SpecError(f"fit: model '{spec.name}' has no [observations] to fit")
    mapping = dict(observations or {})
    for c, name in mapping.items():
        if name not in spec.observations:
            raise SpecError(
                f"fit: observations[{c!r}] = {name!r} is not an observation of model "
                f"'{spec.name}'; observations: {', '.join(obs_names)}"
            )
    lognormal = {k for k, m in (error_models or {}).items() if m == "lognormal"}
    used: list[str] = []

    def which(s: Any, i: int) -> str:
        c = s.cmt[i]
        if isinstance(c, str) and c in spec.observations:
            return c
        if c in mapping:
            return mapping[c]
        if len(obs_names) == 1:
            return obs_names[0]
        raise DataError(
            f"{data.source} row {s.rows[i]}: cannot tell which observation CMT = {c} "
            f"measures; name one in CMT ({', '.join(obs_names)}) or pass observations="
        )

    per = []
    for s in subjects:
        obs = (s.evid == 0) & (s.mdv == 0)  # a subject with none adds nothing, as NONMEM
        names = [which(s, i) if obs[i] else obs_names[0] for i in range(s.times.size)]
        for i, nm in enumerate(names):
            if nm not in spec.observations:
                raise DataError(f"{data.source}: observation '{nm}' is not in the model")
            if obs[i] and nm not in used:  # dose records measure nothing
                used.append(nm)
        for i in np.flatnonzero(obs & ~s.cens & (s.dv <= 0)):
            if names[i] in lognormal:
                raise DataError(
                    f"{data.source} row {s.rows[i]}: DV = {s.dv[i]:g} with log-normal "
                    f"residual error for '{names[i]}'; expected DV > 0 (or censor it: "
                    "CENS = 1, or DV below an LLOQ column)"
                )
        per.append((s, obs, names))
    if not used:
        raise DataError(
            f"{data.source}: no observations to fit (records with EVID 0 and MDV 0, DV given)"
        )
    return per, used
