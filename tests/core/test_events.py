"""The ObjectChange wire format and key rules."""

from __future__ import annotations

import dataclasses
import inspect
import json
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from mountsync.shared.errors import InvalidEvent
from mountsync.shared.events import (
    ROW_SCHEMA,
    Kind,
    ObjectChange,
    Provider,
    Source,
    load_json,
    normalize_etag,
    parse_time,
    to_ns,
    wire_event_ns,
)


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


def test_the_written_out_init_takes_the_fields_in_order_with_their_defaults_and_stays_frozen() -> None:
    params = list(inspect.signature(ObjectChange.__init__).parameters.values())[1:]
    assert [(p.name, p.default) for p in params] == [
        (f.name, inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default)
        for f in dataclasses.fields(ObjectChange)
    ]
    original = change()
    with pytest.raises(dataclasses.FrozenInstanceError):
        original.key = "other"  # type: ignore[misc]
    assert dataclasses.replace(original, key="b/2.jpg").key == "b/2.jpg"
    with pytest.raises(InvalidEvent, match="negative size"):
        dataclasses.replace(original, size=-1)
    assert ObjectChange(*[getattr(original, f.name) for f in dataclasses.fields(ObjectChange)]) == original


def test_the_event_time_reads_from_either_wire_schema() -> None:
    original = change(event_ns=1_714_564_800_123_456_789)
    assert wire_event_ns(original.to_row()) == wire_event_ns(original.to_wire()) == original.event_ns


def test_a_row_carries_the_same_change_in_fewer_bytes() -> None:
    removal = change(kind=Kind.DELETED, size=None, etag=None, version=None, sequencer="", source_id=None)
    for original in (change(key="ünï cödé/with space+plus%25.png"), removal):
        row = orjson.dumps(original.to_row())
        assert orjson.loads(row)[0] == ROW_SCHEMA
        assert ObjectChange.from_wire(orjson.loads(row)) == original
        assert len(row) < len(orjson.dumps(original.to_wire()))


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda r: r.__setitem__(0, 3), "malformed change row: 12 items with schema 3"),
        (lambda r: r.pop(), "malformed change row: 11 items"),
        (lambda r: r.clear(), "malformed change row: 0 items with schema None"),
        (lambda r: r.__setitem__(4, "exploded"), "unknown value 'exploded'"),
        (lambda r: r.__setitem__(1, ["s3"]), "malformed change"),
        (lambda r: r.__setitem__(5, "soon"), "malformed change"),
        (lambda r: r.__setitem__(7, -1), "negative size"),
        (lambda r: r.__setitem__(3, ""), "empty"),
    ],
)
def test_bad_rows_are_invalid_events(mutate, reason) -> None:
    row = change().to_row()
    mutate(row)
    with pytest.raises(InvalidEvent, match=reason):
        ObjectChange.from_wire(row)


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda d: d.update(schema=3), "unsupported change schema 3"),
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


@settings(max_examples=300, deadline=None)
@given(moment=st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7, minutes=-30))])))
def test_nanoseconds_are_exact_for_any_time(moment: datetime) -> None:
    """Before 1970 included, where a float timestamp rounded toward zero put fractions 1 s late."""
    exact = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
    assert to_ns(moment) == to_ns(moment.isoformat()) == exact
    assert to_ns(moment.astimezone(UTC).replace(tzinfo=None)) == exact  # a naive time is UTC


def test_a_time_before_1970_keeps_its_sign() -> None:
    assert to_ns("1969-12-31T23:59:59.5Z") == -500_000_000


_ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12)
_ODD_TEXTS = st.one_of(st.text(max_size=12), st.sampled_from(["", "a\x00", "a\x7f", "é", "\udc80"]), st.none(),
                       st.integers(), st.binary(max_size=4))  # fmt: skip
_ODD_INTS = st.one_of(st.none(), st.sampled_from([-(2**63) - 1, 2**63, -1, True]), st.text(max_size=3))
# Mostly what the shortcut takes, so that it says yes often and an odd value meets it alone.
_TEXTS = st.integers(0, 9).flatmap(lambda n: _ODD_TEXTS if n == 0 else _ASCII)
_INTS = st.integers(0, 9).flatmap(lambda n: _ODD_INTS if n == 0 else st.integers(0, 2**63 - 1))


@settings(max_examples=600, deadline=None)
@given(key=_TEXTS, bucket=_TEXTS, etag=_TEXTS, version=_TEXTS, sequencer=_TEXTS, source_id=_TEXTS,
       event_ns=_INTS, size=_INTS)  # fmt: skip
def test_the_one_pass_check_accepts_nothing_the_field_checks_refuse(**values: object) -> None:
    """``_plainly_valid`` is a shortcut: where it says yes, the field-by-field checks agree."""
    unchecked = object.__new__(ObjectChange)
    for name, value in {**values, "provider": Provider.S3, "kind": Kind.CREATED, "source": Source.S3_SQS}.items():
        object.__setattr__(unchecked, name, value)
    if unchecked._plainly_valid():
        unchecked._check_each_field()  # raises InvalidEvent if the shortcut let a bad change through
        event("shortcut took it")


@pytest.mark.parametrize("key", ["a\x7fb", "tab\there", "x" * 4097, "é" * 2049, "bad\udc80"])
def test_keys_the_one_pass_check_leaves_to_the_field_checks_are_still_refused(key: str) -> None:
    with pytest.raises(InvalidEvent):
        change(key=key)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(_JSON_VALUES)
def test_load_json_reads_what_json_reads(value: object) -> None:
    text = json.dumps(value).encode()
    assert load_json(text, "x") == json.loads(text)


@pytest.mark.parametrize("text", [b'{"a": NaN}', b'["\\ud800"]', b"[1e400]", b"[" * 600 + b"]" * 600])
def test_load_json_reads_what_orjson_refuses_or_nests_deep_as_json_does(text: bytes) -> None:
    assert repr(load_json(text, "x")) == repr(json.loads(text))


def test_load_json_names_what_is_not_json() -> None:
    with pytest.raises(InvalidEvent, match=r"^body is not JSON: Expecting ',' delimiter"):
        load_json(b'{"a": 1 "b": 2}', "body")
