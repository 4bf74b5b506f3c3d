"""A gRPC-aware forwarder in front of the Pub/Sub emulator that can keep a client's acks back.

The subscriber sends everything over one HTTP/2 connection: the streaming pull, the receipt
modack it sends (and waits for) before handing messages over, lease extensions and the
``Acknowledge`` calls. Holding every byte the client sends would also hold the receipt modacks,
and the SDK then blocks 60 s per batch of messages before dispatching them. So the gate reads the
client's HTTP/2 frames, decodes every header block (HPACK keeps state per connection, so none
may be skipped) and, once ``hold()`` is called, drops only the body (DATA frames) of the
``google.pubsub.v1.Subscriber/Acknowledge`` calls. The emulator never learns of those acks,
exactly as if the producer died between enqueueing and acking. ``cut()`` closes every connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = 9
DATA, HEADERS, CONTINUATION = 0x0, 0x1, 0x9
END_HEADERS, PADDED, PRIORITY = 0x4, 0x8, 0x20
ACKNOWLEDGE = "/google.pubsub.v1.Subscriber/Acknowledge"


class AckGate:
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
        self.withheld_acks = 0  # Acknowledge calls whose body never reached the emulator
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        """From now on, the body of every Acknowledge call is dropped; all else passes."""
        self._held.set()

    def cut(self) -> None:
        """Close every connection and accept new ones unheld."""
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
            threading.Thread(target=self._pump_requests, args=(client, server), daemon=True).start()
            threading.Thread(target=_pump, args=(server, client), daemon=True).start()

    def _pump_requests(self, client: socket.socket, server: socket.socket) -> None:
        frames = ClientFrames()
        try:
            while data := client.recv(65536):
                for ack_stream, frame in frames.feed(data):
                    if ack_stream is not None and self._held.is_set():
                        self.withheld_acks += ack_stream not in frames.withheld
                        frames.withheld.add(ack_stream)
                        continue
                    server.sendall(frame)
        except OSError:
            pass
        _close(client)
        _close(server)


class ClientFrames:
    """Splits the client's side of an HTTP/2 connection into frames, knowing which are ack bodies."""

    def __init__(self) -> None:
        self._buffer = b""
        self._preface_seen = False
        self._decoder = hpack.Decoder()
        self._decoder.max_allowed_table_size = 1 << 20  # whatever the server allowed the client
        self._block = b""
        self._ack_streams: set[int] = set()
        self.withheld: set[int] = set()

    def feed(self, data: bytes) -> list[tuple[int | None, bytes]]:
        """Whole frames now complete, each with its stream id if it is an Acknowledge body."""
        self._buffer += data
        out: list[tuple[int | None, bytes]] = []
        if not self._preface_seen:
            if len(self._buffer) < len(PREFACE):
                return out
            out.append((None, self._buffer[: len(PREFACE)]))
            self._buffer = self._buffer[len(PREFACE) :]
            self._preface_seen = True
        while len(self._buffer) >= FRAME_HEADER:
            length = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < FRAME_HEADER + length:
                break
            frame, self._buffer = self._buffer[: FRAME_HEADER + length], self._buffer[FRAME_HEADER + length :]
            kind, flags = frame[3], frame[4]
            stream = int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF
            if kind in (HEADERS, CONTINUATION):
                self._header_fragment(kind, flags, stream, frame[FRAME_HEADER:])
            is_ack_body = kind == DATA and stream in self._ack_streams
            out.append((stream if is_ack_body else None, frame))
        return out

    def _header_fragment(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if kind == HEADERS:
            start, end = 0, len(payload)
            if flags & PADDED:
                start, end = 1, len(payload) - payload[0]
            if flags & PRIORITY:
                start += 5
            payload = payload[start:end]
        self._block += payload
        if not flags & END_HEADERS:
            return
        headers = dict(self._decoder.decode(self._block))
        self._block = b""
        if headers.get(":path") == ACKNOWLEDGE:
            self._ack_streams.add(stream)


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    _close(source)
    _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
