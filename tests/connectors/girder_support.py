"""Test helpers for the Girder connector: a moto bucket whose changes reach the catalog through the
real write path (``apply_changes`` writes the change log), and a view of a Girder folder tree.

Objects are really written to moto (Girder's import lists them there and downloads redirect to
them); the catalog learns of each change as the S3 producer would tell it, with the etag and
version id moto answered. Only the producer's queue hop is left out.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from mountsync.shared.catalog.change_log import read_changes
from mountsync.shared.catalog.mounts import Mount
from mountsync.shared.events import Kind, ObjectChange, Provider, Source
from mountsync.workers.connectors.girder_client import GirderClient
from mountsync.workers.connectors.girder_connector import GirderConnector
from tests.helpers import apply_committed

_clock = itertools.count(1_800_000_000_000_000_000, 1000)


@dataclass
class S3Mount:
    """Writes to a moto bucket and applies the matching changes to the catalog, in batches."""

    conn: psycopg.Connection
    mount: Mount
    s3: Any
    contents: dict[str, bytes] = field(default_factory=dict)

    def _apply(self, changes: list[ObjectChange]) -> None:
        apply_committed(self.conn, changes)

    def _change(self, key: str, kind: Kind, answer: dict[str, Any] | None, size: int | None) -> ObjectChange:
        etag = str(answer["ETag"]).strip('"') if answer else None
        version = answer.get("VersionId") if answer else None
        return ObjectChange(
            provider=Provider.S3, bucket=self.mount.bucket, key=key, kind=kind, event_ns=next(_clock),
            source=Source.S3_SQS, size=size, etag=etag, version=version,
        )  # fmt: skip

    def put(self, keys: Sequence[str], tag: str = "v1") -> None:
        changes = []
        for key in keys:
            body = f"{key}:{tag}".encode() * 4
            answer = self.s3.put_object(Bucket=self.mount.bucket, Key=key, Body=body)
            self.contents[key] = body
            changes.append(self._change(key, Kind.CREATED, answer, len(body)))
        self._apply(changes)

    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.s3.delete_object(Bucket=self.mount.bucket, Key=key)
            self.contents.pop(key, None)
        self._apply([self._change(k, Kind.DELETED, None, None) for k in keys])


def deliver_all(connector: GirderConnector, conn: psycopg.Connection, after: int = 0, batch: int = 500) -> int:
    """Hand the mount's change log after ``after`` to the connector in batches; the last cursor."""
    while True:
        entries = read_changes(conn, after, mount=connector.target.mount, limit=batch)
        if not entries:
            return after
        connector.deliver_changes(entries)
        after = entries[-1].cursor


@dataclass(frozen=True)
class TreeItem:
    item_id: str
    size: int
    files: int
    meta: dict[str, Any]


def girder_tree(client: GirderClient, folder_id: str, path: str = "") -> tuple[dict[str, TreeItem], set[str]]:
    """Every item below the folder by relative path, and every folder's relative path."""
    items: dict[str, TreeItem] = {}
    folders: set[str] = set()
    for item in client.items(folder_id):
        files = client.item_files(item.id)
        items[f"{path}{item.name}"] = TreeItem(item.id, item.size, len(files), dict(item.meta))
    for child in client.child_folders(folder_id):
        folders.add(f"{path}{child.name}")
        sub_items, sub_folders = girder_tree(client, child.id, f"{path}{child.name}/")
        items.update(sub_items)
        folders |= sub_folders
    return items, folders


def expected_folders(rel_keys: Sequence[str]) -> set[str]:
    out: set[str] = set()
    for rel in rel_keys:
        parts = rel.split("/")[:-1]
        out |= {"/".join(parts[: i + 1]) for i in range(len(parts))}
    return out
