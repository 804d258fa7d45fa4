"""NONMEM-style data sets: reading, validation and per-subject events.

`read_nonmem` reads a CSV file or a pandas DataFrame with NONMEM's data items (ID, TIME, AMT,
RATE, CMT, EVID, DV, MDV, II, ADDL, SS, LLOQ or CENS; any other column is a covariate) and
checks it with NONMEM's event semantics. Every problem is a one-line `DataError` naming the
source, the data row (1-based, counting data lines after the header and comment lines), the
column, the value and what was expected. `Dataset.subjects` turns each subject's records into
a `Regimen` plus per-record arrays (observations, censoring, covariates) for simulation and
fitting.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._core.errors import DataError, DosingError
from .._core.io import read_text
from ..engine.dosing import MAX_DOSES, Dose, Regimen, Reset

if TYPE_CHECKING:
    from ..engine.solve import TimeVarying
    from ..spec.model import ModelSpec

__all__ = ["RESERVED_COLUMNS", "Dataset", "SubjectData", "read_nonmem", "record_inputs"]

#: NONMEM data items (matched case-insensitively); every other column is a covariate.
RESERVED_COLUMNS = tuple("ID TIME EVID AMT RATE CMT DV MDV II ADDL SS LLOQ CENS".split())
#: How time-varying covariates hold between records (`read_nonmem`'s ``covariates``).
CONVENTIONS = ("nocb", "locf")
_MISSING = {"", ".", "NA", "NAN"}
_EVIDS = "0 (observation), 1 (dose), 2 (other), 3 (reset) or 4 (reset and dose)"


def _is_missing(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().upper() in _MISSING
    return v is None or bool(pd.isna(v))


def _fmt(v: Any) -> str:
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)


class _Checker:
    """Column parsing and checks that raise one-line `DataError`s naming source and row."""

    def __init__(self, source: str, n: int):
        self.src = source
        self.rows = np.arange(1, n + 1)

    def err(self, i: int, col: str, value: Any, expected: str) -> DataError:
        return DataError(f"{self.src} row {self.rows[i]}: {col} = {_fmt(value)} {expected}")

    def where(self, mask: np.ndarray, col: str, values: np.ndarray, expected: str) -> None:
        if np.any(mask):
            i = int(np.flatnonzero(mask)[0])
            raise self.err(i, col, values[i], expected)

    def required(self, mask: np.ndarray, col: str, expected: str) -> None:
        if np.any(mask):
            i = int(np.flatnonzero(mask)[0])
            raise DataError(f"{self.src} row {self.rows[i]}: {col} is missing; {expected}")

    def floats(self, raw: pd.Series, col: str) -> np.ndarray:
        """Float64 values, NaN where missing ('.', empty, NA); text or inf is an error."""
        dtype = raw.dtype
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            out = raw.to_numpy(dtype=float, na_value=np.nan)
        else:
            values = raw.tolist()
            out = np.empty(len(values))
            for i, v in enumerate(values):
                if _is_missing(v):
                    out[i] = np.nan
                    continue
                try:
                    out[i] = float(v.strip() if isinstance(v, str) else v)
                except (TypeError, ValueError):
                    raise self.err(
                        i, col, v, "is not a number; expected a number ('.' or empty if missing)"
                    ) from None
        self.where(np.isinf(out), col, out, "is not finite; expected a finite number")
        return out

    def ints(self, x: np.ndarray, col: str, allowed: tuple[int, ...], what: str) -> np.ndarray:
        """Integer flags from floats (NaN already replaced by the default)."""
        self.where(~np.isin(x, allowed), col, x, f"is not valid; expected {what}")
        return x.astype(np.int64)

    def cmt(self, raw: pd.Series) -> np.ndarray:
        """CMT values: a 1-based compartment number (int), a state name (str) or None."""
        out = np.empty(len(raw), dtype=object)
        expected = "is not valid; expected a compartment number >= 1 (NONMEM's 1-based CMT) "
        for i, v in enumerate(raw.tolist()):
            if _is_missing(v):
                out[i] = None
                continue
            s = v.strip() if isinstance(v, str) else v
            try:
                x = float(s)
            except (TypeError, ValueError):
                if isinstance(s, str) and s.isidentifier():
                    out[i] = s
                    continue
                raise self.err(i, "CMT", v, expected + "or a state name") from None
            if not (np.isfinite(x) and x.is_integer() and x >= 1):
                raise self.err(i, "CMT", x, expected + "or a state name")
            out[i] = int(x)
        return out


def _read_csv(path: Path, src: str) -> pd.DataFrame:
    text = read_text(path, src, DataError, "data file")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise DataError(f"{src}: empty data set; expected a header line with at least ID and TIME")
    records = list(csv.reader(lines))
    header = [h.strip() for h in records[0]]
    if len(header) == 1:
        for sep, name in ((";", "';'"), ("\t", "tab"), (" ", "space")):
            if sep in header[0]:
                raise DataError(
                    f"{src}: the header {lines[0].strip()!r} looks {name}-separated; cellpkpd "
                    "reads comma-separated CSV (save it with ',' between fields)"
                )
    for j, name in enumerate(header):
        if not name:
            raise DataError(f"{src}: header column {j + 1} has no name; header: {lines[0]!r}")
    for n, rec in enumerate(records[1:], start=1):
        if len(rec) != len(header):
            raise DataError(
                f"{src} row {n}: {len(rec)} fields; expected {len(header)} as in the header "
                f"({','.join(header)})"
            )
    return pd.DataFrame(records[1:], columns=header, dtype=object)


def _table(
    path_or_dataframe: str | os.PathLike | pd.DataFrame, source: str | None
) -> tuple[pd.DataFrame, str]:
    """The raw table (a copy of a DataFrame with stripped column names, or a CSV file
    read as text) and its name in messages."""
    if isinstance(path_or_dataframe, pd.DataFrame):
        src = source or "<DataFrame>"
        table = path_or_dataframe.reset_index(drop=True)
        table.columns = [str(c).strip() for c in table.columns]
    elif isinstance(path_or_dataframe, (str, os.PathLike)):
        src = source or str(path_or_dataframe)
        table = _read_csv(Path(path_or_dataframe), src)
    else:
        raise DataError(
            f"read_nonmem: expected a CSV path or a pandas DataFrame, got "
            f"{type(path_or_dataframe).__name__}"
        )
    return table, src


def read_nonmem(
    path_or_dataframe: str | os.PathLike | pd.DataFrame,
    source: str | None = None,
    covariates: str = "nocb",
) -> Dataset:
    """Read and validate a NONMEM-style data set.

    Parameters
    ----------
    path_or_dataframe : str, path or pandas.DataFrame
        A CSV file (lines starting with ``#`` are comments; ``.``, empty and ``NA`` cells are
        missing values) or a DataFrame with the same columns.
    source : str, optional
        Name used in error messages (default: the path, or ``'<DataFrame>'``).
    covariates : {"nocb", "locf"}
        How a covariate that changes between records holds between them (see Notes).
        ``"nocb"`` (default, as NONMEM and mrgsolve's ``mrgsim``): the value on a record
        holds over the interval that ends at that record, back to the previous record
        (next observation carried backward). ``"locf"``: from the record on, until the next
        record (last observation carried forward). Stored on the Dataset and used alike by
        ``cp.simulate(data=)``, fits (likelihood, PRED, IPRED) and VPC replicates.

    Returns
    -------
    Dataset
        The normalised records; use `Dataset.subjects` for per-subject events.

    Notes
    -----
    Columns (names case-insensitive, normalised to upper case; covariate names kept as given):
    ID, TIME [model time unit] (required); AMT [amount] (default 0); RATE [amount/time]
    (0 bolus, > 0 infusion rate, -1 rate from the model, -2 duration from the model); CMT
    (1-based number or state name; doses default to 1 when the column is absent); EVID
    (0 observation, 1 dose, 2 other, 3 reset, 4 reset and dose; default 1 if AMT > 0 else 0);
    DV; MDV (default 1 for non-observations and missing DV); II [time]; ADDL; SS (0, 1, 2);
    LLOQ, or CENS (NONMEM M3 style: CENS = 1 means DV holds the LLOQ and the value is below
    it). Every other column is a numeric covariate, or a parameter of the model where it
    names one (matched to the model's names in any case).

    Time-varying covariates, as NONMEM (NONMEM Users Guide VI, III.B.2: the system is
    advanced from one record to the next with the values of the record it advances to)
    and mrgsolve (``nocb = TRUE``, the default of ``mrgsim``): with ``"nocb"``, a model
    expression sees, between two records at times t1 < t2, the value of the first record at
    t2; after the last record, the last value; before the first record, the first value.
    With ``"locf"``, between t1 and t2 the value of the last record at t1; before the first
    record, the first value. Under both, the subject's initial amounts use its first
    record, an observation's expression uses its own record, and a dose's ``[dosing]`` lag,
    bioavailability, rate and duration (its ADDL copies included), the steady state of an
    SS dose and a reset's initial amounts use the values on the dose or reset record
    itself, as NONMEM's ALAG, F, R and D. A missing covariate value ('.', empty) on a record
    is filled within the subject in the same direction: under ``"nocb"`` from the next
    record with a value (records after the last value take the last value), under
    ``"locf"`` from the previous one (records before the first value take the first).
    Either way a subject's first records without a value take its first known value.

    Records of a subject must be
    contiguous and in non-decreasing TIME. As in NM-TRAN, AMT, RATE, II, ADDL and SS must be
    0 or missing on records that are not doses (EVID 0, 2, 3), and RATE > 0 needs AMT > 0
    (unless SS > 0); SS > 0 with AMT = 0 and II = 0 is the steady state of a constant
    infusion at RATE (> 0, -1 or 0), which stops at the record; a subject has at most
    ``cellpkpd.engine.dosing.MAX_DOSES`` (100,000) doses and resets, ADDL copies included. A file
    must be comma-separated UTF-8 text.

    Raises
    ------
    DataError
        On any invalid record, with the source, row, column, value and what was expected.
    """
    table, src = _table(path_or_dataframe, source)
    if covariates not in CONVENTIONS:
        raise DataError(
            f"read_nonmem: covariates = {covariates!r}; expected 'nocb' (NONMEM's and "
            "mrgsolve's convention: a record's value holds back to the previous record) or "
            "'locf' (it holds from the record on)"
        )
    return _normalise(table, src, covariates)


def _normalise(table: pd.DataFrame, src: str, convention: str = "nocb") -> Dataset:
    """The checked records of `table` as a `Dataset`: NONMEM's items with their defaults,
    then the covariates filled within each subject."""
    by_upper = _header(table, src)
    n = len(table)
    if n == 0:
        raise DataError(f"{src}: no data rows; expected at least one record after the header")
    chk = _Checker(src, n)

    def col(name: str, default: float = np.nan) -> np.ndarray:
        if name in by_upper:
            return chk.floats(table[by_upper[name]], name)
        return np.full(n, default)

    ids, time = _ids_and_times(chk, col)
    evid, amt, rate, ii, addl, ss = _dose_items(chk, col)
    dose = np.isin(evid, (1, 4))
    _check_dose_counts(chk, ids, evid, dose, addl)
    dv, mdv = col("DV"), col("MDV")
    mdv = np.where(np.isnan(mdv), np.where((evid != 0) | np.isnan(dv), 1.0, 0.0), mdv)
    mdv = chk.ints(mdv, "MDV", (0, 1), "0 or 1")
    msg = "on a record that is not an observation (EVID != 0); expected MDV = 1"
    chk.where((mdv == 0) & (evid != 0), "MDV", mdv, msg)
    chk.required((mdv == 0) & np.isnan(dv), "DV", "expected a value on an observation with MDV = 0")
    route, cmt = _routes_and_compartments(table, by_upper, chk, dose)
    lloq = col("LLOQ")
    chk.where(lloq < 0, "LLOQ", lloq, "is negative; expected LLOQ >= 0")
    msg = "0 or 1 (1 = DV is the LLOQ and the value is below it)"
    cens = chk.ints(np.nan_to_num(col("CENS"), nan=0.0), "CENS", (0, 1), msg)
    chk.required((cens == 1) & np.isnan(dv), "DV", "expected the LLOQ in DV where CENS = 1")
    lloq = np.where(cens == 1, dv, lloq)

    id_col: np.ndarray = ids.astype(np.int64) if np.all(ids % 1 == 0) else ids
    columns = (id_col, time, evid, amt, rate, cmt, dv, mdv, ii, addl.astype(np.int64), ss, lloq)
    frame = pd.DataFrame(
        dict(zip(("ROW", *RESERVED_COLUMNS), (chk.rows, *columns, cens), strict=True))
    )
    if any(r is not None for r in route):
        frame["ROUTE"] = route
    covariates = [c for c in table.columns if c.upper() not in (*RESERVED_COLUMNS, "ROW", "ROUTE")]
    for c in covariates:
        frame[c] = _covariate(table, c, chk, frame["ID"], ids, convention)
    return Dataset(
        frame=frame,
        source=src,
        covariate_names=tuple(covariates),
        covariate_convention=convention,
    )


def _header(table: pd.DataFrame, src: str) -> dict[str, str]:
    """Upper-case name -> column as given, with each name once (in any case) and the
    required ID and TIME present."""
    by_upper: dict[str, str] = {}
    for c in table.columns:
        if c in by_upper.values():
            raise DataError(f"{src}: column {c} appears twice in the header; expected each once")
        if c.upper() in by_upper:
            raise DataError(
                f"{src}: columns {by_upper[c.upper()]!r} and {c!r} clash "
                "(names are case-insensitive)"
            )
        by_upper[c.upper()] = c
    for req in ("ID", "TIME"):
        if req not in by_upper:
            raise DataError(
                f"{src}: missing required column {req}; columns: " + ", ".join(table.columns)
            )
    return by_upper


def _ids_and_times(chk: _Checker, col: Callable[..., np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """ID and TIME of every record: present, TIME >= 0, a subject's records contiguous and
    in non-decreasing TIME."""
    ids, time = col("ID"), col("TIME")
    chk.required(np.isnan(ids), "ID", "expected a subject number on every record")
    chk.required(np.isnan(time), "TIME", "expected a time >= 0 on every record")
    chk.where(time < 0, "TIME", time, "is negative; expected TIME >= 0")
    starts = np.r_[True, ids[1:] != ids[:-1]]
    seen: dict[float, int] = {}
    for i in np.flatnonzero(starts):
        if ids[i] in seen:
            msg = f"appears again after other subjects (first at row {seen[ids[i]]}); expected"
            raise chk.err(i, "ID", ids[i], msg + " a subject's records to be contiguous")
        seen[ids[i]] = i + 1
    prev = np.r_[time[0], time[:-1]]
    back = np.flatnonzero(~starts & (time < prev))
    if back.size:
        i = int(back[0])
        msg = f"is before the previous record's TIME = {_fmt(prev[i])} of ID {_fmt(ids[i])}"
        raise chk.err(i, "TIME", time[i], msg + "; expected non-decreasing TIME within a subject")
    return ids, time


def _dose_items(chk: _Checker, col: Callable[..., np.ndarray]) -> tuple[np.ndarray, ...]:
    """EVID, AMT, RATE, II, ADDL and SS with their defaults, each valid, and together as
    NM-TRAN wants them (dose items on dose records only, a steady state that can be)."""
    amt = col("AMT")
    chk.where(amt < 0, "AMT", amt, "is negative; expected AMT >= 0")
    evid = col("EVID")
    evid = np.where(np.isnan(evid), np.where(amt > 0, 1.0, 0.0), evid)
    evid = chk.ints(evid, "EVID", (0, 1, 2, 3, 4), _EVIDS)
    dose = np.isin(evid, (1, 4))
    msg = "expected an amount >= 0 on a dose record (EVID 1 or 4)"
    chk.required(dose & np.isnan(amt), "AMT", msg)
    amt = np.nan_to_num(amt, nan=0.0)
    rate = np.nan_to_num(col("RATE"), nan=0.0)
    msg = (
        "is not valid; expected >= 0 (0 = bolus), -1 (rate from model) or -2 (duration from model)"
    )
    chk.where(~((rate >= 0) | (rate == -1) | (rate == -2)), "RATE", rate, msg)
    ii = np.nan_to_num(col("II"), nan=0.0)
    chk.where(ii < 0, "II", ii, "is negative; expected a dosing interval >= 0")
    addl = np.nan_to_num(col("ADDL"), nan=0.0)
    chk.where((addl < 0) | (addl % 1 != 0), "ADDL", addl, "is not valid; expected an integer >= 0")
    msg = "needs II > 0 (the interval between additional doses), but II is 0"
    chk.where(dose & (addl > 0) & (ii <= 0), "ADDL", addl, msg)
    ss = chk.ints(np.nan_to_num(col("SS"), nan=0.0), "SS", (0, 1, 2), "0, 1 or 2")
    # SS > 0 with II = 0 and AMT = 0: steady state of a constant infusion at RATE (> 0, -1
    # from the model, or 0: the model's own inputs), which stops at the record (NONMEM's help,
    # SS DOSE EVENT RECORD); RATE = -2 has no meaning there (ADDL needs II > 0, above)
    const_ss = dose & (ss > 0) & (ii <= 0)
    msg = "needs II > 0 (the dosing interval at steady state), but II is 0 (with AMT = 0"
    chk.where(const_ss & (amt > 0), "SS", ss, msg + ": the steady state of a constant infusion)")
    msg = "(modelled duration) on a constant-infusion steady-state record (SS > 0, AMT = 0, "
    chk.where(const_ss & (rate == -2), "RATE", rate, msg + "II = 0); expected RATE > 0, -1 or 0")
    # as NM-TRAN: dose data items only on dose records (EVID 1 or 4)
    items = {"AMT": amt, "RATE": rate, "II": ii, "ADDL": addl, "SS": ss}
    misplaced = np.column_stack([~dose & (v != 0) for v in items.values()])
    if misplaced.any():
        i = int(np.flatnonzero(misplaced.any(axis=1))[0])
        name = list(items)[int(np.argmax(misplaced[i]))]
        kind = {0: "an observation", 2: "an other-event", 3: "a reset"}[int(evid[i])]
        expected = f"({name} belongs on a dose record, EVID 1 or 4)"
        msg = f"on {kind} record (EVID {evid[i]}); expected 0 or '.' {expected}"
        raise chk.err(i, name, items[name][i], msg)
    msg = "with AMT = 0 gives no dose; expected AMT > 0 for an infusion (or RATE = 0)"
    chk.where(dose & (ss == 0) & (rate > 0) & (amt == 0), "RATE", rate, msg)
    return evid, amt, rate, ii, addl, ss


def _check_dose_counts(
    chk: _Checker, ids: np.ndarray, evid: np.ndarray, dose: np.ndarray, addl: np.ndarray
) -> None:
    """At most MAX_DOSES doses and resets per subject, ADDL copies included."""
    n_doses = np.where(dose, 1 + addl, 0.0) + (evid == 3)
    per_subject = pd.Series(n_doses).groupby(ids).cumsum().to_numpy()
    if np.any(per_subject > MAX_DOSES):
        i = int(np.flatnonzero(per_subject > MAX_DOSES)[0])
        raise DataError(
            f"{chk.src} row {chk.rows[i]}: ID {_fmt(ids[i])} reaches {_fmt(per_subject[i])} "
            f"doses at this record (ADDL = {_fmt(addl[i])}); expected at most {MAX_DOSES} "
            "doses (and resets) per subject"
        )


def _routes_and_compartments(
    table: pd.DataFrame, by_upper: dict[str, str], chk: _Checker, dose: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """ROUTE (a route name of the model, on a dose record, in place of CMT; None where
    none) and CMT (number, state name or None; doses default to 1 without a CMT column)."""
    route = np.full(len(table), None, dtype=object)
    if "ROUTE" in by_upper:
        for i, v in enumerate(table[by_upper["ROUTE"]].tolist()):
            if _is_missing(v):
                continue
            v = v.strip() if isinstance(v, str) else v
            if not (isinstance(v, str) and v.isidentifier()):
                raise chk.err(i, "ROUTE", v, "is not valid; expected a route name of the model")
            if not dose[i]:
                raise chk.err(i, "ROUTE", v, "on a record that is not a dose (EVID 1 or 4); "
                              "expected '.' (ROUTE belongs on a dose record)")  # fmt: skip
            route[i] = v
    has_route = np.array([r is not None for r in route])
    if "CMT" in by_upper:
        cmt = chk.cmt(table[by_upper["CMT"]])
        no_cmt = np.array([c is None for c in cmt])
        both = np.flatnonzero(has_route & ~no_cmt)
        if both.size:
            i = int(both[0])
            raise chk.err(i, "ROUTE", route[i], f"with CMT = {_fmt(cmt[i])}; a dose record "
                          "gives CMT (one state) or ROUTE, not both")  # fmt: skip
        msg = "expected a compartment (or a ROUTE) on a dose record (EVID 1 or 4)"
        chk.required(dose & no_cmt & ~has_route, "CMT", msg)
    else:
        cmt = np.where(dose & ~has_route, 1, None).astype(object)
    return route, cmt


def _covariate(
    table: pd.DataFrame, c: str, chk: _Checker, id_col: pd.Series, ids: np.ndarray, convention: str
) -> np.ndarray:
    """Covariate column `c`, its missing values filled within each subject in the direction
    of the convention, then the other way; a subject without any value is an error."""
    fills = ("bfill", "ffill") if convention == "nocb" else ("ffill", "bfill")
    values = pd.Series(chk.floats(table[c], c))
    for fill in fills:
        values = getattr(values.groupby(id_col), fill)()
    if values.isna().any():
        i = int(np.flatnonzero(values.isna())[0])
        last = chk.rows[ids == ids[i]][-1]
        raise DataError(
            f"{chk.src} rows {i + 1}-{last}: covariate {c} is missing on every "
            f"record of ID {_fmt(ids[i])}; expected a number"
        )
    return values.to_numpy(dtype=float)


@dataclass(frozen=True, eq=False)
class SubjectData:
    """One subject's records: dosing events, observations and covariates.

    Attributes
    ----------
    id : int or float
        The subject's ID.
    regimen : Regimen
        Doses (EVID 1 and 4, with ADDL expanded) and resets (EVID 3).
    times : ndarray, shape (n,)
        TIME of every record [model time unit], in file order.
    rows : ndarray, shape (n,)
        Data row numbers (1-based), for messages.
    evid, mdv : ndarray of int, shape (n,)
    dv : ndarray of float, shape (n,)
        Observed value [observation unit]; NaN where missing.
    cmt : ndarray of object, shape (n,)
        Compartment: state name (with a spec), 1-based number or name as given, or None.
    lloq : ndarray of float, shape (n,)
        Lower limit of quantification [observation unit]; NaN where none.
    cens : ndarray of bool, shape (n,)
        Observation below the LLOQ (CENS = 1, or DV < LLOQ).
    covariates : dict of str to ndarray, shape (n,)
        Covariate value at each record (missing values filled as `read_nonmem` says); a
        column that names a covariate or parameter of the model (in any case) under the
        model's spelling.
    events_before : ndarray of int, shape (n,)
        How many events of `regimen` (in its order) act before each record: at a record's
        own time, those of earlier rows (ADDL copies included) and its own dose, so that
        records at equal times act in file order, as NONMEM reads them (an observation
        listed before a dose at the same TIME reports the amount before that dose).
    event_records : ndarray of int, shape (len(regimen.events),)
        The record (0-based index into `times`) each event of `regimen` comes from, in the
        regimen's order: an ADDL copy comes from its initiating dose record.
    covariate_convention : {"nocb", "locf"}
        How the covariates hold between records (`read_nonmem`).
    """

    id: int | float
    regimen: Regimen
    times: np.ndarray
    rows: np.ndarray
    evid: np.ndarray
    mdv: np.ndarray
    dv: np.ndarray
    cmt: np.ndarray
    lloq: np.ndarray
    cens: np.ndarray
    covariates: dict[str, np.ndarray]
    events_before: np.ndarray
    event_records: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )
    covariate_convention: str = "nocb"

    @property
    def observed(self) -> np.ndarray:
        """Records with an observation to fit (EVID 0 and MDV 0), shape (n,)."""
        return (self.evid == 0) & (self.mdv == 0)

    def is_time_varying(self, name: str) -> bool:
        """Whether covariate `name` takes more than one value over this subject's records."""
        if name not in self.covariates:
            raise DataError(
                f"ID {_fmt(self.id)}: unknown covariate '{name}'; covariates: "
                + ", ".join(self.covariates)
            )
        values = self.covariates[name]
        return bool(np.any(values != values[0]))


@dataclass(frozen=True, eq=False)
class Dataset:
    """A validated NONMEM-style data set (build with `read_nonmem`).

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per record: ROW (1-based data row), ID, TIME, EVID, AMT, RATE, CMT, DV, MDV,
        II, ADDL, SS, LLOQ (DV where CENS = 1), CENS, then the covariates (filled within
        each subject). Defaults are filled in for absent columns.
    source : str
        File path or ``'<DataFrame>'``.
    covariate_names : tuple of str
        Covariate columns, in file order, spelled as in the file.
    covariate_convention : {"nocb", "locf"}
        How time-varying covariates hold between records (`read_nonmem`'s ``covariates``):
        ``"nocb"`` a record's value back to the previous record (NONMEM, mrgsolve),
        ``"locf"`` from the record on.
    """

    frame: pd.DataFrame
    source: str
    covariate_names: tuple[str, ...] = ()
    covariate_convention: str = "nocb"

    @property
    def ids(self) -> tuple[Any, ...]:
        """Subject IDs in order of first appearance."""
        return tuple(pd.unique(self.frame["ID"]).tolist())

    def __len__(self) -> int:
        return int(self.frame["ID"].nunique())

    def __repr__(self) -> str:
        f = self.frame
        n_obs = int(((f["EVID"] == 0) & (f["MDV"] == 0)).sum())
        n_dose = int(f["EVID"].isin((1, 4)).sum())
        covs = ", ".join(self.covariate_names) or "none"
        return (
            f"Dataset({self.source!r}: {len(self)} subjects, {len(f)} records, {n_obs} "
            f"observations, {n_dose} dose records; covariates: {covs} "
            f"({self.covariate_convention}))"
        )

    def model_columns(self, spec: ModelSpec, also: Iterable[str] = ()) -> dict[str, str]:
        """The covariate columns that a model uses: column -> the model's name.

        A column names a covariate or parameter of `spec` (or one of `also`, e.g. the
        covariates of a fit's covariate effects) when the names are equal, or else equal
        ignoring case; the other columns are ignored (see `ignored_columns`).

        Raises
        ------
        DataError
            Where a column matches two names that differ only in case and neither exactly.
        """
        names = [*spec.covariates, *spec.parameters, *also]
        out: dict[str, str] = {}
        for c in self.covariate_names:
            if c in names:
                out[c] = c
                continue
            same = sorted({k for k in names if k.lower() == c.lower()})
            if len(same) > 1:
                raise DataError(
                    f"{self.source}: column {c} matches {' and '.join(same)} of model "
                    f"'{spec.name}' (names match in any case); rename the column to one of them"
                )
            if same:
                out[c] = same[0]
        return out

    def ignored_columns(self, spec: ModelSpec, also: Iterable[str] = ()) -> tuple[str, ...]:
        """Covariate columns that name nothing of `spec` (nor of `also`): read, not used."""
        used = self.model_columns(spec, also)
        return tuple(c for c in self.covariate_names if c not in used)

    def subjects(
        self, spec: ModelSpec | None = None, also: Iterable[str] = ()
    ) -> list[SubjectData]:
        """Per-subject events and records, in order of first appearance.

        Parameters
        ----------
        spec : ModelSpec, optional
            With a model, CMT numbers are checked against 1..n_states and names against the
            state names (observations may also name a model observation), CMT becomes the
            state name, RATE -1/-2 need a rate/duration in the model's ``[dosing]`` block, and
            columns naming a covariate or parameter of the model (or one of `also`) in any
            case take the model's spelling (`model_columns`).
        also : iterable of str
            Further names to match columns to (e.g. the covariates of a fit's effects).

        Raises
        ------
        DataError
            For a record into an unknown compartment, or an invalid dose.
        """
        f = self.frame
        cols = {c: f[c].to_numpy() for c in f.columns}
        names = {c: c for c in self.covariate_names}
        if spec is not None:
            names.update(self.model_columns(spec, also))
        ids = cols["ID"]
        bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
        return [
            self._subject(cols, slice(a, b), spec, names) for a, b in itertools.pairwise(bounds)
        ]

    def _resolve(self, c: str | int, row: int, evid: int, spec: ModelSpec) -> str:
        states = list(spec.states)
        if isinstance(c, str):
            if c in states or (evid == 0 and c in spec.observations):
                return c
        elif 1 <= c <= len(states):
            return states[c - 1]
        extra = f"; or an observation: {', '.join(spec.observations)}" if evid == 0 else ""
        raise DataError(
            f"{self.source} row {row}: CMT = {_fmt(c)} is not a compartment of model "
            f"'{spec.name}'; expected a number 1..{len(states)} or a state: "
            f"{', '.join(states)}{extra}"
        )

    def _subject(
        self, cols: dict[str, np.ndarray], sl: slice, spec: ModelSpec | None, names: dict[str, str]
    ) -> SubjectData:
        """The records of one subject (rows `sl` of the frame's columns `cols`)."""
        rows, evid = cols["ROW"][sl], cols["EVID"][sl]
        cmt, route = self._targets(cols, sl, spec)
        time = cols["TIME"][sl]
        events, origin = self._events(cols, sl, spec, cmt, route)
        regimen = Regimen(events)
        events_before, ev_origin = _events_before(events, origin, time)
        dv, lloq = cols["DV"][sl].astype(float), cols["LLOQ"][sl].astype(float)
        cens = (evid == 0) & ((cols["CENS"][sl] == 1) | (dv < lloq))
        return SubjectData(
            id=cols["ID"][sl][0].item(),
            regimen=regimen,
            times=time.astype(float),
            rows=rows,
            evid=evid,
            mdv=cols["MDV"][sl],
            dv=dv,
            cmt=cmt,
            lloq=lloq,
            cens=cens,
            covariates={names[c]: cols[c][sl].astype(float) for c in self.covariate_names},
            events_before=events_before,
            event_records=ev_origin,
            covariate_convention=self.covariate_convention,
        )

    def _targets(
        self, cols: dict[str, np.ndarray], sl: slice, spec: ModelSpec | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """CMT and ROUTE of one subject's records (None where missing); with a model, CMT
        as a state name (a route name in CMT on a dose moves to ROUTE), routes checked."""
        rows, evid, cmt = cols["ROW"][sl], cols["EVID"][sl], cols["CMT"][sl].copy()
        route = cols["ROUTE"][sl].copy() if "ROUTE" in cols else np.full(len(rows), None)
        for arr in (cmt, route):  # a text column keeps missing values as NaN
            arr[[_is_missing(v) for v in arr]] = None
        if spec is not None:
            for i, c in enumerate(cmt):
                if isinstance(c, str) and c in spec.routes and evid[i] in (1, 4):
                    route[i], cmt[i] = c, None  # CMT holding a route name
                elif c is not None:
                    cmt[i] = self._resolve(c, rows[i], evid[i], spec)
            for i, r in enumerate(route):
                if r is not None and r not in spec.routes:
                    raise DataError(
                        f"{self.source} row {rows[i]}: ROUTE = {r} is not a route of model "
                        f"'{spec.name}'; expected one of: "
                        + (", ".join(spec.routes) or "none (the model has no [routes] block)")
                    )
        return cmt, route

    def _events(
        self,
        cols: dict[str, np.ndarray],
        sl: slice,
        spec: ModelSpec | None,
        cmt: np.ndarray,
        route: np.ndarray,
    ) -> tuple[list[Dose | Reset], list[int]]:
        """The doses (ADDL copies after each) and resets of one subject's records, in file
        order, and the record (index within the subject) each comes from."""
        rows, evid, time = cols["ROW"][sl], cols["EVID"][sl], cols["TIME"][sl]
        amt, rate = cols["AMT"][sl], cols["RATE"][sl]
        ii, addl, ss = cols["II"][sl], cols["ADDL"][sl], cols["SS"][sl]
        events: list[Dose | Reset] = []
        origin: list[int] = []  # the record each event comes from
        for i in np.flatnonzero(np.isin(evid, (1, 3, 4))):
            t = float(time[i])
            if evid[i] == 3:
                events.append(Reset(t))
                origin.append(int(i))
                continue
            kw: dict[str, Any] = {"ss": int(ss[i]), "ii": float(ii[i]), "reset": bool(evid[i] == 4)}
            if rate[i] > 0:
                kw["rate"] = float(rate[i])
            elif rate[i] in (-1, -2):
                key = "rate" if rate[i] == -1 else "duration"
                kw[key] = "model"
                targets = [cmt[i]] if route[i] is None or spec is None else spec.routes[route[i]]
                self._check_model_rate(spec, targets, key, rows[i], rate[i])
            try:
                if route[i] is not None:
                    d = Dose(t, float(amt[i]), route=route[i], **kw)
                else:
                    d = Dose(t, float(amt[i]), cmt[i], **kw)
            except DosingError as exc:
                raise DataError(f"{self.source} row {rows[i]}: invalid dose: {exc}") from None
            events.append(d)
            events.extend(
                dataclasses.replace(d, time=t + k * d.ii, ss=0, reset=False)
                for k in range(1, int(addl[i]) + 1)
            )
            origin.extend([int(i)] * (1 + int(addl[i])))
        return events, origin

    def _check_model_rate(
        self, spec: ModelSpec | None, targets: list[Any], key: str, row: int, rate: float
    ) -> None:
        """RATE -1 (rate) or -2 (duration) needs that `key` in the model's ``[dosing]``
        block for every state dosed (nothing to check without a model)."""
        for state in targets:
            rule = spec.dosing.get(state) if spec is not None else None
            if spec is not None and getattr(rule, key, None) is None:
                raise DataError(
                    f"{self.source} row {row}: RATE = {_fmt(rate)} takes the "
                    f"{key} from the model, but model '{spec.name}' has no [dosing] "
                    f"{state}.{key}"
                )


def _events_before(
    events: list[Dose | Reset], origin: list[int], time: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """How many events (in the regimen's order) act before each record (`SubjectData.
    events_before`), and the record each event comes from in that order."""
    # the regimen's order (stable by time); at equal times, events of earlier rows first
    perm = np.argsort([e.time for e in events], kind="stable")
    ev_time = np.asarray([events[k].time for k in perm], dtype=float)
    ev_origin = np.asarray([origin[k] for k in perm], dtype=np.int64)
    # (time, origin) is sorted: count the events at or before (TIME, row) of each record
    lo = np.searchsorted(ev_time, time, side="left")
    hi = np.searchsorted(ev_time, time, side="right")
    events_before = np.array(
        [
            a + np.searchsorted(ev_origin[a:b], i, side="right")
            for i, (a, b) in enumerate(zip(lo, hi, strict=True))
        ],
        dtype=np.int64,
    )
    return events_before, ev_origin


def record_inputs(subjects: list[SubjectData], names: Iterable[str], max_doses: int) -> TimeVarying:
    """The per-record inputs of several subjects for the engine, with a leading subject
    axis and padded to the longest subject by repeating its last record.

    Parameters
    ----------
    subjects : list of SubjectData
        From one `Dataset` (its covariate convention).
    names : iterable of str
        Covariates (keys of `SubjectData.covariates`) to give per record.
    max_doses : int
        Dose-array slots of the subjects' `DoseArrays`.

    Returns
    -------
    TimeVarying
        times (n, R) [model time unit]; values name -> (n, R); dose_record (n, max_doses),
        the record of each dose-array entry (`SubjectData.event_records`); output_record
        (n, R), record k for output k (outputs at the record times); ``nocb`` from the
        data set's convention. The single mechanism behind ``cp.simulate(data=)``, fits and
        VPC replicates.
    """
    import jax.numpy as jnp

    from ..engine.solve import TimeVarying  # here: model.py imports this module

    R = max(s.times.size for s in subjects)

    def pad(a: np.ndarray, size: int, fill: Any = None) -> np.ndarray:
        a = np.asarray(a)
        tail = np.repeat(a[-1:], size - a.size) if fill is None else np.full(size - a.size, fill)
        return np.concatenate([a, tail.astype(a.dtype)])

    times = np.stack([pad(s.times.astype(float), R) for s in subjects])
    values = {
        c: jnp.asarray(np.stack([pad(s.covariates[c].astype(float), R) for s in subjects]))
        for c in names
    }
    dose_record = np.stack([pad(s.event_records.astype(np.int32), max_doses, 0) for s in subjects])
    output_record = np.broadcast_to(np.arange(R, dtype=np.int32), (len(subjects), R))
    return TimeVarying(
        times=jnp.asarray(times),
        values=values,
        dose_record=jnp.asarray(dose_record),
        output_record=jnp.asarray(output_record),
        nocb=subjects[0].covariate_convention == "nocb",
    )
