"""The Redis durability check on real servers configured to lose data, and its loud warnings."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from mountsync.shared.config import Settings
from mountsync.shared.redis_check import UNVERIFIED, check_redis_durability
from tests.conftest import env_for
from tests.helpers import free_port, require_service, wait_for
from tests.ops.conftest import start_worker

REDIS_SERVER = shutil.which("redis-server")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Any]:
    """Start redis-server with the given arguments; returns a client. Stopped at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> redis_lib.Redis:
        require_service("redis-server", REDIS_SERVER is not None, "redis-server is not on PATH")
        port = free_port()
        workdir = tmp_path / f"redis-{port}"
        workdir.mkdir()
        proc = subprocess.Popen([str(REDIS_SERVER), "--bind", "127.0.0.1", "--port", str(port),
                                 "--dir", str(workdir), *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        started.append(proc)
        client = redis_lib.Redis(port=port, socket_connect_timeout=1)
        wait_for(lambda: _answers(client), timeout=15, what="redis-server to answer")
        return client

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)


def _answers(client: redis_lib.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis_lib.RedisError:
        return False


def test_a_durable_server_passes(redis_server: Any) -> None:
    client = redis_server("--appendonly", "yes", "--maxmemory-policy", "noeviction")
    assert check_redis_durability(client) == []


def test_eviction_and_no_persistence_are_reported_with_the_fix(redis_server: Any) -> None:
    client = redis_server("--save", "", "--appendonly", "no", "--maxmemory-policy", "allkeys-lru")
    problems = check_redis_durability(client)
    assert len(problems) == 2
    assert "'allkeys-lru'" in problems[0] and "maxmemory-policy noeviction" in problems[0]
    assert "no persistence" in problems[1] and "appendonly yes" in problems[1]


def test_snapshots_only_and_lazy_fsync_are_reported(redis_server: Any) -> None:
    rdb = redis_server("--save", "3600 1", "--appendonly", "no")
    assert ["RDB snapshots" in p for p in check_redis_durability(rdb)] == [True]
    lazy = redis_server("--appendonly", "yes", "--appendfsync", "no")
    assert ["appendfsync" in p for p in check_redis_durability(lazy)] == [True]


def test_managed_redis_without_config_falls_back_to_info(redis_server: Any) -> None:
    evicting = redis_server("--rename-command", "CONFIG", "", "--appendonly", "yes",
                            "--maxmemory-policy", "volatile-lru")  # fmt: skip
    assert ["'volatile-lru'" in p for p in check_redis_durability(evicting)] == [True]
    blind = redis_server("--rename-command", "CONFIG", "", "--rename-command", "INFO", "")
    assert [UNVERIFIED in p for p in check_redis_durability(blind)] == [True]


def test_worker_and_serve_warn_loudly_at_start(
    redis_server: Any, settings: Settings, tmp_path: Path, spawn: Any
) -> None:
    client = redis_server("--save", "", "--appendonly", "no", "--maxmemory-policy", "allkeys-lru")
    port = client.connection_pool.connection_kwargs["port"]
    lossy = settings.with_(redis_url=f"redis://127.0.0.1:{port}/0")
    worker = start_worker(lossy, tmp_path / "worker.log", queues="changes")
    try:
        assert "redis may lose queued tasks" in worker.log_tail(100_000)
        assert "allkeys-lru" in worker.log_tail(100_000)
    finally:
        worker.stop()
    serve = spawn("serve", "--port", str(free_port()), "--receivers", "none", env=env_for(lossy))
    wait_for(lambda: "serving" in serve.output(), what="serve to start")
    assert "redis may lose queued tasks" in serve.output() and "no persistence" in serve.output()
