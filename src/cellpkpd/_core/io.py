"""Reading text files: UTF-8 decoding with a one-line reason for files that are not UTF-8 text.

The lowest layer of the package (it imports nothing from cellpkpd): model files, data sets and
the CLI's inputs all read their text through `decode_text`.
"""

from __future__ import annotations


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
