"""Classify how a dataset's current frames differ from its pinned manifest.

The comparison is between two *states* (the pinned manifest and the folder as the catalog
sees it now), never between events. That is what makes renames split across debounce
windows come out right: a window that saw only the delete says ``remove``; the next window,
which also sees the create of the same content under another name, says ``rename``.

Kinds (a mixed batch can show several; ``kind`` is the most severe):
- ``append``: new frames that sort after every surviving pinned frame (no index moves),
- ``insert``: new frames that sort before a surviving pinned frame,
- ``remove``: pinned frames that are gone (and were not renamed),
- ``rename``: a pinned frame's content now lives under another key,
- ``reorder``: frames kept under the same keys are in a different relative order,
- ``replace``: same key, different content,
- ``new-dataset``: nothing was pinned (a dataset seen for the first time).

Affected frames: pinned index ``i`` is affected when the current list has no frame at ``i``
or a different one (another key, or the same key with other content). An annotation stored
for frame ``i`` would now land on the wrong image (or none). ``first_shifted_index`` is the
smallest affected index, ``frames_moved`` how many are affected, ``annotated_frames_moved``
how many of them are at or below ``last_annotated`` (0-based, inclusive; ``None`` when the
last annotated frame is not known). A change is *breaking* when it affects an annotated
frame; when ``last_annotated`` is unknown every pinned frame counts as annotated.

Pure: no I/O, no clock, no environment.
"""

from __future__ import annotations

import bisect
import enum
import itertools
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class ChangeKind(enum.StrEnum):
    APPEND = "append"
    INSERT = "insert"
    REMOVE = "remove"
    RENAME = "rename"
    REORDER = "reorder"
    REPLACE = "replace"
    NEW_DATASET = "new-dataset"


