"""Recovery in minutes after a whole-worker SIGKILL, and scheduling without a single point of failure.

Real workers, beats, Redis and PostgreSQL. The kill tests use the settings a user gets (visibility
timeout 60 s, no beat); the "runs once" test shortens the visibility timeout only to be quick (the
heartbeat scales with it). Measured recovery times are printed (``-s``) and kept in
deploy/RELIABILITY.md. Apply: tests/core/test_worker_kill.py; migration chunks:
tests/migration/test_e2e.py and tests/migration/test_kill_clouds.py.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis as redis_lib

from mountsync.shared.catalog import runs
from mountsync.shared.config import Settings
from mountsync.shared.queues import QUEUE_ALIGNMENT, QUEUE_MIGRATIONS, QUEUE_REINDEX, TASK_REINDEX, make_client, send
from mountsync.workers.schedule import EmbeddedScheduler, Periodic, claim_slot
from tests.conftest import WorkerProcess, env_for
from tests.helpers import Proc, free_port, wait_for
from tests.reliability.test_faults_kill import live, make_tree

pytestmark = pytest.mark.faults


@pytest.fixture
def own(settings: Settings) -> Settings:
    """Same database, own Redis prefix: no other worker takes these tasks."""
    return settings.with_(redis_prefix=f"{settings.redis_prefix}rec{uuid.uuid4().hex[:6]}:", feed_maxlen=10**6)


def default_env(own: Settings, **extra: str) -> dict[str, str]:
    env = env_for(own, MOUNTSYNC_FEED_MAXLEN=str(own.feed_maxlen), **extra)
    for name in ("MOUNTSYNC_VISIBILITY_TIMEOUT", "MOUNTSYNC_WORKER_SCHEDULE", "MOUNTSYNC_MIGRATION_LEASE"):
        if name not in extra:
            env.pop(name, None)
    return env


@pytest.mark.parametrize("with_beat", [False, True], ids=["no-beat", "beat"])
def test_sigkill_of_the_whole_worker_mid_reindex_resumes_within_two_minutes(
    own: Settings, add_mount: Any, db: psycopg.Connection, tmp_path: Path, procs: list[Proc], with_beat: bool
) -> None:
    total = make_tree(tmp_path / "tree")
    mount = add_mount("wholekill", f"file://{tmp_path / 'tree'}")
    env = default_env(own, MOUNTSYNC_STATE_DIR=str(tmp_path))
    if with_beat:
        procs.append(Proc.mountsync(["beat"], env, tmp_path / "beat.log").start())
    first = WorkerProcess(env, tmp_path / "w1.log", QUEUE_REINDEX, 1).start()
    run_id = runs.create_run(db, mount.id, "", "manual")
    send(make_client(own), TASK_REINDEX, "wholekill", "", run_id, "manual", queue=QUEUE_REINDEX)
    wait_for(lambda: live(db, mount.id) >= 2000, timeout=60, what="the reindex to apply", interval=0.01)
    first.kill()
    killed_at, at_kill = time.monotonic(), live(db, mount.id)
    assert at_kill < total, "the reindex finished before the kill; use a bigger tree"
    second = WorkerProcess(env, tmp_path / "w2.log", QUEUE_REINDEX, 1).start()
    try:
        wait_for(lambda: live(db, mount.id) > at_kill, timeout=120, what="the reindex to resume")
        resumed_s = time.monotonic() - killed_at
        print(
            f"reindex resumed {resumed_s:.0f} s after the whole-worker SIGKILL ({'with' if with_beat else 'no'} beat)"
        )
        run = wait_for(lambda: (r := runs.get_run(db, run_id)) and r.done and r, timeout=120,
                       what="the redelivered reindex to finish")  # fmt: skip
    finally:
        second.stop()
    assert resumed_s < 120
    assert run.state == "succeeded" and live(db, mount.id) == total


def test_a_task_held_longer_than_the_visibility_timeout_runs_once(
    own: Settings, add_mount: Any, db: psycopg.Connection, tmp_path: Path
) -> None:
    """A live worker holds a task (here: waiting 40 s for its ETA) for far longer than the visibility
    timeout; its heartbeat keeps the other worker's restore sweep from running it a second time."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.bin").write_bytes(b"a")
    mount = add_mount("heldonce", f"file://{tmp_path / 'd'}")
    env = default_env(own, MOUNTSYNC_VISIBILITY_TIMEOUT="6")
    holder = WorkerProcess(env, tmp_path / "w1.log", QUEUE_REINDEX, 1).start()
    client = redis_lib.Redis.from_url(own.redis_url)
    held = f"{own.redis_prefix}unacked"
    other = None
    try:
        send(make_client(own), TASK_REINDEX, "heldonce", "", None, "manual", queue=QUEUE_REINDEX, countdown=40)
        wait_for(lambda: client.hlen(held) == 1, timeout=30, what="the task held by the first worker")
        other = WorkerProcess(env, tmp_path / "w2.log", QUEUE_REINDEX, 1).start()
        run_count = "SELECT count(*) FROM reindex_runs WHERE mount_id = %s"
        wait_for(lambda: db.execute(run_count, (mount.id,)).fetchone()[0] >= 1, timeout=90, what="the task to run")
        # Nothing left anywhere that could still run it again: not held, not queued.
        wait_for(lambda: client.hlen(held) == 0 and client.llen(f"{own.redis_prefix}{QUEUE_REINDEX}") == 0,
                 timeout=30, what="the task acknowledged")  # fmt: skip
        assert db.execute(run_count, (mount.id,)).fetchone()[0] == 1, "the held task ran twice"
        assert "Restoring" not in other.log_tail(100_000)
    finally:
        holder.stop()
        if other:
            other.stop()
        client.close()


