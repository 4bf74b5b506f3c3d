"""What a batch of change-log entries means for a Girder folder tree: pure functions, no I/O.

The connector (``girder_connector.py``) carries these plans out. Rules (issue 19):

- a created object becomes one item at the same relative path, folders created as needed;
- a deleted object's item goes; folders it leaves empty go too, unless the folder is a dataset
  with annotations (then it is kept and marked, see ``emptied_dataset_meta``);
- an overwritten object's file follows (size; etag and version in the item's metadata) and the
  item is marked changed;
- a dataset folder carries DIVE's markers, and a quarantined one the alert, in its metadata.

The key -> item map makes every rule idempotent: an entry the map already reflects plans nothing.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mountsync.workers.connectors.girder_client import DIVE_IMAGE_SEQUENCE, DIVE_VIDEO, dive_dataset_markers

# Our part of Girder metadata lives under one key, so DIVE's and the user's keys are left alone.
META = "mountsync"


class Change(Protocol):
    """The change-log fields the connector reads (``shared.catalog.change_log.ChangeEntry``)."""

    @property
    def cursor(self) -> int: ...
    @property
    def key(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def size(self) -> int | None: ...
    @property
    def etag(self) -> str | None: ...
    @property
    def version(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Mapped:
    """One row of the key -> item map: the item, its folder and the object state it reflects."""

    key: str
    item_id: str
    folder_id: str
    etag: str | None
    version: str | None


@dataclass
class Plan:
    """The Girder calls one batch needs, grouped by relative folder path ("" is the root)."""

    create: dict[str, list[Change]] = field(default_factory=lambda: defaultdict(list))
    refresh: list[tuple[Change, Mapped]] = field(default_factory=list)
    delete: list[tuple[Change, Mapped | None]] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.create or self.refresh or self.delete)


def relative_key(key: str, root: str) -> str | None:
    """``key`` below the mirrored root (mount prefix + connector prefix), or None when outside it."""
    if root and not key.startswith(root):
        return None
    rel = key[len(root) :].lstrip("/")
    return rel or None


def mirror_root(mount_prefix: str, connector_prefix: str) -> str:
    """The bucket prefix whose contents the Girder folder mirrors (``--prefix`` is below the mount's)."""
    parts = [p.strip("/") for p in (mount_prefix, connector_prefix) if p.strip("/")]
    return "/".join(parts) + "/" if parts else ""


def split_rel(rel: str) -> tuple[str, str]:
    """``a/b/c.png`` -> (``a/b``, ``c.png``)."""
    folder, _, name = rel.rpartition("/")
    return folder, name


def last_per_key(entries: Iterable[Change]) -> dict[str, Change]:
    """The newest entry of each key (cursor order): the batch's net effect on that key."""
    last: dict[str, Change] = {}
    for entry in sorted(entries, key=lambda e: e.cursor):
        last[entry.key] = entry
    return last


def plan_batch(entries: Iterable[Change], mapped: Mapping[str, Mapped], root: str) -> Plan:
    """Net effect of ``entries`` on the tree under ``root``, given what the map already holds.

    A delete of a key the map does not know is still planned (with ``None``): a run killed after
    Girder imported the object but before the map was written leaves an item only Girder knows.
    """
    plan = Plan()
    for key, entry in last_per_key(entries).items():
        rel = relative_key(key, root)
        if rel is None or entry.kind == "metadata":
            continue
        row = mapped.get(key)
        if entry.kind == "deleted":
            plan.delete.append((entry, row))
        elif row is None:
            plan.create[split_rel(rel)[0]].append(entry)
        elif (entry.etag, entry.version) != (row.etag, row.version):
            plan.refresh.append((entry, row))
    return plan


def ancestors(folder: str) -> list[str]:
    """``a/b/c`` -> [``a/b/c``, ``a/b``, ``a``]: the folders a delete may leave empty, deepest first."""
    out: list[str] = []
    while folder:
        out.append(folder)
        folder = posixpath.dirname(folder)
    return out


def emptied_candidates(deleted_rels: Iterable[str]) -> list[str]:
    """Every folder above a deleted key, deepest first (a child is looked at before its parent)."""
    seen = {f for rel in deleted_rels for f in ancestors(split_rel(rel)[0])}
    return sorted(seen, key=lambda f: (-f.count("/"), f))


def changed_item_meta(entry: Change, previous: Mapped) -> dict[str, Any]:
    """What an overwritten object's item says: changed, with the object's old and new identity."""
    return {
        META: {
            "key": entry.key,
            "changed": True,
            "etag": entry.etag,
            "version": entry.version,
            "size": entry.size,
            "previous_etag": previous.etag,
            "previous_version": previous.version,
            "cursor": entry.cursor,
        }
    }


@dataclass(frozen=True, slots=True)
class DatasetState:
    """What the catalog says about the datasets of one folder (relative to the mirrored root)."""

    folder: str
    kind: str  # image-sequence or video
    annotated: bool
    quarantined: bool
    alert_id: int | None = None
    alert_kind: str | None = None
    fps: float | None = None


def dataset_folder_meta(state: DatasetState | None) -> dict[str, Any]:
    """The folder metadata a dataset needs (DIVE markers + quarantine); None values remove keys.

    A folder that is no longer a dataset gets its markers removed; a dataset whose alert was
    acknowledged or that was re-pinned gets the quarantine removed. ``fps`` is written only when
    known and never removed: DIVE users set it in the dataset's settings.
    """
    if state is None:
        return {"annotate": None, "type": None, META: None}
    meta: dict[str, Any] = dict(dive_dataset_markers(state.kind, state.fps))
    if state.quarantined:
        meta[META] = {"quarantined": True, "alert_id": state.alert_id, "alert": state.alert_kind}
    else:
        meta[META] = None
    return meta


EMPTIED = "mountsync_emptied"


def emptied_dataset_meta(state: DatasetState | None) -> dict[str, Any]:
    """An annotated dataset folder whose objects are all gone is kept and says so (None: objects
    are back, the marker goes). A key of its own, so the dataset sync does not overwrite it."""
    if state is None:
        return {EMPTIED: None}
    return {EMPTIED: {"annotated": True, "alert_id": state.alert_id, "alert": state.alert_kind}}


def folder_kind(types: Iterable[str]) -> str | None:
    """DIVE's dataset type for a folder holding datasets of these mountsync types.

    mountsync sees an image sequence per folder and one dataset per video; DIVE has one dataset
    per folder, so a folder with an image sequence is ``image-sequence``, one with videos only is
    ``video`` (DIVE plays the first video of such a folder: one video per folder is the layout
    DIVE users keep).
    """
    kinds = set(types)
    if DIVE_IMAGE_SEQUENCE in kinds:
        return DIVE_IMAGE_SEQUENCE
    if DIVE_VIDEO in kinds:
        return DIVE_VIDEO
    return None
