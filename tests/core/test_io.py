"""read_text: the one way cellpkpd reads a text file; a missing, unreadable or non-UTF-8
file is one error of the caller's type that names the file and what it is."""

from __future__ import annotations

import pytest

from cellpkpd._core.errors import DataError
from cellpkpd._core.io import read_text


def test_reads_utf8_and_drops_a_byte_order_mark(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbfID,TIME\n1,0\n")
    assert read_text(path, str(path)) == "ID,TIME\n1,0\n"


def test_errors_name_the_file_in_the_callers_type(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError, match=r"^x\.csv: data file not found$"):
        read_text(missing, "x.csv", DataError, "data file")
    with pytest.raises(DataError, match=r"^dir: cannot read data file \(Is a directory\)$"):
        read_text(tmp_path, "dir", DataError, "data file")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("ID,TIME\nZ\xfcrich,0\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"^latin\.csv: not UTF-8 text \(byte 0xfc on line 2"):
        read_text(latin, "latin.csv")
