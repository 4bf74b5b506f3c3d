"""The dead-letter store: payloads that can never be processed, kept with the reason."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from mountsync.shared.errors import BadInput

# Payloads above this are stored truncated (the reason says so); nothing is dropped silently.
MAX_STORED_PAYLOAD = 1024 * 1024
_IDS_SQL = (
    "SELECT id FROM dead_letters WHERE (%(all)s OR replayed_at IS NULL) "
    "AND (%(source)s::text IS NULL OR source = %(source)s OR source LIKE %(like)s) "
    "ORDER BY id DESC LIMIT %(limit)s"
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    source: str
    message_id: str | None
    reason: str
    payload: bytes
    attributes: dict[str, Any]
    created_at: datetime
    replayed_at: datetime | None

    def describe(self, *, with_payload: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "source": self.source,
            "message_id": self.message_id,
            "reason": self.reason,
            "bytes": len(self.payload),
            "created_at": self.created_at.isoformat(),
            "replayed_at": self.replayed_at.isoformat() if self.replayed_at else None,
        }
        if with_payload:
            out["payload"] = self.payload.decode("utf-8", "replace")
            out["attributes"] = self.attributes
        return out


class DeadLetters:
    """Records and reads dead letters; ``record`` commits before returning (ack only after it)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def record(
        self,
        source: str,
        message_id: str | None,
        reason: str,
        payload: bytes,
        attributes: Mapping[str, Any] | None = None,
    ) -> int:
        if len(payload) > MAX_STORED_PAYLOAD:
            reason = f"{reason} (payload of {len(payload)} bytes stored truncated)"
            payload = payload[:MAX_STORED_PAYLOAD]
        with self._pool.connection() as conn:
            row = conn.execute(
                """INSERT INTO dead_letters (source, message_id, reason, payload, attributes)
                   VALUES (%s, %s, %s, %s, %s) RETURNING id""",
                (source, message_id, reason[:2000], payload, Jsonb(dict(attributes or {}))),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def list(self, *, include_replayed: bool = False, limit: int = 100) -> list[DeadLetter]:
        where = "" if include_replayed else "WHERE replayed_at IS NULL"
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT id, source, message_id, reason, payload, attributes, created_at, "
                f"replayed_at FROM dead_letters {where} ORDER BY id DESC LIMIT %s",
                (limit,),
            ).fetchall()
        return [_row(r) for r in rows]

    def ids(self, *, include_replayed: bool = False, source: str | None = None, limit: int = 100) -> builtins.list[int]:
        """Ids of letters, newest first; ``source`` ending in ``:`` (``task:``) matches a family."""
        like = f"{source}%" if source and source.endswith(":") else None
        params = {"all": include_replayed, "source": source, "like": like, "limit": limit}
        with self._pool.connection() as conn:
            return [int(r[0]) for r in conn.execute(_IDS_SQL, params).fetchall()]

    def get(self, letter_id: int) -> DeadLetter:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT id, source, message_id, reason, payload, attributes, created_at, "
                "replayed_at FROM dead_letters WHERE id = %s",
                (letter_id,),
            ).fetchone()
        if row is None:
            raise BadInput(f"no dead letter with id {letter_id}; `mountsync deadletters list`")
        return _row(row)

    def mark_replayed(self, conn: psycopg.Connection, letter_id: int) -> None:
        conn.execute("UPDATE dead_letters SET replayed_at = now() WHERE id = %s", (letter_id,))

    def keep_open(self, conn: psycopg.Connection, letter_id: int, reason: str) -> None:
        """A replay failed again: the letter stays open with the new reason."""
        conn.execute("UPDATE dead_letters SET reason = %s WHERE id = %s", (reason[:2000], letter_id))

    def count_open(self) -> int:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL").fetchone()
        return int(row[0]) if row else 0


def _row(r: Any) -> DeadLetter:
    return DeadLetter(
        id=r[0],
        source=r[1],
        message_id=r[2],
        reason=r[3],
        payload=bytes(r[4]),
        attributes=dict(r[5] or {}),
        created_at=r[6],
        replayed_at=r[7],
    )
