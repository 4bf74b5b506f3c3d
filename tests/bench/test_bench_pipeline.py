"""The apply path against its physical floor, and end-to-end throughput as workers are added.

- Apply, including the durable change log, beside a bare ``COPY`` of the same rows (same columns
  as ``objects``) into an UNLOGGED table without indexes: the cheapest way PostgreSQL can take the
  rows at all. Both in batches of the default size, one transaction per batch. Beside it too, the
  durable floor: the same rows COPYed into logged tables shaped like ``objects`` and
  ``change_log`` with all their indexes, in the same transactions; what writing them durably costs
  before any apply logic (ordering guard, upsert, folder counters).
- The ``changes`` queue -> catalog with 1, 2 and 4 worker processes in one ``mountsync worker``,
  and with 2 workers as two separate ``mountsync worker`` nodes (different node names). Workers
  are started and ready first; the clock runs from the first enqueued batch to the last row
  applied, so worker start-up is not counted. Default settings (batch of 2,000, prefetch 1).
- CPU per change of each part (the per-core figures ``deploy/CAPACITY.md`` sizes from): the
  PostgreSQL backend and the client while applying, the worker processes while draining the
  queue, a producer turning S3 notifications into queued batches. CPU time, unlike wall time,
  hardly depends on what else the shared machine runs.

Run with ``pytest -m bench tests/bench/test_bench_pipeline.py``. Figures are per run; the machine
is shared, so the table records the load average beside them.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import redis as redis_lib

from mountsync.producers.normalize.s3 import normalize_s3
from mountsync.producers.runtime import build_runtime
from mountsync.shared.catalog.apply import apply_changes
from mountsync.shared.config import Settings
from mountsync.shared.events import Kind, ObjectChange, Provider, Source
from mountsync.shared.queues import FEED_STREAM, ChangeQueue, make_client
from tests.bench.processes import cpu_seconds, process_tree
from tests.bench.test_bench_load import BurstSource
from tests.conftest import WorkerProcess, env_for
from tests.helpers import live_count, wait_for

pytestmark = [pytest.mark.bench, pytest.mark.timeout(900)]
BATCH = Settings().batch_size
FLOOR_ROWS = 40_000
SCALE_ROWS = 60_000
FLOOR_DDL = """
CREATE UNLOGGED TABLE copy_floor (
    mount_id integer, key text, folder text, size bigint, etag text, version text, seq text,
    event_ns bigint, deleted boolean, source text, source_id text
)
"""

# The durable floor: the same rows COPYed into logged tables shaped like objects and change_log,
# with every index they have, one transaction per batch; no ordering guard, upsert or counters.
DURABLE_DDL = """
CREATE TABLE durable_objects (LIKE objects INCLUDING ALL);
CREATE SEQUENCE durable_cursor AS bigint CACHE 1;
CREATE TABLE durable_change_log (LIKE change_log INCLUDING ALL);
ALTER TABLE durable_change_log ALTER cursor SET DEFAULT nextval('durable_cursor');
"""
DURABLE_COPY_LOG = """COPY durable_change_log (mount, mount_id, dest_folder, folder, key, kind, size, etag,
                                       version, sequencer, event_time) FROM STDIN"""


# Bytes per row of the catalog and the change log, indexes included (after the run, so mostly new rows).
SIZES_SQL = """
SELECT pg_total_relation_size('objects') / greatest((SELECT count(*) FROM objects), 1),
       pg_total_relation_size('change_log') / greatest((SELECT count(*) FROM change_log), 1)
"""


def changes(bucket: str, n: int, offset: int = 0) -> list[ObjectChange]:
    """New keys over 200 folders, as a camera fleet would write them."""
    return [ObjectChange(Provider.S3, bucket, f"cam{i % 200:03d}/{i:07d}.jpg", Kind.CREATED, 1 + i, Source.S3_SQS,
                         size=i % 4096, etag=f"{i:032x}", sequencer=f"{i:032X}", source_id=f"m{i}")
            for i in range(offset, offset + n)]  # fmt: skip


def batches(data: list[ObjectChange]) -> list[list[ObjectChange]]:
    return [data[i : i + BATCH] for i in range(0, len(data), BATCH)]


def objects_row(mount_id: int, c: ObjectChange) -> tuple[Any, ...]:
    """A change as a row of ``objects``' columns (both floors COPY these)."""
    return (mount_id, c.key, c.folder, c.size, c.etag, c.version, c.sequencer, c.event_ns, False, c.source.value,
            c.source_id)  # fmt: skip


