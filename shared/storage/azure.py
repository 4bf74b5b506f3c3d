"""Azure Blob Storage (``az://container/prefix``, alias ``azure://``) through azure-storage-blob.

Credentials: see ``mountsync.shared.storage.azure_auth`` (connection string, account URL with SAS or key,
or DefaultAzureCredential). The SDK is imported when the first client is built.

- ETags are normalized (quotes stripped) so a listing equals the ``data.eTag`` of Event Grid
  events; ``version`` is the blob version id when versioning is on, else ``None``.
- Listings include metadata so HNS directory markers (``hdi_isfolder=true``) are not objects.
- The resumable writer is a block blob's staged blocks. ``upload_id`` is a deterministic block-id
  prefix derived from (key, part size), so a restarted writer finds its own uncommitted blocks
  (``list_parts``) and sends only the missing ones; ``complete_upload`` commits the block list.
  Azure has no call to discard uncommitted blocks: ``abort_upload`` is a no-op and the service
  garbage-collects them after 7 days (or at the next commit/put of that blob).
"""

from __future__ import annotations

import builtins
import hashlib
import io
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO, TypeVar

from mountsync.shared.errors import (
    BadInput,
    CredentialsRejected,
    ObjectNotFound,
    StorageUnavailable,
)
from mountsync.shared.events import normalize_etag, to_ns
from mountsync.shared.storage.azure_auth import AzureAccess, resolve_access
from mountsync.shared.storage.base import ObjectInfo, PartInfo, UploadSession
from mountsync.shared.storage.streams import ExactlySized
from mountsync.shared.storage.url import StorageURL

LIST_PAGE_SIZE = 5000
MAX_BLOCKS = 50_000
READ_CHUNK = 4 * 1024 * 1024
RETRY_STATUSES = {408, 409, 412, 429}
T = TypeVar("T")


def block_id(upload_id: str, number: int) -> str:
    """Fixed-width block id (Azure requires equal lengths within a blob); the SDK base64s it."""
    return f"{upload_id}-{number:06d}"


def upload_id_for(key: str, part_size: int) -> str:
    """Deterministic per (key, part size): a resumed writer stages into the same block ids."""
    digest = hashlib.sha256(f"{key}\0{part_size}".encode()).hexdigest()
    return f"ms{digest[:22]}"


def _status(exc: Exception) -> int | None:
    return getattr(exc, "status_code", None)


def translate(exc: Exception, what: str) -> Exception:
    """An azure-core exception as the project's error (callers ``raise ... from exc``)."""
    from azure.core import exceptions as az

    status = _status(exc)
    if isinstance(exc, az.ResourceNotFoundError) or status == 404:
        return ObjectNotFound(f"{what}: not found")
    if isinstance(exc, az.ClientAuthenticationError) or status in (401, 403):
        return CredentialsRejected(f"{what}: Azure refused the credentials ({_brief(exc)})")
    if isinstance(exc, az.ServiceRequestError | az.ServiceResponseError):
        return StorageUnavailable(f"{what}: Azure Storage did not answer ({_brief(exc)})")
    if status is None or status >= 500 or status in RETRY_STATUSES:
        return StorageUnavailable(f"{what}: {_brief(exc)}")
    return BadInput(f"{what}: Azure Storage refused the request ({_brief(exc)})")


def _brief(exc: Exception) -> str:
    code = getattr(exc, "error_code", None)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{code}: {first}" if code else first[:300]


def _call(what: str, fn: Callable[[], T]) -> T:
    from azure.core.exceptions import AzureError

    try:
        return fn()
    except AzureError as exc:
        raise translate(exc, what) from exc


def _info(key: str, props: Any) -> ObjectInfo:
    checksums: dict[str, str] = {}
    settings = getattr(props, "content_settings", None)
    md5 = getattr(settings, "content_md5", None) if settings is not None else None
    if md5:
        checksums["md5"] = bytes(md5).hex()
    modified = getattr(props, "last_modified", None)
    return ObjectInfo(
        key=key,
        size=int(props.size),
        etag=normalize_etag(props.etag),
        version=getattr(props, "version_id", None) or None,
        modified_ns=to_ns(modified) if modified is not None else 0,
        checksums=checksums,
    )


