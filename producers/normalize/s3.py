"""Normalizer for S3 (and MinIO) event notifications that reach an SQS queue: pure.

Accepted bodies (reference/formats.md §3):
- direct S3 notifications ``{"Records": [...]}`` (also MinIO's ``{"EventName", "Key", "Records"}``);
- the same wrapped by SNS: the envelope ``{"Type": "Notification", "Message": "<json>"}``, or the
  raw body when the subscription has ``RawMessageDelivery``;
- EventBridge events (``"source": "aws.s3"``, ``detail-type`` "Object Created", ...);
- ``s3:TestEvent`` and SNS subscription confirmations: no changes (``[]``).

Rules:
- Record keys are form-encoded (space as ``+``, MinIO and moto also encode ``/``): decoded with
  ``unquote_plus``, never ``unquote``. EventBridge keys are not encoded and are kept as they are.
- ``ObjectCreated:*`` -> created, except MinIO's PutTagging/DeleteTagging/PutRetention/
  PutLegalHold, which change no content -> metadata. ``ObjectRemoved:Delete|DeleteMarkerCreated``
  (and MinIO's DeleteAllVersions/NoOP), ``LifecycleExpiration:*`` -> deleted. ``ObjectRestore:*``,
  tagging, ACL, lifecycle transitions and Intelligent-Tiering -> metadata. Reads
  (``ObjectAccessed:*``), replication and scanner events change nothing -> no changes.
  Unknown event names are invalid (dead-lettered with the name, so an operator sees them).
- ``sequencer`` is upper-cased hex right-padded with ``0`` to 32 characters, so the catalog's byte
  comparison is S3's rule (§3.4). Absent (moto, restore events) -> empty: ``event_ns`` decides.
  ``make_normalizer(trust_sequencer=False)`` drops sequencers for services whose values do not
  order events (moto's EventBridge sends one constant for every event).
- Removals carry no size/etag (on AWS they have none; moto's are the deleted object's).
- ``source_id`` is the SQS message id (``:<n>`` added when one message holds several records).
- Exact duplicates (moto sends Put *and* CompleteMultipartUpload for one multipart upload) are
  harmless: the catalog treats equal ordering keys as the same change.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any
from urllib.parse import unquote_plus

from mountsync.shared.errors import InvalidEvent
from mountsync.shared.events import Kind, ObjectChange, Provider, RawMessage, Source, load_json, normalize_etag, to_ns

SEQUENCER_WIDTH = 32
HEX_DIGITS = string.hexdigits

# MinIO reports these under ObjectCreated:* although no content changed (formats.md G34).
CREATED_BUT_METADATA = {"PutTagging", "DeleteTagging", "PutRetention", "PutLegalHold"}
REMOVED = {"Delete", "DeleteMarkerCreated", "DeleteAllVersions", "NoOP"}
METADATA_GROUPS = {
    "ObjectRestore",
    "ObjectTagging",
    "ObjectAcl",
    "LifecycleTransition",
    "IntelligentTiering",
    "ObjectTransition",
}
IGNORED_GROUPS = {"ObjectAccessed", "Replication", "Scanner", "ReducedRedundancyLostObject"}

EVENTBRIDGE_KINDS = {
    "Object Created": Kind.CREATED,
    "Object Deleted": Kind.DELETED,
    "Object Restore Initiated": Kind.METADATA,
    "Object Restore Completed": Kind.METADATA,
    "Object Restore Expired": Kind.METADATA,
    "Object Storage Class Changed": Kind.METADATA,
    "Object Access Tier Changed": Kind.METADATA,
    "Object ACL Updated": Kind.METADATA,
    "Object Tags Added": Kind.METADATA,
    "Object Tags Deleted": Kind.METADATA,
}


def padded_sequencer(value: Any) -> str:
    """S3's sequencer in the catalog's fixed-width form; ``""`` when absent."""
    if value is None or value == "":
        return ""
    # strip() leaves a non-hex character wherever it stands: 0.4 us less than a set per change
    if not isinstance(value, str) or len(value) > SEQUENCER_WIDTH or value.strip(HEX_DIGITS):
        raise InvalidEvent(f"sequencer {value!r} is not a hex string of at most 32 digits")
    return value.upper().ljust(SEQUENCER_WIDTH, "0")


def kind_of(event_name: str) -> Kind | None:
    """The change kind for an S3/MinIO ``eventName``; ``None`` for events that change nothing."""
    name = event_name.removeprefix("s3:")
    group, _, action = name.partition(":")
    if group == "ObjectCreated":
        return Kind.METADATA if action in CREATED_BUT_METADATA else Kind.CREATED
    if group == "ObjectRemoved" and action in REMOVED:
        return Kind.DELETED
    if group in ("LifecycleExpiration", "LifecycleDelMarkerExpiration"):
        return Kind.DELETED
    if group in METADATA_GROUPS:
        return Kind.METADATA
    if group in IGNORED_GROUPS:
        return None
    raise InvalidEvent(f"unknown S3 event name {event_name!r}")


def unwrap(body: Any) -> Any:
    """The S3 or EventBridge document inside an SQS body (through an SNS envelope if any)."""
    document = load_json(body, "message body")
    if type(document) is dict and "Type" not in document:
        return document  # the common case: S3's own document, not an SNS envelope
    if isinstance(document, Mapping) and document.get("Type") == "Notification":
        if not isinstance(document.get("Message"), str):
            raise InvalidEvent("SNS notification without a string 'Message'")
        document = load_json(document["Message"], "SNS 'Message'")
    if not isinstance(document, Mapping):
        raise InvalidEvent(f"message body is a JSON {type(document).__name__}, not an object")
    return document


def normalize_s3(message: RawMessage, *, trust_sequencer: bool = True) -> list[ObjectChange]:
    """Changes in one SQS message (see the module docstring)."""
    document = unwrap(message.body)
    if document.get("Event") == "s3:TestEvent":
        return []
    if document.get("Type") in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        return []
    if "detail-type" in document:
        change = _from_eventbridge(document, message, trust_sequencer)
        return [change] if change else []
    records = document.get("Records")
    if not isinstance(records, list) or not records:
        raise InvalidEvent("not an S3 event: no 'Records', no EventBridge 'detail-type'")
    changes = []
    for index, record in enumerate(records):
        source_id = message.message_id if len(records) == 1 else f"{message.message_id}:{index}"
        change = _from_record(record, source_id, trust_sequencer)
        if change is not None:
            changes.append(change)
    return changes


def make_normalizer(*, trust_sequencer: bool = True) -> Callable[[RawMessage], list[ObjectChange]]:
    """The normalizer, optionally ignoring sequencers (for services whose values are not real)."""
    if trust_sequencer:
        return normalize_s3
    return partial(normalize_s3, trust_sequencer=False)


def _field(container: Any, name: str, what: str) -> Any:
    if type(container) is dict:  # what JSON gives: skips the ABC check, ten of them per record
        try:
            return container[name]
        except KeyError:
            raise InvalidEvent(f"{what} has no {name!r}") from None
    if not isinstance(container, Mapping) or name not in container:
        raise InvalidEvent(f"{what} has no {name!r}")
    return container[name]


def _check_version(record: Mapping[str, Any]) -> None:
    version = str(record.get("eventVersion", "2.0"))
    if version.split(".", 1)[0] != "2":
        raise InvalidEvent(f"unsupported S3 eventVersion {version!r} (this build reads 2.x)")


def _from_record(record: Any, source_id: str, trust_sequencer: bool) -> ObjectChange | None:
    if type(record) is not dict and not isinstance(record, Mapping):
        raise InvalidEvent("S3 record is not an object")
    event_source = record.get("eventSource", "aws:s3")
    if event_source not in ("aws:s3", "minio:s3"):
        raise InvalidEvent(f"record from {event_source!r}, not S3")
    _check_version(record)
    kind = kind_of(str(_field(record, "eventName", "S3 record")))
    if kind is None:
        return None
    s3 = _field(record, "s3", "S3 record")
    bucket = _field(_field(s3, "bucket", "S3 record"), "name", "S3 bucket")
    obj = _field(s3, "object", "S3 record")
    raw_key = _field(obj, "key", "S3 object")
    if not isinstance(raw_key, str) or not isinstance(bucket, str):
        raise InvalidEvent("S3 bucket name and object key must be strings")
    return _change(
        bucket=bucket,
        key=unquote_plus(raw_key),
        kind=kind,
        event_ns=_time(_field(record, "eventTime", "S3 record")),
        obj=obj,
        etag_field="eTag",
        version_field="versionId",
        sequencer=obj.get("sequencer") if trust_sequencer else None,
        source_id=source_id,
    )


def _from_eventbridge(event: Mapping[str, Any], message: RawMessage, trust_sequencer: bool) -> ObjectChange | None:
    if event.get("source") != "aws.s3":
        raise InvalidEvent(f"EventBridge event from {event.get('source')!r}, not aws.s3")
    detail_type = event["detail-type"]
    kind = EVENTBRIDGE_KINDS.get(detail_type) if isinstance(detail_type, str) else None
    if kind is None:
        raise InvalidEvent(f"unknown S3 EventBridge detail-type {detail_type!r}")
    detail = _field(event, "detail", "EventBridge event")
    bucket = _field(_field(detail, "bucket", "EventBridge detail"), "name", "EventBridge bucket")
    obj = _field(detail, "object", "EventBridge detail")
    key = _field(obj, "key", "EventBridge object")
    if not isinstance(key, str) or not isinstance(bucket, str):
        raise InvalidEvent("EventBridge bucket name and object key must be strings")
    return _change(
        bucket=bucket,
        key=key,  # EventBridge does not form-encode keys
        kind=kind,
        event_ns=_time(_field(event, "time", "EventBridge event")),
        obj=obj,
        etag_field="etag" if "etag" in obj else "eTag",
        version_field="version-id",
        sequencer=obj.get("sequencer") if trust_sequencer else None,
        source_id=message.message_id,
    )


def _time(value: Any) -> int:
    if not isinstance(value, str):
        raise InvalidEvent(f"event time {value!r} is not an RFC 3339 string")
    return to_ns(value)


def _size(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidEvent(f"object size {value!r} is not a number")
    try:
        return int(value)
    except ValueError as exc:
        raise InvalidEvent(f"object size {value!r} is not a number") from exc


def _change(
    *,
    bucket: str,
    key: str,
    kind: Kind,
    event_ns: int,
    obj: Mapping[str, Any],
    etag_field: str,
    version_field: str,
    sequencer: Any,
    source_id: str,
) -> ObjectChange:
    removes = kind.removes
    etag = obj.get(etag_field)
    version = obj.get(version_field)
    return ObjectChange(
        provider=Provider.S3,
        bucket=bucket,
        key=key,
        kind=kind,
        event_ns=event_ns,
        source=Source.S3_SQS,
        size=None if removes else _size(obj.get("size")),
        etag=None if removes or not isinstance(etag, str) else normalize_etag(etag),
        version=str(version) if version not in (None, "") else None,
        sequencer=padded_sequencer(sequencer),
        source_id=source_id,
    )
