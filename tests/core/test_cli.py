"""CLI behaviour a user sees: one clear line and the right exit code for mistakes; --json output."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from mountsync.shared.catalog import db as catalog_db
from mountsync.shared.config import redact_url
from tests.conftest import PG_BASE
from tests.helpers import ROOT, free_port, wait_for


def assert_one_line_error(proc, code: int, *fragments: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_mount_lifecycle_and_json(cli, catalog, tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.png").write_bytes(b"x")
    added = cli("mount", "add", "pics", f"file://{tmp_path}", "--no-initial-reindex", "--json", check=True)
    assert json.loads(added.stdout)["bucket"] == str(tmp_path)
    listed = json.loads(cli("mount", "list", "--json", check=True).stdout)
    assert [m["name"] for m in listed] == ["pics"]
    shown = json.loads(cli("mount", "show", "pics", "--json", check=True).stdout)
    assert shown["objects"] == 0 and shown["last_reindex"] is None
    assert json.loads(cli("mount", "check", "pics", "--json", check=True).stdout)["ok"] is True
    assert_one_line_error(cli("mount", "add", "pics", f"file://{tmp_path}"), 2, "exists already")
    cli("mount", "remove", "pics", check=True)
    assert_one_line_error(cli("mount", "remove", "pics"), 2, "no mount named 'pics'")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["mount", "add", "x", "ftp://host/path"], ["unknown URL scheme 'ftp'"]),
        (["mount", "add", "x", "file:///definitely/not/here"], ["does not exist"]),
        (["mount", "add", "bad name!", "file:///tmp"], ["not valid"]),
        (["reindex", "nope"], ["no mount named 'nope'"]),
        (["ls", "nope"], ["no mount named 'nope'"]),
        (["reindex", "x", "--prefix", "../up"], ["not allowed"]),
    ],
)
def test_user_mistakes_get_one_line_and_exit_2(cli, catalog, args, fragments) -> None:
    assert_one_line_error(cli(*args), 2, *fragments)


def test_unreachable_servers_are_one_line_failures(cli, catalog) -> None:
    dead = free_port()
    pg = cli("mount", "list", MOUNTSYNC_DATABASE_URL=f"postgresql://127.0.0.1:{dead}/x")
    assert_one_line_error(pg, 1, "PostgreSQL", "not reachable", "MOUNTSYNC_DATABASE_URL")
    bad_env = cli("mount", "list", MOUNTSYNC_BATCH_SIZE="many")
    assert_one_line_error(bad_env, 2, "MOUNTSYNC_BATCH_SIZE")
    secret = cli("mount", "list", MOUNTSYNC_DATABASE_URL=f"postgresql://u:hunter2@127.0.0.1:{dead}/x")
    assert "hunter2" not in secret.stderr and "***" in secret.stderr


def test_usage_errors_exit_2(cli) -> None:
    proc = cli("mount", "add")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args", [[], ["mount"], ["db"]])
def test_no_arguments_print_the_help_only(cli, args) -> None:
    proc = cli(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)  # typer's own code for no_args_is_help
    assert "Usage:" in proc.stdout and "Commands" in proc.stdout
    assert proc.stderr.strip() == ""  # no empty "mountsync: error:" line after the help


@pytest.mark.parametrize("var", ["MOUNTSYNC_BATCH_SIZE", "MOUNTSYNC_BATCH_WINDOW"])
def test_non_positive_settings_are_one_line_config_errors(cli, var) -> None:
    assert_one_line_error(cli("mount", "list", **{var: "0"}), 2, var, "greater than 0")


def test_a_catalog_without_schema_is_one_line_pointing_at_db_upgrade(cli) -> None:
    url = f"{PG_BASE}/mountsync_test_empty_{uuid.uuid4().hex[:10]}"
    assert catalog_db.create_database(url)
    try:
        proc = cli("mount", "list", MOUNTSYNC_DATABASE_URL=url)
    finally:
        catalog_db.drop_database(url)
    assert_one_line_error(proc, 1, f"the catalog has no schema at {redact_url(url)}", "`mountsync db upgrade`")


def test_ctrl_c_is_one_line_and_exit_130(cli, catalog, tmp_path) -> None:
    cli("mount", "add", "waits", f"file://{tmp_path}", "--no-initial-reindex", check=True)
    # No worker reads this key prefix: the run stays queued and `reindex --wait` polls until interrupted.
    env = {**cli.env, "MOUNTSYNC_REDIS_PREFIX": f"{cli.env['MOUNTSYNC_REDIS_PREFIX']}noworker:"}
    # The console script, as users run it: under `python -m`, CPython 3.11 reports a caught Ctrl-C that
    # passed through an exec'd string (a dataclass made during a lazy import) as death by SIGINT, not 130.
    script = Path(sys.executable).with_name("mountsync")
    assert script.exists(), f"{script} missing: pip install -e ."
    command = [str(script), "reindex", "waits", "--wait"]
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: catalog.execute("SELECT count(*) FROM reindex_runs").fetchone()[0], what="run queued")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 130, (out, err)
    assert len(lines) == 1 and lines[0].startswith("mountsync: interrupted after "), err


def test_scheduled_reconcile_queues_due_mounts(cli, catalog, tmp_path, worker, db) -> None:
    (tmp_path / "f.png").write_bytes(b"x")
    cli(
        "mount",
        "add",
        "sched",
        f"file://{tmp_path}",
        "--no-initial-reindex",
        "--reindex-interval",
        "1",
        check=True,
    )
    from mountsync.shared.config import Settings
    from mountsync.shared.queues import TASK_RECONCILE_ALL, make_client, send

    settings = Settings(
        redis_url=cli.env["MOUNTSYNC_REDIS_URL"],
        database_url=cli.env["MOUNTSYNC_DATABASE_URL"],
        redis_prefix=cli.env["MOUNTSYNC_REDIS_PREFIX"],
    )
    send(make_client(settings), TASK_RECONCILE_ALL, queue="reindex")
    run = wait_for(
        lambda: db.execute(
            "SELECT state, created FROM reindex_runs WHERE trigger = 'schedule' AND state = 'succeeded'"
        ).fetchone(),
        timeout=60,
        what="scheduled reconcile to run",
    )
    assert run == ("succeeded", 1)


@pytest.mark.slow
def test_demo_runs_start_to_finish(cli, catalog, tmp_path) -> None:
    proc = cli("demo", "--data-dir", str(tmp_path / "demo"), "--json", timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["imported"] == 32 and len(summary["steps"]) == 6
    assert json.loads(summary["reconcile"])["state"] == "succeeded"
    assert all(step["feed"] for step in summary["steps"])
    # The insert into the pinned, annotated folder always alerts. A folder the demo deletes from or
    # renames in may also have been auto-pinned first (its import settled before the step, which
    # depends on the machine's speed); it then alerts too, as it should.
    by_folder = {alert["dataset"]: alert for alert in summary["alerts"]}
    assert "insert" in by_folder["survey_2024/reef_a"]["kinds"]
    assert set(by_folder) <= {"survey_2024/reef_a", "survey_2024/reef_b", "drone/flight_1"}
