"""Response shapes of ``/api/v1`` for the OpenAPI document (field names as the CLI's ``--json``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ObjectRow(BaseModel):
    key: str
    size: int | None
    etag: str | None
    version: str | None
    held: bool = Field(False, description="its delete is held by the mass-delete guard (`mountsync deletes list`)")


class ObjectsPage(BaseModel):
    mount: str
    objects: list[ObjectRow]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")
    changes_cursor: int = Field(description="the change log's head when this page was read")


class MountView(BaseModel):
    name: str
    url: str
    provider: str
    bucket: str
    prefix: str
    dest_folder: str
    writable: bool
    options: dict[str, Any]
    reindex_interval_s: int | None
    objects: int
    bytes: int
    last_cursor: int | None
    last_event_at: str | None
    last_applied_at: str | None
    last_reconcile: dict[str, Any] | None
    changes_queued: int | None
    held_deletes: int | None = None  # deletes held by the mass-delete guard; None without the guard


class MountsPage(BaseModel):
    mounts: list[MountView]
    next_cursor: str | None = None


class ReindexQueued(BaseModel):
    mount: str
    run: int
    state: str


class ReindexBody(BaseModel):
    prefix: str = Field("", description="only this folder, relative to the mount")


class ChangeRow(BaseModel):
    cursor: int
    mount: str
    dest_folder: str
    key: str
    kind: str = Field(description="created, updated, deleted or metadata")
    size: int | None
    etag: str | None
    version: str | None
    sequencer: str
    event_time: str | None
    applied_at: str
    quarantined: bool


class ChangesPage(BaseModel):
    changes: list[ChangeRow]
    next_cursor: int = Field(description="pass as ?after= to continue (the last cursor returned, or `after`)")


class ChangesGone(BaseModel):
    error: str
    continue_from: int
    relist: str