def _is_directory_marker(props: Any) -> bool:
    metadata = getattr(props, "metadata", None) or {}
    return str(metadata.get("hdi_isfolder", "")).lower() == "true"


class _ChunkReader(io.RawIOBase):
    """A raw stream over the SDK's chunk iterator (memory bounded by one chunk)."""

    def __init__(self, chunks: Iterator[bytes], what: str) -> None:
        self._chunks = chunks
        self._what = what
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            chunk = _call(self._what, lambda: next(self._chunks, None))
            if chunk is None:
                return 0
            self._buffer = chunk
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


class AzureStorage:
    """One blob container (optionally under a prefix) as a bucket."""

    def __init__(
        self,
        url: StorageURL,
        options: Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.options = dict(options or {})
        self._environ = environ
        self._access: AzureAccess | None = None
        self._container: Any = None

    @property
    def access(self) -> AzureAccess:
        if self._access is None:
            self._access = resolve_access(self.options, "blob", self._environ)
        return self._access

    @property
    def account_name(self) -> str:
        return self.access.account_name

    def container(self) -> Any:
        if self._container is None:
            from azure.storage.blob import BlobServiceClient

            access = self.access
            if access.connection_string:
                service = BlobServiceClient.from_connection_string(access.connection_string)
            else:
                service = BlobServiceClient(access.account_url, credential=access.credential)
            self._container = service.get_container_client(self.url.bucket)
        return self._container

    def _blob(self, key: str) -> Any:
        if not key or key.endswith("/"):
            raise BadInput(f"{key!r} is not a blob name")
        return self.container().get_blob_client(key)

    def _what(self, key: str = "") -> str:
        return f"az://{self.url.bucket}/{key}"

    def full_prefix(self, prefix: str) -> str:
        """``prefix`` as a container key prefix: relative to the mount's prefix unless it has it."""
        return prefix if prefix.startswith(self.url.prefix) else self.url.prefix + prefix

    def list(self, prefix: str = "", *, recursive: bool = True) -> Iterator[ObjectInfo]:
        from azure.storage.blob import BlobProperties

        start = self.full_prefix(prefix)
        container = self.container()
        if recursive:
            pages = container.list_blobs(
                name_starts_with=start or None, include=["metadata"],
                results_per_page=LIST_PAGE_SIZE,
            )  # fmt: skip
        else:
            pages = container.walk_blobs(
                name_starts_with=start or None, include=["metadata"], delimiter="/",
                results_per_page=LIST_PAGE_SIZE,
            )  # fmt: skip
        items = iter(pages)
        what = self._what(start)
        while True:
            try:
                item = _call(what, lambda: next(items, None))
            except ObjectNotFound as exc:
                raise BadInput(
                    f"container {self.url.bucket!r} does not exist in account {self.account_name!r}"
                ) from exc
            if item is None:
                return
            if isinstance(item, BlobProperties) and not _is_directory_marker(item):
                yield _info(item.name, item)

    def stat(self, key: str) -> ObjectInfo:
        blob = self._blob(key)
        props = _call(self._what(key), blob.get_blob_properties)
        if _is_directory_marker(props):
            raise ObjectNotFound(f"{self._what(key)} is a directory, not a blob")
        return _info(key, props)

    def open(self, key: str) -> BinaryIO:
        blob = self._blob(key)
        what = self._what(key)
        downloader = _call(what, lambda: blob.download_blob(max_concurrency=1))
        raw = _ChunkReader(iter(downloader.chunks()), what)
        return io.BufferedReader(raw, buffer_size=READ_CHUNK)

    def check(self, *, writable: bool) -> None:
        """List one key; when ``writable``, also write and delete a small probe blob."""
        next(iter(self.list()), None)
        if writable:
            key = self.url.key_for(f".mountsync-check-{uuid.uuid4().hex}")
            self.put(key, io.BytesIO(b"mountsync write check"), 21)
            self.delete(key)

    def put(
        self, key: str, stream: BinaryIO, size: int, *, md5: str | None = None, sha256: str | None = None
    ) -> ObjectInfo:
        blob = self._blob(key)
        body = ExactlySized(stream, size, self._what(key))
        _call(
            self._what(key),
            lambda: blob.upload_blob(body, length=size, overwrite=True, max_concurrency=4),
        )
        info = self.stat(key)
        if info.size != size:
            raise StorageUnavailable(f"{self._what(key)}: wrote {info.size} bytes, expected {size}")
        return info

    def delete(self, key: str) -> None:
        blob = self._blob(key)
        _call(self._what(key), lambda: blob.delete_blob(delete_snapshots="include"))

    # Resumable writer: staged blocks of a block blob.
    def start_upload(self, key: str, part_size: int) -> UploadSession:
        self._blob(key)
        if part_size <= 0:
            raise BadInput(f"part size must be positive, got {part_size}")
        return UploadSession(key=key, upload_id=upload_id_for(key, part_size), part_size=part_size)

    def upload_part(self, session: UploadSession, number: int, data: bytes) -> PartInfo:
        if not 1 <= number <= MAX_BLOCKS:
            raise BadInput(f"block number {number} outside 1..{MAX_BLOCKS}")
        blob = self._blob(session.key)
        ident = block_id(session.upload_id, number)
        _call(
            self._what(session.key),
            lambda: blob.stage_block(ident, data, length=len(data), validate_content=True),
        )
        return PartInfo(number=number, size=len(data), etag=ident)

    def list_parts(self, session: UploadSession) -> builtins.list[PartInfo]:
        blob = self._blob(session.key)
        try:
            _, uncommitted = _call(self._what(session.key), lambda: blob.get_block_list("uncommitted"))
        except ObjectNotFound:
            return []  # nothing staged yet (or the blob was committed and the blocks discarded)
        parts: dict[int, PartInfo] = {}
        head = f"{session.upload_id}-"
        for block in uncommitted:
            ident = str(block.id)
            if ident.startswith(head) and ident[len(head) :].isdigit():
                number = int(ident[len(head) :])
                parts[number] = PartInfo(number=number, size=int(block.size), etag=ident)
        return [parts[n] for n in sorted(parts)]

    def complete_upload(self, session: UploadSession, parts: builtins.list[PartInfo]) -> ObjectInfo:
        from azure.storage.blob import BlobBlock

        ordered = sorted(parts, key=lambda p: p.number)
        numbers = [p.number for p in ordered]
        if not numbers or numbers != list(range(1, len(numbers) + 1)):
            raise BadInput(f"{self._what(session.key)}: parts must be 1..N without gaps")
        blob = self._blob(session.key)
        ids = [block_id(session.upload_id, p.number) for p in ordered]
        if not self._committed_already(blob, session, ids):
            blocks = [BlobBlock(block_id=ident) for ident in ids]
            _call(self._what(session.key), lambda: blob.commit_block_list(blocks))
        info = self.stat(session.key)
        expected = sum(p.size for p in ordered)
        if info.size != expected:
            raise StorageUnavailable(f"{self._what(session.key)}: committed {info.size} bytes, expected {expected}")
        return info

    def _committed_already(self, blob: Any, session: UploadSession, ids: builtins.list[str]) -> bool:
        """A completion repeated after a crash hid the first one's answer: the blob is made of
        exactly these blocks and none is staged, so committing again would only rewrite it (a
        new ETag and a second BlobCreated event for the same content)."""
        try:
            committed, uncommitted = _call(self._what(session.key), lambda: blob.get_block_list("all"))
        except ObjectNotFound:
            return False
        staged = {str(block.id) for block in uncommitted}
        return not staged.intersection(ids) and [str(block.id) for block in committed] == ids

    def abort_upload(self, session: UploadSession) -> None:
        """No-op: Azure discards uncommitted blocks after 7 days or at the next commit/put."""
