"""PubSubSource against the real Pub/Sub emulator, and the enricher against fake-gcs-server."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from mountsync.producers.gcs_pubsub import PubSubSource
from mountsync.producers.normalize.gcs import normalize_gcs
from mountsync.producers.normalize.gcs_enrich import StatEnricher
from mountsync.shared.errors import BadInput, ConfigError
from mountsync.shared.events import Kind, ObjectChange, Provider, RawMessage, Source
from mountsync.shared.storage import open_storage
from tests.helpers import wait_for
from tests.standins.gcs import GcsEndpoints, PubSubEndpoints


@pytest.fixture
def topic(pubsub_emulator: PubSubEndpoints) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    pubsub_emulator.create_topic(name)
    return name


def subscribe(pubsub: PubSubEndpoints, topic: str, **settings: object) -> str:
    return pubsub.create_subscription(f"s-{uuid.uuid4().hex[:12]}", topic, **settings)


def publish(pubsub: PubSubEndpoints, topic: str, count: int, prefix: str = "m") -> list[str]:
    publisher = pubsub.publisher()
    futures = [publisher.publish(pubsub.topic_path(topic), f"{prefix}{i}".encode(), n=str(i)) for i in range(count)]
    ids = [f.result(timeout=30) for f in futures]
    publisher.transport.close()
    return ids


def open_source(pubsub: PubSubEndpoints, path: str, **kwargs: object) -> PubSubSource:
    return PubSubSource(path, subscriber=pubsub.subscriber(), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def sources() -> Iterator[list[PubSubSource]]:
    opened: list[PubSubSource] = []
    yield opened
    for source in opened:
        source.close()


def collect(source: PubSubSource, want: int, within_s: float = 20.0) -> list[RawMessage]:
    got: list[RawMessage] = []
    deadline = time.monotonic() + within_s
    while len(got) < want and time.monotonic() < deadline:
        got += source.receive(want - len(got), 0.5)
    return got


def test_receives_published_messages_as_raw_messages(
    pubsub_emulator: PubSubEndpoints, topic: str, sources: list[PubSubSource]
) -> None:
    path = subscribe(pubsub_emulator, topic)
    source = open_source(pubsub_emulator, path)
    sources.append(source)
    ids = publish(pubsub_emulator, topic, 5)
    got = collect(source, 5)
    assert sorted(m.message_id for m in got) == sorted(ids)
    assert {m.body for m in got} == {f"m{i}".encode() for i in range(5)}
    assert all(m.source is Source.GCS_PUBSUB and m.delivery_count >= 1 for m in got)
    assert {m.attributes["n"] for m in got} == {str(i) for i in range(5)}
    assert source.ack(got) == []
    assert source.receive(10, 0.2) == []


def test_nacked_messages_come_back_with_the_same_id(
    pubsub_emulator: PubSubEndpoints, topic: str, sources: list[PubSubSource]
) -> None:
    path = subscribe(pubsub_emulator, topic)
    source = open_source(pubsub_emulator, path)
    sources.append(source)
    (message_id,) = publish(pubsub_emulator, topic, 1)
    first = collect(source, 1)
    source.nack(first)
    again = collect(source, 1)
    assert [m.message_id for m in again] == [message_id]
    source.ack(again)


class UnaryCalls(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Records each unary request a client sends; the emulator still receives and answers it."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.requests.append((details.method.rsplit("/", 1)[-1], request))
        return continuation(details, request)


def test_close_hands_back_everything_not_acked(
    pubsub_emulator: PubSubEndpoints, topic: str, sources: list[PubSubSource]
) -> None:
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    path = subscribe(pubsub_emulator, topic, ack_deadline_seconds=600)
    calls = UnaryCalls()
    channel = grpc.intercept_channel(grpc.insecure_channel(pubsub_emulator.host), calls)
    subscriber = pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))
    source = PubSubSource(path, subscriber=subscriber)
    sources.append(source)  # closed again at teardown (a no-op) if an assertion stops the test
    ids = publish(pubsub_emulator, topic, 6)
    got = collect(source, 6)
    assert sorted(m.message_id for m in got) == sorted(ids)
    source.ack(got[:2])
    source.close()  # 4 received but never acked: handed back now, not after a lease runs out
    handed_back = [
        ack_id
        for method, request in calls.requests
        if method == "ModifyAckDeadline" and request.ack_deadline_seconds == 0
        for ack_id in request.ack_ids
    ]
    assert sorted(handed_back) == sorted(m.handle.ack_id for m in got[2:])
    # Whether they are available at once is the server's affair: the emulator (0.8.20) notices a
    # cancelled streaming pull late and may route them into it, where they wait out its 60 s ack
    # deadline (seen on a cold emulator even 0.5 s after the stream ended). A nack's effect on
    # a live subscription is checked by test_nacked_messages_come_back_with_the_same_id.


def test_flow_control_bounds_what_is_held_unacked(
    pubsub_emulator: PubSubEndpoints, topic: str, sources: list[PubSubSource]
) -> None:
    path = subscribe(pubsub_emulator, topic)
    source = open_source(pubsub_emulator, path, max_messages=5)
    sources.append(source)
    publish(pubsub_emulator, topic, 20)
    held = collect(source, 20, within_s=3)
    assert len(held) == 5  # the rest stays in Pub/Sub until these are settled
    source.ack(held)
    assert len(collect(source, 5)) == 5


def test_exactly_once_subscriptions_confirm_acks(
    pubsub_emulator: PubSubEndpoints, topic: str, sources: list[PubSubSource]
) -> None:
    path = subscribe(pubsub_emulator, topic, enable_exactly_once_delivery=True)
    source = open_source(pubsub_emulator, path)
    sources.append(source)
    assert source.exactly_once
    publish(pubsub_emulator, topic, 3)
    got = collect(source, 3)
    assert source.ack(got) == []
    plain = open_source(pubsub_emulator, subscribe(pubsub_emulator, topic))
    sources.append(plain)
    assert not plain.exactly_once


def test_a_missing_subscription_is_a_config_error(pubsub_emulator: PubSubEndpoints) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        open_source(pubsub_emulator, pubsub_emulator.subscription_path("nope-" + uuid.uuid4().hex))
    with pytest.raises(BadInput, match="projects/PROJECT/subscriptions/NAME"):
        open_source(pubsub_emulator, "just-a-name")


# -- the enricher for payload-less notifications -----------------------------------------------
def none_payload_change(bucket: str, key: str, generation: int, event: str) -> ObjectChange:
    attributes = {"eventType": event, "payloadFormat": "NONE", "bucketId": bucket,
                  "objectId": key, "objectGeneration": str(generation),
                  "eventTime": "2024-01-01T00:00:00Z"}  # fmt: skip
    (change,) = normalize_gcs(RawMessage(Source.GCS_PUBSUB, "1", b"", attributes))
    return change


def test_enricher_stats_objects_of_payload_less_notifications(fake_gcs: GcsEndpoints, bucket_name: str) -> None:
    fake_gcs.create_bucket(bucket_name)
    storage = open_storage(f"gs://{bucket_name}/", fake_gcs.storage_options())
    first = storage.put("a.png", io.BytesIO(b"one"), 3)
    current = storage.put("a.png", io.BytesIO(b"two!"), 4)
    kept = storage.put("b.png", io.BytesIO(b"bee"), 3)
    enrich = StatEnricher(lambda bucket: fake_gcs.storage_options())
    stale = none_payload_change(bucket_name, "a.png", int(first.version or 0), "OBJECT_FINALIZE")
    same = none_payload_change(bucket_name, "b.png", int(kept.version or 0),
                               "OBJECT_METADATA_UPDATE")  # fmt: skip
    gone = none_payload_change(bucket_name, "c.png", 5, "OBJECT_FINALIZE")
    removal = ObjectChange(Provider.GCS, bucket_name, "d.png", Kind.DELETED, 1, Source.GCS_PUBSUB,
                           version="7", sequencer="x")  # fmt: skip
    out = {c.key: c for c in enrich([stale, same, gone, removal])}
    assert set(out) == {"a.png", "b.png", "d.png"}  # c.png no longer exists: its DELETE follows
    assert (out["a.png"].size, out["a.png"].etag, out["a.png"].version) == (
        4, current.etag, current.version)  # fmt: skip
    assert out["a.png"].sequencer == current.sequencer and out["a.png"].kind is Kind.CREATED
    assert out["b.png"].kind is Kind.METADATA and out["b.png"].etag == kept.etag
    assert out["d.png"] is removal


def test_a_subscription_deleted_while_running_stops_with_a_config_error(
    pubsub_emulator: PubSubEndpoints, topic: str, sources: list[PubSubSource]
) -> None:
    path = subscribe(pubsub_emulator, topic)
    source = open_source(pubsub_emulator, path)
    sources.append(source)
    admin = pubsub_emulator.subscriber()
    admin.delete_subscription(subscription=path)
    admin.close()

    def stream_error() -> bool:
        try:
            source.receive(10, 0.2)
        except ConfigError:
            return True
        return False

    wait_for(stream_error, timeout=30, what="the stream to report the missing subscription")
