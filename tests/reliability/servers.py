"""Redis and PostgreSQL servers of the tests' own, to stop, kill and restart (never the machine's).

- ``OwnRedis``: ``redis-server`` on a free port, data in a temp dir, AOF persistence on
  (``appendfsync always`` by default: an enqueue that returned is on disk), optional password.
- ``OwnPostgres``: a cluster made with ``initdb`` from /usr/lib/postgresql/15/bin (or
  ``MOUNTSYNC_TEST_PG_BIN``) in a temp dir on a free port; as root, run as the ``postgres``
  user (initdb refuses root). Optional password (scram-sha-256 for TCP connections).

Either missing fails the test in CI and skips it elsewhere (``require_service``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis as redis_lib

from tests.helpers import free_port, port_open, require_service, wait_for

PG_BIN = Path(os.environ.get("MOUNTSYNC_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


class OwnRedis:
    def __init__(self, *, appendfsync: str = "always", password: str = "", persist: bool = True) -> None:
        binary = shutil.which("redis-server")
        require_service("redis-server", binary is not None, "redis-server is not on PATH")
        self.binary = str(binary)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mountsync-redis-"))
        self.password = password
        self.args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--appendonly", "yes" if persist else "no", "--appendfsync", appendfsync,
            "--save", "", "--maxmemory-policy", "noeviction", "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        if password:
            self.args += ["--requirepass", password]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.url, socket_connect_timeout=2)

    def start(self) -> OwnRedis:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, timeout=20, what=f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited: {self.log_tail()}")
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis_lib.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown save; only what the AOF already holds survives."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


class OwnPostgres:
    def __init__(self, *, password: str = "") -> None:
        initdb = PG_BIN / "initdb"
        require_service("PostgreSQL binaries", initdb.exists(), f"{initdb} not found")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mountsync-pg-"))
        self.data = self.dir / "data"
        self.password = password
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def url(self, database: str = "postgres") -> str:
        auth = f"postgres:{self.password}@" if self.password else "postgres@"
        return f"postgresql://{auth}127.0.0.1:{self.port}/{database}"

    def init(self) -> OwnPostgres:
        args = ["initdb", "-D", str(self.data), "-U", "postgres", "--no-sync", "-E", "UTF8",
                "--locale", "C.UTF-8", "--auth-local", "trust"]  # fmt: skip
        if self.password:
            pwfile = self.dir / "pw"
            pwfile.write_text(self.password)
            if self._as_postgres:
                shutil.chown(pwfile, "postgres", "postgres")
            args += ["--auth-host", "scram-sha-256", "--pwfile", str(pwfile)]
        else:
            args += ["--auth-host", "trust"]
        done = self._run(*args)
        require_service("initdb", done.returncode == 0, done.stderr[-500:])
        return self

    def start(self) -> OwnPostgres:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=50"
        done = self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "pg.log"),
                         "-w", "-t", "60", "start")  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr + self.log_tail()
        wait_for(lambda: port_open(self.port), timeout=30, what="PostgreSQL to listen")
        return self

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash (no checkpoint; the next start replays the WAL)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "immediate", down_s: float = 0.0) -> None:
        self.stop(mode)
        time.sleep(down_s)  # the outage itself is what is being tested
        self.start()

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self) -> str:
        path = self.dir / "pg.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""
