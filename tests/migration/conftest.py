"""Migration fixtures: the job store on the session database, and an in-process task runner.

``inline`` runs the migration services in this process: task messages the services send are
recorded by ``InlineApp`` and executed one by one by ``Inline.drain()`` (callback tasks sent to
other services are kept in ``delivered``). End-to-end tests use the real worker instead.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from mountsync.shared.catalog.db import open_pool
from mountsync.shared.config import Settings
from mountsync.shared.migration import TASK_CHUNK, TASK_DELIVER, TASK_MAINTAIN, TASK_RESUME
from mountsync.shared.migration.jobs import JobStore
from mountsync.shared.queues import TASK_SUBMIT_MIGRATION
from mountsync.workers.migration import service, upkeep
from mountsync.workers.migration.runtime import MigrationRuntime


@dataclass
class Sent:
    name: str
    args: list[Any]
    queue: str
    options: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


class InlineApp:
    """Stands in for the Celery client: records ``send_task`` calls."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []

    def send_task(self, name: str, args: list[Any] | None = None, queue: str = "", **options: Any) -> Sent:
        message = Sent(name, list(args or []), queue, options)
        message.id = options.get("task_id") or message.id
        self.sent.append(message)
        return message


@dataclass
class Inline:
    rt: MigrationRuntime
    app: InlineApp
    delivered: list[Sent] = field(default_factory=list)
    ran: list[tuple[str, list[Any]]] = field(default_factory=list)

    def submit(self, spec: dict[str, Any], task_id: str | None = None) -> str:
        return service.submit(self.rt, spec, task_id or uuid.uuid4().hex)

    def drain(self, max_tasks: int = 10_000) -> None:
        """Run queued migration tasks until none are left (retries run at once)."""
        for _ in range(max_tasks):
            if not self.app.sent:
                return
            message = self.app.sent.pop(0)
            self.ran.append((message.name, message.args))
            self._run(message)
        raise AssertionError("tasks kept coming: a loop?")

    def _run(self, message: Sent) -> None:
        if message.name == TASK_CHUNK:
            service.run_chunk(self.rt, *message.args)
        elif message.name == TASK_DELIVER:
            result = upkeep.deliver_batch(self.rt, *message.args)
            if result.retry_in_s is not None:
                self.app.sent.append(message)
        elif message.name == TASK_MAINTAIN:
            upkeep.maintain(self.rt)
        elif message.name == TASK_RESUME:
            upkeep.resume(self.rt, *message.args)
        elif message.name == TASK_SUBMIT_MIGRATION:
            service.submit(self.rt, message.args[0], message.id)
        else:
            self.delivered.append(message)


@pytest.fixture
def mig_pool(settings: Settings, catalog: psycopg.Connection) -> Iterator[Any]:
    pool = open_pool(settings.database_url, min_size=1, max_size=10, name="test-migration")
    yield pool
    pool.close()


@pytest.fixture
def store(mig_pool: Any) -> JobStore:
    return JobStore(mig_pool)


@pytest.fixture
def inline(settings: Settings, mig_pool: Any) -> Inline:
    app = InlineApp()
    extra = {"MOUNTSYNC_MIGRATION_LEASE": "30"}
    rt = MigrationRuntime.on_pool(settings.with_(extra=extra), mig_pool, app)
    return Inline(rt, app)


class Crash(BaseException):
    """Stands in for SIGKILL: nothing below the test catches it."""


class CountingDest:
    """Wraps the destination storage: counts upload_part calls, crashes after ``crash_after``."""

    def __init__(self, inner: Any, calls: Counter, crash_after: int | None) -> None:
        self._inner, self.calls, self.crash_after = inner, calls, crash_after
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def upload_part(self, session: Any, number: int, data: bytes) -> Any:
        with self._lock:
            if self.crash_after is not None and sum(self.calls.values()) >= self.crash_after:
                raise Crash()
            self.calls[number] += 1
        return self._inner.upload_part(session, number, data)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {"calls": Counter(), "crash_after": None}
    real = service.open_storages

    def wrapped(spec: Any) -> Any:
        source, dest = real(spec)
        return source, CountingDest(dest, state["calls"], state["crash_after"])

    monkeypatch.setattr(service, "open_storages", wrapped)
    return state


def parts_table(db: Any, job: str) -> dict[int, tuple[int, bool]]:
    rows = db.execute("SELECT number, sends, done FROM migration_parts WHERE job_id = %s", (job,))
    return {n: (sends, done) for n, sends, done in rows}
