"""Submit and query migration jobs (the CLI and the HTTP API use this; no worker code).

``submit`` validates the spec here, so a bad spec is refused at once with the reason, records
the job (so ``status`` works immediately), then sends ``mountsync.submit_migration`` by name
with the job id as the task id.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from psycopg_pool import ConnectionPool

from mountsync.shared.config import Settings
from mountsync.shared.errors import BadInput, ServiceUnavailable
from mountsync.shared.migration import TASK_MAINTAIN, TASK_RESUME
from mountsync.shared.migration.jobs import JOB_STATES, JobStore
from mountsync.shared.migration.progress import Progress, item_failures, job_progress, list_jobs
from mountsync.shared.migration.spec import parse_spec
from mountsync.shared.queues import QUEUE_MIGRATIONS, TASK_SUBMIT_MIGRATION, make_client, send


class JobNotFound(BadInput):
    """No migration job with that id."""


class MigrationClient:
    """Talks to PostgreSQL (job state) and Redis (task messages) for one settings."""

    def __init__(self, settings: Settings, *, pool: ConnectionPool | None = None, celery: Any = None) -> None:
        self.settings = settings
        self._pool = pool
        self._own_pool = pool is None
        self._celery = celery

    @property
    def store(self) -> JobStore:
        if self._pool is None:
            from mountsync.shared.catalog.db import open_pool

            self._pool = open_pool(self.settings.database_url, min_size=1, max_size=2, name="cli")
        return JobStore(self._pool)

    @property
    def celery(self) -> Any:
        if self._celery is None:
            self._celery = make_client(self.settings)
        return self._celery

    def close(self) -> None:
        if self._own_pool and self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> MigrationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, data: Any) -> str:
        """Validate and queue a job; returns its id. ``BadInput`` names what is wrong."""
        spec = parse_spec(data)
        job_id = spec.job_id or uuid.uuid4().hex
        spec = replace(spec, job_id=job_id)
        store = self.store
        if not store.create_job(job_id, spec):
            existing = store.job(job_id)
            if existing is None or existing["spec"] != spec.to_wire(with_items=False):
                raise BadInput(f"job id {job_id!r} exists already with a different spec")
            return job_id  # the same submission again: nothing to do
        try:
            send(self.celery, TASK_SUBMIT_MIGRATION, spec.to_wire(), queue=QUEUE_MIGRATIONS,
                 task_id=job_id)  # fmt: skip
        except ServiceUnavailable as exc:
            store.set_state(job_id, "failed", reason=f"could not be queued: {exc}")
            raise
        return job_id

    def status(self, job_id: str) -> Progress:
        progress = job_progress(self.store, job_id)
        if progress is None:
            raise JobNotFound(f"no migration job {job_id!r}; see `mountsync migrate list`")
        return progress

    def failures(self, job_id: str, limit: int = 20) -> list[dict[str, Any]]:
        return item_failures(self.store, job_id, limit)

    def list(self, *, limit: int = 50, state: str | None = None) -> list[Progress]:
        if state is not None and state not in JOB_STATES:
            raise BadInput(f"unknown job state {state!r}; one of {', '.join(JOB_STATES)}")
        if not 1 <= limit <= 1000:
            raise BadInput("limit must be 1..1000")
        return list_jobs(self.store, limit=limit, state=state)

    def cancel(self, job_id: str) -> Progress:
        """Cancel a job (a finished one is left as it is); returns its progress afterwards."""
        if self.store.cancel(job_id) is None:
            raise JobNotFound(f"no migration job {job_id!r}; see `mountsync migrate list`")
        # Workers notice within seconds; the sweep aborts uploads they left open.
        send(self.celery, TASK_MAINTAIN, queue=QUEUE_MIGRATIONS, countdown=5)
        return self.status(job_id)

    def resume(self, job_id: str) -> Progress:
        """Queue the open chunks of a job again (after workers were lost)."""
        progress = self.status(job_id)
        send(self.celery, TASK_RESUME, job_id, queue=QUEUE_MIGRATIONS)
        return progress
