"""HTTP API benchmarks on a real ``mountsync serve`` (uvicorn) and PostgreSQL:

- reading the change feed through ``GET /api/v1/changes`` in pages of 1,000 (target >= 50,000
  entries/s), beside the same query run straight on PostgreSQL (the floor HTTP adds to);
- a page of 1,000 objects from a 100k-object mount, p95 over random pages (target < 50 ms).

Run with ``pytest -m bench tests/bench/test_bench_api.py``.
"""

from __future__ import annotations

import json
import random
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mountsync.shared.catalog.apply import apply_changes
from mountsync.shared.catalog.change_log import read_changes
from mountsync.shared.catalog.listing import encode_key_cursor
from mountsync.shared.config import Settings
from mountsync.shared.events import Kind, ObjectChange, Provider, Source
from tests.conftest import env_for
from tests.helpers import Proc, bearer, free_port, wait_for

pytestmark = pytest.mark.bench
OBJECTS, PAGE, PAGES_TIMED = 100_000, 1000, 200


def get(url: str, headers: dict[str, str]) -> Any:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def test_bench_feed_and_objects_pages(settings: Settings, add_mount, catalog, procs: list[Proc], bench_report,
                                      tmp_path: Path) -> None:  # fmt: skip
    add_mount("bench-api", "s3://bench-api/")
    keys = [f"f{i % 500:03d}/obj_{i:07d}.jpg" for i in range(OBJECTS)]
    with psycopg.connect(settings.database_url) as conn:
        for start in range(0, OBJECTS, 2000):
            batch = keys[start : start + 2000]
            apply_changes(conn, [ObjectChange(Provider.S3, "bench-api", k, Kind.CREATED, 1, Source.S3_SQS,
                                              size=1, etag="e", sequencer="1") for k in batch])  # fmt: skip
    auth = bearer(catalog, "read")
    port = free_port()
    env = env_for(settings, MOUNTSYNC_LOG_LEVEL="WARNING")
    serve = Proc.mountsync(["serve", "--port", str(port), "--receivers", "none"], env, tmp_path / "serve.log").start()
    procs.append(serve)
    base = f"http://127.0.0.1:{port}/api/v1"

    def up() -> bool:
        try:
            return bool(get(f"{base}/mounts", auth))
        except OSError:
            assert serve.alive(), serve.tail()
            return False

    wait_for(up, timeout=60, what="serve to answer")
    get(f"{base}/changes?after=0&limit={PAGE}", auth)  # warm-up

    started, after, read = time.perf_counter(), 0, 0
    while True:
        page = get(f"{base}/changes?after={after}&limit={PAGE}", auth)
        if not page["changes"]:
            break
        read += len(page["changes"])
        after = page["next_cursor"]
    feed_rate = read / (time.perf_counter() - started)
    assert read == OBJECTS

    with psycopg.connect(settings.database_url) as conn:
        started, after, direct = time.perf_counter(), 0, 0
        while entries := read_changes(conn, after, limit=PAGE):
            direct += len(entries)
            after = entries[-1].cursor
        sql_rate = direct / (time.perf_counter() - started)

    rng, ordered = random.Random(7), sorted(keys)  # the API pages in key order
    timings = []
    for _ in range(PAGES_TIMED):
        cursor = encode_key_cursor(ordered[rng.randrange(OBJECTS - PAGE)])
        began = time.perf_counter()
        page = get(f"{base}/mounts/bench-api/objects?limit={PAGE}&cursor={cursor}", auth)
        timings.append(time.perf_counter() - began)
        assert len(page["objects"]) == PAGE
    p95_ms = statistics.quantiles(timings, n=20)[18] * 1000

    bench_report.row("GET /api/v1/changes, pages of 1,000", feed_rate, "entries/s",
                     "the same query on PostgreSQL", sql_rate, ">= 50,000/s")  # fmt: skip
    bench_report.row("GET /objects, page of 1,000 of 100k, p95", p95_ms, "ms", "", None, "< 50 ms")
