"""Fixtures on real servers: each session gets its own PostgreSQL database and Redis key prefix.

Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432) must answer; a missing one fails the run
(these are not optional). Override with MOUNTSYNC_TEST_REDIS_URL / MOUNTSYNC_TEST_PG_URL.
Cloud stand-ins live in ``tests/standins/`` and are registered as plugins here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis as redis_lib

from mountsync.shared.catalog import db as catalog_db
from mountsync.shared.catalog.mounts import Mount, Mounts
from mountsync.shared.config import Settings
from tests.helpers import ROOT, Proc, wait_for

_STANDINS = ("s3", "gcs", "azure", "label_studio", "girder")
pytest_plugins = [
    f"tests.standins.{name}" for name in _STANDINS if (ROOT / "tests" / "standins" / f"{name}.py").exists()
]


def pytest_configure(config: pytest.Config) -> None:
    # A runner started in the background without job control (`.ci/run &`, nohup) hands every
    # process SIGINT ignored, and a Python started that way never raises KeyboardInterrupt: the
    # tests that press Ctrl-C on a CLI or the demo would wait in vain. Catching SIGINT here makes
    # it the default again in every child (exec resets caught signals, not ignored ones).
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


PG_BASE = os.environ.get("MOUNTSYNC_TEST_PG_URL", "postgresql://127.0.0.1:5432")
REDIS_URL = os.environ.get("MOUNTSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _require_core_services() -> None:
    try:
        redis_lib.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis_lib.RedisError as exc:
        pytest.exit(f"Redis at {REDIS_URL} does not answer ({exc}); start it (see README)", 3)
    try:
        psycopg.connect(f"{PG_BASE}/postgres", connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.exit(f"PostgreSQL at {PG_BASE} does not answer ({exc}); start it (see README)", 3)


@pytest.fixture(scope="session")
def settings() -> Iterator[Settings]:
    _require_core_services()
    tag = uuid.uuid4().hex[:10]
    url = f"{PG_BASE}/mountsync_test_{tag}"
    catalog_db.upgrade(url)
    s = Settings(
        redis_url=REDIS_URL,
        database_url=url,
        redis_prefix=f"mstest:{tag}:",
        batch_window_s=0.1,
        fs_rescan_interval_s=3600,
    )
    yield s
    client = redis_lib.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{s.redis_prefix}*", count=1000):
        client.delete(key)
    client.close()
    catalog_db.drop_database(url)


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MOUNTSYNC_DATABASE_URL=settings.database_url,
        MOUNTSYNC_REDIS_URL=settings.redis_url,
        MOUNTSYNC_REDIS_PREFIX=settings.redis_prefix,
        MOUNTSYNC_BATCH_WINDOW=str(settings.batch_window_s),
        MOUNTSYNC_FS_RESCAN_INTERVAL=str(settings.fs_rescan_interval_s),
        MOUNTSYNC_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def test_env(settings: Settings) -> dict[str, str]:
    return env_for(settings)


@pytest.fixture
def db(settings: Settings) -> Iterator[psycopg.Connection]:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def redis_client(settings: Settings) -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(settings.redis_url)
    yield client
    client.close()


def empty_catalog(conn: psycopg.Connection) -> None:
    """Empty every table but the schema version; a worker may still be finishing an earlier test's task."""
    tables = [r[0] for r in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")]  # fmt: skip
    if not tables:
        return
    conn.execute("SET lock_timeout = '5s'")
    for attempt in range(10):
        try:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
            return
        except (psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable):
            if attempt == 9:
                raise


@contextmanager
def own_catalog(settings: Settings, name: str) -> Iterator[Settings]:
    """Settings with a catalog database and a Redis prefix nobody else uses.

    For a module whose own worker must be the only one that reads its catalog: the session
    worker's embedded sweeps check every recently changed folder of the session catalog, and a
    check it wins raises the alert without this module's worker configuration (its webhook).
    """
    tag = uuid.uuid4().hex[:8]
    url = settings.database_url.rsplit("/", 1)[0] + f"/mountsync_test_{name}_{tag}"
    catalog_db.upgrade(url)
    try:
        yield settings.with_(database_url=url, redis_prefix=f"{settings.redis_prefix}{name}{tag}:")
    finally:
        catalog_db.drop_database(url)


@pytest.fixture
def catalog(settings: Settings, redis_client: redis_lib.Redis) -> Iterator[psycopg.Connection]:
    """A catalog emptied for this test (all tables but the schema version; our Redis keys)."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        empty_catalog(conn)
        for key in redis_client.scan_iter(match=f"{settings.redis_prefix}mountsync:*", count=1000):
            redis_client.delete(key)
        yield conn


@pytest.fixture
def add_mount(catalog: psycopg.Connection) -> Callable[..., Mount]:
    def add(name: str, url: str, **options: Any) -> Mount:
        dest = options.pop("dest_folder", "")
        writable = options.pop("writable", False)
        return Mounts(catalog).add(name, url, dest_folder=dest, writable=writable, options=options)

    return add


@pytest.fixture
def catalog_state(catalog: psycopg.Connection) -> Callable[[str], dict[str, dict[str, Any]]]:
    def state(mount_name: str) -> dict[str, dict[str, Any]]:
        rows = catalog.execute(
            "SELECT o.key, o.size, o.etag, o.version FROM objects o JOIN mounts m ON m.id = o.mount_id "
            "WHERE m.name = %s AND NOT o.deleted ORDER BY o.key",
            (mount_name,),
        ).fetchall()
        return {r[0]: {"size": r[1], "etag": r[2], "version": r[3]} for r in rows}

    return state


class Cli:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str, check: bool = False, timeout: float = 120, **env: str) -> Any:
        proc = subprocess.run(
            [sys.executable, "-m", "mountsync.shared", *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"mountsync {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc


@pytest.fixture(scope="session")
def cli(test_env: dict[str, str]) -> Cli:
    return Cli(test_env)


class WorkerProcess:
    """A real ``mountsync worker`` subprocess; ``kill()`` sends SIGKILL to its whole group."""

    def __init__(self, env: dict[str, str], log_path: Path, queues: str, concurrency: int) -> None:
        self.env, self.log_path, self.queues, self.concurrency = env, log_path, queues, concurrency
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the subprocess
        start_at = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mountsync.shared",
                "worker",
                "-Q",
                self.queues,
                "-c",
                str(self.concurrency),
                "--hostname",
                f"test-{uuid.uuid4().hex[:6]}@%h",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        wait_for(
            lambda: b" ready." in self.log_path.read_bytes()[start_at:] or self._died(),
            timeout=60,
            what="celery worker to be ready",
        )
        assert not self._died(), f"worker exited: {self.log_tail()}"
        return self

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")

    def pause(self) -> None:
        """Freeze the worker and its pool (SIGSTOP to the group): tasks wait in Redis meanwhile."""
        assert self.proc is not None and self.proc.poll() is None, "worker is not running"
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Undo ``pause()``; harmless on a worker that is not paused."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def worker(test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    log_path.touch()
    proc = WorkerProcess(test_env, log_path, "changes,reindex,alignment,migrations", 2).start()
    yield proc
    proc.stop()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Subprocesses a test started; each is stopped at teardown."""
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.stop()
