"""``mountsync flower`` against a real worker: authentication, workers, task types, queue lengths,
and no secret from the environment in what Flower shows about tasks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis as redis_lib

from mountsync.shared.config import Settings
from mountsync.shared.events import Kind, ObjectChange, Provider, Source
from mountsync.shared.queues import ChangeQueue, make_client
from tests.conftest import env_for
from tests.helpers import free_port, wait_for
from tests.ops.conftest import http_get, samples, start_worker, wait_http

USER, PASSWORD = "ops", "flower-pw-3f9a1c"
# Secrets a deployment has in its environment; none may appear in Flower's task views.
CANARIES = {
    "AWS_SECRET_ACCESS_KEY": "canary-aws-7d1e0b",
    "AZURE_STORAGE_CONNECTION_STRING": "AccountName=a;AccountKey=canary-az-55c2e1;",
    "MOUNTSYNC_EVENTGRID_SECRET": "canary-eg-90aa3f",
    "MOUNTSYNC_SMTP_PASSWORD": "canary-smtp-1b7c44",
}


def test_flower_answers_with_auth_and_shows_workers_tasks_and_queues(
    tmp_path: Path, iso_settings: Settings, add_mount: Callable[..., Any],
    catalog_state: Callable[[str], dict[str, Any]], spawn: Any, cli: Any,
) -> None:  # fmt: skip
    env = env_for(iso_settings, FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}", **CANARIES)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    flower = spawn("flower", "--port", str(port), env=env)
    wait_http(f"{base}/healthcheck", flower, "Flower")
    assert http_get(f"{base}/api/workers").status == 401
    assert http_get(f"{base}/api/workers", auth=(USER, "wrong")).status == 401

    def api(path: str) -> Any:
        answer = http_get(f"{base}{path}", auth=(USER, PASSWORD))
        assert answer.status == 200, answer
        return answer.json()

    root = tmp_path / "root"
    root.mkdir()
    add_mount("flowerfs", f"file://{root}")
    client = redis_lib.Redis.from_url(iso_settings.redis_url)
    queue = ChangeQueue(make_client(iso_settings), client, iso_settings)
    for i in range(3):  # three batches wait: no worker consumes this deployment yet
        (root / f"f{i}.jpg").write_bytes(b"x")
        queue.enqueue([ObjectChange(Provider.FS, str(root), f"f{i}.jpg", Kind.CREATED, time.time_ns(),
                                    Source.FS, size=1, etag=f"e{i}", source_id=f"obs-{i}")])  # fmt: skip
    lengths = {q["name"]: q["messages"] for q in api("/api/queues/length")["active_queues"]}
    assert lengths == {"changes": 3, "reindex": 0, "migrations": 0, "alignment": 0, "sinks": 0}

    worker = start_worker(iso_settings, tmp_path / "worker.log", **CANARIES)
    try:
        wait_for(lambda: len(catalog_state("flowerfs")) == 3, what="the 3 queued changes applied")
        assert cli("reindex", "flowerfs", "--wait", **env_for(iso_settings)).returncode == 0
        workers = wait_for(lambda: api("/api/workers?refresh=1"), what="Flower to list the worker")
        assert any(name.startswith("test-") for name in workers), workers

        def tasks() -> dict[str, Any]:
            found = api("/api/tasks")
            done = [t for t in found.values() if t["state"] == "SUCCESS"]
            names = {t["name"] for t in done}
            return found if {"mountsync.apply_changes", "mountsync.reindex_mount"} <= names else {}

        seen = wait_for(tasks, what="Flower to show the finished tasks")
        types = set(api("/api/task/types")["task-types"])
        lengths = {q["name"]: q["messages"] for q in api("/api/queues/length")["active_queues"]}
    finally:
        worker.stop()
    assert {"mountsync.apply_changes", "mountsync.reindex_mount"} <= types  # the types seen run
    registered = set(next(w for name, w in workers.items() if name.startswith("test-"))["registered"])
    assert {"mountsync.apply_changes", "mountsync.reindex_mount", "mountsync.submit_migration",
            "mountsync.alignment.pin"} <= registered  # fmt: skip
    assert lengths["changes"] == 0
    applied = [t for t in seen.values() if t["name"] == "mountsync.apply_changes"]
    assert len(applied) == 3 and all("f" in t["args"] and "jpg" in t["args"] for t in applied)

    shown = json.dumps(seen) + json.dumps([api(f"/api/task/info/{task_id}") for task_id in seen])
    for name, secret in {**CANARIES, "FLOWER_BASIC_AUTH": PASSWORD}.items():
        assert secret not in shown, f"{name} shows in Flower's task list"
    metrics = samples(http_get(f"{base}/metrics").body.decode())
    succeeded = [
        v
        for (name, labels), v in metrics.items()
        if name == "flower_events_total"
        and ("task", "mountsync.apply_changes") in labels
        and ("type", "task-succeeded") in labels
    ]
    assert sum(succeeded) == 3


def test_flower_refuses_to_listen_beyond_loopback_without_auth(cli: Any) -> None:
    refused = cli("flower", "--address", "0.0.0.0", FLOWER_BASIC_AUTH="", FLOWER_AUTH="")
    assert refused.returncode == 2
    assert "without authentication" in refused.stderr and "FLOWER_BASIC_AUTH" in refused.stderr
    half = cli("flower", FLOWER_BASIC_AUTH="", FLOWER_AUTH=".*@example.com")
    assert half.returncode == 2 and "FLOWER_AUTH_PROVIDER" in half.stderr
