"""``mountsync deadletters list | show | replay`` end to end with a real worker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mountsync.shared.catalog.db import open_pool
from mountsync.shared.catalog.deadletters import DeadLetters
from mountsync.shared.config import Settings
from mountsync.shared.events import Kind, ObjectChange, Provider, Source
from tests.conftest import ROOT
from tests.helpers import wait_for

S3_PAYLOAD = (ROOT / "tests" / "s3" / "payloads" / "aws_put_versioned.json").read_bytes()
S3_KEY = "in/2024/report 1+final über.csv"


@pytest.fixture
def letters(settings: Settings, catalog: psycopg.Connection) -> Iterator[DeadLetters]:
    pool = open_pool(settings.database_url, min_size=1, max_size=2, name="test-deadletters")
    yield DeadLetters(pool)
    pool.close()


def run_json(cli: Any, *args: str, code: int = 0) -> Any:
    proc = cli(*args, "--json")
    assert proc.returncode == code, proc.stderr
    return json.loads(proc.stdout)


def test_letters_are_listed_shown_and_replayed_through_their_own_path(
    tmp_path: Path, letters: DeadLetters, add_mount: Callable[..., Any],
    catalog_state: Callable[[str], dict[str, Any]], catalog: psycopg.Connection, cli: Any, worker: Any,
) -> None:  # fmt: skip
    add_mount("dls3", "s3://acme-raw")
    add_mount("dlfs", f"file://{tmp_path}")
    add_mount("dlaz", "az://frames/")
    change = ObjectChange(Provider.FS, str(tmp_path), "b/c.jpg", Kind.CREATED, time.time_ns(), Source.FS,
                          size=3, etag="e1", source_id="obs-1")  # fmt: skip
    s3 = letters.record("s3-sqs", "sqs-1", "poison message: delivered 11 times (limit 10)", S3_PAYLOAD,
                        {"ApproximateReceiveCount": "11"})  # fmt: skip
    observation = {"root": str(tmp_path), "key": "x.jpg", "observed_ns": 1}  # no "exists"
    bad_fs = letters.record("fs", "obs-2", "normalizer failed: KeyError: 'exists'",
                            json.dumps(observation).encode())  # fmt: skip
    task = letters.record("task:mountsync.apply_changes", "task-1", "delivered 6 times without finishing",
                          json.dumps([[change.to_wire()]]).encode())  # fmt: skip
    future = letters.record("changes-queue", "task-2", "old reason",
                            json.dumps({**change.to_wire(), "schema": 9}).encode())  # fmt: skip
    blob = ObjectChange(Provider.AZURE, "frames", "cam/0001.jpg", Kind.CREATED, time.time_ns(),
                        Source.AZURE_EVENTGRID, size=5, etag="0x8DC1", source_id="ev-1")  # fmt: skip
    inbox = letters.record("inbox:azure-eventgrid", "1700000000000-0",
                           "poison message: delivered 21 times (limit 20)",
                           json.dumps([blob.to_wire()]).encode())  # fmt: skip

    listed = run_json(cli, "deadletters", "list")
    assert [(r["id"], r["source"]) for r in listed] == [
        (inbox, "inbox:azure-eventgrid"),
        (future, "changes-queue"),
        (task, "task:mountsync.apply_changes"),
        (bad_fs, "fs"),
        (s3, "s3-sqs"),
    ]
    assert [r["id"] for r in run_json(cli, "deadletters", "list", "--source", "task:")] == [task]
    shown = run_json(cli, "deadletters", "show", str(s3))
    assert json.loads(shown["payload"]) == json.loads(S3_PAYLOAD)
    assert shown["attributes"] == {"ApproximateReceiveCount": "11"} and shown["replayed_at"] is None
    table = cli("deadletters", "show", str(bad_fs))
    assert table.returncode == 0 and "x.jpg" in table.stdout

    replayed = run_json(cli, "deadletters", "replay", "--all", code=1)
    by_id = {r["id"]: r for r in replayed["results"]}
    assert (by_id[s3]["status"], by_id[s3]["changes"]) == ("replayed", 1)
    assert (by_id[task]["status"], by_id[task]["changes"]) == ("replayed", 1)
    assert (by_id[inbox]["status"], by_id[inbox]["changes"]) == ("replayed", 1)
    assert by_id[bad_fs]["status"] == "failed" and "'exists' missing" in by_id[bad_fs]["reason"]
    assert by_id[future]["status"] == "failed" and "unsupported change schema 9" in by_id[future]["reason"]
    assert (replayed["replayed"], replayed["failed"]) == (3, 2)

    wait_for(lambda: S3_KEY in catalog_state("dls3"), what="the replayed S3 event in the catalog")
    wait_for(lambda: "b/c.jpg" in catalog_state("dlfs"), what="the replayed task's change in the catalog")
    wait_for(lambda: "cam/0001.jpg" in catalog_state("dlaz"), what="the replayed inbox entry in the catalog")
    row = catalog.execute("SELECT version, source_id FROM objects WHERE key = %s", (S3_KEY,)).fetchone()
    assert row == ("3HL4kqtJlcpXroDTDmjVBH40Nrjfkd", "sqs-1")

    still_open = run_json(cli, "deadletters", "list")
    assert {r["id"]: r["reason"] for r in still_open} == {
        future: by_id[future]["reason"],
        bad_fs: by_id[bad_fs]["reason"],
    }  # the new reasons
    assert len(run_json(cli, "deadletters", "list", "--all")) == 5
    again = run_json(cli, "deadletters", "replay", str(s3))
    assert again["results"] == [{"id": s3, "source": "s3-sqs", "status": "skipped", "changes": 0,
                                 "reason": "already replayed"}]  # fmt: skip
    assert cli("deadletters", "replay").returncode == 2
    missing = cli("deadletters", "show", "999999")
    assert missing.returncode == 2 and "no dead letter with id 999999" in missing.stderr
