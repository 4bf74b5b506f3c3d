"""Deliveries to a webhook, signed per the Standard Webhooks specification.

Each POST carries ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (``v1,`` +
base64 HMAC-SHA256 of ``id.timestamp.body``, signed by the ``standardwebhooks`` library), so a
receiver verifies it with that library and deduplicates on the id. The id is stable per batch:
``changes-FIRST-LAST`` (the batch's first and last cursor) or ``alerts-N`` / ``migrations-N``,
so a redelivery after a crash or a retry has the same id.

Body of a change batch (``data.entries`` have the fields of ``GET /api/v1/changes``)::

    {"type": "mountsync.changes", "timestamp": ISO, "data": {"sink", "first_cursor",
     "last_cursor", "entries": [...]}}

Alerts and migration events: ``{"type": "mountsync.alerts.KIND", "timestamp", "data": {...}}``.
Any 2xx accepts; anything else is a ``DeliveryFailed`` (the policy in ``retry`` decides).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import requests
from standardwebhooks.webhooks import Webhook

from mountsync.shared.catalog.change_log import ChangeEntry
from mountsync.shared.catalog.sinks import safe_target
from mountsync.shared.errors import DeliveryFailed
from mountsync.workers.connectors.http import retry_after_seconds
from mountsync.workers.sinks.store import SinkEvent

TIMEOUT_S = 15.0
USER_AGENT = "mountsync-webhooks"


def change_batch_body(sink: str, entries: Sequence[ChangeEntry]) -> dict[str, Any]:
    return {
        "type": "mountsync.changes",
        "timestamp": entries[-1].applied_at.isoformat(),
        "data": {
            "sink": sink,
            "first_cursor": entries[0].cursor,
            "last_cursor": entries[-1].cursor,
            "entries": [e.to_json() for e in entries],
        },
    }


def event_body(event: SinkEvent) -> dict[str, Any]:
    return {"type": f"mountsync.{event.topic}.{event.kind}", "timestamp": event.created_at.isoformat(),
            "data": event.payload}  # fmt: skip


class WebhookReceiver:
    """One subscription's receiver URL and signing secret (the plain secret lives only in memory)."""

    def __init__(self, sink: str, url: str, secret: str, timeout_s: float = TIMEOUT_S) -> None:
        self.sink = sink
        self._url = url
        self._signer = Webhook(secret)
        self._timeout_s = timeout_s
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def deliver_changes(self, entries: Sequence[ChangeEntry]) -> None:
        self.post(f"changes-{entries[0].cursor}-{entries[-1].cursor}", change_batch_body(self.sink, entries))

    def deliver_events(self, events: Sequence[SinkEvent]) -> None:
        for event in events:
            self.post(f"{event.topic}-{event.id}", event_body(event))

    def post(self, message_id: str, body: dict[str, Any]) -> int:
        """Sign and POST one message; returns the 2xx status or raises ``DeliveryFailed``."""
        data = json.dumps(body, separators=(",", ":"), default=str)
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(message_id, now, data),
        }
        where = safe_target(self._url)
        try:
            response = self._session.post(self._url, data=data.encode(), headers=headers, timeout=self._timeout_s)
        except requests.RequestException as exc:
            raise DeliveryFailed(f"webhook {where} unreachable: {type(exc).__name__}") from None
        if 200 <= response.status_code < 300:
            return response.status_code
        raise DeliveryFailed(
            f"webhook {where} answered {response.status_code}",
            response.status_code,
            retry_after_seconds(response.headers.get("Retry-After")),
        )
