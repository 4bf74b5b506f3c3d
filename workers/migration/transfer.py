"""Copy one item from a source to a destination storage: streaming, verified, resumable.

Files up to ``multipart_threshold`` go in one request. From a local source to a destination
that streams a request body (S3, fs) the file is hashed in one pass and sent from disk in a
second (the page cache serves it), so memory does not grow with the file; otherwise it is read
into a buffer (at most ``BUFFERED_PUT_MAX``), hashed and ``put``. Larger files go through the
storage's resumable writer part by part (``multipart.MultipartUploads``: bounded part buffers,
every part recorded, a resumed item sends only the parts not confirmed).

Called by ``service`` (one ``Transfer`` per chunk run, ``run`` per claimed item). It records
through the worker's stores: ``PartStore`` (uploads and parts), ``ItemStore.set_size`` (an item
submitted without a size) and ``VerificationCache`` (read once per chunk with the destination
listing); item outcomes go back to ``service.record`` as ``Outcome`` values, recorded in batches.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

import structlog

from mountsync.shared.errors import ObjectNotFound, RetryableError
from mountsync.shared.events import Provider
from mountsync.shared.migration import metrics as m
from mountsync.shared.migration.plan import common_folder, part_size_for
from mountsync.shared.migration.spec import TransferOptions
from mountsync.shared.storage.base import ObjectInfo, Storage
from mountsync.workers.migration.common import (
    PERMANENT,
    Control,
    Outcome,
    Permanent,
    SourceChanged,
    Stop,
    check_wanted,
    location_of,
    read_all,
)
from mountsync.workers.migration.items import ItemRow, ItemStore
from mountsync.workers.migration.multipart import MultipartUploads
from mountsync.workers.migration.parts import PartStore
from mountsync.workers.migration.retry import Backoff, ByteBudget, GaveUp, with_retries
from mountsync.workers.migration.verified import VerificationCache, Verified
from mountsync.workers.migration.verify import (
    ChecksumMismatch,
    Digests,
    candidate_part_sizes,
    check_upload,
    hash_stream,
    multipart_parts,
    same_content,
)

log = structlog.get_logger("mountsync.migration")

BUFFERED_PUT_MAX = 16 * 1024 * 1024  # a single request read into memory (remote sources)


class Transfer:
    """Copies items between two storages with shared buffers and a shared part pool."""

    def __init__(
        self,
        source: Storage,
        dest: Storage,
        options: TransferOptions,
        *,
        items: ItemStore,
        parts: PartStore,
        verified: VerificationCache,
        budget: ByteBudget,
        part_pool: ThreadPoolExecutor,
        control: Control,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.source, self.dest, self.options = source, dest, options
        self.items, self.parts, self.verified = items, parts, verified
        self.budget, self.part_pool, self.control = budget, part_pool, control
        self.backoff = backoff or Backoff(options.retry_base_s, options.retry_max_s)
        self.sleep = sleep or _sleep
        self.location = location_of(dest.url)
        # Destination objects among the keys about to be copied, from one listing; None means
        # "unknown" and every item asks the destination itself (a HEAD per item).
        self.existing: dict[str, ObjectInfo] | None = None
        self.records: dict[str, Verified] = {}  # verified-copy records of the keys listed
        # One request: buffered up to BUFFERED_PUT_MAX; above that a local file, which can be
        # read twice at page-cache speed, is hashed first and then streamed (when the
        # destination streams a request body), up to the threshold.
        self.buffered_max = min(options.multipart_threshold, BUFFERED_PUT_MAX, options.max_buffer_bytes)
        streams = source.url.provider is Provider.FS and getattr(dest, "streams_put", False)
        self.streamed_max = options.multipart_threshold if streams else self.buffered_max
        # A destination that checks a put against its SHA-256 (S3) needs no MD5: each file is
        # hashed once (the SHA-256 is the link's checksum anyway), not twice.
        self.put_by_sha256 = bool(getattr(dest, "verifies_sha256", False))
        self.uploads = MultipartUploads(source, dest, options, parts=parts, budget=budget, part_pool=part_pool,
                                        control=control, call=self._call)  # fmt: skip

    # --- one item ---------------------------------------------------------------------------
    def run(self, item: ItemRow) -> Outcome:
        """Copy one item, retrying transient failures; never raises except ``Stop``-free bugs."""
        attempts = self.options.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._run_once(item)
            except Stop as stop:
                return Outcome("cancelled" if stop.reason == "cancelled" else "released")
            except (Permanent, *PERMANENT) as exc:
                return Outcome("failed", reason=str(exc))
            except GaveUp as exc:
                return Outcome("failed", reason=str(exc))
            except (RetryableError, ChecksumMismatch, SourceChanged, OSError) as exc:
                item = self.parts.refresh_upload(item)
                if isinstance(exc, ChecksumMismatch | SourceChanged):
                    self._forget_upload(item)
                    item = _without_upload(item)
                if attempt >= attempts:
                    return Outcome("failed", reason=f"gave up after {attempts} attempts: {exc}")
                log.warning("migration item attempt failed", job_id=item.job_id,
                            entity_id=item.entity_id, attempt=attempt, error=str(exc))  # fmt: skip
                self.sleep(self.backoff.delay(attempt))
        raise AssertionError("unreachable")

    def _run_once(self, item: ItemRow) -> Outcome:
        self.control.check(item)
        src_key = self.source.url.key_for(item.path)
        size = self._call(lambda: self.source.stat(src_key), "stat source").size
        if item.size is not None and item.size != size:
            raise Permanent(f"source has {size} bytes, the spec said {item.size}")
        if item.size is None:
            self.items.set_size(item.job_id, item.seq, size)
        if self.options.skip_existing:
            skipped = self._skip_if_equal(item, src_key, size)
            if skipped is not None:
                return skipped
        if size <= self.buffered_max:
            return self._put(item, src_key, size)
        if size <= self.streamed_max:
            return self._put_streamed(item, src_key, size)
        return self._multipart(item, src_key, size)

    def _call(self, call: Callable[[], Any], what: str) -> Any:
        return with_retries(
            call,
            attempts=self.options.max_attempts,
            backoff=self.backoff,
            what=what,
            sleep=self.sleep,
        )

    # --- skip existing ----------------------------------------------------------------------
    def index_destination(self, keys: list[str], limit: int = 5000) -> None:
        """List the destination once under the keys' common folder (instead of a HEAD per item);
        gives up (leaving HEADs) when the folder holds more than ``limit`` objects."""
        wanted, found = set(keys), {}
        try:
            for count, info in enumerate(self.dest.list(common_folder(keys), recursive=True)):
                if count >= limit:
                    return
                if info.key in wanted:
                    found[info.key] = info
        except (RetryableError, *PERMANENT) as exc:
            log.warning("destination listing failed; checking items one by one", error=str(exc))
            return
        self.existing = found
        self.records = self.verified.get_many(self.location, found)

    def _skip_if_equal(self, item: ItemRow, src_key: str, size: int) -> Outcome | None:
        if self.existing is not None and item.dest_key not in self.existing:
            return None
        try:
            info: ObjectInfo = self._call(lambda: self.dest.stat(item.dest_key), "stat destination")
        except ObjectNotFound:
            return None
        if info.size != size:
            return None
        parts = multipart_parts(info)
        sizes = set()
        if parts is not None:
            configured = {part_size_for(size, self.options.part_size), item.part_size or 0}
            sizes = candidate_part_sizes(size, parts, configured)
        digests = self._hash_source(src_key, sizes)
        check_wanted(item, digests)
        listed = self.existing is not None  # the chunk's records were read with the listing
        record = self.records.get(item.dest_key) if listed else self.verified.get(self.location, item.dest_key)
        if same_content(info, digests, record) is not True:
            return None
        self._forget_upload(item)
        return Outcome("skipped", checksum=digests.checksum, etag=info.etag, size=size, verified_by="existing")

    def _hash_source(self, src_key: str, part_sizes: set[int]) -> Digests:
        def read() -> Digests:
            with self.source.open(src_key) as stream:
                return hash_stream(stream, part_sizes)

        digests: Digests = self._call(read, "read source")
        return digests

    # --- single put -------------------------------------------------------------------------
    def _put(self, item: ItemRow, src_key: str, size: int) -> Outcome:
        self.budget.acquire(size)
        try:
            data: bytes = self._call(lambda: read_all(self.source, src_key, size), "read source")
            md5 = hashlib.md5(data).hexdigest() if self._needs_md5(item) else None
            digests = Digests(size, hashlib.sha256(data).hexdigest(), md5)
            check_wanted(item, digests)
            self.control.check(item)
            info: ObjectInfo = self._call(lambda: self._send(item, io.BytesIO(data), size, digests), "put")
        finally:
            self.budget.release(size)
        m.BYTES_SENT.inc(size)
        return self._done(item, info, digests, check_upload(info, digests, None), sent=size)

    def _put_streamed(self, item: ItemRow, src_key: str, size: int) -> Outcome:
        def send() -> tuple[Digests, ObjectInfo]:
            # Hashed again on every attempt: a source that changed since is sent as it is now
            # (and S3's Content-MD5 check, or the fs destination's MD5 check, refuses a body that
            # changed under the request).
            with self.source.open(src_key) as stream:
                digests = hash_stream(stream, md5=self._needs_md5(item))
            if digests.size != size:
                raise SourceChanged(f"{src_key!r} has {digests.size} bytes now, {size} when listed")
            check_wanted(item, digests)
            self.control.check(item)
            with self.source.open(src_key) as stream:
                return digests, self._send(item, stream, size, digests)

        digests, info = self._call(send, "put")
        m.BYTES_SENT.inc(size)
        return self._done(item, info, digests, check_upload(info, digests, None), sent=size)

    def _needs_md5(self, item: ItemRow) -> bool:
        return not self.put_by_sha256 or bool(item.want_md5)

    def _send(self, item: ItemRow, stream: BinaryIO, size: int, digests: Digests) -> ObjectInfo:
        if self.put_by_sha256:
            return self.dest.put(item.dest_key, stream, size, sha256=digests.sha256)
        return self.dest.put(item.dest_key, stream, size, md5=digests.md5)

    def _done(self, item: ItemRow, info: ObjectInfo, digests: Digests, method: str, sent: int = 0) -> Outcome:
        verified = None
        if info.etag:
            record = Verified(info.size, info.etag, digests.sha256, digests.md5 or "")
            verified = (self.location, item.dest_key, record)
        return Outcome(
            "done",
            checksum=digests.checksum,
            etag=info.etag,
            size=info.size,
            verified_by=method,
            sent=sent,
            verified=verified,
        )

    # --- multipart --------------------------------------------------------------------------
    def _multipart(self, item: ItemRow, src_key: str, size: int) -> Outcome:
        digests, info, etags = self.uploads.upload(item, src_key, size)
        return self._done(item, info, digests, check_upload(info, digests, etags))

    def _forget_upload(self, item: ItemRow) -> None:
        self.uploads.forget(item)


def _without_upload(item: ItemRow) -> ItemRow:
    from dataclasses import replace

    return replace(item, upload_id=None, part_size=None)


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)
