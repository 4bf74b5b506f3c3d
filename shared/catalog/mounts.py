"""The mount registry: a bucket prefix (or directory) mapped to a destination folder."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from mountsync.shared.errors import BadInput, MountExists, MountNotFound
from mountsync.shared.events import Provider
from mountsync.shared.storage.url import StorageURL, parse_storage_url

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# Options that may be stored; anything secret-looking is refused (store a credential NAME instead).
ALLOWED_OPTIONS = {"endpoint_url", "region", "credentials", "account_url", "addressing_style"}
# pg_advisory_xact_lock(MOUNT_LOCK, mount id): held by an apply for every mount it writes, and by
# ``Mounts.remove``; ``objects`` has no foreign key to ``mounts``, this lock keeps them consistent.
MOUNT_LOCK = 731850401


@dataclass(frozen=True, slots=True)
class Mount:
    id: int
    name: str
    url: str
    provider: Provider
    bucket: str
    prefix: str
    dest_folder: str
    writable: bool
    options: dict[str, Any] = field(default_factory=dict)
    reindex_interval_s: int | None = None

    @property
    def storage_url(self) -> StorageURL:
        return StorageURL(self.provider, self.bucket, self.prefix)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "provider": self.provider.value,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "dest_folder": self.dest_folder,
            "writable": self.writable,
            "options": self.options,
            "reindex_interval_s": self.reindex_interval_s,
        }


def validate_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise BadInput(
            f"mount name {name!r} is not valid: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def validate_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - ALLOWED_OPTIONS)
    if unknown:
        raise BadInput(
            f"unknown mount option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(ALLOWED_OPTIONS))} "
            "(secrets are never stored: name a credential set with --credentials)"
        )
    return {k: v for k, v in options.items() if v not in (None, "")}


def _row_to_mount(row: dict[str, Any]) -> Mount:
    return Mount(
        id=row["id"],
        name=row["name"],
        url=row["url"],
        provider=Provider(row["provider"]),
        bucket=row["bucket"],
        prefix=row["prefix"],
        dest_folder=row["dest_folder"],
        writable=row["writable"],
        options=dict(row["options"] or {}),
        reindex_interval_s=row["reindex_interval_s"],
    )


class Mounts:
    """CRUD on the ``mounts`` table through one connection (autocommit or in a transaction)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def add(
        self,
        name: str,
        url: str,
        *,
        dest_folder: str = "",
        writable: bool = False,
        options: dict[str, Any] | None = None,
        reindex_interval_s: int | None = None,
    ) -> Mount:
        validate_name(name)
        parsed = parse_storage_url(url)
        opts = validate_options(dict(options or {}))
        with self._conn.cursor(row_factory=dict_row) as cur:
            try:
                cur.execute(
                    """
                    INSERT INTO mounts (name, url, provider, bucket, prefix, dest_folder, writable,
                                        options, reindex_interval_s)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *
                    """,
                    (
                        name,
                        str(parsed),
                        parsed.provider.value,
                        parsed.bucket,
                        parsed.prefix,
                        dest_folder or name,
                        writable,
                        Jsonb(opts),
                        reindex_interval_s,
                    ),
                )
            except psycopg.errors.UniqueViolation:
                raise MountExists(
                    f"a mount named {name!r} exists already; pick another name or `mountsync mount remove {name}` first"
                ) from None
            row = cur.fetchone()
        assert row is not None
        return _row_to_mount(row)

    def get(self, name: str) -> Mount:
        with self._conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute("SELECT * FROM mounts WHERE name = %s", (name,)).fetchone()
        if row is None:
            raise MountNotFound(f"no mount named {name!r}; `mountsync mount list` shows the mounts")
        return _row_to_mount(row)

    def get_by_id(self, mount_id: int) -> Mount:
        with self._conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute("SELECT * FROM mounts WHERE id = %s", (mount_id,)).fetchone()
        if row is None:
            raise MountNotFound(f"no mount with id {mount_id}")
        return _row_to_mount(row)

    def list(self) -> list[Mount]:
        with self._conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute("SELECT * FROM mounts ORDER BY name").fetchall()
        return [_row_to_mount(r) for r in rows]

    def remove(self, name: str) -> None:
        """Remove the mount and its catalog rows. Its objects go first, under the mount's apply
        lock: an apply in flight commits before they are deleted, one that waits routes nothing."""
        with self._conn.transaction():
            row = self._conn.execute("SELECT id FROM mounts WHERE name = %s", (name,)).fetchone()
            if row is not None:
                # The apply lock first, then the row: the order an apply takes them in (its folder
                # counters' foreign key locks the mount row), so the two never deadlock.
                self._conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (MOUNT_LOCK, row[0]))
                self._conn.execute("DELETE FROM objects WHERE mount_id = %s", (row[0],))
                removed = self._conn.execute("DELETE FROM mounts WHERE id = %s", (row[0],)).rowcount
            if row is None or not removed:  # not there, or removed by another caller meanwhile
                raise MountNotFound(f"no mount named {name!r}; `mountsync mount list` shows the mounts")
