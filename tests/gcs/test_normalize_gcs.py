"""The GCS normalizer on recorded payloads (real GCS shapes and fake-gcs-server recordings)."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from mountsync.producers.normalize.gcs import needs_stat, normalize_gcs
from mountsync.shared.errors import InvalidEvent
from mountsync.shared.events import Kind, ObjectChange, Provider, RawMessage, Source

PAYLOADS = Path(__file__).parent / "payloads"
HELLO_MD5 = hashlib.md5(b"hello").hexdigest()


def recorded(name: str, source: Source = Source.GCS_PUBSUB) -> RawMessage:
    doc = json.loads((PAYLOADS / f"{name}.json").read_text())
    body = b"" if doc["data"] is None else json.dumps(doc["data"]).encode()
    return RawMessage(source, doc["message_id"], body, doc["attributes"])


def message(attributes: dict[str, str], data: Any = None) -> RawMessage:
    body = data if isinstance(data, bytes) else (b"" if data is None else json.dumps(data).encode())
    return RawMessage(Source.GCS_PUBSUB, "m1", body, attributes)


def one(raw: RawMessage) -> ObjectChange:
    changes = normalize_gcs(raw)
    assert len(changes) == 1
    return changes[0]


def test_finalize_of_an_overwrite_is_a_create_of_the_new_generation() -> None:
    change = one(recorded("real_finalize_overwrite"))
    assert change.provider is Provider.GCS
    assert (change.bucket, change.key) == ("acme-raw", "in/2024/05/report 1.csv")
    assert change.kind is Kind.CREATED
    assert change.size == 5
    assert change.etag == HELLO_MD5  # content MD5 as hex, as the adapter's listing reports it
    assert change.version == "1714564800123456"
    assert change.sequencer == f"{1714564800123456:020d}.0.{1:020d}"
    assert change.event_ns == 1714564800130000000
    assert change.source is Source.GCS_PUBSUB
    assert not needs_stat(change)


@pytest.mark.parametrize(
    "name",
    [
        "real_delete_overwritten",
        "real_archive_overwritten",
        "fake_gcs_delete_overwritten",
    ],
)
def test_the_old_half_of_an_overwrite_never_removes_the_object(name: str) -> None:
    assert normalize_gcs(recorded(name)) == []


def test_delete_of_the_live_object_is_a_removal_ordered_after_its_creation() -> None:
    change = one(recorded("real_delete"))
    assert change.kind is Kind.DELETED
    assert change.kind.removes
    assert change.sequencer == f"{1714564800123456:020d}.1.{3:020d}"
    assert change.size is None and change.etag is None
    created = one(recorded("real_finalize_overwrite"))
    assert change.sequencer > created.sequencer


def test_archive_without_overwrite_removes_the_object_from_the_mount() -> None:
    change = one(recorded("real_archive_delete"))
    assert change.kind is Kind.ARCHIVED
    assert change.kind.removes
    assert change.sequencer.split(".")[1] == "1"


def test_metadata_update_orders_after_the_create_by_metageneration() -> None:
    change = one(recorded("real_metadata_update"))
    assert change.kind is Kind.METADATA
    assert change.sequencer == f"{1714564800123456:020d}.0.{2:020d}"
    assert change.sequencer > one(recorded("real_finalize_overwrite")).sequencer
    assert change.size == 5 and change.etag == HELLO_MD5


def test_payload_none_gives_a_change_for_the_enricher_to_stat() -> None:
    change = one(recorded("real_none_finalize"))
    assert change.kind is Kind.CREATED
    assert change.size is None and change.etag is None
    assert needs_stat(change)
    assert change.sequencer == f"{1714564800123456:020d}.0.{1:020d}"
    meta = one(recorded("real_none_metadata_update"))
    assert needs_stat(meta)
    assert ":?:" in (meta.source_id or "")  # metageneration unknown until stat'ed


def test_composite_objects_use_crc32c_as_etag() -> None:
    change = one(recorded("real_composite_finalize"))
    assert change.key == "video/take 7.mp4"
    assert change.etag is not None and change.etag.startswith("crc32c:")
    assert change.size == 10485760


def test_fake_gcs_server_recordings_normalize() -> None:
    created = one(recorded("fake_gcs_finalize_overwrite"))
    assert created.sequencer == f"{1795241504327718:020d}.0.{1:020d}"  # no metageneration: 1
    assert created.etag == "6e809cbda0732ac4845916a59016f954"
    meta = one(recorded("fake_gcs_metadata_update"))
    assert meta.kind is Kind.METADATA and needs_stat(meta)  # metageneration missing: stat it
    gone = one(recorded("fake_gcs_delete"))
    assert gone.kind is Kind.DELETED and gone.size is None
    archived = one(recorded("fake_gcs_archive_delete"))
    assert archived.kind is Kind.ARCHIVED


def test_push_source_is_kept() -> None:
    assert one(recorded("real_finalize_overwrite", Source.GCS_PUSH)).source is Source.GCS_PUSH


def test_dedupe_key_is_the_content_not_the_message_id() -> None:
    first = recorded("real_finalize_overwrite")
    again = RawMessage(Source.GCS_PUBSUB, "another-id", first.body, first.attributes)
    assert one(first).source_id == one(again).source_id
    others = {one(recorded(n)).source_id for n in ("real_delete", "real_metadata_update")}
    assert one(first).source_id not in others
    assert len(one(first).source_id or "") < 120


def final_state(changes: list[ObjectChange]) -> tuple[str, str] | None:
    """What the catalog keeps for one key: apply a change only if its sequencer is greater."""
    stored: ObjectChange | None = None
    for change in changes:
        if stored is None or change.sequencer > stored.sequencer:
            stored = change
    if stored is None or stored.kind.removes:
        return None
    return (stored.version or "", stored.etag or "")


def test_every_arrival_order_of_an_overwrite_then_delete_converges() -> None:
    base = {"bucketId": "b", "objectId": "k", "payloadFormat": "JSON_API_V1",
            "eventTime": "2024-01-01T00:00:00Z"}  # fmt: skip

    def res(gen: int, meta: int, md5: str) -> dict[str, Any]:
        return {"name": "k", "bucket": "b", "generation": str(gen), "metageneration": str(meta),
                "size": "1", "md5Hash": md5}  # fmt: skip

    md5_a, md5_b = "DMF1ucDxtqgxw5niaXcmYQ==", "kutf/uauL+w61xx3dTFXjw=="
    events = [
        message({**base, "eventType": "OBJECT_FINALIZE", "objectGeneration": "10"},
                res(10, 1, md5_a)),
        message({**base, "eventType": "OBJECT_FINALIZE", "objectGeneration": "20",
                 "overwroteGeneration": "10"}, res(20, 1, md5_b)),
        message({**base, "eventType": "OBJECT_DELETE", "objectGeneration": "10",
                 "overwrittenByGeneration": "20"}, res(10, 1, md5_a)),
        message({**base, "eventType": "OBJECT_METADATA_UPDATE", "objectGeneration": "20"},
                res(20, 2, md5_b)),
    ]  # fmt: skip
    delete = message({**base, "eventType": "OBJECT_DELETE", "objectGeneration": "20"},
                     res(20, 2, md5_b))  # fmt: skip
    for order in itertools.permutations(events):
        changes = [c for raw in order for c in normalize_gcs(raw)]
        assert final_state(changes) == ("20", "92eb5ffee6ae2fec3ad71c777531578f"), order
    for order in itertools.permutations([*events, delete]):
        assert final_state([c for raw in order for c in normalize_gcs(raw)]) is None


@pytest.mark.parametrize(
    ("attributes", "data", "reason"),
    [
        ({}, None, "eventType"),
        ({"eventType": "OBJECT_FINALIZE"}, None, "bucketId"),
        ({"eventType": "OBJECT_EXPLODE", "bucketId": "b", "objectId": "k",
          "objectGeneration": "1"}, None, "unknown eventType"),
        ({"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": "k",
          "objectGeneration": "x"}, None, "not an integer"),
        ({"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": "k",
          "objectGeneration": "1", "payloadFormat": "JSON_API_V1"}, b"{not json", "not JSON"),
        ({"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": "k",
          "objectGeneration": "1", "payloadFormat": "JSON_API_V1"}, None, "no data"),
        ({"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": "k",
          "objectGeneration": "1", "payloadFormat": "XML"}, None, "payloadFormat"),
        ({"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": "k",
          "objectGeneration": "1"}, {"name": "other", "size": "1"}, "disagrees"),
        ({"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": "bad\x00key",
          "objectGeneration": "1", "eventTime": "2024-01-01T00:00:00Z"}, None, "control"),
        ({"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": "k",
          "objectGeneration": "1", "eventTime": "yesterday"}, None, "timestamp"),
    ],
)  # fmt: skip
def test_malformed_notifications_are_invalid_events(attributes: dict[str, str], data: Any, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        normalize_gcs(message(attributes, data))
