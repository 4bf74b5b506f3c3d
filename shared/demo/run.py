"""``mountsync demo``: the main job, start to finish, on whatever servers are at hand.

Steps: servers (configured or embedded) -> schema -> a sample tree of image folders -> a mount ->
a real Celery worker and the fs producer as subprocesses -> changes on disk (add, overwrite,
delete, rename, new folder; an insert into a pinned, annotated folder) -> the catalog and the
change feed following each one -> a reconcile that finds nothing missed -> clean exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mountsync.shared.catalog.db import connect, upgrade
from mountsync.shared.catalog.gauges import open_alerts_of_mount
from mountsync.shared.catalog.mounts import Mounts
from mountsync.shared.catalog.objects import live_objects
from mountsync.shared.config import Settings, redact_url
from mountsync.shared.demo.embedded import EmbeddedServers
from mountsync.shared.errors import MountNotFound, MountsyncError
from mountsync.shared.events import Source
from mountsync.shared.output import console, emit_table, err_console
from mountsync.shared.queues import FEED_STREAM
from mountsync.shared.storage.local import fs_etag

MOUNT = "demo"
ANNOTATED = "survey_2024/reef_a"  # pinned with annotations; the demo inserts a frame into it
DEMO_TOKEN = "demo"
STATUS_PORT = 8080
STEP_TIMEOUT_S = 60.0


class DemoFailed(MountsyncError):
    """A demo step did not complete."""


def _make_sample(root: Path) -> None:
    if root.exists():
        shutil.rmtree(root)
    for folder, frames in (("survey_2024/reef_a", 12), ("survey_2024/reef_b", 8), ("drone/flight_1", 10)):
        path = root / folder
        path.mkdir(parents=True)
        for i in range(1, frames + 1):
            (path / f"frame_{i}.png").write_bytes(os.urandom(64 + i))
    (root / "drone" / "flight_1.mp4").write_bytes(os.urandom(2048))
    (root / "survey_2024" / "reef_a.csv").write_text("track,frame,x,y\n")


def _disk_state(root: Path) -> dict[str, tuple[int, str]]:
    state = {}
    for path in root.rglob("*"):
        if path.is_file():
            st = path.stat()
            state[path.relative_to(root).as_posix()] = (st.st_size, fs_etag(st))
    return state


def _catalog_state(settings: Settings) -> dict[str, tuple[int, str | None]]:
    with connect(settings.database_url) as conn:
        try:
            mount = Mounts(conn).get(MOUNT)
        except MountNotFound:
            return {}
        rows = live_objects(conn, mount.id, mount.prefix)
    return {row.key: (row.size, row.etag) for row in rows}


def _wait_until_equal(settings: Settings, root: Path, what: str) -> float:
    started = time.monotonic()
    while True:
        if _catalog_state(settings) == _disk_state(root):
            return time.monotonic() - started
        if time.monotonic() - started > STEP_TIMEOUT_S:
            raise DemoFailed(f"catalog did not follow the directory within {STEP_TIMEOUT_S:.0f}s ({what})")
        time.sleep(0.05)


class Processes:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir, self.procs = env, log_dir, []  # type: ignore[var-annotated]

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            [sys.executable, "-m", "mountsync.shared", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((name, proc))
        return proc

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [sys.executable, "-m", "mountsync.shared", *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=120,
            )
        except subprocess.TimeoutExpired:
            raise DemoFailed(f"`mountsync {' '.join(args)}` did not finish within 120s") from None

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                console.print(f"[yellow]{name} did not stop in 30 s; killing it[/yellow]")
                os.killpg(proc.pid, signal.SIGKILL)


def _feed_reader(settings: Settings) -> Callable[[], list[dict[str, str]]]:
    import redis

    client: Any = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    stream = f"{settings.redis_prefix}{FEED_STREAM}"
    # Read from a marker of our own on: only entries after it belong to this run.
    last = [client.xadd(stream, {"mount": "", "key": "", "kind": "demo-start"}, maxlen=settings.feed_maxlen)]

    def read() -> list[dict[str, str]]:
        entries = client.xrange(stream, min=f"({last[0]}")
        if entries:
            last[0] = entries[-1][0]
        return [fields for _, fields in entries if fields.get("mount") == MOUNT]

    return read


def _feed_after_commit(read_feed: Callable[[], list[dict[str, str]]]) -> list[dict[str, str]]:
    """The feed is published right after the catalog commit: give it a moment to arrive."""
    deadline = time.monotonic() + 5.0
    feed = read_feed()
    while not feed and time.monotonic() < deadline:
        time.sleep(0.05)
        feed = read_feed()
    return feed


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MOUNTSYNC_REDIS_URL=settings.redis_url,
        MOUNTSYNC_DATABASE_URL=settings.database_url,
        MOUNTSYNC_REDIS_PREFIX=settings.redis_prefix,
        MOUNTSYNC_FEED_MAXLEN=str(settings.feed_maxlen),
        MOUNTSYNC_BATCH_WINDOW="0.2",
        MOUNTSYNC_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    return env


def _steps(root: Path) -> list[tuple[str, Callable[[], object]]]:
    reef_a = root / "survey_2024" / "reef_a"
    return [
        ("add a frame at the end of reef_a", lambda: (reef_a / "frame_13.png").write_bytes(b"new frame")),
        (
            "overwrite reef_b/frame_3.png",
            lambda: (root / "survey_2024/reef_b/frame_3.png").write_bytes(b"v2"),
        ),
        ("delete drone/flight_1/frame_10.png", lambda: (root / "drone/flight_1/frame_10.png").unlink()),
        (
            "rename reef_b/frame_8.png -> frame_8_fixed.png",
            lambda: (root / "survey_2024/reef_b/frame_8.png").rename(root / "survey_2024/reef_b/frame_8_fixed.png"),
        ),
        (
            "insert a frame into annotated reef_a (shifts frames 3..)",
            lambda: (reef_a / "frame_2b.png").write_bytes(b"inserted"),
        ),
        ("a new folder survey_2025/reef_c", lambda: _new_folder(root / "survey_2025" / "reef_c")),
    ]


def _new_folder(path: Path) -> None:
    path.mkdir(parents=True)
    for i in range(1, 4):
        (path / f"img_{i}.jpg").write_bytes(os.urandom(32))


def run_demo(settings: Settings, data_dir: str, *, keep_running: bool, quiet: bool) -> dict[str, Any]:
    say = (lambda *_a, **_k: None) if quiet else console.print
    base = Path(data_dir)
    base.mkdir(parents=True, exist_ok=True)
    servers = EmbeddedServers(str(base / "servers"))
    settings = servers.ensure(settings)
    # The demo shows the Redis stream: it keeps one even where MOUNTSYNC_FEED_MAXLEN=0 turns it off.
    settings = replace(settings, redis_prefix=f"{settings.redis_prefix}demo:",
                       feed_maxlen=settings.feed_maxlen or Settings().feed_maxlen)  # fmt: skip
    for line in servers.started or ["configured Redis and PostgreSQL answer"]:
        say(f"[bold]servers[/bold]  {line}")
    say(
        f"[bold]catalog[/bold]  {redact_url(settings.database_url)}  schema {', '.join(upgrade(settings.database_url))}"
    )
    root = base / "sample"
    _make_sample(root)
    with connect(settings.database_url) as conn:
        with contextlib.suppress(MountNotFound):
            Mounts(conn).remove(MOUNT)
        Mounts(conn).add(MOUNT, f"file://{root}", dest_folder="demo")
    say(f"[bold]mount[/bold]    {MOUNT}: file://{root}")
    procs = Processes(_env(settings), base)
    summary: dict[str, Any] = {"servers": servers.started, "steps": []}
    try:
        summary.update(_run(settings, root, procs, say, quiet))
        if keep_running:  # with --json the page's URL and token go to stderr (stdout holds the JSON)
            _stay_up(settings, procs, err_console.print if quiet else say)
    finally:
        procs.stop()
        servers.stop()
    say(f"[green]demo finished[/green]: logs in {base}")
    return summary


def _run(settings: Settings, root: Path, procs: Processes, say: Callable[..., None], quiet: bool) -> dict[str, Any]:
    read_feed = _feed_reader(settings)
    procs.start("worker", "worker", "-c", "2")
    procs.start("producer", "produce", Source.FS.value, "--mount", MOUNT)
    seconds = _wait_until_equal(settings, root, "initial import")
    imported = len(_catalog_state(settings))
    read_feed()
    say(f"[bold]import[/bold]   {imported} objects mirrored in {seconds:.1f}s (worker + fs producer)")
    pinned = procs.run("pin", MOUNT, ANNOTATED, "--last-annotated", "8")
    if pinned.returncode == 0:
        say(f"[bold]pin[/bold]      {ANNOTATED} pinned, annotations up to frame 8")
    steps = []
    for title, act in _steps(root):
        act()
        took = _wait_until_equal(settings, root, title)
        feed = _feed_after_commit(read_feed)
        steps.append({"step": title, "seconds": round(took, 3), "feed": feed})
        if not quiet:
            emit_table(
                ("kind", "key", "size"),
                [(f.get("kind"), f.get("key"), f.get("size")) for f in feed],
                title=f"{title}  ({took:.2f}s)",
            )
    alerts = _wait_for_alerts(settings, procs) if pinned.returncode == 0 else []
    if alerts and not quiet:
        say("[bold]alignment[/bold] the insert into the annotated folder raised an alert:")
        console.print(procs.run("alerts", MOUNT).stdout)
        console.print(procs.run("datasets", MOUNT).stdout)
    check = procs.run("reindex", MOUNT, "--wait", "--json", "--timeout", "60")
    if check.returncode != 0:
        raise DemoFailed(f"reconcile failed: {check.stderr.strip()}")
    say(f"[bold]reconcile[/bold] {check.stdout.strip()}")
    return {
        "imported": imported,
        "steps": steps,
        "reconcile": check.stdout.strip(),
        "alerts": alerts,
    }


def _annotated_alerts(settings: Settings) -> int:
    with connect(settings.database_url) as conn:
        return open_alerts_of_mount(conn, MOUNT, ANNOTATED)


def _wait_for_alerts(settings: Settings, procs: Processes) -> list[Any]:
    """Alignment checks are debounced per folder: wait (bounded) for the annotated folder's alert,
    then list the mount's alerts once. Not for any alert: a folder the demo renames in or deletes
    from may have been auto-pinned and alert first, and listing then could miss the insert's."""
    deadline = time.monotonic() + 20.0
    while not _annotated_alerts(settings):
        if time.monotonic() > deadline:
            return []
        time.sleep(0.25)
    proc = procs.run("alerts", MOUNT, "--json")
    if proc.returncode != 0:
        raise DemoFailed(f"`mountsync alerts {MOUNT} --json` failed: {proc.stderr.strip()}")
    try:
        return list(json.loads(proc.stdout))
    except json.JSONDecodeError as exc:
        raise DemoFailed(f"`mountsync alerts {MOUNT} --json` printed no JSON ({exc})") from None


