"""``EventGridPullSource`` through the real azure-eventgrid client against the project's test server."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from azure.core.credentials import AzureKeyCredential

from mountsync.producers.azure_eventgrid import EventGridPullSource, check_endpoint, make_client
from mountsync.producers.normalize.azure import normalize_azure
from mountsync.shared.errors import BadInput, CredentialsRejected, InvalidEvent
from mountsync.shared.events import Kind
from tests.azure.blob_events import BlobEventFactory, as_cloudevent, publish
from tests.helpers import wait_for

TOPIC, SUB = "blob-events", "ingest"


def pull_source(server: Any, key: str = "test-key", **kwargs: Any) -> EventGridPullSource:
    server.subscription(TOPIC, SUB)
    client = make_client(server.endpoint, TOPIC, SUB, AzureKeyCredential(key))
    return EventGridPullSource(client, TOPIC, SUB, **kwargs)


def test_received_events_normalize_to_what_azurite_holds(eventgrid: Any, container: Any) -> None:
    source = pull_source(eventgrid, renew_every_s=None)
    factory = BlobEventFactory(container)
    published = [factory.put("frames/0001.png", b"png-bytes"), factory.put("a b+c.txt", b"12345")]
    publish(eventgrid.endpoint, eventgrid.key, TOPIC, published)

    messages = source.receive(10, 10)

    assert [m.delivery_count for m in messages] == [1, 1]
    changes = [c for m in messages for c in normalize_azure(m)]
    props = {b.name: b for b in container.list_blobs()}
    assert {(c.key, c.size, c.etag) for c in changes} == {
        (name, p.size, p.etag.strip('"')) for name, p in props.items()
    }
    assert all(c.kind is Kind.CREATED for c in changes)
    assert source.ack(messages) == []
    assert len(eventgrid.subscription(TOPIC, SUB).acked) == 2
    source.close()


def test_release_redelivers_and_reject_dead_letters(eventgrid: Any, container: Any) -> None:
    source = pull_source(eventgrid, release_delay=0, renew_every_s=None)
    factory = BlobEventFactory(container)
    publish(eventgrid.endpoint, eventgrid.key, TOPIC, [factory.put("x", b"1"), factory.put("y", b"2")])
    first = source.receive(10, 10)
    by_key = {normalize_azure(m)[0].key: m for m in first}

    source.nack([by_key["x"]])
    source.reject([by_key["y"]])
    again = source.receive(10, 10)

    assert [normalize_azure(m)[0].key for m in again] == ["x"]
    assert again[0].delivery_count == 2
    sub = eventgrid.subscription(TOPIC, SUB)
    assert [e["data"]["url"].rsplit("/", 1)[1] for e in sub.dead_lettered] == ["y"]
    source.ack(again)
    source.close()


def test_failed_lock_tokens_are_returned_not_raised(eventgrid: Any, container: Any) -> None:
    source = pull_source(eventgrid, renew_every_s=None)
    factory = BlobEventFactory(container)
    publish(eventgrid.endpoint, eventgrid.key, TOPIC, [factory.put(f"k{i}", b"v") for i in range(3)])
    messages = source.receive(10, 10)
    eventgrid.fail_tokens.add(messages[1].handle)

    failed = source.ack(messages)

    assert failed == [messages[1]]
    assert len(eventgrid.subscription(TOPIC, SUB).acked) == 2
    source.close()


def test_held_locks_are_renewed_for_slow_batches(container: Any) -> None:
    from tests.azure.eventgrid_server import EventGridServer

    server = EventGridServer(lock_s=1.0).start()
    try:
        slow = pull_source(server, renew_every_s=0.4)
        publish(server.endpoint, server.key, TOPIC, [BlobEventFactory(container).put("s", b"1")])
        held = slow.receive(1, 10)
        other = pull_source(server, renew_every_s=None)  # a competing consumer, polling from now on
        assert other.receive(1, 2.5) == []  # polled for several lock durations: renewal keeps it ours
        assert slow.ack(held) == []
        assert "renewLock" in server.requests
        slow.close()
        other.close()
    finally:
        server.stop()


def test_without_renewal_an_expired_lock_redelivers(container: Any) -> None:
    from tests.azure.eventgrid_server import EventGridServer

    server = EventGridServer(lock_s=0.5).start()
    try:
        source = pull_source(server, renew_every_s=None)
        publish(server.endpoint, server.key, TOPIC, [BlobEventFactory(container).put("s", b"1")])
        first = source.receive(1, 10)
        again = wait_for(lambda: source.receive(1, 10), timeout=10, what="redelivery")
        assert again[0].delivery_count == 2
        assert source.ack(first) == first  # the old lock is gone: reported, not raised
        source.close()
    finally:
        server.stop()


def test_a_dry_subscription_after_a_full_receive_does_not_hold_the_batch(eventgrid: Any, container: Any) -> None:
    """Event Grid holds an empty receive for at least 10 s. The loop's short batch-window waits
    are served from the prefetched events, so a batch that drained the subscription with a full
    receive is handed over (and acknowledged) at once, not after another 10 s long poll."""
    source = pull_source(eventgrid, renew_every_s=None)
    eventgrid.max_wait_cap_s = 5.0
    real = BlobEventFactory(container).put("one.bin", b"1")
    eventgrid.publish(TOPIC, [{**real, "id": f"copy-{i}"} for i in range(100)])  # one full receive
    first = source.receive(100, 10)
    assert len(first) == 100
    started = time.monotonic()
    assert source.receive(10, 0.2) == []  # the thread's long poll is in flight; we do not wait for it
    assert time.monotonic() - started < 0.5
    assert source.ack(first) == []
    source.close()


def test_prefetched_events_are_released_on_close(eventgrid: Any, container: Any) -> None:
    source = pull_source(eventgrid, renew_every_s=None)
    factory = BlobEventFactory(container)
    publish(eventgrid.endpoint, eventgrid.key, TOPIC, [factory.put(f"p{i}", b"v") for i in range(3)])
    sub = eventgrid.subscription(TOPIC, SUB)
    wait_for(lambda: sub.received == 3, timeout=10, what="the prefetch")
    taken = source.receive(1, 10)
    source.close()  # two fetched, not taken: back to the subscription at once
    assert len(sub.ready) == 2 and len(sub.locked) == 1
    assert taken[0].handle in sub.locked


def test_endpoint_without_scheme_is_refused() -> None:
    with pytest.raises(BadInput, match="scheme"):
        check_endpoint("myns.westus-1.eventgrid.azure.net")


def test_a_malformed_cloud_event_does_not_block_the_others(eventgrid: Any, container: Any) -> None:
    source = pull_source(eventgrid, renew_every_s=None)
    good = BlobEventFactory(container).put("good.bin", b"x")
    eventgrid.subscription(TOPIC, SUB)
    eventgrid.publish(TOPIC, [{"id": "no-source-no-type"}, as_cloudevent(good)])
    messages = source.receive(10, 10)
    assert [m.message_id for m in messages] == ["no-source-no-type", good["id"]]
    with pytest.raises(InvalidEvent):
        normalize_azure(messages[0])
    assert [c.key for c in normalize_azure(messages[1])] == ["good.bin"]
    source.reject(messages[:1])
    assert source.ack(messages[1:]) == []
    source.close()


def test_events_keep_their_seven_digit_time(eventgrid: Any, container: Any) -> None:
    source = pull_source(eventgrid, renew_every_s=None)
    event = BlobEventFactory(container).put("t.bin", b"x")
    publish(eventgrid.endpoint, eventgrid.key, TOPIC, [event])
    [message] = source.receive(1, 10)
    assert json.loads(message.body)["time"] == event["eventTime"]
    source.ack([message])
    source.close()


def test_wrong_key_is_rejected_credentials(eventgrid: Any) -> None:
    source = pull_source(eventgrid, key="wrong", renew_every_s=None)
    with pytest.raises(CredentialsRejected):
        source.receive(1, 10)
    source.close()
