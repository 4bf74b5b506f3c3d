"""The one event every source is normalized into: ``ObjectChange``, and the raw message it came from.

Wire formats, both JSON:
- schema 1 (``to_wire``): an object with the field names and ``schema`` = ``SCHEMA_VERSION``;
- schema 2 (``to_row``): the same fields as an array in declaration order, led by ``ROW_SCHEMA``:
  ``[2, provider, bucket, key, kind, event_ns, source, size, etag, version, sequencer, source_id]``.
  Queues carry rows: without the names a change takes 168 bytes instead of 280, and everything a
  batch passes through (Redis, kombu's copies, the pipe to a worker process) moves 40% less.
Readers (``from_wire``) accept both and reject any other schema with ``InvalidEvent`` (never
guess at a future format).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from mountsync.shared.errors import InvalidEvent

SCHEMA_VERSION = 1
ROW_SCHEMA = 2
_ROW_LENGTH = 12
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc, exactly
MAX_KEY_BYTES = 4096
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)\Z", re.ASCII)
# The catalog stores sizes and times as PostgreSQL bigint and strings as text (no NUL): a change
# outside these would fail the whole batch it is applied in, so it is refused as invalid here.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class Provider(enum.StrEnum):
    S3 = "s3"
    GCS = "gcs"
    AZURE = "azure"
    FS = "fs"


class Kind(enum.StrEnum):
    CREATED = "created"
    DELETED = "deleted"
    METADATA = "metadata"
    ARCHIVED = "archived"

    @property
    def removes(self) -> bool:
        return self in (Kind.DELETED, Kind.ARCHIVED)


class Source(enum.StrEnum):
    GCS_PUBSUB = "gcs-pubsub"
    GCS_PUSH = "gcs-push"
    S3_SQS = "s3-sqs"
    AZURE_EVENTGRID = "azure-eventgrid"
    AZURE_QUEUE = "azure-queue"
    FS = "fs"
    MINIO = "minio"  # MinIO webhook; its messages travel as S3_SQS (the S3 normalizer reads them)
    REINDEX = "reindex"


def validate_key(key: str) -> str:
    """Return ``key`` if it can name an object, else raise ``InvalidEvent`` saying why.

    Keys are kept exactly as the provider spells them (no normalization: two keys that differ
    only in Unicode normal form are two objects in every bucket), but NUL, C0 control characters
    and oversized keys are refused because no platform can name such a file safely.
    """
    if not key:
        raise InvalidEvent("empty object key")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidEvent(f"object key longer than {MAX_KEY_BYTES} bytes")
    if _CONTROL.search(key):
        raise InvalidEvent(f"object key contains a control character: {key!r}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidEvent(f"object key is not valid UTF-8: {key!r}") from exc
    return key


def _check_text(value: object, name: str, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise InvalidEvent(f"change field {name} is {type(value).__name__}, not a string")
    if "\x00" in value:
        raise InvalidEvent(f"change field {name} contains NUL: {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidEvent(f"change field {name} is not valid UTF-8: {value!r}") from exc


def _check_int64(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent(f"change field {name} is {type(value).__name__}, not an integer")
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidEvent(f"change field {name} {value} is out of range")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_ns(moment: datetime | str | int | None) -> int:
    """Nanoseconds since the epoch from a datetime, an RFC 3339 string or an int (already ns)."""
    if isinstance(moment, str):  # what normalizers pass, so first; parse_time's times are aware
        moment = parse_time(moment)
    elif moment is None:
        raise InvalidEvent("event has no time")
    elif isinstance(moment, int):
        return moment
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Exact integer arithmetic: int(timestamp()) rounds toward zero, which put a time with a
    # fraction before 1970 one second late.
    return (moment - _EPOCH) // _MICROSECOND * 1000


def parse_time(text: str) -> datetime:
    """Parse RFC 3339 with any number of fractional digits (Azure sends 7, GCS 6, S3 3)."""
    # The providers' own spelling at C speed: Python 3.11 reads "Z" and cuts digits past 6 as the
    # loose path does; anything else (spaces, a lower-case z, no fraction digits) takes that path.
    try:
        parsed = datetime.fromisoformat(text) if _RFC3339.match(text) else _parse_time_loosely(text)
    except ValueError as exc:  # the 30th of February, hour 24
        raise InvalidEvent(f"bad timestamp {text!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_time_loosely(text: str) -> datetime:
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    if "." in value:
        head, _, tail = value.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        frac, rest = tail[:digits], tail[digits:]
        value = f"{head}.{(frac + '000000')[:6]}{rest}"
    return datetime.fromisoformat(value)


def normalize_etag(etag: str | None) -> str | None:
    """Strip the quotes and weak marker HTTP puts around entity tags, so events and listings agree."""
    if etag is None:
        return None
    if not isinstance(etag, str):
        raise InvalidEvent(f"etag {etag!r} is not a string")
    value = etag.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"') or None


def hex_of_b64(value: Any) -> str | None:
    """Hex of a base64 digest as the GCS JSON API spells checksums; None if absent or not base64."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return None