def _free_port(preferred: int) -> int:
    """``preferred`` when nothing listens there, else any free port."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status_page(settings: Settings, procs: Processes) -> tuple[str, str]:
    """Start ``serve`` (no push receivers: the demo's producer watches the directory) and make a
    write token for the page; the URL and the token (shown once) are the demo's to print."""
    from mountsync.shared.catalog.tokens import create_token, revoke_token

    port = _free_port(STATUS_PORT)
    procs.start("serve", "serve", "--port", str(port), "--receivers", "none")
    with connect(settings.database_url) as conn:
        with contextlib.suppress(MountsyncError):
            revoke_token(conn, DEMO_TOKEN)
        token = create_token(conn, DEMO_TOKEN, "write")
    return f"http://127.0.0.1:{port}/", token


def _stay_up(settings: Settings, procs: Processes, say: Callable[..., None]) -> None:
    url, token = _status_page(settings, procs)
    procs.start("flower", "flower", "--port", "5555")
    say(f"[bold]status page[/bold] {url}  sign in with the token {token}", soft_wrap=True)
    say("[bold]running[/bold]  worker, producer, serve and Flower at http://127.0.0.1:5555 - Ctrl-C to stop")
    try:
        while all(p.poll() is None for _, p in procs.procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("stopping")
