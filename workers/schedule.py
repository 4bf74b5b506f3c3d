"""Periodic tasks without a single point of failure: every sender claims the time slot first.

Why: Celery beat must run "exactly one", and the recovery sweeps (stalled migration chunks, lost
alignment checks) ran only under beat, so a deployment without beat never recovered them. Here a
periodic entry is queued by whoever first claims its current slot in Redis
(``SET mountsync:schedule:NAME:SLOT NX``, slot = ``floor(now / interval)``). Any number of beats
(``SlotScheduler``) and workers (``EmbeddedScheduler``) can run at once; each entry is still queued
once per interval. Workers embed the sweeps by default (``MOUNTSYNC_WORKER_SCHEDULE=sweeps``), so
recovery does not depend on beat; the per-mount reconcile stays with beat unless set to ``all``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from celery.beat import PersistentScheduler, ScheduleEntry

from mountsync.shared.errors import ConfigError

log = structlog.get_logger("mountsync.schedule")

SLOT_KEY = "mountsync:schedule:"
RECONCILE_ENTRY = "reconcile-mounts"
WORKER_SCHEDULE_MODES = ("sweeps", "all", "off")


@dataclass(frozen=True, slots=True)
class Periodic:
    """One periodic entry: its name, task, queue and interval in seconds."""

    name: str
    task: str
    queue: str
    every_s: float


def slot_of(now: float, every_s: float) -> int:
    return math.floor(now / every_s)


def claim_slot(redis: Any, key_prefix: str, name: str, every_s: float, now: float) -> bool:
    """True for the one caller that takes ``name``'s slot containing ``now``."""
    key = f"{key_prefix}{SLOT_KEY}{name}:{slot_of(now, every_s)}"
    return bool(redis.set(key, "1", nx=True, ex=max(1, math.ceil(every_s * 2))))


def periodic_entries(beat_schedule: Mapping[str, Any]) -> list[Periodic]:
    """The app's beat schedule as ``Periodic`` entries (interval schedules only)."""
    out = []
    for name, entry in beat_schedule.items():
        every = entry["schedule"]
        seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
        queue = (entry.get("options") or {}).get("queue", "")
        out.append(Periodic(name, entry["task"], queue, seconds))
    return out


def worker_schedule_mode(extra: Mapping[str, str]) -> str:
    mode = extra.get("MOUNTSYNC_WORKER_SCHEDULE", "sweeps") or "sweeps"
    if mode not in WORKER_SCHEDULE_MODES:
        raise ConfigError(f"MOUNTSYNC_WORKER_SCHEDULE={mode!r} must be one of {', '.join(WORKER_SCHEDULE_MODES)}")
    return mode


def embedded_entries(entries: Iterable[Periodic], mode: str, consumed: Iterable[str]) -> list[Periodic]:
    """What a worker schedules: only entries for queues it consumes (nobody else may), and the
    reconcile only in mode ``all``."""
    queues = set(consumed)
    if mode == "off":
        return []
    return [e for e in entries if e.queue in queues and (mode == "all" or e.name != RECONCILE_ENTRY)]


class EmbeddedScheduler:
    """A daemon thread of the worker's main process that queues due entries after a slot claim."""

    def __init__(self, redis: Any, key_prefix: str, entries: list[Periodic],
                 send: Callable[[Periodic], None], tick_s: float = 2.0) -> None:  # fmt: skip
        self._redis, self._prefix, self._entries, self._send = redis, key_prefix, entries, send
        self._tick = tick_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="embedded-schedule", daemon=True)

    def start(self) -> EmbeddedScheduler:
        if self._entries:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._tick + 5)

    def tick(self, now: float) -> list[str]:
        sent = []
        for entry in self._entries:
            if claim_slot(self._redis, self._prefix, entry.name, entry.every_s, now):
                self._send(entry)
                sent.append(entry.name)
        return sent

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            try:
                self.tick(time.time())
            except Exception as exc:  # Redis down: the next tick tries again
                log.warning("embedded schedule tick failed", error=f"{type(exc).__name__}: {exc}")


def send_entry(app: Any, entry: Periodic) -> None:
    # Expires before the next slot: a backlog never runs a sweep twice in a row for nothing.
    app.send_task(entry.task, queue=entry.queue, expires=max(1.0, entry.every_s - 5))


class SlotScheduler(PersistentScheduler):  # type: ignore[misc]  # celery is untyped
    """Celery beat's scheduler that sends an entry only after claiming its slot, so two beats
    (or beat plus workers) queue each entry once. ``mountsync beat`` uses it."""

    _redis: Any = None

    def _slot_redis(self) -> tuple[Any, str]:
        if self._redis is None:
            import redis as redis_lib

            self._redis = redis_lib.Redis.from_url(self.app.conf.broker_url, socket_timeout=10)
        prefix = (self.app.conf.broker_transport_options or {}).get("global_keyprefix", "")
        return self._redis, prefix

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        every = getattr(entry.schedule, "run_every", None)
        if isinstance(every, timedelta):
            redis, prefix = self._slot_redis()
            now, seconds = time.time(), every.total_seconds()
            try:
                claimed = claim_slot(redis, prefix, entry.name, seconds, now)
            except Exception as exc:
                log.warning("cannot claim schedule slot; not sending", entry=entry.name, error=str(exc))
                return
            event = "schedule slot claimed" if claimed else "schedule slot taken"
            log.info(event, entry=entry.name, slot=slot_of(now, seconds))
            if not claimed:  # another beat (or a worker) queued it for this interval
                return
        super().apply_entry(entry, producer=producer)
