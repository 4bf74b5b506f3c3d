"""Keeping leases of received messages alive while they wait in a batch (SQS visibility,
Storage Queue visibility, Event Grid locks), so a slow batch is not redelivered to another consumer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog

log = structlog.get_logger("mountsync.producer")


class LeaseKeeper:
    """Renews the leases (locks, visibility) of messages held longer than ``every_s`` seconds.

    Sources ``hold`` what they received and ``drop`` what they settled; a daemon thread calls
    ``renew`` for anything still held, so a slow batch is not redelivered to another consumer.
    """

    def __init__(self, renew: Callable[[list[Any]], None], every_s: float | None) -> None:
        self._renew = renew
        self._every_s = every_s
        self._held: dict[int, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if every_s:
            self._thread = threading.Thread(target=self._loop, name="lease-keeper", daemon=True)
            self._thread.start()

    def hold(self, items: Iterable[Any]) -> None:
        now = time.monotonic()
        with self._lock:
            self._held.update((id(item), (now, item)) for item in items)

    def drop(self, items: Iterable[Any]) -> None:
        with self._lock:
            for item in items:
                self._held.pop(id(item), None)

    def renewed(self, items: Iterable[Any]) -> None:
        now = time.monotonic()
        with self._lock:
            for item in items:
                if id(item) in self._held:
                    self._held[id(item)] = (now, item)

    def due(self) -> list[Any]:
        assert self._every_s
        cutoff = time.monotonic() - self._every_s
        with self._lock:
            return [item for at, item in self._held.values() if at <= cutoff]

    def _loop(self) -> None:
        assert self._every_s
        while not self._stop.wait(min(self._every_s / 4, 5.0)):
            due = self.due()
            if due:
                try:
                    self._renew(due)
                except Exception as exc:  # never kill the keeper; the lease may lapse (redelivery)
                    log.warning("lease renewal failed; messages may be redelivered", error=str(exc))
                self.renewed(due)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
