"""GCS benchmark: notifications/s through ``mountsync produce gcs-pubsub`` into the catalog, beside
a bare ``SubscriberClient.subscribe`` + ``ack()`` loop on the same Pub/Sub emulator in the same run
(target: within 1.3x of the bare loop).

The notifications are real: fake-gcs-server publishes them for real uploads, and a tap
subscription collects them before any clock starts. Each consumer then gets the same set as a
backlog on its own subscription and is started as a separate process. Clock: from the moment
``subscribe()`` returned until every message is acknowledged (bare loop) / enqueued and acked
(ours; timestamps from the producer's JSON log), and until every object is in the catalog (ours,
the worker's apply included: the end-to-end figure, not the subscriber's).
Run with ``pytest -m bench tests/bench/test_bench_gcs.py``.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from mountsync.shared.config import Settings
from mountsync.shared.storage import open_storage
from tests.bench.report import END_TO_END, WITHIN_1_3X
from tests.conftest import env_for
from tests.helpers import Proc, enqueued_changes, live_count, wait_for
from tests.standins.gcs import GcsEndpoints, PubSubEndpoints

pytestmark = pytest.mark.bench

MESSAGES = 3000
TARGET = WITHIN_1_3X

BARE = """
import sys, threading, time
import grpc
from google.cloud import pubsub_v1
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport
host, subscription, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host)))
lock, done, count = threading.Lock(), threading.Event(), [0]
def callback(message):
    message.ack()
    with lock:
        count[0] += 1
        if count[0] == total:
            done.set()
future = client.subscribe(subscription, callback)
print("started", time.time(), flush=True)
done.wait()
print("done", time.time(), flush=True)
future.cancel()
"""


@pytest.fixture(scope="module")
def notifications(fake_gcs_notifying: GcsEndpoints, pubsub_emulator: PubSubEndpoints) -> tuple[str, list[Any]]:
    """MESSAGES real notifications for MESSAGES new objects in a fresh bucket."""
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    topic = fake_gcs_notifying.topic.rsplit("/", 1)[1]
    tap = pubsub_emulator.create_subscription(f"tap-{bucket}", topic)
    fake_gcs_notifying.create_bucket(bucket)
    storage = open_storage(f"gs://{bucket}/", fake_gcs_notifying.storage_options())
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: storage.put(f"frames/{i // 100:03d}/{i:05d}.jpg",
                                            io.BytesIO(b"x" * (i % 97 + 1)), i % 97 + 1),
                      range(MESSAGES)))  # fmt: skip
    subscriber = pubsub_emulator.subscriber()
    collected: dict[str, Any] = {}

    def pull() -> bool:
        response = subscriber.pull(request={"subscription": tap, "max_messages": 1000}, timeout=10)
        if response.received_messages:
            ack_ids = [r.ack_id for r in response.received_messages]
            subscriber.acknowledge(request={"subscription": tap, "ack_ids": ack_ids})
            for r in response.received_messages:
                if r.message.attributes.get("bucketId") == bucket:
                    collected[r.message.attributes["objectId"]] = r.message
        return len(collected) >= MESSAGES

    wait_for(pull, timeout=180, what="the fake server's notifications")
    subscriber.close()
    return bucket, list(collected.values())


def publish_all(pubsub: PubSubEndpoints, topic: str, messages: list[Any]) -> None:
    from google.cloud import pubsub_v1

    publisher = pubsub.publisher()
    publisher.batch_settings = pubsub_v1.types.BatchSettings(max_messages=500, max_latency=0.01)
    path = pubsub.topic_path(topic)
    futures = [publisher.publish(path, m.data, **dict(m.attributes)) for m in messages]
    for future in futures:
        future.result(timeout=60)
    publisher.transport.close()


def stamp(log: str, word: str) -> float:
    """Wall-clock time printed by the bare loop after ``word``."""
    for line in log.splitlines():
        if line.startswith(word + " "):
            return float(line.split()[1])
    raise AssertionError(f"{word!r} not in {log[-500:]}")


def log_times(log: str, event: str) -> list[float]:
    times = []
    for line in log.splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            doc = json.loads(line)
            if doc.get("event") == event:
                times.append(datetime.fromisoformat(doc["timestamp"].replace("Z", "+00:00")).timestamp())
    return times


def test_bench_pubsub_subscriber(
    notifications: tuple[str, list[Any]], pubsub_emulator: PubSubEndpoints, fake_gcs_notifying: GcsEndpoints,
    settings: Settings, add_mount: Callable[..., Any], catalog: Any, worker: Any, bench_report: Any,
    procs: list[Proc], tmp_path: Path,
) -> None:  # fmt: skip
    bucket, messages = notifications
    n = len(messages)
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    pubsub_emulator.create_topic(topic)
    bare_sub = pubsub_emulator.create_subscription(f"bare-{topic}", topic)
    publish_all(pubsub_emulator, topic, messages)
    bare = Proc.python(BARE, [pubsub_emulator.host, bare_sub, str(n)], os.environ, tmp_path / "bare.log").start()
    procs.append(bare)
    wait_for(lambda: "done" in bare.log(), timeout=600, what="the bare loop to ack everything")
    bare_s = stamp(bare.log(), "done") - stamp(bare.log(), "started")
    bare.kill()  # a streaming-pull loop need not shut down gracefully

    our_topic = f"ours-{topic}"
    pubsub_emulator.create_topic(our_topic)
    our_sub = pubsub_emulator.create_subscription(f"ours-{topic}", our_topic)
    publish_all(pubsub_emulator, our_topic, messages)
    add_mount("bench-gcs", f"gs://{bucket}/", endpoint_url=fake_gcs_notifying.endpoint_url)
    env = env_for(settings, **fake_gcs_notifying.env())
    args = ["produce", "gcs-pubsub", "--subscription", our_sub, "--emulator-host", pubsub_emulator.host]
    ours = Proc.mountsync(args, env, tmp_path / "producer.log").start()
    procs.append(ours)
    wait_for(
        lambda: enqueued_changes(ours.log()) >= n,
        timeout=600,
        what=f"the producer to enqueue all: {ours.tail(800)}",
    )
    started = log_times(ours.log(), "subscribed")[0]
    acked_s = log_times(ours.log(), "enqueued")[-1] - started
    wait_for(lambda: live_count(catalog, "bench-gcs") >= n, timeout=900, what="every object in the catalog")
    catalog_s = time.time() - started

    bench_report.row("gcs pubsub subscriber: enqueued+acked", n / acked_s, "msgs/s",
                     "bare subscribe+ack loop", n / bare_s, TARGET)  # fmt: skip
    bench_report.row("gcs pubsub -> catalog (incl. worker apply)", n / catalog_s, "msgs/s",
                     "bare subscribe+ack loop", n / bare_s, END_TO_END)  # fmt: skip
    assert live_count(catalog, "bench-gcs") == n
