"""End to end: real Azurite operations -> Event Grid delivery (webhook, namespace pull, Storage Queue)
-> a real producer process -> Redis -> a real Celery worker -> the catalog.

Every event is built from what Azurite answered (tests/azure/blob_events.py). Expected state is
Azurite's own listing, read through the adapter (so etags from events and listings must agree).
"""

from __future__ import annotations

import json
import os
import random
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mountsync.producers.inbox import CLAIM_CHECK_S, CLAIM_IDLE_S
from mountsync.shared.config import Settings
from mountsync.shared.storage.azure import AzureStorage
from mountsync.shared.storage.url import parse_storage_url
from tests.azure.blob_events import BlobEventFactory, WebhookDelivery, publish, queue_delivery
from tests.azure.eventgrid_server import EventGridServer
from tests.conftest import env_for
from tests.helpers import Proc, free_port, wait_for
from tests.standins.azure import AzuriteEndpoints

TOPIC, SUB, SECRET = "blob-events", "mountsync", "hook-secret"


@pytest.fixture
def az_env(settings: Settings, azurite: AzuriteEndpoints) -> dict[str, str]:
    return env_for(
        settings, AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string, AZURE_EVENTGRID_KEY="test-key",
        MOUNTSYNC_EVENTGRID_SECRET=SECRET,
    )  # fmt: skip


@pytest.fixture
def mount(container: Any, add_mount: Callable[..., Any], worker: Any) -> str:
    name = f"az-{uuid.uuid4().hex[:8]}"
    add_mount(name, f"az://{container.container_name}/")
    return name


def bucket_state(container: Any, azurite: AzuriteEndpoints) -> dict[str, dict[str, Any]]:
    storage = AzureStorage(
        parse_storage_url(f"az://{container.container_name}/"), {},
        environ={"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string},
    )  # fmt: skip
    return {i.key: {"size": i.size, "etag": i.etag, "version": i.version} for i in storage.list()}


def operations(factory: BlobEventFactory) -> list[dict[str, Any]]:
    """Create, block upload, overwrite, delete, rename, copy, odd names: the events, in order."""
    return [
        factory.put("seq/0001.png", b"a" * 10),
        factory.put_blocks("seq/0002.png", [b"b" * 300, b"c" * 200]),
        factory.put("seq/0003.png", b"c"),
        factory.put("seq/0001.png", b"overwritten!"),
        factory.delete("seq/0003.png"),
        factory.rename("seq/0002.png", "seq/0004.png"),
        factory.copy("seq/0001.png", "copies/0001 copy.png"),
        factory.put("odd/ä b+c%20=.txt", b"unicode"),
        factory.set_tier("odd/ä b+c%20=.txt", "Cool"),
    ]


def reindex_in_process(settings: Settings, mount_name: str, azurite: AzuriteEndpoints) -> dict[str, Any]:
    """The reconcile a worker would run, here in-process with Azurite credentials."""
    import redis

    from mountsync.shared.catalog.db import open_pool
    from mountsync.shared.catalog.mounts import Mounts
    from mountsync.shared.clock import SystemClock
    from mountsync.shared.queues import make_client
    from mountsync.workers.context import WorkerContext
    from mountsync.workers.reindex import run_reindex

    pool = open_pool(settings.database_url, min_size=1, max_size=2, name="test-reindex")
    ctx = WorkerContext(settings, pool, redis.Redis.from_url(settings.redis_url), make_client(settings),
                        SystemClock())  # fmt: skip
    try:
        with pool.connection() as conn:
            mount = Mounts(conn).get(mount_name)
        env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
        storage = AzureStorage(mount.storage_url, mount.options, environ=env)
        return run_reindex(ctx, mount, storage).as_dict()
    finally:
        ctx.close()


def converge(
    catalog_state: Callable[[str], Any], mount: str, expected: dict[str, Any], what: str, timeout: float = 60
) -> None:
    try:
        wait_for(lambda: catalog_state(mount) == expected, timeout=timeout, what=what)
    except AssertionError:
        assert catalog_state(mount) == expected, what  # shows the difference


def start_serve(az_env: dict[str, str], tmp_path: Path, procs: list[Proc], port: int = 0) -> tuple[Proc, str]:
    port = port or free_port()
    command = ["serve", "--port", str(port), "--receivers", "azure-eventgrid"]  # the one receiver under test
    proc = Proc.mountsync(command, az_env, tmp_path / f"serve-{port}.log").start()
    procs.append(proc)

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError):
            assert proc.alive(), proc.tail()
            return False

    wait_for(healthy, timeout=60, what="mountsync serve to answer")
    return proc, f"http://127.0.0.1:{port}/eventgrid?key={SECRET}"


