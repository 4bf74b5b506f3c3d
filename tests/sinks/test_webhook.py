"""Webhook sinks end to end on real PostgreSQL and Redis, delivering to a real HTTP receiver that
verifies every message with the ``standardwebhooks`` library."""

from __future__ import annotations

import json

import psycopg
import pytest

from mountsync.shared.catalog.change_log import read_changes
from tests.conftest import Cli
from tests.helpers import free_port, wait_for
from tests.sinks.conftest import SECRETS_KEY, change, sink_row

pytestmark = pytest.mark.timeout(180)


def add_webhook(cli: Cli, name: str, url: str, *args: str) -> dict:
    proc = cli("webhook", "add", name, url, *args, "--json", check=True, MOUNTSYNC_SECRETS_KEY=SECRETS_KEY)
    return json.loads(proc.stdout)


def test_the_secret_is_printed_once_and_never_listed_or_stored_in_the_clear(cli, catalog, receiver) -> None:
    added = add_webhook(cli, "hooks", receiver.url)
    secret = added["secret"]
    assert secret.startswith("whsec_")

    listed = cli("webhook", "list", "--json", check=True, MOUNTSYNC_SECRETS_KEY=SECRETS_KEY).stdout
    table = cli("sink", "list", check=True).stdout
    stored = catalog.execute("SELECT sinks::text FROM sinks").fetchone()
    assert stored is not None
    for shown in (listed, table, stored[0]):
        assert secret not in shown and secret.removeprefix("whsec_") not in shown
    assert json.loads(listed)[0]["name"] == "hooks"


def test_changes_arrive_signed_in_batches_of_500_with_the_change_feed_fields(
    cli, catalog, add_mount, apply, deliver, receiver
) -> None:
    add_mount("m", "s3://bkt/")
    receiver.secret = add_webhook(cli, "hooks", receiver.url)["secret"]
    apply([change(f"k/{i:05d}.png", seq=1) for i in range(1234)])

    report = deliver("hooks")

    assert report.delivered == 1234 and receiver.unverified == 0
    batches = receiver.of_type("mountsync.changes")
    assert [len(d.body["data"]["entries"]) for d in batches] == [500, 500, 234]
    for batch in batches:
        data = batch.body["data"]
        assert batch.id == f"changes-{data['first_cursor']}-{data['last_cursor']}"
        assert [data["first_cursor"], data["last_cursor"]] == [data["entries"][0]["cursor"],
                                                               data["entries"][-1]["cursor"]]  # fmt: skip
    expected = [json.loads(json.dumps(e.to_json())) for e in read_changes(catalog, 0, limit=5000)]
    assert receiver.entries() == expected
    assert sink_row(catalog, "hooks")["cursor"] == expected[-1]["cursor"]


def test_a_replay_redelivers_with_the_same_ids(cli, catalog, add_mount, apply, deliver, receiver) -> None:
    add_mount("m", "s3://bkt/")
    receiver.secret = add_webhook(cli, "hooks", receiver.url)["secret"]
    apply([change(f"k/{i:04d}.png", seq=1) for i in range(700)])
    deliver("hooks")
    first_ids = [d.id for d in receiver.accepted]

    cli("sink", "replay", "hooks", "--from", "0", check=True)
    assert sink_row(catalog, "hooks")["cursor"] == 0
    deliver("hooks")

    assert [d.id for d in receiver.accepted] == first_ids * 2


def test_failures_keep_the_cursor_and_retry_honouring_retry_after(
    cli, catalog, add_mount, apply, deliver, receiver
) -> None:
    add_mount("m", "s3://bkt/")
    receiver.secret = add_webhook(cli, "hooks", receiver.url)["secret"]
    apply([change("a.png")])
    receiver.script = [(503, "1"), (429, "2")]

    failed = deliver("hooks")
    assert failed.failed and failed.retry_in_s >= 1.0
    assert sink_row(catalog, "hooks")["cursor"] == 0
    assert deliver("hooks").skipped == "backing off"  # not due yet: nothing sent

    again = wait_for(lambda: (r := deliver("hooks")).skipped != "backing off" and r, timeout=10, what="retry")
    assert again.failed and again.retry_in_s >= 2.0  # the 429's Retry-After
    done = wait_for(lambda: (r := deliver("hooks")).skipped != "backing off" and r, timeout=10, what="retry")
    assert done.delivered == 1 and not done.failed
    assert len(receiver.refused) == 2 and len(set(receiver.refused)) == 1
    assert receiver.refused[0] == receiver.accepted[0].id
    assert sink_row(catalog, "hooks")["attempts"] == 0


