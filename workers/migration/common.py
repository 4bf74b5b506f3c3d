"""Types and small helpers shared by the transfer and the chunk service: outcomes, the stop
signal, links, and reading a source exactly."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from mountsync.shared.errors import BadInput, CredentialsRejected, ObjectNotFound
from mountsync.shared.events import Provider
from mountsync.shared.storage.base import Storage
from mountsync.workers.migration.items import ItemRow
from mountsync.workers.migration.verified import Remembered
from mountsync.workers.migration.verify import Digests

PERMANENT = (ObjectNotFound, BadInput, CredentialsRejected)


class Stop(Exception):
    """The transfer must stop between parts: ``reason`` is 'cancelled' or 'deadline'."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SourceChanged(Exception):
    """The source's bytes differ from what was stat'ed or uploaded before: not retried where it is
    raised (the same call with the old size cannot succeed); ``Transfer.run`` starts the item over."""


class Permanent(Exception):
    """An item that can never be copied as submitted (the message is the reason)."""


class Control(Protocol):
    """What the running chunk tells a transfer: ``check(item)`` raises ``Stop`` when the job
    was cancelled or the task's time budget is spent."""

    def check(self, item: ItemRow) -> None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """``state`` is done, skipped, failed, cancelled or released (given back unfinished)."""

    state: str
    reason: str | None = None
    checksum: str | None = None
    etag: str | None = None
    size: int | None = None
    verified_by: str | None = None
    sent: int = 0  # bytes sent outside recorded parts (single puts)
    verified: Remembered | None = None  # (location, key, digests) to remember


def object_link(url: Any, key: str) -> str:
    """The remote URL of an object (``s3://bucket/key``, ``file:///root/key``)."""
    if url.provider is Provider.FS:
        return f"file://{url.bucket.rstrip('/')}/{key}"
    scheme = {"s3": "s3", "gcs": "gs", "azure": "az"}[url.provider.value]
    return f"{scheme}://{url.bucket}/{key}"


def location_of(url: Any) -> str:
    """Bucket-level identity of a storage (for the verified-copy record)."""
    if url.provider is Provider.FS:
        return f"file://{url.bucket.rstrip('/')}"
    return f"{url.provider.value}://{url.bucket}"


def fingerprint(data: bytes) -> str:
    """A cheap content fingerprint of a part, to notice a source that changed before a resume
    (CRC-32 runs at GB/s; transfer integrity itself is the provider's Content-MD5 check)."""
    return f"crc32:{zlib.crc32(data):08x}:{len(data)}"


def check_wanted(item: ItemRow, digests: Digests) -> None:
    if item.want_sha256 and item.want_sha256 != digests.sha256:
        raise Permanent(f"source sha256 {digests.sha256} differs from the submitted {item.want_sha256}")
    if item.want_md5 and item.want_md5 != digests.md5:
        raise Permanent(f"source md5 {digests.md5} differs from the submitted {item.want_md5}")


def read_all(source: Storage, key: str, size: int) -> bytes:
    with source.open(key) as stream:
        data = read_exact(stream, size)
        if stream.read(1):
            raise SourceChanged(f"{key!r} grew while it was read")
    return data


def read_exact(stream: BinaryIO, length: int) -> bytes:
    chunks: list[bytes] = []
    missing = length
    while missing > 0:
        block = stream.read(missing)
        if not block:
            raise SourceChanged(f"the source ended {missing} bytes early")
        chunks.append(block)
        missing -= len(block)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
