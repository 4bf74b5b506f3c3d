"""Per-request access to what ``serve`` opened: settings, the catalog pool, Redis, Celery."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import psycopg
from fastapi import Request
from psycopg_pool import ConnectionPool

from mountsync.shared.config import Settings
from mountsync.shared.errors import ServiceUnavailable


class ApiRuntime(Protocol):
    """What routes may use; ``producers/runtime.py``'s runtime satisfies it."""

    settings: Settings
    pool: ConnectionPool
    redis: Any
    celery: Any


def runtime(request: Request) -> ApiRuntime:
    """The runtime of the serving process (opened on first use, kept for the process)."""
    rt: ApiRuntime = request.app.state.serve.runtime
    return rt


def settings(request: Request) -> Settings:
    value: Settings = request.app.state.serve.settings
    return value


def catalog(request: Request) -> Iterator[psycopg.Connection]:
    """A pooled catalog connection for one request (committed at the end, rolled back on error)."""
    try:
        with runtime(request).pool.connection(timeout=10) as conn:
            yield conn
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(f"PostgreSQL: {exc}") from exc
