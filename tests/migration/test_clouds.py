"""fs -> S3 (moto), fs -> GCS (gcp-storage-emulator), fs -> Azure (Azurite), S3 -> fs.

One suite over every destination: mixed sizes including files of more than 3 parts, content
read back and compared, skip-existing on a second run, and a crash mid-multipart resumed
without re-sending the parts the provider confirms.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mountsync.shared.migration.progress import job_progress
from mountsync.shared.storage import open_storage
from tests.migration.conftest import Crash, parts_table
from tests.migration.test_fs_to_fs import MiB, make_tree

OPTIONS = {"part_size": 5 * MiB, "multipart_threshold": 5 * MiB, "max_buffer_bytes": 40 * MiB,
           "part_concurrency": 3, "retry_base_s": 0.1}  # fmt: skip
SIZES = {"empty.bin": 0, "tiny.txt": 17, "img/a.jpg": 150_000, "img/b.jpg": 5 * MiB,
         "video/big.mp4": 16 * MiB + 12_345, "video/bigger.mp4": 21 * MiB + 1}  # fmt: skip


@dataclass
class Target:
    url: str
    options: dict[str, Any]


@pytest.fixture(params=["s3", "gcs", "azure"])
def target(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Target:
    bucket = f"dest-{uuid.uuid4().hex[:8]}"
    if request.param == "s3":
        moto = request.getfixturevalue("moto")
        moto.client("s3").create_bucket(Bucket=bucket)
        return Target(f"s3://{bucket}/migrated", {"endpoint_url": moto.endpoint_url})
    if request.param == "gcs":
        gcs = request.getfixturevalue("gcs_resumable_emulator")
        gcs.client().create_bucket(bucket)
        return Target(f"gs://{bucket}/migrated", gcs.storage_options())
    azurite = request.getfixturevalue("azurite")
    azurite.blob_service().create_container(bucket)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    return Target(f"az://{bucket}/migrated", {})


def remote_sha256(target: Target, key: str) -> str:
    storage = open_storage(target.url, target.options)
    digest = hashlib.sha256()
    with storage.open(storage.url.key_for(key)) as stream:
        for block in iter(lambda: stream.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def spec_for(src: Path, target: Target, **options: Any) -> dict[str, Any]:
    return {"source": f"file://{src}", "destination": target.url,
            "options": {**OPTIONS, **options, "destination_storage": target.options}}  # fmt: skip


def test_fs_to_cloud_mixed_sizes_then_skip_existing(tmp_path: Path, target: Target, inline, store) -> None:
    src = tmp_path / "src"
    sums = make_tree(src, SIZES)
    job = inline.submit(spec_for(src, target))
    inline.drain()
    progress = job_progress(store, job)
    assert progress.state == "completed", (progress, store_failures(store, job))
    assert progress.items_done == len(SIZES) and progress.bytes_done == sum(SIZES.values())
    for rel, digest in sums.items():
        assert remote_sha256(target, rel) == digest, rel
    again = inline.submit(spec_for(src, target))
    inline.drain()
    second = job_progress(store, again)
    assert second.state == "completed"
    assert second.items_skipped == len(SIZES) and second.bytes_sent == 0


def test_crash_mid_multipart_then_resume(tmp_path: Path, target: Target, inline, store, db, counting) -> None:
    src = tmp_path / "src"
    sums = make_tree(src, {"huge.bin": 26 * MiB + 99})  # 6 parts
    counting["crash_after"] = 3
    job = inline.submit(spec_for(src, target))
    with pytest.raises(Crash):
        inline.drain()
    done_before = {n for n, (_, done) in parts_table(db, job).items() if done}
    assert len(done_before) >= 2
    db.execute("UPDATE migration_items SET lease_until = now() - interval '1 second'")
    counting["crash_after"] = None
    inline.app.sent.clear()
    inline.app.send_task("mountsync.migration.maintain")
    inline.drain()
    assert job_progress(store, job).state == "completed", store_failures(store, job)
    assert remote_sha256(target, "huge.bin") == sums["huge.bin"]
    for number in done_before:
        assert counting["calls"][number] == 1, f"part {number} was sent again"
        assert parts_table(db, job)[number] == (1, True)


def test_s3_to_fs(tmp_path: Path, moto, inline, store) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="source")
    sums = {}
    for rel, size in SIZES.items():
        data = hashlib.sha256(rel.encode()).digest() * (size // 32 + 1)
        data = data[:size]
        s3.put_object(Bucket="source", Key=f"data/{rel}", Body=data)
        sums[rel] = hashlib.sha256(data).hexdigest()
    s3.put_object(Bucket="source", Key="elsewhere/x", Body=b"not in the prefix")
    dst = tmp_path / "dst"
    job = inline.submit(
        {
            "source": "s3://source/data",
            "destination": f"file://{dst}",
            "options": {**OPTIONS, "source_storage": {"endpoint_url": moto.endpoint_url}},
        }
    )
    inline.drain()
    progress = job_progress(store, job)
    assert progress.state == "completed", store_failures(store, job)
    assert progress.items_total == len(SIZES)
    for rel, digest in sums.items():
        assert hashlib.sha256((dst / rel).read_bytes()).hexdigest() == digest
    assert not (dst / "elsewhere").exists()
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="source")["Contents"]}
    assert len(keys) == len(SIZES) + 1  # the source is never deleted


def test_defaults_stream_local_files_to_s3_in_one_request_and_cut_chunks_by_bytes(
    tmp_path: Path, moto, inline, store, db
) -> None:
    """Default options: a local file above the 16 MiB buffer but under the 200 MiB threshold is
    hashed, then streamed from disk in one PutObject (no multipart upload, no part rows, the
    ETag is its MD5, its SHA-256 is the request's checksum); a chunk closes at ``chunk_bytes``,
    so big files land in their own chunks."""
    sizes = {"a.bin": 20 * MiB, "b.bin": 20 * MiB + 7, "c/small.txt": 1000, "d.bin": 30 * MiB}
    src = tmp_path / "src"
    sums = make_tree(src, sizes)
    moto.client("s3").create_bucket(Bucket="streamed")
    target = Target("s3://streamed/m", {"endpoint_url": moto.endpoint_url})
    job = inline.submit({"source": f"file://{src}", "destination": target.url,
                         "options": {"chunk_bytes": 41 * MiB, "destination_storage": target.options}})  # fmt: skip
    inline.drain()
    assert job_progress(store, job).state == "completed", store_failures(store, job)
    rows = db.execute("SELECT chunk, sum(size), count(*) FROM migration_items WHERE job_id = %s "
                      "GROUP BY chunk ORDER BY chunk", (job,)).fetchall()  # fmt: skip
    assert [chunk for chunk, _, _ in rows] == list(range(len(rows))) and len(rows) >= 2
    assert all(total <= 41 * MiB for _, total, _ in rows)  # (the fs lists in directory order)
    assert db.execute("SELECT count(*) FROM migration_parts WHERE job_id = %s", (job,)).fetchone()[0] == 0
    s3 = moto.client("s3")
    for rel, digest in sums.items():
        assert remote_sha256(target, rel) == digest, rel
        data = (src / rel).read_bytes()
        head = s3.head_object(Bucket="streamed", Key=f"m/{rel}", ChecksumMode="ENABLED")
        assert head["ETag"].strip('"') == hashlib.md5(data).hexdigest()
        # Each file was hashed once: its SHA-256 went with the request as the checksum S3 checks.
        assert base64.b64decode(head["ChecksumSHA256"]).hex() == digest


def store_failures(store: Any, job: str) -> list[dict[str, Any]]:
    from mountsync.shared.migration.progress import item_failures

    return item_failures(store, job)
