"""The migration runtime opens in the worker's lifecycle hooks, not inside a task: a task in a
process whose hook did not run says so, and a worker that never migrates holds no connection."""

from __future__ import annotations

from typing import Any

import pytest

from mountsync.shared.config import Settings
from mountsync.workers.migration import runtime, tasks
from tests.migration.conftest import InlineApp


def test_tasks_use_the_runtime_the_worker_hook_opened(settings: Settings, catalog: Any) -> None:
    runtime.close_runtime()
    with pytest.raises(RuntimeError, match="worker_process_init"):
        tasks._rt()  # what every migration task calls first
    opened = runtime.open_runtime(settings, InlineApp())
    try:
        assert tasks._rt() is opened
        assert opened.pool.get_stats()["pool_size"] == 0  # a worker that never migrates holds nothing
        assert opened.jobs.job_state("no-such-job") is None  # the stores share the opened pool
        assert opened.pool.get_stats()["pool_size"] == 1
    finally:
        runtime.close_runtime()
    with pytest.raises(RuntimeError):
        runtime.current_runtime()