def test_a_410_disables_the_subscription_and_raises_an_alert(cli, catalog, add_mount, apply, deliver, receiver) -> None:
    add_mount("m", "s3://bkt/")
    add_webhook(cli, "hooks", receiver.url)
    apply([change("a.png")])
    receiver.script = [(410, None)]

    deliver("hooks")

    row = sink_row(catalog, "hooks")
    assert row["state"] == "disabled" and "410" in row["state_reason"]
    assert deliver("hooks").skipped == "disabled"
    alerts = json.loads(cli("sink", "alerts", "--json", check=True).stdout)
    assert [(a["sink"], a["kind"]) for a in alerts] == [("hooks", "sink-disabled")]


def test_a_receiver_failing_past_the_limit_pauses_the_sink_until_resumed(
    cli, catalog, add_mount, apply, deliver, receiver
) -> None:
    add_mount("m", "s3://bkt/")
    receiver.secret = add_webhook(cli, "hooks", receiver.url)["secret"]
    apply([change("a.png")])
    receiver.script = [(500, "0")] * 50

    # A tiny retry limit (the limit is what is tested): retried with backoff, then paused.
    wait_for(lambda: deliver("hooks", retry_for_s=0.3) and sink_row(catalog, "hooks")["state"] == "paused",
             timeout=15, what="the sink to pause")  # fmt: skip

    row = sink_row(catalog, "hooks")
    assert row["state"] == "paused" and row["cursor"] == 0
    assert [a["kind"] for a in json.loads(cli("sink", "alerts", "--json", check=True).stdout)] == ["sink-paused"]
    receiver.script = []
    cli("sink", "resume", "hooks", check=True)
    assert deliver("hooks").delivered == 1
    assert sink_row(catalog, "hooks")["state"] == "active"


def test_a_sink_gets_only_its_mounts_and_topics(cli, catalog, add_mount, apply, deliver, receiver) -> None:
    add_mount("m", "s3://bkt/")
    add_mount("other", "s3://other/")
    receiver.secret = add_webhook(cli, "hooks", receiver.url, "--mount", "m", "--events", "changes")["secret"]
    add_webhook(cli, "alerts-only", receiver.url, "--events", "alerts")
    apply([change("a.png"), change("b.png", bucket="other"), change("c.png")])

    deliver("hooks")
    deliver("alerts-only")

    assert [(e["mount"], e["key"]) for e in receiver.entries()] == [("m", "a.png"), ("m", "c.png")]
    assert sink_row(catalog, "hooks")["cursor"] == 3  # past the other mount's entry too
    assert sink_row(catalog, "alerts-only")["cursor"] == 0


def test_webhook_test_sends_one_signed_message(cli, catalog, receiver) -> None:
    receiver.secret = add_webhook(cli, "hooks", receiver.url)["secret"]

    proc = cli("webhook", "test", "hooks", "--json", MOUNTSYNC_SECRETS_KEY=SECRETS_KEY)

    assert proc.returncode == 0, proc.stderr
    [message] = receiver.accepted
    assert message.body["type"] == "mountsync.test" and json.loads(proc.stdout)["webhook_id"] == message.id


def test_webhook_test_to_a_receiver_that_is_down_is_one_line_and_exit_1(cli, catalog) -> None:
    add_webhook(cli, "hooks", f"http://127.0.0.1:{free_port()}/hook?token=s3cr3t")

    proc = cli("webhook", "test", "hooks", MOUNTSYNC_SECRETS_KEY=SECRETS_KEY)

    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "unreachable" in proc.stderr and "s3cr3t" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--events", "changes,sales"], {"MOUNTSYNC_SECRETS_KEY": SECRETS_KEY}, "--events"),
        (["--secret", "whsec_short"], {"MOUNTSYNC_SECRETS_KEY": SECRETS_KEY}, "--secret"),
        (["--mount", "nope"], {"MOUNTSYNC_SECRETS_KEY": SECRETS_KEY}, "--mount nope"),
        ([], {"MOUNTSYNC_SECRETS_KEY": ""}, "MOUNTSYNC_SECRETS_KEY"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, catalog, args, env, says) -> None:
    proc = cli("webhook", "add", "hooks", "http://127.0.0.1:1/x", *args, **env)
    assert proc.returncode == 2 and says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert catalog.execute("SELECT count(*) FROM sinks").fetchone() == (0,)