@pytest.mark.parametrize("cloudevents", [False, True], ids=["eventgrid-schema", "cloudevents"])
def test_webhook_delivery_reaches_the_catalog_exactly(
    cloudevents: bool, settings: Settings, container: Any, azurite: AzuriteEndpoints, mount: str,
    az_env: dict[str, str], catalog_state: Callable[[str], Any], tmp_path: Path, procs: list[Proc],
) -> None:  # fmt: skip
    _, url = start_serve(az_env, tmp_path, procs)
    hook = WebhookDelivery(url, cloudevents=cloudevents)
    assert hook.handshake()
    assert WebhookDelivery(url.replace(SECRET, "wrong"), cloudevents=cloudevents).deliver([]) == 401
    events = operations(BlobEventFactory(container))

    # Event Grid neither orders nor dedupes: one batch in reverse, then every event alone, shuffled.
    assert hook.deliver(list(reversed(events))) == 200
    for event in random.Random(7).sample(events, len(events)):
        assert hook.deliver([event]) == 200

    expected = bucket_state(container, azurite)
    assert set(expected) == {"seq/0001.png", "seq/0004.png", "copies/0001 copy.png", "odd/ä b+c%20=.txt"}
    converge(catalog_state, mount, expected, "webhook events in the catalog")
    # Events and listings agree on size and etag: a reconcile finds nothing to fix.
    summary = reindex_in_process(settings, mount, azurite)
    assert (summary["created"], summary["updated"], summary["deleted"], summary["unchanged"]) == (0, 0, 0, 4)


def test_webhook_redelivery_after_the_server_was_killed_loses_nothing(
    container: Any, azurite: AzuriteEndpoints, mount: str, az_env: dict[str, str],
    catalog_state: Callable[[str], Any], tmp_path: Path, procs: list[Proc],
) -> None:  # fmt: skip
    proc, url = start_serve(az_env, tmp_path, procs)
    hook = WebhookDelivery(url)
    events = operations(BlobEventFactory(container))
    assert hook.deliver(events[:4]) == 200
    proc.kill()
    with pytest.raises(urllib.error.URLError):
        hook.deliver(events[4:])  # Event Grid keeps the batch and retries
    _, url = start_serve(az_env, tmp_path, procs)  # another port: another consumer name, as a new pod has
    assert WebhookDelivery(url).deliver(events[4:]) == 200
    # Entries the killed drainer had read but not settled are another consumer's: the new drainer
    # takes them over once they were idle CLAIM_IDLE_S, looking every CLAIM_CHECK_S.
    deadline = CLAIM_IDLE_S + CLAIM_CHECK_S + 30
    converge(catalog_state, mount, bucket_state(container, azurite), "events after the restart", deadline)


def test_webhook_requests_accepted_before_a_crash_are_drained_at_the_next_start(
    settings: Settings, container: Any, azurite: AzuriteEndpoints, mount: str, az_env: dict[str, str],
    catalog_state: Callable[[str], Any], tmp_path: Path, procs: list[Proc],
) -> None:  # fmt: skip
    """What a serve killed after its 200s leaves: entries in the inbox, some in its drainer's hands."""
    import redis

    from mountsync.producers.inbox import Inbox, InboxSource, consumer_name
    from mountsync.producers.normalize.azure import normalize_azure
    from mountsync.shared.events import RawMessage, Source
    from mountsync.shared.queues import inbox_key

    client = redis.Redis.from_url(settings.redis_url)
    inbox = Inbox(client, settings, Source.AZURE_EVENTGRID)
    for event in operations(BlobEventFactory(container)):
        inbox.enqueue(normalize_azure(RawMessage(Source.AZURE_EVENTGRID, event["id"], json.dumps(event).encode())))
    port = free_port()
    in_hand = InboxSource(client, settings, Source.AZURE_EVENTGRID, consumer=consumer_name(str(port)))
    assert len(in_hand.receive(3, 0.1)) == 3  # read, never settled: the crash

    start_serve(az_env, tmp_path, procs, port)  # no request arrives: the start alone drains
    converge(catalog_state, mount, bucket_state(container, azurite), "the accepted events after the restart")
    key = inbox_key(settings.redis_prefix, Source.AZURE_EVENTGRID)
    wait_for(lambda: client.xlen(key) == 0, what="the inbox emptied")
    assert client.xpending(key, "drain")["pending"] == 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as ready:
        assert json.loads(ready.read())["checks"]["inbox:azure-eventgrid"] == "ok"
    client.close()


