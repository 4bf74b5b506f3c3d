"""``POST /push/minio`` (MinIO's webhook target, as docker-compose.yml configures it) to the catalog."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from mountsync.shared.config import Settings
from tests.conftest import ROOT, env_for
from tests.helpers import free_port, wait_for
from tests.ops.conftest import http_post, wait_http

PAYLOAD = (ROOT / "tests" / "s3" / "payloads" / "minio_put.json").read_bytes()
TOKEN = "minio-hook-token-1e2d"


def test_minio_webhook_events_reach_the_catalog(
    settings: Settings, add_mount: Callable[..., Any], catalog: psycopg.Connection,
    catalog_state: Callable[[str], dict[str, Any]], worker: Any, spawn: Any,
) -> None:  # fmt: skip
    add_mount("minio", "minio://frames", endpoint_url="http://127.0.0.1:9")
    port = free_port()
    serve = spawn(
        "serve", "--port", str(port), "--receivers", "minio", env=env_for(settings, MOUNTSYNC_MINIO_WEBHOOK_TOKEN=TOKEN)
    )
    url = f"http://127.0.0.1:{port}/push/minio"
    wait_http(f"http://127.0.0.1:{port}/healthz", serve, "serve")

    assert http_post(url, PAYLOAD).status == 401
    assert http_post(url, PAYLOAD, {"Authorization": "Bearer wrong"}).status == 401
    answer = http_post(url, PAYLOAD, {"Authorization": f"Bearer {TOKEN}"})
    assert (answer.status, answer.json()) == (200, {"queued": 1, "dead_lettered": 0})
    state = wait_for(lambda: catalog_state("minio"), what="the MinIO event in the catalog")
    assert state == {"cam 2/000124.jpg": {"size": 51234, "etag": "a4c0e5a2f3d1b7c9e8f6a5b4c3d2e1f0",
                                          "version": None}}  # fmt: skip
    # Malformed: recorded as a dead letter and answered 200 so MinIO does not retry it forever.
    bad = http_post(url, b'{"EventName": "s3:ObjectCreated:Put"}', {"Authorization": TOKEN})
    assert (bad.status, bad.json()) == (200, {"queued": 0, "dead_lettered": 1})
    assert catalog.execute("SELECT source, reason FROM dead_letters").fetchall() == [
        ("s3-sqs", "not an S3 event: no 'Records', no EventBridge 'detail-type'")
    ]
