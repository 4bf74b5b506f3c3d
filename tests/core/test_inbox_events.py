"""Inbox entries of raw events (``producers/inbox_events.py``) on real Redis and PostgreSQL: the
Event Grid webhook queues a body as delivered, and the drainer normalizes its events one by one."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from mountsync.producers.inbox import Drainer, Inbox, InboxSource
from mountsync.producers.inbox_events import EntryTally
from mountsync.producers.normalize.azure import split_events
from mountsync.producers.sources import event_entries_for
from mountsync.shared.events import RawMessage
from tests.core.test_inbox import SOURCE, event, pending
from tests.helpers import queued_changes, wait_for

ATTRIBUTES = {"aeg-event-type": "Notification", "aeg-delivery-count": "0"}


def test_the_drainer_queues_the_good_events_of_an_entry_and_dead_letters_the_bad_one(own: Any) -> None:
    settings, runtime = own
    events = [event(i) for i in range(3)]
    events[1]["data"]["url"] = "http://127.0.0.1:10000/devstoreaccount1/"  # no container
    body = json.dumps(events, indent=2).encode()
    inbox = Inbox(runtime.redis, settings, SOURCE)
    inbox.append_events(body, ATTRIBUTES)
    drainer = Drainer(runtime, SOURCE, consumer="e1", events=event_entries_for(SOURCE, runtime)).start()
    try:
        wait_for(lambda: runtime.redis.xlen(inbox.key) == 0, what="the entry settled")
    finally:
        drainer.stop()
    assert sorted(c["key"] for c in queued_changes(runtime.redis, settings)) == ["cam/0000.jpg", "cam/0002.jpg"]
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute("SELECT source, message_id, reason, payload, attributes FROM dead_letters").fetchall()
    [(source, message_id, reason, payload, attributes)] = rows
    assert (source, message_id) == ("azure-eventgrid", "ev-1")  # replay normalizes it as an Event Grid event
    assert "does not name a container" in reason
    assert bytes(payload) in body and json.loads(bytes(payload)) == events[1]  # its bytes as delivered
    assert attributes["aeg-event-type"] == "Notification"
    assert pending(runtime.redis, inbox.key) == 0


def test_an_entry_settles_only_when_every_one_of_its_events_did(own: Any) -> None:
    settings, runtime = own
    inbox = Inbox(runtime.redis, settings, SOURCE)
    inbox.append_events(json.dumps([event(i) for i in range(3)]).encode(), ATTRIBUTES)
    source = InboxSource(runtime.redis, settings, SOURCE, consumer="e2", split_events=split_events)
    first, second, third = source.receive(10, 0.1)
    assert [m.payload["id"] for m in (first, second, third)] == ["ev-0", "ev-1", "ev-2"]
    assert first.handle == second.handle == third.handle
    source.ack([first])
    source.reject([second])
    source.nack([third])  # a transient failure: the entry must not go
    assert runtime.redis.xlen(inbox.key) == 1 and pending(runtime.redis, inbox.key) == 1
    (again,) = source.receive(10, 0.1)
    assert again is third
    source.ack([again])
    assert runtime.redis.xlen(inbox.key) == 0 and pending(runtime.redis, inbox.key) == 0


def test_a_crash_mid_entry_brings_back_every_event_of_it(own: Any) -> None:
    settings, runtime = own
    inbox = Inbox(runtime.redis, settings, SOURCE)
    inbox.append_events(json.dumps([event(i) for i in range(2)]).encode(), ATTRIBUTES)
    crashed = InboxSource(runtime.redis, settings, SOURCE, consumer="host:1", split_events=split_events)
    first, _ = crashed.receive(10, 0.1)
    crashed.ack([first])  # then the process dies before the second event settles
    restarted = InboxSource(runtime.redis, settings, SOURCE, consumer="host:1", split_events=split_events)
    back = restarted.receive(10, 0.1)
    assert [m.message_id for m in back] == ["ev-0", "ev-1"] and {m.delivery_count for m in back} == {2}


def test_entries_of_many_events_are_read_a_few_at_a_time(own: Any) -> None:
    settings, runtime = own
    inbox = Inbox(runtime.redis, settings, SOURCE)
    for start in range(0, 400, 100):
        inbox.append_events(json.dumps([event(i) for i in range(start, start + 100)]).encode(), ATTRIBUTES)
    source = InboxSource(runtime.redis, settings, SOURCE, consumer="e3", split_events=split_events)
    sizes = [len(source.receive(150, 0.1)) for _ in range(4)]
    assert sizes == [100, 100, 100, 100]  # one entry per read, not 150 entries of 100 events each


def test_the_tally_settles_an_entry_with_its_last_message() -> None:
    tally = EntryTally()
    tally.opened(b"1-0", 2)
    one, two = (RawMessage(SOURCE, str(i), b"{}", handle=b"1-0") for i in range(2))
    assert tally.settled([one]) == [] and tally.settled([two]) == [b"1-0"]
    assert tally.settled([RawMessage(SOURCE, "x", b"{}", handle=b"2-0")]) == [b"2-0"]  # an entry of changes
