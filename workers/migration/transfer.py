"""Copy one item from a source to a destination storage: streaming, verified, resumable.

Files up to ``multipart_threshold`` go in one request. From a local source to a destination
that streams a request body (S3, fs) the file is hashed in one pass and sent from disk in a
second (the page cache serves it), so memory does not grow with the file; otherwise it is read
into a buffer (at most ``BUFFERED_PUT_MAX``), hashed and ``put``. Larger files go through the
storage's resumable writer part by part: at most ``part_concurrency`` parts of a file are in
flight, and all part buffers of the process share one ``ByteBudget``, so memory does not grow
with the file size or the number of files. Every part is recorded in PostgreSQL before it is
sent and when it is confirmed; a resumed item re-reads (and re-hashes) the source but sends
only parts that are not both recorded as done and listed by the provider (``list_parts``).

Called by ``service`` (one ``Transfer`` per chunk run, ``run`` per claimed item). It records
through the worker's stores: ``PartStore`` (uploads and parts), ``ItemStore.set_size`` (an item
submitted without a size) and ``VerificationCache`` (read once per chunk with the destination
listing); item outcomes go back to ``service.record`` as ``Outcome`` values, recorded in batches.
"""

from __future__ import annotations

import hashlib
import io
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

import structlog

from mountsync.shared.errors import ObjectNotFound, RetryableError
from mountsync.shared.events import Provider
from mountsync.shared.migration import metrics as m
from mountsync.shared.migration.plan import common_folder, part_count, part_size_for
from mountsync.shared.migration.spec import TransferOptions
from mountsync.shared.storage.base import ObjectInfo, PartInfo, Storage, UploadSession
from mountsync.workers.migration.common import (
    PERMANENT,
    Control,
    Outcome,
    Permanent,
    SourceChanged,
    Stop,
    check_wanted,
    fingerprint,
    location_of,
    read_all,
    read_exact,
)
from mountsync.workers.migration.items import ItemRow, ItemStore
from mountsync.workers.migration.parts import PartStore, confirmed_parts
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
        self.multipart_etags = dest.url.provider is Provider.S3
        # One request: buffered up to BUFFERED_PUT_MAX; above that a local file, which can be
        # read twice at page-cache speed, is hashed first and then streamed (when the
        # destination streams a request body), up to the threshold.
        self.buffered_max = min(options.multipart_threshold, BUFFERED_PUT_MAX, options.max_buffer_bytes)
        streams = source.url.provider is Provider.FS and getattr(dest, "streams_put", False)
        self.streamed_max = options.multipart_threshold if streams else self.buffered_max
        # A destination that checks a put against its SHA-256 (S3) needs no MD5: each file is
        # hashed once (the SHA-256 is the link's checksum anyway), not twice.
        self.put_by_sha256 = bool(getattr(dest, "verifies_sha256", False))
        # Resumable uploads that must be sent in order (GCS) cannot take parallel parts.
        self.part_concurrency = 1 if getattr(dest, "sequential_parts", False) else options.part_concurrency

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
        session, confirmed = self._session(item, size)
        try:
            digests, parts = self._send_parts(item, session, confirmed, src_key, size)
        except Stop as stop:
            if stop.reason == "cancelled":
                self._abort(item, session)
            raise
        try:
            check_wanted(item, digests)
        except Permanent:
            self._abort(item, session)
            raise
        self.control.check(item)
        info = self._complete(item, session, parts)
        method = check_upload(info, digests, [p.etag for p in parts])
        return self._done(item, info, digests, method)

    def _session(self, item: ItemRow, size: int) -> tuple[UploadSession, dict[int, tuple[PartInfo, str]]]:
        if item.upload_id and item.part_size:
            session = UploadSession(item.dest_key, item.upload_id, int(item.part_size))
            confirmed = self._confirmed_parts(item, session)
            if confirmed is not None:
                return session, confirmed
            self.parts.forget_upload(item.job_id, item.seq)
        part_size = part_size_for(size, self.options.part_size)
        session = self._call(lambda: self.dest.start_upload(item.dest_key, part_size), "start upload")
        self.parts.start_upload(item.job_id, item.seq, session.upload_id, part_size)
        return session, {}

    def _confirmed_parts(self, item: ItemRow, session: UploadSession) -> dict[int, tuple[PartInfo, str]] | None:
        """``confirmed_parts`` of the upload; None when the upload no longer exists."""
        try:
            remote = self._call(lambda: self.dest.list_parts(session), "list parts")
        except ObjectNotFound:
            return None
        return confirmed_parts(self.parts.parts(item.job_id, item.seq, session.upload_id), remote)

    def _send_parts(
        self,
        item: ItemRow,
        session: UploadSession,
        confirmed: dict[int, tuple[PartInfo, str]],
        src_key: str,
        size: int,
    ) -> tuple[Digests, list[PartInfo]]:
        # A whole-object MD5 only where the provider reports one (S3 multipart objects carry
        # an MD5-of-part-MD5s instead, checked from the parts' ETags).
        sha, md5 = hashlib.sha256(), (None if self.multipart_etags else hashlib.md5())
        results: dict[int, PartInfo] = {}
        inflight: deque[tuple[Future[PartInfo], int]] = deque()
        try:
            with self.source.open(src_key) as stream:
                for number in range(1, part_count(size, session.part_size) + 1):
                    self.control.check(item)
                    length = min(session.part_size, size - (number - 1) * session.part_size)
                    data = self._read_part(stream, length)
                    sha.update(data)
                    if md5 is not None:
                        md5.update(data)
                    print_ = fingerprint(data)
                    if number in confirmed:
                        m.PARTS_REUSED.inc()
                        self.budget.release(length)
                        done, sent_print = confirmed[number]
                        if sent_print != print_:
                            raise SourceChanged(f"part {number} of the source changed since sent")
                        results[number] = done
                        continue
                    while len(inflight) >= self.part_concurrency:
                        _collect(inflight.popleft()[0], results)
                    job = self.part_pool.submit(self._send_part, item, session, number, data, print_)
                    inflight.append((job, length))
                if stream.read(1):
                    raise SourceChanged("the source grew while it was read")
            while inflight:
                _collect(inflight.popleft()[0], results)
        finally:
            self._drain(inflight)
        parts = [results[n] for n in sorted(results)]
        whole_md5 = md5.hexdigest() if md5 is not None else None
        return Digests(size, sha.hexdigest(), whole_md5), parts

    def _read_part(self, stream: BinaryIO, length: int) -> bytes:
        self.budget.acquire(length)
        try:
            data = read_exact(stream, length)
        except BaseException:
            self.budget.release(length)
            raise
        return data

    def _drain(self, inflight: deque[tuple[Future[PartInfo], int]]) -> None:
        """After an error: drop queued parts (returning their buffers) and wait for running ones."""
        for job, length in inflight:
            if job.cancel():
                self.budget.release(length)
        for job, _ in inflight:
            if not job.cancelled():
                job.exception()

    def _send_part(self, item: ItemRow, session: UploadSession, number: int, data: bytes, print_: str) -> PartInfo:
        try:
            self.parts.part_sending(item.job_id, item.seq, session.upload_id, number, len(data), print_)

            def send() -> PartInfo:
                return self.dest.upload_part(session, number, data)

            part: PartInfo = with_retries(
                send,
                attempts=self.options.max_attempts,
                backoff=self.backoff,
                what=f"upload part {number}",
                sleep=self.sleep,
            )
            self.parts.part_done(item.job_id, item.seq, number, part.etag)
            m.PARTS_SENT.inc()
            m.BYTES_SENT.inc(len(data))
            return part
        finally:
            self.budget.release(len(data))

    def _complete(self, item: ItemRow, session: UploadSession, parts: list[PartInfo]) -> ObjectInfo:
        try:
            info: ObjectInfo = self._call(lambda: self.dest.complete_upload(session, parts), "complete upload")
            return info
        except ObjectNotFound:
            # An earlier call completed it and its answer was lost: check what is there.
            stat: ObjectInfo = self._call(lambda: self.dest.stat(item.dest_key), "stat destination")
            return stat

    def _abort(self, item: ItemRow, session: UploadSession) -> None:
        try:
            self.dest.abort_upload(session)
        except Exception as exc:  # the orphan sweep retries later
            # Never log the upload id: for GCS it is the session URL, which grants the upload.
            log.warning("abort of upload failed", job_id=item.job_id, key=session.key, error=str(exc))
            return
        self.parts.forget_upload(item.job_id, item.seq)

    def _forget_upload(self, item: ItemRow) -> None:
        if item.upload_id and item.part_size:
            self._abort(item, UploadSession(item.dest_key, item.upload_id, int(item.part_size)))


def _collect(job: Future[PartInfo], results: dict[int, PartInfo]) -> None:
    part = job.result()
    results[part.number] = part


def _without_upload(item: ItemRow) -> ItemRow:
    from dataclasses import replace

    return replace(item, upload_id=None, part_size=None)


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)