class HangingReceiver(BaseHTTPRequestHandler):
    """A submitter's link callback: the first POST hangs (its worker is killed meanwhile), later ones get 200."""

    bodies: list[dict[str, Any]] = []
    release = threading.Event()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.bodies.append(body)
        if len(self.bodies) == 1:
            self.release.wait(180)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_sigkill_of_the_whole_worker_mid_link_delivery_redelivers_within_two_minutes(
    own: Settings, catalog: Any, db: psycopg.Connection, tmp_path: Path
) -> None:
    from mountsync.shared.migration.client import MigrationClient

    HangingReceiver.bodies, HangingReceiver.release = [], threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), HangingReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for i in range(3):
        (src / f"{i}.txt").write_bytes(b"x" * i)
    env = default_env(own)
    worker = WorkerProcess(env, tmp_path / "w1.log", QUEUE_MIGRATIONS, 1).start()
    try:
        with MigrationClient(own) as client:
            callback = {"url": f"http://127.0.0.1:{server.server_address[1]}/links"}
            job = client.submit({"source": f"file://{src}", "destination": f"file://{dst}", "callback": callback})
            wait_for(lambda: HangingReceiver.bodies, timeout=60, what="the link batch to be posted")
            worker.kill()
            killed_at = time.monotonic()
            worker = WorkerProcess(env, tmp_path / "w2.log", QUEUE_MIGRATIONS, 1).start()
            progress = wait_for(lambda: (p := client.status(job)).state != "running" and p, timeout=120,
                                what="the link batch delivered again")  # fmt: skip
            recovered_s = time.monotonic() - killed_at
            print(f"link batch delivered again {recovered_s:.0f} s after the whole-worker SIGKILL (no beat)")
    finally:
        worker.stop()
        HangingReceiver.release.set()
        server.shutdown()
        server.server_close()
    assert progress.state == "completed" and recovered_s < 120
    assert len(HangingReceiver.bodies) == 2 and HangingReceiver.bodies[0] == HangingReceiver.bodies[1]


