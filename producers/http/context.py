"""What one ``serve`` process holds: the runtime (pool, Redis, Celery), receiver state, inbox drainers."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import structlog

from mountsync.shared.config import Settings
from mountsync.shared.events import Source

log = structlog.get_logger("mountsync.serve")
POOL_SIZE = 8


@dataclass
class ServeContext:
    settings: Settings
    consumer: str = ""  # inbox consumer name (stable for one host and port)
    _runtime: Any = field(default=None, repr=False)
    _system_metrics: Any = field(default=None, repr=False)
    _drainers: dict[Source, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def runtime(self) -> Any:
        """Producer runtime (DB pool, Redis, queue), opened on first use and kept."""
        with self._lock:
            if self._runtime is None:
                from mountsync.producers.runtime import build_runtime

                self._runtime = build_runtime(self.settings, pool_size=POOL_SIZE)
            return self._runtime

    def start_drainer(self, source: Source) -> None:
        """Start the inbox drainer of ``source`` unless it runs (again, if it died): a child process
        (``MOUNTSYNC_INBOX_DRAINER=process``, the default) or a thread of this one."""
        current = self._drainers.get(source)
        if current is not None and current.alive:
            return
        from mountsync.producers.drainer_process import DrainerProcess
        from mountsync.producers.inbox import Drainer, consumer_name
        from mountsync.producers.sources import enricher_for, event_entries_for

        runtime = self.runtime
        with self._lock:
            current = self._drainers.get(source)
            if current is not None and current.alive:
                return
            consumer = self.consumer or consumer_name()
            if self.settings.inbox_drainer == "process":
                self._drainers[source] = DrainerProcess(self.settings, source, consumer).start()
            else:
                enrich, events = enricher_for(source, runtime.pool), event_entries_for(source, runtime)
                drainer = Drainer(runtime, source, enrich=enrich, consumer=consumer, events=events)
                self._drainers[source] = drainer.start()

    def recover_inboxes(self) -> None:
        """Drain what earlier runs accepted but did not finish, before any new request arrives."""
        from mountsync.producers.sources import inbox_sources
        from mountsync.shared.queues import inbox_key

        for source in inbox_sources():
            if self.runtime.redis.xlen(inbox_key(self.settings.redis_prefix, source)):
                self.start_drainer(source)

    def drainers_alive(self) -> dict[str, bool]:
        return {source.value: drainer.alive for source, drainer in self._drainers.items()}

    def stop(self) -> None:
        """Stop the drainers (their unsettled entries stay pending) and close the runtime."""
        for drainer in self._drainers.values():
            drainer.stop()
        self._drainers.clear()
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None


def recover_until_done(ctx: ServeContext, stop: threading.Event) -> None:
    """Start the drainers of non-empty inboxes, retrying while Redis or PostgreSQL are down."""
    while not stop.is_set():
        try:
            ctx.recover_inboxes()
            return
        except Exception as exc:  # Redis or PostgreSQL down, a missing extra: keep serving, keep trying
            log.warning("cannot check the inboxes yet; retrying in 5 s", error=f"{type(exc).__name__}: {exc}")
        stop.wait(5)
