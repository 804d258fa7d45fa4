"""Example data sets that ship with cellpkpd, so users and notebooks can fit real data
without a checkout of the repository.

Each data set is a NONMEM-style CSV file inside this package (lines starting with ``#`` give
its source and units), read with `importlib.resources`, so it works from an installed wheel.

Examples
--------
>>> import cellpkpd as cp
>>> import cellpkpd.datasets
>>> data = cellpkpd.datasets.theophylline()
>>> res = cp.simulate("one_cmt_oral", data=data)
"""

from __future__ import annotations

import io
from importlib import resources

import pandas as pd

from ..data.nonmem import Dataset, read_nonmem

__all__ = ["list_datasets", "theophylline", "theophylline_frame"]

_DATASETS: dict[str, tuple[str, str]] = {
    "theophylline": (
        "theophylline.csv",
        "Theophylline, 12 subjects, single oral dose, plasma concentrations over 25 h "
        "(R datasets::Theoph); fits models/one_cmt_oral.toml",
    ),
}


def list_datasets() -> dict[str, str]:
    """The data sets that ship with cellpkpd.

    Returns
    -------
    dict of str to str
        Name (a function of this module that returns the data set) -> one-line description.
    """
    return {name: description for name, (_, description) in _DATASETS.items()}


def _text(filename: str) -> str:
    return resources.files(__name__).joinpath(filename).read_text(encoding="utf-8")


def theophylline_frame() -> pd.DataFrame:
    """The theophylline data as the raw table of the packaged CSV file.

    Returns
    -------
    pandas.DataFrame
        The 144 rows and the columns of the file, ID, TIME, AMT, EVID, CMT, DV, MDV, WT,
        DOSE_MGKG, as they are (no defaults filled in); the ``.`` of DV on dose rows is NaN.
        See `theophylline` for the source, units and layout.
    """
    return pd.read_csv(io.StringIO(_text("theophylline.csv")), comment="#", na_values=["."])


def theophylline() -> Dataset:
    """The theophylline data set: 12 subjects, one oral dose each, plasma concentrations
    over 25 h.

    Returns
    -------
    Dataset
        The validated data set (as `cellpkpd.read_nonmem` returns it): 12 subjects, 144
        records, 12 dose records and 132 observations; covariates WT and DOSE_MGKG. Its
        ``source`` is ``'cellpkpd.datasets.theophylline'``.

    Notes
    -----
    Source: the ``Theoph`` data set of R's base ``datasets`` package (R 4.2.2), originally
    from Boeckmann AJ, Sheiner LB, Beal SL (1994), *NONMEM Users Guide: Part V*, NONMEM
    Project Group, University of California, San Francisco; also analysed in Pinheiro JC,
    Bates DM (2000), *Mixed-Effects Models in S and S-PLUS*, Springer, section 6.4.

    Layout (NONMEM style): per subject, one dose row at TIME 0 (EVID 1, MDV 1, CMT 1), then
    the subject's 11 observations (EVID 0, MDV 0, CMT 2), including the sample at time 0.
    The compartments are those of ``models/one_cmt_oral.toml`` (model ``"one_cmt_oral"``):
    CMT 1 = depot (the gut; doses) and CMT 2 = central (plasma; observations).

    Columns and units:

    - ID: subject, 1-12.
    - TIME [h]: time since the dose.
    - AMT [mg]: dose, DOSE_MGKG * WT rounded to 0.001 mg (0 on observations).
    - EVID, CMT, MDV: NONMEM event items, as above.
    - DV [mg/L]: theophylline plasma concentration (missing on dose rows).
    - WT [kg]: body weight.
    - DOSE_MGKG [mg/kg]: the dose as given in the original data.

    The packaged file is a copy of the repository's ``shared/data/theophylline.csv``, with
    its ``#`` header lines; `theophylline_frame` returns the raw table.

    Examples
    --------
    >>> import cellpkpd as cp
    >>> import cellpkpd.datasets
    >>> data = cellpkpd.datasets.theophylline()
    >>> len(data)
    12
    >>> res = cp.simulate("one_cmt_oral", data=data)
    """
    with resources.as_file(resources.files(__name__).joinpath("theophylline.csv")) as path:
        return read_nonmem(path, source="cellpkpd.datasets.theophylline")
