"""The Girder (DIVE) connector: keeps a Girder folder tree in step with one mount.

It carries out ``girder_plan.plan_batch`` through the typed client and keeps the key -> item map
in the catalog (``girder_catalog``). It has the shape of a sink receiver (``deliver_changes``,
``deliver_events``, ``close``): the sink runner reads the change log after its cursor, hands the
entries here and advances the cursor only when this returns (at least once), so every step must
be safe to repeat:

- created: Girder's import reuses an item of the same name in the same folder, so an import
  repeated after a crash (item made, map not yet written) finds the same item;
- deleted: an item already gone is fine; a key the map does not know is looked up by path;
- overwritten: the map's etag/version say whether the item already follows the object.

Dataset folders (DIVE markers, quarantine) follow the catalog's datasets on every batch and on
every alert event: an acknowledged alert or a re-pin changes no object, only the dataset row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog

from mountsync.shared.config import Settings
from mountsync.shared.errors import PlatformRecordMissing
from mountsync.workers.connectors import girder_catalog as catalog
from mountsync.workers.connectors.girder_client import GirderClient
from mountsync.workers.connectors.girder_plan import (
    Change,
    DatasetState,
    Mapped,
    changed_item_meta,
    dataset_folder_meta,
    emptied_candidates,
    emptied_dataset_meta,
    mirror_root,
    plan_batch,
    relative_key,
    split_rel,
)
from mountsync.workers.sinks import store
from mountsync.workers.sinks.delivery import platform_errors
from mountsync.workers.sinks.receivers import connect_for
from mountsync.workers.sinks.store import Sink

log = structlog.get_logger("mountsync.girder")


@dataclass(frozen=True, slots=True)
class GirderTarget:
    """Where a connector mirrors to: the options of ``mountsync connect girder`` (no secret)."""

    name: str
    mount: str
    mount_prefix: str
    url: str
    folder_id: str
    assetstore_id: str
    prefix: str = ""

    @property
    def root(self) -> str:
        return mirror_root(self.mount_prefix, self.prefix)


@dataclass
class DeliveryReport:
    created: int = 0
    refreshed: int = 0
    deleted: int = 0
    folders_removed: int = 0
    datasets_kept: int = 0
    folders_marked: int = 0


class GirderConnector:
    """One connector: its Girder client, its target, and a catalog connection (map, datasets)."""

    def __init__(self, target: GirderTarget, client: GirderClient, conn: psycopg.Connection, *,
                 owns_conn: bool = False) -> None:  # fmt: skip
        self.target = target
        self._client = client
        self._conn = conn
        self._owns_conn = owns_conn
        self._folders: dict[str, str] = {"": target.folder_id}  # relative path -> Girder folder id
        self._folder_meta: dict[str, dict[str, Any]] = {}  # what this process last wrote per folder

    @classmethod
    def open(cls, sink: Sink, settings: Settings, environ: Mapping[str, str]) -> GirderConnector:
        """The receiver of a ``girder`` sink: the API key from the variable the sink names."""
        options = sink.options
        client = GirderClient.from_env(sink.target, str(options["api_key_env"]), environ)
        conn, mount = connect_for(sink, settings, client)
        target = GirderTarget(sink.name, mount.name, mount.prefix, sink.target, str(options["folder"]),
                              str(options["assetstore"]), str(options.get("prefix") or ""))  # fmt: skip
        return cls(target, client, conn, owns_conn=True)

    def close(self) -> None:
        self._client.close()
        if self._owns_conn:
            self._conn.close()

    # The sink receiver interface (workers/sinks/delivery.py): errors become DeliveryFailed

    def deliver_changes(self, entries: Sequence[Change]) -> None:
        with platform_errors():
            self.apply(entries)

    def deliver_events(self, events: Iterable[object]) -> None:
        """Alerts opened, acknowledged or closed by a re-pin: dataset folders follow the catalog."""
        with platform_errors():
            self.sync_datasets()

    def apply(self, entries: Sequence[Change]) -> DeliveryReport:
        """Carry out one batch of change-log entries (cursor order); safe to repeat."""
        report = DeliveryReport()
        mapped = catalog.load_map(self._conn, self.target.name, self.target.mount, [e.key for e in entries])
        plan = plan_batch(entries, mapped, self.target.root)
        states = catalog.dataset_states(self._conn, self.target.mount, self.target.root)
        for folder, changes in sorted(plan.create.items()):
            report.created += self._create(folder, changes, states)
        if plan.refresh:
            report.refreshed += self._refresh(plan.refresh)
        if plan.delete:
            report.deleted += self._delete(plan.delete)
            rels = [relative_key(entry.key, self.target.root) or "" for entry, _ in plan.delete]
            self._remove_emptied(emptied_candidates(rels), states, report)
        report.folders_marked += self._sync_dataset_folders(states)
        log.info("girder.delivered", connector=self.target.name, **vars(report))
        return report

    def sync_datasets(self) -> int:
        """Write the DIVE markers and quarantine of every dataset folder that differs; returns how many."""
        return self._sync_dataset_folders(catalog.dataset_states(self._conn, self.target.mount, self.target.root))

    # Created

    def _create(self, folder: str, changes: Sequence[Change], states: Mapping[str, DatasetState]) -> int:
        folder_id = self._ensure_folder(folder)
        state = states.get(folder)
        if state is not None and state.annotated:  # objects are back in a kept, emptied dataset
            self._client.set_folder_metadata(folder_id, emptied_dataset_meta(None))
        by_key = {c.key: c for c in changes}
        items = self._client.reference_objects(self.target.assetstore_id, folder_id, sorted(by_key))
        rows = [(Mapped(key, item.id, folder_id, by_key[key].etag, by_key[key].version), by_key[key].cursor)
                for key, item in items.items()]  # fmt: skip
        catalog.save_map(self._conn, self.target.name, self.target.mount, rows)
        missing = len(by_key) - len(items)
        if missing:  # gone from the bucket since: its delete is further on in the log
            log.info("girder.objects_gone", connector=self.target.name, folder=folder, count=missing)
        return len(items)

    # Overwritten

    def _refresh(self, refresh: Sequence[tuple[Change, Mapped]]) -> int:
        """Files follow their overwritten objects, folder by folder; items keep their ids."""
        by_folder: dict[str, list[tuple[Change, Mapped]]] = {}
        for entry, row in refresh:
            by_folder.setdefault(row.folder_id, []).append((entry, row))
        done = 0
        for folder_id, pairs in by_folder.items():
            try:
                items = self._client.refresh_references(
                    self.target.assetstore_id, folder_id, {entry.key: row.item_id for entry, row in pairs}
                )
            except PlatformRecordMissing:  # the folder was removed by hand: import it afresh
                log.info("girder.refresh_folder_gone", connector=self.target.name, folder_id=folder_id)
                catalog.forget_keys(self._conn, self.target.name, self.target.mount, [e.key for e, _ in pairs])
                continue
            rows = []
            for entry, row in pairs:
                item = items.get(entry.key)
                if item is None:  # the object went again since: its delete is further on in the log
                    continue
                self._client.set_item_metadata(item.id, changed_item_meta(entry, row))
                rows.append((Mapped(entry.key, item.id, folder_id, entry.etag, entry.version), entry.cursor))
            catalog.save_map(self._conn, self.target.name, self.target.mount, rows)
            done += len(rows)
        return done

    # Deleted

    def _delete(self, deletes: Sequence[tuple[Change, Mapped | None]]) -> int:
        ids = [row.item_id if row is not None else self._find_item_id(entry.key) for entry, row in deletes]
        done = self._client.delete_many("item", [i for i in ids if i is not None])
        catalog.forget_keys(self._conn, self.target.name, self.target.mount, [e.key for e, _ in deletes])
        return done

    def _find_item_id(self, key: str) -> str | None:
        rel = relative_key(key, self.target.root)
        if rel is None:
            return None
        folder, name = split_rel(rel)
        folder_id = self._find_folder(folder)
        item = self._client.find_item(folder_id, name) if folder_id else None
        return item.id if item else None

    def _remove_emptied(self, candidates: Sequence[str], states: Mapping[str, DatasetState],
                        report: DeliveryReport) -> None:  # fmt: skip
        """Remove folders the deletes left empty (deepest first), keeping annotated datasets."""
        kept: set[str] = set()
        for folder in candidates:
            if any(k.startswith(folder + "/") for k in kept):
                kept.add(folder)  # an ancestor of a kept folder is not empty
                continue
            folder_id = self._find_folder(folder)
            if folder_id is None or not self._is_empty(folder_id):
                continue
            state = states.get(folder)
            if state is not None and state.annotated:
                self._client.set_folder_metadata(folder_id, emptied_dataset_meta(state))
                self._raise_emptied_alert(folder, state)
                kept.add(folder)
                report.datasets_kept += 1
                continue
            self._client.delete_folder(folder_id)
            self._forget_folder(folder)
            report.folders_removed += 1

    def _raise_emptied_alert(self, folder: str, state: DatasetState) -> None:
        """Annotated work is never dropped silently: a sink alert (``sink alerts NAME``, webhooks)."""
        details = {"folder": folder, "girder_folder": self._folders.get(folder), "alignment_alert": state.alert_id}
        store.raise_alert(self._conn, self.target.name, "annotated-dataset-emptied", details,
                          mount=self.target.mount, key=self.target.root + folder)  # fmt: skip
        log.warning("girder.annotated_dataset_emptied", connector=self.target.name, folder=folder)

    def _is_empty(self, folder_id: str) -> bool:
        return next(iter(self._client.items(folder_id)), None) is None and (
            next(iter(self._client.child_folders(folder_id)), None) is None
        )

    # Dataset folders

    def _sync_dataset_folders(self, states: Mapping[str, DatasetState]) -> int:
        written = 0
        for folder in sorted(set(states) | set(self._folder_meta)):
            state = states.get(folder)
            wanted = dataset_folder_meta(state)
            if self._folder_meta.get(folder) == wanted:
                continue
            folder_id = self._find_folder(folder)
            if folder_id is None:
                self._folder_meta.pop(folder, None)
                continue
            self._write_folder_meta(folder, folder_id, wanted)
            written += 1
        return written

    def _write_folder_meta(self, folder: str, folder_id: str, meta: dict[str, Any]) -> None:
        try:
            self._client.set_folder_metadata(folder_id, meta)
        except PlatformRecordMissing:
            self._forget_folder(folder)
            return
        self._folder_meta[folder] = meta

    # Folder ids

    def _ensure_folder(self, folder: str) -> str:
        known = self._folders.get(folder)
        if known is not None:
            return known
        parent, name = split_rel(folder)
        made = self._client.ensure_folder(self._ensure_folder(parent), name)
        self._folders[folder] = made.id
        return made.id

    def _find_folder(self, folder: str) -> str | None:
        known = self._folders.get(folder)
        if known is not None:
            return known
        parent, name = split_rel(folder)
        parent_id = self._find_folder(parent)
        found = self._client.find_folder(parent_id, name) if parent_id else None
        if found is not None:
            self._folders[folder] = found.id
        return found.id if found else None

    def _forget_folder(self, folder: str) -> None:
        for path in [p for p in self._folders if p == folder or p.startswith(folder + "/")]:
            del self._folders[path]
        self._folder_meta.pop(folder, None)