def test_webhook_malformed_event_is_dead_lettered(
    container: Any, mount: str, az_env: dict[str, str], catalog: Any, tmp_path: Path, procs: list[Proc],
) -> None:  # fmt: skip
    """A bad envelope is refused with 400 at once; bad content behind a sound envelope is queued
    with its batch (200) and dead-lettered by the drainer. Either way its neighbours are applied."""
    _, url = start_serve(az_env, tmp_path, procs)
    factory = BlobEventFactory(container)
    good, fine = factory.put("ok.txt", b"ok"), factory.put("fine.txt", b"fine")
    misrouted = json.loads(json.dumps(good)) | {"id": "misrouted", "eventType": "Microsoft.Storage.BlobMoved"}
    status, body, _ = WebhookDelivery(url).post_raw(json.dumps([good, misrouted]).encode())
    assert (status, json.loads(body)["queued"]) == (400, 1)
    no_container = json.loads(json.dumps(fine)) | {"id": "no-container"}
    no_container["data"]["url"] = "http://127.0.0.1:1/devstoreaccount1/"
    status, body, _ = WebhookDelivery(url).post_raw(json.dumps([fine, no_container]).encode())
    assert (status, json.loads(body)["queued"]) == (200, 2)

    def letters() -> list[tuple[str, str]]:
        rows = catalog.execute("SELECT source, message_id FROM dead_letters ORDER BY id").fetchall()
        return [(r[0], r[1]) for r in rows]

    wait_for(lambda: len(letters()) == 2, timeout=30, what="both bad events dead-lettered")
    assert letters() == [("azure-eventgrid", "misrouted"), ("azure-eventgrid", "no-container")]
    applied = "SELECT key FROM objects WHERE NOT deleted ORDER BY key"
    wait_for(lambda: len(catalog.execute(applied).fetchall()) == 2, timeout=30, what="the good events applied")
    assert [r[0] for r in catalog.execute(applied).fetchall()] == ["fine.txt", "ok.txt"]


def start_pull(az_env: dict[str, str], server: EventGridServer, tmp_path: Path, procs: list[Proc]) -> Proc:
    args = ["produce", "azure-eventgrid", "--endpoint", server.endpoint, "--topic", TOPIC,
            "--subscription", SUB, "--release-delay", "0", "--renew-every", "1"]  # fmt: skip
    proc = Proc.mountsync(args, az_env, tmp_path / f"pull-{uuid.uuid4().hex[:6]}.log").start()
    procs.append(proc)
    return proc


@pytest.fixture
def eg_server() -> Iterator[EventGridServer]:
    server = EventGridServer(lock_s=3.0).start()
    server.subscription(TOPIC, SUB)
    yield server
    server.acks_open.set()
    server.stop()


def test_namespace_pull_reaches_the_catalog_and_dead_letters_malformed(
    container: Any, azurite: AzuriteEndpoints, mount: str, az_env: dict[str, str], catalog: Any,
    catalog_state: Callable[[str], Any], eg_server: EventGridServer, tmp_path: Path, procs: list[Proc],
) -> None:  # fmt: skip
    events = operations(BlobEventFactory(container))
    malformed = json.loads(json.dumps(events[0])) | {"id": "malformed-1"}
    malformed["data"]["contentLength"] = -5
    publish(eg_server.endpoint, eg_server.key, TOPIC, [*random.Random(3).sample(events, len(events)), malformed])
    proc = start_pull(az_env, eg_server, tmp_path, procs)

    converge(catalog_state, mount, bucket_state(container, azurite), "pulled events in the catalog")
    sub = eg_server.subscription(TOPIC, SUB)
    wait_for(lambda: sub.backlog == 0, timeout=30, what=f"every event settled: {proc.tail()}")
    assert len(sub.acked) == len(events)
    assert [e["id"] for e in sub.dead_lettered] == ["malformed-1"]
    reasons = catalog.execute("SELECT reason FROM dead_letters WHERE message_id = 'malformed-1'").fetchall()
    assert len(reasons) == 1 and "negative" in reasons[0][0]


