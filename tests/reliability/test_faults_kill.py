"""SIGKILL of a worker's pool process in the middle of a reindex: the task comes back (late ack,
reject on worker lost), the second run diffs against what the first one already applied, and the
catalog ends equal to the directory with every change applied once.

SIGKILL during ``apply_changes``: tests/core/test_worker_kill.py. During a migration part:
tests/migration/test_e2e.py::test_sigkill_mid_multipart_then_resume. A producer killed between
enqueue and ack: tests/s3/test_s3_e2e.py, tests/gcs/test_e2e_pubsub.py, tests/azure/test_e2e.py.
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import redis as redis_lib

from mountsync.shared.catalog import runs
from mountsync.shared.config import Settings
from mountsync.shared.queues import FEED_STREAM, QUEUE_REINDEX, TASK_REINDEX, make_client, send
from mountsync.shared.storage.local import LocalStorage
from mountsync.shared.storage.url import parse_storage_url
from tests.conftest import WorkerProcess, env_for
from tests.helpers import wait_for

pytestmark = pytest.mark.faults
FOLDERS, PER_FOLDER = 150, 200


def make_tree(root: Path) -> int:
    for f in range(FOLDERS):
        folder = root / f"cam{f:03d}"
        folder.mkdir(parents=True)
        for i in range(PER_FOLDER):
            (folder / f"{i:05d}.bin").write_bytes(b"x" * (i % 13))
    return FOLDERS * PER_FOLDER


def live(db: psycopg.Connection, mount_id: int) -> int:
    return int(db.execute("SELECT count(*) FROM objects WHERE mount_id = %s AND NOT deleted", (mount_id,))
               .fetchone()[0])  # fmt: skip


def test_sigkill_mid_reindex_then_the_redelivered_run_finishes_exactly(
    settings: Settings, add_mount: Any, db: psycopg.Connection, tmp_path: Path
) -> None:
    total = make_tree(tmp_path / "tree")
    own = settings.with_(redis_prefix=f"{settings.redis_prefix}reidx{uuid.uuid4().hex[:6]}:", feed_maxlen=10 * total)
    mount = add_mount("reidx", f"file://{tmp_path / 'tree'}")
    env = env_for(own, MOUNTSYNC_FEED_MAXLEN=str(own.feed_maxlen))
    worker = WorkerProcess(env, tmp_path / "worker.log", QUEUE_REINDEX, 1).start()
    try:
        run_id = runs.create_run(db, mount.id, "", "manual")
        send(make_client(own), TASK_REINDEX, "reidx", "", run_id, "manual", queue=QUEUE_REINDEX)
        wait_for(lambda: live(db, mount.id) >= 2000, timeout=60, what="the reindex to apply", interval=0.01)
        assert worker.proc is not None
        children = psutil.Process(worker.proc.pid).children(recursive=True)
        for child in children:
            os.kill(child.pid, signal.SIGKILL)
        at_kill = live(db, mount.id)
        assert at_kill < total, "the reindex finished before the kill; use a bigger tree"
        run = wait_for(lambda: (r := runs.get_run(db, run_id)) and r.done and r, timeout=90,
                       what="the redelivered reindex to finish")  # fmt: skip
        log = worker.log_tail(500_000)
    finally:
        worker.stop()
    assert run.state == "succeeded", run.describe()
    assert "WorkerLostError" in log  # the kill was visible
    # Catalog == directory, and a second reconcile finds nothing.
    listing = {i.key: (i.size, i.etag) for i in LocalStorage(parse_storage_url(f"file://{tmp_path / 'tree'}")).list()}
    rows = db.execute("SELECT key, size, etag FROM objects WHERE mount_id = %s AND NOT deleted", (mount.id,))
    assert {r[0]: (r[1], r[2]) for r in rows} == listing
    assert run.counts["created"] + at_kill >= total > run.counts["created"]  # resumed, did not redo
    with redis_lib.Redis.from_url(own.redis_url) as client:
        fed = [f[b"key"].decode() for _, f in client.xrange(f"{own.redis_prefix}{FEED_STREAM}")]
    assert set(fed) == set(listing) and len(fed) - len(set(fed)) <= 1000, "changes applied twice"
