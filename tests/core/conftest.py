"""Fixtures the inbox tests share (``test_inbox.py``, ``test_inbox_events.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest

from mountsync.producers.runtime import Runtime, build_runtime
from mountsync.shared.config import Settings


@pytest.fixture
def own(settings: Settings, catalog: psycopg.Connection) -> Iterator[tuple[Settings, Runtime]]:
    own = replace(settings, redis_prefix=f"{settings.redis_prefix}inbox{uuid.uuid4().hex[:6]}:", batch_window_s=0.05)
    runtime = build_runtime(own)
    yield own, runtime
    for key in runtime.redis.scan_iter(match=f"{own.redis_prefix}*"):
        runtime.redis.delete(key)
    runtime.close()
