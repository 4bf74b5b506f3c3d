"""An inbox drainer in a child process of ``serve``, so normalizing and publishing a burst does not
take the receiver's GIL (``MOUNTSYNC_INBOX_DRAINER=process``, the default; ``thread`` keeps it in).

The child is spawned (never forked: the parent holds threads, a DB pool and sockets) and builds its
own runtime from the same settings. Every second it sends the drainer's metrics to the parent over
a pipe, and the parent adds them to its own registry, so ``/metrics`` reads as before. A write that
fails means the parent is gone: the child stops, leaving its unsettled entries pending for the
next drainer, as a stopped thread does.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from typing import Any

from prometheus_client import Gauge

from mountsync.shared import metrics
from mountsync.shared.config import Settings
from mountsync.shared.events import Source

RELAY_INTERVAL_S = 1.0
# The drainer yields the CPU to serve's receivers: an answer is what the cloud waits for (and
# retries when late), while the inbox is durable and drains in the time they leave. A receiver
# never starves it for long: a full inbox makes it answer 503 (MOUNTSYNC_INBOX_MAX_DEPTH).
# Measured (the webhook benchmark, batches of 100): queued+200 0.55-0.58x of the baseline at the
# same priority, 0.77-0.81x at +10.
DRAINER_NICENESS = 10
# What a drainer updates (producers/pipeline.py, producers/loop.py); nothing else is relayed.
RELAYED_NAMES = ("EVENTS_RECEIVED", "CHANGES_ENQUEUED", "MESSAGES_ACKED", "ACK_FAILURES", "DEAD_LETTERED",
                 "ENQUEUE_FAILURES", "BACKPRESSURE_PAUSES", "QUEUE_DEPTH")  # fmt: skip
RELAYED = {name: getattr(metrics, name) for name in RELAYED_NAMES}
Sample = tuple[str, tuple[tuple[str, str], ...], float]


def metric_samples() -> list[Sample]:
    """The relayed metrics' current values in this process: (name in ``metrics``, labels, value)."""
    out: list[Sample] = []
    for name, metric in RELAYED.items():
        for family in metric.collect():
            out.extend((name, tuple(sorted(s.labels.items())), s.value) for s in family.samples
                       if not s.name.endswith("_created"))  # fmt: skip
    return out


class MetricRelay:
    """Adds one child's samples to this process's metrics: counters by their growth, gauges as set."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def apply(self, samples: list[Sample]) -> None:
        for name, labels, value in samples:
            metric = RELAYED[name]
            series: Any = metric.labels(**dict(labels)) if labels else metric
            if isinstance(metric, Gauge):
                series.set(value)
                continue
            grown = value - self._seen.get((name, labels), 0.0)
            if grown > 0:
                series.inc(grown)
            self._seen[(name, labels)] = value


def drain_in_child(settings: Settings, source_value: str, consumer: str, pipe: Any) -> None:
    """The child's main: drain until SIGTERM or until the parent is gone."""
    from mountsync.producers.inbox import Drainer
    from mountsync.producers.runtime import build_runtime
    from mountsync.producers.sources import enricher_for, event_entries_for
    from mountsync.shared.logs import configure_logging

    configure_logging(settings)
    os.nice(DRAINER_NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent stops us
    source = Source(source_value)
    runtime = build_runtime(settings, pool_size=2)
    drainer = Drainer(runtime, source, enrich=enricher_for(source, runtime.pool), consumer=consumer,
                      events=event_entries_for(source, runtime))  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: drainer.stop(timeout=0))
    relay = threading.Thread(target=_send_metrics, args=(pipe, drainer), name="metric-relay", daemon=True)
    relay.start()
    try:
        drainer.run()
    finally:
        _send(pipe, metric_samples())
        runtime.close()


def _send_metrics(pipe: Any, drainer: Any) -> None:
    last: list[Sample] = []
    while not drainer.stopping.wait(RELAY_INTERVAL_S):
        samples = metric_samples()
        if samples != last and not _send(pipe, samples):
            drainer.stop(timeout=0)  # the parent is gone: stop rather than drain as an orphan
            return
        last = samples


def _send(pipe: Any, samples: list[Sample]) -> bool:
    try:
        pipe.send(samples)
        return True
    except (OSError, ValueError):  # broken pipe: the parent died; closed: we are stopping
        return False


class DrainerProcess:
    """The ``Drainer`` interface (start, stop, alive) over a spawned child process."""

    def __init__(self, settings: Settings, source: Source, consumer: str) -> None:
        spawn = multiprocessing.get_context("spawn")
        self._receive, send = spawn.Pipe(duplex=False)
        self._process = spawn.Process(target=drain_in_child, args=(settings, source.value, consumer, send),
                                      name=f"drain-{source.value}", daemon=True)  # fmt: skip
        self._send_end = send
        self._relay = MetricRelay()
        self._reader = threading.Thread(target=self._read_metrics, name=f"metrics-{source.value}", daemon=True)

    def start(self) -> DrainerProcess:
        self._process.start()
        self._send_end.close()  # only the child writes: its exit is then our EOF
        self._reader.start()
        return self

    def _read_metrics(self) -> None:
        while True:
            try:
                self._relay.apply(self._receive.recv())
            except (EOFError, OSError):
                return

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: the child finishes its batch and leaves unsettled entries pending."""
        self._process.terminate()
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout)
        self._reader.join(timeout)

    @property
    def alive(self) -> bool:
        """The metrics reader's life: the child holds the pipe's only write end, so its exit (or a
        kill) is the reader's EOF. Asked on every request, and free, unlike ``is_alive``'s
        ``waitpid`` (a system call per request)."""
        return self._reader.is_alive()

    @property
    def pid(self) -> int | None:
        return self._process.pid
