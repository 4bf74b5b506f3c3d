"""The Girder connector against a real Girder 5 (MongoDB, S3 assetstore on moto) and the real
catalog: changes are applied through ``apply_changes`` (which writes the change log), datasets
are recognised, pinned and quarantined by the alignment service, and the connector reads the log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from mountsync.shared.catalog.delete_guard import Guard
from mountsync.shared.catalog.held import set_guard
from mountsync.shared.catalog.mounts import Mounts
from mountsync.shared.config import Settings
from mountsync.workers.alignment.config import AlignmentConfig
from mountsync.workers.alignment.mountio import StorageIO
from mountsync.workers.alignment.service import ack_alert, check_folder, pin_dataset
from mountsync.workers.alignment.store import open_alert
from mountsync.workers.connectors import girder_catalog
from mountsync.workers.connectors.girder_client import GirderClient
from mountsync.workers.connectors.girder_connector import GirderConnector, GirderTarget
from mountsync.workers.sinks import store
from mountsync.workers.sinks.events import publish_closed_alerts
from tests.conftest import Cli, WorkerProcess, env_for
from tests.connectors.girder_support import S3Mount, deliver_all, expected_folders, girder_tree
from tests.helpers import Proc, wait_for
from tests.standins.girder import GirderWorkspace

pytestmark = pytest.mark.timeout(900)

PREFIX = "data/"
SEQ_A = [f"{PREFIX}seqA/frame_{i:04d}.png" for i in range(60)]
SEQ_B = [f"{PREFIX}deep/dive/seqB/img_{i:04d}.png" for i in range(40)]
OTHER = [f"{PREFIX}site{s}/cam{c}/log_{i:02d}.txt" for s in range(4) for c in range(5) for i in range(10)]
ALIGN = AlignmentConfig(settle_s=0)


@pytest.fixture
def mirror(catalog: psycopg.Connection, girder: GirderWorkspace, monkeypatch: pytest.MonkeyPatch) -> S3Mount:
    monkeypatch.setenv("AWS_ENDPOINT_URL", girder.moto.endpoint_url)  # the alignment's StorageIO
    mount = Mounts(catalog).add("dive", f"s3://{girder.bucket}/{PREFIX}")
    # The scenario empties whole datasets on purpose: the mass-delete guard would (rightly) hold
    # that. This test is about the Girder tree following the catalog, so the guard is off here.
    set_guard(catalog, mount.id, Guard(0, 0))
    return S3Mount(catalog, mount, girder.moto.client("s3"))


@pytest.fixture
def client(girder: GirderWorkspace) -> Iterator[GirderClient]:
    made = GirderClient.from_env(girder.server.api_url, "GIRDER_KEY", {"GIRDER_KEY": girder.server.api_key})
    yield made
    made.close()


def target(girder: GirderWorkspace, name: str = "dive-girder") -> GirderTarget:
    return GirderTarget(name, "dive", PREFIX, girder.server.api_url, girder.folder_id, girder.assetstore_id)


def add_sink(conn: psycopg.Connection, girder: GirderWorkspace, name: str = "dive-girder") -> None:
    """The sink row ``connect girder`` writes (the map and alerts belong to it)."""
    options = {"folder": girder.folder_id, "assetstore": girder.assetstore_id, "api_key_env": "GIRDER_KEY"}
    store.add_sink(conn, name=name, kind="girder", target=girder.server.api_url, mounts=["dive"],
                   events=("changes", "alerts"), options=options, secret=None, cursor=0, events_cursor=0)  # fmt: skip


def rel(keys: list[str] | set[str]) -> set[str]:
    return {k.removeprefix(PREFIX) for k in keys}


def assert_tree_matches(client: GirderClient, girder: GirderWorkspace, mirror: S3Mount) -> dict[str, object]:
    items, folders = girder_tree(client, girder.folder_id)
    live = {k.removeprefix(PREFIX): len(body) for k, body in mirror.contents.items()}
    assert set(items) == set(live), (sorted(set(items) - set(live))[:5], sorted(set(live) - set(items))[:5])
    assert {path: (i.size, i.files) for path, i in items.items()} == {path: (size, 1) for path, size in live.items()}
    assert folders == expected_folders(sorted(live))
    return dict(items)


def check_datasets(mirror: S3Mount, folders: list[str]) -> None:
    for folder in folders:
        check_folder(mirror.conn, ALIGN, mirror.mount, folder, StorageIO(mirror.mount))


def folder_meta(client: GirderClient, girder: GirderWorkspace, path: str) -> dict[str, object]:
    folder = client.ensure_folder_path(girder.folder_id, path)
    assert folder is not None
    return dict(folder.meta)


def test_a_mount_becomes_a_matching_tree_and_follows_deletes_overwrites_creates_and_quarantine(
    girder: GirderWorkspace, mirror: S3Mount, client: GirderClient
) -> None:
    mirror.put(SEQ_A + SEQ_B + OTHER)
    check_datasets(mirror, [f"{PREFIX}seqA", f"{PREFIX}deep/dive/seqB"])
    pin_dataset(mirror.conn, ALIGN, mirror.mount, f"{PREFIX}seqA", StorageIO(mirror.mount), last_annotated=30)
    add_sink(mirror.conn, girder)
    connector = GirderConnector(target(girder), client, mirror.conn)

    cursor = deliver_all(connector, mirror.conn)

    first = assert_tree_matches(client, girder, mirror)
    assert len(first) == 300
    # The item's file references the bucket object: its download redirects there, no bytes copied.
    [file] = client.item_files(first["seqA/frame_0007.png"].item_id)  # type: ignore[attr-defined]
    location = client.download_location(file.id)
    assert location is not None and location.startswith(f"{girder.moto.endpoint_url}/{girder.bucket}/")
    assert requests.get(location, timeout=30).content == mirror.contents[f"{PREFIX}seqA/frame_0007.png"]
    # DIVE lists the two datasets, and only them.
    for path in ("seqA", "deep/dive/seqB"):
        assert folder_meta(client, girder, path) == {"annotate": True, "type": "image-sequence"}
    assert "annotate" not in folder_meta(client, girder, "site0/cam0")

    # Redelivering the whole log is a no-op: same items, no duplicate.
    deliver_all(GirderConnector(target(girder), client, mirror.conn), mirror.conn)
    again, _ = girder_tree(client, girder.folder_id)
    assert {p: i.item_id for p, i in again.items()} == {p: i.item_id for p, i in first.items()}  # type: ignore[attr-defined]

    # 30 deletes (a whole folder among them), 20 overwrites, 20 creates in a new folder.
    deletes = [k for k in OTHER if k.startswith(f"{PREFIX}site0/cam0/")] + OTHER[50:70]
    overwrites = OTHER[100:115] + SEQ_B[35:40]
    creates = [f"{PREFIX}site9/new/obj_{i:02d}.txt" for i in range(20)]
    mirror.delete(deletes)
    mirror.put(overwrites, tag="v2")
    mirror.put(creates)
    cursor = deliver_all(connector, mirror.conn, cursor)

    after = assert_tree_matches(client, girder, mirror)
    assert len(after) == 290
    assert "site0/cam0" not in girder_tree(client, girder.folder_id)[1]
    for key in overwrites:
        item = after[key.removeprefix(PREFIX)]
        assert item.item_id == first[key.removeprefix(PREFIX)].item_id  # type: ignore[attr-defined]
        meta = item.meta["mountsync"]  # type: ignore[attr-defined]
        assert meta["changed"] is True and meta["etag"] != meta["previous_etag"]
        assert meta["etag"] == mirror.s3.head_object(Bucket=girder.bucket, Key=key)["ETag"].strip('"')

    # An insert among the annotated frames of the pinned dataset quarantines it: the folder says so.
    mirror.put([f"{PREFIX}seqA/frame_0003a.png"])
    check_datasets(mirror, [f"{PREFIX}seqA"])
    cursor = deliver_all(connector, mirror.conn, cursor)
    dataset_id = mirror.conn.execute("SELECT id FROM datasets WHERE path = %s", (f"{PREFIX}seqA",)).fetchone()
    assert dataset_id is not None
    alert = open_alert(mirror.conn, dataset_id[0])
    assert alert is not None and alert.quarantined
    marked = folder_meta(client, girder, "seqA")
    assert marked["mountsync"] == {"quarantined": True, "alert_id": alert.id, "alert": alert.kind}
    assert marked["annotate"] is True
    assert_tree_matches(client, girder, mirror)

    # Acknowledging the alert lifts the quarantine; the folder follows on the next sync.
    ack_alert(mirror.conn, ALIGN, alert.id, StorageIO)
    publish_closed_alerts(mirror.conn, [alert.id])  # as `mountsync alerts ack` does
    events = store.read_events(mirror.conn, 0, ("alerts",), 100)
    # A worker's notify task may have published the opening too; the ack comes last either way.
    assert [e.kind for e in events][-1] == "alignment-acked"
    connector.deliver_events(events)
    assert "mountsync" not in folder_meta(client, girder, "seqA")

    # Every frame of the annotated dataset deleted: its folder is kept and marked, not removed;
    # the unannotated dataset's folder and its empty parents go.
    mirror.delete([*SEQ_A, f"{PREFIX}seqA/frame_0003a.png"])
    mirror.delete(SEQ_B)
    check_datasets(mirror, [f"{PREFIX}seqA"])
    deliver_all(connector, mirror.conn, cursor)
    items, folders = girder_tree(client, girder.folder_id)
    assert not any(p.startswith(("seqA/", "deep/")) for p in items)
    assert "seqA" in folders and "deep" not in folders
    emptied = folder_meta(client, girder, "seqA")["mountsync_emptied"]
    assert isinstance(emptied, dict) and emptied["annotated"] is True
    [alert] = store.list_alerts(mirror.conn, "dive-girder")
    assert (alert["kind"], alert["key"]) == ("annotated-dataset-emptied", f"{PREFIX}seqA")


def test_connected_by_the_cli_a_worker_killed_mid_sync_leaves_no_duplicate_and_no_loss(
    girder: GirderWorkspace, catalog: psycopg.Connection, client: GirderClient, settings: Settings,
    add_mount: Any, procs: list[Proc], tmp_path: Path,
) -> None:  # fmt: skip
    s3 = girder.moto.client("s3")
    for key in SEQ_A + SEQ_B + OTHER:
        s3.put_object(Bucket=girder.bucket, Key=key, Body=f"{key}:v1".encode())
    add_mount("dive", f"s3://{girder.bucket}/{PREFIX}", endpoint_url=girder.moto.endpoint_url)
    creds = {k: v for k, v in girder.moto.env().items() if k != "AWS_ENDPOINT_URL"}
    env = env_for(settings, GIRDER_KEY=girder.server.api_key, MOUNTSYNC_STATE_DIR=str(tmp_path), **creds)
    cli = Cli(env)
    worker = start_worker(env, tmp_path)
    # beat's sink sweep hands a killed deliverer's sink to another worker once its lease expires
    procs.append(Proc.mountsync(["beat", "--loglevel", "WARNING"], env, tmp_path / "beat.log").start())

    # The two commands a DIVE user runs (README): the mount exists, then connect.
    connected = cli("connect", "girder", "dive-girder", "--mount", "dive", "--url", girder.server.api_url,
                    "--folder", girder.folder_id, "--api-key-env", "GIRDER_KEY", "--json")  # fmt: skip
    assert connected.returncode == 0, connected.stderr
    assert json.loads(connected.stdout)["options"]["assetstore"] == girder.assetstore_id
    cli("reindex", "dive", check=True)
    wait_for(lambda: girder_catalog.count_items(catalog, "dive-girder") >= 60, 300, "a partial sync", 0.01)
    worker.kill()
    partial = girder_catalog.count_items(catalog, "dive-girder")
    assert partial < 300, "the kill came too late to prove anything"

    worker = start_worker(env, tmp_path)
    try:
        wait_for(lambda: sink_caught_up(catalog, "dive-girder"), 300, "the connector to catch up", 0.5)
    finally:
        worker.stop()
    items, _ = girder_tree(client, girder.folder_id)
    live = {k.removeprefix(PREFIX): len(f"{k}:v1") for k in SEQ_A + SEQ_B + OTHER}
    assert {p: (i.size, i.files) for p, i in items.items()} == {p: (n, 1) for p, n in live.items()}
    assert girder_catalog.count_items(catalog, "dive-girder") == 300


def test_connect_girder_refuses_what_cannot_work_in_one_line(
    girder: GirderWorkspace, settings: Settings, add_mount: Any, tmp_path: Path
) -> None:
    add_mount("dive", f"s3://{girder.bucket}/{PREFIX}", endpoint_url=girder.moto.endpoint_url)
    add_mount("local", f"file://{tmp_path}")
    cli = Cli(env_for(settings, GIRDER_KEY=girder.server.api_key, WRONG_KEY="not-a-key"))
    base = ["connect", "girder", "g", "--url", girder.server.api_url, "--api-key-env"]
    cases = {
        ("GIRDER_KEY", "--mount", "dive", "--folder", "0123456789abcdef01234567"): "--folder",
        ("GIRDER_KEY", "--mount", "dive", "--folder", girder.folder_id, "--assetstore", "0123456789abcdef01234567"):
            "--assetstore",
        ("GIRDER_KEY", "--mount", "local", "--folder", girder.folder_id): "--mount local",
        ("UNSET_VAR", "--mount", "dive", "--folder", girder.folder_id): "UNSET_VAR",
        ("WRONG_KEY", "--mount", "dive", "--folder", girder.folder_id): "refused",
    }  # fmt: skip
    for args, names in cases.items():
        result = cli(*base, *args)
        assert result.returncode == 2, (args, result.stderr)
        [line] = result.stderr.strip().splitlines()
        assert names in line and "not-a-key" not in line and girder.server.api_key not in line


def start_worker(env: dict[str, str], tmp_path: Path) -> WorkerProcess:
    log_path = tmp_path / "worker.log"
    log_path.touch()
    return WorkerProcess(env, log_path, "changes,reindex,sinks", 2).start()


def sink_caught_up(conn: psycopg.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT s.cursor >= (SELECT max(cursor) FROM change_log) FROM sinks s WHERE s.name = %s", (name,)
    ).fetchone()
    return bool(row and row[0])
