"""A file larger than ``multipart_threshold``, sent through the destination's resumable writer.

At most ``part_concurrency`` parts of a file are in flight (1 where parts must go in order:
GCS), and every part buffer of the process comes out of one shared ``ByteBudget``, so memory
grows with neither the file size nor the number of files. Every part is recorded in PostgreSQL
(``PartStore``) before it is sent and when it is confirmed; a resumed item re-reads and re-hashes
the source but sends only parts both recorded as done and listed by the provider, and a part
whose source bytes changed since it was sent restarts the item (``SourceChanged``).

Used by ``transfer.Transfer`` for the items above its single-request limits.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

import structlog

from mountsync.shared.errors import ObjectNotFound
from mountsync.shared.events import Provider
from mountsync.shared.migration import metrics as m
from mountsync.shared.migration.plan import part_count, part_size_for
from mountsync.shared.migration.spec import TransferOptions
from mountsync.shared.storage.base import ObjectInfo, PartInfo, Storage, UploadSession
from mountsync.workers.migration.common import (
    Control,
    Permanent,
    SourceChanged,
    Stop,
    check_wanted,
    fingerprint,
    read_exact,
)
from mountsync.workers.migration.items import ItemRow
from mountsync.workers.migration.parts import PartStore, confirmed_parts
from mountsync.workers.migration.retry import ByteBudget
from mountsync.workers.migration.verify import Digests

log = structlog.get_logger("mountsync.migration")


class MultipartUploads:
    """Sends items part by part from ``source`` to ``dest``, resuming recorded uploads."""

    def __init__(
        self,
        source: Storage,
        dest: Storage,
        options: TransferOptions,
        *,
        parts: PartStore,
        budget: ByteBudget,
        part_pool: ThreadPoolExecutor,
        control: Control,
        call: Callable[[Callable[[], Any], str], Any],
    ) -> None:
        self.source, self.dest, self.options = source, dest, options
        self.parts, self.budget, self.part_pool, self.control = parts, budget, part_pool, control
        self._call = call  # the transfer's retrying call: (function, what) -> its result
        # S3 multipart objects carry an MD5 of the part MD5s, checked from the parts' ETags.
        self.multipart_etags = dest.url.provider is Provider.S3
        # Resumable uploads that must be sent in order (GCS) cannot take parallel parts.
        self.part_concurrency = 1 if getattr(dest, "sequential_parts", False) else options.part_concurrency

    def upload(self, item: ItemRow, src_key: str, size: int) -> tuple[Digests, ObjectInfo, list[str]]:
        """Send the item; its digests, the destination's object and the parts' ETags, in order."""
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
        return digests, info, [p.etag for p in parts]

    def forget(self, item: ItemRow) -> None:
        """Abort the item's recorded upload, if any, and forget its parts."""
        if item.upload_id and item.part_size:
            self._abort(item, UploadSession(item.dest_key, item.upload_id, int(item.part_size)))

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
        # A whole-object MD5 only where the provider reports one.
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

            part: PartInfo = self._call(send, f"upload part {number}")
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


def _collect(job: Future[PartInfo], results: dict[int, PartInfo]) -> None:
    part = job.result()
    results[part.number] = part
