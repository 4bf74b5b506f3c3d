"""Checksums: what a source hashes to, and whether a destination object has the same content.

A destination object counts as equal only on positive evidence: a provider checksum (sha256,
md5, or an S3 ETag that is the MD5 or the multipart MD5-of-MD5s), or our own record of a
verified copy whose size and ETag are unchanged. Without evidence it is copied again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

from mountsync.shared.migration.plan import part_count
from mountsync.shared.storage.base import ObjectInfo
from mountsync.workers.migration.verified import Verified

MiB = 1024 * 1024
READ_BLOCK = 1 * MiB
MD5_RE = re.compile(r"^[0-9a-f]{32}$")
MULTIPART_RE = re.compile(r"^([0-9a-f]{32})-(\d+)$")
# Part sizes other tools use, tried when an S3 multipart ETag must be recomputed.
COMMON_PART_SIZES = (5 * MiB, 8 * MiB, 15 * MiB, 16 * MiB, 50 * MiB, 64 * MiB, 100 * MiB)


class ChecksumMismatch(Exception):
    """Content differs from what was expected (the reason says where)."""


@dataclass(frozen=True, slots=True)
class Digests:
    """Whole-content hashes plus S3-style multipart ETags for some part sizes."""

    size: int
    sha256: str
    md5: str | None
    composites: Mapping[int, str] = field(default_factory=dict)

    @property
    def checksum(self) -> str:
        return f"sha256:{self.sha256}"


def normalize_digest(value: str | None, length: int) -> str | None:
    """Hex digest of ``length`` hex chars from hex or base64 (GCS sends base64 MD5s)."""
    if not value:
        return None
    text = value.strip().strip('"').lower()
    if re.fullmatch(rf"[0-9a-f]{{{length}}}", text):
        return text
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) * 2 == length else None


def composite_etag(part_md5s: Iterable[str]) -> str:
    """S3's multipart ETag: MD5 of the concatenated binary part MD5s, dash, part count."""
    digests = [bytes.fromhex(m) for m in part_md5s]
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def candidate_part_sizes(size: int, parts: int, configured: Iterable[int]) -> set[int]:
    """Part sizes that split ``size`` bytes into exactly ``parts`` parts."""
    guesses = set(configured) | set(COMMON_PART_SIZES)
    if parts > 0:
        even = -(-size // parts)
        guesses |= {even, -(-even // MiB) * MiB}
    return {p for p in guesses if p > 0 and part_count(size, p) == parts}


def hash_stream(stream: BinaryIO, part_sizes: Iterable[int] = (), *, md5: bool = True) -> Digests:
    """Hash a stream in bounded memory; also the multipart ETag for each of ``part_sizes``.
    ``md5=False`` leaves out the whole-content MD5 (a destination that checks the SHA-256)."""
    sha, whole_md5 = hashlib.sha256(), (hashlib.md5() if md5 else None)
    trackers = {p: _PartTracker(p) for p in part_sizes}
    size = 0
    for block in _blocks(stream):
        size += len(block)
        sha.update(block)
        if whole_md5 is not None:
            whole_md5.update(block)
        for tracker in trackers.values():
            tracker.update(block)
    composites = {p: t.finish() for p, t in trackers.items()}
    return Digests(size, sha.hexdigest(), whole_md5.hexdigest() if whole_md5 is not None else None, composites)


def _blocks(stream: BinaryIO) -> Iterator[memoryview]:
    """The stream's content, read into one reused buffer: a fresh 1 MiB block per read is an
    mmap and its page faults each time (the worker serves allocations of 1 MiB and more from
    mmap), which cost more CPU than hashing the block."""
    buffer = memoryview(bytearray(READ_BLOCK))
    readinto = getattr(stream, "readinto", None)
    while True:
        if readinto is None:
            data = stream.read(READ_BLOCK)
            if not data:
                return
            yield memoryview(data)
            continue
        count = readinto(buffer)
        if not count:
            return
        yield buffer[:count]


class _PartTracker:
    def __init__(self, part_size: int) -> None:
        self.part_size = part_size
        self.current = hashlib.md5()
        self.filled = 0
        self.done: list[str] = []

    def update(self, block: bytes | memoryview) -> None:
        view = memoryview(block)
        while view:
            take = min(len(view), self.part_size - self.filled)
            self.current.update(view[:take])
            self.filled += take
            view = view[take:]
            if self.filled == self.part_size:
                self.done.append(self.current.hexdigest())
                self.current, self.filled = hashlib.md5(), 0

    def finish(self) -> str:
        parts = [*self.done, self.current.hexdigest()] if self.filled or not self.done else self.done
        return composite_etag(parts)


def multipart_parts(info: ObjectInfo) -> int | None:
    match = MULTIPART_RE.match((info.etag or "").lower())
    return int(match.group(2)) if match else None


def provider_sums(info: ObjectInfo) -> dict[str, str]:
    """Content hashes the provider reports for an object (hex)."""
    sums = explicit_sums(info)
    etag = (info.etag or "").lower()
    if "md5" not in sums and MD5_RE.match(etag):
        sums["md5"] = etag
    return sums


def same_content(info: ObjectInfo, digests: Digests, record: Verified | None = None) -> bool | None:
    """True/False when the evidence decides; None when there is none (treat as different)."""
    if info.size != digests.size:
        return False
    sums = provider_sums(info)
    if "sha256" in sums:
        return sums["sha256"] == digests.sha256
    if "md5" in sums and digests.md5:
        return sums["md5"] == digests.md5
    parts = multipart_parts(info)
    if parts is not None:
        for composite in digests.composites.values():
            if composite.endswith(f"-{parts}") and composite == (info.etag or "").lower():
                return True
    if record is not None and record.etag == info.etag and record.size == info.size:
        return record.sha256 == digests.sha256
    return False if parts is not None and digests.composites else None


def check_upload(info: ObjectInfo, digests: Digests, part_etags: list[str] | None) -> str:
    """Verify a finished upload against what was read; returns how it was verified.

    Size must match. A checksum the provider reports explicitly (sha256, md5) must match. An
    ETag is only evidence when it matches: objects encrypted with SSE-KMS/SSE-C carry ETags that
    are not MD5s, and S3 already checked every request body against its Content-MD5.
    """
    if info.size != digests.size:
        raise ChecksumMismatch(f"destination has {info.size} bytes after upload, the source had {digests.size}")
    explicit = explicit_sums(info)
    for name in ("sha256", "md5"):
        ours = getattr(digests, name)
        if name in explicit and ours:
            if explicit[name] != ours:
                raise ChecksumMismatch(f"destination {name} {explicit[name]} differs from the source's {ours}")
            return name
    etag = (info.etag or "").lower()
    if digests.md5 and etag == digests.md5:
        return "md5-etag"
    parts_md5 = bool(part_etags) and all(MD5_RE.match(e) for e in part_etags or ())
    if parts_md5 and MULTIPART_RE.match(etag) and composite_etag(part_etags or []) == etag:
        return "multipart-etag"
    return "size"


def explicit_sums(info: ObjectInfo) -> dict[str, str]:
    """Checksums the provider reports as such (not derived from the ETag)."""
    sums: dict[str, str] = {}
    lowered = {k.lower().replace("-", ""): v for k, v in info.checksums.items()}
    for name, length in (("sha256", 64), ("md5", 32)):
        value = normalize_digest(lowered.get(name), length)
        if value:
            sums[name] = value
    return sums
