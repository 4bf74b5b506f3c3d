"""Fakes that ship with the package, for tests of mountsync and of code built on it.

They stand for what has no local stand-in or would make a test slow or flaky: a transport fed
from a list (``MemorySource``), time that moves only when told (``ManualClock``), a Celery app
that records what it would send (``RecordingApp``) and a metrics sink that keeps what it is told
(``RecordingMetrics``). Product code never imports this module.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from mountsync.shared.events import RawMessage, Source


class ManualClock:
    """A ``Clock`` that moves only on ``advance`` or ``wait`` (which advances and never blocks)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._t = start
        self._lock = threading.Lock()
        self.waits: list[float] = []  # every wait asked for, in order

    def now(self) -> float:
        with self._lock:
            return self._t

    def monotonic(self) -> float:
        return self.now()

    def now_ns(self) -> int:
        return int(self.now() * 1e9)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += seconds

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        self.advance(max(0.0, seconds))
        return stop.is_set()


class MemorySource:
    """An ``EventSource`` over a list: ``receive`` hands out what is pending, in order, and sets
    ``stop`` (when given) once nothing is left, so ``run_source`` ends after the last batch.
    Acks, nacks, rejects and extensions are recorded by message id."""

    def __init__(self, messages: Iterable[RawMessage] = (), *, name: Source = Source.FS,
                 stop: threading.Event | None = None) -> None:  # fmt: skip
        self.name = name
        self.pending: list[RawMessage] = list(messages)
        self.stop = stop
        self.receives = 0
        self.acked: list[str] = []
        self.nacked: list[str] = []
        self.rejected: list[str] = []
        self.extended: list[str] = []
        self.closed = False

    def put(self, *messages: RawMessage) -> None:
        self.pending.extend(messages)

    def receive(self, max_messages: int, wait_s: float) -> list[RawMessage]:
        self.receives += 1
        if not self.pending:
            if self.stop is not None:
                self.stop.set()
            return []
        batch, self.pending = self.pending[:max_messages], self.pending[max_messages:]
        return batch

    def ack(self, messages: Sequence[RawMessage]) -> list[RawMessage]:
        self.acked += [m.message_id for m in messages]
        return []

    def nack(self, messages: Sequence[RawMessage]) -> None:
        self.nacked += [m.message_id for m in messages]

    def reject(self, messages: Sequence[RawMessage]) -> None:
        self.rejected += [m.message_id for m in messages]

    def extend(self, messages: Sequence[RawMessage], seconds: float) -> None:
        self.extended += [m.message_id for m in messages]

    def close(self) -> None:
        self.closed = True


class SentTask(NamedTuple):
    name: str
    args: list[Any]
    options: dict[str, Any]  # the queue and Celery options (countdown, ...)


class _Result:
    def __init__(self) -> None:
        self.id = uuid.uuid4().hex


class RecordingApp:
    """Stands for the Celery client (``send_task`` only): records tasks instead of sending them."""

    def __init__(self) -> None:
        self.sent: list[SentTask] = []

    def send_task(self, name: str, args: list[Any], queue: str, **options: Any) -> _Result:
        self.sent.append(SentTask(name, list(args), {"queue": queue, **options}))
        return _Result()

    def calls(self) -> list[tuple[str, list[Any]]]:
        """(task name, arguments) of every task sent, in order."""
        return [(task.name, task.args) for task in self.sent]


class RecordingMetrics:
    """A ``MetricsSink`` that keeps totals (counters) and last values (gauges) by metric and labels."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, tuple[str, ...]], float] = {}

    def inc(self, metric: str, *labels: str, amount: float = 1) -> None:
        key = (metric, labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def set(self, metric: str, *labels: str, value: float) -> None:
        self.values[(metric, labels)] = value

    def value(self, metric: str, *labels: str) -> float:
        return self.values.get((metric, labels), 0.0)
