"""The verification cache: our record of destination objects we copied and verified
(``migration_verified``: size, ETag, sha256, md5 per location and key).

Skipping an existing object needs positive evidence that it equals the source. Azure and local
files report no checksum we can compare, so a record of a verified copy whose size and ETag are
unchanged is that evidence. Callers: ``transfer`` (looks records up, once per chunk for the
keys found by the destination listing) and ``service`` (remembers the copies a chunk made).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mountsync.shared.migration.pgstore import PooledStore


@dataclass(frozen=True, slots=True)
class Verified:
    size: int
    etag: str
    sha256: str
    md5: str


Remembered = tuple[str, str, Verified]  # (location, key, digests)

_UPSERT = (
    "INSERT INTO migration_verified (location, key, size, etag, sha256, md5) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (location, key) DO UPDATE SET "
    "size = EXCLUDED.size, etag = EXCLUDED.etag, sha256 = EXCLUDED.sha256, "
    "md5 = EXCLUDED.md5, verified_at = now()"
)


class VerificationCache(PooledStore):
    """Records of verified copies, keyed by bucket-level location and object key."""

    def get(self, location: str, key: str) -> Verified | None:
        return self.get_many(location, [key]).get(key)

    def get_many(self, location: str, keys: Iterable[str]) -> dict[str, Verified]:
        """The records of ``keys`` that have one (one query for a chunk's keys)."""
        wanted = list(keys)
        if not wanted:
            return {}
        with self._tx() as cur:
            cur.execute(
                "SELECT key, size, etag, sha256, md5 FROM migration_verified WHERE location = %s AND key = ANY(%s)",
                (location, wanted),
            )
            return {row.pop("key"): Verified(**row) for row in cur.fetchall()}

    def remember(self, records: Sequence[Remembered]) -> None:
        """Record verified copies (one transaction). Written before the items are recorded as
        done: a crash in between leaves a true record and an item that is copied again."""
        if not records:
            return
        with self._tx() as cur:
            cur.executemany(_UPSERT, [(loc, key, v.size, v.etag, v.sha256, v.md5) for loc, key, v in records])
