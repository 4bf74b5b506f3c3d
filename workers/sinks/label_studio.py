"""The Label Studio connector: a sink that keeps a project's tasks in step with one mount.

It carries out ``label_studio_plan.plan_batch`` through the typed client. Crash safety: keys to
create are written to the map as ``importing`` (committed) before the import call, and every
task carries ``meta.mountsync.key``; a redelivered batch that meets ``importing`` rows looks the
keys up in the project first and adopts what the killed run created (removing any second copy),
so a SIGKILL between the platform call and the map update leaves neither a duplicate nor a gap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
import structlog

from mountsync.shared.catalog.change_log import ChangeEntry
from mountsync.shared.config import Settings
from mountsync.workers.connectors.label_studio_client import LabelStudioClient, NewTask
from mountsync.workers.sinks import store
from mountsync.workers.sinks.delivery import platform_errors
from mountsync.workers.sinks.label_studio_plan import Mapped, Plan, object_url, plan_batch, task_meta
from mountsync.workers.sinks.receivers import connect_for
from mountsync.workers.sinks.store import Sink, SinkEvent

log = structlog.get_logger("mountsync.sinks")
META = "mountsync"


class LabelStudioConnector:
    """One connector sink: its client, its mount's bucket, and a catalog connection for the map."""

    def __init__(self, sink: Sink, client: LabelStudioClient, conn: psycopg.Connection, provider: str,
                 bucket: str) -> None:  # fmt: skip
        self.sink = sink
        self.project = int(sink.options["project"])
        self.field = str(sink.options.get("data_field") or "image")
        self.mount = sink.mounts[0]
        self._client = client
        self._conn = conn
        self._provider = provider
        self._bucket = bucket

    @classmethod
    def open(cls, sink: Sink, settings: Settings, environ: Mapping[str, str]) -> LabelStudioConnector:
        client = LabelStudioClient.from_env(sink.target, str(sink.options["token_env"]), environ)
        conn, mount = connect_for(sink, settings, client)
        return cls(sink, client, conn, mount.provider.value, mount.bucket)

    def close(self) -> None:
        self._client.close()
        self._conn.close()

    def deliver_changes(self, entries: Sequence[ChangeEntry]) -> None:
        with platform_errors():
            mapped = self._load_map([e.key for e in entries])
            if any(m.state == "importing" for m in mapped.values()):
                mapped = self._recover_imports(mapped)
            plan = plan_batch(entries, mapped)
            if plan.empty():
                return
            self._create(plan.create)
            self._delete_or_keep(plan)
            self._mark(plan)

    def deliver_events(self, events: Sequence[SinkEvent]) -> None:
        """Alignment alerts: mark (or unmark) the tasks of a quarantined dataset of our mount."""
        with platform_errors():
            for event in events:
                data = event.payload
                if event.topic != "alerts" or data.get("mount") != self.mount or "dataset" not in data:
                    continue
                self._mark_dataset(str(data["dataset"]), bool(data.get("quarantined")))

    # -- the map --------------------------------------------------------------------------------

    def _load_map(self, keys: Sequence[str]) -> dict[str, Mapped]:
        rows = self._conn.execute(
            "SELECT key, remote_id, etag, state, quarantined, cursor FROM connector_items "
            "WHERE sink_id = %s AND mount = %s AND key = ANY(%s)",
            (self.sink.id, self.mount, list(set(keys))),
        ).fetchall()
        return {r[0]: Mapped(*r) for r in rows}

    def _store(self, rows: Sequence[tuple[str, int | None, str | None, str, bool, int]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO connector_items (sink_id, mount, key, remote_id, etag, state, quarantined, cursor)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (sink_id, mount, key) DO UPDATE SET remote_id = excluded.remote_id,
                       etag = excluded.etag, state = excluded.state, quarantined = excluded.quarantined,
                       cursor = excluded.cursor""",
                [(self.sink.id, self.mount, *row) for row in rows],
            )

    def _recover_imports(self, mapped: dict[str, Mapped]) -> dict[str, Mapped]:
        """Find tasks a killed run created for ``importing`` keys; keep one per key, delete extras."""
        pending = {k for k, m in mapped.items() if m.state == "importing"}
        found: dict[str, list[int]] = {}
        for task in self._client.iter_tasks(self.project):
            ours = task.meta.get(META) if isinstance(task.meta, Mapping) else None
            if isinstance(ours, Mapping) and ours.get("sink") == self.sink.name and ours.get("key") in pending:
                found.setdefault(str(ours["key"]), []).append(task.id)
        extras = [i for ids in found.values() for i in sorted(ids)[1:]]
        self._client.delete_tasks(self.project, extras)
        rows = [(k, min(ids), mapped[k].etag, "live", False, 0) for k, ids in found.items()]
        self._store(rows)
        log.warning("connector recovered an interrupted import", sink=self.sink.name, adopted=len(rows),
                    duplicates_removed=len(extras), missing=len(pending) - len(rows))  # fmt: skip
        for key, remote_id, etag, state, quarantined, _ in rows:
            mapped[key] = Mapped(key, remote_id, etag, state, quarantined, 0)
        for key in pending - set(found):
            del mapped[key]  # never reached Label Studio: create it as new
        return mapped

    # -- carrying out a plan -------------------------------------------------------------------

    def _create(self, entries: list[ChangeEntry]) -> None:
        if not entries:
            return
        self._store([(e.key, None, e.etag, "importing", e.quarantined, e.cursor) for e in entries])
        tasks = [
            NewTask(
                data={self.field: object_url(self._provider, self._bucket, e.key)},
                meta={META: task_meta(self.sink.name, e, "live")},
            )
            for e in entries
        ]
        ids = self._client.import_tasks(self.project, tasks)
        self._store([(e.key, i, e.etag, "live", e.quarantined, e.cursor) for e, i in zip(entries, ids, strict=True)])

    def _delete_or_keep(self, plan: Plan) -> None:
        if plan.forget:
            self._store([(e.key, None, e.etag, "deleted", False, e.cursor) for e in plan.forget])
        delete: list[tuple[ChangeEntry, int]] = []
        kept: list[tuple[str, int | None, str | None, str, bool, int]] = []
        for entry, row in plan.check_delete:
            assert row.remote_id is not None
            task = self._client.get_task(row.remote_id)
            if task is None or task.annotations == 0:
                delete.append((entry, row.remote_id))
                continue
            meta = dict(task.meta)
            meta[META] = task_meta(self.sink.name, entry, "deleted", etag=row.etag, deleted=True,
                                   annotations=task.annotations)  # fmt: skip
            self._client.update_task(task.id, meta=meta)
            kept.append((entry.key, task.id, row.etag, "kept", row.quarantined, entry.cursor))
            store.raise_alert(self._conn, self.sink.name, "annotated-task-deleted",
                              {"task": task.id, "annotations": task.annotations, "project": self.project},
                              mount=entry.mount, key=entry.key)  # fmt: skip
            log.warning("object of an annotated task deleted; task kept and marked", sink=self.sink.name,
                        key=entry.key, task=task.id, annotations=task.annotations)  # fmt: skip
        self._client.delete_tasks(self.project, [i for _, i in delete])
        self._store([(e.key, i, e.etag, "deleted", False, e.cursor) for e, i in delete] + kept)

    def _mark(self, plan: Plan) -> None:
        rows: list[tuple[str, int | None, str | None, str, bool, int]] = []
        for entry, row in plan.mark_changed:
            extra = {"old_etag": row.etag, "new_etag": entry.etag, "changed": True}
            self._patch_meta(row, task_meta(self.sink.name, entry, "changed", **extra))
            rows.append((entry.key, row.remote_id, entry.etag, "changed", entry.quarantined, entry.cursor))
        for entry, row in plan.mark_quarantine:
            self._patch_meta(row, task_meta(self.sink.name, entry, row.state, etag=row.etag))
            rows.append((entry.key, row.remote_id, row.etag, row.state, entry.quarantined, entry.cursor))
        self._store(rows)

    def _patch_meta(self, row: Mapped, ours: dict[str, Any]) -> None:
        assert row.remote_id is not None
        task = self._client.get_task(row.remote_id)
        if task is None:
            return
        previous = task.meta.get(META) if isinstance(task.meta, Mapping) else None
        if isinstance(previous, Mapping) and previous.get("state") == "changed" and ours["state"] != "live":
            ours = {**ours, "old_etag": previous.get("old_etag", ours.get("old_etag")), "changed": True}
        self._client.update_task(task.id, meta={**dict(task.meta), META: ours})

    def _mark_dataset(self, path: str, quarantined: bool) -> None:
        rows = self._conn.execute(
            "SELECT key, remote_id, etag, state, quarantined, cursor FROM connector_items "
            "WHERE sink_id = %s AND mount = %s "
            "AND remote_id IS NOT NULL AND state <> 'deleted' AND quarantined <> %s "
            "AND (key = %s OR starts_with(key, %s))",
            (self.sink.id, self.mount, quarantined, path, f"{path}/" if path else ""),
        ).fetchall()
        for row in (Mapped(*r) for r in rows):
            assert row.remote_id is not None
            task = self._client.get_task(row.remote_id)
            if task is not None:
                ours = dict(task.meta.get(META) or {}) if isinstance(task.meta, Mapping) else {}
                self._client.update_task(task.id, meta={**dict(task.meta), META: {**ours, "quarantined": quarantined}})
            self._conn.execute(
                "UPDATE connector_items SET quarantined = %s WHERE sink_id = %s AND mount = %s AND key = %s",
                (quarantined, self.sink.id, self.mount, row.key),
            )
