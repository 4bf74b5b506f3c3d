"""A bucket model that emits each provider's real notification payloads, and lists like an adapter.

Operations: put (a create or an overwrite), copy, delete, rename (copy + delete, as on every flat
namespace). Each operation changes the model and returns the raw messages the provider would
deliver for it, in the provider's own format (S3 records with sequencers, GCS JSON_API_V1 with
generations and the overwrite's DELETE half, Event Grid BlobCreated/BlobDeleted, fs
observations), so the real normalizers turn them into changes. ``listing`` is what the provider's
storage adapter reports (same etag rule as its events; GCS listings carry a sequencer).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

from mountsync.producers.normalize.azure import normalize_azure
from mountsync.producers.normalize.fs import normalize_fs
from mountsync.producers.normalize.gcs import normalize_gcs
from mountsync.producers.normalize.s3 import normalize_s3
from mountsync.shared.events import ObjectChange, Provider, RawMessage, Source
from mountsync.shared.storage.base import ObjectInfo

ACCOUNT = "acmeraw"
TOPIC = f"/subscriptions/0/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}"
NORMALIZERS: dict[Provider, Callable[[RawMessage], list[ObjectChange]]] = {
    Provider.S3: normalize_s3,
    Provider.GCS: normalize_gcs,
    Provider.AZURE: normalize_azure,
    Provider.FS: normalize_fs,
}


@dataclass(frozen=True)
class Obj:
    size: int
    etag: str
    generation: int  # GCS generation; a write counter elsewhere


def _iso(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest // 1000:06d}Z"


@dataclass
class BucketModel:
    """One bucket of ``provider``; ``start_ns`` is the time of the first operation."""

    provider: Provider
    bucket: str
    start_ns: int
    objects: dict[str, Obj] = field(default_factory=dict)
    _tick: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    # -- operations -------------------------------------------------------------------------
    def put(self, key: str, content: bytes) -> list[RawMessage]:
        tick = next(self._tick)
        old = self.objects.get(key)
        generation = 1_714_564_800_000_000 + tick
        new = Obj(len(content), self._etag(content, tick), generation)
        self.objects[key] = new
        return self._created(key, new, old, tick)

    def copy(self, source: str, destination: str) -> list[RawMessage]:
        src = self.objects.get(source)
        if src is None:
            return []
        return self.put(destination, self._content_of(src))

    def delete(self, key: str) -> list[RawMessage]:
        old = self.objects.pop(key, None)
        if old is None:
            return []
        return self._deleted(key, old, next(self._tick))

    def rename(self, source: str, destination: str) -> list[RawMessage]:
        if source not in self.objects or source == destination:
            return []
        return [*self.copy(source, destination), *self.delete(source)]

    def listing(self, prefix: str = "", *, recursive: bool = True) -> Iterator[ObjectInfo]:
        for key, obj in sorted(self.objects.items()):
            rest = key[len(prefix) :] if key.startswith(prefix) else None
            if rest is None or (not recursive and "/" in rest):
                continue
            sequencer = f"{obj.generation:020d}.0.{1:020d}" if self.provider is Provider.GCS else ""
            version = str(obj.generation) if self.provider is Provider.GCS else None
            yield ObjectInfo(key=key, size=obj.size, etag=obj.etag, version=version, sequencer=sequencer)

    def state(self) -> dict[str, tuple[int, str]]:
        return {key: (obj.size, obj.etag) for key, obj in self.objects.items()}

    # -- content and etags ------------------------------------------------------------------
    _contents: dict[str, bytes] = field(default_factory=dict)

    def _etag(self, content: bytes, tick: int) -> str:
        if self.provider in (Provider.S3, Provider.GCS):
            etag = hashlib.md5(content).hexdigest()  # content-derived: equal content, equal etag
        elif self.provider is Provider.AZURE:
            etag = f"0x8DC{tick:013X}"  # every write gets a new etag
        else:
            etag = f"{self.start_ns + tick:x}-{len(content):x}"  # fs: mtime-size
        self._contents[etag] = content
        return etag

    def _content_of(self, obj: Obj) -> bytes:
        return self._contents[obj.etag]

    def _when(self, tick: int) -> int:
        return self.start_ns + tick * 1_000_000  # 1 ms apart

    def _message(self, source: Source, body: bytes, attributes: dict[str, str] | None = None) -> RawMessage:
        return RawMessage(source, f"m{next(self._ids)}", body, attributes or {})

    # -- provider payloads ------------------------------------------------------------------
    def _created(self, key: str, new: Obj, old: Obj | None, tick: int) -> list[RawMessage]:
        if self.provider is Provider.S3:
            return [self._s3("ObjectCreated:Put", key, tick, new)]
        if self.provider is Provider.GCS:
            finalize = self._gcs("OBJECT_FINALIZE", key, new, tick, overwrote=old)
            if old is None:
                return [finalize]
            return [finalize, self._gcs("OBJECT_DELETE", key, old, tick, overwritten_by=new)]
        if self.provider is Provider.AZURE:
            return [self._azure("Microsoft.Storage.BlobCreated", key, tick, new)]
        return [self._fs(key, tick, new)]

    def _deleted(self, key: str, old: Obj, tick: int) -> list[RawMessage]:
        if self.provider is Provider.S3:
            return [self._s3("ObjectRemoved:Delete", key, tick, None)]
        if self.provider is Provider.GCS:
            return [self._gcs("OBJECT_DELETE", key, old, tick)]
        if self.provider is Provider.AZURE:
            return [self._azure("Microsoft.Storage.BlobDeleted", key, tick, None)]
        return [self._fs(key, tick, None)]

    def _s3(self, name: str, key: str, tick: int, obj: Obj | None) -> RawMessage:
        described: dict[str, object] = {"key": quote_plus(key, safe="/"), "sequencer": f"{tick:018X}"}
        if obj is not None:
            described.update(size=obj.size, eTag=obj.etag)
        s3 = {"bucket": {"name": self.bucket}, "object": described}
        record = {"eventVersion": "2.1", "eventSource": "aws:s3", "eventTime": _iso(self._when(tick)),
                  "eventName": name, "s3": s3}  # fmt: skip
        return self._message(Source.S3_SQS, json.dumps({"Records": [record]}).encode())

    def _gcs(self, event: str, key: str, obj: Obj, tick: int, *, overwrote: Obj | None = None,
             overwritten_by: Obj | None = None) -> RawMessage:  # fmt: skip
        attributes = {"eventType": event, "bucketId": self.bucket, "objectId": key,
                      "objectGeneration": str(obj.generation), "payloadFormat": "JSON_API_V1",
                      "eventTime": _iso(self._when(tick))}  # fmt: skip
        if overwrote is not None:
            attributes["overwroteGeneration"] = str(overwrote.generation)
        if overwritten_by is not None:
            attributes["overwrittenByGeneration"] = str(overwritten_by.generation)
        md5 = base64.b64encode(bytes.fromhex(obj.etag)).decode()
        resource = {"kind": "storage#object", "bucket": self.bucket, "name": key,
                    "generation": str(obj.generation), "metageneration": "1", "size": str(obj.size),
                    "md5Hash": md5, "updated": _iso(self._when(tick))}  # fmt: skip
        return self._message(Source.GCS_PUBSUB, json.dumps(resource).encode(), attributes)

    def _azure(self, event: str, key: str, tick: int, obj: Obj | None) -> RawMessage:
        data: dict[str, object] = {
            "api": "PutBlob" if obj else "DeleteBlob", "blobType": "BlockBlob",
            "url": f"https://{ACCOUNT}.blob.core.windows.net/{self.bucket}/{quote(key)}",
            "sequencer": f"{tick:048X}",
        }  # fmt: skip
        if obj is not None:
            data.update(eTag=obj.etag, contentLength=obj.size)
        body = [{"topic": TOPIC, "subject": f"/blobServices/default/containers/{self.bucket}/blobs/{key}",
                 "eventType": event, "id": f"ev-{tick}", "eventTime": _iso(self._when(tick)),
                 "data": data, "dataVersion": "", "metadataVersion": "1"}]  # fmt: skip
        return self._message(Source.AZURE_EVENTGRID, json.dumps(body).encode())

    def _fs(self, key: str, tick: int, obj: Obj | None) -> RawMessage:
        body: dict[str, object] = {"root": self.bucket, "key": key, "exists": obj is not None,
                                   "observed_ns": self._when(tick)}  # fmt: skip
        if obj is not None:
            body.update(size=obj.size, etag=obj.etag)
        return self._message(Source.FS, json.dumps(body).encode())


class ModelStorage:
    """The ``Storage`` side a reindex needs (``list``), served from the model."""

    def __init__(self, model: BucketModel) -> None:
        self.model = model

    def list(self, prefix: str = "", *, recursive: bool = True) -> Iterator[ObjectInfo]:
        return self.model.listing(prefix, recursive=recursive)
