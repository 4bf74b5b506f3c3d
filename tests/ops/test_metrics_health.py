"""Health and metrics endpoints of producers and ``mountsync serve``, scraped after real traffic."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from werkzeug.test import Client

from mountsync.producers.health import health_app
from mountsync.shared.config import Settings
from tests.conftest import env_for
from tests.helpers import free_port, wait_for
from tests.ops.conftest import http_get, http_post, scrape, start_worker, value, wait_http

FRAMES = [f"seq/frame_{i:04d}.png" for i in range(20)]


def test_producer_and_serve_metrics_follow_real_traffic(
    tmp_path: Path, iso_settings: Settings, add_mount: Callable[..., Any],
    catalog_state: Callable[[str], dict[str, Any]], spawn: Any,
) -> None:  # fmt: skip
    root = tmp_path / "root"
    root.mkdir()
    add_mount("opsfs", f"file://{root}")
    env = env_for(iso_settings)
    serve_port, producer_port = free_port(), free_port()
    serve = spawn("serve", "--port", str(serve_port), "--insecure-receivers", env=env)
    producer = spawn("produce", "--metrics-port", str(producer_port), "fs", "--mount", "opsfs", env=env)
    serve_url, producer_url = f"http://127.0.0.1:{serve_port}", f"http://127.0.0.1:{producer_port}"
    wait_http(f"{producer_url}/healthz", producer, "producer health endpoint")
    wait_http(f"{serve_url}/healthz", serve, "serve")

    ready = http_get(f"{producer_url}/readyz")
    assert ready.status == 200 and ready.json()["checks"] == {"redis": "ok", "postgres": "ok"}
    for i in range(5):
        (root / "a").mkdir(exist_ok=True)
        (root / "a" / f"f{i}.jpg").write_bytes(b"x" * (i + 1))

    def produced() -> bool:
        got = scrape(f"{producer_url}/metrics")
        return (value(got, "mountsync_events_received_total", source="fs") >= 5
                and value(got, "mountsync_changes_enqueued_total", source="fs") >= 5)  # fmt: skip

    wait_for(produced, what="the producer to count 5 received and enqueued changes")
    # No worker consumes this deployment's queues yet: the backlog and its age show in serve.
    lagging = wait_for(
        lambda: (m := scrape(f"{serve_url}/metrics"))
        and value(m, "mountsync_changes_lag_seconds") >= 1.0 and m,
        what="the changes lag to reach 1 s",
    )  # fmt: skip
    assert value(lagging, "mountsync_queue_length", queue="changes") >= 1
    assert value(lagging, "mountsync_queue_length", queue="reindex") >= 1  # the watcher's start-up rescan
    assert value(lagging, "mountsync_system_up", part="redis") == 1
    assert value(lagging, "mountsync_system_up", part="postgres") == 1

    worker = start_worker(iso_settings, tmp_path / "worker.log")
    try:
        wait_for(lambda: len(catalog_state("opsfs")) == 5, what="5 files in the catalog")
        drained = wait_for(
            lambda: (m := scrape(f"{serve_url}/metrics"))
            and value(m, "mountsync_queue_length", queue="changes") == 0
            and value(m, "mountsync_queue_length", queue="reindex") == 0
            and value(m, "mountsync_queue_unacked") == 0 and m,
            what="the queues to drain",
        )  # fmt: skip
    finally:
        worker.stop()
    assert value(drained, "mountsync_changes_lag_seconds") == 0

    # A malformed push is dead-lettered: counted by serve and open in the catalog.
    assert http_post(f"{serve_url}/push/gcs", b"not json").status == 400
    after = scrape(f"{serve_url}/metrics")
    assert value(after, "mountsync_dead_lettered_total", source="gcs-push", reason="push envelope") == 1
    assert value(after, "mountsync_dead_letters_open", source="gcs-push") == 1
    ready = http_get(f"{serve_url}/readyz")
    assert ready.status == 200 and ready.json()["checks"] == {"redis": "ok", "postgres": "ok"}
    assert producer.stop() == 0
    assert "producer stopped" in producer.output()


def test_reconcile_alerts_and_quarantine_show_in_serve_metrics(
    tmp_path: Path, settings: Settings, add_mount: Callable[..., Any], cli: Any, worker: Any, spawn: Any,
) -> None:  # fmt: skip
    root = tmp_path / "root"
    for i, key in enumerate(FRAMES):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(b"\x89PNG frame %d" % i)
    (root / "seq" / "seq.csv").write_bytes(b"# annotations\n")
    add_mount("opsalign", f"file://{root}")
    port = free_port()
    serve = spawn("serve", "--port", str(port), "--insecure-receivers", env=env_for(settings))
    started = time.time()

    def run(*args: str) -> Any:
        return json.loads(cli(*args, "--json", check=True).stdout)

    run("reindex", "opsalign", "--wait")
    wait_for(lambda: any(d["pinned"] for d in run("datasets", "opsalign")), what="the import pin")
    run("pin", "opsalign", "seq", "--last-annotated", "10")
    (root / FRAMES[3]).unlink()  # behind the watcher's back: only the reconcile sees it
    summary = run("reindex", "opsalign", "--wait")
    assert (summary["created"], summary["updated"], summary["deleted"]) == (0, 0, 1)
    wait_for(lambda: run("alerts", "opsalign"), what="an open alert")

    wait_http(f"http://127.0.0.1:{port}/healthz", serve, "serve")
    got = scrape(f"http://127.0.0.1:{port}/metrics")
    assert value(got, "mountsync_reindex_last_differences", mount="opsalign", kind="deleted") == 1
    assert value(got, "mountsync_reindex_last_differences", mount="opsalign", kind="created") == 0
    assert value(got, "mountsync_reindex_last_failed", mount="opsalign") == 0
    assert value(got, "mountsync_reindex_last_finished_timestamp_seconds", mount="opsalign") >= started - 1
    assert value(got, "mountsync_alignment_alerts_open", kind="remove") == 1
    assert value(got, "mountsync_datasets_quarantined") == 1


class PingingSource:
    def __init__(self) -> None:
        self.error: Exception | None = None

    def ping(self) -> None:
        if self.error:
            raise self.error


def test_producer_readyz_reports_the_failing_dependency() -> None:
    source = PingingSource()
    checks = {"redis": lambda: None, "source": source.ping}
    client = Client(health_app(checks))
    assert client.get("/readyz").status_code == 200
    source.error = ConnectionError("subscription not found")
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json == {"status": "unavailable", "checks": {
        "redis": "ok", "source": "unavailable: ConnectionError: subscription not found"}}  # fmt: skip
    assert client.get("/healthz").status_code == 200  # liveness does not depend on the source
    assert client.get("/metrics").status_code == 200
