"""``python -m cellpkpd``: the command-line interface."""

from .cli.main import console

console()
