"""Secrets never leak and unauthenticated pushes leave no trace.

A full run with real credentials configured (a password-protected PostgreSQL and Redis of the
test's own, an AWS secret key, an Event Grid webhook secret): CLI commands (successes and
failures), a worker, ``mountsync serve`` answering authenticated and unauthenticated requests.
Every byte of output, every log, every Redis value and every catalog row is searched for the
secrets. Push authentication itself (OIDC for Pub/Sub, key for Event Grid) is covered in
tests/gcs/test_push.py and tests/azure/test_webhook.py; here the real server process is used.
"""

from __future__ import annotations

import json
import posixpath
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from mountsync.shared.config import Settings
from mountsync.shared.errors import BadInput
from mountsync.shared.events import Source
from mountsync.shared.migration.plan import destination_key
from mountsync.shared.queues import inbox_key
from tests.conftest import ROOT, Cli, WorkerProcess, env_for
from tests.helpers import free_port, wait_for
from tests.reliability.servers import OwnPostgres, OwnRedis
from tests.standins.s3 import MotoEndpoints

PG_SECRET = f"pg-{uuid.uuid4().hex}"
REDIS_SECRET = f"rd-{uuid.uuid4().hex}"
AWS_SECRET = f"aws-{uuid.uuid4().hex}"
EG_SECRET = f"eg-{uuid.uuid4().hex}"
SECRETS = (PG_SECRET, REDIS_SECRET, AWS_SECRET, EG_SECRET)


@pytest.fixture(scope="module")
def locked_pg() -> Iterator[OwnPostgres]:
    server = OwnPostgres(password=PG_SECRET).init().start()
    yield server
    server.close()


@pytest.fixture
def locked_redis() -> Iterator[OwnRedis]:
    server = OwnRedis(password=REDIS_SECRET, persist=False).start()
    yield server
    server.close()


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def redis_dump(server: OwnRedis) -> str:
    parts = []
    with server.client() as client:
        for key in client.scan_iter(count=1000):
            kind = client.type(key).decode()
            if kind == "string":
                parts.append(repr(client.get(key)))
            elif kind == "list":
                parts.append(repr(client.lrange(key, 0, -1)))
            elif kind == "hash":
                parts.append(repr(client.hgetall(key)))
            elif kind == "stream":
                parts.append(repr(client.xrange(key)))
            elif kind in ("set", "zset"):
                parts.append(repr(client.smembers(key) if kind == "set" else client.zrange(key, 0, -1)))
    return "\n".join(parts)


def catalog_dump(url: str) -> str:
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return "\n".join(str(conn.execute(f'SELECT row_to_json(t)::text FROM "{t}" t').fetchall()) for t in tables)


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        for form in {secret, urllib.parse.quote(secret), urllib.parse.quote_plus(secret)}:
            assert form not in text, f"a secret leaked into {where}"


