"""Azure Blob Storage events (Event Grid schema or CloudEvents 1.0) -> ``ObjectChange``.

Pure: no I/O, clock or environment. One body may hold a single event or a JSON array of them
(webhook batches); Storage Queue bodies may be base64 of the JSON (decoded here, so the
dead-letter store keeps the body exactly as delivered).

- ``Microsoft.Storage.BlobCreated`` -> created (size ``contentLength``, etag ``eTag`` normalized).
  HNS ``CreateFile`` and SFTP ``SftpCreate`` with length 0 are empty placeholders that precede
  the real write (``FlushWithClose`` / ``SftpCommit``): ignored, so they never look like content.
- ``BlobDeleted`` -> deleted; ``BlobTierChanged`` -> metadata (the content is unchanged).
- ``BlobRenamed`` (HNS) -> deleted(old name) + created(new name). The rename event carries no
  size or etag, so the created change has neither; the producers stat the new name (``ContentEnricher``,
  which also fills the etag that ``BlobTierChanged`` lacks).
- ``DirectoryCreated`` -> nothing (folders are implicit). ``DirectoryDeleted`` and
  ``DirectoryRenamed`` change every blob under a prefix, but the event does not list them: they
  produce no per-key change here; ``directory_scopes`` names the prefixes so the producer queues a
  reindex of each (the reindex is also the safety net if that request is lost).
- Validation / subscription-deleted events and non-object storage events -> ``[]``.
  Any other event type is ``InvalidEvent`` (a misrouted subscription is dead-lettered, not hidden).

Key and container come from ``data.url`` (percent-decoded with ``unquote``: ``+`` is a literal
plus in Azure URLs). Host-style URLs (``acct.blob.core.windows.net/container/key``, also
``.dfs.``) and path-style URLs on an IP or ``localhost`` (Azurite: ``/account/container/key``) are
understood. The container must equal the one in ``subject``. ``bucket`` is the container.

Storage account matching: ``ObjectChange`` has no account, and mounts are routed by container.
One Event Grid subscription normally serves one storage account; a producer that receives
several accounts' events is given the accounts it serves (``make_normalizer(accounts=...)``) and
dead-letters events of any other account (the account is read from ``topic``/``source``
``.../storageAccounts/<name>``, else from the URL host or Azurite path).

``sequencer`` is ``data.sequencer`` exactly as sent: fixed-width hex that Azure documents as
ordered by ordinal string comparison for one blob name, which is the catalog's ``COLLATE "C"``
comparison. ``version`` is ``None``: blob events carry no version id.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from mountsync.producers.normalize.json_slices import array_elements
from mountsync.shared.errors import InvalidEvent
from mountsync.shared.events import Kind, ObjectChange, Provider, RawMessage, load_json, normalize_etag, to_ns

STORAGE = "Microsoft.Storage."
VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
IGNORED_TYPES = frozenset({
    VALIDATION,
    "Microsoft.EventGrid.SubscriptionDeletedEvent",
    STORAGE + "DirectoryCreated",
    STORAGE + "AsyncOperationInitiated",
    STORAGE + "BlobInventoryPolicyCompleted",
    STORAGE + "LifecyclePolicyCompleted",
    STORAGE + "StorageTaskCompleted",
    STORAGE + "StorageTaskQueued",
    STORAGE + "StorageTaskAssignmentCompleted",
    STORAGE + "StorageTaskAssignmentQueued",
})  # fmt: skip
DIRECTORY_TYPES = frozenset({STORAGE + "DirectoryDeleted", STORAGE + "DirectoryRenamed"})
PLACEHOLDER_APIS = frozenset({"CreateFile", "SftpCreate"})
KINDS = {
    STORAGE + "BlobCreated": Kind.CREATED,
    STORAGE + "BlobDeleted": Kind.DELETED,
    STORAGE + "BlobTierChanged": Kind.METADATA,
}


KNOWN_TYPES = frozenset({*KINDS, *IGNORED_TYPES, *DIRECTORY_TYPES, STORAGE + "BlobRenamed"})


@dataclass(frozen=True, slots=True)
class Event:
    """The fields both schemas share, read from one event object."""

    id: str
    type: str
    subject: str
    time: str
    account_hint: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class BlobRef:
    account: str
    container: str
    key: str


def decode_body(body: bytes) -> Any:
    """JSON from a body that is JSON, or base64 of JSON (Storage Queue delivery)."""
    text = body.strip()
    if not text:
        raise InvalidEvent("empty message body")
    if text[:1] not in (b"{", b"["):
        try:
            text = base64.b64decode(text, validate=True).strip()
        except (binascii.Error, ValueError) as exc:
            raise InvalidEvent("body is neither JSON nor base64-encoded JSON") from exc
    return load_json(text, "body")


def split_events(body: bytes) -> list[dict[str, Any]]:
    """The event objects in a body (one object or an array); ``InvalidEvent`` otherwise."""
    payload = decode_body(body)
    return _event_objects(payload if isinstance(payload, list) else [payload])


def _event_objects(items: list[Any]) -> list[dict[str, Any]]:
    if not items:
        raise InvalidEvent("empty event array")
    for item in items:
        if not isinstance(item, dict):
            raise InvalidEvent(f"event is not a JSON object: {type(item).__name__}")
    return items


def split_event_bodies(body: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """``split_events`` with each event's own bytes: the elements of a JSON array are sliced out
    of the body as delivered (not re-serialized), so one event of a batch is dead-lettered exactly
    as it was sent, and nothing is parsed twice. A body of one event is that event's bytes."""
    if body.lstrip()[:1] == b"[":
        try:
            pairs = array_elements(body.decode("utf-8"))
        except (ValueError, RecursionError):  # not plain UTF-8 JSON: split_events names what is wrong
            pairs = None
        if pairs is not None:
            _event_objects([item for item, _ in pairs])
            return [(item, text.encode("utf-8")) for item, text in pairs]
    events = split_events(body)
    if len(events) == 1:
        return [(events[0], body)]
    return [(event, json.dumps(event, ensure_ascii=False).encode()) for event in events]  # base64 of an array