def copy_floor(conn: psycopg.Connection, mount_id: int, parts: list[list[ObjectChange]]) -> float:
    """Seconds to COPY the rows into an UNLOGGED, unindexed table, one transaction per batch."""
    conn.execute(FLOOR_DDL)
    conn.commit()
    started = time.perf_counter()
    for part in parts:
        with conn.cursor() as cur, cur.copy("COPY copy_floor FROM STDIN") as copy:
            for c in part:
                copy.write_row(objects_row(mount_id, c))
        conn.commit()
    return time.perf_counter() - started


def durable_copy(conn: psycopg.Connection, mount_id: int, parts: list[list[ObjectChange]]) -> float:
    """Seconds to COPY the rows into the durable floor's two logged, indexed tables."""
    conn.execute(DURABLE_DDL)
    conn.commit()
    started = time.perf_counter()
    for part in parts:
        with conn.cursor() as cur:
            with cur.copy("COPY durable_objects (mount_id, key, folder, size, etag, version, seq, event_ns, "
                          "deleted, source, source_id) FROM STDIN") as copy:  # fmt: skip
                for c in part:
                    copy.write_row(objects_row(mount_id, c))
            with cur.copy(DURABLE_COPY_LOG) as copy:
                for c in part:
                    copy.write_row(("floor", mount_id, "", c.folder, c.key, "created", c.size, c.etag, c.version,
                                    c.sequencer, None))  # fmt: skip
        conn.commit()
    seconds = time.perf_counter() - started
    conn.execute("DROP TABLE durable_objects, durable_change_log; DROP SEQUENCE durable_cursor")
    conn.commit()
    return seconds


def test_apply_beside_a_bare_copy(settings: Settings, add_mount: Any, catalog: psycopg.Connection,
                                  bench_report: Any) -> None:  # fmt: skip
    mount = add_mount("floor", "s3://floor/")
    warm = add_mount("floor-warm", "s3://floor-warm/")
    parts = batches(changes("floor", FLOOR_ROWS))
    with psycopg.connect(settings.database_url) as conn:
        # One batch elsewhere first: temp tables, plans and statistics exist as in a running worker.
        apply_changes(conn, changes("floor-warm", BATCH))
        conn.commit()
        floor_s = copy_floor(conn, mount.id, parts)
        durable_s = durable_copy(conn, mount.id, parts)
        backend = psutil.Process(conn.info.backend_pid)
        wal_before = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]  # type: ignore[index]
        conn.commit()
        server_before, client_before = cpu_seconds(backend), time.process_time()
        started = time.perf_counter()
        for part in parts:
            apply_changes(conn, part)
            conn.commit()
        apply_s = time.perf_counter() - started
        server_cpu, client_cpu = cpu_seconds(backend) - server_before, time.process_time() - client_before
        wal = conn.execute("SELECT pg_current_wal_insert_lsn() - %s::pg_lsn", (wal_before,)).fetchone()[0]  # type: ignore[index]
        sizes = conn.execute(SIZES_SQL).fetchone()
        conn.commit()
        conn.execute("DROP TABLE copy_floor")
        conn.commit()
    logged = catalog.execute("SELECT count(*) FROM change_log WHERE mount_id = %s", (mount.id,)).fetchone()[0]
    assert live_count(catalog, "floor") == FLOOR_ROWS and logged == FLOOR_ROWS
    assert warm.id != mount.id
    us = 1e6 / FLOOR_ROWS
    bench_report.row(f"apply incl. change log, batches of {BATCH:,}", apply_s * us, "µs/change",
                     "bare COPY, UNLOGGED unindexed table", floor_s * us, "<= 2x")  # fmt: skip
    # Where the 2x target stands: the WAL and the indexes alone, with no apply logic at all.
    bench_report.row("apply incl. change log vs the durable floor", apply_s * us, "µs/change",
                     "COPY into logged objects + change_log, all indexes", durable_s * us,
                     "figure: the durable floor")  # fmt: skip
    bench_report.row(f"apply incl. change log, batches of {BATCH:,}: rate", FLOOR_ROWS / apply_s, "changes/s",
                     "bare COPY rate", FLOOR_ROWS / floor_s, "")  # fmt: skip
    bench_report.row("apply: PostgreSQL backend CPU", server_cpu * us, "µs/change", target="per-core figure")
    bench_report.row("apply: client (Python) CPU", client_cpu * us, "µs/change", target="per-core figure")
    bench_report.row("apply: WAL written", float(wal) / FLOOR_ROWS, "B/change", target="sizing figure")
    assert sizes is not None
    bench_report.row("catalog: objects heap + indexes", sizes[0], "B/row", target="sizing figure")
    bench_report.row("change log: heap + indexes", sizes[1], "B/entry", target="sizing figure")


