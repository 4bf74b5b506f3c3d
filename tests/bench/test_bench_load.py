"""Load: a burst of 200,000 S3 notifications through the producer loop, Redis and two worker
processes into the catalog, with producer backpressure (``MOUNTSYNC_MAX_QUEUE_DEPTH``).

The source is a synthetic SQS stand-in that holds the whole burst at once (the cloud queue's
backlog: generated lazily, one S3 record per message as S3 sends them, each body rendered from a
template of what ``json.dumps`` gives, since S3's encoding is not work the producer does). The
real ``run_source`` loop, pipeline, S3 normalizer, ``ChangeQueue``, Celery worker
(``mountsync worker -Q changes -c 2``) and catalog do the rest. The catalog is counted only after
the producer has queued the whole burst, over one connection. Redis is a server of the test's
own, so its memory is this run's alone.

Reported: changes/s end to end; peak Redis ``used_memory`` beside the memory the same burst takes
when enqueued without backpressure; peak ``changes`` queue depth; peak worker RSS; and where the
cores went: CPU microseconds per change of the producer thread, the worker processes, PostgreSQL
and Redis, and of all four beside what 25,000 changes/s on two cores leaves a change (80 us).
Run with ``pytest -m bench tests/bench/test_bench_load.py``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import psycopg
import pytest

from mountsync.producers.loop import run_source
from mountsync.producers.normalize.s3 import normalize_s3
from mountsync.producers.runtime import build_runtime
from mountsync.shared.config import Settings
from mountsync.shared.events import Kind, ObjectChange, Provider, RawMessage, Source
from mountsync.shared.queues import ChangeQueue, make_client
from tests.bench.processes import cpu_seconds, process_tree
from tests.conftest import WorkerProcess, env_for
from tests.helpers import live_count, wait_for
from tests.reliability.servers import OwnRedis

TOTAL = 200_000
# Below the default (200 tasks, more than this burst) so that backpressure works during the run:
# tasks of <= 2,000 changes (the default batch), so at most ~20,000 changes wait in Redis.
MAX_DEPTH = 10
DEFAULTS = Settings()
BUCKET = "load-bucket"
MiB = 1024 * 1024


def s3_body(key: str, size: int, etag: str, sequencer: str) -> str:
    """One S3 notification as SQS delivers it: one record per message."""
    obj = {"key": key, "size": size, "eTag": etag, "sequencer": sequencer}
    record = {"eventVersion": "2.1", "eventSource": "aws:s3", "eventTime": "2024-05-01T12:00:00.000Z",
              "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": BUCKET}, "object": obj}}  # fmt: skip
    return json.dumps({"Records": [record]})


# %-placeholders where s3_body puts the object's fields (test: the two agree byte for byte).
_BODY = s3_body("cam%03d/%07d.jpg", 4242, "%032x", "%018X").replace("4242", "%d")


class BurstSource:
    """An ``EventSource`` whose backlog is the whole burst; nacked messages come back first."""

    name = Source.S3_SQS

    def __init__(self, total: int) -> None:
        self._fresh = (self._message(i) for i in range(total))
        self._again: deque[RawMessage] = deque()
        self.acked = 0

    @staticmethod
    def _message(i: int) -> RawMessage:
        # The bytes json.dumps gives for this record, rendered from a template: S3 writes the body,
        # so its encoding is not the producer's work and must not take the cores it runs on.
        body = _BODY % (i % 200, i, i % 4096, i, i)
        return RawMessage(Source.S3_SQS, f"m{i}", body.encode())

    def receive(self, max_messages: int, wait_s: float) -> list[RawMessage]:
        out: list[RawMessage] = []
        while self._again and len(out) < max_messages:
            out.append(self._again.popleft())
        for message in self._fresh:
            out.append(message)
            if len(out) >= max_messages:
                break
        return out

    def ack(self, messages: Sequence[RawMessage]) -> list[RawMessage]:
        self.acked += len(messages)
        return []

    def nack(self, messages: Sequence[RawMessage]) -> None:
        self._again.extend(messages)

    def reject(self, messages: Sequence[RawMessage]) -> None:
        raise AssertionError(f"unexpected dead letters: {len(messages)}")

    def extend(self, messages: Sequence[RawMessage], seconds: float) -> None:
        return None

    def close(self) -> None:
        return None


@pytest.fixture
def load_redis() -> Iterator[OwnRedis]:
    server = OwnRedis(appendfsync="everysec").start()
    yield server
    server.close()


def unbounded_memory(settings: Settings, redis: OwnRedis) -> int:
    """Redis memory the same burst takes enqueued at once (no backpressure), measured then removed."""
    probe = settings.with_(redis_prefix="unbounded:")
    with redis.client() as client:
        before = int(client.info("memory")["used_memory"])
        queue = ChangeQueue(make_client(probe), client, probe)
        step = settings.batch_size
        for start in range(0, TOTAL, step):
            queue.enqueue([ObjectChange(Provider.S3, BUCKET, f"cam{i % 200:03d}/{i:07d}.jpg", Kind.CREATED, 1,
                                        Source.S3_SQS, size=i % 4096, etag=f"{i:032x}", sequencer=f"{i:032X}",
                                        source_id=f"m{i}") for i in range(start, start + step)])  # fmt: skip
        used = int(client.info("memory")["used_memory"]) - before
        for key in client.scan_iter(match="unbounded:*"):
            client.delete(key)
    return used


# PostgreSQL's processes that write for every database (the WAL and the buffers this run dirties).
POSTGRES_SHARED = ("walwriter", "checkpointer", "background writer")


class Sampler(threading.Thread):
    """Peaks of Redis memory, queue depth and worker RSS every 0.1 s, and the CPU seconds each part
    of the pipeline spent. The set of processes is found again once a second only: a scan of /proc
    costs the producer's core more than reading the processes it found."""

    RESCAN_EVERY = 10  # ticks

    def __init__(self, redis: OwnRedis, worker: WorkerProcess, queue_key: str, database: str) -> None:
        super().__init__(daemon=True)
        self.redis, self.worker, self.queue_key, self.database = redis, worker, queue_key, database
        self.peak_memory = self.peak_depth = self.peak_rss = 0
        self.done = threading.Event()
        self.cpu: dict[int, CpuSpan] = {}  # pid -> its part and CPU seconds when first and last read

    def run(self) -> None:
        processes: list[tuple[str, psutil.Process]] = []
        tick = 0
        with self.redis.client() as client:
            while True:
                if tick % self.RESCAN_EVERY == 0:
                    processes = self._processes()
                self._read(processes)
                self.peak_memory = max(self.peak_memory, int(client.info("memory")["used_memory"]))
                self.peak_depth = max(self.peak_depth, int(client.llen(self.queue_key)))
                tick += 1
                if self.done.wait(0.1):
                    self._read(processes)  # the last reading closes every span
                    return

    def _processes(self) -> list[tuple[str, psutil.Process]]:
        """The worker's process tree, this run's Redis, and the PostgreSQL processes that work for
        this run: backends and autovacuum workers on its database, WAL writer, checkpointer and
        background writer (not what other databases of the server are doing)."""
        assert self.worker.proc is not None and self.redis.proc is not None
        found: list[tuple[str, psutil.Process]] = [("redis", psutil.Process(self.redis.proc.pid))]
        with contextlib.suppress(psutil.NoSuchProcess):
            found += [("worker", proc) for proc in process_tree(self.worker.proc.pid)]
        for proc in psutil.process_iter(["cmdline"]):
            title = (proc.info["cmdline"] or [""])[0]  # "postgres: 15/main: root DB 127.0.0.1(port) idle"
            words = title.split()
            if words[:1] == ["postgres:"] and (self.database in words or any(r in title for r in POSTGRES_SHARED)):
                found.append(("postgres", proc))
        return found

    def _read(self, processes: list[tuple[str, psutil.Process]]) -> None:
        for part, proc in processes:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                seconds = cpu_seconds(proc)
                if part == "worker":
                    self.peak_rss = max(self.peak_rss, proc.memory_info().rss)
                span = self.cpu.setdefault(proc.pid, CpuSpan(part, seconds))
                span.last = seconds

    def cpu_by_part(self, exclude: set[int]) -> dict[str, float]:
        """CPU seconds per part between the first and the last reading; ``exclude``: pids that
        measure rather than work (the probe's backend, which counts the catalog)."""
        totals: dict[str, float] = {}
        for pid, span in self.cpu.items():
            if pid not in exclude:
                totals[span.part] = totals.get(span.part, 0.0) + span.last - span.first
        return totals


