"""What a check or a pin needs from the bucket itself: manifest files and object versions.

The catalog usually knows each object's version already (GCS generation, S3 versionId from
real S3 events). When it does not (listings without versions, stand-ins that omit them), a pin
asks the bucket with a ``stat`` per frame so the pinned manifest can name the exact versions.
One stat without a version means the bucket is not versioned and the rest are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

from mountsync.shared.catalog.mounts import Mount
from mountsync.shared.errors import ObjectNotFound
from mountsync.shared.events import Provider
from mountsync.shared.storage import Storage, open_storage
from mountsync.workers.alignment.classify import Frame

MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_VERSION_LOOKUPS = 20_000


class MountIO(Protocol):
    def read_text(self, key: str) -> str:
        """The object's content as UTF-8 text; '' when it does not exist."""
        ...

    def fill_versions(self, frames: Sequence[Frame]) -> list[Frame]:
        """``frames`` with versions looked up where the catalog had none (versioned buckets)."""
        ...


class StorageIO:
    """``MountIO`` over the mount's storage adapter, opened on first use."""

    def __init__(self, mount: Mount, opener: Callable[..., Storage] = open_storage) -> None:
        self._mount = mount
        self._opener = opener
        self._storage: Storage | None = None
        self._versioned: bool | None = None

    def _store(self) -> Storage:
        if self._storage is None:
            self._storage = self._opener(self._mount.storage_url, self._mount.options)
        return self._storage

    def read_text(self, key: str) -> str:
        try:
            with self._store().open(key) as stream:
                data = stream.read(MAX_MANIFEST_BYTES + 1)
        except ObjectNotFound:
            return ""
        return data[:MAX_MANIFEST_BYTES].decode("utf-8", errors="replace")

    def fill_versions(self, frames: Sequence[Frame]) -> list[Frame]:
        if self._mount.provider is Provider.FS or self._versioned is False:
            return list(frames)
        out: list[Frame] = []
        lookups = 0
        for frame in frames:
            if frame.version is not None or lookups >= MAX_VERSION_LOOKUPS or self._unversioned():
                out.append(frame)
                continue
            lookups += 1
            out.append(self._with_version(frame))
        return out

    def _unversioned(self) -> bool:
        return self._versioned is False

    def _with_version(self, frame: Frame) -> Frame:
        try:
            info = self._store().stat(frame.key)
        except ObjectNotFound:
            return frame  # gone since the catalog saw it; the next check will say so
        if not info.version or info.version == "null":
            self._versioned = False
            return frame
        self._versioned = True
        if frame.etag is not None and info.etag is not None and info.etag != frame.etag:
            return frame  # overwritten since: do not pin a version of other content
        return replace(frame, version=info.version)


class NoIO:
    """For tests and for checks that must not touch the bucket."""

    def read_text(self, key: str) -> str:
        return ""

    def fill_versions(self, frames: Sequence[Frame]) -> list[Frame]:
        return list(frames)
