"""The Azure normalizer on recorded payloads (pure; no services)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mountsync.producers.normalize.azure import (
    KNOWN_TYPES,
    directory_scopes,
    host_and_path,
    make_normalizer,
    normalize_azure,
    plain_envelope,
    read_event,
    split_event_bodies,
    split_events,
    validation_code,
)
from mountsync.shared.errors import InvalidEvent
from mountsync.shared.events import Kind, ObjectChange, RawMessage, Source, to_ns

PAYLOADS = Path(__file__).parent / "payloads"


def raw(body: bytes | str, source: Source = Source.AZURE_EVENTGRID) -> RawMessage:
    data = body.encode() if isinstance(body, str) else body
    return RawMessage(source=source, message_id="m-1", body=data)


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def one(name: str) -> ObjectChange:
    [change] = normalize_azure(raw(payload(name)))
    return change


def test_event_grid_schema_created() -> None:
    change = one("eg_blob_created.json")
    assert (change.bucket, change.key, change.kind) == ("frames", "cam 1/0001.jpg", Kind.CREATED)
    assert (change.size, change.etag, change.version) == (524288, "0x8DC69E3F1A2B3C4", None)
    assert change.sequencer == "00000000000004420000000000028963000000000000F1A2"
    assert change.event_ns == to_ns("2024-05-01T12:00:00.123456Z")
    assert change.source_id == "5b1c0d2e-301e-0042-2a3b-1c2d3e000001"
    assert change.source is Source.AZURE_EVENTGRID


def test_cloudevents_single_object_decodes_the_url_and_strips_quoted_etag() -> None:
    change = one("ce_blob_created.json")
    assert change.key == "2024/report 1+2 ü.csv"
    assert change.etag == "0x8DC69E3F1A2B3C5"
    assert change.event_ns == to_ns("2024-05-01T12:00:01.958410Z")


def test_batch_gives_one_change_per_event_with_kinds() -> None:
    changes = normalize_azure(raw(payload("eg_batch_mixed.json")))
    assert [(c.key, c.kind, c.size) for c in changes] == [
        ("seq/0002.png", Kind.CREATED, 2048),
        ("seq/0001.png", Kind.DELETED, None),
        ("seq/0003.png", Kind.METADATA, 4096),
    ]
    assert changes[1].etag is None


def test_hns_placeholder_create_is_ignored_and_the_flush_is_content() -> None:
    [change] = normalize_azure(raw(payload("hns_create_then_flush.json")))
    assert (change.key, change.size, change.etag) == (
        "clips/run7/frame_000.tif", 1048576, "0x8DC6A0000000002",
    )  # fmt: skip
    assert change.bucket == "lake"


def test_sftp_placeholder_is_ignored() -> None:
    [change] = normalize_azure(raw(payload("sftp_create_commit.json")))
    assert (change.key, change.size) == ("vendor/a.mp4", 73400320)


def test_rename_is_a_delete_of_the_old_name_and_a_create_of_the_new() -> None:
    old, new = normalize_azure(raw(payload("hns_blob_renamed.json")))
    assert (old.key, old.kind) == ("clips/run7/tmp upload.tif", Kind.DELETED)
    assert (new.key, new.kind, new.size, new.etag) == (
        "clips/run7/frame_001.tif", Kind.CREATED, None, None,
    )  # fmt: skip
    assert old.sequencer == new.sequencer == "0000000000000000000000000000A0B1000000000001C2E0"


def test_directory_events_change_no_key_but_name_prefixes_to_reindex() -> None:
    message = raw(payload("hns_directories.json"))
    assert normalize_azure(message) == []
    assert directory_scopes(message) == [
        ("lake", "clips/old run"), ("lake", "clips/new run"), ("lake", "clips/run6"),
    ]  # fmt: skip


def test_validation_event_is_not_a_change() -> None:
    message = raw(payload("eg_validation.json"))
    assert normalize_azure(message) == []
    assert validation_code(split_events(message.body)) == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"


def test_storage_queue_base64_body() -> None:
    [change] = normalize_azure(raw(payload("queue_message_base64.txt"), Source.AZURE_QUEUE))
    assert change.key == "cam 1/0001.jpg"
    assert change.source is Source.AZURE_QUEUE


def test_azurite_path_style_url() -> None:
    event = json.loads(payload("eg_blob_created.json"))[0]
    event["data"]["url"] = "http://127.0.0.1:10000/devstoreaccount1/frames/a%2Fb/c%25d.png"
    event["topic"] = ""
    [change] = make_normalizer(["devstoreaccount1"])(raw(json.dumps(event)))
    assert (change.bucket, change.key) == ("frames", "a/b/c%d.png")


def test_events_of_other_accounts_are_refused_when_accounts_are_given() -> None:
    body = payload("eg_blob_created.json")
    assert len(make_normalizer(["acmeraw"])(raw(body))) == 1
    with pytest.raises(InvalidEvent, match="storage account 'acmeraw'"):
        make_normalizer(["otheraccount"])(raw(body))


def test_sequencers_order_the_same_blob_by_plain_comparison() -> None:
    create = one("eg_blob_created.json")
    later = json.loads(payload("eg_blob_created.json"))
    later[0]["eventType"] = "Microsoft.Storage.BlobDeleted"
    later[0]["data"]["sequencer"] = "00000000000004420000000000028963000000000000F1A9"
    [delete] = normalize_azure(raw(json.dumps(later)))
    assert len(create.sequencer) == len(delete.sequencer) == 48
    assert delete.sequencer.encode() > create.sequencer.encode()


def mutated(**data_changes: object) -> bytes:
    event = json.loads(payload("eg_blob_created.json"))[0]
    event["data"].update(data_changes)
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"not json at all!", "neither JSON nor base64"),
        (b"[]", "empty event array"),
        (b"[1]", "not a JSON object"),
        (b'{"hello": "world"}', "neither an Event Grid event"),
        (b'{"specversion": "0.3", "type": "x"}', "specversion"),
        (mutated(url=None), "no data.url"),
        (mutated(url="https://acmeraw.blob.core.windows.net/"), "does not name a container"),
        (mutated(url="https://acmeraw.blob.core.windows.net/other/x.jpg"), "subject names"),
        (mutated(url="https://acmeraw.blob.core.windows.net/frames/%FF.jpg"), "UTF-8"),
        (mutated(url="https://acmeraw.blob.core.windows.net/frames/a%00b"), "control character"),
        (mutated(contentLength=-1), "negative"),
        (mutated(contentLength="big"), "not an integer"),
        (mutated(sequencer=12), "not a string"),
    ],
)
def test_malformed_payloads_raise_invalid_event(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        normalize_azure(raw(body))


def test_unknown_event_types_are_dead_lettered_not_hidden() -> None:
    event = json.loads(payload("eg_blob_created.json"))[0]
    event["eventType"] = "Microsoft.Resources.ResourceWriteSuccess"
    with pytest.raises(InvalidEvent, match="unsupported event type"):
        normalize_azure(raw(json.dumps(event)))


def test_event_without_time_is_invalid() -> None:
    event = json.loads(payload("eg_blob_created.json"))[0]
    del event["eventTime"]
    with pytest.raises(InvalidEvent, match="no time"):
        normalize_azure(raw(json.dumps(event)))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
EVENTS = st.lists(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4), min_size=1, max_size=6)
LAYOUTS = st.sampled_from([(None, (",", ":"), True), (2, (",", ": "), False), (None, (" , ", " : "), False)])


@given(EVENTS, LAYOUTS, st.sampled_from(["", " ", "\n\t "]))
def test_split_event_bodies_gives_each_event_its_bytes_as_delivered(
    events: list[dict[str, object]], layout: tuple[int | None, tuple[str, str], bool], pad: str
) -> None:
    indent, separators, ascii_only = layout
    body = (pad + json.dumps(events, indent=indent, separators=separators, ensure_ascii=ascii_only) + pad).encode()
    pairs = split_event_bodies(body)
    assert [event for event, _ in pairs] == split_events(body) == events
    for event, text in pairs:
        assert text in body and json.loads(text) == event  # a slice of the body, not a re-serialization


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"[]", "empty event array"), (b"[1, {}]", "not a JSON object"), (b'[{"a": 1},]', "not JSON"),
     (b'[{"a": 1}] x', "not JSON"), (b'[{"a": 1}', "not JSON")],
)  # fmt: skip
def test_split_event_bodies_refuses_what_split_events_refuses(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        split_event_bodies(body)
    with pytest.raises(InvalidEvent, match=reason):
        split_events(body)


def test_a_parsed_payload_is_normalized_without_reading_the_body() -> None:
    [event] = json.loads(payload("eg_blob_created.json"))
    message = RawMessage(Source.AZURE_EVENTGRID, "m-1", b"", payload=event)  # no body to parse
    assert normalize_azure(message) == [one("eg_blob_created.json")]


_URL_PARTS = st.sampled_from(["http://", "https://", "HTTP://", "ftp://", "acct.blob.core.windows.net", "127.0.0.1",
                              ":10000", "[::1]", "user@", "/", "//", "cont", "a%20b", "é", "?q=1", "#f", " ", "\t",
                              "\x00", ":", "@", "[", "]"])  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(st.lists(_URL_PARTS, max_size=9).map("".join))
@example("http://a%20bHTTP//")  # urlsplit lower-cases a host only up to "%" (an IPv6 zone)
def test_the_blob_url_shortcut_reads_urls_as_urlsplit_does(url: str) -> None:
    try:
        parts = urlsplit(url)
        expected: tuple[str, str] | str = (parts.hostname or "", parts.path)
    except ValueError as exc:
        expected = str(exc)
    try:
        got: tuple[str, str] | str = host_and_path(url)
    except ValueError as exc:
        got = str(exc)
    assert got == expected


_TYPES = st.sampled_from([*sorted(KNOWN_TYPES), "Microsoft.Storage.BlobMoved", "", "Other.Thing"])
_ANY = st.one_of(st.none(), st.integers(), st.text(max_size=3), _TYPES, st.lists(st.integers(), max_size=1))
_ENVELOPES = st.fixed_dictionaries(
    {},
    optional={"eventType": st.one_of(_TYPES, _ANY), "specversion": st.one_of(st.just("1.0"), _ANY),
              "type": st.one_of(_TYPES, _ANY), "data": st.one_of(st.just({}), st.none(), _ANY)},
)  # fmt: skip


@given(_ENVELOPES)
@settings(max_examples=400)
def test_plain_envelope_is_read_event_accepting_a_known_type(item: dict[str, object]) -> None:
    """The webhook's quick check says yes exactly when the drainer's ``read_event`` reads the
    envelope and ``event_changes`` knows its type (anything else gets a 400 at once)."""
    try:
        expected = read_event(item).type in KNOWN_TYPES
    except (InvalidEvent, TypeError):
        expected = False
    assert plain_envelope(item) == expected