class CpuSpan:
    __slots__ = ("first", "last", "part")

    def __init__(self, part: str, first: float) -> None:
        self.part, self.first, self.last = part, first, first


class ThreadCpu:
    """The CPU seconds one thread spends running ``target``."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def timed(self, target: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> None:
            started = time.thread_time()
            try:
                target(*args, **kwargs)
            finally:
                self.seconds = time.thread_time() - started

        return run


@pytest.mark.bench
@pytest.mark.timeout(900)
def test_burst_of_200k_changes_with_bounded_memory(
    load_redis: OwnRedis, settings: Settings, add_mount: Any, tmp_path: Path, bench_report: Any
) -> None:
    own = settings.with_(redis_url=load_redis.url, redis_prefix="", max_queue_depth=MAX_DEPTH,
                         feed_maxlen=10_000, batch_size=DEFAULTS.batch_size,
                         batch_window_s=DEFAULTS.batch_window_s)  # fmt: skip
    add_mount("load", f"s3://{BUCKET}/")
    baseline = unbounded_memory(own, load_redis)
    with load_redis.client() as client:
        idle = int(client.info("memory")["used_memory"])
    env = env_for(own, MOUNTSYNC_MAX_QUEUE_DEPTH=str(MAX_DEPTH), MOUNTSYNC_FEED_MAXLEN="10000")
    worker = WorkerProcess(env, tmp_path / "worker.log", "changes", 2).start()
    runtime = build_runtime(own)
    source, stop = BurstSource(TOTAL), threading.Event()
    database = urlsplit(own.database_url).path.lstrip("/")
    sampler, producer_cpu = Sampler(load_redis, worker, "changes", database), ThreadCpu()
    producer = threading.Thread(target=producer_cpu.timed(run_source), daemon=True,
                                args=(source, runtime.pipeline(normalize_s3), own, stop),
                                kwargs={"depth": runtime.queue.depth})  # fmt: skip
    with psycopg.connect(own.database_url, autocommit=True) as conn:
        log_start = log_head(conn)
    started = time.perf_counter()
    sampler.start()
    producer.start()
    try:
        # The catalog is counted only once the producer has queued the whole burst and the change
        # log's head (one index probe) shows every change could be in: a count of 200k rows every
        # 0.1 s, in parallel workers of its own, took ~40% of the samples of PostgreSQL's activity
        # in the last seconds of the run, CPU taken from the pipeline it measures.
        with psycopg.connect(own.database_url, autocommit=True) as probe:
            measuring = {probe.info.backend_pid}
            wait_for(
                lambda: (
                    source.acked >= TOTAL
                    and log_head(probe) >= log_start + TOTAL
                    and live_count(probe, "load") >= TOTAL
                ),
                timeout=600,
                what=f"{TOTAL} changes applied",
                interval=0.1,
            )
        seconds = time.perf_counter() - started
    finally:
        stop.set()
        producer.join(30)
        sampler.done.set()
        sampler.join(5)
        worker.stop()
        runtime.close()
    assert source.acked == TOTAL
    rate = TOTAL / seconds
    peak_mib = (sampler.peak_memory - idle) / MiB
    bench_report.row("load: 200k changes producer->Redis->catalog", rate, "changes/s",
                     target=">= 25,000/s (issue 18), no loss")  # fmt: skip
    bench_report.row("load: peak Redis memory above idle", peak_mib, "MiB", "same burst enqueued at once",
                     baseline / MiB, target="< 0.33x (bounded by the depth limit)")  # fmt: skip
    bench_report.row("load: peak changes queue depth", sampler.peak_depth, "tasks", "MOUNTSYNC_MAX_QUEUE_DEPTH",
                     MAX_DEPTH, target=f"<= {MAX_DEPTH + 1} (limit + 1)")  # fmt: skip
    bench_report.row("load: peak worker process RSS", sampler.peak_rss / MiB, "MiB", target="< 400 MiB")
    report_cpu(bench_report, {"producer thread": producer_cpu.seconds, **sampler.cpu_by_part(measuring)})
    assert sampler.peak_depth <= MAX_DEPTH + 1, sampler.peak_depth
    assert peak_mib < baseline / MiB / 3, (peak_mib, baseline / MiB)
    assert sampler.peak_rss < 400 * MiB


def log_head(conn: psycopg.Connection) -> int:
    """The highest committed change-log cursor. Each new key of the burst logs one entry, so the
    head is at ``start + TOTAL`` or past it by the time the last change is in: the cheap check
    never delays the end (cursors a rolled-back batch drew get it there early; the count decides)."""
    row = conn.execute("SELECT coalesce(max(cursor), 0) FROM change_log").fetchone()
    return int(row[0]) if row else 0


# What 25,000 changes/s leaves each change on this machine's two cores.
CPU_BUDGET_US = 2 / 25_000 * 1e6


def report_cpu(bench_report: Any, seconds: dict[str, float]) -> None:
    """Where the cores went: CPU per change of each part, and of all of them beside the budget that
    25,000 changes/s on two cores allows (above it, that rate cannot be reached on this machine)."""
    for part, shown in CPU_PARTS.items():
        bench_report.row(f"load: CPU per change, {shown}", seconds.get(part, 0.0) / TOTAL * 1e6, "us")
    bench_report.row("load: CPU per change, all of them", sum(seconds.values()) / TOTAL * 1e6, "us",
                     "2 cores / 25,000 changes/s", CPU_BUDGET_US, target="<= 1.0x for 25,000/s")  # fmt: skip


CPU_PARTS = {
    "producer thread": "producer thread (incl. the source)",
    "worker": "worker processes",
    "postgres": "PostgreSQL processes",
    "redis": "Redis",
}


def test_template_body_is_what_json_dumps_gives() -> None:
    for i in (0, 7, 199, 4096, TOTAL - 1):
        expected = s3_body(f"cam{i % 200:03d}/{i:07d}.jpg", i % 4096, f"{i:032x}", f"{i:018X}")
        assert BurstSource._message(i).body == expected.encode()
