"""End to end on real processes: ``mountsync serve`` (uvicorn), a Celery worker, PostgreSQL,
Redis and moto's versioned S3.

A platform reads ``/objects`` (it equals the bucket), then follows ``/api/v1/changes`` from a
cursor: an overwrite shows as ``updated`` and a delete as ``deleted``, in order and without a
gap although serve restarts and the worker is SIGKILLed between the change and its apply. The
pinned frame's content is still the old version's bytes after the overwrite. No token: 401; a
read token on a write route: 403.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from mountsync.shared.config import Settings
from tests.conftest import WorkerProcess, env_for
from tests.helpers import Proc, bearer, free_port, wait_for

pytestmark = pytest.mark.slow
FRAMES = {f"seq/frame_{i}.png": b"\x89PNG frame %d" % i for i in range(5)}


class Api:
    """A platform's view: bearer-token HTTP against one serve port."""

    def __init__(self, port: int, token: dict[str, str]) -> None:
        self.base, self.token = f"http://127.0.0.1:{port}/api/v1", token

    def call(self, method: str, path: str, body: Any = None, auth: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(self.token if auth is None else auth)}
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                raw = answer.read()
                return answer.status, json.loads(
                    raw
                ) if answer.headers.get_content_type() == "application/json" else raw
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def get(self, path: str) -> Any:
        status, body = self.call("GET", path)
        assert status == 200, (path, status, body)
        return body

    def objects(self, mount: str) -> dict[str, tuple[str | None, int | None]]:
        page = self.get(f"/mounts/{mount}/objects?limit=2")
        rows = list(page["objects"])
        while page["next_cursor"]:
            page = self.get(f"/mounts/{mount}/objects?limit=2&cursor={page['next_cursor']}")
            rows += page["objects"]
        return {r["key"]: (r["etag"], r["size"]) for r in rows}


def start_serve(env: dict[str, str], log: Path) -> tuple[Proc, int]:
    port = free_port()
    serve = Proc.mountsync(["serve", "--port", str(port), "--receivers", "none"], env, log).start()

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            assert serve.alive(), serve.tail()
            return False

    wait_for(up, timeout=60, what="serve to answer")
    return serve, port


def test_a_platform_follows_the_feed_across_restarts_and_reads_pinned_bytes(
    settings: Settings, moto_server: Any, moto: Any, add_mount: Any, catalog: Any, procs: list[Proc],
    tmp_path: Path,
) -> None:  # fmt: skip
    s3 = moto.client("s3")
    bucket = f"e2e-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for key, body in FRAMES.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="image/png")
    add_mount("e2e", f"s3://{bucket}/", endpoint_url=moto.endpoint_url)
    own = settings.with_(redis_prefix=f"{settings.redis_prefix}e2e{uuid.uuid4().hex[:6]}:")
    env = env_for(own, **{k: v for k, v in moto_server.env().items() if k != "AWS_ENDPOINT_URL"})
    worker = WorkerProcess(env, tmp_path / "worker.log", "changes,reindex,alignment", 1).start()
    try:
        serve, port = start_serve(env, tmp_path / "serve.log")
        procs.append(serve)
        api = Api(port, bearer(catalog, "write"))
        reader = bearer(catalog, "read")

        def bucket_now() -> dict[str, tuple[str | None, int | None]]:
            return {o["Key"]: (o["ETag"].strip('"'), o["Size"]) for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}

        assert api.call("POST", "/mounts/e2e/reindex", {})[0] == 202
        wait_for(lambda: api.objects("e2e") == bucket_now(), timeout=90, what="/objects to equal the bucket")
        first = api.get("/changes?mount=e2e")
        assert sorted((c["key"], c["kind"]) for c in first["changes"]) == [(k, "created") for k in sorted(FRAMES)]
        cursor = first["next_cursor"]
        wait_for(lambda: any(d["dataset"] == "seq" for d in api.get("/mounts/e2e/datasets")["datasets"]),
                 timeout=60, what="the dataset to be found")  # fmt: skip
        status, pinned = api.call("POST", "/mounts/e2e/datasets/seq/pin", {"last_annotated": 4})
        assert status == 200 and pinned["versions_pinned"] == 5, pinned

        # The platform is told nothing yet; meanwhile the bucket changes, the worker dies, serve restarts.
        s3.put_object(Bucket=bucket, Key="seq/frame_1.png", Body=b"overwritten", ContentType="image/png")
        s3.delete_object(Bucket=bucket, Key="seq/frame_3.png")  # a delete marker: frame_3 is gone
        worker.kill()  # SIGKILL
        assert api.call("POST", "/mounts/e2e/reindex", {})[0] == 202  # queued while no worker runs
        serve.stop()
        serve, port = start_serve(env, tmp_path / "serve-2.log")
        procs.append(serve)
        api = Api(port, api.token)
        worker = WorkerProcess(env, tmp_path / "worker.log", "changes,reindex,alignment", 1).start()
        wait_for(lambda: api.objects("e2e") == bucket_now(), timeout=90, what="/objects to equal the bucket again")

        after = api.get(f"/changes?mount=e2e&after={cursor}&wait=5")["changes"]
        assert [(c["key"], c["kind"]) for c in after] == [
            ("seq/frame_1.png", "updated"),
            ("seq/frame_3.png", "deleted"),
        ]
        assert all(c["cursor"] > cursor for c in after) and after[0]["cursor"] < after[1]["cursor"]
        whole = api.get("/changes?mount=e2e&after=0")["changes"]
        assert [c["cursor"] for c in whole] == sorted(c["cursor"] for c in whole) and len(whole) == len(FRAMES) + 2

        status, old_bytes = api.call("GET", "/mounts/e2e/datasets/seq/frames/1/content")
        assert status == 200 and old_bytes == FRAMES["seq/frame_1.png"]  # the pinned version, not the overwrite

        assert api.call("GET", "/mounts", auth={})[0] == 401
        assert api.call("POST", "/mounts/e2e/reindex", {}, auth=reader)[0] == 403
        assert api.call("GET", "/mounts", auth=reader)[0] == 200
    finally:
        worker.stop()
