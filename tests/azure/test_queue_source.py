"""``StorageQueueSource`` against Azurite's Queue service, with events from real blob operations."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mountsync.producers.azure_queue import StorageQueueSource, make_queue_client
from mountsync.producers.normalize.azure import normalize_azure
from mountsync.producers.pipeline import with_delivery_limit
from mountsync.shared.errors import InvalidEvent
from tests.azure.blob_events import BlobEventFactory, queue_delivery
from tests.helpers import wait_for
from tests.standins.azure import AzuriteEndpoints


def source_for(queue: Any, azurite: AzuriteEndpoints, **kwargs: Any) -> StorageQueueSource:
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    return StorageQueueSource(make_queue_client(queue.queue_name, {}, env), **kwargs)


def test_base64_events_normalize_and_ack_deletes(storage_queue: Any, container: Any, azurite: AzuriteEndpoints) -> None:
    factory = BlobEventFactory(container)
    queue_delivery(storage_queue, [factory.put("v/clip 1.mp4", b"0123456789"), factory.delete("v/clip 1.mp4")])
    source = source_for(storage_queue, azurite, renew=False)

    messages = source.receive(10, 5)

    assert all(not m.body.startswith(b"{") for m in messages)  # base64 as delivered
    changes = [c for m in messages for c in normalize_azure(m)]
    assert [(c.key, c.kind.value, c.size) for c in changes] == [
        ("v/clip 1.mp4", "created", 10),
        ("v/clip 1.mp4", "deleted", None),
    ]
    assert changes[0].sequencer < changes[1].sequencer
    assert source.ack(messages) == []
    assert storage_queue.get_queue_properties().approximate_message_count == 0
    source.close()


def test_receive_waits_then_returns_empty(storage_queue: Any, azurite: AzuriteEndpoints) -> None:
    source = source_for(storage_queue, azurite, renew=False)
    started = time.monotonic()
    assert source.receive(10, 0.5) == []
    assert 0.4 <= time.monotonic() - started < 3
    source.close()


def test_nack_redelivers_with_a_higher_dequeue_count_and_poison_is_dead_lettered(
    storage_queue: Any, container: Any, azurite: AzuriteEndpoints
) -> None:
    queue_delivery(storage_queue, [BlobEventFactory(container).put("p.bin", b"x")])
    source = source_for(storage_queue, azurite, renew=False)
    guarded = with_delivery_limit(normalize_azure, 1)
    [first] = source.receive(1, 5)
    assert len(guarded(first)) == 1

    source.nack([first])
    [again] = wait_for(lambda: source.receive(1, 1), timeout=10, what="redelivery")

    assert again.delivery_count == 2
    with pytest.raises(InvalidEvent, match="poison"):
        guarded(again)
    source.reject([again])
    assert storage_queue.get_queue_properties().approximate_message_count == 0
    source.close()


def test_extend_keeps_the_message_and_ack_still_works(
    storage_queue: Any, container: Any, azurite: AzuriteEndpoints
) -> None:
    queue_delivery(storage_queue, [BlobEventFactory(container).put("e.bin", b"x")])
    source = source_for(storage_queue, azurite, visibility_timeout=1, renew=False)
    [held] = source.receive(1, 5)
    source.extend([held], 30)  # changes the pop receipt; the ack must use the new one
    other = source_for(storage_queue, azurite, renew=False)
    assert other.receive(1, 2) == []
    assert source.ack([held]) == []
    source.close()
    other.close()


def test_held_messages_are_kept_invisible_by_the_lease_keeper(
    storage_queue: Any, container: Any, azurite: AzuriteEndpoints
) -> None:
    queue_delivery(storage_queue, [BlobEventFactory(container).put("slow.bin", b"x")])
    source = source_for(storage_queue, azurite, visibility_timeout=2)
    other = source_for(storage_queue, azurite, renew=False)
    [held] = source.receive(1, 5)
    assert other.receive(1, 3.5) == []  # well past the 2 s visibility: renewal kept it hidden
    assert source.ack([held]) == []
    source.close()
    other.close()


def test_ack_of_an_already_deleted_message_reports_it(
    storage_queue: Any, container: Any, azurite: AzuriteEndpoints
) -> None:
    queue_delivery(
        storage_queue,
        [BlobEventFactory(container).put("d.bin", b"x"), BlobEventFactory(container).put("d2.bin", b"y")],
    )
    source = source_for(storage_queue, azurite, renew=False)
    messages = source.receive(2, 5)
    storage_queue.delete_message(messages[0].handle.id, messages[0].handle.pop_receipt)

    assert source.ack(messages) == [messages[0]]
    source.close()
