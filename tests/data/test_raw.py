import hashlib

import pytest

from brl_graph.data.raw import RawDataError, RawFile, ensure_files, is_writable, verify_file

from .conftest import make_read_only, make_writable


def test_verify_file_detects_corruption(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    good = RawFile("f.bin", "https://example.org/f.bin", md5=hashlib.md5(b"hello").hexdigest(),
                   sha256=hashlib.sha256(b"hello").hexdigest())
    verify_file(path, good)
    bad = RawFile("f.bin", "https://example.org/f.bin", md5="0" * 32)
    with pytest.raises(RawDataError, match="https://example.org/f.bin") as err:
        verify_file(path, bad)
    assert str(path) in str(err.value) and "md5" in str(err.value)


def test_read_only_folder_is_not_written(tmp_path):
    assert is_writable(tmp_path / "not" / "yet")
    make_read_only(tmp_path)
    try:
        assert not is_writable(tmp_path) and not is_writable(tmp_path / "sub")
        with pytest.raises(RawDataError, match="not writable") as err:
            ensure_files(tmp_path / "sub", [RawFile("a/b.csv", "https://example.org/b.zip")],
                         download=True)
    finally:
        make_writable(tmp_path)
    assert str(tmp_path / "sub" / "a" / "b.csv") in str(err.value)
    assert "https://example.org/b.zip" in str(err.value)
    assert list(tmp_path.iterdir()) == []
