"""fs -> fs migrations in process: mixed sizes, multipart, verification, skip, resume, cancel."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from shared.migration.progress import job_progress
from shared.migration.store import MigrationStore

MiB = 1024 * 1024
OPTIONS = {"part_size": 5 * MiB, "multipart_threshold": 5 * MiB, "max_buffer_bytes": 40 * MiB}


def make_tree(root: Path, sizes: dict[str, int]) -> dict[str, str]:
    sums = {}
    for rel, size in sizes.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(size)
        path.write_bytes(data)
        sums[rel] = hashlib.sha256(data).hexdigest()
    return sums


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_prefix_copy_mixed_sizes(tmp_path: Path, inline, store: MigrationStore) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    sums = make_tree(src, {"a.bin": 0, "b/c.bin": 1000, "b/big.bin": 16 * MiB + 3, "d/e/f.jpg": 70_000})
    job = inline.submit({"source": f"file://{src}", "destination": f"file://{dst}", "options": OPTIONS})
    inline.drain()
    progress = job_progress(store, job)
    assert progress.state == "completed", progress
    assert progress.items_done == 4
    for rel, digest in sums.items():
        assert sha256_of(dst / rel) == digest
    assert not (dst / ".mountsync-uploads").exists() or not any((dst / ".mountsync-uploads").iterdir())
    assert sorted(os.listdir(src)) == ["a.bin", "b", "d"]  # source untouched
