"""The fs watcher's normalizer: observations in, changes out, bad input is InvalidEvent."""

from __future__ import annotations

import json

import pytest

from mountsync.producers.normalize.fs import normalize_fs
from mountsync.shared.errors import InvalidEvent
from mountsync.shared.events import Kind, RawMessage, Source


def message(body: object) -> RawMessage:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawMessage(Source.FS, "m1", data)


def test_existing_file_is_created_with_observation_time() -> None:
    [change] = normalize_fs(
        message({"root": "/r", "key": "a/1.jpg", "exists": True, "size": 3, "etag": "x-3", "observed_ns": 42})
    )
    assert (change.kind, change.bucket, change.key, change.size, change.event_ns) == (
        Kind.CREATED,
        "/r",
        "a/1.jpg",
        3,
        42,
    )
    assert change.sequencer == ""


def test_missing_file_is_a_delete() -> None:
    [change] = normalize_fs(message({"root": "/r", "key": "a/1.jpg", "exists": False, "observed_ns": 7}))
    assert change.kind is Kind.DELETED and change.size is None


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1,2]",
        {"root": "/r", "key": "a", "exists": "yes", "observed_ns": 1},
        {"root": "rel", "key": "a", "exists": False, "observed_ns": 1},
        {"root": "/r", "key": "../x", "exists": False, "observed_ns": 1},
        {"root": "/r", "key": "a\x01b", "exists": False, "observed_ns": 1},
        {"root": "/r", "key": "a", "exists": True, "observed_ns": 1},
        {"root": "/r", "key": "a", "exists": False, "observed_ns": True},
    ],
)
def test_bad_observations_are_invalid(body: object) -> None:
    with pytest.raises(InvalidEvent):
        normalize_fs(message(body))
