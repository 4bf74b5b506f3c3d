"""fake-gcs-server -> real notifications -> Pub/Sub emulator -> ``mountsync produce gcs-pubsub``
-> Redis -> a real worker -> the catalog, which must end equal to the bucket.

Emulator quirk (Pub/Sub emulator 0.8.20): a streaming pull that was cancelled or cut stays alive
inside the emulator, which keeps routing some messages to it until their lease runs out; the
producers here run with ``--max-lease-extension 10`` so such messages come back within seconds.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mountsync.shared.config import Settings
from mountsync.shared.storage import open_storage
from tests.gcs.ack_gate import AckGate
from tests.helpers import wait_for
from tests.standins.gcs import GcsEndpoints, PubSubEndpoints

ROOT = Path(__file__).resolve().parents[2]


class Producer:
    """A ``mountsync produce gcs-pubsub`` subprocess with its log in a file."""

    def __init__(self, env: dict[str, str], subscription: str, emulator_host: str, log: Path) -> None:
        self.log_path = log
        args = [sys.executable, "-m", "mountsync.shared", "produce", "gcs-pubsub", "--subscription", subscription,
                "--max-lease-extension", "10", "--emulator-host", emulator_host]  # fmt: skip
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                         start_new_session=True)  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log().splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                doc = json.loads(line)
                if doc.get("event") == name:
                    found.append(doc)
        return found

    def enqueued_changes(self) -> int:
        return sum(int(e.get("changes", 0)) for e in self.events("enqueued"))

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.proc.returncode)


@pytest.fixture
def producers() -> Iterator[list[Producer]]:
    started: list[Producer] = []
    yield started
    for producer in started:
        producer.kill()


@pytest.fixture
def gcs_env(test_env: dict[str, str], fake_gcs_notifying: GcsEndpoints) -> dict[str, str]:
    return {**test_env, **fake_gcs_notifying.env()}


@pytest.fixture
def start_producer(
    gcs_env: dict[str, str], pubsub_emulator: PubSubEndpoints, producers: list[Producer], tmp_path: Path
) -> Callable[..., Producer]:
    def start(subscription: str, emulator_host: str | None = None) -> Producer:
        log = tmp_path / f"producer-{len(producers)}.log"
        producer = Producer(gcs_env, subscription, emulator_host or pubsub_emulator.host, log)
        producers.append(producer)
        return producer

    return start


@pytest.fixture
def notified(fake_gcs_notifying: GcsEndpoints, pubsub_emulator: PubSubEndpoints, bucket_name: str) -> tuple[str, str]:
    """A subscription on the fake server's notification topic (before any operation)."""
    topic = fake_gcs_notifying.topic.rsplit("/", 1)[1]
    return pubsub_emulator.create_subscription(f"e2e-{bucket_name}", topic), bucket_name


def make_bucket(fake: GcsEndpoints, name: str, add_mount: Callable[..., Any], *, versioning: bool = False) -> Any:
    fake.create_bucket(name, versioning=versioning)
    add_mount("m" + name[-12:], f"gs://{name}/", endpoint_url=fake.endpoint_url)
    return open_storage(f"gs://{name}/", fake.storage_options())


def bucket_state(storage: Any) -> dict[str, dict[str, Any]]:
    return {i.key: {"size": i.size, "etag": i.etag, "version": i.version} for i in storage.list()}


def put(storage: Any, key: str, data: bytes) -> None:
    storage.put(key, io.BytesIO(data), len(data))


def converge(catalog_state: Callable[[str], Any], mount: str, expected: dict[str, Any], what: str) -> None:
    wait_for(lambda: catalog_state(mount) == expected, timeout=120, what=what)


