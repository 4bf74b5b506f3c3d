"""Normalizer for the local-directory watcher: one JSON observation -> one ObjectChange.

Body: ``{"root": "/abs", "key": "a/b.jpg", "exists": true, "size": 3, "etag": "...",
"observed_ns": 1700000000000000000}``. The watcher stats the file when it observes it, so the
observation time orders changes (sequencer empty, ``event_ns`` = observation time): the
watcher sees a path's events in order, and a reindex uses the same clock.
"""

from __future__ import annotations

from typing import Any

from mountsync.shared.errors import InvalidEvent
from mountsync.shared.events import Kind, ObjectChange, Provider, RawMessage, Source, load_json


def _field(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise InvalidEvent(f"fs observation field {name!r} missing or not {kind.__name__}")
    return value


def normalize_fs(message: RawMessage) -> list[ObjectChange]:
    body = load_json(message.body, "fs observation")
    if not isinstance(body, dict):
        raise InvalidEvent("fs observation is not a JSON object")
    root = _field(body, "root", str)
    key = _field(body, "key", str)
    exists = body.get("exists")
    if not isinstance(exists, bool):
        raise InvalidEvent("fs observation field 'exists' missing or not a boolean")
    if not root.startswith("/"):
        raise InvalidEvent(f"fs observation root {root!r} is not absolute")
    if key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidEvent(f"fs observation key {key!r} is not a relative path inside the root")
    return [
        ObjectChange(
            provider=Provider.FS,
            bucket=root,
            key=key,
            kind=Kind.CREATED if exists else Kind.DELETED,
            event_ns=_field(body, "observed_ns", int),
            source=Source.FS,
            size=_field(body, "size", int) if exists else None,
            etag=_field(body, "etag", str) if exists else None,
            source_id=message.message_id,
        )
    ]
