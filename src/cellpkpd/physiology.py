"""Species physiology tables (placeholder interface; tables are being filled in)."""

from __future__ import annotations

from .errors import SpecError

__all__ = ["lookup"]

# species -> quantity -> (value, unit, source)
TABLES: dict[str, dict[str, tuple[float, str, str]]] = {}


def lookup(species: str, quantity: str, where: str = "physiology") -> tuple[float, str, str]:
    """Value, unit and source of a physiological quantity of a species."""
    if species not in TABLES:
        raise SpecError(f"{where}: unknown species '{species}'; known: {', '.join(TABLES)}")
    table = TABLES[species]
    if quantity not in table:
        raise SpecError(
            f"{where}: unknown quantity '{quantity}' for {species}; known: {', '.join(table)}"
        )
    return table[quantity]
