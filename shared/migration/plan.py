"""Pure planning: safe destination keys and chunks of at most 1,000 items (and a byte budget).

A destination key is ``destination prefix + relative path``. The relative path must be a plain
'/'-separated path: not absolute, no empty, '.' or '..' segments, no backslashes, no control
characters, so a key can never escape the destination prefix or name a different file than the
one submitted. A leading ``./`` (as ``find`` prints) is the only thing that is rewritten.

Callers: ``spec`` (inline item paths), ``service.plan`` (``plan_batches`` over the items or the
listing), ``ItemStore.add_items`` (``ChunkCutter`` continues the last chunk), and the transfer
(part sizes, the common folder of a chunk's keys).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from mountsync.shared.errors import BadInput

MAX_KEY_BYTES = 1024  # S3, GCS and Azure all cap object names near 1 KiB
CHUNK_SIZE = 1000  # items per chunk, at most (the limit)
CHUNK_BYTES = 256 * 1024 * 1024  # bytes per chunk by default (a larger file is a chunk alone)
_DRIVE = re.compile(r"^[A-Za-z]:")

T = TypeVar("T")


def safe_relative_path(path: object) -> str:
    """``path`` if it is a safe relative path (after dropping leading './'), else ``BadInput``."""
    if not isinstance(path, str) or not path:
        raise BadInput("path must be a non-empty string")
    text = path
    while text.startswith("./"):
        text = text[2:]
    if text.startswith("/") or _DRIVE.match(text):
        raise BadInput(f"path {path!r} is absolute; give it relative to the source")
    if "\\" in text:
        raise BadInput(f"path {path!r} contains a backslash; separate folders with '/'")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise BadInput(f"path {path!r} contains a control character")
    segments = text.split("/")
    if any(seg in ("", ".", "..") for seg in segments):
        raise BadInput(f"path {path!r} has an empty, '.' or '..' segment")
    return text


def destination_key(prefix: str, relative: str) -> str:
    """The destination key for a relative path; ``BadInput`` if unsafe or too long."""
    rel = safe_relative_path(relative)
    key = f"{prefix}{rel}"
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise BadInput(f"destination key for {relative!r} is longer than {MAX_KEY_BYTES} bytes")
    return key


def relative_to_prefix(prefix: str, key: str) -> str:
    """The part of a listed source ``key`` below the source ``prefix``."""
    if not key.startswith(prefix):
        raise BadInput(f"listed key {key!r} is not under the source prefix {prefix!r}")
    return key[len(prefix) :]


@dataclass(frozen=True, slots=True)
class Entry:
    """An item before planning: the source path (relative to the source location)."""

    entity_id: str
    path: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None


@dataclass(frozen=True, slots=True)
class PlannedItem:
    """An entry with its destination key, or ``dest_key=None`` and the ``reason`` it cannot be
    copied (unsafe path, collision); such items are recorded as failed."""

    entity_id: str
    path: str
    dest_key: str | None
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    reason: str | None = None


def plan_item(entry: Entry, dest_prefix: str) -> PlannedItem:
    """Place one entry; an unsafe path gives an item with ``dest_key=None`` and a reason."""
    try:
        key: str | None = destination_key(dest_prefix, entry.path)
        reason = None
    except BadInput as exc:
        key, reason = None, f"unsafe path: {exc}"
    return PlannedItem(entry.entity_id, entry.path, key, entry.size, entry.sha256, entry.md5, reason)


def plan_batches(
    entries: Iterable[Entry], dest_prefix: str, batch_size: int = CHUNK_SIZE
) -> Iterator[list[PlannedItem]]:
    """Stream planned items in batches of at most ``batch_size`` (memory: one batch).

    Collisions within a batch are flagged here; across batches the store's unique index on
    (job, destination key) catches them, so memory does not grow with the job.
    """
    if not 1 <= batch_size <= CHUNK_SIZE:
        raise BadInput(f"batch size must be 1..{CHUNK_SIZE}")
    for batch in batched(entries, batch_size):
        seen: dict[str, str] = {}
        planned: list[PlannedItem] = []
        for entry in batch:
            item = plan_item(entry, dest_prefix)
            if item.dest_key is not None:
                other = seen.setdefault(item.dest_key, item.entity_id)
                if other != item.entity_id:
                    item = collided(item, other)
            planned.append(item)
        yield planned


def collided(item: PlannedItem, other_entity: str) -> PlannedItem:
    reason = f"destination key {item.dest_key!r} collides with entity {other_entity!r}"
    return PlannedItem(item.entity_id, item.path, None, item.size, item.sha256, item.md5, reason)


@dataclass
class ChunkCutter:
    """Numbers chunks in planning order: a chunk closes at ``max_items`` items or when the next
    item would take it past ``max_bytes`` (an item larger than that is a chunk of its own;
    an unknown size counts 0). Start it from the last chunk of a job to continue planning."""

    max_items: int = CHUNK_SIZE
    max_bytes: int = CHUNK_BYTES
    chunk: int = 0
    items: int = 0
    bytes: int = 0

    def place(self, size: int | None) -> int:
        size = size or 0
        if self.items and (self.items >= self.max_items or self.bytes + size > self.max_bytes):
            self.chunk, self.items, self.bytes = self.chunk + 1, 0, 0
        self.items += 1
        self.bytes += size
        return self.chunk


def batched(values: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for value in values:
        batch.append(value)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def common_folder(keys: Iterable[str]) -> str:
    """The longest folder prefix (ending in '/') shared by all ``keys``; '' if none."""
    keys = list(keys)
    if not keys:
        return ""
    low, high = min(keys), max(keys)
    size = 0
    while size < min(len(low), len(high)) and low[size] == high[size]:
        size += 1
    return low[:size].rpartition("/")[0] + "/" if "/" in low[:size] else ""


def part_size_for(size: int, part_size: int, max_parts: int = 10_000) -> int:
    """The part size to use for a file of ``size`` bytes: the configured one, grown in whole
    MiB when the file would otherwise need more than ``max_parts`` parts (S3's limit)."""
    if size <= part_size * max_parts:
        return part_size
    mib = 1024 * 1024
    needed = -(-size // max_parts)
    return -(-needed // mib) * mib


def part_count(size: int, part_size: int) -> int:
    return max(1, -(-size // part_size))
