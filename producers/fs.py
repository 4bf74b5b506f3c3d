"""Local directory producer: a watchdog (inotify) watcher plus periodic rescans.

File events become observations (the file is stat'ed when seen). Directory moves and deletes,
and inotify overflows, cannot be expanded into per-file events without the catalog, so they
queue a reindex of that subtree instead; a full reindex is queued at start (events missed while
the producer was down) and every ``MOUNTSYNC_FS_RESCAN_INTERVAL`` seconds as the safety net.
Observations live in memory until enqueued: a crash loses them, which the start-up reindex covers.
"""

from __future__ import annotations

import json
import os
import queue
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import typer
from watchdog.events import FileSystemEventHandler

from mountsync.shared.events import RawMessage, Source
from mountsync.shared.storage.local import UPLOADS_DIR, fs_etag

RescanRequest = Callable[[str], None]


class WatcherSource:
    """``EventSource`` over watchdog; acks are no-ops, nacks put paths back for another look."""

    name = Source.FS

    def __init__(self, root: str, request_rescan: RescanRequest, rescan_interval_s: float) -> None:
        from watchdog.observers import Observer

        self.root = os.path.abspath(root)
        self._paths: queue.Queue[str] = queue.Queue()
        self._request_rescan = request_rescan
        self._rescan_interval_s = rescan_interval_s
        self._next_rescan = time.monotonic() + rescan_interval_s
        self._observer = Observer()
        self._observer.schedule(_Handler(self), self.root, recursive=True)
        self._observer.start()
        request_rescan("")

    def note(self, path: str, is_directory: bool) -> None:
        rel = os.path.relpath(path, self.root)
        if rel == "." or rel.startswith("..") or rel.split(os.sep)[0] == UPLOADS_DIR:
            return
        key = rel.replace(os.sep, "/")
        if is_directory:
            self._request_rescan(key)
        else:
            self._paths.put(key)

    def receive(self, max_messages: int, wait_s: float) -> list[RawMessage]:
        self._maybe_rescan()
        keys: dict[str, None] = {}
        try:
            keys[self._paths.get(timeout=max(wait_s, 0.01))] = None
        except queue.Empty:
            return []
        while len(keys) < max_messages:
            try:
                keys[self._paths.get_nowait()] = None
            except queue.Empty:
                break
        return [self._observe(key) for key in keys]

    def _maybe_rescan(self) -> None:
        if time.monotonic() >= self._next_rescan:
            self._next_rescan = time.monotonic() + self._rescan_interval_s
            self._request_rescan("")

    def _observe(self, key: str) -> RawMessage:
        observed_ns = time.time_ns()
        body: dict[str, Any] = {"root": self.root, "key": key, "observed_ns": observed_ns}
        try:
            st = os.stat(os.path.join(self.root, *key.split("/")), follow_symlinks=False)
            is_file = (st.st_mode & 0o170000) == 0o100000
        except (FileNotFoundError, NotADirectoryError):
            st, is_file = None, False
        body["exists"] = bool(st and is_file)
        if st is not None and is_file:
            body.update(size=st.st_size, etag=fs_etag(st))
        data = json.dumps(body, ensure_ascii=False, default=str).encode("utf-8", "surrogateescape")
        return RawMessage(Source.FS, uuid.uuid4().hex, data, received_ns=observed_ns)

    def ack(self, messages: Sequence[RawMessage]) -> list[RawMessage]:
        return []

    def nack(self, messages: Sequence[RawMessage]) -> None:
        for message in messages:
            self._paths.put(json.loads(message.body)["key"])

    def reject(self, messages: Sequence[RawMessage]) -> None:
        return None

    def extend(self, messages: Sequence[RawMessage], seconds: float) -> None:
        return None

    def close(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)


class _Handler(FileSystemEventHandler):
    def __init__(self, source: WatcherSource) -> None:
        super().__init__()
        self._source = source

    def on_any_event(self, event: Any) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.event_type == "closed" or not event.is_directory:
            self._source.note(os.fsdecode(event.src_path), False)
        elif event.event_type in ("moved", "deleted", "created"):
            self._source.note(os.fsdecode(event.src_path), True)
        dest = getattr(event, "dest_path", "")
        if dest:
            self._source.note(os.fsdecode(dest), event.is_directory)


def register(produce_app: typer.Typer) -> None:
    @produce_app.command(Source.FS.value)
    def produce_fs(
        ctx: typer.Context,
        mount: str = typer.Option(..., "--mount", help="Name of a file:// mount to watch."),
    ) -> None:
        """Watch a local directory mount and queue its changes."""
        from mountsync.producers.cli import run_producer
        from mountsync.producers.normalize.fs import normalize_fs
        from mountsync.shared.catalog.mounts import Mounts
        from mountsync.shared.errors import BadInput
        from mountsync.shared.events import Provider
        from mountsync.shared.queues import QUEUE_REINDEX, TASK_REINDEX, send

        def build(runtime: Any) -> tuple[Any, Any]:
            with runtime.pool.connection() as conn:
                found = Mounts(conn).get(mount)
            if found.provider is not Provider.FS:
                raise BadInput(f"mount {mount!r} is {found.provider.value}, not a file:// mount")
            if not os.path.isdir(found.bucket):
                raise BadInput(f"mount {mount!r}: directory {found.bucket} does not exist")

            def rescan(prefix: str) -> None:
                send(runtime.celery, TASK_REINDEX, mount, prefix, None, "fs-watch", queue=QUEUE_REINDEX)

            source = WatcherSource(found.bucket, rescan, runtime.settings.fs_rescan_interval_s)
            return source, runtime.pipeline(normalize_fs)

        run_producer(ctx, build)
