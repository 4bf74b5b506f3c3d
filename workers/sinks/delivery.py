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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
import structlog

from mountsync.shared.catalog.change_log import ChangeEntry, read_changes
from mountsync.shared.errors import (
    ConfigError,
    DeliveryFailed,
    MountsyncError,
    PlatformAuthRejected,
    PlatformRequestRejected,
    PlatformUnavailable,
)
from mountsync.workers.sinks import store
from mountsync.workers.sinks.lease import SinkLease
from mountsync.workers.sinks.retry import after_failure
from mountsync.workers.sinks.store import Sink, SinkEvent

log = structlog.get_logger("mountsync.sinks")

BATCH_MAX = 500  # entries per POST (issue 16); a connector takes the same pages
BUDGET_S = 20.0
CHECK_EVERY_S = 5.0


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


def read_batch(
    conn: psycopg.Connection, sink: Sink, after: int, limit: int = BATCH_MAX
) -> tuple[list[ChangeEntry], int]:
    """The sink's entries after ``after`` and the cursor to store once they are delivered.

    With no entries left for the sink's mounts, the new cursor is the log's visible head, so a
    sink of a quiet mount does not re-read the other mounts' entries forever.
    """
    mount = sink.mounts[0] if len(sink.mounts) == 1 else None
    page = read_changes(conn, after, mount=mount, limit=limit)
    last = page[-1].cursor if page else after
    if len(page) < limit:
        # Caught up: take the head first, then read up to it once more (an entry may have committed
        # since the first read), so everything at or below the stored cursor was seen.
        head = visible_head(conn)
        if head > last:
            later = read_changes(conn, last, mount=mount, limit=limit - len(page))
            page += later
            last = later[-1].cursor if later else last
            if len(page) < limit:  # all of them up to the head: none of this mount's are left below it
                last = max(last, head)
    conn.commit()
    mine = [e for e in page if not sink.mounts or e.mount in sink.mounts]
    mine = [e for e in mine if e.key.startswith(str(sink.options.get("prefix") or ""))]
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
        return RunReport(busy=True, retry_in_s=lease.remaining_s())
    with lease.kept_alive(), pool.connection() as conn:
        return _run_leased(conn, lease, sink_id, open_receiver, retry_for_s, budget_s, jitter)


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
    checked = [time.monotonic()]

    def keep_going() -> bool:
        # Lease and state are checked every few seconds, not per batch (two round trips each).
        now = time.monotonic()
        if now >= deadline:
            return False
        if now - checked[0] < CHECK_EVERY_S:
            return True
        checked[0] = now
        return not lease.lost and _still_active(conn, sink_id)

    try:
        more = "changes" in sink.events and _deliver_changes(conn, sink, receiver, report, keep_going)
        if not more and any(t != "changes" for t in sink.events):
            more = _deliver_events(conn, sink, receiver, report, keep_going)
        report.more = more
        return report
    except DeliveryFailed as exc:
        conn.rollback()
        _record_failure(conn, sink, exc, retry_for_s, jitter, report)
        return report
    finally:
        receiver.close()


def _still_active(conn: psycopg.Connection, sink_id: int) -> bool:
    row = conn.execute("SELECT state FROM sinks WHERE id = %s", (sink_id,)).fetchone()
    conn.commit()
    return row is not None and row[0] == "active"


InFlight = tuple["Future[None]", int, int]


def _deliver_changes(
    conn: psycopg.Connection, sink: Sink, receiver: Receiver, report: RunReport, keep_going: Callable[[], bool]
) -> bool:
    """Deliver change batches in cursor order; True when it stopped with work left.

    One batch is in flight while the next is read: the POST waits on the network, the read on
    PostgreSQL, so overlapping them nearly doubles throughput. The cursor still moves only after
    the in-flight batch was accepted, and a failed batch discards the one read after it.
    """
    after = sink.cursor
    with ThreadPoolExecutor(1, thread_name_prefix="sink-post") as sender:
        in_flight: InFlight | None = None
        while True:
            entries, through = read_batch(conn, sink, after)
            if in_flight is not None:
                _settle(conn, sink, in_flight, report)
                in_flight = None
            if through <= after:
                return False
            if entries:
                in_flight = (sender.submit(receiver.deliver_changes, entries), through, len(entries))
            else:  # only other mounts' entries: skip past them
                store.advance(conn, sink.id, cursor=through)
                conn.commit()
            after = through
            if not keep_going():
                if in_flight is not None:
                    _settle(conn, sink, in_flight, report)
                return True


def _settle(conn: psycopg.Connection, sink: Sink, in_flight: InFlight, report: RunReport) -> None:
    """Wait for the batch in flight (raising its ``DeliveryFailed``), then record it as delivered."""
    future, through, count = in_flight
    future.result()
    store.advance(conn, sink.id, cursor=through, delivered=count)
    conn.commit()
    report.delivered += count
    report.batches += 1


def _deliver_events(
    conn: psycopg.Connection, sink: Sink, receiver: Receiver, report: RunReport, keep_going: Callable[[], bool]
) -> bool:
    """Deliver alerts and migration events after the sink's events cursor; True when work is left."""
    topics = [t for t in sink.events if t != "changes"]
    after = sink.events_cursor
    while True:
        events = store.read_events(conn, after, topics, BATCH_MAX)
        conn.commit()
        if not events:
            return False
        receiver.deliver_events(events)
        store.advance(conn, sink.id, events_cursor=events[-1].id, delivered=len(events))
        conn.commit()
        report.delivered += len(events)
        report.batches += 1
        after = events[-1].id
        if not keep_going():
            return True


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


@contextmanager
def platform_errors() -> Iterator[None]:
    """A platform's errors (Label Studio, Girder) as ``DeliveryFailed``: back off, pause after the limit."""
    try:
        yield
    except PlatformUnavailable as exc:
        raise DeliveryFailed(str(exc), None, exc.retry_after_s) from None
    except PlatformAuthRejected as exc:
        raise DeliveryFailed(str(exc), 401) from None
    except PlatformRequestRejected as exc:
        raise DeliveryFailed(str(exc), exc.status) from None
    except (ConfigError, psycopg.OperationalError) as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
