"""What only the local adapter does: keys stay inside the root, symlinks are not followed, and
per-folder summaries are computed in bulk. The contract every adapter keeps (puts checked
against size and MD5, listing, resumable uploads...) is tests/storage/."""

from __future__ import annotations

import functools
import operator
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mountsync.shared.catalog.apply import fingerprint_hash
from mountsync.shared.errors import BadInput, ObjectNotFound
from mountsync.shared.storage import open_storage
from mountsync.shared.storage.local import UPLOADS_DIR, folder_fingerprint
from mountsync.workers.reindex import summarize_listing


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
    assert [(folder, objects) for folder, objects, _, _ in storage.folder_summaries()] == [("d", 1)]
    with pytest.raises(ObjectNotFound):
        storage.stat("d/link.txt")


NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"), min_size=1, max_size=12)


@given(
    st.sampled_from(["", "a/", "ünï/deep/", "100%/"]),
    st.lists(st.tuples(NAMES, st.integers(0, 2**40), st.integers(0, 2**62)), min_size=1, max_size=70),
)
def test_folder_fingerprint_is_the_xor_of_each_files_hash(prefix: str, files: list[tuple[str, int, int]]) -> None:
    """The bulk fold (one encode, digests halved as one integer) equals the catalog's definition
    for any number of files, odd or even, and keys with "|", "%" or non-ASCII characters."""
    lines = [f"{name}|{size}|{mtime:x}-{size:x}" for name, size, mtime in files]
    expected = functools.reduce(
        operator.xor, (fingerprint_hash(prefix + name, size, f"{mtime:x}-{size:x}") for name, size, mtime in files)
    )
    assert folder_fingerprint(prefix, lines) == expected


def test_folder_summaries_follow_every_change_the_reindex_must_see(tmp_path: Path) -> None:
    """A new key, size or mtime alone, a file added or removed each change that folder's summary
    (as the generic listing computes it) and no other's; the upload staging area is never counted."""
    for folder in ("a", "a/b", "c"):
        for i in range(5):
            (tmp_path / folder).mkdir(parents=True, exist_ok=True)
            (tmp_path / folder / f"f{i}.bin").write_bytes(b"x" * i)
    (tmp_path / UPLOADS_DIR / "u1").mkdir(parents=True)
    (tmp_path / UPLOADS_DIR / "u1" / "000001").write_bytes(b"part")
    storage = open_storage(f"file://{tmp_path}")

    def summaries() -> dict[str, tuple[int, int, int]]:
        fast = {folder: (objects, size, fp) for folder, objects, size, fp in storage.folder_summaries()}
        generic, _ = summarize_listing(storage.list(), lambda _n: None)
        assert fast == {folder: summary.key() for folder, summary in generic.items()}
        return fast

    before = summaries()
    assert set(before) == {"a", "a/b", "c"}
    mtime = os.stat(tmp_path / "a/b/f1.bin").st_mtime_ns
    changes = [
        ("a", lambda: (tmp_path / "a/f2.bin").rename(tmp_path / "a/g2.bin")),  # same size and mtime, new key
        ("a/b", lambda: os.utime(tmp_path / "a/b/f1.bin", ns=(mtime + 1, mtime + 1))),
        ("c", lambda: (tmp_path / "c/new.bin").write_bytes(b"")),
        ("c", lambda: (tmp_path / "c/f3.bin").unlink()),
        ("a/b", lambda: (tmp_path / "a/b/f4.bin").write_bytes(b"longer now")),
    ]
    for folder, change in changes:
        change()
        after = summaries()
        assert {f for f in before if after.get(f) != before[f]} == {folder}
        before = after
