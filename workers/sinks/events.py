"""Alerts and migration events put where sinks read them (``sink_events``), then a nudge.

Best effort by design: the alert itself is already in the catalog (``mountsync alerts``), so a
failure here is logged and never fails the check that raised it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from mountsync.workers.context import WorkerContext
from mountsync.workers.sinks import store
from mountsync.workers.sinks.tasks import nudge_event_sinks

log = structlog.get_logger("mountsync.sinks")


def publish_alignment_alerts(ctx: WorkerContext, alert_ids: Sequence[int]) -> None:
    from mountsync.workers.alignment import store as alignment_store
    from mountsync.workers.alignment.notify import describe_alert

    try:
        with ctx.pool.connection() as conn:
            for alert_id in alert_ids:
                alert = alignment_store.get_alert(conn, alert_id)
                if alert is not None:
                    payload = describe_alert(alert)
                    store.append_event(conn, "alerts", f"alignment-{alert.status}", payload)
            conn.commit()
        nudge_event_sinks(ctx, "alerts")
    except Exception as exc:
        log.warning("alerts not published to sinks", alerts=list(alert_ids), error=f"{type(exc).__name__}: {exc}")


def publish_closed_alerts(conn: Any, alert_ids: Sequence[int]) -> None:
    """Alerts closed from the CLI (``alerts ack``, ``pin``) as events, so sinks hear of the end
    of a quarantine (the Girder connector clears its folder mark); the sink sweep delivers them."""
    from mountsync.workers.alignment import store as alignment_store
    from mountsync.workers.alignment.notify import describe_alert

    try:
        for alert_id in alert_ids:
            alert = alignment_store.get_alert(conn, alert_id)
            if alert is not None:
                store.append_event(conn, "alerts", f"alignment-{alert.status}", describe_alert(alert))
    except Exception as exc:
        log.warning(
            "closed alerts not published to sinks", alerts=list(alert_ids), error=f"{type(exc).__name__}: {exc}"
        )


def publish_migration_event(kind: str, payload: dict[str, Any]) -> None:
    """A migration job's ending (its final state as ``kind``) for the ``migrations`` subscribers."""
    from mountsync.workers.context import current

    try:
        ctx = current()
        with ctx.pool.connection() as conn:
            store.append_event(conn, "migrations", kind, payload)
            conn.commit()
        nudge_event_sinks(ctx, "migrations")
    except Exception as exc:
        log.warning("migration event not published to sinks", kind=kind, error=f"{type(exc).__name__}: {exc}")
