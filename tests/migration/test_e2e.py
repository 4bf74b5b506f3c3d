"""End to end with a real ``mountsync worker -Q migrations``: the CLI, the HTTP API, a task sent
by name by another service, cancel, and SIGKILL of the worker mid-multipart then resume.

These tests run their own worker (own Redis key prefix, so no other worker takes their tasks)
with moto's credentials in its environment and the default lease/visibility settings: a killed
worker's chunk comes back within 2 minutes, without beat.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mountsync.shared.config import Settings
from mountsync.shared.migration.client import JobNotFound, MigrationClient
from mountsync.shared.queues import QUEUE_MIGRATIONS, TASK_SUBMIT_MIGRATION, make_client
from tests.conftest import Cli, WorkerProcess, env_for
from tests.helpers import bearer, wait_for
from tests.migration.test_fs_to_fs import MiB, make_tree

pytestmark = pytest.mark.slow
SMALL = {"part_size": 5 * MiB, "multipart_threshold": 5 * MiB, "max_buffer_bytes": 30 * MiB}


@pytest.fixture(scope="module")
def mig_settings(settings: Settings) -> Settings:
    return settings.with_(redis_prefix=f"{settings.redis_prefix}mig:")


@pytest.fixture(scope="module")
def mig_env(mig_settings: Settings, moto_server: Any) -> dict[str, str]:
    env = env_for(mig_settings, **moto_server.env())
    env.pop("AWS_ENDPOINT_URL")  # specs name the endpoint; nothing else should use moto
    # The default visibility timeout and lease (a killed worker's chunk is back within 2 minutes);
    # the short time limit makes chunk tasks hand over to continuations.
    env.update(MOUNTSYNC_REDIS_PREFIX=mig_settings.redis_prefix, MOUNTSYNC_TASK_TIME_LIMIT="15")
    for name in ("MOUNTSYNC_VISIBILITY_TIMEOUT", "MOUNTSYNC_MIGRATION_LEASE", "MOUNTSYNC_WORKER_SCHEDULE"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def mig_worker(mig_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("migworker") / "worker.log"
    log.touch()
    proc = WorkerProcess(mig_env, log, QUEUE_MIGRATIONS, 1).start()
    yield proc
    proc.stop()


@pytest.fixture
def client(mig_settings: Settings, catalog: Any) -> Iterator[MigrationClient]:
    with MigrationClient(mig_settings) as c:
        yield c


@pytest.fixture
def bucket(moto: Any) -> str:
    moto.client("s3").create_bucket(Bucket="dest")
    return "dest"


def wait_state(client: MigrationClient, job: str, states: tuple[str, ...], timeout: float = 90) -> Any:
    def reached() -> Any:
        try:
            progress = client.status(job)
        except JobNotFound:
            return None  # sent by task name: the job exists once a worker has run submit_migration
        return progress if progress.state in states else None

    return wait_for(reached, timeout=timeout, what=f"job {job} to reach {states}")


def s3_sha256(moto: Any, bucket: str, key: str) -> str:
    body = moto.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return hashlib.sha256(body).hexdigest()


def test_cli_submit_items_watch_list(tmp_path: Path, mig_worker, mig_env, moto, bucket, client) -> None:
    src = tmp_path / "src"
    sums = make_tree(src, {"a/1.jpg": 100, "a/2.jpg": 7 * MiB, "b.mp4": 17 * MiB})
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps({"entity_id": f"id-{rel}", "path": rel}) for rel in sums))
    cli = Cli(mig_env)
    submitted = cli("migrate", "submit", "--source", f"file://{src}", "--dest", f"s3://{bucket}/m",
                    "--items", str(items), "--dest-endpoint-url", moto.endpoint_url,
                    "-o", "part_size=5MiB", "-o", "multipart_threshold=5MiB", "--json",
                    check=True)  # fmt: skip
    job = json.loads(submitted.stdout)["job_id"]
    watched = cli("migrate", "status", job, "--watch", "--json", timeout=120)
    assert watched.returncode == 0, watched.stderr
    result = json.loads(watched.stdout)
    assert result["state"] == "completed" and result["items_done"] == 3
    assert result["bytes_done"] == result["bytes_total"] == 24 * MiB + 100
    for rel, digest in sums.items():
        assert s3_sha256(moto, bucket, f"m/{rel}") == digest
    listed = json.loads(cli("migrate", "list", "--json", check=True).stdout)
    assert job in [j["job_id"] for j in listed]
    plain = cli("migrate", "status", job, check=True).stdout
    assert "completed" in plain and "24.0 MiB" in plain


def test_cli_bad_input_is_one_line_exit_2(mig_env) -> None:
    cli = Cli(mig_env)
    bad = cli("migrate", "submit", "--source", "file:///data", "--dest", "s3://b/x", "-o", "part_size=1KiB")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().count("\n") == 0 and "part_size" in bad.stderr
    missing = cli("migrate", "status", "no-such-job")
    assert missing.returncode == 2 and "no migration job" in missing.stderr


def test_other_service_sends_task_by_name(tmp_path: Path, mig_worker, mig_settings, moto, bucket, client) -> None:
    src = tmp_path / "src"
    make_tree(src, {f"f{i}.txt": 10 for i in range(25)})
    spec = {"source": f"file://{src}", "destination": f"s3://{bucket}/byname",
            "items": [{"entity_id": str(i), "path": f"f{i}.txt"} for i in range(25)],
            "callback": {"task": "platform.relink", "queue": "platform-links"},
            "options": {"destination_storage": {"endpoint_url": moto.endpoint_url}}}  # fmt: skip
    job = make_client(mig_settings).send_task(TASK_SUBMIT_MIGRATION, args=[spec], queue=QUEUE_MIGRATIONS).id
    progress = wait_state(client, job, ("completed", "completed_with_errors", "failed"))
    assert progress.state == "completed" and progress.items_done == 25
    import redis

    queue = f"{mig_settings.redis_prefix}platform-links"
    raw = redis.Redis.from_url(mig_settings.redis_url).lpop(queue)
    assert raw, "the link batch never reached the submitter's queue"
    message = json.loads(raw)
    assert message["headers"]["task"] == "platform.relink"


def test_http_api(tmp_path: Path, mig_worker, mig_settings, moto, bucket, client, db) -> None:
    from fastapi.testclient import TestClient

    from mountsync.producers.http.app import make_app

    src = tmp_path / "src"
    extra = {"MOUNTSYNC_MIGRATION_SOURCE_ROOTS": str(tmp_path)}
    http = TestClient(make_app(mig_settings.with_(extra=extra)), headers=bearer(db, "write"))
    bad = http.post("/api/v1/migrations", json={"source": f"file://{src}"})
    assert bad.status_code == 400 and "destination" in bad.json()["error"]
    outside = http.post("/api/v1/migrations", json={"source": "file:///etc", "destination": f"s3://{bucket}/x"})
    assert outside.status_code == 400 and "MOUNTSYNC_MIGRATION_SOURCE_ROOTS" in outside.json()["error"]
    make_tree(src, {"one.bin": 1234})
    spec = {"source": f"file://{src}", "destination": f"s3://{bucket}/api",
            "options": {"destination_storage": {"endpoint_url": moto.endpoint_url}}}  # fmt: skip
    created = http.post("/api/v1/migrations", json=spec)
    assert created.status_code == 202
    job = created.json()["job_id"]
    wait_for(lambda: http.get(f"/api/v1/migrations/{job}").json()["state"] == "completed", timeout=60,
             what="job completed over HTTP")  # fmt: skip
    status = http.get(f"/api/v1/migrations/{job}").json()
    assert status["items_done"] == 1 and status["bytes_done"] == 1234 and "eta_s" in status
    assert job in [j["job_id"] for j in http.get("/api/v1/migrations?limit=10").json()["jobs"]]
    assert http.post(f"/api/v1/migrations/{job}/cancel").json()["state"] == "completed"  # finished stays
    assert http.get("/api/v1/migrations/nope").status_code == 404
    assert http.get("/api/v1/migrations?state=bogus").status_code == 400
    assert http.get("/api/v1/migrations", headers={"Authorization": "Bearer nope"}).status_code == 401


def parts(db: Any, job: str) -> dict[int, tuple[int, bool]]:
    rows = db.execute("SELECT number, sends, done FROM migration_parts WHERE job_id = %s", (job,))
    return {n: (s, d) for n, s, d in rows}


@pytest.mark.faults
def test_sigkill_mid_multipart_then_resume(tmp_path: Path, mig_worker, moto, bucket, client, db) -> None:
    src = tmp_path / "src"
    sums = make_tree(src, {"huge.bin": 100 * MiB + 5})  # 21 parts of 5 MiB
    job = client.submit({"source": f"file://{src}", "destination": f"s3://{bucket}/k",
                         "options": {**SMALL, "part_concurrency": 2,
                                     "destination_storage": {"endpoint_url": moto.endpoint_url}},
                         })  # fmt: skip
    wait_for(lambda: sum(d for _, d in parts(db, job).values()) >= 3, timeout=60,
             what="3 parts recorded", interval=0.02)  # fmt: skip
    mig_worker.kill()
    killed_at = time.monotonic()
    before = {n: v for n, v in parts(db, job).items() if v[1]}
    assert 3 <= len(before) < 21, "the upload finished before the kill; use a bigger file"
    assert client.status(job).state == "running"
    mig_worker.start()  # a new worker, no beat: the chunk comes back after the visibility timeout
    wait_for(lambda: len([1 for _, d in parts(db, job).values() if d]) > len(before), timeout=120,
             what="the upload to resume")  # fmt: skip
    print(f"migration chunk to s3 resumed {time.monotonic() - killed_at:.0f} s after the SIGKILL")
    progress = wait_state(client, job, ("completed", "completed_with_errors", "failed"), timeout=180)
    assert progress.state == "completed", client.failures(job)
    after = parts(db, job)
    assert sorted(after) == list(range(1, 22))
    for number, (sends, _) in before.items():
        assert after[number] == (sends, True) == (1, True), f"part {number} was sent again"
    assert s3_sha256(moto, bucket, "k/huge.bin") == sums["huge.bin"]
    head = moto.client("s3").head_object(Bucket=bucket, Key="k/huge.bin")
    assert head["ContentLength"] == 100 * MiB + 5 and head["ETag"].strip('"').endswith("-21")
    assert not moto.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_cancel_running_job_aborts_uploads(tmp_path: Path, mig_worker, moto, bucket, client, db) -> None:
    src = tmp_path / "src"
    make_tree(src, {"big.bin": 80 * MiB, **{f"s/{i}": 10 for i in range(5)}})
    job = client.submit({"source": f"file://{src}", "destination": f"s3://{bucket}/c",
                         "options": {**SMALL, "part_concurrency": 1, "concurrency": 1,
                                     "destination_storage": {"endpoint_url": moto.endpoint_url}},
                         })  # fmt: skip
    wait_for(lambda: sum(d for _, d in parts(db, job).values()) >= 2, timeout=60, what="parts sent",
             interval=0.02)  # fmt: skip
    assert client.cancel(job).state == "cancelled"
    s3 = moto.client("s3")
    wait_for(lambda: not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
             and client.status(job).items_running == 0, timeout=60, what="upload aborted")  # fmt: skip
    progress = client.status(job)
    assert progress.state == "cancelled" and progress.items_pending == 0
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="c/").get("Contents", [])]
    assert "c/big.bin" not in keys
