"""Sink benchmarks: the webhook sink's throughput to a local receiver that verifies every signature."""

from __future__ import annotations

import json
import os
import sys
import time

import psycopg
import pytest
import requests

from mountsync.shared.catalog.apply import apply_changes
from mountsync.shared.catalog.change_log import read_changes
from mountsync.shared.catalog.db import open_pool
from mountsync.workers.sinks.delivery import run_delivery
from mountsync.workers.sinks.receivers import open_receiver
from mountsync.workers.sinks.webhook import WebhookReceiver
from tests.helpers import Proc, free_port, port_open, wait_for
from tests.sinks.conftest import SECRETS_KEY, change

pytestmark = [pytest.mark.bench, pytest.mark.timeout(900)]
CHANGES = 100_000


def stats(url: str) -> dict[str, int]:
    return dict(requests.get(url, timeout=10).json())


def test_webhook_sink_throughput(settings, add_mount, catalog, cli, redis_client, bench_report, procs,
                                 tmp_path) -> None:  # fmt: skip
    add_mount("m", "s3://bkt/")
    with psycopg.connect(settings.database_url) as conn:
        for start in range(0, CHANGES, 10_000):
            apply_changes(conn, [change(f"b/{i:07d}.png") for i in range(start, start + 10_000)])
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    added = cli("webhook", "add", "bench", url, "--json", check=True, MOUNTSYNC_SECRETS_KEY=SECRETS_KEY)
    secret = json.loads(added.stdout)["secret"]
    # The receiver runs in its own process, as a user's would, and verifies every signature.
    receiver = Proc([sys.executable, "-m", "tests.sinks.receiver", str(port), secret], os.environ,
                    tmp_path / "receiver.log").start()  # fmt: skip
    procs.append(receiver)
    wait_for(lambda: port_open(port), what="the receiver")
    catalog.execute("UPDATE sinks SET cursor = 0")
    sink_settings = settings.with_(extra={"MOUNTSYNC_SECRETS_KEY": SECRETS_KEY})
    sink_id = catalog.execute("SELECT id FROM sinks").fetchone()[0]
    pool = open_pool(settings.database_url, max_size=2, name="bench-sinks")
    started = time.perf_counter()
    while catalog.execute("SELECT cursor FROM sinks").fetchone()[0] < CHANGES:
        run_delivery(pool, redis_client, settings.redis_prefix, sink_id,
                     lambda sink: open_receiver(sink, sink_settings, os.environ),
                     retry_for_s=60, budget_s=600)  # fmt: skip
    rate = CHANGES / (time.perf_counter() - started)
    pool.close()
    assert stats(url) == {"entries": CHANGES, "messages": CHANGES // 500, "unverified": 0}

    # Baseline: one signed POST per change (how the alert webhook delivered, one alert per POST).
    one_by_one = WebhookReceiver("bench", url, secret)
    sample = [e.to_json() for e in read_changes(catalog, 0, limit=1000)]
    started = time.perf_counter()
    for n, entry in enumerate(sample):
        one_by_one.post(f"single-{n}", {"type": "mountsync.changes", "data": {"entries": [entry]}})
    base_rate = len(sample) / (time.perf_counter() - started)
    one_by_one.close()
    bench_report.row("webhook sink, 100k changes, batches of 500", rate, "changes/s", "one POST per change",
                     base_rate, ">= 20,000/s")  # fmt: skip
    assert rate >= 20_000
