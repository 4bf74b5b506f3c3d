"""Delivering finished links to the submitter: an HTTP POST or a Celery task sent by name.

A batch is ``{"job_id", "batch", "links": [{"entity_id", "link", "size", "checksum"}]}`` with at
most 1,000 links. Delivery is at least once: receivers should treat (job_id, batch) as
idempotent. Each attempt is one task run; a retryable failure re-queues the task after a
backoff with jitter (``Retry-After`` honoured, capped), and after ``callback_attempts`` the
batch is recorded as failed with the reason (the job then ends ``completed_with_errors``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from mountsync.shared.migration.spec import Callback

HTTP_TIMEOUT_S = 30.0
USER_AGENT = "mountsync-migration/1"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt: ``state`` delivered | retry | failed, with the reason and any
    ``Retry-After`` seconds the receiver asked for."""

    state: str
    reason: str | None = None
    retry_after_s: float | None = None


def build_payload(job_id: str, batch: int, links: list[dict[str, Any]]) -> dict[str, Any]:
    return {"job_id": job_id, "batch": batch, "links": links}


def classify_status(status: int) -> str:
    """2xx delivered; 408, 425, 429 and 5xx are worth retrying; other codes are final."""
    if 200 <= status < 300:
        return "delivered"
    if status in (408, 425, 429) or status >= 500:
        return "retry"
    return "failed"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if now is None:
        import time

        now = time.time()
    return max(moment.timestamp() - now, 0.0)


def post_json(url: str, payload: dict[str, Any], timeout: float = HTTP_TIMEOUT_S) -> Attempt:
    """POST ``payload``; network errors are retryable, HTTP codes classified."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status = response.status
            retry_after = None
    except urllib.error.HTTPError as exc:
        status = exc.code
        retry_after = parse_retry_after(exc.headers.get("Retry-After"))
        exc.close()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Attempt("retry", f"POST {_safe(url)} failed: {reason}")
    state = classify_status(status)
    reason = None if state == "delivered" else f"POST {_safe(url)} answered HTTP {status}"
    return Attempt(state, reason, retry_after)


def send_task(app: Any, callback: Callback, payload: dict[str, Any]) -> Attempt:
    """Send the batch as ``callback.task(payload)`` on ``callback.queue`` (the submitter's
    queue, declared on the fly: it is not one of mountsync's own queues)."""
    from kombu.entity import Queue

    try:
        queue = Queue(callback.queue, routing_key=callback.queue)
        app.send_task(callback.task, args=[payload], queue=queue)
    except Exception as exc:  # kombu OperationalError, redis errors: the broker is down
        return Attempt("retry", f"sending task {callback.task} failed: {exc}")
    return Attempt("delivered")


def deliver(
    callback: Callback,
    payload: dict[str, Any],
    *,
    app: Any,
    post: Callable[[str, dict[str, Any]], Attempt] = post_json,
) -> Attempt:
    if callback.url:
        return post(callback.url, payload)
    return send_task(app, callback, payload)


def _safe(url: str) -> str:
    """The URL without its query string (tokens sometimes travel there)."""
    return url.split("?", 1)[0]