def test_producer_cpu_per_change(settings: Settings, add_mount: Any, bench_report: Any) -> None:
    own = settings.with_(redis_prefix=f"{settings.redis_prefix}prod{uuid.uuid4().hex[:6]}:",
                         batch_size=Settings().batch_size)  # fmt: skip
    runtime = build_runtime(own)
    pipeline = runtime.pipeline(normalize_s3)
    source, total = BurstSource(FLOOR_ROWS), 0
    try:
        started_cpu, started = time.thread_time(), time.perf_counter()
        while messages := source.receive(own.batch_size, 0):
            total += pipeline.process(messages).changes
        cpu, wall = time.thread_time() - started_cpu, time.perf_counter() - started
    finally:
        for key in runtime.redis.scan_iter(match=f"{own.redis_prefix}*", count=1000):
            runtime.redis.delete(key)
        runtime.close()
    assert total == FLOOR_ROWS
    bench_report.row("producer: S3 messages -> changes queue, one thread", total / wall, "changes/s",
                     target="per-core figure")  # fmt: skip
    bench_report.row("producer: CPU", cpu * 1e6 / total, "µs/change", target="per-core figure")


def queue_to_catalog(settings: Settings, add_mount: Any, tmp_path: Path, nodes: list[int],
                     name: str) -> tuple[float, float, float]:  # fmt: skip
    """Changes/s from the first enqueued batch to the last applied row, with ``nodes`` worker
    processes per ``mountsync worker`` node (started and ready before the clock runs), and the
    workers' CPU seconds per change over the same span, and the feed stream's bytes per entry."""
    own = settings.with_(redis_prefix=f"{settings.redis_prefix}scale{uuid.uuid4().hex[:6]}:")
    add_mount(name, f"s3://{name}/")
    env = env_for(own, MOUNTSYNC_FEED_MAXLEN="200000", MOUNTSYNC_BATCH_WINDOW=str(Settings().batch_window_s))
    workers = [WorkerProcess(env, tmp_path / f"{name}-{i}.log", "changes", c).start() for i, c in enumerate(nodes)]
    client = redis_lib.Redis.from_url(own.redis_url)
    queue = ChangeQueue(make_client(own), client, own)
    parts = batches(changes(name, SCALE_ROWS))
    try:
        procs = [p for worker in workers for p in process_tree(worker.proc.pid)]
        cpu_before = cpu_seconds(*procs)
        started = time.perf_counter()
        for part in parts:
            queue.enqueue(part)
        wait_for(lambda: live_count(own.database_url, name) >= SCALE_ROWS, timeout=600,
                 what=f"{SCALE_ROWS} changes applied", interval=0.1)  # fmt: skip
        rate = SCALE_ROWS / (time.perf_counter() - started)
        cpu = (cpu_seconds(*procs) - cpu_before) / SCALE_ROWS
        feed = f"{own.redis_prefix}{FEED_STREAM}"
        feed_bytes = int(client.memory_usage(feed, samples=0) or 0) / max(int(client.xlen(feed)), 1)
        return rate, cpu, feed_bytes
    finally:
        for worker in workers:
            worker.stop()
        for key in client.scan_iter(match=f"{own.redis_prefix}*", count=1000):
            client.delete(key)
        client.close()


@pytest.mark.parametrize(
    ("nodes", "label"),
    [
        ([1], "1 worker process"),
        ([2], "2 worker processes"),
        ([4], "4 worker processes"),
        ([1, 1], "2 worker nodes x 1 process"),
    ],
)
def test_scaling_on_loopback(settings: Settings, add_mount: Any, tmp_path: Path, bench_report: Any,
                             nodes: list[int], label: str) -> None:  # fmt: skip
    rate, cpu, feed_bytes = queue_to_catalog(settings, add_mount, tmp_path, nodes, f"scale-{len(nodes)}x{nodes[0]}")
    if nodes == [2]:
        bench_report.row("Redis feed stream", feed_bytes, "B/entry", target="sizing figure")
    bench_report.row(f"queue -> catalog, {label}", rate, "changes/s", target="scaling curve; >= 25,000/s")
    bench_report.row(f"queue -> catalog, {label}: worker CPU", cpu * 1e6, "µs/change", target="per-core figure")
