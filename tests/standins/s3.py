"""moto server as the stand-in for S3, SQS, SNS and EventBridge (one process serves them all).

Fixtures (import them into a conftest with ``from tests.standins.s3 import moto_server, moto``):

- ``moto_server`` (session): starts ``moto_server -H 127.0.0.1 -p PORT`` on a free port, waits
  until it answers, stops it at the end of the session. Yields a frozen ``MotoEndpoints``.
- ``moto`` (function): the same endpoints after ``POST /moto-api/reset`` (every bucket, queue,
  topic and rule of earlier tests is gone), with dummy AWS credentials and region in the
  environment (``monkeypatch``) so boto3 in this process and in subprocesses can sign requests.

Loading this module as a plugin also puts dummy AWS credentials and region into the
environment for the run (``pytest_configure``), so the session's worker can sign S3 requests.

If moto cannot start, the test fails when the ``CI`` environment variable is set and is
skipped otherwise (never a silent pass).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import require_service, stop_process

REGION = "us-east-1"
DUMMY_KEY_ID = "testing"
DUMMY_SECRET = "testing"  # moto accepts any pair; never a real secret
START_DEADLINE_S = 20.0


@dataclass(frozen=True)
class MotoEndpoints:
    """Where the moto server answers. Every AWS service shares ``endpoint_url``."""

    endpoint_url: str
    region: str = REGION
    access_key_id: str = DUMMY_KEY_ID
    secret_access_key: str = DUMMY_SECRET

    def env(self) -> dict[str, str]:
        """Environment for a subprocess that should talk to this server through boto3."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }

    def client(self, service: str):  # type: ignore[no-untyped-def]
        """A boto3 client for ``service`` (s3, sqs, sns, events) bound to this server."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def reset(self) -> None:
        """Wipe all state (buckets, queues, topics, rules)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def moto_command() -> list[str] | None:
    """The moto_server next to this interpreter (the venv), else one on PATH."""
    beside = Path(sys.executable).parent / "moto_server"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("moto_server")
    return [found] if found else None


class MotoServer:
    """One moto_server process on a free 127.0.0.1 port."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.endpoints = MotoEndpoints(f"http://127.0.0.1:{self.port}")
        self._extra_env = extra_env or {}
        self._proc: subprocess.Popen[bytes] | None = None
        # The request log goes to a file: a pipe nobody reads fills up and stalls the server.
        handle, self.log_path = tempfile.mkstemp(prefix="moto-", suffix=".log")
        os.close(handle)

    def start(self, deadline_s: float = START_DEADLINE_S) -> MotoEndpoints:
        command = moto_command()
        if command is None:
            raise RuntimeError("moto_server is not installed: pip install 'moto[server]'")
        env = {**os.environ, **self._extra_env}
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [*command, "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self._wait_ready(deadline_s)
        return self.endpoints

    def _wait_ready(self, deadline_s: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + deadline_s
        url = f"{self.endpoints.endpoint_url}/moto-api/"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self._proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    response.read()
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto_server did not answer on {url} within {deadline_s:.0f} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.log_path)

    def log_tail(self, limit: int = 2000) -> str:
        """The end of the server's output (its request log), for failure messages."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - limit))
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""


def pytest_configure(config: pytest.Config) -> None:
    """Dummy AWS credentials and region for the whole run, unless the environment has some.

    Subprocesses started from session fixtures (the Celery worker that reindexes S3 mounts)
    copy the environment when they start, before any per-test fixture could add credentials.
    moto accepts any key; the instance-metadata probe is switched off so boto3 never waits on it.
    """
    defaults = {
        "AWS_ACCESS_KEY_ID": DUMMY_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if "AWS_ACCESS_KEY_ID" in os.environ or "AWS_PROFILE" in os.environ:
        defaults = {k: v for k, v in defaults.items() if not k.startswith("AWS_SECRET")}
        defaults.pop("AWS_ACCESS_KEY_ID")
    for name, value in defaults.items():
        os.environ.setdefault(name, value)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoEndpoints]:
    """A moto server for the whole session; yields its ``MotoEndpoints``."""
    server = MotoServer()
    try:
        endpoints = server.start()
    except (RuntimeError, OSError) as exc:
        require_service("moto server", False, str(exc))
    try:
        yield endpoints
    finally:
        server.stop()


@pytest.fixture
def moto(moto_server: MotoEndpoints, monkeypatch: pytest.MonkeyPatch) -> MotoEndpoints:
    """The session's moto server, reset, with dummy credentials in the environment."""
    moto_server.reset()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_server.env().items():
        if name != "AWS_ENDPOINT_URL":
            monkeypatch.setenv(name, value)
    return moto_server
