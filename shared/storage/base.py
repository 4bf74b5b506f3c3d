"""The storage contract every provider adapter fulfils, and the frozen types it returns."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from mountsync.shared.storage.url import StorageURL

Parts = list["PartInfo"]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a listing or stat says about one object. Keys are bucket keys, never SDK objects.

    ``etag`` is normalized (no quotes) so it equals what the provider's events carry.
    ``sequencer`` is set only when the listing itself can order versions (GCS generation);
    otherwise empty and callers order by the time they looked.
    """

    key: str
    size: int
    etag: str | None = None
    version: str | None = None
    sequencer: str = ""
    modified_ns: int = 0
    checksums: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PartInfo:
    """One uploaded part of a resumable upload (1-based ``number``)."""

    number: int
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class UploadSession:
    """A resumable upload in progress; ``upload_id`` is what survives a crash (kept in Postgres)."""

    key: str
    upload_id: str
    part_size: int


class Storage(Protocol):
    """One bucket (or container, or directory root), addressed by bucket keys.

    - ``list`` streams (paginates lazily; memory does not grow with the bucket). With
      ``recursive=False`` it yields only the direct children of ``prefix`` that are objects.
      Order is unspecified.
    - ``stat`` raises ``ObjectNotFound``; ``open`` streams the content and raises the same.
    - ``check`` proves the credentials: lists one key, and when ``writable`` writes and deletes
      a small test object. It raises ``CredentialsRejected`` or ``StorageUnavailable``.
    - Transient SDK failures surface as ``StorageUnavailable`` (retry); nothing returns None
      to mean failure.
    - ``put`` writes ``size`` bytes from ``stream`` in one go. ``md5`` (hex) is the content's MD5
      when the caller has it already: S3 sends it as Content-MD5 (the service refuses a body
      that does not match) instead of hashing the stream again; the other providers verify
      with their own checksums and ignore it. ``sha256`` (hex), given instead to a storage whose
      ``verifies_sha256`` is true (S3), is sent as the request's checksum: the service refuses
      a body that does not match it, and the answer carries it in ``checksums``, so a copy is
      hashed once, not twice.
    - The writer side is resumable: a session's parts can be listed after a crash and only the
      missing ones sent; ``complete_upload`` verifies and returns the final ``ObjectInfo``.
    """

    url: StorageURL

    def list(self, prefix: str = "", *, recursive: bool = True) -> Iterator[ObjectInfo]: ...

    def stat(self, key: str) -> ObjectInfo: ...

    def open(self, key: str) -> BinaryIO: ...

    def check(self, *, writable: bool) -> None: ...

    def put(
        self, key: str, stream: BinaryIO, size: int, *, md5: str | None = None, sha256: str | None = None
    ) -> ObjectInfo: ...

    def delete(self, key: str) -> None: ...

    def start_upload(self, key: str, part_size: int) -> UploadSession: ...

    def upload_part(self, session: UploadSession, number: int, data: bytes) -> PartInfo: ...

    def list_parts(self, session: UploadSession) -> Parts: ...

    def complete_upload(self, session: UploadSession, parts: Parts) -> ObjectInfo: ...

    def abort_upload(self, session: UploadSession) -> None: ...
