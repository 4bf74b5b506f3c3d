"""Test helpers: deadline polling (never bare sleeps), CI-aware service requirements, and
subprocesses (mountsync commands, bare baseline loops) logging to files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
IN_CI = bool(os.environ.get("CI"))
ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition", interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def require_service(name: str, ok: bool, reason: str) -> None:
    """A missing stand-in fails in CI (never a silent skip) and skips on a developer machine."""
    if ok:
        return
    message = f"{name} is not available: {reason}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    """Terminate a stand-in process, killing it if it does not exit in time."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class Proc:
    """A subprocess in its own process group, stdout and stderr appended to ``log_path``.

    ``stop`` sends SIGTERM to the group (SIGKILL after ``grace_s``); ``kill`` sends SIGKILL."""

    def __init__(self, command: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.command, self.env, self.log_path = command, dict(env), log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def mountsync(cls, args: list[str], env: Mapping[str, str], log_path: Path) -> Proc:
        return cls([sys.executable, "-m", "mountsync.shared", *args], env, log_path)

    @classmethod
    def python(cls, code: str, args: list[str], env: Mapping[str, str], log_path: Path) -> Proc:
        return cls([sys.executable, "-c", code, *args], env, log_path)

    def start(self) -> Proc:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=ROOT, start_new_session=True)  # fmt: skip
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, grace_s: float = 30) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.kill()


def live_count(catalog: Any, mount: str) -> int:
    """Live (not deleted) objects of ``mount``; ``catalog`` is a connection or a database URL."""
    sql = "SELECT count(*) FROM objects o JOIN mounts m ON m.id = o.mount_id WHERE m.name = %s AND NOT o.deleted"
    if isinstance(catalog, str):
        import psycopg

        with psycopg.connect(catalog, connect_timeout=2) as conn:
            return int(conn.execute(sql, (mount,)).fetchone()[0])
    return int(catalog.execute(sql, (mount,)).fetchone()[0])


def queued_changes(client: Any, settings: Any) -> list[dict[str, Any]]:
    """The changes of the apply tasks waiting on ``settings``' changes queue, as schema-1 wire dicts
    (whichever wire schema carried them: the queue carries rows)."""
    from mountsync.shared.events import ObjectChange
    from mountsync.shared.queues import queued_args

    out: list[dict[str, Any]] = []
    for raw in client.lrange(f"{settings.redis_prefix}changes", 0, -1):
        out.extend(ObjectChange.from_wire(item).to_wire() for item in queued_args(raw)[0])
    return out


def enqueued_changes(log: str) -> int:
    """Changes a producer reported as enqueued in its JSON log."""
    total = 0
    for line in log.splitlines():
        if line.startswith("{") and '"enqueued"' in line:
            doc = json.loads(line)
            if doc.get("event") == "enqueued":
                total += int(doc.get("changes", 0))
    return total


def bearer(conn: Any, scope: str = "read", name: str = "") -> dict[str, str]:
    """An ``Authorization`` header with a fresh API token of ``scope`` stored in the catalog."""
    import uuid

    from mountsync.shared.catalog.tokens import create_token

    token = create_token(conn, name or f"test-{scope}-{uuid.uuid4().hex[:8]}", scope)
    return {"Authorization": f"Bearer {token}"}


def apply_committed(conn: Any, changes: list[Any]) -> Any:
    """Apply ``changes`` through the one write path in a transaction of their own, as a worker does,
    on a connection the test otherwise uses in autocommit mode."""
    from mountsync.shared.catalog.apply import apply_changes

    conn.autocommit = False
    try:
        result = apply_changes(conn, changes)
        conn.commit()
        return result
    finally:
        conn.autocommit = True
