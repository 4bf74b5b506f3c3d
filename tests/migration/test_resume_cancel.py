"""Crash and resume (in process), cancel with orphan cleanup, HTTP callbacks with retries."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mountsync.shared.migration.jobs import JobStore
from mountsync.shared.migration.progress import job_progress
from tests.migration.conftest import Crash, parts_table
from tests.migration.test_fs_to_fs import MiB, make_tree, sha256_of

OPTIONS = {"part_size": 5 * MiB, "multipart_threshold": 5 * MiB, "max_buffer_bytes": 40 * MiB,
           "part_concurrency": 2, "retry_base_s": 0.0}  # fmt: skip


def test_crash_mid_multipart_resumes_without_resending_parts(
    tmp_path: Path, inline, store: JobStore, db, counting
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    sums = make_tree(src, {"big.bin": 33 * MiB + 5})  # 7 parts of 5 MiB
    counting["crash_after"] = 3
    job = inline.submit({"source": f"file://{src}", "destination": f"file://{dst}", "options": OPTIONS})
    with pytest.raises(Crash):
        inline.drain()
    before = {n for n, (_, done) in parts_table(db, job).items() if done}
    assert len(before) >= 2, parts_table(db, job)
    # The "worker" is gone: its lease runs out, the sweep re-queues the chunk.
    db.execute("UPDATE migration_items SET lease_until = now() - interval '1 second'")
    counting["crash_after"] = None
    inline.app.sent.clear()
    inline.app.send_task("mountsync.migration.maintain")
    inline.drain()
    assert job_progress(store, job).state == "completed"
    assert sha256_of(dst / "big.bin") == sums["big.bin"]
    after = parts_table(db, job)
    assert sorted(after) == list(range(1, 8))
    for number in before:
        assert after[number] == (1, True), f"part {number} was sent again"
        assert counting["calls"][number] == 1
    assert job_progress(store, job).bytes_sent == 33 * MiB + 5


def test_cancel_stops_copying_and_aborts_open_uploads(tmp_path: Path, inline, store: JobStore, db, counting) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"big.bin": 21 * MiB, **{f"small/{i}.txt": 10 for i in range(30)}})
    counting["crash_after"] = 2
    spec = {"source": f"file://{src}", "destination": f"file://{dst}",
            "options": {**OPTIONS, "concurrency": 1, "chunk_size": 10}}  # fmt: skip
    job = inline.submit(spec)
    with pytest.raises(Crash):
        inline.drain()
    assert store.cancel(job) == "cancelled"
    assert store.cancel(job) == "cancelled"  # idempotent
    db.execute("UPDATE migration_items SET lease_until = now() - interval '1 second'")
    counting["crash_after"] = None
    inline.app.sent.clear()
    inline.app.send_task("mountsync.migration.maintain")
    inline.drain()
    progress = job_progress(store, job)
    assert progress.state == "cancelled"
    assert progress.items_pending == 0 and progress.items_done < 31
    assert progress.items_cancelled >= 1
    staging = dst / ".mountsync-uploads"
    assert not staging.exists() or not any(staging.iterdir()), "orphaned upload left behind"
    open_uploads = db.execute(
        "SELECT count(*) FROM migration_items WHERE job_id = %s AND upload_id IS NOT NULL", (job,)
    ).fetchone()[0]
    assert open_uploads == 0
    assert (src / "big.bin").exists()  # the source is never deleted


class Hook:
    """A local HTTP callback receiver that fails the first ``failures`` requests with 503."""

    def __init__(self, failures: int, status: int = 503) -> None:
        self.failures, self.status = failures, status
        self.payloads: list[dict[str, Any]] = []
        self.requests = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests += 1
                if hook.requests <= hook.failures:
                    self.send_response(hook.status)
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                hook.payloads.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/links?token=abc"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook(failures=2)
    yield server
    server.close()


def test_http_callback_retried_until_delivered(tmp_path: Path, inline, store, hook: Hook) -> None:
    src = tmp_path / "src"
    make_tree(src, {f"{i}.txt": 3 for i in range(5)})
    job = inline.submit({"source": f"file://{src}", "destination": f"file://{tmp_path}/d",
                         "callback": {"url": hook.url}, "options": {"retry_base_s": 0.0}})  # fmt: skip
    inline.drain()
    assert hook.requests == 3
    [payload] = hook.payloads
    assert payload["job_id"] == job and len(payload["links"]) == 5
    assert set(payload["links"][0]) == {"entity_id", "link", "size", "checksum"}
    progress = job_progress(store, job)
    assert progress.state == "completed" and progress.links_delivered == 5


def test_http_callback_rejected_ends_with_errors(tmp_path: Path, inline, store) -> None:
    hook = Hook(failures=100, status=410)
    try:
        src = tmp_path / "src"
        make_tree(src, {"a.txt": 3})
        job = inline.submit({"source": f"file://{src}", "destination": f"file://{tmp_path}/d",
                             "callback": {"url": hook.url}})  # fmt: skip
        inline.drain()
    finally:
        hook.close()
    progress = job_progress(store, job)
    assert hook.requests == 1  # 410 is final: no retries
    assert progress.state == "completed_with_errors"
    assert "link batch" in progress.reason and progress.link_batches_failed == 1


def test_leases_stay_alive_during_a_slow_part(
    tmp_path: Path, settings, store: JobStore, mig_pool, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from mountsync.workers.migration import service
    from mountsync.workers.migration.runtime import MigrationRuntime
    from tests.migration.conftest import Inline, InlineApp

    class SlowDest:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        def upload_part(self, session: Any, number: int, data: bytes) -> Any:
            time.sleep(2.5)  # longer than the 1.5 s lease
            return self._inner.upload_part(session, number, data)

    real = service.open_storages
    monkeypatch.setattr(service, "open_storages", lambda spec: (real(spec)[0], SlowDest(real(spec)[1])))
    rt = MigrationRuntime.on_pool(settings.with_(extra={"MOUNTSYNC_MIGRATION_LEASE": "1.5"}), mig_pool, InlineApp())
    inline = Inline(rt, rt.app)
    make_tree(tmp_path / "src", {"big.bin": 6 * MiB})
    job = inline.submit({"source": f"file://{tmp_path}/src", "destination": f"file://{tmp_path}/d",
                         "options": {**OPTIONS, "part_concurrency": 1}})  # fmt: skip
    expired: list[bool] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            row = db.execute("SELECT lease_until < now() FROM migration_items WHERE state = 'running'")
            expired.extend(r[0] for r in row.fetchall())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        inline.drain()
    finally:
        done.set()
        watcher.join()
    assert job_progress(store, job).state == "completed"
    assert expired and not any(expired), "the item's lease ran out while its worker was busy"
