"""The writer side of the GCS adapter: the storage protocol's parts over one resumable session.

A GCS resumable upload is one byte stream, not a set of parts: the session URL (kept as the
``upload_id``) accepts bytes strictly in order, in chunks that are multiples of 256 KiB except
the last. Part ``n`` (1-based) is the bytes ``[(n-1)*part_size, n*part_size)``; a part shorter
than ``part_size`` is the last one and finalizes the object; when the size is an exact multiple,
``complete_upload`` finalizes with an empty request. ``list_parts`` asks the server how many bytes
it committed and reports the whole parts among them, so a resumed upload sends only the rest.

The session URL is a bearer credential for the upload: it is never logged or put in messages.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from mountsync.shared.errors import BadInput, ObjectNotFound, RetryableError, StorageUnavailable
from mountsync.shared.storage.base import PartInfo, UploadSession

log = logging.getLogger("mountsync.storage.gcs")

CHUNK_ALIGN = 256 * 1024  # GCS: every chunk but the last is a multiple of this
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
TIMEOUT_S = 120.0
# Answers that mean "the session no longer exists" (expired after a week, cancelled, finished).
GONE = {404, 410, 499}


class ResumableSessions:
    """Talks to resumable session URLs through the SDK's (authorized) HTTP session."""

    def __init__(self, http: Any, where: Callable[[str], str]) -> None:
        self._http = http
        self._where = where

    # -- validation ---------------------------------------------------------------------------
    @staticmethod
    def check_part_size(part_size: int) -> None:
        if part_size <= 0 or part_size % CHUNK_ALIGN or part_size > MAX_PART_SIZE:
            raise BadInput(f"GCS part size must be a positive multiple of 256 KiB up to 5 GiB, got {part_size}")

    def check_parts(self, session: UploadSession, parts: list[PartInfo]) -> int:
        """Total size of ``parts`` after checking they are parts 1..n, all full but the last."""
        ordered = sorted(parts, key=lambda p: p.number)
        if not ordered or [p.number for p in ordered] != list(range(1, len(ordered) + 1)):
            raise BadInput(f"{self._where(session.key)}: parts must be 1..n without gaps")
        for part in ordered[:-1]:
            if part.size != session.part_size:
                raise BadInput(
                    f"{self._where(session.key)}: part {part.number} has {part.size} bytes; "
                    f"every part but the last must have {session.part_size}"
                )
        return sum(p.size for p in ordered)

    # -- protocol -----------------------------------------------------------------------------
    def upload_part(self, session: UploadSession, number: int, data: bytes) -> PartInfo:
        if number < 1:
            raise BadInput(f"part numbers start at 1, got {number}")
        if len(data) > session.part_size:
            raise BadInput(f"part {number} has {len(data)} bytes, more than the part size {session.part_size}")
        start = (number - 1) * session.part_size
        end = start + len(data)
        final = len(data) < session.part_size
        sent_from = start
        for _attempt in range(4):
            response = self._put_bytes(session, data[sent_from - start :], sent_from, end, final)
            committed = self._committed_after(session, response, end, final)
            if committed >= end:
                return part_info(number, start, len(data))
            if committed < start:
                raise RetryableError(
                    f"{self._where(session.key)}: part {number} arrived before the bytes in front "
                    f"of it (server has {committed}); GCS sessions take parts in order"
                )
            sent_from = committed  # the server kept only part of the chunk: send the rest
        raise StorageUnavailable(f"{self._where(session.key)}: part {number} was not committed")

    def list_parts(self, session: UploadSession) -> list[PartInfo]:
        response = self._status(session)
        if response.status_code in (200, 201):
            size = int(_json(response).get("size") or 0)
            full, rest = divmod(size, session.part_size)
            parts = [part_info(n, (n - 1) * session.part_size, session.part_size)
                     for n in range(1, full + 1)]  # fmt: skip
            if rest:
                parts.append(part_info(full + 1, full * session.part_size, rest))
            return parts
        committed = _committed_range(response)
        full = committed // session.part_size
        return [part_info(n, (n - 1) * session.part_size, session.part_size)
                for n in range(1, full + 1)]  # fmt: skip

    def finalize(self, session: UploadSession, parts: list[PartInfo], total: int) -> dict[str, Any] | None:
        """Finish the upload; the object resource, or None when a final part already did."""
        if parts and max(parts, key=lambda p: p.number).size < session.part_size:
            return None
        response = self._request(session, headers={"Content-Range": f"bytes */{total}", "Content-Length": "0"})
        if response.status_code in (200, 201):
            return _json(response)
        if response.status_code in GONE:
            return None  # finished before a crash hid the answer; the caller stats and verifies
        raise self._error(session, response, "completing the upload")

    def abort(self, session: UploadSession) -> None:
        try:
            response = self._http.request("DELETE", session.upload_id, timeout=TIMEOUT_S)
        except Exception as exc:
            raise StorageUnavailable(
                f"{self._where(session.key)}: cancelling the upload: {type(exc).__name__}"
            ) from exc
        if response.status_code in GONE or response.status_code < 300:
            return
        if response.status_code == 501:  # gcp-storage-emulator cannot cancel; sessions expire
            log.warning("server cannot cancel upload sessions; it expires on its own",
                        extra={"key": session.key})  # fmt: skip
            return
        raise self._error(session, response, "cancelling the upload")

    # -- HTTP ---------------------------------------------------------------------------------
    def _put_bytes(self, session: UploadSession, data: bytes, start: int, end: int, final: bool) -> Any:
        total = str(end) if final else "*"
        byte_range = f"bytes {start}-{end - 1}/{total}" if end > start else f"bytes */{total}"
        return self._request(session, data=data, headers={"Content-Range": byte_range})

    def _status(self, session: UploadSession) -> Any:
        response = self._request(session, headers={"Content-Range": "bytes */*", "Content-Length": "0"})
        if response.status_code in GONE:
            raise ObjectNotFound(f"{self._where(session.key)}: the upload session expired or was cancelled")
        if response.status_code not in (200, 201, 308):
            raise self._error(session, response, "asking for the upload status")
        return response

    def _committed_after(self, session: UploadSession, response: Any, end: int, final: bool) -> int:
        """How many bytes the server holds after a chunk was sent."""
        code = response.status_code
        if code in (200, 201):
            size = int(_json(response).get("size") or 0)
            if not final or size != end:
                raise StorageUnavailable(
                    f"{self._where(session.key)}: upload finished with {size} bytes, expected {end}"
                )
            return end
        if code == 308:
            return _committed_range(response)
        if code in GONE:
            raise ObjectNotFound(f"{self._where(session.key)}: the upload session expired or was cancelled")
        if code == 429 or code >= 500:
            raise self._error(session, response, "sending a part")
        # Refused (a retry of bytes it already has, or a gap): ask what it holds and go on.
        status = self._status(session)
        if status.status_code in (200, 201):
            return end if final else 0
        return _committed_range(status)

    def _request(self, session: UploadSession, **kwargs: Any) -> Any:
        try:
            return self._http.request("PUT", session.upload_id, timeout=TIMEOUT_S, **kwargs)
        except Exception as exc:  # connection reset, timeout: the caller retries the part
            raise StorageUnavailable(
                f"{self._where(session.key)}: upload request failed: {type(exc).__name__}"
            ) from exc

    def _error(self, session: UploadSession, response: Any, doing: str) -> Exception:
        detail = response.text[:200].replace("\n", " ") if response.text else ""
        message = f"{self._where(session.key)}: {doing}: HTTP {response.status_code} {detail}"
        if response.status_code == 429 or response.status_code >= 500:
            return StorageUnavailable(message)
        return BadInput(message)


def part_info(number: int, start: int, size: int) -> PartInfo:
    """GCS has no per-part etag; the byte range stands in (same from upload and listing)."""
    return PartInfo(number=number, size=size, etag=f"{start}-{start + size - 1}")


def _committed_range(response: Any) -> int:
    """Bytes committed per a 308's ``Range: bytes=0-N`` header (none: nothing yet).

    Only whole 256 KiB blocks count: GCS commits in such blocks, and gcp-storage-emulator answers
    ``bytes=0-0`` for an empty session.
    """
    header = response.headers.get("Range") or response.headers.get("range")
    if not header or "-" not in header:
        return 0
    try:
        last = int(header.rsplit("-", 1)[1])
    except ValueError:
        return 0
    return ((last + 1) // CHUNK_ALIGN) * CHUNK_ALIGN


def _json(response: Any) -> dict[str, Any]:
    try:
        data = json.loads(response.content or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
