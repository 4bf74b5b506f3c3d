"""A webhook receiver for the tests: a real HTTP server that verifies every delivery with the
``standardwebhooks`` library (as a user's receiver would) and records what it accepted.

``script`` holds the answers to give before accepting (status, Retry-After), one per request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.helpers import free_port


@dataclass
class Delivery:
    id: str
    timestamp: str
    body: dict[str, Any]


@dataclass
class Receiver:
    url: str
    secret: str | None = None
    accepted: list[Delivery] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # ids answered with a scripted failure
    unverified: int = 0
    script: list[tuple[int, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def entries(self) -> list[dict[str, Any]]:
        with self.lock:
            batches = [d.body["data"]["entries"] for d in self.accepted if d.body["type"] == "mountsync.changes"]
        return [e for batch in batches for e in batch]

    def of_type(self, prefix: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.accepted if d.body["type"].startswith(prefix)]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with receiver.lock:
                if receiver.script:
                    status, retry_after = receiver.script.pop(0)
                    receiver.refused.append(headers.get("webhook-id", ""))
                    self.send_response(status)
                    if retry_after is not None:
                        self.send_header("Retry-After", retry_after)
                    self.end_headers()
                    return
            try:
                body = Webhook(receiver.secret or "").verify(data, headers) if receiver.secret else json.loads(data)
            except WebhookVerificationError:
                with receiver.lock:
                    receiver.unverified += 1
                self.send_response(401)
                self.end_headers()
                return
            with receiver.lock:
                receiver.accepted.append(Delivery(headers["webhook-id"], headers["webhook-timestamp"], body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return

    return Handler


def serve_receiver() -> Iterator[Receiver]:
    port = free_port()
    receiver = Receiver(url=f"http://127.0.0.1:{port}/hooks/mountsync")
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(receiver))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def main(port: int, secret: str) -> None:
    """A receiver in its own process (benchmarks): ``GET /stats`` answers what it accepted."""
    receiver = Receiver(url=f"http://127.0.0.1:{port}/", secret=secret)
    handler = _handler(receiver)

    class WithStats(handler):  # type: ignore[valid-type, misc]
        def do_GET(self) -> None:
            with receiver.lock:
                entries = sum(len(d.body["data"].get("entries", [])) for d in receiver.accepted)
                stats = {"entries": entries, "messages": len(receiver.accepted), "unverified": receiver.unverified}
            body = json.dumps(stats).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    ThreadingHTTPServer(("127.0.0.1", port), WithStats).serve_forever()


if __name__ == "__main__":
    import sys

    main(int(sys.argv[1]), sys.argv[2])
