"""Reading one pinned version of an object: the S3 VersionId, the GCS generation, the Azure
version id. An optional capability beside ``Storage``: a provider (or a local directory) that
keeps no versions does not implement it, and ``read_version`` says so with ``Conflict``.

``start``/``end`` select an inclusive byte range (HTTP Range semantics), ``None`` meaning the
whole object. An object or version that is gone is a ``Conflict`` too: the bytes the platform
pinned cannot be served any more, which is a state, not a bad request.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from mountsync.shared.errors import Conflict, ObjectNotFound

CHUNK = 256 * 1024


@dataclass(frozen=True)
class VersionBytes:
    """The bytes of one version (or of a range of it), streamed in ``chunks``."""

    chunks: Iterator[bytes]
    length: int
    content_type: str
    etag: str | None


@runtime_checkable
class VersionReader(Protocol):
    def read_version(self, key: str, version: str, *, start: int | None = None,
                     end: int | None = None) -> VersionBytes: ...  # fmt: skip


def read_version(storage: Any, key: str, version: str | None, *, start: int | None = None,
                 end: int | None = None) -> VersionBytes:  # fmt: skip
    """``storage``'s bytes of ``key`` at ``version``; ``Conflict`` with the reason when it cannot."""
    if not version:
        raise Conflict(f"{key!r} was pinned without a version (the bucket keeps no versions), so only "
                       "the live object can be read")  # fmt: skip
    if not isinstance(storage, VersionReader):
        raise Conflict(f"{storage.url.provider.value} storage keeps no object versions; {key!r} at "
                       f"version {version!r} cannot be served")  # fmt: skip
    try:
        return storage.read_version(key, version, start=start, end=end)
    except ObjectNotFound as exc:
        raise Conflict(f"version {version!r} of {key!r} is gone from the storage ({exc})") from exc


def http_range(start: int | None, end: int | None) -> str | None:
    """The ``Range`` header value for an inclusive range, or ``None`` for the whole object."""
    if start is None:
        return None
    return f"bytes={start}-{'' if end is None else end}"
