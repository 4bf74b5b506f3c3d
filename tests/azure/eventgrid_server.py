"""The project's own Event Grid stand-in (no emulator exists), plus event publishers for tests.

``EventGridServer``: a namespace-topic server (stdlib HTTP) speaking the REST API the real
``azure-eventgrid`` 4.x clients use (api-version 2024-06-01): ``:publish``, ``:receive`` (long
poll), ``:acknowledge``, ``:release`` (with ``releaseDelayInSeconds``), ``:reject``, ``:renewLock``.
Locks expire (the event comes back with ``deliveryCount + 1``); after ``max_delivery_count``
deliveries an event is dead-lettered in the server. Partial failures come back, like the real
service, as HTTP 200 with ``failedLockTokens`` (tests can force some with ``fail_tokens``).
Auth is ``Authorization: SharedAccessKey <key>``.

``BlobEventFactory`` (in ``blob_events``) performs real Azurite operations and builds each event
from the SDK's responses (etag, size, url, request id); ``WebhookDelivery`` pushes events to a
webhook like Event Grid does (validation handshake first); ``queue_delivery`` puts them on a
Storage Queue as base64 JSON.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.standins.azure import free_port

ROUTE = re.compile(r"^/topics/(?P<topic>[^/:]+)(?:/eventsubscriptions/(?P<sub>[^/:]+))?:(?P<op>[A-Za-z]+)$")
RELEASE_DELAYS = {0, 10, 60, 600, 3600}


@dataclass
class _Delivery:
    event: dict[str, Any]
    delivery_count: int = 0
    available_at: float = 0.0
    token: str | None = None
    locked_until: float = 0.0


@dataclass
class Subscription:
    """One event subscription: a queue of deliveries with locks."""

    lock_s: float
    max_delivery_count: int
    ready: deque[_Delivery] = field(default_factory=deque)
    locked: dict[str, _Delivery] = field(default_factory=dict)
    acked: list[dict[str, Any]] = field(default_factory=list)
    dead_lettered: list[dict[str, Any]] = field(default_factory=list)
    received: int = 0
    released: int = 0

    def expire_locks(self, now: float) -> None:
        for token, item in list(self.locked.items()):
            if item.locked_until <= now:
                del self.locked[token]
                self._requeue(item, now)

    def _requeue(self, item: _Delivery, available_at: float) -> None:
        item.token = None
        if item.delivery_count >= self.max_delivery_count:
            self.dead_lettered.append(item.event)
        else:
            item.available_at = available_at
            self.ready.append(item)

    def take(self, now: float, limit: int) -> list[_Delivery]:
        out: list[_Delivery] = []
        for _ in range(len(self.ready)):
            if len(out) >= limit:
                break
            item = self.ready.popleft()
            if item.available_at > now:
                self.ready.append(item)
                continue
            item.delivery_count += 1
            item.token = uuid.uuid4().hex
            item.locked_until = now + self.lock_s
            self.locked[item.token] = item
            out.append(item)
        self.received += len(out)
        return out

    @property
    def backlog(self) -> int:
        return len(self.ready) + len(self.locked)


class EventGridServer:
    """Namespace topics and subscriptions in memory, served on a free 127.0.0.1 port."""

    def __init__(
        self, key: str = "test-key", *, lock_s: float = 60.0, max_delivery_count: int = 10,
        max_wait_cap_s: float = 2.0,
    ) -> None:  # fmt: skip
        self.key = key
        self.lock_s = lock_s
        self.max_delivery_count = max_delivery_count
        self.max_wait_cap_s = max_wait_cap_s  # tests need not wait the SDK's 10 s minimum
        self.fail_tokens: set[str] = set()
        # Cleared: acknowledge calls block (a consumer can be killed between enqueue and ack).
        self.acks_open = threading.Event()
        self.acks_open.set()
        self.requests: list[str] = []
        self._topics: dict[str, dict[str, Subscription]] = {}
        self._cond = threading.Condition()
        self.port = free_port()
        self._httpd = _QuietServer(("127.0.0.1", self.port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EventGridServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def subscription(self, topic: str, name: str) -> Subscription:
        """Create (or get) a subscription; events published afterwards are delivered to it."""
        with self._cond:
            subs = self._topics.setdefault(topic, {})
            if name not in subs:
                subs[name] = Subscription(self.lock_s, self.max_delivery_count)
            return subs[name]

    def locks_expired(self, topic: str, name: str) -> bool:
        """True once no event of the subscription is locked any more (expired locks requeued)."""
        sub = self.subscription(topic, name)
        with self._cond:
            sub.expire_locks(time.monotonic())
            return not sub.locked

    def publish(self, topic: str, events: list[dict[str, Any]]) -> None:
        with self._cond:
            for sub in self._topics.setdefault(topic, {}).values():
                for event in events:
                    sub.ready.append(_Delivery(event=json.loads(json.dumps(event))))
            self._cond.notify_all()

    def receive(self, topic: str, name: str, max_events: int, wait_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + min(wait_s, self.max_wait_cap_s)
        sub = self.subscription(topic, name)
        with self._cond:
            while True:
                now = time.monotonic()
                sub.expire_locks(now)
                taken = sub.take(now, max_events)
                if taken or now >= deadline:
                    break
                self._cond.wait(min(0.05, deadline - now))
        return {"value": [
            {"brokerProperties": {"lockToken": d.token, "deliveryCount": d.delivery_count},
             "event": d.event} for d in taken
        ]}  # fmt: skip

    def settle(self, topic: str, name: str, op: str, tokens: list[str], delay: int) -> dict[str, Any]:
        sub = self.subscription(topic, name)
        ok: list[str] = []
        failed: list[dict[str, Any]] = []
        with self._cond:
            now = time.monotonic()
            sub.expire_locks(now)
            for token in tokens:
                item = sub.locked.get(token)
                if item is None or token in self.fail_tokens:
                    error = {"code": "TokenLost", "message": "Token has expired or is unknown."}
                    failed.append({"lockToken": token, "error": error})
                    continue
                ok.append(token)
                self._apply(sub, op, token, item, now, delay)
            self._cond.notify_all()
        return {"succeededLockTokens": ok, "failedLockTokens": failed}

    def _apply(self, sub: Subscription, op: str, token: str, item: _Delivery, now: float, delay: int) -> None:
        if op == "renewLock":
            item.locked_until = now + sub.lock_s
            return
        del sub.locked[token]
        if op == "acknowledge":
            sub.acked.append(item.event)
        elif op == "reject":
            sub.dead_lettered.append(item.event)
        elif op == "release":
            sub.released += 1
            sub._requeue(item, now + delay)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed mid-request (the point of some tests) is not an error here."""


