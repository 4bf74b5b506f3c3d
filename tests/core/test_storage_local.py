"""What only the local adapter does: keys stay inside the root, and symlinks are not followed.
The contract every adapter keeps (puts checked against size and MD5, listing, resumable
uploads...) is tests/storage/."""

from __future__ import annotations

from pathlib import Path

import pytest

from mountsync.shared.errors import BadInput, ObjectNotFound
from mountsync.shared.storage import open_storage


def test_keys_that_would_escape_the_root_are_refused(tmp_path: Path) -> None:
    storage = open_storage(f"file://{tmp_path}")
    for key in ("../etc/passwd", "/abs", "a//b", "a/./b"):
        with pytest.raises(BadInput):
            storage.stat(key)


def test_symlinks_are_neither_listed_nor_followed(tmp_path: Path) -> None:
    """A link out of the root (or into a loop) would list files the mount does not own."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "d").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"not ours")
    (root / "d" / "real.txt").write_bytes(b"ours")
    (root / "d" / "link.txt").symlink_to(outside / "secret.txt")
    (root / "loop").symlink_to(root)
    (root / "out").symlink_to(outside)
    storage = open_storage(f"file://{root}")

    assert [i.key for i in storage.list()] == ["d/real.txt"]
    with pytest.raises(ObjectNotFound):
        storage.stat("d/link.txt")
