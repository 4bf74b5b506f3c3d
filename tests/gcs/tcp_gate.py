"""A TCP forwarder in front of the Pub/Sub emulator that can stop a client's bytes (fault injection).

Streaming pull runs over one gRPC (HTTP/2) connection, so acks cannot be picked out like an
HTTP call. ``hold()`` stops forwarding everything the client sends from then on (acks, modacks)
while the server's messages still reach it: the producer receives and enqueues, but its acks
never arrive, exactly as if it died between the two. ``cut()`` then closes every connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpGate:
    def __init__(self, upstream_host: str) -> None:
        host, _, port = upstream_host.rpartition(":")
        self._upstream = (host, int(port))
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._held = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.withheld_bytes = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        """From now on, bytes from clients are kept back (never forwarded)."""
        self._held.set()

    def cut(self) -> None:
        """Close every connection (the held bytes die with them) and accept new ones unheld."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _close(sock)
        self._held.clear()

    def close(self) -> None:
        self._closed.set()
        _close(self._listener)
        self.cut()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                break
            if not data:
                break
            if from_client and self._held.is_set():
                self.withheld_bytes += len(data)
                continue
            try:
                target.sendall(data)
            except OSError:
                break
        _close(source)
        _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
