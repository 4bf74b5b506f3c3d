"""Test helper: a mount whose changes are applied through the real write path, in-process."""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg

from mountsync.shared.catalog.mounts import Mount, Mounts
from mountsync.shared.events import Kind, ObjectChange, Provider, Source
from tests.helpers import apply_committed

_clock = itertools.count(1_700_000_000_000_000_000, 1000)


@dataclass
class FakeBucket:
    """Creates, overwrites, deletes and renames keys of an fs mount through ``apply_changes``."""

    conn: psycopg.Connection
    mount: Mount
    contents: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, conn: psycopg.Connection, name: str, root: str) -> FakeBucket:
        return cls(conn, Mounts(conn).add(name, f"file://{root}"))

    def _change(self, key: str, kind: Kind, content: str | None = None) -> ObjectChange:
        return ObjectChange(
            provider=Provider.FS, bucket=self.mount.bucket, key=key, kind=kind,
            event_ns=next(_clock), source=Source.FS,
            size=None if content is None else len(content),
            etag=None if content is None else f"etag-{content}",
        )  # fmt: skip

    def apply(self, changes: list[ObjectChange]) -> None:
        apply_committed(self.conn, changes)

    def put(self, *keys: str, content: str | None = None) -> None:
        changes = []
        for key in keys:
            body = content or f"{key}#1"
            self.contents[key] = body
            changes.append(self._change(key, Kind.CREATED, body))
        self.apply(changes)

    def overwrite(self, key: str) -> None:
        self.put(key, content=f"{self.contents[key]}+")

    def delete(self, *keys: str) -> None:
        for key in keys:
            self.contents.pop(key, None)
        self.apply([self._change(k, Kind.DELETED) for k in keys])

    def rename(self, old: str, new: str) -> None:
        """Delete and create in one batch (a rename as storage events report it)."""
        body = self.contents.pop(old)
        self.contents[new] = body
        self.apply([self._change(old, Kind.DELETED), self._change(new, Kind.CREATED, body)])


def frame_keys(folder: str, count: int) -> list[str]:
    return [f"{folder}/frame_{i:04d}.png" for i in range(count)]


class Receiver(BaseHTTPRequestHandler):
    """Webhook receiver: records (path, JSON body); answers with the status that ends the path."""

    received: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, json.loads(body)))
        status = int(self.path.rsplit("/", 1)[-1])
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def start_receiver(port: int) -> ThreadingHTTPServer:
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
