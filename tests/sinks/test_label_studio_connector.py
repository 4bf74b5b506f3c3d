"""The Label Studio connector against a REAL Label Studio (tests/standins/label_studio.py) and a
moto S3 bucket, with real workers, beat, PostgreSQL and Redis: issue 16's scenario."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mountsync.shared.config import Settings
from mountsync.workers.connectors.label_studio_client import LabelStudioClient, Task
from tests.conftest import Cli, WorkerProcess, env_for
from tests.helpers import Proc, wait_for
from tests.standins.label_studio import LabelStudioProject
from tests.standins.s3 import MotoEndpoints

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]
MOUNT = "ls-frames"


@pytest.fixture
def ls_env(settings: Settings, label_studio: LabelStudioProject, moto: MotoEndpoints, tmp_path: Path) -> dict[str, str]:
    creds = {k: v for k, v in moto.env().items() if k != "AWS_ENDPOINT_URL"}
    return env_for(settings, LS_TOKEN=label_studio.server.token, MOUNTSYNC_STATE_DIR=str(tmp_path), **creds)


@pytest.fixture
def ls_client(label_studio: LabelStudioProject) -> Iterator[LabelStudioClient]:
    client = LabelStudioClient(label_studio.server.url, label_studio.server.token)
    yield client
    client.close()


def start_worker(env: dict[str, str], tmp_path: Path) -> WorkerProcess:
    log_path = tmp_path / "worker.log"
    log_path.touch()
    return WorkerProcess(env, log_path, "changes,reindex,sinks", 2).start()


def tasks_by_key(client: LabelStudioClient, project: int) -> dict[str, list[Task]]:
    found: dict[str, list[Task]] = {}
    for task in client.iter_tasks(project):
        found.setdefault(str(task.meta["mountsync"]["key"]), []).append(task)
    return found


def etags(conn: psycopg.Connection) -> dict[str, str]:
    rows = conn.execute(
        "SELECT o.key, o.etag FROM objects o JOIN mounts m ON m.id = o.mount_id WHERE m.name = %s AND NOT o.deleted",
        (MOUNT,),
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def reindex(cli: Cli) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cli("reindex", MOUNT, "--wait", "--json", check=True, timeout=300).stdout)
    return result


def test_a_project_follows_the_bucket_and_keeps_annotated_work_through_a_worker_kill(
    settings: Settings,
    catalog: psycopg.Connection,
    add_mount: Any,
    moto: MotoEndpoints,
    label_studio: LabelStudioProject,
    ls_client: LabelStudioClient,
    ls_env: dict[str, str],
    procs: list[Proc],
    tmp_path: Path,
) -> None:
    s3 = moto.client("s3")
    bucket = f"ls-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    keys = [f"clips/c{i // 100}/frame_{i:04d}.jpg" for i in range(500)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=f"v1 {key}".encode())
    add_mount(MOUNT, f"s3://{bucket}/", endpoint_url=moto.endpoint_url)
    cli = Cli(ls_env)
    worker = start_worker(ls_env, tmp_path)
    beat = Proc.mountsync(["beat", "--loglevel", "WARNING"], ls_env, tmp_path / "beat.log").start()
    procs.append(beat)
    project = label_studio.project_id

    # The two commands a Label Studio user runs (README): the mount exists, then connect.
    connected = cli("connect", "label-studio", "ls", "--mount", MOUNT, "--url", label_studio.server.url,
                    "--project", str(project), "--token-env", "LS_TOKEN", "--json")  # fmt: skip
    assert connected.returncode == 0, connected.stderr
    assert reindex(cli)["created"] == 500
    wait_for(lambda: len(tasks_by_key(ls_client, project)) == 500, timeout=120, what="500 tasks")
    first = tasks_by_key(ls_client, project)
    assert all(len(t) == 1 for t in first.values())
    assert first[keys[0]][0].data == {"image": f"s3://{bucket}/{keys[0]}"}
    before = etags(catalog)
    head = catalog.execute("SELECT max(cursor) FROM change_log").fetchone()[0]

    deleted, annotated = keys[0:50], keys[0:10]
    overwritten, created = keys[100:150], [f"clips/new/frame_{i:04d}.jpg" for i in range(50)]
    for key in annotated:
        label_studio.server.annotate(first[key][0].id)
    for key in deleted:
        s3.delete_object(Bucket=bucket, Key=key)
    for key in overwritten:
        s3.put_object(Bucket=bucket, Key=key, Body=f"v2 {key}".encode())
    for key in created:
        s3.put_object(Bucket=bucket, Key=key, Body=f"v1 {key}".encode())

    # SIGKILL the worker in the middle of the connector's delivery: after it recorded the keys it
    # is importing, before it could record the task ids Label Studio gave back.
    cli("reindex", MOUNT, check=True)
    wait_for(
        lambda: catalog.execute("SELECT count(*) FROM connector_items WHERE state = 'importing'").fetchone() != (0,),
        timeout=60, interval=0.01, what="the connector to start importing",
    )  # fmt: skip
    worker.kill()
    killed_at = time.monotonic()
    worker = start_worker(ls_env, tmp_path)
    try:
        wait_for(
            lambda: catalog.execute(
                "SELECT count(*) FROM sinks s WHERE s.name = 'ls' AND s.cursor >= (SELECT max(cursor) FROM change_log)"
            ).fetchone() == (1,),
            timeout=150, interval=0.5, what="the connector to catch up after the kill",
        )  # fmt: skip
        resumed_in = time.monotonic() - killed_at
        kinds = catalog.execute("SELECT kind, count(*) FROM change_log WHERE cursor > %s GROUP BY kind", (head,))
        assert dict(kinds.fetchall()) == {"created": 50, "updated": 50, "deleted": 50}
    finally:
        worker.stop()
    assert resumed_in < 120, f"delivery resumed {resumed_in:.0f} s after the kill"

    after = etags(catalog)
    tasks = tasks_by_key(ls_client, project)
    assert {k: len(v) for k, v in tasks.items() if len(v) != 1} == {}, "duplicate tasks"
    expected_keys = (set(keys) - set(deleted)) | set(annotated) | set(created)
    assert set(tasks) == expected_keys
    for key in annotated:  # annotated work is never deleted: kept and marked
        [task] = tasks[key]
        assert task.annotations == 1
        assert task.meta["mountsync"]["state"] == "deleted" and task.meta["mountsync"]["deleted"] is True
    for key in overwritten:
        [task] = tasks[key]
        ours = task.meta["mountsync"]
        assert (ours["state"], ours["old_etag"], ours["new_etag"]) == ("changed", before[key], after[key])
        assert before[key] != after[key]
    for key in created:
        [task] = tasks[key]
        assert task.data == {"image": f"s3://{bucket}/{key}"} and task.meta["mountsync"]["state"] == "live"
    untouched = set(keys) - set(deleted) - set(overwritten)
    assert {tasks[k][0].meta["mountsync"]["state"] for k in untouched} == {"live"}
    alerts = json.loads(cli("sink", "alerts", "ls", "--json", check=True).stdout)
    assert sorted(a["key"] for a in alerts if a["kind"] == "annotated-task-deleted") == sorted(annotated)

    # Delivered again from the start: everything is already applied, nothing changes.
    cli("sink", "replay", "ls", "--from", "0", check=True)
    worker = start_worker(ls_env, tmp_path)
    try:
        wait_for(lambda: json.loads(cli("sink", "list", "--json", check=True).stdout)[0]["lag_entries"] == 0,
                 timeout=120, what="the replay to finish")  # fmt: skip
    finally:
        worker.stop()
    again = tasks_by_key(ls_client, project)
    assert {k: [t.id for t in v] for k, v in again.items()} == {k: [t.id for t in v] for k, v in tasks.items()}
    assert {k: v[0].meta for k, v in again.items()} == {k: v[0].meta for k, v in tasks.items()}
