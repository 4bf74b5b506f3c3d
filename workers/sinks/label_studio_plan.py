"""What a batch of changes means for a Label Studio project: a pure plan, no I/O.

Rules (issue 16): a new object becomes exactly one task; a deleted object's task is deleted when
it has no annotations, else kept and marked; an overwritten object's task is marked changed with
the old and new etag and keeps its annotations; a quarantined dataset's tasks are marked. The
key -> task map (``connector_items``) makes every rule idempotent: a change the map already
reflects plans nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mountsync.shared.catalog.change_log import ChangeEntry

# Task data references the object the way Label Studio's cloud storages do, so a source storage
# on the same bucket (its credentials) serves the bytes: s3://, gs://, azure-blob://.
LS_SCHEMES = {"s3": "s3", "gcs": "gs", "azure": "azure-blob"}


@dataclass(frozen=True)
class Mapped:
    """One row of the key -> task map."""

    key: str
    remote_id: int | None
    etag: str | None
    state: str  # importing, live, changed, kept, deleted
    quarantined: bool = False
    cursor: int = 0  # the change-log cursor this row reflects: older or equal entries are no-ops


@dataclass
class Plan:
    """The platform calls one batch needs; ``check_delete`` tasks are deleted or kept by annotations."""

    create: list[ChangeEntry] = field(default_factory=list)
    check_delete: list[tuple[ChangeEntry, Mapped]] = field(default_factory=list)
    forget: list[ChangeEntry] = field(default_factory=list)  # deleted before a task existed
    mark_changed: list[tuple[ChangeEntry, Mapped]] = field(default_factory=list)
    mark_quarantine: list[tuple[ChangeEntry, Mapped]] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.create or self.check_delete or self.forget or self.mark_changed or self.mark_quarantine)


def last_per_key(entries: Iterable[ChangeEntry]) -> dict[str, ChangeEntry]:
    """The newest entry of each key (cursor order): the batch's net effect on that key."""
    last: dict[str, ChangeEntry] = {}
    for entry in entries:
        last[entry.key] = entry
    return last


def plan_batch(entries: Iterable[ChangeEntry], mapped: Mapping[str, Mapped]) -> Plan:
    plan = Plan()
    for key, entry in last_per_key(entries).items():
        row = mapped.get(key)
        if row is not None and entry.cursor <= row.cursor:
            continue  # applied already (a redelivery or a replay)
        has_task = row is not None and row.remote_id is not None and row.state != "deleted"
        if entry.kind == "deleted":
            if row is not None and row.state == "importing" and row.remote_id is None:
                plan.forget.append(entry)
            elif has_task and row is not None and row.state != "kept":
                plan.check_delete.append((entry, row))
            continue
        if not has_task or row is None:
            plan.create.append(entry)
            continue
        if entry.etag != row.etag or row.state == "kept":
            plan.mark_changed.append((entry, row))
        elif entry.quarantined != row.quarantined:
            plan.mark_quarantine.append((entry, row))
    return plan


def object_url(provider: str, bucket: str, key: str) -> str:
    return f"{LS_SCHEMES[provider]}://{bucket}/{key}"


def task_meta(sink: str, entry: ChangeEntry, state: str, **extra: Any) -> dict[str, Any]:
    """Our part of a task's ``meta`` (under ``mountsync``; other keys of meta are left alone)."""
    return {"sink": sink, "mount": entry.mount, "key": entry.key, "etag": entry.etag, "state": state,
            "quarantined": entry.quarantined, **extra}  # fmt: skip
