"""The push endpoints' inbox (``producers/inbox.py``) on real Redis and PostgreSQL.

Each test has its own Redis prefix, so the session worker does not consume the ``changes`` queue
the test inspects. Crashed drainers are simulated by reading entries and never settling them,
which is exactly what a killed process leaves behind in the consumer group.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import psycopg
import pytest
import redis as redis_lib
from fastapi.testclient import TestClient as Client

from mountsync.producers.inbox import GROUP, Drainer, Inbox, InboxSource, decode_entry
from mountsync.producers.sources import event_entries_for, inbox_sources
from mountsync.shared import metrics
from mountsync.shared.config import Settings
from mountsync.shared.errors import ServiceUnavailable
from mountsync.shared.events import Kind, ObjectChange, Provider, RawMessage, Source
from mountsync.shared.queues import inbox_key
from mountsync.shared.system_metrics import system_collector
from tests.helpers import queued_changes, wait_for

SOURCE = Source.AZURE_EVENTGRID


def change(i: int) -> ObjectChange:
    return ObjectChange(Provider.AZURE, "frames", f"cam/{i:04d}.jpg", Kind.CREATED, 1_700_000_000 + i, SOURCE,
                        size=i, etag=f"0x{i:X}", sequencer=f"{i:048X}", source_id=f"ev-{i}")  # fmt: skip


def pending(client: redis_lib.Redis, key: str) -> int:
    return int(client.xpending(key, GROUP)["pending"])


def test_drainer_moves_entries_to_the_changes_queue_in_batches_then_deletes_them(own: Any) -> None:
    settings, runtime = own
    inbox = Inbox(runtime.redis, settings, SOURCE)
    for i in range(30):
        inbox.enqueue([change(i)])  # one event per request: Event Grid's default delivery
    inbox.enqueue([change(i) for i in range(30, 40)])
    assert runtime.redis.xlen(inbox.key) == 31
    lengths = next(
        m for m in system_collector(settings, inbox_sources()).collect() if m.name == "mountsync_queue_length"
    )
    assert {s.labels["queue"]: s.value for s in lengths.samples}["inbox:azure-eventgrid"] == 31

    drainer = Drainer(runtime, SOURCE, consumer="t1").start()
    try:
        wait_for(lambda: len(queued_changes(runtime.redis, settings)) == 40, what="every change on the queue")
        wait_for(lambda: runtime.redis.xlen(inbox.key) == 0, what="drained entries deleted")
    finally:
        drainer.stop()
    keys = sorted(c["key"] for c in queued_changes(runtime.redis, settings))
    assert keys == [f"cam/{i:04d}.jpg" for i in range(40)]
    tasks = runtime.redis.llen(f"{settings.redis_prefix}changes")
    assert tasks < 31, "requests are batched into fewer apply tasks"
    assert pending(runtime.redis, inbox.key) == 0 and not drainer.alive


def test_a_full_inbox_refuses_and_keeps_what_it_holds(own: Any) -> None:
    settings, runtime = own
    inbox = Inbox(runtime.redis, replace(settings, inbox_max_depth=2), SOURCE)
    inbox.enqueue([change(1)])
    inbox.enqueue([change(2)])
    refused = metrics.INBOX_REFUSED.labels("azure-eventgrid")._value.get()
    with pytest.raises(ServiceUnavailable, match=r"holds 2 entries \(MOUNTSYNC_INBOX_MAX_DEPTH\)"):
        inbox.enqueue([change(3)])
    assert runtime.redis.xlen(inbox.key) == 2
    assert metrics.INBOX_REFUSED.labels("azure-eventgrid")._value.get() == refused + 1


def test_entries_a_killed_drainer_held_come_back_to_its_successor(own: Any) -> None:
    settings, runtime = own
    inbox = Inbox(runtime.redis, settings, SOURCE)
    for i in range(5):
        inbox.enqueue([change(i)])
    crashed = InboxSource(runtime.redis, settings, SOURCE, consumer="host:8080")
    held = crashed.receive(3, 0.1)
    assert [decode_entry(m)[0].key for m in held] == [f"cam/{i:04d}.jpg" for i in range(3)]
    # Restarted on the same host and port: its own pending entries first, then the rest.
    again = InboxSource(runtime.redis, settings, SOURCE, consumer="host:8080")
    first = again.receive(10, 0.1)
    assert [m.message_id for m in first] == [m.message_id for m in held]
    assert [m.delivery_count for m in first] == [2, 2, 2]
    rest = again.receive(10, 0.1)
    assert len(rest) == 2 and all(m.delivery_count == 1 for m in rest)
    again.ack(first + rest)
    assert runtime.redis.xlen(inbox.key) == 0 and pending(runtime.redis, inbox.key) == 0


def test_another_drainer_takes_over_entries_left_idle(own: Any) -> None:
    settings, runtime = own
    inbox = Inbox(runtime.redis, settings, SOURCE)
    inbox.enqueue([change(1), change(2)])
    dead = InboxSource(runtime.redis, settings, SOURCE, consumer="gone:1")
    assert len(dead.receive(10, 0.1)) == 1
    other = InboxSource(runtime.redis, settings, SOURCE, consumer="other:1", claim_idle_s=0.3)
    got: list[RawMessage] = []
    wait_for(lambda: bool(got.extend(other.receive(10, 0.05)) or got), what="the idle entry taken over")
    assert [c.key for c in decode_entry(got[0])] == ["cam/0001.jpg", "cam/0002.jpg"]
    assert got[0].delivery_count == 2
    other.ack(got)
    assert runtime.redis.xlen(inbox.key) == 0 and pending(runtime.redis, inbox.key) == 0


def test_a_nacked_entry_comes_back_without_counting_as_a_delivery(own: Any) -> None:
    """Transient failures (nacks) never bring an entry nearer the poison limit; a crash does."""
    settings, runtime = own
    Inbox(runtime.redis, settings, SOURCE).enqueue([change(7)])
    source = InboxSource(runtime.redis, settings, SOURCE, consumer="c:1")
    counts = []
    for _ in range(3):
        (message,) = source.receive(10, 0.1)
        counts.append(message.delivery_count)
        source.nack([message])
    assert counts == [1, 1, 1]
    source.close()  # the drainer's loop stopped (a bug, a shutdown): the entry is still pending
    (again,) = source.receive(10, 0.1)
    assert (again.message_id, again.delivery_count) == (message.message_id, 2)
    source.reject([again])
    assert source.receive(10, 0.05) == []


def test_an_entry_that_cannot_be_decoded_is_dead_lettered_not_lost(own: Any) -> None:
    settings, runtime = own
    key = inbox_key(settings.redis_prefix, SOURCE)
    runtime.redis.xadd(key, {"changes": b'{"not": "a list"}'})
    Inbox(runtime.redis, settings, SOURCE).enqueue([change(1)])
    drainer = Drainer(runtime, SOURCE, consumer="t2").start()
    try:
        wait_for(lambda: runtime.redis.xlen(key) == 0, what="both entries settled")
    finally:
        drainer.stop()
    assert [c["key"] for c in queued_changes(runtime.redis, settings)] == ["cam/0001.jpg"]
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute("SELECT source, reason, payload FROM dead_letters").fetchall()
    assert [(r[0], r[1], bytes(r[2])) for r in rows] == [
        ("inbox:azure-eventgrid", "inbox entry is not a JSON list of changes", b'{"not": "a list"}')
    ]


def test_webhook_answers_503_while_the_inbox_is_full_and_200_when_it_drained(own: Any) -> None:
    from mountsync.producers.http.app import make_app

    settings, runtime = own
    runtime.settings = replace(settings, inbox_max_depth=1)
    app = make_app(runtime.settings)
    app.state.serve._runtime = runtime  # this test's Redis prefix and pool
    app.state.serve.start_drainer = lambda source: None  # nobody drains until the test says so
    client = Client(app)
    body = json.dumps([event(i) for i in range(2)]).encode()
    headers = {"Content-Type": "application/json", "aeg-event-type": "Notification"}
    first = client.post("/eventgrid", content=body, headers=headers)
    assert (first.status_code, first.json()) == (200, {"queued": 2})
    full = client.post("/eventgrid", content=body, headers=headers)
    assert full.status_code == 503 and "retry later" in full.json()["error"]

    drainer = Drainer(runtime, SOURCE, consumer="t3", events=event_entries_for(SOURCE, runtime)).start()
    try:
        wait_for(lambda: runtime.redis.xlen(inbox_key(settings.redis_prefix, SOURCE)) == 0, what="the inbox drained")
    finally:
        drainer.stop()
    assert client.post("/eventgrid", content=body, headers=headers).status_code == 200


def event(i: int) -> dict[str, Any]:
    return {
        "topic": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
        "subject": f"/blobServices/default/containers/frames/blobs/cam/{i:04d}.jpg",
        "eventType": "Microsoft.Storage.BlobCreated",
        "id": f"ev-{i}",
        "eventTime": "2026-11-21T10:00:00.0000000Z",
        "dataVersion": "",
        "metadataVersion": "1",
        "data": {"api": "PutBlob", "eTag": f"0x{i:X}", "contentLength": i, "blobType": "BlockBlob",
                 "url": f"http://127.0.0.1:10000/devstoreaccount1/frames/cam/{i:04d}.jpg",
                 "sequencer": f"{i:048X}"},
    }  # fmt: skip


def test_redis_down_is_a_retryable_error_on_both_sides(settings: Settings) -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from tests.helpers import free_port

    down = redis_lib.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    with pytest.raises(ServiceUnavailable, match="cannot append to the inbox on Redis"):
        Inbox(down, settings, SOURCE).enqueue([change(1)])
    with pytest.raises(ServiceUnavailable, match="cannot read the inbox on Redis"):
        InboxSource(down, settings, SOURCE, consumer="c:1").receive(10, 0.1)
