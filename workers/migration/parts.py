"""The part store: resumable uploads of items and their parts (``migration_parts``, and the
upload id and part size kept on the item's row).

Every part is recorded before it is sent (``sends`` counts re-sends) and marked done when the
provider confirmed it, so a resumed item sends only what is missing. Callers: ``transfer``
(start, refresh, forget, part sending/done, parts of an upload) and ``upkeep`` (``orphans``:
uploads nobody will complete, and forgetting them once aborted).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from mountsync.shared.events import normalize_etag
from mountsync.shared.migration.pgstore import PooledStore
from mountsync.shared.storage.base import PartInfo
from mountsync.workers.migration.items import ItemRow


@dataclass(frozen=True, slots=True)
class PartRow:
    number: int
    size: int
    fingerprint: str
    etag: str | None
    done: bool
    sends: int


@dataclass(frozen=True, slots=True)
class Orphan:
    """A resumable upload that no item will complete (its item or job failed or was cancelled)."""

    job_id: str
    seq: int
    dest_key: str
    upload_id: str
    part_size: int
    destination: str
    spec: dict[str, Any]


class PartStore(PooledStore):
    """Uploads and parts of items; one short transaction per call, shared by part threads."""

    def start_upload(self, job_id: str, seq: int, upload_id: str, part_size: int) -> None:
        """Remember a new resumable upload for the item (forgetting any earlier one's parts)."""
        with self._tx() as cur:
            cur.execute("DELETE FROM migration_parts WHERE job_id = %s AND seq = %s", (job_id, seq))
            cur.execute(
                "UPDATE migration_items SET upload_id = %s, part_size = %s, updated_at = now() "
                "WHERE job_id = %s AND seq = %s",
                (upload_id, part_size, job_id, seq),
            )

    def refresh_upload(self, item: ItemRow) -> ItemRow:
        """``item`` with the upload id and part size currently recorded for it."""
        with self._tx() as cur:
            cur.execute(
                "SELECT upload_id, part_size FROM migration_items WHERE job_id = %s AND seq = %s",
                (item.job_id, item.seq),
            )
            row = cur.fetchone()
        if row is None:
            return item
        return replace(item, upload_id=row["upload_id"], part_size=row["part_size"])

    def forget_upload(self, job_id: str, seq: int) -> None:
        with self._tx() as cur:
            cur.execute("DELETE FROM migration_parts WHERE job_id = %s AND seq = %s", (job_id, seq))
            cur.execute(
                "UPDATE migration_items SET upload_id = NULL, part_size = NULL WHERE job_id = %s AND seq = %s",
                (job_id, seq),
            )

    def part_sending(self, job_id: str, seq: int, upload_id: str, number: int, size: int, fingerprint: str) -> None:
        """Count a send of a part before it goes out (so re-sends are visible)."""
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO migration_parts (job_id, seq, number, upload_id, size, fingerprint, sends) "
                "VALUES (%s, %s, %s, %s, %s, %s, 1) ON CONFLICT (job_id, seq, number) DO UPDATE "
                "SET sends = migration_parts.sends + 1, upload_id = EXCLUDED.upload_id, "
                "size = EXCLUDED.size, fingerprint = EXCLUDED.fingerprint, done = false, "
                "updated_at = now()",
                (job_id, seq, number, upload_id, size, fingerprint),
            )

    def part_done(self, job_id: str, seq: int, number: int, etag: str) -> None:
        """Mark a part confirmed and count its bytes as sent for the item."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE migration_parts SET done = true, etag = %s, updated_at = now() "
                "WHERE job_id = %s AND seq = %s AND number = %s RETURNING size",
                (etag, job_id, seq, number),
            )
            row = cur.fetchone()
            if row is not None:
                cur.execute(
                    "UPDATE migration_items SET bytes_sent = bytes_sent + %s, updated_at = now() "
                    "WHERE job_id = %s AND seq = %s",
                    (row["size"], job_id, seq),
                )

    def parts(self, job_id: str, seq: int, upload_id: str) -> list[PartRow]:
        with self._tx() as cur:
            cur.execute(
                "SELECT number, size, fingerprint, etag, done, sends FROM migration_parts "
                "WHERE job_id = %s AND seq = %s AND upload_id = %s ORDER BY number",
                (job_id, seq, upload_id),
            )
            return [PartRow(**row) for row in cur.fetchall()]

    def orphans(self, limit: int = 100) -> list[Orphan]:
        """Uploads left open by failed or cancelled items/jobs, whose lease has run out."""
        with self._tx() as cur:
            cur.execute(
                "SELECT i.job_id, i.seq, i.dest_key, i.upload_id, i.part_size, j.destination, j.spec "
                "FROM migration_items i JOIN migration_jobs j ON j.job_id = i.job_id "
                "WHERE i.upload_id IS NOT NULL "
                "AND (i.lease_until IS NULL OR i.lease_until < now()) "
                "AND (i.state IN ('failed', 'cancelled') OR j.state IN ('cancelled', 'failed')) "
                "ORDER BY i.job_id, i.seq LIMIT %s",
                (limit,),
            )
            return [Orphan(**row) for row in cur.fetchall()]


def confirmed_parts(rows: list[PartRow], listed: list[PartInfo]) -> dict[int, tuple[PartInfo, str]]:
    """Pure: parts recorded as done AND listed by the provider with the same size (and ETag),
    with the fingerprint recorded when they were sent (to notice a source that changed)."""
    by_number = {p.number: p for p in listed}
    confirmed: dict[int, tuple[PartInfo, str]] = {}
    for row in rows:
        part = by_number.get(row.number)
        if not row.done or part is None or part.size != row.size:
            continue
        if row.etag and part.etag and normalize_etag(row.etag) != normalize_etag(part.etag):
            continue
        confirmed[row.number] = (PartInfo(row.number, row.size, part.etag or row.etag or ""), row.fingerprint)
    return confirmed