def _handler_for(server: EventGridServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.headers.get("Authorization") != f"SharedAccessKey {server.key}":
                self._reply(401, {"error": {"code": "Unauthorized", "message": "bad key"}})
                return
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            match = ROUTE.match(parts.path)
            if match is None or "api-version" not in query:
                self._reply(404, {"error": {"code": "NotFound", "message": parts.path}})
                return
            server.requests.append(match["op"])
            try:
                status, reply = _dispatch(server, match, query, body)
            except (ValueError, KeyError, TypeError) as exc:
                status, reply = 400, {"error": {"code": "BadRequest", "message": str(exc)}}
            self._reply(status, reply)

    return Handler


def _dispatch(server: EventGridServer, match: re.Match[str], query: dict[str, str], body: bytes) -> tuple[int, Any]:
    topic, sub, op = match["topic"], match["sub"], match["op"]
    if op == "publish" and sub is None:
        payload = json.loads(body)
        server.publish(topic, payload if isinstance(payload, list) else [payload])
        return 200, {}
    if sub is None:
        return 404, {"error": {"code": "NotFound", "message": op}}
    if op == "receive":
        max_events = int(query.get("maxEvents", 1))
        wait_s = float(query.get("maxWaitTime", 60))
        if not 1 <= max_events <= 100 or not 10 <= wait_s <= 120:
            raise ValueError("maxEvents must be 1..100 and maxWaitTime 10..120")
        return 200, server.receive(topic, sub, max_events, wait_s)
    if op in ("acknowledge", "release", "reject", "renewLock"):
        if op == "acknowledge":
            server.acks_open.wait(60)
        tokens = json.loads(body)["lockTokens"]
        delay = int(query.get("releaseDelayInSeconds", 0))
        if delay not in RELEASE_DELAYS:
            raise ValueError(f"releaseDelayInSeconds {delay} not in {sorted(RELEASE_DELAYS)}")
        return 200, server.settle(topic, sub, op, tokens, delay)
    return 404, {"error": {"code": "NotFound", "message": op}}
