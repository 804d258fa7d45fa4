"""Species physiology tables: body weight, cardiac output, organ volumes and blood flows.

Every value carries its unit and a cited source; a value computed from a tabulated one
(a fraction of body weight times the reference body weight, a fraction of cardiac output
times the cardiac output) says so in its source. Model files refer to the quantities by
name in a ``[physiology]`` block::

    [physiology]
    QC     = "cardiac_output"
    V_lung = "volume_lung"

and ``cp.load_model(path, species="mouse")`` turns each into a parameter with the table's
value, unit and source (see `lookup`).

Naming scheme (a contract: model files are written against it)
----------------------------------------------------------------
``body_weight`` [kg], ``cardiac_output`` [L/h], ``hematocrit`` [1];
``volume_<organ>`` [L] and ``flow_<organ>`` [L/h] for every organ in `ORGANS`;
``volume_blood``, ``volume_arterial_blood``, ``volume_venous_blood`` [L].

Conventions
-----------
* Volumes are organ weights at a density of 1 kg/L.
* ``flow_lung`` is the cardiac output: the whole output passes the lungs.
* Flows are those of a model whose organs are fed by arterial blood in parallel. The
  spleen's outflow joins the portal vein, so ``flow_liver`` is the total liver blood flow
  (hepatic artery + portal vein) *minus* the splenic part, which is ``flow_spleen``: a
  model that drains the spleen into the liver uses ``flow_liver + flow_spleen`` as the
  liver's outflow, one that returns the spleen to venous blood uses them as they are;
  either way no blood is counted twice.
* ``rest`` is the remainder of the body (skin, adipose tissue, bone, GI tract, ... and
  any organ of the list without a sourced value for that species):
  ``volume_rest = body_weight - sum(volume_<organ>) - volume_blood`` (1 kg/L) and
  ``flow_rest = cardiac_output - sum(flow_<organ>)`` (lung excluded), so organ volumes
  plus blood sum to body weight and organ flows sum to cardiac output by construction.
* Arterial and venous blood are 1/3 and 2/3 of the total blood volume, the split of
  Bernareggi & Rowland (1991) (rat: 5.6 mL arterial, 11.3 mL venous blood per 250 g) and
  of the 70 kg human of Peters (2012) (1.70 L arterial, 3.40 L venous).

Values without a source are left out, never guessed: `GAPS` lists them with the reason,
and `lookup` of one raises `SpecError` saying so.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

from .._core.errors import SpecError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "GAPS",
    "ORGANS",
    "QUANTITIES",
    "TABLES",
    "Quantity",
    "allometric",
    "list_species",
    "lookup",
    "quantities",
    "scale_to",
    "table",
]

ORGANS: tuple[str, ...] = (
    "lung",
    "heart",
    "liver",
    "spleen",
    "kidney",
    "brain",
    "bone_marrow",
    "muscle",
    "rest",
)

QUANTITIES: tuple[str, ...] = (
    "body_weight",
    "cardiac_output",
    *(f"volume_{organ}" for organ in ORGANS),
    *(f"flow_{organ}" for organ in ORGANS),
    "volume_blood",
    "volume_arterial_blood",
    "volume_venous_blood",
    "hematocrit",
)

_UNITS = {"body_weight": "kg", "cardiac_output": "L/h", "hematocrit": "1"}

# arterial : venous split of the total blood volume
ARTERIAL_FRACTION = 1.0 / 3.0
_SPLIT_SOURCE = (
    "Bernareggi A & Rowland M. J Pharmacokinet Biopharm 1991;19:21-50 (rat: 5.6 mL "
    "arterial, 11.3 mL venous blood per 250 g); same 1:2 split in the 70 kg human of "
    "Peters SA, PBPK Modeling and Simulations, Wiley 2012 (1698 mL : 3396 mL)"
)

# ---------------------------------------------------------------------- references
BROWN = "Brown RP et al. Toxicol Ind Health 1997;13:407-484"
DAVIES = "Davies B & Morris T. Pharm Res 1993;10:1093-1095"
ICRP89 = "ICRP Publication 89 (2002), Ann ICRP 32(3-4)"
BEIR6 = "NRC BEIR VI (1999) Table A-1"


class Quantity(NamedTuple):
    """A tabulated physiological quantity: ``value`` [unit], its ``unit`` and ``source``."""

    value: float
    unit: str
    source: str


class _Species(NamedTuple):
    """Raw data of one species. Volumes are fractions of body weight, flows fractions of
    cardiac output; each with the text of its source (which states the tabulated number)."""

    body_weight: tuple[float, str]
    cardiac_output: tuple[float, str]  # [L/h]
    volume_fraction: dict[str, tuple[float, str]]  # organ -> (fraction of BW, source)
    flow_fraction: dict[str, tuple[float, str]]  # organ -> (fraction of CO, source)
    blood_fraction: tuple[float, str]
    hematocrit: tuple[float, str]
    gaps: dict[str, str]  # quantity -> why no value


_MOUSE_BW = 0.025
_RAT_BW = 0.25
_HUMAN_BW = 70.0

_RAW: dict[str, _Species] = {
    "mouse": _Species(
        body_weight=(_MOUSE_BW, "reference body weight of this table: adult mouse, 25 g"),
        cardiac_output=(
            16.5 * _MOUSE_BW**0.75,
            f"{BROWN} Table 22: QCC = 16.5 L/h/kg^0.75 (0.275 L/min/kg^0.75) x (0.025 kg)^0.75",
        ),
        volume_fraction={
            "lung": (0.0073, f"{BROWN} Table 21: lungs 0.73% BW"),
            "heart": (0.0050, f"{BROWN} Table 21: heart 0.50% BW"),
            "liver": (0.055, f"{BROWN} Table 21: liver 5.5% BW"),
            "spleen": (0.0035, f"{BROWN} Table 4: spleen 0.35% BW"),
            "kidney": (0.017, f"{BROWN} Table 21: kidneys 1.7% BW"),
            "brain": (0.0165, f"{BROWN} Table 21: brain 1.65% BW"),
            "muscle": (0.384, f"{BROWN} Table 21: muscle 38.4% BW"),
        },
        flow_fraction={
            "heart": (0.066, f"{BROWN} Table 23: heart 6.6% CO"),
            "liver": (
                0.161 - 0.09 / 8.0,
                f"{BROWN} Table 23: liver 16.1% CO (hepatic artery 2.0% + portal 14.1%) "
                f"minus the spleen's 1.125% ({DAVIES} Table III) = 14.975% CO",
            ),
            "spleen": (
                0.09 / 8.0,
                f"{DAVIES} Table III: spleen 0.09 of 8.0 mL/min cardiac output = 1.125% CO",
            ),
            "kidney": (0.091, f"{BROWN} Table 23: kidneys 9.1% CO"),
            "brain": (0.033, f"{BROWN} Table 23: brain 3.3% CO"),
            "muscle": (0.159, f"{BROWN} Table 23: muscle 15.9% CO"),
        },
        blood_fraction=(0.049, f"{BROWN} Table 21: blood 4.9% BW"),
        hematocrit=(
            0.48,
            "Hejtmancik MR et al. Toxicol Sci 2002 (B6C3F1 mice), as used for mouse "
            "hematocrit in the PBPK models of Chou WC & Lin Z",
        ),
        gaps={
            "volume_bone_marrow": "no sourced marrow mass for the mouse was found "
            "(Brown 1997 and Davies & Morris 1993 tabulate bone, not marrow)",
            "flow_bone_marrow": "no sourced marrow blood flow for the mouse was found",
        },
    ),
    "rat": _Species(
        body_weight=(_RAT_BW, "reference body weight of this table: adult rat, 250 g"),
        cardiac_output=(
            14.0 * _RAT_BW**0.75,
            f"{BROWN} Table 22: QCC = 14.0 L/h/kg^0.75 x (0.25 kg)^0.75",
        ),
        volume_fraction={
            "lung": (0.0050, f"{BROWN} Table 21: lungs 0.50% BW"),
            "heart": (0.0033, f"{BROWN} Table 21: heart 0.33% BW"),
            "liver": (0.0366, f"{BROWN} Table 21: liver 3.66% BW"),
            "spleen": (0.0020, f"{BROWN} Table 21: spleen 0.20% BW"),
            "kidney": (0.0073, f"{BROWN} Table 21: kidneys 0.73% BW"),
            "brain": (0.0057, f"{BROWN} Table 21: brain 0.57% BW"),
            "muscle": (
                0.4043,
                f"{BROWN} Table 21: muscle 40.43% BW, as transcribed with its citation in "
                "the parameter code of a published rat PFOA PBK model (after Cheng & Ng "
                "2017, Table S1); Brown's table itself was not read here",
            ),
            "bone_marrow": (
                0.03,
                "Travlos GS. Normal structure, function, and histology of the bone marrow. "
                "Toxicol Pathol 2006 (after Schermer 1967): rat marrow 3% BW, as transcribed "
                "with that citation in a reimplementation of the rat nanoparticle PBPK model of "
                "Li D et al. Nanotoxicology 2014, whose organ weights sum to the body weight "
                "only with 3% (another transcription's 5.59% BW is unsupported); Travlos's "
                "text itself was not read here",
            ),
        },
        flow_fraction={
            "heart": (0.051, f"{BROWN} Table 23: heart 5.1% CO"),
            "muscle": (
                0.278,
                f"{BROWN} Table 23 (p 438): muscle 27.8% CO, as transcribed with its citation "
                "in the same rat PFOA PBK model code; Brown's table itself was not read here",
            ),
            "liver": (
                0.183 - 0.63 / 74.0,
                f"{BROWN} Table 23: liver 18.3% CO (hepatic artery + portal) minus the "
                f"spleen's 0.851% ({DAVIES} Table III) = 17.449% CO",
            ),
            "spleen": (
                0.63 / 74.0,
                f"{DAVIES} Table III: spleen 0.63 of 74 mL/min cardiac output = 0.851% CO",
            ),
            "kidney": (0.141, f"{BROWN} Table 23: kidneys 14.1% CO"),
            "brain": (0.020, f"{BROWN} Table 23: brain 2.0% CO"),
            "bone_marrow": (
                0.0267,
                "Brookes M 1967 (rat bone marrow 2.67% CO), as used in the rat "
                "nanoparticle PBPK model of Li D et al. Nanotoxicology 2014",
            ),
        },
        blood_fraction=(0.074, f"{BROWN} Table 21: blood 7.4% BW"),
        hematocrit=(0.46, f"{DAVIES} Table I: rat hematocrit 0.46"),
        gaps={},
    ),
    "human": _Species(
        body_weight=(_HUMAN_BW, "reference body weight of this table: adult human, 70 kg"),
        cardiac_output=(
            6.5 * 60.0,
            f"{ICRP89} reference adult male: 6.5 L/min",
        ),
        volume_fraction={
            "lung": (0.0076, f"{BROWN} Table 21: lungs 0.76% BW"),
            "heart": (0.0047, f"{BROWN} Table 21: heart 0.47% BW"),
            "liver": (0.0257, f"{BROWN} Table 21: liver 2.57% BW"),
            "spleen": (0.0026, f"{BROWN} Table 21: spleen 0.26% BW"),
            "kidney": (0.0044, f"{BROWN} Table 21: kidneys 0.44% BW"),
            "brain": (0.0200, f"{BROWN} Table 21: brain 2.00% BW"),
            "bone_marrow": (
                1.170 / 73.0,
                f"{ICRP89}: active (red) marrow 1170 g in the 73 kg reference male = 1.603% BW",
            ),
            "muscle": (0.400, f"{BROWN} Table 21: muscle 40.0% BW"),
        },
        flow_fraction={
            "heart": (0.04, f"{ICRP89} reference male, heart 4% CO ({BEIR6})"),
            "liver": (
                0.225,
                f"{ICRP89} reference male ({BEIR6}): hepatic artery 6.5% + stomach 1% + "
                "small intestine 10% + large intestine 4% + pancreas 1% = 22.5% CO "
                "(total liver 25.5% minus the spleen's 3%)",
            ),
            "spleen": (0.03, f"{ICRP89} reference male, spleen 3% CO ({BEIR6})"),
            "kidney": (0.19, f"{ICRP89} reference male, kidneys 19% CO ({BEIR6})"),
            "brain": (0.12, f"{ICRP89} reference male, brain 12% CO ({BEIR6})"),
            "bone_marrow": (
                0.03,
                f"{ICRP89} reference male, red marrow 3% CO ({BEIR6}, after Williams LR "
                "& Leggett RW. Clin Phys Physiol Meas 1989;10:187-217)",
            ),
            "muscle": (0.17, f"{ICRP89} reference male, skeletal muscle 17% CO ({BEIR6})"),
        },
        blood_fraction=(0.079, f"{BROWN} Table 21: blood 7.9% BW"),
        hematocrit=(
            0.44,
            f"{ICRP89}, as used for human hematocrit in the PBPK models of Chou WC & Lin Z",
        ),
        gaps={},
    ),
}


def _pct(x: float) -> str:
    return f"{100.0 * x:.4g}%"


def _build(name: str, raw: _Species) -> dict[str, Quantity]:
    """Compute the table of one species from its raw fractions (see module notes)."""
    bw, bw_source = raw.body_weight
    co, co_source = raw.cardiac_output
    out: dict[str, Quantity] = {
        "body_weight": Quantity(bw, "kg", bw_source),
        "cardiac_output": Quantity(co, "L/h", co_source),
    }
    blood_frac, blood_source = raw.blood_fraction
    blood = blood_frac * bw
    organs_v = [o for o in ORGANS if o in raw.volume_fraction]
    organs_q = [o for o in ORGANS if o in raw.flow_fraction]
    for organ in organs_v:
        frac, source = raw.volume_fraction[organ]
        out[f"volume_{organ}"] = Quantity(
            frac * bw, "L", f"{source}; x {bw:g} kg body weight at 1 kg/L"
        )
    for organ in organs_q:
        frac, source = raw.flow_fraction[organ]
        out[f"flow_{organ}"] = Quantity(
            frac * co, "L/h", f"{source}; x cardiac output {co:.4g} L/h"
        )
    out["flow_lung"] = Quantity(
        co, "L/h", "the whole cardiac output passes the lungs: flow_lung = cardiac_output"
    )
    missing_v = [o for o in ORGANS[:-1] if o not in raw.volume_fraction]
    missing_q = [o for o in ORGANS[:-1] if o != "lung" and o not in raw.flow_fraction]
    rest_v = bw - sum(out[f"volume_{o}"].value for o in organs_v) - blood
    rest_q = co - sum(out[f"flow_{o}"].value for o in organs_q)
    also_v = f"; includes {', '.join(missing_v)} (no sourced value)" if missing_v else ""
    also_q = f"; includes {', '.join(missing_q)} (no sourced value)" if missing_q else ""
    out["volume_rest"] = Quantity(
        rest_v,
        "L",
        "remainder of the body (skin, adipose, bone, GI tract, ...): body_weight - "
        f"sum of the organ volumes - volume_blood at 1 kg/L = {_pct(rest_v / bw)} BW{also_v}",
    )
    out["flow_rest"] = Quantity(
        rest_q,
        "L/h",
        "remainder: cardiac_output - sum of the organ flows (lung excluded) = "
        f"{_pct(rest_q / co)} CO{also_q}",
    )
    out["volume_blood"] = Quantity(blood, "L", f"{blood_source}; x {bw:g} kg at 1 kg/L")
    out["volume_arterial_blood"] = Quantity(
        ARTERIAL_FRACTION * blood, "L", f"1/3 of volume_blood; split after {_SPLIT_SOURCE}"
    )
    out["volume_venous_blood"] = Quantity(
        (1.0 - ARTERIAL_FRACTION) * blood, "L", f"2/3 of volume_blood; split after {_SPLIT_SOURCE}"
    )
    hct, hct_source = raw.hematocrit
    out["hematocrit"] = Quantity(hct, "1", hct_source)
    for q, v in out.items():
        if not (math.isfinite(v.value) and v.value > 0):  # a table error, not a user error
            raise RuntimeError(f"physiology table {name}.{q} = {v.value!r} is not > 0")
    return {q: out[q] for q in QUANTITIES if q in out}


# species -> quantity -> (value, unit, source)
TABLES: dict[str, dict[str, Quantity]] = {name: _build(name, raw) for name, raw in _RAW.items()}
# species -> quantity -> why it has no sourced value (left out, never guessed)
GAPS: dict[str, dict[str, str]] = {name: dict(raw.gaps) for name, raw in _RAW.items()}


# ---------------------------------------------------------------------- public API
def list_species() -> list[str]:
    """Names of the species with a physiology table.

    Returns
    -------
    list of str
        ``["mouse", "rat", "human"]``.
    """
    return list(TABLES)


def _species(species: object, where: str) -> str:
    if not isinstance(species, str) or species.strip().lower() not in TABLES:
        raise SpecError(f"{where}: unknown species {species!r}; known: {', '.join(TABLES)}")
    return species.strip().lower()


def quantities(species: str) -> list[str]:
    """Quantities tabulated for a species, in the order of `QUANTITIES`.

    Parameters
    ----------
    species : str
        ``"mouse"``, ``"rat"`` or ``"human"`` (case-insensitive).

    Returns
    -------
    list of str
        Quantity names with a sourced value; those in ``GAPS[species]`` are absent.

    Raises
    ------
    SpecError
        Unknown species (the message lists the known ones).
    """
    return list(TABLES[_species(species, "physiology")])


def lookup(species: str, quantity: str, where: str = "physiology") -> Quantity:
    """Value, unit and source of a physiological quantity of a species.

    Parameters
    ----------
    species : str
        ``"mouse"`` (25 g), ``"rat"`` (250 g) or ``"human"`` (70 kg); case-insensitive.
    quantity : str
        A name of `QUANTITIES`, e.g. ``"cardiac_output"`` [L/h], ``"volume_lung"`` [L],
        ``"flow_liver"`` [L/h], ``"hematocrit"`` [1].
    where : str
        Prefix of the error message (e.g. the model file and key asking).

    Returns
    -------
    Quantity
        Named tuple ``(value, unit, source)``: value in ``unit`` (kg, L, L/h or 1), and
        the cited source, which says how a derived value was computed.

    Raises
    ------
    SpecError
        Unknown species or quantity (the one-line message lists the known names), or a
        quantity of the scheme without a sourced value for this species (see `GAPS`).
    """
    name = _species(species, where)
    table = TABLES[name]
    if quantity in table:
        return table[quantity]
    if quantity in GAPS[name]:
        raise SpecError(
            f"{where}: no sourced value of '{quantity}' for {name} ({GAPS[name][quantity]}); "
            f"available: {', '.join(table)}"
        )
    raise SpecError(f"{where}: unknown quantity {quantity!r} for {name}; known: {', '.join(table)}")


def table(species: str | None = None) -> pd.DataFrame:
    """The physiology tables as a DataFrame.

    Parameters
    ----------
    species : str, optional
        One species; default all of them.

    Returns
    -------
    pandas.DataFrame
        One row per (species, quantity), columns ``species``, ``quantity``, ``value``,
        ``unit``, ``source``.
    """
    import pandas as pd

    names = list(TABLES) if species is None else [_species(species, "physiology.table")]
    rows = [
        {"species": s, "quantity": q, "value": v.value, "unit": v.unit, "source": v.source}
        for s in names
        for q, v in TABLES[s].items()
    ]
    return pd.DataFrame(rows, columns=["species", "quantity", "value", "unit", "source"])


def _positive(x: object, name: str, unit: str, where: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise SpecError(f"{where}: {name} = {x!r} [{unit}] must be a number")
    if not (math.isfinite(x) and x > 0):  # also rejects NaN
        raise SpecError(f"{where}: {name} = {x!r} [{unit}] must be > 0")
    return float(x)


def allometric(
    value: float, body_weight: float, reference_weight: float = 70.0, exponent: float = 0.75
) -> float:
    """Allometric scaling: ``value * (body_weight / reference_weight) ** exponent``.

    Parameters
    ----------
    value : float
        The quantity at ``reference_weight`` [any unit; the result has the same unit].
    body_weight : float
        Body weight to scale to [kg], > 0.
    reference_weight : float
        Body weight at which ``value`` holds [kg], > 0; default 70 (adult human).
    exponent : float
        0.75 (default) for flows and clearances [volume/time]; 1 for volumes [L];
        -0.25 for rates and rate constants [1/time] (e.g. a cell death rate in 1/h),
        which follow from a flow divided by a volume; 0.25 for times (half-lives).

    Returns
    -------
    float
        The scaled value.

    Raises
    ------
    SpecError
        A weight that is not a positive number, or a non-finite value or exponent.

    Examples
    --------
    >>> round(allometric(1.0, 0.025, 70.0, -0.25), 3)  # a 1/h rate, human -> mouse
    7.274
    """
    where = "allometric"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(f"{where}: value = {value!r} must be a finite number")
    bw = _positive(body_weight, "body_weight", "kg", where)
    ref = _positive(reference_weight, "reference_weight", "kg", where)
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float)):
        raise SpecError(f"{where}: exponent = {exponent!r} must be a number")
    if not math.isfinite(exponent):
        raise SpecError(f"{where}: exponent = {exponent!r} must be finite")
    return float(value) * (bw / ref) ** float(exponent)


def scale_to(
    species: str, value: float, from_species: str = "human", exponent: float = -0.25
) -> float:
    """Scale a value known in ``from_species`` to ``species`` by their table body weights.

    Parameters
    ----------
    species : str
        Target species (``"mouse"``, ``"rat"``, ``"human"``).
    value : float
        The value in ``from_species`` [any unit; kept].
    from_species : str
        Species the value was measured in; default ``"human"``.
    exponent : float
        Allometric exponent; default -0.25, for rates [1/time] that have no table value
        (0.75 for flows and clearances, 1 for volumes; see `allometric`).

    Returns
    -------
    float
        ``value * (BW_species / BW_from_species) ** exponent``.

    Raises
    ------
    SpecError
        Unknown species, or a bad value or exponent.

    Examples
    --------
    >>> round(scale_to("mouse", 0.1), 4)  # a 0.1 1/h human rate in the 25 g mouse
    0.7274
    """
    target = lookup(species, "body_weight", where="scale_to").value
    source = lookup(from_species, "body_weight", where="scale_to").value
    return allometric(value, target, source, exponent)
