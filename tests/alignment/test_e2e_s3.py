"""End to end on S3 (moto server, versioned bucket): a real worker mirrors ``data/seq``; after
each breaking change the quarantined dataset serves the pinned object versions, and those
versions still return the original images.

The worker here has its own catalog database and Redis prefix, and the moto credentials and the
alert webhook in its environment. It is the only worker on that catalog: the session worker's
alignment sweep would otherwise check these folders too, and an alert it raised first would
never reach this module's webhook.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from mountsync.shared.catalog.mounts import Mounts
from mountsync.shared.config import Settings
from tests.alignment.support import Receiver, start_receiver
from tests.conftest import Cli, WorkerProcess, empty_catalog, env_for, own_catalog
from tests.helpers import free_port, wait_for
from tests.standins.s3 import MotoEndpoints

MOUNT = "s3align"
PREFIX = "data/"
FRAMES = [f"{PREFIX}seq/frame_{i:04d}.png" for i in range(100)]


@pytest.fixture(scope="module")
def webhook() -> Iterator[str]:
    server = start_receiver(free_port())
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts/200"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def s3_settings(settings: Settings) -> Iterator[Settings]:
    with own_catalog(settings, "s3al") as isolated:
        yield isolated


@pytest.fixture(scope="module")
def s3_env(s3_settings: Settings, moto_server: MotoEndpoints, webhook: str) -> dict[str, str]:
    return env_for(s3_settings, **moto_server.env(), MOUNTSYNC_ALERT_WEBHOOK=webhook)


@pytest.fixture
def s3_catalog(s3_settings: Settings) -> Iterator[psycopg.Connection]:
    with psycopg.connect(s3_settings.database_url, autocommit=True) as conn:
        empty_catalog(conn)
        yield conn


@pytest.fixture(scope="module")
def s3_worker(s3_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    log_path = tmp_path_factory.mktemp("s3worker") / "worker.log"
    log_path.touch()
    proc = WorkerProcess(s3_env, log_path, "changes,reindex,alignment", 2).start()
    yield proc
    proc.stop()


@dataclass
class Bucket:
    name: str
    client: Any
    originals: dict[str, tuple[bytes, str]]  # key -> (content, version id)

    def put(self, key: str, body: bytes) -> str:
        return str(self.client.put_object(Bucket=self.name, Key=key, Body=body)["VersionId"])

    def read(self, key: str, version: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.name, Key=key, VersionId=version)["Body"].read())


@pytest.fixture
def mirror(
    moto_server: MotoEndpoints,
    s3_catalog: psycopg.Connection,
    s3_env: dict[str, str],
    s3_worker: WorkerProcess,
) -> Bucket:
    client = moto_server.client("s3")
    name = f"align-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    bucket = Bucket(name, client, {})
    for i, key in enumerate(FRAMES):
        body = b"\x89PNG frame %d" % i
        bucket.originals[key] = (body, bucket.put(key, body))
    bucket.put(f"{PREFIX}seq/seq.json", b"{}")
    Mounts(s3_catalog).add(MOUNT, f"s3://{name}/{PREFIX}", options={"endpoint_url": moto_server.endpoint_url})
    cli = Cli(s3_env)
    sync(cli)
    wait_for(lambda: (d := dataset(cli)) and d["pinned"], what="first import pinned")
    pinned = run(cli, "pin", MOUNT, "seq", "--last-annotated", "40")
    assert (pinned["pinned_frames"], pinned["last_annotated"]) == (100, 40)
    assert pinned["versions_pinned"] == 100  # every frame pinned at its exact version
    return bucket


@pytest.fixture
def s3cli(s3_env: dict[str, str]) -> Cli:
    return Cli(s3_env)


def run(cli: Cli, *args: str) -> Any:
    return json.loads(cli(*args, "--json", check=True).stdout)


def sync(cli: Cli) -> None:
    run(cli, "reindex", MOUNT, "--wait")


def dataset(cli: Cli) -> dict[str, Any] | None:
    return next((d for d in run(cli, "datasets", MOUNT) if d["dataset"] == f"{PREFIX}seq"), None)


def insert(b: Bucket) -> None:
    b.put(f"{PREFIX}seq/frame_0020b.png", b"\x89PNG inserted")


def remove(b: Bucket) -> None:
    b.client.delete_object(Bucket=b.name, Key=f"{PREFIX}seq/frame_0005.png")  # a delete marker


def rename(b: Bucket) -> None:
    old, new = f"{PREFIX}seq/frame_0030.png", f"{PREFIX}seq/zz_0030.png"
    b.client.copy_object(Bucket=b.name, Key=new, CopySource={"Bucket": b.name, "Key": old})
    b.client.delete_object(Bucket=b.name, Key=old)


def overwrite(b: Bucket) -> None:
    b.put(f"{PREFIX}seq/frame_0010.png", b"\x89PNG a different picture")


BREAKING = [
    (insert, "insert", 21, 79, 20, 21),
    (remove, "remove", 5, 95, 36, 5),
    (rename, "rename", 30, 70, 11, 30),
    (overwrite, "replace", 10, 1, 1, 10),
]


@pytest.mark.parametrize(("mutate", "kind", "first", "moved", "annotated", "touched"), BREAKING,
                         ids=[b[1] for b in BREAKING])  # fmt: skip
def test_quarantine_serves_pinned_versions(
    mirror: Bucket, s3cli: Cli, mutate: Callable[[Bucket], None], kind: str, first: int, moved: int,
    annotated: int, touched: int,
) -> None:  # fmt: skip
    mutate(mirror)
    sync(s3cli)
    (alert,) = wait_for(lambda: run(s3cli, "alerts", MOUNT), what=f"an open {kind} alert")
    assert (alert["kind"], alert["quarantined"], alert["dataset"]) == (kind, True, f"{PREFIX}seq")
    assert alert["folder"] == f"{PREFIX}seq"  # CONTRACT.md's field (an image sequence is its folder)
    assert (alert["first_shifted_index"], alert["frames_moved"], alert["annotated_frames_moved"]) == (
        first, moved, annotated)  # fmt: skip

    served = run(s3cli, "frames", MOUNT, "seq")
    assert served["source"] == "pinned"
    assert [f["key"] for f in served["frames"]] == FRAMES
    for frame in served["frames"]:
        assert frame["version"] == mirror.originals[frame["key"]][1]
    key = FRAMES[touched]
    version = served["frames"][touched]["version"]
    assert mirror.read(key, version) == mirror.originals[key][0]  # the annotated image, as it was

    run(s3cli, "alerts", "ack", str(alert["id"]))
    live = run(s3cli, "frames", MOUNT, "seq")
    assert (live["source"], live["quarantined"]) == ("live", False)


def test_append_extends_the_pin_with_versions(mirror: Bucket, s3cli: Cli) -> None:
    version = mirror.put(f"{PREFIX}seq/frame_0100.png", b"\x89PNG appended")
    sync(s3cli)
    wait_for(lambda: (d := dataset(s3cli)) and d["pinned_frames"] == 101, what="pin to grow")
    assert run(s3cli, "alerts", MOUNT, "--all") == []
    assert not dataset(s3cli)["quarantined"]  # type: ignore[index]
    # Quarantine now (overwrite an annotated frame): the appended frame is pinned at its version.
    overwrite(mirror)
    sync(s3cli)
    wait_for(lambda: run(s3cli, "alerts", MOUNT), what="replace alert")
    served = run(s3cli, "frames", MOUNT, "seq")
    assert (served["frames"][100]["key"], served["frames"][100]["version"]) == (
        f"{PREFIX}seq/frame_0100.png", version)  # fmt: skip


def test_alerts_are_posted_to_the_webhook(mirror: Bucket, s3cli: Cli) -> None:
    Receiver.received.clear()
    insert(mirror)
    sync(s3cli)
    (alert,) = wait_for(lambda: run(s3cli, "alerts", MOUNT), what="an insert alert")
    posted = wait_for(lambda: [b for _, b in Receiver.received if b["alert"]["id"] == alert["id"]],
                      what="the alert at the webhook")  # fmt: skip
    body = posted[0]
    assert body["type"] == "mountsync.alignment.alert"
    assert (body["alert"]["kind"], body["alert"]["dataset"], body["alert"]["first_shifted_index"]) == (
        "insert", f"{PREFIX}seq", 21)  # fmt: skip


def test_worker_log_has_no_secrets(s3_worker: WorkerProcess, mirror: Bucket, moto_server: MotoEndpoints) -> None:
    log = s3_worker.log_tail(500_000)
    assert "alignment" in log or "applied" in log  # the log is the worker's, and not empty
    assert moto_server.secret_access_key not in log
