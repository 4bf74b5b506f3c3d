"""Read-only views of the catalog's objects and folders, for the CLI and the demo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MountTotals:
    objects: int
    bytes: int
    folders: int  # folders holding at least one live object


@dataclass(frozen=True)
class LiveObject:
    key: str
    size: int
    etag: str | None
    version: str | None

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "etag": self.etag, "version": self.version}


def mount_totals(conn: Any, mount_id: int) -> MountTotals:
    row = conn.execute(
        "SELECT coalesce(sum(live_objects), 0), coalesce(sum(live_bytes), 0), count(*) "
        "FROM folders WHERE mount_id = %s AND live_objects > 0",
        (mount_id,),
    ).fetchone()
    return MountTotals(int(row[0]), int(row[1]), int(row[2]))


def live_objects(conn: Any, mount_id: int, key_prefix: str = "", limit: int = 0) -> list[LiveObject]:
    """Live objects of a mount whose key starts with ``key_prefix``, by key (all when ``limit`` is 0)."""
    sql = (
        "SELECT key, size, etag, version FROM objects WHERE mount_id = %s AND NOT deleted "
        "AND starts_with(key, %s) ORDER BY key" + (" LIMIT %s" if limit else "")
    )
    params: tuple[Any, ...] = (mount_id, key_prefix, limit) if limit else (mount_id, key_prefix)
    return [LiveObject(r[0], r[1], r[2], r[3]) for r in conn.execute(sql, params).fetchall()]
