"""One sink's delivery run: read the log after its cursor, hand batches to its receiver, advance.

Run by the ``mountsync.sinks.deliver`` task under the sink's lease (one deliverer per sink, so one
mount's changes reach a sink in cursor order; different sinks deliver in parallel). The cursor
moves only after the receiver accepted a batch, in its own commit: a crash between the two
redelivers that batch with the same id (at least once). A run stops after ``budget_s`` and asks
for another, so one busy sink never holds a worker for long.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
import structlog

from mountsync.shared.catalog.change_log import ChangeEntry, read_changes
from mountsync.shared.errors import DeliveryFailed, MountsyncError
from mountsync.workers.sinks import store
from mountsync.workers.sinks.lease import SinkLease
from mountsync.workers.sinks.retry import after_failure
from mountsync.workers.sinks.store import Sink, SinkEvent

log = structlog.get_logger("mountsync.sinks")

BATCH_MAX = 500  # entries per POST (issue 16); a connector takes the same pages
BUDGET_S = 20.0


class Receiver(Protocol):
    """Where a sink delivers. Both calls raise ``DeliveryFailed`` when the batch was not accepted,
    and must be safe to repeat with the same batch (redelivery after a crash)."""

    def deliver_changes(self, entries: Sequence[ChangeEntry]) -> None: ...

    def deliver_events(self, events: Sequence[SinkEvent]) -> None: ...

    def close(self) -> None: ...


ReceiverFactory = Callable[[Sink], Receiver]


@dataclass
class RunReport:
    """What one run did; ``more`` says the run stopped with work left (budget or lease lost)."""

    sink: str = ""
    busy: bool = False
    skipped: str = ""
    delivered: int = 0
    batches: int = 0
    more: bool = False
    failed: str = ""
    retry_in_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in ("", 0, 0.0, False)}


def lease_key(prefix: str, sink_id: int) -> str:
    return f"{prefix}mountsync:sink:lease:{sink_id}"


def visible_head(conn: psycopg.Connection) -> int:
    """The highest committed cursor. Appends are serialized, so every lower cursor is visible too."""
    row = conn.execute("SELECT coalesce(max(cursor), 0) FROM change_log").fetchone()
    return int(row[0]) if row else 0


def read_batch(conn: psycopg.Connection, sink: Sink, limit: int = BATCH_MAX) -> tuple[list[ChangeEntry], int]:
    """The sink's next entries and the cursor to store once they are delivered.

    With no entries left for the sink's mounts, the new cursor is the log's visible head, so a
    sink of a quiet mount does not re-read the other mounts' entries forever.
    """
    head = visible_head(conn)
    mount = sink.mounts[0] if len(sink.mounts) == 1 else None
    page = read_changes(conn, sink.cursor, mount=mount, limit=limit)
    conn.commit()
    mine = [e for e in page if not sink.mounts or e.mount in sink.mounts]
    mine = [e for e in mine if e.key.startswith(str(sink.options.get("prefix") or ""))]
    last = page[-1].cursor if page else sink.cursor
    if len(page) < limit:
        last = max(last, head)
    return mine, last


def run_delivery(
    pool: Any,
    redis: Any,
    redis_prefix: str,
    sink_id: int,
    open_receiver: ReceiverFactory,
    *,
    retry_for_s: float,
    budget_s: float = BUDGET_S,
    jitter: Callable[[], float] = random.random,
) -> RunReport:
    """Deliver what the sink has not delivered yet, under its lease, within ``budget_s``."""
    lease = SinkLease(redis, lease_key(redis_prefix, sink_id))
    if not lease.acquire():
        return RunReport(busy=True)
    try:
        with pool.connection() as conn:
            return _run_leased(conn, lease, sink_id, open_receiver, retry_for_s, budget_s, jitter)
    finally:
        lease.release()


def _run_leased(
    conn: psycopg.Connection,
    lease: SinkLease,
    sink_id: int,
    open_receiver: ReceiverFactory,
    retry_for_s: float,
    budget_s: float,
    jitter: Callable[[], float],
) -> RunReport:
    sink = store.get_sink_by_id(conn, sink_id)
    conn.commit()
    if sink is None:
        return RunReport(skipped="removed")
    report = RunReport(sink=sink.name)
    if sink.state != "active":
        report.skipped = sink.state
        return report
    if sink.next_attempt_at is not None and sink.next_attempt_at > datetime.now(UTC):
        report.skipped = "backing off"
        report.retry_in_s = (sink.next_attempt_at - datetime.now(UTC)).total_seconds()
        return report
    try:
        receiver = open_receiver(sink)
    except MountsyncError as exc:  # a missing key or token variable, a refused token: retried, then paused
        _record_failure(conn, sink, DeliveryFailed(f"cannot open the receiver: {exc}"), retry_for_s, jitter, report)
        return report
    deadline = time.monotonic() + budget_s
    try:
        while True:
            progressed = _deliver_step(conn, sink, receiver, report)
            if not progressed:
                return report
            sink = store.get_sink_by_id(conn, sink_id) or sink
            conn.commit()
            if time.monotonic() >= deadline or not lease.renew() or sink.state != "active":
                report.more = sink.state == "active"
                return report
    except DeliveryFailed as exc:
        conn.rollback()
        _record_failure(conn, sink, exc, retry_for_s, jitter, report)
        return report
    finally:
        receiver.close()


def _deliver_step(conn: psycopg.Connection, sink: Sink, receiver: Receiver, report: RunReport) -> bool:
    """Deliver one batch of changes and one of events; True when anything moved."""
    moved = False
    if "changes" in sink.events:
        entries, through = read_batch(conn, sink)
        if entries:
            receiver.deliver_changes(entries)
            report.delivered += len(entries)
            report.batches += 1
        if through > sink.cursor:
            store.advance(conn, sink.id, cursor=through, delivered=len(entries))
            conn.commit()
            moved = True
    topics = [t for t in sink.events if t != "changes"]
    if topics:
        events = store.read_events(conn, sink.events_cursor, topics, BATCH_MAX)
        conn.commit()
        if events:
            receiver.deliver_events(events)
            store.advance(conn, sink.id, events_cursor=events[-1].id, delivered=len(events))
            conn.commit()
            report.delivered += len(events)
            report.batches += 1
            moved = True
    return moved


def _record_failure(
    conn: psycopg.Connection,
    sink: Sink,
    exc: DeliveryFailed,
    retry_for_s: float,
    jitter: Callable[[], float],
    report: RunReport,
) -> None:
    fresh = store.get_sink_by_id(conn, sink.id) or sink
    since = fresh.failing_since or datetime.now(UTC)
    outcome = after_failure(
        status=exc.status,
        attempts=fresh.attempts,
        failing_for_s=(datetime.now(UTC) - since).total_seconds(),
        retry_after_s=exc.retry_after_s,
        retry_for_s=retry_for_s,
        jitter=jitter(),
    )
    report.failed = str(exc)
    if outcome.stop:
        store.set_state(conn, sink.id, outcome.stop, f"{outcome.reason}: {exc}")
        store.raise_alert(conn, sink.name, f"sink-{outcome.stop}", {"reason": outcome.reason, "error": str(exc)})
        conn.commit()
        log.error(f"sink {outcome.stop}", sink=sink.name, reason=outcome.reason, error=str(exc))
        return
    store.record_failure(conn, sink.id, str(exc), outcome.retry_in_s)
    conn.commit()
    report.retry_in_s = outcome.retry_in_s
    log.warning("sink delivery failed; retrying", sink=sink.name, error=str(exc), attempt=fresh.attempts + 1,
                retry_in_s=round(outcome.retry_in_s, 2))  # fmt: skip