# Most severe first: the order in which ``Classification.kind`` is chosen for mixed batches.
SEVERITY = (
    ChangeKind.REORDER,
    ChangeKind.REMOVE,
    ChangeKind.INSERT,
    ChangeKind.RENAME,
    ChangeKind.REPLACE,
    ChangeKind.APPEND,
    ChangeKind.NEW_DATASET,
)
DETAIL_LIMIT = 20


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame as pinned or as listed: bucket key plus what identifies its content."""

    key: str
    etag: str | None = None
    size: int | None = None
    version: str | None = None

    def content_id(self) -> tuple[str, int | None] | None:
        """What a rename preserves: (etag, size); None when the etag is unknown."""
        return None if self.etag is None else (self.etag, self.size)

    def same_content(self, other: Frame) -> bool:
        if self.etag is not None and other.etag is not None:
            sizes_known = self.size is not None and other.size is not None
            return self.etag == other.etag and (not sizes_known or self.size == other.size)
        if self.version is not None and other.version is not None:
            return self.version == other.version
        return self.size == other.size

    def same_frame(self, other: Frame) -> bool:
        return self.key == other.key and self.same_content(other)


@dataclass(frozen=True)
class Classification:
    kind: ChangeKind | None
    kinds: tuple[ChangeKind, ...]
    breaking: bool
    first_shifted_index: int | None
    frames_moved: int
    annotated_frames_moved: int | None
    pinned_count: int
    current_count: int
    appended: tuple[str, ...] = ()
    inserted: tuple[tuple[int, str], ...] = ()
    removed: tuple[tuple[int, str], ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()
    replaced: tuple[tuple[int, str], ...] = ()
    reordered: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.kind is not None

    @property
    def only_safe(self) -> bool:
        """Only appends or a new dataset: nothing pinned moved."""
        return set(self.kinds) <= {ChangeKind.APPEND, ChangeKind.NEW_DATASET}

    def details(self, limit: int = DETAIL_LIMIT) -> dict[str, Any]:
        """JSON-ready details for alerts (lists capped at ``limit`` entries, counts complete)."""
        out: dict[str, Any] = {
            "kinds": [k.value for k in self.kinds],
            "pinned_frames": self.pinned_count,
            "current_frames": self.current_count,
        }
        parts: dict[str, Sequence[Any]] = {
            "appended": self.appended,
            "inserted": [{"index": i, "key": k} for i, k in self.inserted],
            "removed": [{"index": i, "key": k} for i, k in self.removed],
            "renamed": [{"from": a, "to": b} for a, b in self.renamed],
            "replaced": [{"index": i, "key": k} for i, k in self.replaced],
            "reordered": self.reordered,
        }
        for name, items in parts.items():
            if items:
                out[name] = list(items[:limit])
                out[f"{name}_count"] = len(items)
        return out


def _match_renames(
    removed: list[Frame], added: list[Frame]
) -> tuple[list[tuple[Frame, Frame]], list[Frame], list[Frame]]:
    """Pair removed and added frames with equal content (in order); return pairs and the rest."""
    pool: dict[tuple[str, int | None], deque[Frame]] = defaultdict(deque)
    for frame in added:
        cid = frame.content_id()
        if cid is not None:
            pool[cid].append(frame)
    pairs: list[tuple[Frame, Frame]] = []
    still_removed: list[Frame] = []
    for frame in removed:
        cid = frame.content_id()
        candidates = pool.get(cid) if cid is not None else None
        if candidates:
            pairs.append((frame, candidates.popleft()))
        else:
            still_removed.append(frame)
    taken = {new.key for _, new in pairs}
    return pairs, still_removed, [f for f in added if f.key not in taken]


def _reordered(pinned_index: dict[str, int], current: Sequence[Frame]) -> tuple[str, ...]:
    """Keys kept from the pin that are out of their pinned relative order (none if in order)."""
    kept = [pinned_index[f.key] for f in current if f.key in pinned_index]
    if all(a < b for a, b in itertools.pairwise(kept)):
        return ()
    # Frames not on a longest increasing run are the ones that moved relative to the others.
    on_run = set(_longest_increasing(kept))
    return tuple(f.key for f in current if f.key in pinned_index and pinned_index[f.key] not in on_run)


def _longest_increasing(values: list[int]) -> list[int]:
    """One longest strictly increasing subsequence (patience sorting, O(n log n))."""
    tails: list[int] = []
    tail_at: list[int] = []
    parent = [-1] * len(values)
    for pos, value in enumerate(values):
        slot = bisect.bisect_left(tails, value)
        if slot == len(tails):
            tails.append(value)
            tail_at.append(pos)
        else:
            tails[slot] = value
            tail_at[slot] = pos
        parent[pos] = tail_at[slot - 1] if slot else -1
    out: list[int] = []
    pos = tail_at[-1] if tail_at else -1
    while pos != -1:
        out.append(values[pos])
        pos = parent[pos]
    return out[::-1]


def _affected(pinned: Sequence[Frame], current: Sequence[Frame]) -> list[int]:
    return [i for i, frame in enumerate(pinned) if i >= len(current) or not frame.same_frame(current[i])]


def classify_folder_change(
    pinned: Sequence[Frame],
    current: Sequence[Frame],
    *,
    last_annotated: int | None = None,
) -> Classification:
    """Compare the pinned manifest with the current frames (both already in frame order)."""
    if not pinned:
        kind = ChangeKind.NEW_DATASET if current else None
        return Classification(
            kind=kind,
            kinds=(kind,) if kind else (),
            breaking=False,
            first_shifted_index=None,
            frames_moved=0,
            annotated_frames_moved=0 if last_annotated is not None else None,
            pinned_count=0,
            current_count=len(current),
            appended=tuple(f.key for f in current),
        )
    pinned_index = {f.key: i for i, f in enumerate(pinned)}
    current_index = {f.key: j for j, f in enumerate(current)}
    replaced = tuple(
        (pinned_index[f.key], f.key)
        for f in current
        if f.key in pinned_index and not pinned[pinned_index[f.key]].same_content(f)
    )
    gone = [f for f in pinned if f.key not in current_index]
    new = [f for f in current if f.key not in pinned_index]
    pairs, removed, added = _match_renames(gone, new)
    survivors = [current_index[f.key] for f in pinned if f.key in current_index]
    survivors += [current_index[b.key] for _, b in pairs]
    last_survivor = max(survivors, default=-1)
    appended = tuple(f.key for f in added if current_index[f.key] > last_survivor)
    inserted = tuple((current_index[f.key], f.key) for f in added if current_index[f.key] <= last_survivor)
    reordered = _reordered(pinned_index, current)
    found = {
        ChangeKind.REORDER: bool(reordered),
        ChangeKind.REMOVE: bool(removed),
        ChangeKind.INSERT: bool(inserted),
        ChangeKind.RENAME: bool(pairs),
        ChangeKind.REPLACE: bool(replaced),
        ChangeKind.APPEND: bool(appended),
    }
    kinds = tuple(k for k in SEVERITY if found.get(k))
    affected = _affected(pinned, current)
    annotated = None if last_annotated is None else sum(1 for i in affected if i <= last_annotated)
    return Classification(
        kind=kinds[0] if kinds else None,
        kinds=kinds,
        breaking=bool(affected) if annotated is None else annotated > 0,
        first_shifted_index=affected[0] if affected else None,
        frames_moved=len(affected),
        annotated_frames_moved=annotated,
        pinned_count=len(pinned),
        current_count=len(current),
        appended=appended,
        inserted=inserted,
        removed=tuple((pinned_index[f.key], f.key) for f in removed),
        renamed=tuple((a.key, b.key) for a, b in pairs),
        replaced=replaced,
        reordered=reordered,
    )
