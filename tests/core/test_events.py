"""The ObjectChange wire format and key rules."""

from __future__ import annotations

import json

import pytest

from mountsync.shared.errors import InvalidEvent
from mountsync.shared.events import Kind, ObjectChange, Provider, Source, normalize_etag, parse_time, to_ns


def change(**over: object) -> ObjectChange:
    base: dict[str, object] = dict(
        provider=Provider.S3,
        bucket="b",
        key="a/1.jpg",
        kind=Kind.CREATED,
        event_ns=5,
        source=Source.S3_SQS,
        size=3,
        etag="e",
        version="v1",
        sequencer="0A",
        source_id="m1",
    )
    base.update(over)
    return ObjectChange(**base)  # type: ignore[arg-type]


def test_round_trip_is_exact_and_json_only() -> None:
    original = change(key="ünï cödé/with space+plus%25.png")
    text = original.to_json()
    assert json.loads(text)["schema"] == 1
    assert ObjectChange.from_json(text) == original


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda d: d.update(schema=2), "unsupported change schema"),
        (lambda d: d.pop("key"), "malformed change"),
        (lambda d: d.update(kind="exploded"), "malformed change"),
        (lambda d: d.update(provider="ftp"), "malformed change"),
        (lambda d: d.update(size=-1), "negative size"),
    ],
)
def test_bad_wire_changes_are_invalid_events(mutate, reason) -> None:
    data = change().to_wire()
    mutate(data)
    with pytest.raises(InvalidEvent, match=reason):
        ObjectChange.from_wire(data)


@pytest.mark.parametrize("key", ["", "a\x00b", "tab\there", "x" * 5000, "bad\udcffsurrogate"])
def test_unusable_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidEvent):
        change(key=key)


def test_keys_are_kept_exactly_including_unicode_forms() -> None:
    nfc, nfd = "caf\u00e9.jpg", "cafe\u0301.jpg"
    assert change(key=nfc).key != change(key=nfd).key


def test_folder_is_the_parent_path() -> None:
    assert change(key="a/b/c.jpg").folder == "a/b"
    assert change(key="top.jpg").folder == ""


def test_times_and_etags_normalize() -> None:
    assert to_ns("2024-05-01T12:00:00.1234567Z") == to_ns("2024-05-01T12:00:00.123456Z")
    assert parse_time("2024-05-01T12:00:00Z").tzinfo is not None
    assert normalize_etag('"abc"') == "abc"
    assert normalize_etag('W/"abc"') == "abc"
    with pytest.raises(InvalidEvent):
        parse_time("yesterday")
