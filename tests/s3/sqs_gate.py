"""A forwarding HTTP proxy in front of moto that can hold chosen SQS calls (fault injection).

Used to stop a producer exactly between "changes are on Redis" and "SQS message deleted":
``SqsGate(upstream).hold("DeleteMessageBatch")`` makes every such call block (unanswered)
until ``release()``; a held call is never forwarded, as if the process had died before it.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "accept-encoding"}


class SqsGate:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.held: list[dict[str, Any]] = []  # bodies of calls being held
        self._targets: set[str] = set()
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> SqsGate:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def hold(self, operation: str) -> None:
        self._targets.add(f"AmazonSQS.{operation}")

    def release(self) -> None:
        """Let held calls end unanswered (their connection closes); later calls pass."""
        self._targets.clear()
        self._released.set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("X-Amz-Target") in gate._targets:
                    with gate._lock:
                        gate.held.append(json.loads(body or b"{}"))
                    gate._released.wait(timeout=120)
                    self.close_connection = True
                    return
                self._forward(body)

            def _forward(self, body: bytes) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                request = urllib.request.Request(gate.upstream + self.path, data=body, headers=headers, method="POST")
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:
                        status, reply, reply_headers = response.status, response.read(), response.headers
                except urllib.error.HTTPError as err:
                    status, reply, reply_headers = err.code, err.read(), err.headers
                self.send_response(status)
                for key, value in reply_headers.items():
                    if key.lower() not in HOP_HEADERS:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        return Handler
