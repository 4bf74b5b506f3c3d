"""SIGKILL of a real ``mountsync worker`` mid-upload to GCS (gcp-storage-emulator) and Azure (Azurite),
then a new worker: the job resumes within 2 minutes with the default settings (no beat, default
visibility timeout and lease), finished parts are not sent again, and the checksum is verified.
The S3 case is tests/migration/test_e2e.py::test_sigkill_mid_multipart_then_resume.

The job lives in a catalog of its own: the session's shared worker runs the migration sweep over
its whole catalog, and once the killed worker's lease ran out it re-queued the chunk to itself,
which has no Azure credentials, and failed the item (CI, once: "the upload to resume" timed out
with the job already failed). Which worker picks a stalled chunk up is no business of this test.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from mountsync.shared.config import Settings
from mountsync.shared.migration.client import MigrationClient
from mountsync.shared.queues import QUEUE_MIGRATIONS
from tests.conftest import WorkerProcess, env_for, own_catalog
from tests.helpers import wait_for
from tests.migration.conftest import parts_table
from tests.migration.test_clouds import Target, remote_sha256
from tests.migration.test_fs_to_fs import MiB, make_tree

pytestmark = [pytest.mark.slow, pytest.mark.faults]
PARTS = 21
OPTIONS = {"part_size": 5 * MiB, "multipart_threshold": 5 * MiB, "max_buffer_bytes": 30 * MiB,
           "part_concurrency": 2}  # fmt: skip


@pytest.fixture
def own(settings: Settings) -> Iterator[Settings]:
    """Settings with a catalog and a Redis prefix nobody else uses."""
    with own_catalog(settings, "migkill") as isolated:
        yield isolated


@pytest.fixture(params=["gcs", "azure"])
def cloud(request: pytest.FixtureRequest, settings: Settings) -> tuple[Target, dict[str, str]]:
    """The destination, and what the worker's environment needs to reach it."""
    bucket = f"kill-{uuid.uuid4().hex[:8]}"
    if request.param == "gcs":
        gcs = request.getfixturevalue("gcs_resumable_emulator")
        gcs.client().create_bucket(bucket)
        return Target(f"gs://{bucket}/k", gcs.storage_options()), {}
    azurite = request.getfixturevalue("azurite")
    azurite.blob_service().create_container(bucket)
    return Target(f"az://{bucket}/k", {}), {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}


def test_sigkill_of_the_worker_mid_upload_resumes_without_resending_parts(
    tmp_path: Path, own: Settings, cloud: tuple[Target, dict[str, str]], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    target, worker_env = cloud
    for name, value in worker_env.items():
        monkeypatch.setenv(name, value)  # remote_sha256 reads the destination from this process too
    db = psycopg.connect(own.database_url, autocommit=True)
    env = env_for(own, **worker_env)
    for name in ("MOUNTSYNC_VISIBILITY_TIMEOUT", "MOUNTSYNC_MIGRATION_LEASE", "MOUNTSYNC_WORKER_SCHEDULE"):
        env.pop(name, None)
    src = tmp_path / "src"
    sums = make_tree(src, {"huge.bin": (PARTS - 1) * 5 * MiB + 5})
    worker = WorkerProcess(env, tmp_path / "w.log", QUEUE_MIGRATIONS, 1).start()
    with MigrationClient(own) as client:
        job = client.submit({"source": f"file://{src}", "destination": target.url,
                             "options": {**OPTIONS, "destination_storage": target.options}})  # fmt: skip
        try:
            wait_for(lambda: sum(d for _, d in parts_table(db, job).values()) >= 3, timeout=90,
                     what="3 parts recorded", interval=0.02)  # fmt: skip
            worker.kill()
            killed_at = time.monotonic()
            before = {n for n, (_, done) in parts_table(db, job).items() if done}
            assert 3 <= len(before) < PARTS, "the upload finished before the kill; use a bigger file"
            assert client.status(job).state == "running"
            worker.start()
            wait_for(lambda: len([1 for _, d in parts_table(db, job).values() if d]) > len(before), timeout=120,
                     what="the upload to resume")  # fmt: skip
            resumed_s = time.monotonic() - killed_at
            print(f"migration chunk to {target.url.split(':')[0]} resumed {resumed_s:.0f} s after the SIGKILL")
            progress = wait_for(lambda: (p := client.status(job)).state != "running" and p, timeout=180,
                                what="the job to end")  # fmt: skip
        finally:
            worker.stop()
            after = parts_table(db, job)
            db.close()
        assert resumed_s < 120
        assert progress.state == "completed", client.failures(job)
    assert sorted(n for n, (_, done) in after.items() if done) == list(range(1, PARTS + 1))
    for number in before:
        assert after[number] == (1, True), f"part {number} was sent again"
    assert remote_sha256(target, "huge.bin") == sums["huge.bin"]
