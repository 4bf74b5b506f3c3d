"""fs -> fs migrations in process: mixed sizes, multipart, verification, skip, resume, cancel."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mountsync.shared.migration.jobs import JobStore
from mountsync.shared.migration.progress import job_progress

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


def test_prefix_copy_mixed_sizes(tmp_path: Path, inline, store: JobStore) -> None:
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


def test_items_with_entity_ids_and_task_callback_batches(tmp_path: Path, inline, store) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    names = {f"frames/{i:05d}.jpg": 10 + i % 7 for i in range(2300)}
    sums = make_tree(src, names)
    items = [{"entity_id": f"e{i}", "path": rel} for i, rel in enumerate(names)]
    job = inline.submit(
        {
            "source": f"file://{src}",
            "destination": f"file://{dst}/out",
            "items": items,
            "callback": {"task": "platform.relink", "queue": "platform"},
        }
    )
    inline.drain()
    progress = job_progress(store, job)
    assert progress.state == "completed" and progress.items_done == 2300
    assert progress.links_delivered == 2300
    chunk_runs = [args for name, args in inline.ran if name == "mountsync.migration.upload_chunk"]
    assert sorted({args[1] for args in chunk_runs}) == [0, 1, 2]  # <=1000 items per chunk
    batches = [m for m in inline.delivered if m.name == "platform.relink"]
    assert all(m.queue.name == "platform" for m in batches)
    sizes = [len(m.args[0]["links"]) for m in batches]
    assert sum(sizes) == 2300 and max(sizes) <= 1000
    links = {link["entity_id"]: link for m in batches for link in m.args[0]["links"]}
    assert {m.args[0]["job_id"] for m in batches} == {job}
    first = links["e0"]
    assert first["link"] == f"file://{dst}/out/frames/00000.jpg"
    assert first["checksum"] == f"sha256:{sums['frames/00000.jpg']}" and first["size"] == 10


def test_skip_existing_equal_and_recopy_changed(tmp_path: Path, inline, store) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a.bin": 1000, "big.bin": 11 * MiB})
    spec = {"source": f"file://{src}", "destination": f"file://{dst}", "options": OPTIONS}
    first = inline.submit(spec)
    inline.drain()
    assert job_progress(store, first).items_done == 2
    (dst / "a.bin").write_bytes(os.urandom(1000))  # same size, other content
    second = inline.submit(spec)
    inline.drain()
    progress = job_progress(store, second)
    assert (progress.items_skipped, progress.items_done) == (1, 1), progress
    assert progress.bytes_sent == 1000  # the big file was not sent again
    assert sha256_of(dst / "a.bin") == sha256_of(src / "a.bin")


def test_submitted_checksum_mismatch_fails_that_item_only(tmp_path: Path, inline, store) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    sums = make_tree(src, {"ok.bin": 10, "bad.bin": 10})
    items = [
        {"entity_id": "1", "path": "ok.bin", "sha256": sums["ok.bin"]},
        {"entity_id": "2", "path": "bad.bin", "sha256": "0" * 64},
        {"entity_id": "3", "path": "missing.bin"},
    ]
    job = inline.submit({"source": f"file://{src}", "destination": f"file://{dst}", "items": items})
    inline.drain()
    progress = job_progress(store, job)
    assert progress.state == "completed_with_errors"
    assert (progress.items_done, progress.items_failed) == (1, 2)
    reasons = {r["entity_id"]: r["reason"] for r in store_failures(store, job)}
    assert "differs from the submitted" in reasons["2"]
    assert "not found" in reasons["3"]
    assert not (dst / "bad.bin").exists()


def test_unsafe_listed_keys_fail_with_reason(tmp_path: Path, inline, store) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"good.txt": 5, "bad\\name.txt": 5})
    job = inline.submit({"source": f"file://{src}", "destination": f"file://{dst}"})
    inline.drain()
    progress = job_progress(store, job)
    assert progress.state == "completed_with_errors" and progress.items_done == 1
    [failure] = store_failures(store, job)
    assert "backslash" in failure["reason"]


def test_all_items_failing_fails_the_job(tmp_path: Path, inline, store) -> None:
    src = tmp_path / "src"
    src.mkdir()
    job = inline.submit({"source": f"file://{src}", "destination": f"file://{tmp_path}/d",
                         "items": [{"entity_id": "1", "path": "nope"}]})  # fmt: skip
    inline.drain()
    assert job_progress(store, job).state == "failed"


def test_empty_source_completes(tmp_path: Path, inline, store) -> None:
    (tmp_path / "src").mkdir()
    job = inline.submit({"source": f"file://{tmp_path}/src", "destination": f"file://{tmp_path}/d"})
    inline.drain()
    progress = job_progress(store, job)
    assert progress.state == "completed" and progress.items_total == 0


def test_bad_spec_through_the_task_is_recorded(inline, store) -> None:
    import pytest

    from mountsync.shared.errors import BadInput

    with pytest.raises(BadInput, match="overlaps"):
        inline.submit({"source": "file:///a", "destination": "file:///a/b"}, task_id="bad-1")
    progress = job_progress(store, "bad-1")
    assert progress.state == "failed" and "overlaps" in progress.reason


def store_failures(store: JobStore, job: str) -> list[dict]:
    from mountsync.shared.migration.progress import item_failures

    return item_failures(store, job)


def test_job_gauges_for_prometheus(tmp_path: Path, inline, store, mig_pool) -> None:
    from prometheus_client import CollectorRegistry

    from mountsync.shared.migration.metrics import register_jobs_collector

    make_tree(tmp_path / "src", {"a.txt": 5})
    inline.submit({"source": f"file://{tmp_path}/src", "destination": f"file://{tmp_path}/d"})
    inline.drain()
    registry = CollectorRegistry()
    register_jobs_collector(mig_pool, registry)
    assert registry.get_sample_value("mountsync_migration_jobs", {"state": "completed"}) == 1


def test_unlistable_source_fails_the_job_with_the_reason(tmp_path: Path, inline, store) -> None:
    job = inline.submit({"source": f"file://{tmp_path}/missing", "destination": f"file://{tmp_path}/d"})
    progress = job_progress(store, job)
    assert progress.state == "failed" and "planning failed" in progress.reason
    assert "does not exist" in progress.reason
