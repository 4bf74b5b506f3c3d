"""Alignment latency: from a breaking change landing on the ``changes`` queue to its alert being
queryable in the catalog, idle and under 5,000 changes/s of appends to other (pinned) folders.

Two latencies are reported: queue->alert (the issue's definition: includes waiting in the
``changes`` queue behind the load and the apply itself) and commit->alert (the alignment guard's
own share: debounce, check, alert row), plus the offered and the applied change rates. When
apply cannot keep up with the offered load, queue->alert grows with the backlog; the rows show it.

Real workers run with their own Redis prefix, one pool per queue as deployed (changes: 2
processes, alignment: 1 process). Load and
probes are ObjectChanges enqueued exactly as producers do (``ChangeQueue``). A probe inserts one
frame near the start of a pinned 50-frame folder; a poller sees the alert row appear.
Target: p95 under 2 s on this machine (2 cores shared by load generator, worker and PostgreSQL).
Timings are reported, not asserted (a shared 2-core machine makes timing asserts flaky); the
test asserts that every probe was alerted.

Run: ``pytest -m bench tests/bench/test_bench_alignment.py``. Knobs (environment):
MOUNTSYNC_BENCH_ALIGNMENT_SECONDS (load duration, default 30), BENCH_ALIGN_C (alignment worker
processes, default 1), BENCH_LOG_LEVEL (workers' log level), BENCH_TRACE=1 (print per-probe
times), and any MOUNTSYNC_ALIGNMENT_* setting is passed to the workers.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis as redis_lib

from mountsync.shared.catalog.mounts import Mounts
from mountsync.shared.config import Settings
from mountsync.shared.events import Kind, ObjectChange, Provider, Source
from mountsync.shared.queues import ChangeQueue, make_client
from tests.conftest import WorkerProcess, env_for
from tests.helpers import wait_for

pytestmark = pytest.mark.bench

LOAD_RATE = 5000  # changes per second to other folders
LOAD_BATCH = 500
LOAD_FOLDERS = 20
PROBE_FRAMES = 50
PROBE_EVERY_S = 0.5
MEASURE_S = float(os.environ.get("MOUNTSYNC_BENCH_ALIGNMENT_SECONDS", "30"))
WARMUP_S = 3.0
IDLE_PROBES = 20
TARGET_P95_S = 2.0


@pytest.fixture(scope="module")
def bench_settings(settings: Settings) -> Settings:
    return replace(settings, redis_prefix=f"{settings.redis_prefix}bench:")


@pytest.fixture(scope="module")
def bench_worker(bench_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[WorkerProcess]]:
    """Worker pools per queue, as deployed: apply (2 processes) and alignment (1 process)."""
    level = os.environ.get("BENCH_LOG_LEVEL", "WARNING")
    extra = {k: v for k, v in os.environ.items() if k.startswith("MOUNTSYNC_ALIGNMENT_")}
    env = env_for(bench_settings, **{"MOUNTSYNC_ALIGNMENT_SETTLE": "0", **extra}, MOUNTSYNC_LOG_LEVEL=level)
    logs = tmp_path_factory.mktemp("benchworkers")
    workers: list[WorkerProcess] = []
    try:
        for queues, concurrency in (("changes", 2), ("alignment", int(os.environ.get("BENCH_ALIGN_C", "1")))):
            log_path = logs / f"{queues}.log"
            log_path.touch()
            workers.append(WorkerProcess(env, log_path, queues, concurrency).start())
        yield workers
    finally:
        for proc in workers:
            proc.stop()


@dataclass
class Feeder:
    """Builds changes for the bench mount and puts them on the changes queue."""

    queue: ChangeQueue
    bucket: str
    next_frame: dict[str, int] = field(default_factory=dict)

    def change(self, key: str) -> ObjectChange:
        return ObjectChange(provider=Provider.FS, bucket=self.bucket, key=key, kind=Kind.CREATED,
                            event_ns=time.time_ns(), source=Source.FS, size=64, etag=f"e-{key}")  # fmt: skip

    def appends(self, count: int) -> list[ObjectChange]:
        out = []
        for i in range(count):
            folder = f"load/f{i % LOAD_FOLDERS:02d}"
            n = self.next_frame.get(folder, 0)
            self.next_frame[folder] = n + 1
            out.append(self.change(f"{folder}/frame_{n:07d}.png"))
        return out

    def send(self, changes: list[ObjectChange]) -> None:
        for start in range(0, len(changes), LOAD_BATCH):
            self.queue.enqueue(changes[start : start + LOAD_BATCH])


class AlertWatcher:
    """Polls the catalog: when each probe's change became visible (committed) and its alert."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent: dict[str, float] = {}
        self.committed: dict[str, float] = {}
        self.seen: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def probe_sent(self, folder: str, at: float) -> None:
        with self.lock:
            self.sent[folder] = at

    def _poll(self, conn: psycopg.Connection) -> None:
        with self.lock:
            uncommitted = [f for f in self.sent if f not in self.committed]
            unseen = [f for f in self.sent if f not in self.seen]
        if not unseen:
            return
        probe_rows = "SELECT folder FROM objects WHERE folder = ANY(%s) AND key LIKE '%%/frame_0000b.png'"
        objects = conn.execute(probe_rows, (uncommitted,)).fetchall() if uncommitted else []
        alerts = conn.execute("SELECT DISTINCT path FROM alignment_alerts WHERE path = ANY(%s)", (unseen,)).fetchall()
        now = time.time()
        with self.lock:
            for (folder,) in objects:
                self.committed.setdefault(folder, now)
            for (path,) in alerts:
                self.committed.setdefault(path, now)
                self.seen.setdefault(path, now)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                self._poll(conn)
                time.sleep(0.01)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _probe(feeder: Feeder, watcher: AlertWatcher, k: int) -> None:
    change = feeder.change(f"probe/p{k:03d}/frame_0000b.png")  # sorts at index 1: an insert
    feeder.send([change])
    watcher.probe_sent(f"probe/p{k:03d}", time.time())


