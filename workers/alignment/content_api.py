"""``GET /api/v1/mounts/{mount}/datasets/{folder}/frames/{index}/content``: the pinned bytes.

A quarantined dataset's annotations belong to the frames as pinned, so this streams the pinned
version (S3 VersionId, GCS generation, Azure version id) even after the object was overwritten,
with ETag, Content-Type, Content-Length and ``Range`` (one range; 206 with Content-Range, 416 when
it cannot be satisfied). A provider that cannot serve that version (an unversioned bucket, a
local directory, a version since deleted) answers 409 with the reason.
"""

from __future__ import annotations

import re
from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from mountsync.shared.api.deps import catalog, settings
from mountsync.shared.catalog.mounts import Mounts
from mountsync.shared.config import Settings
from mountsync.shared.errors import Conflict, NotFound
from mountsync.shared.storage import open_storage
from mountsync.shared.storage.versions import read_version
from mountsync.workers.alignment import service, store
from mountsync.workers.alignment.config import AlignmentConfig

router = APIRouter(tags=["datasets and alerts"])
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: str | None, total: int) -> tuple[int, int] | str | None:
    """``(start, end)`` inclusive for one satisfiable range, ``None`` for the whole object, or
    ``"unsatisfiable"`` (416). Multiple ranges are answered with the whole object (allowed)."""
    if not header or "," in header:
        return None
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None  # a malformed Range is ignored (RFC 9110)
    first, last = match.groups()
    if first == "":  # suffix: the last N bytes
        n = int(last)
        return "unsatisfiable" if n == 0 or total == 0 else (max(0, total - n), total - 1)
    start = int(first)
    end = min(int(last), total - 1) if last else total - 1
    return "unsatisfiable" if start >= total or end < start else (start, end)


@router.get(
    "/mounts/{mount}/datasets/{folder:path}/frames/{index}/content",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the pinned version's bytes"},
        206: {"content": {"application/octet-stream": {}}, "description": "one byte range of them"},
        409: {"description": "the provider cannot serve that version (the reason says why)"},
        416: {"description": "the Range cannot be satisfied"},
    },
)
def frame_content(
    mount: str,
    folder: str,
    index: Annotated[int, Path(ge=0, le=10_000_000)],
    request: Request,
    conn: Annotated[psycopg.Connection, Depends(catalog)],
    cfg: Annotated[Settings, Depends(settings)],
) -> Response:
    found = Mounts(conn).get(mount)
    config = AlignmentConfig.from_settings(cfg)
    path, _ = service.locate_dataset(conn, config, found, "" if folder in ("/", ".", "-") else folder)
    rows = store.datasets_at(conn, found.id, path)
    if not rows or not rows[0].pinned:
        raise Conflict(f"dataset {path!r} has no pinned manifest; pin it first")
    frames = store.pinned_frames(conn, rows[0].id)
    if index >= len(frames):
        raise NotFound(f"frame {index}: the pinned manifest of {path!r} has {len(frames)} frames")
    frame = frames[index]
    total = frame.size or 0
    wanted = byte_range(request.headers.get("range"), total)
    if wanted == "unsatisfiable":
        return JSONResponse({"error": f"Range {request.headers.get('range')!r} is outside the {total} bytes"}, 416,
                            headers={"Content-Range": f"bytes */{total}"})  # fmt: skip
    start, end = wanted if isinstance(wanted, tuple) else (None, None)
    data = read_version(open_storage(found.storage_url, found.options), frame.key, frame.version, start=start, end=end)
    headers = {"Content-Length": str(data.length), "Accept-Ranges": "bytes"}
    if frame.etag:
        headers["ETag"] = f'"{frame.etag}"'
    if start is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{total}"
    return StreamingResponse(data.chunks, 206 if start is not None else 200, headers=headers,
                             media_type=data.content_type)  # fmt: skip
