"""Plots of cellpkpd results (matplotlib). Every function returns a
`matplotlib.figure.Figure` that is not registered with pyplot: a notebook shows it when it
is a cell's value (or with ``display(fig)``), and ``fig.savefig("name.png", dpi=150)``
writes it. Axes are labelled with the model's units (``conc [mg/L]``, ``time [h]``).

- `timecourse`: per output panels, one line per subject or median and percentile bands
- `biodistribution`: fraction of the dose per organ over time
- `diagram`: compartment diagram of a ModelSpec
- `gof`: goodness of fit of a `cp.fit` result (observed vs PRED/IPRED, residuals)
- `vpc`: visual predictive check, with a below-LLOQ panel for censored data
- `posterior`: trace and pair plots of typical values and omegas (ArviZ)
- `dose_response`, `target_attainment`: a `cp.dose_ranging` table per arm
- `sobol`: first- and total-order Sobol indices of `cp.gsa.sobol`
- `metric_histograms`: distributions of `cp.sweep` metrics
"""

from __future__ import annotations

from ._batch import dose_response, metric_histograms, sobol, target_attainment
from ._common import _show_in_ipython
from ._diagram import diagram
from ._fit import gof, posterior, vpc
from ._time import biodistribution, timecourse

_show_in_ipython()  # in Jupyter, a Figure that is a cell's value is shown as a PNG

__all__ = [
    "biodistribution",
    "diagram",
    "dose_response",
    "gof",
    "metric_histograms",
    "posterior",
    "sobol",
    "target_attainment",
    "timecourse",
    "vpc",
]
