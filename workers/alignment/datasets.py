"""Which files of a folder make datasets (DIVE's rules), and which files belong to them.

- A folder whose direct children include images is one image-sequence dataset; its frames
  are those images (ordered by a ``sortorder`` policy elsewhere).
- Every video file is its own video dataset, named after the video's stem.
- ``stem.csv`` / ``stem.json`` are annotations and ``stem_metadata.*`` are sidecars; they link
  to the video with that stem, else to the folder's image sequence. With no media yet they
  are kept as orphans and link as soon as the media arrives (the description is recomputed
  from the folder's current listing, so arrival order does not matter).
- Hidden names (starting with ``.``, e.g. macOS ``._img.jpg`` resource forks) are never media.

Extensions compare case-insensitively; stems compare exactly (keys are case-sensitive).
Pure: no I/O, no clock, no environment (settings arrive as a mapping).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mountsync.shared.errors import ConfigError

IMAGE_TYPES = frozenset({"png", "jpg", "jpeg"})
VIDEO_TYPES = frozenset({"mp4", "webm", "avi", "mov", "mkv", "m4v", "mpg", "mpeg", "mp2", "wmv", "flv", "ogv", "3gp"})
ANNOTATION_TYPES = frozenset({"csv", "json"})
SIDECAR_SUFFIX = "_metadata"
DEFAULT_MANIFEST_NAME = "frames.txt"

IMAGE_SEQUENCE = "image-sequence"
VIDEO = "video"


class Role(enum.StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    ANNOTATION = "annotation"
    SIDECAR = "sidecar"
    MANIFEST = "manifest"
    OTHER = "other"


_IMAGE, _VIDEO, _ANNOTATION, _SIDECAR, _MANIFEST, _OTHER = (
    Role.IMAGE, Role.VIDEO, Role.ANNOTATION, Role.SIDECAR, Role.MANIFEST, Role.OTHER)  # fmt: skip


def split_name(key: str) -> tuple[str, str, str]:
    """(folder, stem, lower-case extension) of a key; folder is '' at the root."""
    folder, _, name = key.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return folder, name, ""
    return folder, stem, ext.lower()


def basename(key: str) -> str:
    return key.rpartition("/")[2]


def _parse_types(raw: str | None, default: frozenset[str], var: str) -> frozenset[str]:
    if raw is None or not raw.strip():
        return default
    types = frozenset(t.strip().lower().lstrip(".") for t in raw.split(",") if t.strip())
    if not types or any("/" in t or "." in t for t in types):
        raise ConfigError(f"{var}={raw!r}: give a comma-separated list of extensions, like png,jpg")
    return types


@dataclass(frozen=True)
class MediaTypes:
    """File-type rules; images default to DIVE's served types (png, jpg, jpeg)."""

    images: frozenset[str] = IMAGE_TYPES
    videos: frozenset[str] = VIDEO_TYPES
    manifest_name: str = DEFAULT_MANIFEST_NAME

    @classmethod
    def from_extra(cls, extra: Mapping[str, str]) -> MediaTypes:
        """From settings.extra: MOUNTSYNC_IMAGE_TYPES, _VIDEO_TYPES, _FRAME_MANIFEST."""
        images = _parse_types(extra.get("MOUNTSYNC_IMAGE_TYPES"), IMAGE_TYPES, "MOUNTSYNC_IMAGE_TYPES")
        videos = _parse_types(extra.get("MOUNTSYNC_VIDEO_TYPES"), VIDEO_TYPES, "MOUNTSYNC_VIDEO_TYPES")
        if images & videos:
            both = ", ".join(sorted(images & videos))
            raise ConfigError(f"{both} listed both as image and as video types")
        manifest = extra.get("MOUNTSYNC_FRAME_MANIFEST") or DEFAULT_MANIFEST_NAME
        if "/" in manifest:
            raise ConfigError("MOUNTSYNC_FRAME_MANIFEST is a file name inside the folder, not a path")
        return cls(images, videos, manifest)

    def role(self, key: str) -> Role:
        # Runs for every applied change (the post-apply hook): the name is cut once, the extension
        # found with one rfind, and the roles read from module constants (an enum member looked up
        # on its class costs ~0.2 us): 0.77 us a key instead of 1.38.
        name = key[key.rfind("/") + 1 :]
        if not name or name[0] == ".":
            return _OTHER
        if name == self.manifest_name:
            return _MANIFEST
        dot = name.rfind(".")  # never 0: the name does not start with "."
        ext = name[dot + 1 :].lower() if dot > 0 else ""
        if ext in self.images:
            return _IMAGE
        if ext in self.videos:
            return _VIDEO
        if ext and name[:dot].endswith(SIDECAR_SUFFIX):
            return _SIDECAR
        if ext in ANNOTATION_TYPES:
            return _ANNOTATION
        return _OTHER

    def is_relevant(self, key: str) -> bool:
        """Whether a change to ``key`` can alter a dataset (media, annotations, manifests)."""
        return self.role(key) is not Role.OTHER


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset found in a folder. ``path`` identifies it: the folder, or the video key."""

    path: str
    folder: str
    type: str
    name: str
    media: tuple[str, ...]
    annotations: tuple[str, ...] = ()
    sidecars: tuple[str, ...] = ()


@dataclass(frozen=True)
class FolderContents:
    folder: str
    datasets: tuple[DatasetSpec, ...]
    orphans: tuple[str, ...] = ()
    manifest: str | None = None
    others: int = field(default=0)


def _link_stem(key: str, role: Role) -> str:
    _, stem, _ = split_name(key)
    if role is Role.SIDECAR:
        return stem[: -len(SIDECAR_SUFFIX)]
    return stem


def describe_folder(folder: str, keys: Iterable[str], types: MediaTypes) -> FolderContents:
    """The datasets made by the direct children ``keys`` of ``folder``."""
    images: list[str] = []
    videos: list[str] = []
    attached: list[tuple[str, Role]] = []
    manifest: str | None = None
    others = 0
    for key in keys:
        role = types.role(key)
        if role is Role.IMAGE:
            images.append(key)
        elif role is Role.VIDEO:
            videos.append(key)
        elif role in (Role.ANNOTATION, Role.SIDECAR):
            attached.append((key, role))
        elif role is Role.MANIFEST:
            manifest = key
        else:
            others += 1
    video_by_stem = {split_name(v)[1]: v for v in sorted(videos)}
    linked: dict[str, list[tuple[str, Role]]] = {}
    orphans: list[str] = []
    for key, role in sorted(attached):
        target = video_by_stem.get(_link_stem(key, role))
        if target is None and images:
            target = folder
        if target is None:
            orphans.append(key)
        else:
            linked.setdefault(target, []).append((key, role))
    datasets = [_spec(v, folder, VIDEO, (v,), linked.get(v, [])) for v in sorted(videos)]
    if images:
        datasets.insert(0, _spec(folder, folder, IMAGE_SEQUENCE, tuple(images), linked.get(folder, [])))
    return FolderContents(folder, tuple(datasets), tuple(orphans), manifest, others)


def _spec(path: str, folder: str, kind: str, media: tuple[str, ...], files: list[tuple[str, Role]]) -> DatasetSpec:
    name = split_name(path)[1] if kind == VIDEO else basename(folder) or "/"
    return DatasetSpec(
        path=path,
        folder=folder,
        type=kind,
        name=name,
        media=media,
        annotations=tuple(k for k, r in files if r is Role.ANNOTATION),
        sidecars=tuple(k for k, r in files if r is Role.SIDECAR),
    )
