"""Azurite as the stand-in for Azure Blob and Queue storage.

Fixture (import it into a conftest with ``from tests.standins.azure import azurite  # noqa: F401``):

- ``azurite`` (session): starts Azurite 3.35.0 on free 127.0.0.1 ports (blob, queue, table) with
  ``--inMemoryPersistence --skipApiVersionCheck``, waits until the blob and queue services answer,
  stops it at the end of the session. Yields a frozen ``AzuriteEndpoints``; tests create their
  own uniquely named containers and queues (nothing is reset between tests).

Azurite is an npm package. The fixture looks for the ``azurite`` launcher in, in order:
``$AZURITE_BIN``, the cache ``<repo>/.mountsync/node/node_modules/.bin/azurite`` and ``PATH``. When
none exists it installs it into the cache with
``npm install --no-audit --no-fund --prefix <repo>/.mountsync/node azurite@3.35.0``
(later Azurite versions need a newer Node than Debian's 20). ``.mountsync/`` is git-ignored.

If Azurite cannot be installed or started, the test fails when the ``CI`` environment variable
is set and is skipped otherwise (never a silent pass).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import require_service, stop_process

AZURITE_VERSION = "3.35.0"
REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_CACHE = REPO_ROOT / ".mountsync" / "node"
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft; not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
START_DEADLINE_S = 60.0
INSTALL_DEADLINE_S = 600.0


@dataclass(frozen=True)
class AzuriteEndpoints:
    """Where Azurite answers, path-style (``http://127.0.0.1:PORT/devstoreaccount1``)."""

    blob_url: str
    queue_url: str
    table_url: str
    account_name: str = ACCOUNT
    account_key: str = ACCOUNT_KEY

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={self.account_key};BlobEndpoint={self.blob_url};"
            f"QueueEndpoint={self.queue_url};TableEndpoint={self.table_url};"
        )

    def env(self) -> dict[str, str]:
        """Environment for a subprocess that should reach this Azurite by SDK convention."""
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def blob_service(self):  # type: ignore[no-untyped-def]
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def queue_service(self):  # type: ignore[no-untyped-def]
        from azure.storage.queue import QueueServiceClient

        return QueueServiceClient.from_connection_string(self.connection_string)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def azurite_command(install: bool = True) -> list[str]:
    """The azurite launcher; installs it into the repo's node cache when it is missing."""
    candidates = [os.environ.get("AZURITE_BIN", ""), str(NODE_CACHE / "node_modules/.bin/azurite")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return [candidate]
    found = shutil.which("azurite")
    if found:
        return [found]
    if not install:
        raise RuntimeError("azurite is not installed")
    return [_install_azurite()]


def _install_azurite() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed; cannot install azurite (apt-get install npm)")
    NODE_CACHE.mkdir(parents=True, exist_ok=True)
    command = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(NODE_CACHE),
               f"azurite@{AZURITE_VERSION}"]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_DEADLINE_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"npm install azurite took longer than {INSTALL_DEADLINE_S:.0f} s") from exc
    launcher = NODE_CACHE / "node_modules/.bin/azurite"
    if done.returncode != 0 or not launcher.exists():
        raise RuntimeError(f"npm install azurite failed: {done.stderr[-500:]}")
    return str(launcher)


class AzuriteServer:
    """One Azurite process (blob, queue, table) on free 127.0.0.1 ports, state in memory."""

    def __init__(self) -> None:
        self.blob_port, self.queue_port, self.table_port = free_port(), free_port(), free_port()
        base = "http://127.0.0.1:{}/" + ACCOUNT
        self.endpoints = AzuriteEndpoints(
            blob_url=base.format(self.blob_port),
            queue_url=base.format(self.queue_port),
            table_url=base.format(self.table_port),
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._log: Path | None = None

    def start(self, deadline_s: float = START_DEADLINE_S) -> AzuriteEndpoints:
        command = azurite_command()
        self._workdir = tempfile.TemporaryDirectory(prefix="azurite-")
        self._log = Path(self._workdir.name) / "azurite.log"
        args = [
            *command, "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
            "--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck", "--silent",
        ]  # fmt: skip
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(
                args, cwd=self._workdir.name, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self._wait_ready(deadline_s)
        return self.endpoints

    def _answers(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
        except urllib.error.HTTPError:
            return True  # 403 without credentials still proves the service is up
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False
        return True

    def _wait_ready(self, deadline_s: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + deadline_s
        urls = [f"{self.endpoints.blob_url}?comp=list", f"{self.endpoints.queue_url}?comp=list"]
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"azurite exited with {self._proc.returncode}: {self.log_tail()}")
            if all(self._answers(url) for url in urls):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"azurite did not answer within {deadline_s:.0f} s: {self.log_tail()}")

    def log_tail(self) -> str:
        if self._log is None or not self._log.exists():
            return ""
        return self._log.read_text(errors="replace")[-500:]

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteEndpoints]:
    """Azurite for the whole session; yields its ``AzuriteEndpoints``."""
    server = AzuriteServer()
    try:
        endpoints = server.start()
    except (RuntimeError, OSError) as exc:
        require_service("azurite", False, str(exc))
    try:
        yield endpoints
    finally:
        server.stop()
