"""Fixtures of the sink tests: a verifying webhook receiver, the secrets key, in-process delivery."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis as redis_lib

from mountsync.shared.catalog.apply import apply_changes
from mountsync.shared.catalog.db import open_pool
from mountsync.shared.config import Settings
from mountsync.shared.events import Kind, ObjectChange, Provider, Source
from mountsync.workers.sinks.delivery import RunReport, run_delivery
from mountsync.workers.sinks.receivers import open_receiver
from tests.conftest import WorkerProcess, env_for
from tests.sinks.receiver import Receiver, serve_receiver

# A throwaway key for the test catalogs' encrypted webhook secrets, never a real one.
SECRETS_KEY = "test-secrets-key-0123456789abcdef"


def change(key: str, kind: str = "created", seq: int = 1, *, etag: str | None = "e1",
           bucket: str = "bkt") -> ObjectChange:  # fmt: skip
    removes = kind == "deleted"
    return ObjectChange(Provider.S3, bucket, key, Kind(kind), seq, Source.S3_SQS, size=None if removes else 1,
                        etag=None if removes else etag, sequencer=f"{seq:012d}")  # fmt: skip


@pytest.fixture
def sink_settings(settings: Settings) -> Settings:
    return settings.with_(extra={"MOUNTSYNC_SECRETS_KEY": SECRETS_KEY})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve_receiver()


@pytest.fixture
def apply(settings: Settings, catalog: psycopg.Connection) -> Iterator[Callable[[list[ObjectChange]], None]]:
    with psycopg.connect(settings.database_url) as conn:

        def run(changes: list[ObjectChange]) -> None:
            apply_changes(conn, changes)

        yield run


@pytest.fixture
def deliver(
    sink_settings: Settings, redis_client: redis_lib.Redis, catalog: psycopg.Connection
) -> Iterator[Callable[..., RunReport]]:
    """Run one delivery of a sink in this process, as the ``deliver`` task does."""
    pool = open_pool(sink_settings.database_url, max_size=2, name="test-sinks")

    def run(name: str, retry_for_s: float = 86400.0, environ: dict[str, str] | None = None) -> RunReport:
        sink_id = catalog.execute("SELECT id FROM sinks WHERE name = %s", (name,)).fetchone()
        assert sink_id is not None
        return run_delivery(
            pool, redis_client, sink_settings.redis_prefix, int(sink_id[0]),
            lambda sink: open_receiver(sink, sink_settings, environ or dict(os.environ)),
            retry_for_s=retry_for_s, jitter=lambda: 0.0,
        )  # fmt: skip

    yield run
    pool.close()


def sink_row(catalog: psycopg.Connection, name: str) -> dict[str, Any]:
    row = catalog.execute(
        "SELECT cursor, state, state_reason, attempts, delivered FROM sinks WHERE name = %s", (name,)
    ).fetchone()
    assert row is not None
    return dict(zip(("cursor", "state", "state_reason", "attempts", "delivered"), row, strict=True))


@pytest.fixture
def sink_env(settings: Settings) -> dict[str, str]:
    return env_for(settings, MOUNTSYNC_SECRETS_KEY=SECRETS_KEY)


@pytest.fixture
def sink_worker(sink_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    """A worker on the changes and sinks queues with the secrets key (stopped after the test)."""
    log_path = tmp_path / "worker.log"
    log_path.touch()
    proc = WorkerProcess(sink_env, log_path, "changes,sinks", 2).start()
    yield proc
    proc.stop()
