"""Reading text files: UTF-8 decoding with a one-line reason for files that are not UTF-8 text.

The lowest layer of the package (it imports nothing from cellpkpd): model files, data sets and
the CLI's inputs all read their text through `read_text` (a missing, unreadable or non-UTF-8
file becomes one error of the caller's type that names the file).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["decode_text", "read_text"]


def decode_text(raw: bytes) -> str:
    """The contents of a text file as UTF-8 (a leading byte-order mark removed).

    Raises
    ------
    ValueError
        With a one-line reason and what to do (to prefix with the file name) when `raw` is
        not UTF-8 text: another encoding (the first bad byte and its line), UTF-16, a
        spreadsheet or another binary file.
    """
    save = "save it as UTF-8 text"
    excel = f"{save} (in Excel: Save As 'CSV UTF-8')"
    if raw.startswith(b"PK\x03\x04"):
        raise ValueError(f"not a text file (an Excel .xlsx workbook or other zip archive); {excel}")
    if raw.startswith(b"\xd0\xcf\x11\xe0"):
        raise ValueError(f"not a text file (an Excel .xls workbook or other Office file); {excel}")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValueError(f"UTF-16 (or UTF-32) text, not UTF-8; {save}")
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise ValueError(
            f"not UTF-8 text (a NUL byte on line {line}, offset {nul}: UTF-16 text or a "
            f"binary file); {save}"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ValueError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}, offset {exc.start}; "
            f"Latin-1 or Windows-1252?); {save}"
        ) from None


def read_text(
    path: str | os.PathLike[str],
    where: str,
    error: Callable[[str], Exception] = ValueError,
    what: str = "file",
) -> str:
    """The text of the file at `path` (UTF-8, see `decode_text`), or one error naming it.

    Parameters
    ----------
    path : str or path-like
        The file.
    where : str
        How messages begin (the file name, or the option that gave it):
        ``"<where>: <what> not found"``, ``"<where>: cannot read <what> (<reason>)"`` or
        ``"<where>: <why it is not UTF-8 text>"``.
    error : callable
        Makes the exception from the message: the caller's error type (`SpecError` for
        model files, `DataError` for data sets, the CLI's `ArgumentError`).
    what : str
        What the file is, for the messages (``"model file"``, ``"data file"``).

    Raises
    ------
    Exception
        ``error(message)``: the file is missing, cannot be read, or is not UTF-8 text.
    """
    try:
        return decode_text(Path(path).read_bytes())
    except FileNotFoundError:
        raise error(f"{where}: {what} not found") from None
    except OSError as exc:
        raise error(f"{where}: cannot read {what} ({exc.strerror or exc})") from None
    except ValueError as exc:  # not UTF-8 text
        raise error(f"{where}: {exc}") from None