def test_sigkill_of_the_whole_worker_holding_an_alignment_check_runs_it_within_two_minutes(
    own: Settings, catalog: Any, tmp_path: Path
) -> None:
    """A debounced check (sent with a countdown, as after every apply) is held by the worker that
    gets killed; it runs on the next worker within 2 minutes (beat plays no part in this path)."""
    env = default_env(own)
    first = WorkerProcess(env, tmp_path / "w1.log", QUEUE_ALIGNMENT, 1).start()
    client = redis_lib.Redis.from_url(own.redis_url)
    try:
        task_id = send(make_client(own), "mountsync.alignment.check_folder", 1, "seq", queue=QUEUE_ALIGNMENT,
                       countdown=5)  # fmt: skip
        wait_for(lambda: client.hexists(f"{own.redis_prefix}unacked", task_id) or client.hlen(
            f"{own.redis_prefix}unacked"), timeout=30, what="the check held by the first worker")  # fmt: skip
        first.kill()
        killed_at = time.monotonic()
        second = WorkerProcess(env, tmp_path / "w2.log", QUEUE_ALIGNMENT, 1).start()
        try:
            wait_for(lambda: f"check_folder[{task_id}] succeeded" in second.log_tail(200_000), timeout=120,
                     what="the held check to run on the new worker")  # fmt: skip
            recovered_s = time.monotonic() - killed_at
        finally:
            second.stop()
    finally:
        client.close()
    print(f"alignment check ran {recovered_s:.0f} s after the whole-worker SIGKILL (no beat)")
    assert recovered_s < 120


def queued_tasks(client: redis_lib.Redis, queue: str) -> list[str]:
    return [json.loads(raw)["headers"]["task"] for raw in client.lrange(queue, 0, -1)]


def test_two_beats_queue_each_entry_once_per_interval(own: Settings, tmp_path: Path, procs: list[Proc]) -> None:
    env = default_env(own, MOUNTSYNC_STATE_DIR=str(tmp_path))
    logs = []
    for n in (1, 2):
        state = tmp_path / f"beat{n}"
        state.mkdir()
        logs.append(tmp_path / f"beat{n}.log")
        procs.append(Proc.mountsync(["beat"], {**env, "MOUNTSYNC_STATE_DIR": str(state)}, logs[-1]).start())

    def slots(text: str, event: str) -> list[int]:
        return [json.loads(line)["slot"] for line in text.splitlines()
                if line.startswith("{") and f'"{event}"' in line and "alignment-sweep" in line]  # fmt: skip

    def both_competed() -> bool:
        texts = [path.read_text() for path in logs]
        return all(slots(t, "schedule slot claimed") + slots(t, "schedule slot taken") for t in texts)

    wait_for(both_competed, timeout=60, what="both beats to try the sweep (every 30 s)")
    texts = [path.read_text() for path in logs]
    claimed = [s for t in texts for s in slots(t, "schedule slot claimed")]
    assert len(claimed) == len(set(claimed)), f"a slot was claimed twice: {claimed}"
    client = redis_lib.Redis.from_url(own.redis_url)
    queued = queued_tasks(client, f"{own.redis_prefix}{QUEUE_ALIGNMENT}")
    client.close()
    assert queued.count("mountsync.alignment.sweep") == len(claimed) >= 1


def test_embedded_schedulers_of_many_workers_send_each_entry_once_per_slot(own: Settings) -> None:
    client = redis_lib.Redis.from_url(own.redis_url)
    sent: list[str] = []
    entry = Periodic("alignment-sweep", "mountsync.alignment.sweep", QUEUE_ALIGNMENT, 30.0)
    workers = [EmbeddedScheduler(client, own.redis_prefix, [entry], lambda e: sent.append(e.name)) for _ in range(3)]
    start = 1_000_000 * 30.0 + uuid.uuid4().int % 10**6 * 30.0  # a fresh slot range for this test
    for step in range(0, 90):  # 3 workers ticking every second for 90 s: slots 0, 1, 2
        for worker in workers:
            worker.tick(start + step)
    client.close()
    assert sent == ["alignment-sweep"] * 3
    assert not claim_slot(redis_lib.Redis.from_url(own.redis_url), own.redis_prefix, entry.name, 30.0, start + 1)
