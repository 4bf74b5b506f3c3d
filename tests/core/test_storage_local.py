"""LocalStorage.put: exactly ``size`` bytes, checked against ``md5``, published atomically or not at all."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from mountsync.shared.errors import StorageUnavailable
from mountsync.shared.storage.local import LocalStorage
from mountsync.shared.storage.url import parse_storage_url


def storage(root: Path) -> LocalStorage:
    return LocalStorage(parse_storage_url(f"file://{root}"))


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_put_checks_the_md5_it_is_given_and_publishes_nothing_on_a_mismatch(tmp_path: Path) -> None:
    fs = storage(tmp_path)
    fs.put("d/a.bin", io.BytesIO(b"old content"), 11)
    announced = hashlib.md5(b"new content").hexdigest()
    with pytest.raises(StorageUnavailable, match="MD5"):
        fs.put("d/a.bin", io.BytesIO(b"NEW CONTENT"), 11, md5=announced)  # rewritten since hashed
    assert files(tmp_path) == {"d/a.bin": b"old content"}  # not replaced, no temp file left
    info = fs.put("d/a.bin", io.BytesIO(b"new content"), 11, md5=announced.upper())
    assert info.size == 11
    assert files(tmp_path) == {"d/a.bin": b"new content"}


@pytest.mark.parametrize("data", [b"short", b"a bit longer than announced"], ids=["shorter", "longer"])
def test_put_copies_exactly_size_bytes_or_nothing(tmp_path: Path, data: bytes) -> None:
    fs = storage(tmp_path)
    with pytest.raises(StorageUnavailable, match="10 bytes"):
        fs.put("a.bin", io.BytesIO(data), 10)
    assert files(tmp_path) == {}


def test_put_without_md5_copies_size_bytes(tmp_path: Path) -> None:
    fs = storage(tmp_path)
    data = bytes(range(256)) * 9000  # more than one copy block
    info = fs.put("big.bin", io.BytesIO(data), len(data))
    assert info.size == len(data)
    assert files(tmp_path) == {"big.bin": data}