def test_a_worker_delivers_applied_changes_and_alerts_without_being_asked(
    cli, catalog, add_mount, sink_worker, receiver, settings
) -> None:
    from mountsync.shared.queues import QUEUE_CHANGES, TASK_APPLY, make_client, send
    from mountsync.workers.sinks import store

    add_mount("m", "s3://bkt/")
    receiver.secret = add_webhook(cli, "hooks", receiver.url, "--events", "changes,alerts")["secret"]
    client = make_client(settings)
    for n in range(3):
        send(client, TASK_APPLY, [change(f"w/{n}-{i}.png").to_wire() for i in range(40)], queue=QUEUE_CHANGES)

    wait_for(lambda: len(receiver.entries()) == 120, timeout=60, what="120 entries at the receiver")
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        store.raise_alert(conn, "connector-x", "annotated-task-deleted", {"task": 7}, mount="m", key="a.png")
    # No nudge for an alert raised outside a worker: the sweep (beat) or the next apply delivers it.
    send(client, TASK_APPLY, [change("w/last.png").to_wire()], queue=QUEUE_CHANGES)
    alert = wait_for(lambda: receiver.of_type("mountsync.alerts"), timeout=60, what="the alert")
    assert alert[0].body["data"]["kind"] == "annotated-task-deleted" and alert[0].id.startswith("alerts-")
    wait_for(lambda: len(receiver.entries()) == 121, timeout=60, what="the last entry")
    assert sorted(e["key"] for e in receiver.entries()) == sorted(
        [f"w/{n}-{i}.png" for n in range(3) for i in range(40)] + ["w/last.png"]
    )


def test_sink_list_shows_the_lag_in_entries_and_seconds(cli, catalog, add_mount, apply, deliver, receiver) -> None:
    add_mount("m", "s3://bkt/")
    add_webhook(cli, "hooks", receiver.url)
    apply([change(f"l/{i}.png") for i in range(30)])
    catalog.execute("UPDATE change_log SET applied_at = now() - interval '90 seconds'")

    [behind] = json.loads(cli("sink", "list", "--json", check=True).stdout)
    assert (behind["name"], behind["lag_entries"], behind["state"]) == ("hooks", 30, "active")
    assert 90 <= behind["lag_seconds"] < 600 and "secret" not in behind
    deliver("hooks")
    [caught_up] = json.loads(cli("sink", "list", "--json", check=True).stdout)
    assert (caught_up["lag_entries"], caught_up["lag_seconds"], caught_up["delivered"]) == (0, 0, 30)


def test_alerts_and_migration_endings_reach_their_subscribers_in_order(cli, catalog, deliver, receiver) -> None:
    from mountsync.workers.sinks import store

    receiver.secret = add_webhook(cli, "ops", receiver.url, "--events", "alerts,migrations")["secret"]
    store.append_event(catalog, "migrations", "completed", {"job_id": "j1", "state": "completed"})
    store.raise_alert(catalog, "ls", "annotated-task-deleted", {"task": 3}, mount="m", key="a.png")
    store.raise_alert(catalog, "ls", "annotated-task-deleted", {"task": 3}, mount="m", key="a.png")  # still open

    deliver("ops")

    types = [(d.body["type"], d.id) for d in receiver.accepted]
    assert [t for t, _ in types] == ["mountsync.migrations.completed", "mountsync.alerts.annotated-task-deleted"]
    assert [i for _, i in types] == ["migrations-1", "alerts-2"] and receiver.unverified == 0
    assert receiver.accepted[0].body["data"] == {"job_id": "j1", "state": "completed"}
