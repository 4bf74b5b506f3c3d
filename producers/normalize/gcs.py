"""Normalizer for GCS notifications delivered by Pub/Sub (streaming pull or push): pure.

Input: a ``RawMessage`` whose ``attributes`` are the notification's (``eventType``,
``bucketId``, ``objectId``, ``objectGeneration``, ``payloadFormat``, ``eventTime``,
``overwroteGeneration`` / ``overwrittenByGeneration``) and whose ``body`` is the JSON_API_V1
object resource, or empty when the config's payload format is NONE.

Rules (reference/formats.md §1):
- ``OBJECT_FINALIZE`` -> created; ``OBJECT_METADATA_UPDATE`` -> metadata;
  ``OBJECT_DELETE`` -> deleted; ``OBJECT_ARCHIVE`` -> archived (a versioned bucket's live
  object became noncurrent: gone from the mount).
- A DELETE/ARCHIVE carrying ``overwrittenByGeneration`` is the old half of an overwrite: it
  yields nothing, so it can never remove the live object (the FINALIZE carries the new state,
  whichever of the two arrives first).
- ``sequencer`` = ``f"{generation:020d}.{is_removal}.{metageneration:020d}"``: fixed width, so the
  catalog's byte comparison orders (generation, removal, metageneration) as GCS does.
- ``etag`` = the content MD5 as hex (``crc32c:<hex>`` for composite objects), the same value the
  GCS storage adapter reports in listings, so a reindex sees no false differences.
- Without a payload (format NONE, or a metadata update without ``metageneration``) the change
  has ``size`` and ``etag`` None: ``needs_stat`` is true and the producer's enricher stats it.
- ``source_id`` is a content key over (bucket, name, generation, metageneration, eventType):
  GCS publishes duplicates under different message ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from mountsync.shared.errors import InvalidEvent
from mountsync.shared.events import Kind, ObjectChange, Provider, RawMessage, Source, gcs_content_etag, load_json, to_ns

KINDS = {
    "OBJECT_FINALIZE": Kind.CREATED,
    "OBJECT_METADATA_UPDATE": Kind.METADATA,
    "OBJECT_DELETE": Kind.DELETED,
    "OBJECT_ARCHIVE": Kind.ARCHIVED,
}
JSON_API_V1 = "JSON_API_V1"
NONE = "NONE"


def sequencer_for(generation: int, metageneration: int, *, removal: bool) -> str:
    return f"{generation:020d}.{int(removal)}.{metageneration:020d}"


def dedupe_key(bucket: str, name: str, generation: int, metageneration: int | None,
               event_type: str) -> str:  # fmt: skip
    """Content dedupe key; bounded length whatever the object name (GCS names reach 1 KiB)."""
    digest = hashlib.sha256(f"{bucket}\0{name}".encode("utf-8", "surrogatepass")).hexdigest()
    meta = "?" if metageneration is None else str(metageneration)
    return f"gcs:{event_type}:{generation}:{meta}:{digest[:32]}"


def needs_stat(change: ObjectChange) -> bool:
    """True for a change the notification could not describe (the enricher stats it)."""
    return not change.kind.removes and change.size is None and change.etag is None


def _int(value: Any, what: str, *, positive: bool = True) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidEvent(f"GCS notification: {what} {value!r} is not an integer") from None
    if number < 0 or (positive and number == 0):
        raise InvalidEvent(f"GCS notification: {what} {value!r} is out of range")
    return number


def _required(attributes: Mapping[str, str], name: str) -> str:
    value = attributes.get(name)
    if not value:
        raise InvalidEvent(f"GCS notification without the {name!r} attribute")
    return value


def _resource(message: RawMessage, payload_format: str) -> dict[str, Any]:
    if payload_format == NONE:
        return {}
    if payload_format != JSON_API_V1:
        raise InvalidEvent(f"GCS notification with unknown payloadFormat {payload_format!r}")
    if not message.body:
        raise InvalidEvent("GCS notification says JSON_API_V1 but has no data")
    data = load_json(message.body, "GCS notification data")
    if not isinstance(data, dict):
        raise InvalidEvent("GCS notification data is not a JSON object")
    return data


def _check_agrees(resource: Mapping[str, Any], bucket: str, name: str, generation: int) -> None:
    for field, expected in (("bucket", bucket), ("name", name)):
        if field in resource and resource[field] != expected:
            raise InvalidEvent(
                f"GCS notification data {field} {resource[field]!r} disagrees with the attributes ({expected!r})"
            )
    if "generation" in resource and _int(resource["generation"], "generation") != generation:
        raise InvalidEvent("GCS notification data generation disagrees with objectGeneration")


def _event_ns(message: RawMessage, resource: Mapping[str, Any]) -> int:
    moment = message.attributes.get("eventTime") or resource.get("updated")
    if moment:
        return to_ns(str(moment))
    if message.received_ns:
        return message.received_ns
    raise InvalidEvent("GCS notification has no eventTime")


def normalize_gcs(message: RawMessage) -> list[ObjectChange]:
    attributes = message.attributes
    event_type = _required(attributes, "eventType")
    kind = KINDS.get(event_type)
    if kind is None:
        raise InvalidEvent(f"GCS notification with unknown eventType {event_type!r}")
    bucket = _required(attributes, "bucketId")
    name = _required(attributes, "objectId")
    generation = _int(_required(attributes, "objectGeneration"), "objectGeneration")
    payload_format = attributes.get("payloadFormat") or (JSON_API_V1 if message.body else NONE)
    resource = _resource(message, payload_format)
    _check_agrees(resource, bucket, name, generation)
    if kind.removes and attributes.get("overwrittenByGeneration"):
        _int(attributes["overwrittenByGeneration"], "overwrittenByGeneration")
        return []  # the old half of an overwrite: the FINALIZE of the new generation decides
    return [_change(message, kind, event_type, bucket, name, generation, resource)]


def _change(
    message: RawMessage, kind: Kind, event_type: str, bucket: str, name: str,
    generation: int, resource: Mapping[str, Any],
) -> ObjectChange:  # fmt: skip
    removal = kind.removes
    raw_meta = resource.get("metageneration")
    metageneration = None if raw_meta is None else _int(raw_meta, "metageneration")
    if metageneration is None and kind is Kind.CREATED:
        metageneration = 1  # every new generation starts at metageneration 1
    size: int | None = None
    etag: str | None = None
    described = "size" in resource and (kind is not Kind.METADATA or metageneration is not None)
    if not removal and described:
        size = _int(resource["size"], "size", positive=False)
        etag = gcs_content_etag(resource.get("md5Hash"), resource.get("crc32c"), resource.get("etag"))
    source = message.source if message.source in (Source.GCS_PUBSUB, Source.GCS_PUSH) else (
        Source.GCS_PUBSUB
    )  # fmt: skip
    return ObjectChange(
        provider=Provider.GCS, bucket=bucket, key=name, kind=kind,
        event_ns=_event_ns(message, resource), source=source,
        size=size, etag=etag, version=str(generation),
        sequencer=sequencer_for(generation, metageneration or 0, removal=removal),
        source_id=dedupe_key(bucket, name, generation, metageneration, event_type),
    )  # fmt: skip
