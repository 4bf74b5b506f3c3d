"""The pieces behind fast recovery, on real Redis: the held-task heartbeat never re-adds a message
that was acknowledged or restored, and the embedded schedule sends only what a worker should."""

from __future__ import annotations

import uuid

import pytest
import redis as redis_lib

from mountsync.shared.errors import ConfigError
from mountsync.workers.recovery import heartbeat_interval, refresh
from mountsync.workers.schedule import Periodic, embedded_entries, periodic_entries, worker_schedule_mode


def test_heartbeat_refreshes_held_messages_and_never_revives_acked_ones(settings) -> None:
    client = redis_lib.Redis.from_url(settings.redis_url)
    index = f"{settings.redis_prefix}unacked_index:{uuid.uuid4().hex[:6]}"
    try:
        client.zadd(index, {"held": 100.0, "other-worker": 100.0})
        assert refresh(client, index, ["held", "acked-meanwhile"], 5000.0) == 1
        assert client.zscore(index, "held") == 5000.0  # no longer looks abandoned
        assert client.zscore(index, "other-worker") == 100.0  # not ours: left to the restore sweep
        assert client.zscore(index, "acked-meanwhile") is None  # ZADD XX: never re-added
        assert refresh(client, index, [], 6000.0) == 0
    finally:
        client.delete(index)
        client.close()


@pytest.mark.parametrize(("timeout", "interval"), [(60, 10.0), (6, 1.0), (3600, 600.0)])
def test_six_beats_per_visibility_timeout(timeout: int, interval: float) -> None:
    assert heartbeat_interval(timeout) == interval


SCHEDULE = {
    "reconcile-mounts": {"task": "mountsync.reconcile_all", "schedule": 60.0, "options": {"queue": "reindex"}},
    "alignment-sweep": {"task": "mountsync.alignment.sweep", "schedule": 30.0, "options": {"queue": "alignment"}},
    "migration-maintain": {"task": "mountsync.migration.maintain", "schedule": 30.0,
                           "options": {"queue": "migrations"}},
}  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "queues", "names"),
    [
        ("sweeps", ["changes", "reindex", "alignment", "migrations"], ["alignment-sweep", "migration-maintain"]),
        ("sweeps", ["changes"], []),  # nothing for queues nobody here consumes
        ("all", ["reindex", "alignment"], ["reconcile-mounts", "alignment-sweep"]),
        ("off", ["reindex", "alignment", "migrations"], []),
    ],
)
def test_a_worker_schedules_only_entries_of_its_queues(mode: str, queues: list[str], names: list[str]) -> None:
    entries = embedded_entries(periodic_entries(SCHEDULE), mode, queues)
    assert [e.name for e in entries] == names
    assert all(isinstance(e, Periodic) and e.every_s > 0 for e in entries)


def test_worker_schedule_mode() -> None:
    assert worker_schedule_mode({}) == "sweeps"
    assert worker_schedule_mode({"MOUNTSYNC_WORKER_SCHEDULE": "all"}) == "all"
    with pytest.raises(ConfigError, match="MOUNTSYNC_WORKER_SCHEDULE"):
        worker_schedule_mode({"MOUNTSYNC_WORKER_SCHEDULE": "sometimes"})
