"""Structured logs: one change followed from the notification to the catalog row by its ids."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from mountsync.shared.config import Settings
from tests.conftest import env_for
from tests.helpers import wait_for


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def test_one_change_is_followed_from_notification_to_catalog_row(
    tmp_path: Path, settings: Settings, add_mount: Callable[..., Any], catalog: psycopg.Connection,
    worker: Any, spawn: Any,
) -> None:  # fmt: skip
    root = tmp_path / "root"
    (root / "cam").mkdir(parents=True)  # a new directory would queue a rescan of it
    add_mount("logfs", f"file://{root}")
    producer = spawn("produce", "fs", "--mount", "logfs", env=env_for(settings, MOUNTSYNC_LOG_FORMAT="json"))
    rescan = "SELECT state FROM reindex_runs r JOIN mounts m ON m.id = r.mount_id WHERE m.name = 'logfs'"
    try:  # generous deadlines: the machine is shared with other suites
        wait_for(lambda: catalog.execute(rescan).fetchall() == [("succeeded",)], 90, "the start-up rescan")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nproducer: {producer.output()[-2000:]}") from None
    (root / "cam" / "one.jpg").write_bytes(b"frame")
    row = wait_for(lambda: catalog.execute(
        "SELECT o.source, o.source_id FROM objects o JOIN mounts m ON m.id = o.mount_id "
        "WHERE m.name = 'logfs' AND o.key = 'cam/one.jpg'").fetchone(), 90, "the catalog row")  # fmt: skip
    source, source_id = row
    assert source == "fs" and source_id, (row, producer.output()[-2000:])

    def logged(lines: list[dict[str, Any]], event: str) -> dict[str, Any] | None:
        found = (e for e in lines if e.get("event") == event and source_id in e.get("source_ids", []))
        return next(found, None)

    enqueued = wait_for(lambda: logged(json_lines(producer.output()), "enqueued"), 60, "the producer line")
    worker_lines = lambda: json_lines(worker.log_path.read_text("utf-8", "replace"))  # noqa: E731
    applied = wait_for(lambda: logged(worker_lines(), "applied"), 60, "the worker line")
    assert enqueued["source"] == "fs" and enqueued["level"] == "info" and "timestamp" in enqueued
    assert applied["task_id"] and applied["applied"] >= 1
    # The task id is Celery's own (the one Flower shows): Celery's line for that task names it.
    celery_line = f"mountsync.apply_changes[{applied['task_id']}] succeeded"
    wait_for(lambda: celery_line in worker.log_path.read_text("utf-8", "replace"), 60, "Celery's line for the task")


WRITER = """
import os
import sys
import structlog
from mountsync.shared.config import load_settings
from mountsync.shared.logs import configure_logging
configure_logging(load_settings(os.environ))
log = structlog.get_logger()
for i in range(3000):
    log.info("applied", writer=sys.argv[1], i=i, pad="x" * (i % 300))
"""


def test_processes_sharing_one_log_file_never_splice_lines(tmp_path: Path, settings: Settings) -> None:
    """A worker's pool children write to one file; each line must reach it whole (PYTHONUNBUFFERED is set)."""
    log_path = tmp_path / "shared.log"
    env = env_for(settings, MOUNTSYNC_LOG_FORMAT="json")
    with open(log_path, "ab") as log:
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(n)], env=env, stderr=log) for n in range(3)]
        for writer in writers:
            assert writer.wait(timeout=120) == 0
    text = log_path.read_text("utf-8")
    parsed = json_lines(text)
    assert len(parsed) == 9000, [line[:120] for line in text.splitlines() if not line.startswith('{"')][:3]
    assert {(e["writer"], e["i"]) for e in parsed} == {(str(n), i) for n in range(3) for i in range(3000)}