def gcs_content_etag(md5_b64: Any, crc32c_b64: Any, api_etag: Any) -> str | None:
    """The etag mountsync keeps for a GCS object, from events and listings alike: the MD5 (hex),
    else ``crc32c:<hex>`` (composite objects have no MD5), else the API's etag."""
    md5 = hex_of_b64(md5_b64)
    if md5:
        return md5
    crc = hex_of_b64(crc32c_b64)
    if crc:
        return f"crc32c:{crc}"
    return normalize_etag(api_etag) if isinstance(api_etag, str) else None


@dataclass(frozen=True, slots=True, init=False)
class ObjectChange:
    """One change to one object, in a provider-neutral form.

    ``sequencer`` orders changes to the same key; it is compared as a byte string and only
    between changes of the same provider and key. Normalizers make it fixed-width so that the
    plain comparison is right (see each normalizer). An empty sequencer means "unknown": such
    changes are ordered by ``event_ns`` instead.

    ``__init__`` is written out, not generated: the one a frozen dataclass generates sets each
    field through ``object.__setattr__`` (1.3-1.6 us a change); the slots' own setters take half of
    that, and a change is built twice on its way (by the normalizer, then in the worker).
    """

    provider: Provider
    bucket: str
    key: str
    kind: Kind
    event_ns: int
    source: Source
    size: int | None = None
    etag: str | None = None
    version: str | None = None
    sequencer: str = ""
    source_id: str | None = None
    schema: int = field(default=SCHEMA_VERSION)

    def __init__(self, provider: Provider, bucket: str, key: str, kind: Kind, event_ns: int, source: Source,
                 size: int | None = None, etag: str | None = None, version: str | None = None,
                 sequencer: str = "", source_id: str | None = None, schema: int = SCHEMA_VERSION) -> None:  # fmt: skip
        put = _SLOT_SETTERS  # in field order
        put[0](self, provider)
        put[1](self, bucket)
        put[2](self, key)
        put[3](self, kind)
        put[4](self, event_ns)
        put[5](self, source)
        put[6](self, size)
        put[7](self, etag)
        put[8](self, version)
        put[9](self, sequencer)
        put[10](self, source_id)
        put[11](self, schema)
        if not self._plainly_valid():
            self._check_each_field()

    def _plainly_valid(self) -> bool:
        """The common change in one pass: every string field printable ASCII, the key and bucket
        not empty, the integers in range. ``False`` only sends a change through
        ``_check_each_field``, which gives the same verdict with the reason (a change is built for
        every event and again in the worker, so this check runs a million times a minute)."""
        etag, version, source_id, size, event_ns = self.etag, self.version, self.source_id, self.size, self.event_ns
        try:
            text = "".join((self.key, self.bucket, self.sequencer, "" if etag is None else etag,
                            "" if version is None else version, "" if source_id is None else source_id))  # fmt: skip
        except TypeError:  # a field that is not a string
            return False
        return (
            text.isascii()
            and text.isprintable()  # for ASCII: no control character, NUL included
            and 0 < len(self.key) <= MAX_KEY_BYTES
            and self.bucket != ""
            and type(event_ns) is int
            and INT64_MIN <= event_ns <= INT64_MAX
            and (size is None or (type(size) is int and 0 <= size <= INT64_MAX))
        )

    def _check_each_field(self) -> None:
        if not isinstance(self.key, str):
            raise InvalidEvent(f"object key is {type(self.key).__name__}, not a string")
        validate_key(self.key)
        _check_text(self.bucket, "bucket", optional=False)
        if not self.bucket:
            raise InvalidEvent(f"change for {self.key!r} has no bucket")
        for name in ("etag", "version", "source_id"):
            _check_text(getattr(self, name), name)
        _check_text(self.sequencer, "sequencer", optional=False)
        _check_int64(self.event_ns, "event_ns")
        if self.size is not None:
            _check_int64(self.size, "size")
            if self.size < 0:
                raise InvalidEvent(f"negative size for {self.key!r}")

    @property
    def folder(self) -> str:
        head, sep, _ = self.key.rpartition("/")
        return head if sep else ""

    def to_wire(self) -> dict[str, Any]:
        """The JSON object of the wire format (fields in declaration order, enums as their text)."""
        return {
            "provider": ENUM_TEXT[self.provider],
            "bucket": self.bucket,
            "key": self.key,
            "kind": ENUM_TEXT[self.kind],
            "event_ns": self.event_ns,
            "source": ENUM_TEXT[self.source],
            "size": self.size,
            "etag": self.etag,
            "version": self.version,
            "sequencer": self.sequencer,
            "source_id": self.source_id,
            "schema": self.schema,
        }

    def to_row(self) -> list[Any]:
        """The JSON array of wire schema 2 (see the module docstring)."""
        text = ENUM_TEXT
        return [ROW_SCHEMA, text[self.provider], self.bucket, self.key, text[self.kind], self.event_ns,
                text[self.source], self.size, self.etag, self.version, self.sequencer, self.source_id]  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(self.to_wire(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any] | list[Any]) -> ObjectChange:
        """A change from either wire schema (an object, or a row)."""
        if type(data) is list:
            return cls._from_row(data)
        if not isinstance(data, Mapping):
            raise InvalidEvent(f"change is not an object or a row: {type(data).__name__}")
        schema = data.get("schema")
        if schema != SCHEMA_VERSION:
            raise InvalidEvent(f"unsupported change schema {schema!r} (this build reads objects of schema 1 "
                               f"and rows of schema {ROW_SCHEMA})")  # fmt: skip
        size = data.get("size")
        try:  # positional: a change is decoded for every event, keywords cost a sixth of the call
            return cls(
                _PROVIDERS[data["provider"]],
                str(data["bucket"]),
                str(data["key"]),
                _KINDS[data["kind"]],
                int(data["event_ns"]),
                _SOURCES[data["source"]],
                None if size is None else int(size),
                data.get("etag"),
                data.get("version"),
                str(data.get("sequencer") or ""),
                data.get("source_id"),
            )
        except KeyError as exc:  # a missing field, or a provider, kind or source this build does not know
            raise InvalidEvent(f"malformed change: missing field or unknown value {exc}") from exc
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidEvent(f"malformed change: {exc}") from exc

    @classmethod
    def _from_row(cls, row: list[Any]) -> ObjectChange:
        if len(row) != _ROW_LENGTH or row[0] != ROW_SCHEMA:
            schema = row[0] if row else None
            raise InvalidEvent(f"malformed change row: {len(row)} items with schema {schema!r} "
                               f"(this build reads rows of {_ROW_LENGTH} with schema {ROW_SCHEMA})")  # fmt: skip
        _, provider, bucket, key, kind, event_ns, source, size, etag, version, sequencer, source_id = row
        try:
            return cls(_PROVIDERS[provider], str(bucket), str(key), _KINDS[kind], int(event_ns), _SOURCES[source],
                       None if size is None else int(size), etag, version, str(sequencer or ""), source_id)  # fmt: skip
        except KeyError as exc:  # a provider, kind or source this build does not know
            raise InvalidEvent(f"malformed change: unknown value {exc}") from exc
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidEvent(f"malformed change: {exc}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> ObjectChange:
        return cls.from_wire(load_json(text, "change"))


def wire_event_ns(data: Mapping[str, Any] | list[Any]) -> int:
    """``event_ns`` of a change on the wire (either schema) without decoding the rest of it."""
    return int(data[5] if type(data) is list else data["event_ns"])  # type: ignore[call-overload]


# The slot setters of ObjectChange's fields, in field order (what its __init__ assigns through).
_SLOT_SETTERS: tuple[Callable[[ObjectChange, Any], None], ...] = tuple(
    ObjectChange.__dict__[f.name].__set__ for f in fields(ObjectChange)
)

# Dict lookups instead of Enum(value) and .value (a property: 117 ns against a lookup's 17): a worker
# decodes ~2,000 changes per task, three enums each.
_PROVIDERS = {member.value: member for member in Provider}
_KINDS = {member.value: member for member in Kind}
_SOURCES = {member.value: member for member in Source}
ENUM_TEXT: dict[enum.StrEnum, str] = {member: member.value for kind in (Provider, Kind, Source) for member in kind}


# orjson refuses what json reads loosely (NaN, Infinity, lone surrogates) and nests 1,024 deep where
# json stops near the recursion limit: a text of 500 brackets or more is left to json, so the two
# read a text alike. One difference stays: orjson reads an integer past 64 bits as a float; no field
# of a notification holds one, and either way such a size or time is refused (with another reason).
_BRACKETS_FOR_JSON = 500


def _orjson_reads_as_json(text: bytes) -> bool:
    return text.count(b"[") + text.count(b"{") < _BRACKETS_FOR_JSON


def load_json(text: str | bytes, what: str) -> Any:
    """``json.loads``, or ``InvalidEvent`` saying that ``what`` is not JSON (for dead letters)."""
    if isinstance(text, bytes) and _orjson_reads_as_json(text):
        try:  # a third of json's CPU
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # json.loads names what is wrong, in the words dead letters have always had
    try:
        return json.loads(text)
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidEvent(f"{what} is not JSON: {exc}") from exc
    except RecursionError as exc:  # e.g. a body of 100,000 '[': the parser recurses per level
        raise InvalidEvent(
            f"{what} is not JSON we read: nested more than {sys.getrecursionlimit()} levels deep"
        ) from exc


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message as a transport delivered it, before normalization.

    ``handle`` is whatever the source needs to ack it (an SQS receipt handle, a Pub/Sub message,
    a lock token); normalizers never look at it. ``payload`` is the body's JSON value when the
    transport had to parse it already (the Event Grid webhook, which splits a batch into its
    events); a normalizer that finds it does not parse ``body`` again. ``body`` stays the bytes
    as delivered, for the dead-letter store.
    """

    source: Source
    message_id: str
    body: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)
    received_ns: int = 0
    handle: Any = None
    delivery_count: int = 1
    payload: Any = None