def feed_duplicates(settings: Settings, redis_client: Any, mount: str) -> list[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    duplicates = []
    for _id, fields in redis_client.xrange(f"{settings.redis_prefix}mountsync:feed"):
        decoded = {k.decode(): v.decode() for k, v in fields.items()}
        if decoded.get("mount") != mount:
            continue
        entry = (decoded["key"], decoded.get("sequencer", ""))
        if entry in seen:
            duplicates.append(entry)
        seen.add(entry)
    return duplicates


def test_create_overwrite_delete_and_metadata_reach_the_catalog(
    fake_gcs_notifying: GcsEndpoints, notified: tuple[str, str], add_mount: Callable[..., Any],
    start_producer: Callable[..., Producer], catalog_state: Callable[[str], Any], worker: Any, cli: Any,
) -> None:  # fmt: skip
    subscription, name = notified
    storage = make_bucket(fake_gcs_notifying, name, add_mount)
    start_producer(subscription)
    for key in ("seq/0001.png", "seq/0002.png", "seq/0003.png", "notes 1+2 ü.txt"):
        put(storage, key, key.encode())
    put(storage, "seq/0002.png", b"second version")
    put(storage, "seq/0002.png", b"third version")
    storage.delete("seq/0003.png")
    blob = fake_gcs_notifying.client().bucket(name).get_blob("seq/0001.png")
    blob.metadata = {"reviewed": "yes"}
    blob.patch()
    expected = bucket_state(storage)
    assert sorted(expected) == ["notes 1+2 ü.txt", "seq/0001.png", "seq/0002.png"]
    mount = "m" + name[-12:]
    converge(catalog_state, mount, expected, "the catalog to equal the bucket")
    # The safety net agrees with the events: a reindex (listing) finds nothing they missed.
    proc = cli("reindex", mount, "--wait", "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["state"] == "succeeded", summary
    assert (summary["created"], summary["updated"], summary["deleted"]) == (0, 0, 0), summary
    assert catalog_state(mount) == expected


def test_versioned_bucket_overwrites_and_deletes_archive(
    fake_gcs_notifying: GcsEndpoints, notified: tuple[str, str], add_mount: Callable[..., Any],
    start_producer: Callable[..., Producer], catalog_state: Callable[[str], Any], worker: Any,
) -> None:  # fmt: skip
    subscription, name = notified
    storage = make_bucket(fake_gcs_notifying, name, add_mount, versioning=True)
    start_producer(subscription)
    put(storage, "clip/a.mp4", b"v1")
    put(storage, "clip/a.mp4", b"v2 longer")  # FINALIZE(new) + ARCHIVE(old, overwrittenBy)
    put(storage, "clip/b.mp4", b"b")
    storage.delete("clip/b.mp4")  # ARCHIVE without overwrittenBy: gone from the mount
    put(storage, "clip/c.mp4", b"c")
    expected = bucket_state(storage)
    assert sorted(expected) == ["clip/a.mp4", "clip/c.mp4"]
    converge(catalog_state, "m" + name[-12:], expected, "live versions only in the catalog")


def capture(pubsub: PubSubEndpoints, subscription: str, want: Callable[[list[Any]], bool]) -> list[Any]:
    """Pull (and ack) raw notifications until ``want`` says the set is complete."""
    subscriber = pubsub.subscriber()
    got: list[Any] = []

    def more() -> bool:
        response = subscriber.pull(request={"subscription": subscription, "max_messages": 50}, timeout=10)
        received = response.received_messages
        if received:
            ack_ids = [r.ack_id for r in received]
            subscriber.acknowledge(request={"subscription": subscription, "ack_ids": ack_ids})
            got.extend(r.message for r in received)
        return want(got)

    wait_for(more, timeout=60, what="the fake server's notifications")
    subscriber.close()
    return got


def test_overwrite_halves_in_either_order_never_remove_the_object(
    fake_gcs_notifying: GcsEndpoints, pubsub_emulator: PubSubEndpoints, notified: tuple[str, str],
    add_mount: Callable[..., Any], start_producer: Callable[..., Producer],
    catalog_state: Callable[[str], Any], worker: Any,
) -> None:  # fmt: skip
    tap, name = notified  # the fake server's real notifications, replayed in a chosen order
    storage = make_bucket(fake_gcs_notifying, name, add_mount)
    put(storage, "k", b"generation one")
    put(storage, "k", b"generation two")
    put(storage, "sentinel-1", b"s1")
    put(storage, "sentinel-2", b"s2")

    def kind(m: Any) -> tuple[str, str, bool]:
        a = m.attributes
        return (a["objectId"], a["eventType"], "overwroteGeneration" in a or "overwrittenByGeneration" in a)

    messages = capture(pubsub_emulator, tap, lambda got: len(got) >= 5)
    by_kind = {kind(m): m for m in messages}
    first, second = by_kind[("k", "OBJECT_FINALIZE", False)], by_kind[("k", "OBJECT_FINALIZE", True)]
    old_half = by_kind[("k", "OBJECT_DELETE", True)]
    sentinels = [by_kind[(f"sentinel-{i}", "OBJECT_FINALIZE", False)] for i in (1, 2)]

    replay_topic = f"replay-{uuid.uuid4().hex[:8]}"
    pubsub_emulator.create_topic(replay_topic)
    start_producer(pubsub_emulator.create_subscription(f"r-{uuid.uuid4().hex[:8]}", replay_topic))
    publisher = pubsub_emulator.publisher()
    mount = "m" + name[-12:]
    v1, v2 = first.attributes["objectGeneration"], second.attributes["objectGeneration"]

    def replay(message: Any) -> None:
        publisher.publish(pubsub_emulator.topic_path(replay_topic), message.data,
                          **dict(message.attributes)).result(timeout=30)  # fmt: skip

    def version_of(key: str) -> str | None:
        return catalog_state(mount).get(key, {}).get("version")

    # Order 1: the old generation's DELETE arrives before the new FINALIZE.
    replay(first)
    wait_for(lambda: version_of("k") == v1, timeout=60, what="generation one in the catalog")
    replay(old_half)
    replay(sentinels[0])
    wait_for(lambda: version_of("sentinel-1"), timeout=60, what="the first sentinel")
    assert version_of("k") == v1, "the overwrite's DELETE half removed the live object"
    replay(second)
    wait_for(lambda: version_of("k") == v2, timeout=60, what="generation two in the catalog")

    # Order 2: the new FINALIZE first, then the old generation's DELETE (and the stale create).
    replay(old_half)
    replay(first)
    replay(sentinels[1])
    wait_for(lambda: version_of("sentinel-2"), timeout=60, what="the second sentinel")
    assert version_of("k") == v2
    publisher.transport.close()
    assert catalog_state(mount) == bucket_state(storage)


def test_a_producer_killed_before_its_acks_loses_and_duplicates_nothing(
    fake_gcs_notifying: GcsEndpoints, pubsub_emulator: PubSubEndpoints, notified: tuple[str, str],
    add_mount: Callable[..., Any], start_producer: Callable[..., Producer],
    catalog_state: Callable[[str], Any], worker: Any, settings: Settings, redis_client: Any,
) -> None:  # fmt: skip
    subscription, name = notified
    storage = make_bucket(fake_gcs_notifying, name, add_mount)
    mount = "m" + name[-12:]
    gate = AckGate(pubsub_emulator.host)
    try:
        first = start_producer(subscription, gate.host)
        put(storage, "warm-up.txt", b"stream is up")
        converge(catalog_state, mount, bucket_state(storage), "the warm-up object")
        gate.hold()  # from here the producer's Acknowledge calls never reach the emulator
        for i in range(6):
            put(storage, f"frames/{i:04d}.png", f"frame {i}".encode())
        put(storage, "frames/0001.png", b"frame 1, retouched")
        storage.delete("frames/0005.png")
        expected = bucket_state(storage)
        converge(catalog_state, mount, expected, "changes enqueued before the (withheld) acks")
        assert gate.withheld_acks > 0
        first.kill()
        gate.cut()
    finally:
        gate.close()
    enqueued_before = first.enqueued_changes()
    second = start_producer(subscription)
    # Each 10 s lease the emulator may hand a message to the killed producer's stream again (the
    # quirk above): 10-40 s measured, so the deadline leaves room for a run of bad luck.
    wait_for(lambda: second.enqueued_changes() >= enqueued_before - 1, timeout=240,
             what="the unacked notifications to be redelivered")  # fmt: skip
    converge(catalog_state, mount, expected, "the catalog unchanged by the redelivery")
    assert feed_duplicates(settings, redis_client, mount) == []


def test_sigterm_stops_cleanly_and_the_next_producer_picks_up(
    fake_gcs_notifying: GcsEndpoints, notified: tuple[str, str], add_mount: Callable[..., Any],
    start_producer: Callable[..., Producer], catalog_state: Callable[[str], Any], worker: Any,
) -> None:  # fmt: skip
    subscription, name = notified
    storage = make_bucket(fake_gcs_notifying, name, add_mount)
    mount = "m" + name[-12:]
    first = start_producer(subscription)
    put(storage, "a.txt", b"a")
    converge(catalog_state, mount, bucket_state(storage), "the first object")
    assert first.terminate(timeout=60) == 0, first.log()
    assert "producer stopped" in first.log()
    put(storage, "b.txt", b"b")  # while no producer runs: Pub/Sub keeps it
    storage.delete("a.txt")
    start_producer(subscription)
    converge(catalog_state, mount, bucket_state(storage), "changes made while stopped")
