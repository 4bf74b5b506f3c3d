"""``SqsSource`` against moto's SQS: long polling, delivery counts, partial delete failures,
nack, visibility extension for slow batches, and refusing a queue that does not exist."""

from __future__ import annotations

import dataclasses
import time

import pytest

from mountsync.producers.s3_sqs import SqsSource, make_sqs_client, region_of
from mountsync.shared.errors import ConfigError
from mountsync.shared.events import RawMessage, Source
from tests.helpers import wait_for
from tests.standins.s3 import MotoEndpoints


@pytest.fixture
def queue_url(moto: MotoEndpoints) -> str:
    url: str = moto.client("sqs").create_queue(QueueName="events", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    return url


def source(moto: MotoEndpoints, url: str, **kwargs: object) -> SqsSource:
    client = make_sqs_client(url, endpoint_url=moto.endpoint_url)
    return SqsSource(client, url, **kwargs)  # type: ignore[arg-type]


def send(moto: MotoEndpoints, url: str, *bodies: str) -> None:
    for body in bodies:
        moto.client("sqs").send_message(QueueUrl=url, MessageBody=body)


def queue_counts(moto: MotoEndpoints, url: str) -> tuple[int, int]:
    attrs = moto.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def receive_all(src: SqsSource, count: int) -> list[RawMessage]:
    got: list[RawMessage] = []
    deadline = time.monotonic() + 15
    while len(got) < count and time.monotonic() < deadline:
        got.extend(src.receive(10, 1))
    return got


def test_receive_carries_body_id_and_delivery_count(moto: MotoEndpoints, queue_url: str) -> None:
    send(moto, queue_url, '{"a": 1}')
    src = source(moto, queue_url)
    try:
        (message,) = receive_all(src, 1)
        assert message.source is Source.S3_SQS
        assert message.body == b'{"a": 1}'
        assert message.delivery_count == 1
        assert message.attributes["ApproximateReceiveCount"] == "1"
        src.nack([message])
        (again,) = receive_all(src, 1)
        assert again.message_id == message.message_id
        assert again.delivery_count == 2
        assert src.ack([again]) == []
        assert queue_counts(moto, queue_url) == (0, 0)
    finally:
        src.close()


def test_receive_returns_empty_after_the_wait(moto: MotoEndpoints, queue_url: str) -> None:
    src = source(moto, queue_url, max_wait_s=1)
    try:
        started = time.monotonic()
        assert src.receive(10, 5) == []  # capped by max_wait_s
        assert time.monotonic() - started < 4
    finally:
        src.close()


def test_ack_returns_the_messages_whose_delete_failed(moto: MotoEndpoints, queue_url: str) -> None:
    send(moto, queue_url, *(f'{{"n": {i}}}' for i in range(12)))
    src = source(moto, queue_url)
    try:
        messages = receive_all(src, 12)
        assert len(messages) == 12
        broken = dataclasses.replace(messages[3], handle="not-a-receipt-handle")
        batch = [*messages[:3], broken, *messages[4:]]

        failed = src.ack(batch)  # two DeleteMessageBatch calls (10 + 2); one entry fails

        assert failed == [broken]
        assert queue_counts(moto, queue_url) == (0, 1)  # only the broken one is still held
    finally:
        src.close()


def test_ack_of_nothing_deliverable_raises_retryable(moto: MotoEndpoints, queue_url: str) -> None:
    from mountsync.shared.errors import RetryableError

    send(moto, queue_url, "{}")
    src = source(moto, queue_url)
    try:
        (message,) = receive_all(src, 1)
        with pytest.raises(RetryableError):
            src.ack([dataclasses.replace(message, handle="bogus")])
    finally:
        src.close()


def test_slow_batches_keep_their_messages_hidden(moto: MotoEndpoints, queue_url: str) -> None:
    send(moto, queue_url, "{}")
    src = source(moto, queue_url, visibility_timeout=2)
    try:
        (message,) = receive_all(src, 1)
        # Held for 3x the visibility timeout: the keeper extends it, nobody else can receive it.
        other = source(moto, queue_url, renew=False)
        try:
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                assert other.receive(10, 1) == []
        finally:
            other.close()
        assert src.ack([message]) == []
    finally:
        src.close()


def test_without_renewal_a_held_message_comes_back(moto: MotoEndpoints, queue_url: str) -> None:
    send(moto, queue_url, "{}")
    src = source(moto, queue_url, visibility_timeout=1, renew=False)
    try:
        (first,) = receive_all(src, 1)
        (second,) = wait_for(lambda: src.receive(10, 1), timeout=10, what="redelivery")
        assert second.message_id == first.message_id and second.delivery_count == 2
        src.ack([second])
    finally:
        src.close()


def test_a_missing_queue_is_refused_with_the_reason(moto: MotoEndpoints) -> None:
    url = f"{moto.endpoint_url}/123456789012/no-such-queue"
    with pytest.raises(ConfigError, match="does not exist"):
        source(moto, url)


def test_client_uses_the_queue_host_when_it_is_not_aws(moto: MotoEndpoints, queue_url: str) -> None:
    client = make_sqs_client(queue_url)  # no endpoint given, no AWS_ENDPOINT_URL
    assert client.meta.endpoint_url == moto.endpoint_url
    assert region_of("https://sqs.eu-west-1.amazonaws.com/1111/q") == "eu-west-1"
    assert region_of(queue_url) is None
