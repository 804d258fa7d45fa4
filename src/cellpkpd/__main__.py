"""``python -m cellpkpd``: the command-line interface."""

from .cli.main import console

if __name__ == "__main__":
    console()