def test_a_full_run_with_credentials_leaks_no_secret_and_unauthenticated_pushes_leave_no_trace(
    locked_pg: OwnPostgres, locked_redis: OwnRedis, moto: MotoEndpoints, settings: Settings, tmp_path: Path
) -> None:
    url = locked_pg.url(f"sec_{uuid.uuid4().hex[:8]}")
    own = settings.with_(database_url=url, redis_url=locked_redis.url, redis_prefix="")
    env = env_for(own, AWS_ACCESS_KEY_ID="AKIDTEST", AWS_SECRET_ACCESS_KEY=AWS_SECRET,
                  MOUNTSYNC_EVENTGRID_SECRET=EG_SECRET, MOUNTSYNC_LOG_LEVEL="DEBUG")  # fmt: skip
    env.pop("AWS_ENDPOINT_URL", None)
    moto.client("s3").create_bucket(Bucket="sec-bucket")
    moto.client("s3").put_object(Bucket="sec-bucket", Key="a/1.jpg", Body=b"x")
    cli, outputs = Cli(env), []

    def run(*args: str, **extra: str) -> Any:
        proc = cli(*args, **extra)
        outputs.append((" ".join(args), proc.stdout + proc.stderr))
        return proc

    assert run("db", "upgrade").returncode == 0
    worker = WorkerProcess(env, tmp_path / "worker.log", "changes,reindex", 1).start()
    port = free_port()
    serve_log = tmp_path / "serve.log"
    with open(serve_log, "wb") as log_file:  # the child keeps its own descriptor
        command = [sys.executable, "-m", "mountsync.shared", "serve", "--port", str(port), "--insecure-receivers"]
        serve = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        assert run("mount", "add", "sec", "s3://sec-bucket/", "--endpoint-url", moto.endpoint_url).returncode == 0
        assert run("mount", "add", "nobucket", "s3://no-such-bucket/", "--endpoint-url", moto.endpoint_url).returncode
        assert run("reindex", "sec", "--wait", "--json").returncode == 0
        for args in (("mount", "list", "--json"), ("mount", "show", "sec"), ("ls", "sec"), ("mount", "check", "sec")):
            assert run(*args).returncode == 0
        wrong = PG_SECRET[::-1]
        run("mount", "list", MOUNTSYNC_DATABASE_URL=url.replace(PG_SECRET, wrong))
        assert wrong not in outputs[-1][1]
        run("mount", "list", MOUNTSYNC_REDIS_URL=f"http://:{REDIS_SECRET}@127.0.0.1:1/0")  # invalid setting
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(base), timeout=60, what="mountsync serve")
        event = json.dumps(
            [
                {
                    "id": "1",
                    "eventType": "Microsoft.Storage.BlobCreated",
                    "subject": "s",
                    "eventTime": "2024-05-01T12:00:00Z",
                    "data": {"url": "https://a.blob.core.windows.net/c/k", "eTag": "0x1", "contentLength": 1},
                }
            ]
        ).encode()
        validation = json.dumps([{"id": "v", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                                  "data": {"validationCode": "code-1"}}]).encode()  # fmt: skip
        assert post(f"{base}/eventgrid", event)[0] == 401
        assert post(f"{base}/eventgrid?key=wrong", event)[0] == 401
        assert post(f"{base}/eventgrid", validation)[0] == 401  # no handshake without the key
        assert post(f"{base}/eventgrid", event, {"X-Mountsync-Key": "wrong"})[0] == 401
        with psycopg.connect(url) as conn:  # nothing recorded from refused requests
            assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
        with locked_redis.client() as client:  # nothing queued: the Event Grid inbox was never written
            assert client.exists(inbox_key("", Source.AZURE_EVENTGRID)) == 0
        status, body = post(f"{base}/eventgrid?key={EG_SECRET}", validation)
        assert status == 200 and json.loads(body) == {"validationResponse": "code-1"}
        assert post(f"{base}/eventgrid?key={EG_SECRET}", b"[{")[0] == 400  # a failure path, logged
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            outputs.append(("GET /metrics", response.read().decode()))
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        worker.stop()
    for command, text in outputs:
        assert_no_secret(f"`mountsync {command}` output", text)
    assert_no_secret("the worker log", (tmp_path / "worker.log").read_text(errors="replace"))
    assert_no_secret("the serve log", serve_log.read_text(errors="replace"))
    assert_no_secret("Redis (queues, feed, task arguments)", redis_dump(locked_redis))
    assert_no_secret("the catalog", catalog_dump(url))


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError):
        return False


@hsettings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(prefix=st.sampled_from(["", "dest/", "a/b/"]),
       path=st.lists(st.sampled_from(["a", "b", ".", "/", "\\", "..", "\x00", "\n", "é", "C:", "%2e", "~"]),
                     max_size=12).map("".join))  # fmt: skip
def test_migration_destination_keys_never_escape_their_prefix(prefix: str, path: str) -> None:
    """Any submitted or listed path either fails with a reason or lands strictly inside the prefix."""
    try:
        key = destination_key(prefix, path)
    except BadInput:
        return
    assert key.startswith(prefix) and key != prefix
    relative = key[len(prefix) :]
    assert not relative.startswith("/") and "\\" not in relative
    assert posixpath.normpath(prefix + "x/" + relative).startswith(prefix + "x")  # no '..' climbs out
    assert all(segment not in ("", ".", "..") for segment in relative.split("/"))