def _events_of(raw: RawMessage) -> list[dict[str, Any]]:
    """The message's events: its ``payload`` when the transport parsed the body already."""
    if isinstance(raw.payload, dict):
        return [raw.payload]
    return split_events(raw.body)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"event has no {what}")
    return value


def read_event(raw: Mapping[str, Any]) -> Event:
    """Event Grid schema (``eventType``) or CloudEvents 1.0 (``specversion``) -> ``Event``."""
    if "specversion" in raw:
        if raw.get("specversion") != "1.0":
            raise InvalidEvent(f"unsupported CloudEvents specversion {raw.get('specversion')!r}")
        names = ("type", "time", "source")
    elif "eventType" in raw:
        names = ("eventType", "eventTime", "topic")
    else:
        raise InvalidEvent("neither an Event Grid event (eventType) nor a CloudEvent (specversion)")
    kind_field, time_field, origin_field = names
    data = raw.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidEvent("event data is not a JSON object")
    return Event(
        id=str(raw.get("id") or ""),
        type=_text(raw.get(kind_field), kind_field),
        subject=str(raw.get("subject") or ""),
        time=str(raw.get(time_field) or ""),
        account_hint=_account_from_topic(str(raw.get(origin_field) or "")),
        data=data,
    )


def plain_envelope(item: Mapping[str, Any]) -> bool:
    """Whether ``read_event`` accepts ``item`` and the normalizer knows its type: what the webhook
    checks before it queues a body as delivered (the rest, the drainer checks). The same checks
    as ``read_event``'s, without building the ``Event``: a fifth of the cost."""
    if "specversion" in item:
        if item.get("specversion") != "1.0":
            return False
        kind = item.get("type")
    else:
        kind = item.get("eventType")
    data = item.get("data")
    return isinstance(kind, str) and kind in KNOWN_TYPES and (data is None or isinstance(data, dict))


def _account_from_topic(topic: str) -> str:
    marker = "/storageaccounts/"
    at = topic.lower().find(marker)
    if at < 0:
        return ""
    return topic[at + len(marker) :].split("/", 1)[0]


@functools.lru_cache(maxsize=64)
def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# A blob URL as Event Grid writes it: http(s), an ASCII host without user info, IPv6 brackets or
# "%" (urlsplit lower-cases a host only up to a "%", the start of an IPv6 zone), a path without
# query, fragment or whitespace. urlsplit reads such a URL just so, at several times the cost (a
# fifth of the normalizer's time); any other URL goes through urlsplit.
_PLAIN_URL = re.compile(r"https?://([^/?#@\[\]\s%]*)(/[^?#\s]*)?\Z", re.ASCII)


def host_and_path(url: str) -> tuple[str, str]:
    """``urlsplit(url)``'s hostname (``""`` if none) and path."""
    plain = _PLAIN_URL.match(url) if url.isascii() else None
    if plain is not None:
        return plain[1].partition(":")[0].lower(), plain[2] or ""
    parts = urlsplit(url)
    return parts.hostname or "", parts.path


def blob_ref(url: Any, what: str = "url") -> BlobRef:
    """Account, container and decoded key from a blob (or dfs) URL."""
    host, path = host_and_path(_text(url, f"data.{what}"))
    segments = path.lstrip("/")
    if _is_local(host):
        account, _, segments = segments.partition("/")
    else:
        account = host.split(".", 1)[0]
    container, _, escaped = segments.partition("/")
    if not account or not container:
        raise InvalidEvent(f"data.{what} {url!r} does not name a container")
    try:
        key = unquote(escaped, errors="strict")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"data.{what} {url!r} is not percent-encoded UTF-8") from exc
    return BlobRef(account=account, container=container, key=key)


def _subject_container(subject: str) -> str:
    head, sep, _ = subject.partition("/blobs/")
    if not sep:
        head = subject
    marker = "containers/"
    at = head.find(marker)
    if at < 0:
        return ""
    return head[at + len(marker) :].split("/", 1)[0]


