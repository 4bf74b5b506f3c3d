"""Read-side queries of the HTTP API: live objects page by page, and a mount's lag."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import psycopg

from mountsync.shared.catalog.mounts import Mount
from mountsync.shared.catalog.runs import get_run
from mountsync.shared.errors import BadInput

# Above every key that starts with a prefix, in the "C" collation (code point order).
_PREFIX_END = "\U0010ffff"


def encode_key_cursor(key: str) -> str:
    """An opaque page cursor: the last key of the page, base64url (callers must not parse it)."""
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii").rstrip("=")


def decode_key_cursor(cursor: str, field: str = "cursor") -> str:
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadInput(f"{field} {cursor!r} is not a cursor this API returned") from None


@dataclass(frozen=True, slots=True)
class ObjectsPage:
    """``objects_json``: the page as a JSON array rendered by PostgreSQL (sent as it is)."""

    objects_json: str
    next_cursor: str | None


def objects_page(conn: psycopg.Connection, mount: Mount, prefix: str, after_key: str, limit: int) -> ObjectsPage:
    """Live objects of ``mount`` under ``prefix`` (relative to the mount) in key order, after a key;
    ``held`` marks an object whose delete the mass-delete guard holds."""
    full_prefix = mount.prefix + prefix
    row = conn.execute(
        """
        SELECT coalesce(json_agg(json_build_object('key', key, 'size', size, 'etag', etag, 'version', version,
                                                   'held', held)
                                 ORDER BY key) FILTER (WHERE n <= %(limit)s), '[]')::text,
               max(key) FILTER (WHERE n <= %(limit)s), count(*) > %(limit)s
        FROM (SELECT key, size, etag, version, row_number() OVER (ORDER BY key) AS n,
                     EXISTS (SELECT 1 FROM held_deletes h WHERE h.mount_id = %(mount)s AND h.key = page.key) AS held
              FROM (
                SELECT key, size, etag, version FROM objects
                WHERE mount_id = %(mount)s AND key > %(after)s AND key >= %(prefix)s AND key < %(end)s
                  AND starts_with(key, %(prefix)s) AND NOT deleted
                ORDER BY key LIMIT %(limit)s + 1) page) numbered
        """,
        {"mount": mount.id, "after": after_key, "prefix": full_prefix, "end": full_prefix + _PREFIX_END,
         "limit": limit},
    ).fetchone()  # fmt: skip
    assert row is not None
    return ObjectsPage(str(row[0]), encode_key_cursor(row[1]) if row[2] and row[1] is not None else None)


def mount_status(conn: psycopg.Connection, mount: Mount) -> dict[str, Any]:
    """Counts and lag: the newest change-log entry (its event and apply time) and the last reconcile."""
    counts = conn.execute(
        "SELECT coalesce(sum(live_objects), 0), coalesce(sum(live_bytes), 0) FROM folders WHERE mount_id = %s",
        (mount.id,),
    ).fetchone()
    newest = conn.execute(
        "SELECT cursor, event_time, applied_at FROM change_log WHERE mount = %s ORDER BY cursor DESC LIMIT 1",
        (mount.name,),
    ).fetchone()
    last = conn.execute(
        "SELECT id FROM reindex_runs WHERE mount_id = %s AND state IN ('succeeded', 'failed') ORDER BY id DESC LIMIT 1",
        (mount.id,),
    ).fetchone()
    run = get_run(conn, last[0]) if last else None
    return {
        "objects": int(counts[0]) if counts else 0,
        "bytes": int(counts[1]) if counts else 0,
        "last_cursor": newest[0] if newest else None,
        "last_event_at": newest[1].isoformat() if newest and newest[1] else None,
        "last_applied_at": newest[2].isoformat() if newest else None,
        "last_reconcile": {**run.describe(), "finished_at": _iso(run.finished_at)} if run else None,
        "held_deletes": held_deletes(conn, mount),
    }


def held_deletes(conn: psycopg.Connection, mount: Mount) -> int | None:
    """Deletes the mass-delete guard holds back for ``mount``; None on a catalog without the guard."""
    row = conn.execute("SELECT to_regclass('held_deletes') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    count = conn.execute("SELECT count(*) FROM held_deletes WHERE mount_id = %s", (mount.id,)).fetchone()
    return int(count[0]) if count else 0


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None
