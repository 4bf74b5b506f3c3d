"""What an alert does outside the catalog: a metric, a log line, and an optional webhook POST.

The webhook URL may carry a token, so it is never logged or put in task arguments: the notify
task receives only the alert id and reads the URL from settings.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import structlog
from prometheus_client import Counter, Histogram

from mountsync.shared.errors import RetryableError
from mountsync.workers.alignment.service import AlertEvent
from mountsync.workers.alignment.store import Alert

log = structlog.get_logger("mountsync.alignment")

ALERTS = Counter(
    "mountsync_alignment_alerts_total",
    "Alignment alerts opened, changed or resolved",
    ["mount", "kind", "action"],
)
QUARANTINES = Counter("mountsync_alignment_quarantines_total", "Datasets put in quarantine", ["mount"])
CHECKS = Counter("mountsync_alignment_checks_total", "Folder checks run", ["outcome"])
CHECK_SECONDS = Histogram(
    "mountsync_alignment_check_seconds", "Time to check one folder",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)  # fmt: skip
WEBHOOK_FAILURES = Counter(
    "mountsync_alignment_webhook_failures_total", "Alert webhook deliveries that failed", ["reason"]
)
WEBHOOK_TIMEOUT_S = 5.0


def report(events: Iterable[AlertEvent]) -> list[int]:
    """Count and log each event; returns the alert ids to deliver to the webhook."""
    deliver: list[int] = []
    for event in events:
        ALERTS.labels(event.mount, event.kind, event.action).inc()
        if event.quarantined and event.action == "opened":
            QUARANTINES.labels(event.mount).inc()
        fields = {
            "alert": event.alert_id, "mount": event.mount, "dataset": event.path,
            "kind": event.kind, "breaking": event.breaking, "quarantined": event.quarantined,
            "first_shifted_index": event.first_shifted_index,
            "frames_moved": event.frames_moved,
            "annotated_frames_moved": event.annotated_frames_moved,
        }  # fmt: skip
        if event.action == "resolved":
            log.info("alignment alert resolved", **fields)
        else:
            log.warning(f"alignment alert {event.action}", **fields)
        deliver.append(event.alert_id)
    return deliver


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def alert_folder(alert: Alert) -> str:
    """The folder CONTRACT.md names: the dataset's folder (a video's is the one holding it)."""
    return alert.path.rpartition("/")[0] if alert.dataset_type == "video" else alert.path


def describe_alert(alert: Alert) -> dict[str, Any]:
    """The alert as operators, the CLI's --json and the webhook see it."""
    return {
        "id": alert.id, "mount": alert.mount, "dataset": alert.path, "folder": alert_folder(alert),
        "dataset_type": alert.dataset_type, "kind": alert.kind, "kinds": list(alert.kinds),
        "breaking": alert.breaking, "status": alert.status,
        "first_shifted_index": alert.first_shifted_index, "frames_moved": alert.frames_moved,
        "annotated_frames_moved": alert.annotated_frames_moved,
        "last_annotated": alert.last_annotated, "quarantined": alert.quarantined,
        "details": alert.details, "checks": alert.checks,
        "created_at": _iso(alert.created_at), "updated_at": _iso(alert.updated_at),
        "closed_at": _iso(alert.closed_at), "closed_by": alert.closed_by,
    }  # fmt: skip


def safe_target(url: str) -> str:
    """Scheme and host of the webhook, for logs (paths and queries may hold tokens)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


def post_webhook(url: str, payload: dict[str, Any], timeout: float = WEBHOOK_TIMEOUT_S) -> int:
    """POST ``payload`` as JSON; ``RetryableError`` on connection errors, 429 and 5xx.

    Other 4xx answers are permanent: counted, logged, and not retried (the receiver refused).
    Returns the HTTP status.
    """
    body = json.dumps({"type": "mountsync.alignment.alert", "alert": payload}).encode()
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "mountsync-alignment"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        if exc.code == 429 or exc.code >= 500:
            WEBHOOK_FAILURES.labels("retryable").inc()
            raise RetryableError(f"alert webhook {safe_target(url)} answered {exc.code}") from None
        WEBHOOK_FAILURES.labels("refused").inc()
        log.error("alert webhook refused the alert", target=safe_target(url), status=exc.code,
                  alert=payload.get("id"))  # fmt: skip
        return int(exc.code)
    except (urllib.error.URLError, OSError) as exc:
        WEBHOOK_FAILURES.labels("unreachable").inc()
        reason = getattr(exc, "reason", exc)
        raise RetryableError(f"alert webhook {safe_target(url)} unreachable: {reason}") from None
