"""Girder side by side: Girder's own S3 assetstore import against mountsync's Girder connector,
on the same 5,000 objects of one moto bucket, into two folders of the same real Girder 5.

1. Time until all 5,000 items exist. Girder's own import lists the bucket and creates items;
   the connector reads the 5,000 ``created`` entries of the change log (the catalog already
   knows them from the bucket's events, as in production) and references them folder by folder.
   Target: the connector within 1.5x of Girder's own import.
2. Then 500 deletes and 500 overwrites (new, longer contents). Girder's re-import of the same
   prefix (its only way to follow a bucket) against the connector delivering the 1,000 new
   entries. Items left wrong: an item whose object is gone, an object without its item, or an
   item whose size is not the object's. Target: 0 for mountsync.

Layout: 5 sites x 10 cameras x 100 frames, ``data/site{s}/cam{c}/frame_{i}.png``. Girder's local
tasks run eagerly in the server (the fixture), so each import call returns when it is done.
Run: ``pytest -m bench tests/bench/test_bench_girder.py -p no:cacheprovider``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from mountsync.shared.catalog.mounts import Mounts
from mountsync.workers.connectors.girder_client import GirderClient
from mountsync.workers.connectors.girder_connector import GirderConnector, GirderTarget
from mountsync.workers.sinks import store
from tests.bench.conftest import BenchReport
from tests.connectors.girder_support import S3Mount, deliver_all
from tests.standins.girder import GirderWorkspace

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]

PREFIX = "data/"
KEYS = [f"{PREFIX}site{s}/cam{c}/frame_{i:04d}.png" for s in range(5) for c in range(10) for i in range(100)]


@pytest.fixture
def client(girder: GirderWorkspace) -> Iterator[GirderClient]:
    # Girder's own import of 5,000 objects is one request that answers when it is done.
    made = GirderClient(girder.server.api_url, girder.server.api_key, timeout_s=1800)
    yield made
    made.close()


def item_sizes(client: GirderClient, folder_id: str, path: str = "") -> dict[str, int]:
    """Relative path -> item size (the sum of its files' sizes) for every item below the folder."""
    sizes = {f"{path}{item.name}": item.size for item in client.items(folder_id)}
    for child in client.child_folders(folder_id):
        sizes.update(item_sizes(client, child.id, f"{path}{child.name}/"))
    return sizes


def items_wrong(items: dict[str, int], live: dict[str, int]) -> int:
    """Items whose object is gone, objects without an item, items whose size is not the object's."""
    stale = sum(1 for path in items if path not in live)
    missing = sum(1 for path in live if path not in items)
    size = sum(1 for path, n in items.items() if path in live and live[path] != n)
    return stale + missing + size


def test_girder_import_against_the_connector(
    girder: GirderWorkspace, catalog: psycopg.Connection, client: GirderClient, bench_report: BenchReport
) -> None:
    mount = Mounts(catalog).add("bench", f"s3://{girder.bucket}/{PREFIX}")
    mirror = S3Mount(catalog, mount, girder.moto.client("s3"))
    mirror.put(KEYS)
    own = client.ensure_folder(girder.folder_id, "girder-import")
    ours = client.ensure_folder(girder.folder_id, "mountsync")
    target = GirderTarget("bench-girder", "bench", PREFIX, girder.server.api_url, ours.id, girder.assetstore_id)
    options = {"folder": ours.id, "assetstore": girder.assetstore_id, "api_key_env": "GIRDER_KEY"}
    store.add_sink(catalog, name=target.name, kind="girder", target=target.url, mounts=["bench"],
                   events=("changes",), options=options, secret=None, cursor=0, events_cursor=0)  # fmt: skip
    connector = GirderConnector(target, client, catalog)

    started = time.perf_counter()
    client.import_objects(girder.assetstore_id, PREFIX, own.id)
    girder_s = time.perf_counter() - started
    started = time.perf_counter()
    cursor = deliver_all(connector, catalog)
    ours_s = time.perf_counter() - started

    live = {k.removeprefix(PREFIX): len(body) for k, body in mirror.contents.items()}
    assert items_wrong(item_sizes(client, own.id), live) == 0
    assert items_wrong(item_sizes(client, ours.id), live) == 0
    bench_report.row("girder: 5,000 items exist (connector)", ours_s, "s", "girder's own S3 import", girder_s,
                     "<= 1.5x")  # fmt: skip

    mirror.delete(KEYS[::10])  # 500
    mirror.put(KEYS[5::10], tag="overwritten-v2")  # 500, longer contents
    live = {k.removeprefix(PREFIX): len(body) for k, body in mirror.contents.items()}
    started = time.perf_counter()
    client.import_objects(girder.assetstore_id, PREFIX, own.id)
    reimport_s = time.perf_counter() - started
    started = time.perf_counter()
    deliver_all(connector, catalog, cursor)
    follow_s = time.perf_counter() - started

    girder_wrong = items_wrong(item_sizes(client, own.id), live)
    ours_wrong = items_wrong(item_sizes(client, ours.id), live)
    bench_report.row("girder: items wrong after 500 del + 500 ovw", ours_wrong, "items", "girder's re-import",
                     girder_wrong, "0")  # fmt: skip
    bench_report.row("girder: follow 500 del + 500 ovw (connector)", follow_s, "s", "girder's re-import",
                     reimport_s, "")  # fmt: skip
    assert ours_wrong == 0
    assert girder_wrong >= 1000  # the finding: vanished and overwritten objects stay wrong