def test_namespace_pull_killed_between_enqueue_and_ack_loses_nothing(
    container: Any, azurite: AzuriteEndpoints, mount: str, az_env: dict[str, str],
    catalog_state: Callable[[str], Any], eg_server: EventGridServer, tmp_path: Path, procs: list[Proc],
) -> None:  # fmt: skip
    eg_server.acks_open.clear()  # the consumer will hang in acknowledge, after enqueueing
    events = operations(BlobEventFactory(container))
    publish(eg_server.endpoint, eg_server.key, TOPIC, events)
    first = start_pull(az_env, eg_server, tmp_path, procs)
    sub = eg_server.subscription(TOPIC, SUB)
    expected = bucket_state(container, azurite)
    converge(catalog_state, mount, expected, "events enqueued before the ack")
    wait_for(lambda: "acknowledge" in eg_server.requests, timeout=30, what="the consumer to start acking")
    first.kill()
    # The lock lapses while the dead consumer's acknowledge is still in flight: it must then fail.
    wait_for(lambda: eg_server.locks_expired(TOPIC, SUB), timeout=30, what="locks to expire")
    eg_server.acks_open.set()
    assert sub.acked == []

    start_pull(az_env, eg_server, tmp_path, procs)
    wait_for(lambda: len(sub.acked) == len(events), timeout=60, what="redelivered events acked")
    assert sub.received >= 2 * len(events)  # every event came back after the kill
    converge(catalog_state, mount, expected, "catalog unchanged by the redelivery")


def start_queue_consumer(
    az_env: dict[str, str], queue: Any, tmp_path: Path, procs: list[Proc], visibility: int = 30
) -> Proc:
    args = ["produce", "azure-queue", "--queue", queue.queue_name, "--visibility-timeout", str(visibility)]
    proc = Proc.mountsync(args, az_env, tmp_path / f"queue-{uuid.uuid4().hex[:6]}.log").start()
    procs.append(proc)
    return proc


def test_storage_queue_delivery_reaches_the_catalog_exactly(
    container: Any, azurite: AzuriteEndpoints, mount: str, az_env: dict[str, str], storage_queue: Any,
    catalog_state: Callable[[str], Any], tmp_path: Path, procs: list[Proc],
) -> None:  # fmt: skip
    events = operations(BlobEventFactory(container))
    queue_delivery(storage_queue, [*events, *random.Random(5).sample(events, len(events))])
    start_queue_consumer(az_env, storage_queue, tmp_path, procs)
    converge(catalog_state, mount, bucket_state(container, azurite), "queued events in the catalog")
    wait_for(lambda: storage_queue.get_queue_properties().approximate_message_count == 0,
             timeout=30, what="every message deleted")  # fmt: skip


def test_storage_queue_consumer_killed_mid_stream_loses_nothing(
    settings: Settings, container: Any, azurite: AzuriteEndpoints, mount: str, az_env: dict[str, str],
    storage_queue: Any, catalog_state: Callable[[str], Any], tmp_path: Path, procs: list[Proc],
) -> None:  # fmt: skip
    factory = BlobEventFactory(container)
    events = [factory.put(f"frames/{i:04d}.jpg", os.urandom(1 + i % 50)) for i in range(150)]
    queue_delivery(storage_queue, events)
    first = start_queue_consumer(az_env, storage_queue, tmp_path, procs, visibility=2)
    wait_for(lambda: len(catalog_state(mount)) > 0, timeout=60, what="some progress before the kill")
    first.kill()
    start_queue_consumer(az_env, storage_queue, tmp_path, procs, visibility=2)
    converge(catalog_state, mount, bucket_state(container, azurite), "every event after the restart")
    wait_for(lambda: storage_queue.get_queue_properties().approximate_message_count == 0,
             timeout=30, what="every message deleted")  # fmt: skip
    summary = reindex_in_process(settings, mount, azurite)
    assert (summary["created"], summary["updated"], summary["deleted"], summary["unchanged"]) == (
        0,
        0,
        0,
        150,
    )
