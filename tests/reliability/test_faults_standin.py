"""A cloud stand-in stopped and restarted mid-stream: Azurite (blob + queue, state on disk) under a
running Storage Queue consumer and a worker, with a reindex asked for during the outage. Once
Azurite is back every queued event reaches the catalog, the reindex completes, and a second
reconcile finds no difference.

Seen here (deploy/RELIABILITY.md): the Azure SDK's own retry policy (10 tries, exponential) hides a
short outage completely (no log line from the consumer) and makes a reindex against a storage
that stays down fail only after ~85 s, with ``StorageUnavailable`` in the run's error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mountsync.shared.config import Settings
from mountsync.shared.storage.azure import AzureStorage
from mountsync.shared.storage.url import parse_storage_url
from tests.azure.blob_events import BlobEventFactory, queue_delivery
from tests.conftest import ROOT, Cli, WorkerProcess, env_for
from tests.helpers import free_port, require_service, wait_for
from tests.standins.azure import ACCOUNT, ACCOUNT_KEY, azurite_command

pytestmark = pytest.mark.faults
OUTAGE_S = 4.0


def _run_state(db: Any, run_id: int) -> str:
    row = db.execute("SELECT state FROM reindex_runs WHERE id = %s", (run_id,)).fetchone()
    return str(row[0]) if row else ""


class DiskAzurite:
    """Azurite with its state in a directory, so a stop and start on the same ports keeps it."""

    def __init__(self) -> None:
        self.ports = [free_port(), free_port(), free_port()]
        self.dir = tempfile.mkdtemp(prefix="mountsync-azurite-")
        self.proc: subprocess.Popen[bytes] | None = None
        blob, queue, _ = (f"http://127.0.0.1:{p}/{ACCOUNT}" for p in self.ports)
        self.connection_string = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                                  f"BlobEndpoint={blob};QueueEndpoint={queue};")  # fmt: skip

    def start(self) -> DiskAzurite:
        b, q, t = (str(p) for p in self.ports)
        args = [*azurite_command(), "--blobHost", "127.0.0.1", "--blobPort", b, "--queueHost", "127.0.0.1",
                "--queuePort", q, "--tableHost", "127.0.0.1", "--tablePort", t, "--location", self.dir,
                "--disableTelemetry", "--skipApiVersionCheck", "--silent"]  # fmt: skip
        self.proc = subprocess.Popen(args, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, timeout=60, what="Azurite to answer")
        return self

    def _answers(self) -> bool:
        from azure.storage.queue import QueueServiceClient

        assert self.proc is not None and self.proc.poll() is None, "azurite exited"
        try:
            list(QueueServiceClient.from_connection_string(self.connection_string).list_queues())
        except Exception:
            return False
        return True

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@pytest.fixture
def azurite_on_disk() -> Iterator[DiskAzurite]:
    try:
        server = DiskAzurite().start()
    except (RuntimeError, OSError, AssertionError) as exc:
        require_service("azurite", False, str(exc))
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


def test_azurite_stopped_and_restarted_mid_stream_loses_nothing(
    azurite_on_disk: DiskAzurite,
    settings: Settings,
    add_mount: Any,
    catalog_state: Any,
    tmp_path: Path,
    db: Any,
) -> None:
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueClient

    cs = azurite_on_disk.connection_string
    container = BlobServiceClient.from_connection_string(cs).create_container(f"c{uuid.uuid4().hex[:12]}")
    queue = QueueClient.from_connection_string(cs, f"q{uuid.uuid4().hex[:12]}", message_encode_policy=None,
                                               message_decode_policy=None)  # fmt: skip
    queue.create_queue()
    add_mount("azfault", f"az://{container.container_name}/")
    own = settings.with_(redis_prefix=f"{settings.redis_prefix}az{uuid.uuid4().hex[:6]}:")
    env = env_for(own, AZURE_STORAGE_CONNECTION_STRING=cs)
    factory = BlobEventFactory(container)
    queue_delivery(queue, [factory.put(f"first/{i:03d}.bin", os.urandom(1 + i)) for i in range(60)])
    worker = WorkerProcess(env, tmp_path / "worker.log", "changes,reindex", 2).start()
    consumer = subprocess.Popen(
        [sys.executable, "-m", "mountsync.shared", "produce", "azure-queue", "--queue", queue.queue_name,
         "--visibility-timeout", "5"], env=env, cwd=ROOT, stdout=open(tmp_path / "consumer.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: len(catalog_state("azfault")) >= 10, timeout=60, what="events to flow")
        azurite_on_disk.stop()
        during = Cli(env)("reindex", "azfault", "--json")  # queued while the storage is down
        assert during.returncode == 0, during.stderr
        run_id = json.loads(during.stdout)["run"]
        time.sleep(OUTAGE_S)  # the outage itself is what is being tested
        azurite_on_disk.start()
        later = threading.Thread(target=lambda: queue_delivery(
            queue, [factory.put(f"after/{i:03d}.bin", b"y" * i) for i in range(20)]
            + [factory.delete(f"first/{i:03d}.bin") for i in range(0, 60, 3)]))  # fmt: skip
        later.start()
        later.join(60)
        expected = {i.key: {"size": i.size, "etag": i.etag, "version": i.version} for i in AzureStorage(
            parse_storage_url(f"az://{container.container_name}/"), {}, environ={"AZURE_STORAGE_CONNECTION_STRING": cs}
        ).list()}  # fmt: skip
        wait_for(lambda: catalog_state("azfault") == expected, timeout=60, what="catalog == container")
        wait_for(lambda: queue.get_queue_properties().approximate_message_count == 0, timeout=30,
                 what="every queue message deleted")  # fmt: skip
        wait_for(lambda: _run_state(db, run_id) in ("succeeded", "failed"), timeout=60,
                 what="the reindex queued during the outage to end")  # fmt: skip
        after = Cli(env)("reindex", "azfault", "--wait", "--timeout", "40", "--json")
    finally:
        consumer.terminate()
        try:
            consumer.wait(timeout=30)
        except subprocess.TimeoutExpired:
            consumer.kill()
            raise
        worker.stop()
    assert _run_state(db, run_id) == "succeeded"  # the SDK's retries bridged the outage
    assert after.returncode == 0 and '"created": 0' in after.stdout and '"deleted": 0' in after.stdout, after.stdout
    assert '"updated": 0' in after.stdout
    assert "Traceback" not in (tmp_path / "consumer.log").read_text(errors="replace")
