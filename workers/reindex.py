"""Reindex: diff a mount's listing against the catalog and apply the differences as ObjectChanges.

Three phases, memory bounded by the number of folders plus the largest single folder:
1. stream the listing once, folding each object into its folder's (count, bytes, fingerprint);
2. compare with the catalog's per-folder bookkeeping (maintained by every apply) and keep only
   folders whose summary differs - an in-sync mount costs one listing and one small query;
3. for each differing folder, list its direct children again and diff them object by object,
   emitting synthetic changes (source ``reindex``) through the one write path.
Changes carry ``event_ns`` = the time the folder was listed, so an event applied after that
moment wins over the listing, and a stale event arriving later loses to it.

A dry run (``plan=DryRunPlan()``) does phases 1-3 but applies nothing: it records the keys each
change would create, update or delete (at most ``PLAN_KEYS`` per kind; the counts are complete).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog

from mountsync.shared import metrics
from mountsync.shared.catalog.apply import fingerprint_hash
from mountsync.shared.catalog.mounts import Mount
from mountsync.shared.events import Kind, ObjectChange, Source
from mountsync.shared.storage import ObjectInfo, Storage
from mountsync.workers.context import WorkerContext
from mountsync.workers.service import apply_batch

log = structlog.get_logger("mountsync.reindex")
APPLY_CHUNK = 1000
PLAN_KEYS = 1000  # keys listed per kind in a dry run's plan (counts are always complete)


@dataclass
class DryRunPlan:
    """What a reconcile would do: keys per kind (``created``, ``updated``, ``deleted``)."""

    keys: dict[str, list[str]] = field(default_factory=lambda: {"created": [], "updated": [], "deleted": []})
    truncated: bool = False

    def add(self, kind: str, key: str) -> None:
        listed = self.keys[kind]
        if len(listed) < PLAN_KEYS:
            listed.append(key)
        else:
            self.truncated = True

    def as_dict(self) -> dict[str, Any]:
        return {"keys": self.keys, "keys_truncated": self.truncated, "keys_per_kind": PLAN_KEYS}


@dataclass
class FolderSummary:
    objects: int = 0
    bytes: int = 0
    fingerprint: int = 0

    def add(self, info: ObjectInfo) -> None:
        self.objects += 1
        self.bytes += info.size
        self.fingerprint ^= fingerprint_hash(info.key, info.size, info.etag)

    def key(self) -> tuple[int, int, int]:
        return (self.objects, self.bytes, self.fingerprint)


@dataclass
class ReindexSummary:
    listed: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    folders_checked: int = 0
    folders_skipped: int = 0
    held: int = 0
    seconds: float = 0.0
    pending: list[ObjectChange] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "listed": self.listed,
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "folders_checked": self.folders_checked,
            "folders_skipped": self.folders_skipped,
            "held": self.held,
            "seconds": round(self.seconds, 3),
        }


def folder_of(key: str) -> str:
    head, sep, _ = key.rpartition("/")
    return head if sep else ""


def in_scope(folder: str, root: str) -> bool:
    return not root or folder == root or folder.startswith(root + "/")


def scope_root(mount: Mount, prefix: str) -> str:
    return (mount.prefix + prefix.strip("/")).strip("/")


def summarize_listing(
    listing: Iterator[ObjectInfo], on_progress: Callable[[int], None]
) -> tuple[dict[str, FolderSummary], int]:
    folders: dict[str, FolderSummary] = {}
    listed = 0
    for info in listing:
        folder = folder_of(info.key)
        summary = folders.get(folder)
        if summary is None:
            summary = folders[folder] = FolderSummary()
        summary.add(info)
        listed += 1
        if listed % 1000 == 0:
            on_progress(listed)
    return folders, listed


def summarize(
    storage: Storage, list_prefix: str, on_progress: Callable[[int], None]
) -> tuple[dict[str, FolderSummary], int]:
    """Per-folder summaries of the listing; adapters may offer a faster ``folder_summaries``."""
    fast = getattr(storage, "folder_summaries", None)
    if fast is None:
        return summarize_listing(storage.list(list_prefix), on_progress)
    folders: dict[str, FolderSummary] = {}
    listed = 0
    for folder, objects, size, fingerprint in fast(list_prefix):
        folders[folder] = FolderSummary(objects, size, fingerprint)
        listed += objects
        on_progress(listed)
    return folders, listed


def catalog_folders(ctx: WorkerContext, mount: Mount, root: str) -> dict[str, tuple[int, int, int]]:
    with ctx.pool.connection() as conn:
        rows = conn.execute(
            """SELECT path, live_objects, live_bytes, fingerprint FROM folders
               WHERE mount_id = %s AND (%s = '' OR path = %s OR starts_with(path, %s || '/'))""",
            (mount.id, root, root, root),
        ).fetchall()
    return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def diff_folder(
    mount: Mount,
    listed: dict[str, ObjectInfo],
    catalog: dict[str, tuple[int | None, str | None]],
    observed_ns: int,
) -> Iterator[ObjectChange]:
    """Changes that bring the catalog's view of one folder to the listing (pure)."""
    for key, info in listed.items():
        if catalog.get(key) != (info.size, info.etag):
            yield _change(mount, key, Kind.CREATED, observed_ns, info)
    for key in catalog.keys() - listed.keys():
        yield _change(mount, key, Kind.DELETED, observed_ns, None)