def _run_load(feeder: Feeder, stop: threading.Event, sent: list[int]) -> None:
    interval = LOAD_BATCH / LOAD_RATE
    next_at = time.monotonic()
    while not stop.is_set():
        feeder.send(feeder.appends(LOAD_BATCH))
        sent[0] += LOAD_BATCH
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


def _send_probes(feeder: Feeder, watcher: AlertWatcher, first: int, count: int) -> list[str]:
    for k in range(first, first + count):
        _probe(feeder, watcher, k)
        time.sleep(PROBE_EVERY_S)
    return [f"probe/p{k:03d}" for k in range(first, first + count)]


def _queue_to_alert(watcher: AlertWatcher, folders: list[str]) -> list[float]:
    wait_for(lambda: set(folders) <= set(watcher.seen), timeout=1200, what="every probe's alert")
    with watcher.lock:
        return [watcher.seen[f] - watcher.sent[f] for f in folders]


def _commit_to_alert(watcher: AlertWatcher, folders: list[str]) -> list[float]:
    """The alignment guard's own share: probe change visible in the catalog -> alert visible."""
    with watcher.lock:
        return [watcher.seen[f] - watcher.committed[f] for f in folders]


def _applied(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM objects WHERE key LIKE 'load/%%'").fetchone()[0])  # type: ignore[index]


def test_change_to_alert_latency(
    bench_settings: Settings, bench_worker: list[WorkerProcess], catalog: psycopg.Connection,
    bench_report: Any, tmp_path: Path,
) -> None:  # fmt: skip
    mount = Mounts(catalog).add("bench", f"file://{tmp_path}")
    client = redis_lib.Redis.from_url(bench_settings.redis_url)
    feeder = Feeder(ChangeQueue(make_client(bench_settings), client, bench_settings), mount.bucket)
    loaded_probes = int((MEASURE_S - WARMUP_S) / PROBE_EVERY_S)
    probes = IDLE_PROBES + loaded_probes
    setup = feeder.appends(100 * LOAD_FOLDERS)
    for k in range(probes):
        setup += [feeder.change(f"probe/p{k:03d}/frame_{i:04d}.png") for i in range(PROBE_FRAMES)]
    feeder.send(setup)
    pinned = "SELECT count(*) FROM datasets WHERE pinned_at IS NOT NULL"
    wait_for(lambda: catalog.execute(pinned).fetchone()[0] == LOAD_FOLDERS + probes,  # type: ignore[index]
             timeout=300, what="every bench folder pinned")  # fmt: skip

    watcher = AlertWatcher(bench_settings.database_url)
    watcher.thread.start()
    idle_folders = _send_probes(feeder, watcher, 0, IDLE_PROBES)
    idle = _queue_to_alert(watcher, idle_folders)

    stop, sent = threading.Event(), [0]
    loader = threading.Thread(target=_run_load, args=(feeder, stop, sent), daemon=True)
    applied_before, started = _applied(catalog), time.monotonic()
    loader.start()
    time.sleep(WARMUP_S)  # let the load reach a steady state before probing
    folders = _send_probes(feeder, watcher, IDLE_PROBES, loaded_probes)
    stop.set()
    loader.join(timeout=30)
    elapsed = time.monotonic() - started
    applied_rate = (_applied(catalog) - applied_before) / elapsed
    backlog = feeder.queue.depth()
    loaded = _queue_to_alert(watcher, folders)  # includes draining whatever backlog built up
    own = _commit_to_alert(watcher, folders)
    if os.environ.get("BENCH_TRACE"):
        for f in folders:
            print(
                f"probe {f} sent={watcher.sent[f]:.3f} visible={watcher.committed[f]:.3f} alert={watcher.seen[f]:.3f}"
            )
    watcher.stop.set()
    watcher.thread.join(timeout=10)

    report = bench_report.row
    report("alignment queue->alert p50, 5k/s load", statistics.median(loaded), "s",
           "same, idle", statistics.median(idle), "")  # fmt: skip
    report("alignment queue->alert p95, 5k/s load", _percentile(loaded, 0.95), "s",
           "same, idle", _percentile(idle, 0.95), f"< {TARGET_P95_S} s")  # fmt: skip
    report("alignment commit->alert p50, 5k/s load", statistics.median(own), "s", "", None, "")
    report("alignment commit->alert p95, 5k/s load", _percentile(own, 0.95), "s", "", None,
           f"< {TARGET_P95_S} s")  # fmt: skip
    report("alignment bench load offered", sent[0] / elapsed, "changes/s", "requested", LOAD_RATE, "")
    report("alignment bench load applied", applied_rate, "changes/s", "offered", sent[0] / elapsed, "")
    report("alignment bench queue backlog at load end", backlog, "batches", "", None, "0")
    assert len(loaded) == loaded_probes and len(own) == loaded_probes  # every insert was alerted
