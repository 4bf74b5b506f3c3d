"""The S3 normalizer on recorded payloads (real-S3 shapes with sequencer/versionId, MinIO, moto)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mountsync.producers.normalize.s3 import kind_of, make_normalizer, normalize_s3, padded_sequencer
from mountsync.shared.errors import InvalidEvent
from mountsync.shared.events import Kind, ObjectChange, Provider, RawMessage, Source, to_ns

PAYLOADS = Path(__file__).parent / "payloads"


def raw(body: bytes | str | dict[str, Any], message_id: str = "msg-1") -> RawMessage:
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    return RawMessage(source=Source.S3_SQS, message_id=message_id, body=body)


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def one(name: str) -> ObjectChange:
    (change,) = normalize_s3(raw(payload(name)))
    return change


def test_real_put_on_a_versioned_bucket() -> None:
    change = one("aws_put_versioned.json")
    assert change == ObjectChange(
        provider=Provider.S3,
        bucket="acme-raw",
        key="in/2024/report 1+final über.csv",
        kind=Kind.CREATED,
        event_ns=to_ns("2024-05-01T12:00:00.123Z"),
        source=Source.S3_SQS,
        size=5,
        etag="5d41402abc4b2a76b9719d911017c592",
        version="3HL4kqtJlcpXroDTDmjVBH40Nrjfkd",
        sequencer="0066321A0B1C2D3E4F00000000000000",
        source_id="msg-1",
    )


def test_multipart_and_copy_in_one_message_get_distinct_source_ids() -> None:
    changes = normalize_s3(raw(payload("aws_multipart_and_copy.json"), "m-7"))
    assert [(c.key, c.kind, c.size, c.etag, c.source_id) for c in changes] == [
        ("videos/clip=1.mp4", Kind.CREATED, 104857600, "e2fc714c4727ee9395f324cd2e7f331f-20", "m-7:0"),
        (
            "videos/copy of clip=1.mp4",
            Kind.CREATED,
            104857600,
            "e2fc714c4727ee9395f324cd2e7f331f-20",
            "m-7:1",
        ),
    ]
    assert all(len(c.sequencer) == 32 for c in changes)


@pytest.mark.parametrize(
    ("name", "key", "version"),
    [
        (
            "aws_delete_marker.json",
            "in/2024/report 1+final über.csv",
            "dLx6E7tJ_8a9qWnKlzV4r0Jt7mq0bN0S",
        ),
        ("aws_delete.json", "tmp/scratch.bin", None),
        ("aws_lifecycle_expiration.json", "logs/2023/01/app.log", None),
        (
            "eventbridge_deleted.json",
            "raw/health-check/2023-08-08T14:03:40.532432 v+1.zip",
            "1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF",
        ),
        (
            "eventbridge_lifecycle_deleted.json",
            "logs/2023/01/app.log",
            "mtB0cV.jejK63XkRNceanNMC.qXPWLeK",
        ),
        ("minio_delete.json", "cam 2/000124.jpg", None),
    ],
)
def test_removals_are_deletes_without_size_or_etag(name: str, key: str, version: str | None) -> None:
    change = one(name)
    assert (change.key, change.kind, change.size, change.etag) == (key, Kind.DELETED, None, None)
    assert change.version == version
    assert len(change.sequencer) == 32


def test_restore_is_metadata_and_has_no_sequencer() -> None:
    change = one("aws_restore_completed.json")
    assert (change.kind, change.key, change.sequencer) == (
        Kind.METADATA,
        "archive/2019/scan 0001.tif",
        "",
    )
    assert (change.size, change.version) == (73400320, "null")
    assert one("eventbridge_restore_completed.json").kind is Kind.METADATA


@pytest.mark.parametrize("name", ["aws_test_event.json", "moto_test_event.json"])
def test_test_events_give_nothing(name: str) -> None:
    assert normalize_s3(raw(payload(name))) == []


def test_sns_envelope_is_unwrapped() -> None:
    change = one("aws_sns_envelope.json")
    assert (change.key, change.size, change.sequencer[:18]) == (
        "frames/cam 2/000123.jpg",
        48213,
        "0066321A0B9F000111",
    )


def test_sns_wrapped_test_event_gives_nothing() -> None:
    inner = payload("aws_test_event.json").decode()
    assert normalize_s3(raw({"Type": "Notification", "Message": inner})) == []


def test_eventbridge_keys_are_not_decoded() -> None:
    change = one("eventbridge_created.json")
    assert change.key == "raw/health-check/2023-08-08T14:03:40.532432 v+1.zip"
    assert (change.kind, change.size, change.version) == (
        Kind.CREATED,
        198524144,
        "uhggCJ2_B6gU2JaXWXebnXFDstO0ID6G",
    )
    assert change.etag == "4af981f98d22a0b9979da24b259e5e42-12"
    assert change.sequencer == "0064D3901D00059242".ljust(32, "0")
    assert change.event_ns == to_ns("2023-08-09T13:09:50Z")


def test_moto_eventbridge_uses_etag_spelled_differently() -> None:
    change = one("moto_eventbridge_created.json")
    assert (change.key, change.etag, change.version) == (
        "a b+c.txt",
        "5d41402abc4b2a76b9719d911017c592",
        "null",
    )


def test_untrusted_sequencers_are_dropped() -> None:
    normalize = make_normalizer(trust_sequencer=False)
    (change,) = normalize(raw(payload("moto_eventbridge_created.json")))
    assert change.sequencer == ""
    (put,) = normalize(raw(payload("aws_put_versioned.json")))
    assert put.sequencer == ""
    assert make_normalizer() is normalize_s3


def test_minio_names_keys_and_sequencer() -> None:
    change = one("minio_put.json")
    assert (change.bucket, change.key, change.kind, change.size) == (
        "frames",
        "cam 2/000124.jpg",
        Kind.CREATED,
        51234,
    )
    assert change.sequencer == "17CB2D3B7A40E1C8".ljust(32, "0")


def test_minio_tagging_under_object_created_is_metadata() -> None:
    assert one("minio_put_tagging.json").kind is Kind.METADATA


def test_moto_keys_with_encoded_slashes_decode_exactly() -> None:
    change = one("moto_put.json")
    assert change.key == "a b+c%d=e/ü/x.txt"
    assert change.sequencer == "" and change.version is None


def test_moto_multipart_double_event_is_an_exact_duplicate() -> None:
    put = one("moto_multipart_put.json")
    complete = one("moto_multipart_complete.json")
    assert (put.key, put.kind, put.size, put.etag, put.event_ns, put.sequencer) == (
        complete.key,
        complete.kind,
        complete.size,
        complete.etag,
        complete.event_ns,
        complete.sequencer,
    )


def test_sequencer_padding_orders_like_s3_not_like_int() -> None:
    older = padded_sequencer("0055AED6DCD90281E5")
    newer = padded_sequencer("0055AED6DCD90282")
    assert older < newer
    assert int("0055AED6DCD90281E5", 16) > int("0055AED6DCD90282", 16)  # the trap
    assert padded_sequencer("00617f08299329d189") == "00617F08299329D18900000000000000"
    assert padded_sequencer(None) == padded_sequencer("") == ""


@pytest.mark.parametrize(
    ("event_name", "kind"),
    [
        ("ObjectCreated:Put", Kind.CREATED),
        ("ObjectCreated:Post", Kind.CREATED),
        ("ObjectCreated:Copy", Kind.CREATED),
        ("ObjectCreated:CompleteMultipartUpload", Kind.CREATED),
        ("s3:ObjectCreated:Put", Kind.CREATED),
        ("s3:ObjectCreated:PutRetention", Kind.METADATA),
        ("s3:ObjectCreated:PutLegalHold", Kind.METADATA),
        ("s3:ObjectCreated:DeleteTagging", Kind.METADATA),
        ("ObjectRemoved:Delete", Kind.DELETED),
        ("ObjectRemoved:DeleteMarkerCreated", Kind.DELETED),
        ("s3:ObjectRemoved:DeleteAllVersions", Kind.DELETED),
        ("s3:ObjectRemoved:NoOP", Kind.DELETED),
        ("LifecycleExpiration:Delete", Kind.DELETED),
        ("LifecycleExpiration:DeleteMarkerCreated", Kind.DELETED),
        ("ObjectRestore:Post", Kind.METADATA),
        ("ObjectRestore:Completed", Kind.METADATA),
        ("ObjectRestore:Delete", Kind.METADATA),
        ("ObjectTagging:Put", Kind.METADATA),
        ("ObjectAcl:Put", Kind.METADATA),
        ("LifecycleTransition", Kind.METADATA),
        ("s3:ObjectAccessed:Get", None),
        ("Replication:OperationCompletedReplication", None),
    ],
)
def test_event_names(event_name: str, kind: Kind | None) -> None:
    assert kind_of(event_name) is kind


def test_reads_give_no_changes() -> None:
    body = json.loads(payload("minio_put.json"))
    body["Records"][0]["eventName"] = "s3:ObjectAccessed:Get"
    assert normalize_s3(raw(body)) == []


def _with(name: str, path: list[str | int], value: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(payload(name))
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


RECORD = ["Records", 0]
OBJECT = [*RECORD, "s3", "object"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"hello": "world"}', "not an S3 event"),
        (b'{"Records": []}', "not an S3 event"),
        (b'{"Type": "Notification", "Message": "{oops"}', "SNS 'Message' is not JSON"),
        (b'{"Type": "Notification"}', "without a string 'Message'"),
        (_with("aws_put_versioned.json", [*RECORD, "eventName"], "Bogus:Thing"), "unknown S3 event"),
        (_with("aws_put_versioned.json", [*RECORD, "eventVersion"], "3.0"), "eventVersion"),
        (_with("aws_put_versioned.json", [*RECORD, "eventSource"], "aws:sqs"), "not S3"),
        (_with("aws_put_versioned.json", [*OBJECT, "key"], KeyError), "has no 'key'"),
        (_with("aws_put_versioned.json", [*OBJECT, "key"], ""), "empty object key"),
        (_with("aws_put_versioned.json", [*OBJECT, "key"], "a%07b"), "control character"),
        (_with("aws_put_versioned.json", [*OBJECT, "key"], "a%00b"), "NUL|control character"),
        (_with("aws_put_versioned.json", [*OBJECT, "size"], "five"), "not a number"),
        (_with("aws_put_versioned.json", [*OBJECT, "size"], -1), "negative size"),
        (_with("aws_put_versioned.json", [*OBJECT, "sequencer"], "XYZ"), "sequencer"),
        (_with("aws_put_versioned.json", [*OBJECT, "sequencer"], "0" * 33), "sequencer"),
        (_with("aws_put_versioned.json", [*RECORD, "eventTime"], "yesterday"), "bad timestamp"),
        (_with("aws_put_versioned.json", [*RECORD, "eventTime"], 1714564800), "not an RFC 3339"),
        (_with("aws_put_versioned.json", [*RECORD, "s3", "bucket"], KeyError), "has no 'bucket'"),
        (_with("eventbridge_created.json", ["source"], "aws.ec2"), "not aws.s3"),
        (_with("eventbridge_created.json", ["detail-type"], "Object Exploded"), "detail-type"),
        (_with("eventbridge_created.json", ["detail", "object"], KeyError), "has no 'object'"),
    ],
)
def test_malformed_bodies_are_invalid_with_a_reason(body: Any, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        normalize_s3(raw(body))
