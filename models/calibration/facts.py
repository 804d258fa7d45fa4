"""Published facts shared by the calibrations of msc_pbk and msc_pkpd_host: one cell-fate core.

Both MSC models answer "how many of the infused cells are alive, and how many a thawed product
loses" from the same targets below, so that the biodistribution model (msc_pbk: where the cells
are) and the PD model (msc_pkpd_host: what they do) give the same persistence. Their agreement is
tested in tests/models/test_literature_msc.py (test_one_cell_fate_core_*), in mouse, rat and human.

Imported by models/calibration/msc_pbk.py and models/calibration/msc_pkpd_host.py (run either
from the repository root; Python puts this folder on the import path).
"""

from __future__ import annotations

#: Eggenhofer et al. 2012 (Front Immunol 3:297; abstract read): viable MSCs were recovered from
#: mouse lungs up to 24 h after 5e5 MSCs IV, none at 72 h. Target: 0.5% of the viable infused
#: cells still viable at 72 h in a typical (immunocompetent) 25-g mouse (half of a 1% bound on
#: what re-culture detects; the bound itself is assumed).
VIABLE_FRACTION_72H = 0.005

#: Lee et al. 2009 (Cell Stem Cell 5:54; abstract and text via PMC): human DNA in mouse lung
#: "disappeared with a half-life of about 24 hr" after 2e6 hMSCs IV. Target: lung human DNA
#: falls with this half-life from 15 min to 24 h (msc_pbk); in msc_pkpd_host (which does not
#: follow DNA after engulfment) the same half-life is taken as the persistence of the cells
#: without cytotoxic killing (msc_dna from 24 h to 48 h).
LUNG_DNA_HALF_LIFE_H = 24.0
