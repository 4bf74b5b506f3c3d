"""Side by side on the same 5,000 new objects in moto: Label Studio's own S3 import-storage sync
against mountsync's connector, on a real Label Studio. Time until all tasks exist, then how many
deleted and overwritten objects each leaves wrong."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from mountsync.workers.connectors.label_studio_client import LabelStudioClient
from tests.conftest import Cli, WorkerProcess, env_for
from tests.helpers import wait_for
from tests.standins.label_studio import LabelStudioServer
from tests.standins.s3 import MotoEndpoints

pytestmark = [pytest.mark.bench, pytest.mark.timeout(1800)]
OBJECTS = 5000
CHANGED = 50


def task_count(server: LabelStudioServer, project: int) -> int:
    response = requests.get(f"{server.url}/api/projects/{project}", headers=server.access_headers(), timeout=30)
    response.raise_for_status()
    return int(response.json()["task_number"])


def tasks_by_key(server: LabelStudioServer, project: int, bucket: str) -> dict[str, list[Any]]:
    client = LabelStudioClient(server.url, server.token)
    found: dict[str, list[Any]] = {}
    for task in client.iter_tasks(project):
        found.setdefault(str(task.data["image"]).removeprefix(f"s3://{bucket}/"), []).append(task)
    client.close()
    return found


def wrong_after_changes(tasks: dict[str, list[Any]], deleted: list[str], overwritten: list[str]) -> tuple[int, int]:
    """Deleted objects that still have a task; overwritten objects whose task does not say so (or doubled)."""
    left = sum(1 for key in deleted if tasks.get(key))
    unmarked = 0
    for key in overwritten:
        found = tasks.get(key, [])
        marked = len(found) == 1 and (found[0].meta.get("mountsync") or {}).get("state") == "changed"
        unmarked += not marked
    return left, unmarked


def test_label_studio_own_sync_against_the_connector(
    settings, catalog, add_mount, moto: MotoEndpoints, label_studio_server: LabelStudioServer, tmp_path: Path,
    bench_report,
) -> None:  # fmt: skip
    server = label_studio_server
    s3 = moto.client("s3")
    bucket = f"lsbench-{uuid.uuid4().hex[:6]}"
    s3.create_bucket(Bucket=bucket)
    keys = [f"frames/s{i // 1000}/f_{i:05d}.jpg" for i in range(OBJECTS)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=k.encode()), keys))

    # Label Studio's own: an S3 source storage on the bucket, one sync (it runs inside the request).
    theirs = server.create_project("baseline: Label Studio S3 sync")
    storage = server.add_s3_import_storage(theirs, bucket, "frames/", moto)
    started = time.perf_counter()
    server.sync_s3_import_storage(storage)
    wait_for(lambda: task_count(server, theirs) == OBJECTS, timeout=600, interval=1, what="their tasks")
    their_s = time.perf_counter() - started

    # mountsync: the mount, a worker, the connector; from the reindex to the last task.
    ours = server.create_project("mountsync connector")
    creds = {k: v for k, v in moto.env().items() if k != "AWS_ENDPOINT_URL"}
    env = env_for(settings, LS_TOKEN=server.token, **creds)
    cli = Cli(env)
    add_mount("bench", f"s3://{bucket}/frames/", endpoint_url=moto.endpoint_url)
    log_path = tmp_path / "worker.log"
    log_path.touch()
    worker = WorkerProcess(env, log_path, "changes,reindex,sinks", 2).start()
    try:
        cli("connect", "label-studio", "ls", "--mount", "bench", "--url", server.url, "--project", str(ours),
            "--token-env", "LS_TOKEN", check=True)  # fmt: skip
        started = time.perf_counter()
        cli("reindex", "bench", check=True)
        wait_for(lambda: task_count(server, ours) == OBJECTS, timeout=600, interval=0.5, what="our tasks")
        our_s = time.perf_counter() - started

        deleted, overwritten = keys[:CHANGED], keys[CHANGED : 2 * CHANGED]
        for key in deleted:
            s3.delete_object(Bucket=bucket, Key=key)
        for key in overwritten:
            s3.put_object(Bucket=bucket, Key=key, Body=b"new content")
        server.sync_s3_import_storage(storage)
        cli("reindex", "bench", "--wait", check=True, timeout=600)
        wait_for(lambda: catalog.execute("SELECT cursor >= (SELECT max(cursor) FROM change_log) FROM sinks")
                 .fetchone() == (True,), timeout=300, what="the connector to catch up")  # fmt: skip
    finally:
        worker.stop()
    their_wrong = wrong_after_changes(tasks_by_key(server, theirs, bucket), deleted, overwritten)
    our_wrong = wrong_after_changes(tasks_by_key(server, ours, bucket), deleted, overwritten)

    bench_report.row(f"Label Studio connector, {OBJECTS} new objects", our_s, "s", "Label Studio's own S3 sync",
                     their_s, "<= 1.5x")  # fmt: skip
    bench_report.row(f"deleted objects left with a task (of {CHANGED})", our_wrong[0], "objects",
                     "Label Studio's own S3 sync", their_wrong[0], "0 for mountsync")  # fmt: skip
    bench_report.row(f"overwritten objects not marked (of {CHANGED})", our_wrong[1], "objects",
                     "Label Studio's own S3 sync", their_wrong[1], "0 for mountsync")  # fmt: skip
    assert our_wrong == (0, 0)
    assert our_s <= 1.5 * their_s