def _check_container(event: Event, ref: BlobRef) -> None:
    expected = _subject_container(event.subject)
    if expected and expected != ref.container:
        raise InvalidEvent(f"url names container {ref.container!r} but the subject names {expected!r}")


def _size(data: Mapping[str, Any]) -> int | None:
    value = data.get("contentLength")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidEvent(f"contentLength {value!r} is not an integer")
    try:
        size = int(value)
    except ValueError as exc:
        raise InvalidEvent(f"contentLength {value!r} is not an integer") from exc
    if size < 0:
        raise InvalidEvent(f"negative contentLength {size}")
    return size


def _sequencer(data: Mapping[str, Any]) -> str:
    value = data.get("sequencer", "")
    if not isinstance(value, str):
        raise InvalidEvent(f"sequencer {value!r} is not a string")
    return value


def is_placeholder(event: Event) -> bool:
    """HNS CreateFile / SFTP SftpCreate of an empty file, before the real write is flushed."""
    api = event.data.get("api")
    return isinstance(api, str) and api in PLACEHOLDER_APIS and not _size(event.data)


def _change(raw: RawMessage, event: Event, ref: BlobRef, kind: Kind, *, with_content: bool) -> ObjectChange:
    data = event.data
    return ObjectChange(
        provider=Provider.AZURE,
        bucket=ref.container,
        key=ref.key,
        kind=kind,
        event_ns=to_ns(_text(event.time, "time")),
        source=raw.source,
        size=_size(data) if with_content else None,
        etag=normalize_etag(data.get("eTag")) if with_content else None,
        version=None,
        sequencer=_sequencer(data),
        source_id=event.id or raw.message_id,
    )


def _account(event: Event, ref: BlobRef) -> str:
    return event.account_hint or ref.account


def event_changes(raw: RawMessage, event: Event, accounts: frozenset[str] | None = None) -> list[ObjectChange]:
    """The changes one event stands for (``[]`` for events that change no object)."""
    if event.type in IGNORED_TYPES or event.type in DIRECTORY_TYPES:
        return []
    if event.type == STORAGE + "BlobRenamed":
        old = blob_ref(event.data.get("sourceUrl"), "sourceUrl")
        new = blob_ref(event.data.get("destinationUrl"), "destinationUrl")
        _check_account(event, new, accounts)
        return [
            _change(raw, event, old, Kind.DELETED, with_content=False),
            _change(raw, event, new, Kind.CREATED, with_content=False),
        ]
    kind = KINDS.get(event.type)
    if kind is None:
        raise InvalidEvent(f"unsupported event type {event.type!r}")
    if kind is Kind.CREATED and is_placeholder(event):
        return []
    ref = blob_ref(event.data.get("url"))
    _check_container(event, ref)
    _check_account(event, ref, accounts)
    return [_change(raw, event, ref, kind, with_content=kind is not Kind.DELETED)]


def _check_account(event: Event, ref: BlobRef, accounts: frozenset[str] | None) -> None:
    if accounts is not None and _account(event, ref) not in accounts:
        raise InvalidEvent(
            f"event from storage account {_account(event, ref)!r}; this producer serves {', '.join(sorted(accounts))}"
        )


def normalize_azure(raw: RawMessage) -> list[ObjectChange]:
    """Every change in one delivered body (a single event or an array)."""
    return _normalize(raw, None)


def _normalize(raw: RawMessage, accounts: frozenset[str] | None) -> list[ObjectChange]:
    changes: list[ObjectChange] = []
    for item in _events_of(raw):
        changes.extend(event_changes(raw, read_event(item), accounts))
    return changes


def make_normalizer(
    accounts: Iterable[str] | None = None,
) -> Callable[[RawMessage], list[ObjectChange]]:
    """``normalize_azure``, dead-lettering events of storage accounts not in ``accounts``."""
    if accounts is None:
        return normalize_azure
    served = frozenset(a for a in accounts if a)
    if not served:
        return normalize_azure
    return lambda raw: _normalize(raw, served)


def directory_scopes(raw: RawMessage) -> list[tuple[str, str]]:
    """(container, prefix) pairs whose blobs a Directory{Deleted,Renamed} event changed."""
    scopes: list[tuple[str, str]] = []
    for item in _events_of(raw):
        event = read_event(item)
        if event.type not in DIRECTORY_TYPES:
            continue
        fields = ("sourceUrl", "destinationUrl") if event.type.endswith("Renamed") else ("url",)
        for name in fields:
            ref = blob_ref(event.data.get(name), name)
            scopes.append((ref.container, ref.key.rstrip("/")))
    return scopes


def validation_code(events: Iterable[Mapping[str, Any]]) -> str | None:
    """The ``validationCode`` of a SubscriptionValidationEvent among ``events``, if any."""
    for item in events:
        if item.get("eventType") == VALIDATION or item.get("type") == VALIDATION:
            data = item.get("data")
            code = data.get("validationCode") if isinstance(data, dict) else None
            if not isinstance(code, str) or not code:
                raise InvalidEvent("validation event without data.validationCode")
            return code
    return None