def _change(mount: Mount, key: str, kind: Kind, observed_ns: int, info: ObjectInfo | None) -> ObjectChange:
    return ObjectChange(
        provider=mount.provider,
        bucket=mount.bucket,
        key=key,
        kind=kind,
        event_ns=observed_ns,
        source=Source.REINDEX,
        size=info.size if info else None,
        etag=info.etag if info else None,
        version=info.version if info else None,
        sequencer=info.sequencer if info else "",
        source_id=f"reindex:{mount.name}",
    )


def live_rows(ctx: WorkerContext, mount: Mount, folder: str) -> dict[str, tuple[int | None, str | None]]:
    with ctx.pool.connection() as conn:
        rows = conn.execute(
            "SELECT key, size, etag FROM objects WHERE mount_id = %s AND folder = %s AND NOT deleted",
            (mount.id, folder),
        ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def run_reindex(
    ctx: WorkerContext,
    mount: Mount,
    storage: Storage,
    prefix: str = "",
    on_progress: Callable[[ReindexSummary], None] | None = None,
    plan: DryRunPlan | None = None,
) -> ReindexSummary:
    started = time.perf_counter()
    summary = ReindexSummary()
    report = on_progress or (lambda _s: None)
    root = scope_root(mount, prefix)
    list_prefix = f"{root}/" if root else ""

    def progress(listed: int) -> None:
        summary.listed = listed
        report(summary)

    listing, summary.listed = summarize(storage, list_prefix, progress)
    known = catalog_folders(ctx, mount, root)
    changed = sorted(
        f
        for f in listing.keys() | {p for p, v in known.items() if v[0] > 0}
        if listing.get(f, FolderSummary()).key() != known.get(f, (0, 0, 0))
    )
    summary.folders_skipped = len(listing.keys() - set(changed))
    summary.unchanged = sum(listing[f].objects for f in listing if f not in changed)
    report(summary)
    for folder in changed:
        _reconcile_folder(ctx, mount, storage, folder, summary, plan)
        summary.folders_checked += 1
        report(summary)
    _flush(ctx, summary)
    summary.seconds = time.perf_counter() - started
    if plan is not None:
        report(summary)
        return summary
    _record_differences(mount, summary)
    metrics.REINDEX_SECONDS.labels(mount.name).observe(summary.seconds)
    report(summary)
    return summary


def _reconcile_folder(
    ctx: WorkerContext, mount: Mount, storage: Storage, folder: str, summary: ReindexSummary,
    plan: DryRunPlan | None = None,
) -> None:  # fmt: skip
    observed_ns = ctx.clock.now_ns()
    listed = {i.key: i for i in storage.list(f"{folder}/" if folder else "", recursive=False)}
    rows = live_rows(ctx, mount, folder)
    changes = list(diff_folder(mount, listed, rows, observed_ns))
    summary.unchanged += len(listed) - sum(1 for c in changes if not c.kind.removes)
    if plan is not None:
        _plan(changes, rows, summary, plan)
        return
    for change in changes:
        summary.pending.append(change)
        if len(summary.pending) >= APPLY_CHUNK:
            _flush(ctx, summary)


def _plan(changes: list[ObjectChange], rows: dict[str, Any], summary: ReindexSummary, plan: DryRunPlan) -> None:
    """Dry run: count and record what applying ``changes`` would do (as ``_flush`` counts it)."""
    for change in changes:
        kind = "deleted" if change.kind.removes else "updated" if change.key in rows else "created"
        setattr(summary, kind, getattr(summary, kind) + 1)
        plan.add(kind, change.key)


def _flush(ctx: WorkerContext, summary: ReindexSummary) -> None:
    if not summary.pending:
        return
    result = apply_batch(ctx, summary.pending)
    summary.pending = []
    summary.held += sum(result.held.values())
    for change in result.applied:
        if change.kind.removes:
            summary.deleted += 1
        elif change.was_live:
            summary.updated += 1
        else:
            summary.created += 1


def _record_differences(mount: Mount, summary: ReindexSummary) -> None:
    for kind, count in (
        ("created", summary.created),
        ("updated", summary.updated),
        ("deleted", summary.deleted),
    ):
        if count:
            metrics.REINDEX_DIFFERENCES.labels(mount.name, kind).inc(count)
    if summary.created or summary.updated or summary.deleted:
        log.warning("reindex found differences the events missed", mount=mount.name, **summary.as_dict())
