"""Azure benchmark: events/s into the catalog through the namespace pull consumer and the webhook,
each beside a bare baseline on the same stand-in in the same run (target: within 1.3x).

- Pull: ``mountsync produce azure-eventgrid`` (a process) until every event is acknowledged and in
  the catalog, versus a bare ``EventGridConsumerClient`` receive(100) + acknowledge loop (also a
  process) on the same Event Grid test server.
- Webhook: ``mountsync serve`` receiving Event Grid deliveries (4 concurrent senders, as Event
  Grid delivers concurrently) until every event is in the catalog, versus the fair baseline of
  issue 18 item 5: a bare handler on the SAME server stack (FastAPI on uvicorn, the blocking Redis
  call on the threadpool as serve does) that parses the JSON body, does one Redis LPUSH and answers
  200 after the push. Target: mountsync >= 0.7x of it, for one event per POST (Event Grid's default
  delivery) and for batches of 100 events (a throughput-minded subscription's setting).
  "queued+200" is when every POST was answered (the changes are then in the inbox on Redis).
  The Celery worker is paused (SIGSTOP) until then: the baseline's pushes have no consumer, so
  the apply (the worker and PostgreSQL) would charge the receiver for work the baseline never
  does on the same two cores; serve's inbox drainer, which normalizes, runs throughout.
  "-> catalog" is when the worker, resumed at the last 200, has applied every event (a figure,
  counted from the first POST: the baseline applies nothing).

Events are built from real Azurite uploads before the clock starts. Run with
``pytest -m bench tests/bench/test_bench_azure.py``.
"""

from __future__ import annotations

import os
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

from mountsync.shared.config import Settings
from tests.azure.blob_events import BlobEventFactory, WebhookDelivery, publish
from tests.azure.eventgrid_server import EventGridServer
from tests.bench import processes
from tests.bench.report import END_TO_END, WITHIN_1_3X
from tests.conftest import env_for
from tests.helpers import Proc, free_port, live_count, wait_for
from tests.standins.azure import AzuriteEndpoints

pytestmark = pytest.mark.bench

EVENTS = 4000  # real uploads; through the pull consumer, and one event per POST (half of them)
# Through the webhook in batches: 8-50k events/s, so 16,000 keep each clock running for about a
# second or more (4,000 left it at a few tenths, and the ratio swung by half from run to run).
WEBHOOK_BATCHED = 16_000
BARE_ROUNDS = 3
WARMUP = 100  # one batch through each server before its clock starts (lazy imports, first connections)
TOPIC = "bench"
TARGET = WITHIN_1_3X

BARE_PULL = """
import sys, time
from azure.core.credentials import AzureKeyCredential
from azure.eventgrid import EventGridConsumerClient
endpoint, topic, sub, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = EventGridConsumerClient(endpoint, AzureKeyCredential("test-key"), namespace_topic=topic,
                                 subscription=sub)
done = 0
while done < total:
    details = client.receive(max_events=100, max_wait_time=10)
    if details:
        client.acknowledge(lock_tokens=[d.broker_properties.lock_token for d in details])
        done += len(details)
"""

BARE_HTTP = """
import json, sys
import redis, uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
client = redis.Redis.from_url(sys.argv[2])
key = sys.argv[3]
app = FastAPI()
@app.post("/eventgrid")
async def eventgrid(request: Request):
    events = json.loads(await request.body())
    await run_in_threadpool(client.lpush, key, json.dumps(events))
    return JSONResponse({"queued": len(events) if isinstance(events, list) else 1})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False)
"""
WEBHOOK_TARGET = "mountsync >= 0.7x same-stack parse+LPUSH"


@pytest.fixture(scope="module")
def bench_container(azurite: AzuriteEndpoints) -> Iterator[Any]:
    client = azurite.blob_service().create_container(f"bench{uuid.uuid4().hex[:12]}")
    yield client
    client.delete_container()


@pytest.fixture(scope="module")
def blob_events(bench_container: Any) -> list[dict[str, Any]]:
    """EVENTS + WARMUP BlobCreated events, each from a real Azurite upload."""
    factory = BlobEventFactory(bench_container)
    with ThreadPoolExecutor(8) as pool:
        return list(
            pool.map(
                lambda i: factory.put(f"frames/{i // 100:03d}/{i:05d}.jpg", b"x" * (i % 97 + 1)),
                range(EVENTS + WARMUP),
            )
        )


def batched_events(blob_events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """WEBHOOK_BATCHED events: the EVENTS real ones, then copies of them under other names
    (``copy1/...``, fresh ids). Neither receiver reads the blob behind an event, and a copy is a
    BlobCreated of a new key to the catalog; uploading them all would take minutes."""
    real = blob_events[:EVENTS]
    events = list(real)
    while len(events) < WEBHOOK_BATCHED:
        prefix = f"copy{len(events) // EVENTS}/"
        events += [renamed(event, prefix) for event in real[: WEBHOOK_BATCHED - len(events)]]
    return events


def renamed(event: dict[str, Any], prefix: str) -> dict[str, Any]:
    key = event["subject"].split("/blobs/", 1)[1]
    url = event["data"]["url"]
    assert url.endswith(f"/{key}"), url  # bench keys need no percent-encoding
    data = {**event["data"], "url": url[: -len(key)] + prefix + key, "requestId": str(uuid.uuid4())}
    subject = event["subject"][: -len(key)] + prefix + key
    return {**event, "subject": subject, "id": data["requestId"], "data": data}


def cpu_seconds(proc: Proc) -> float:
    """User + system CPU seconds a process has used so far."""
    assert proc.proc is not None
    return processes.cpu_seconds(psutil.Process(proc.proc.pid))


def children_cpu_seconds(proc: Proc) -> float:
    """CPU seconds of a process's live children so far (``serve``'s inbox drainer processes)."""
    assert proc.proc is not None
    return processes.cpu_seconds(*psutil.Process(proc.proc.pid).children())


def timed(start: Callable[[], None], phases: dict[str, Callable[[], bool]], what: str) -> dict[str, float]:
    """Seconds from ``start()`` until each phase's condition first holds (phases in order)."""
    started = time.perf_counter()
    start()
    marks: dict[str, float] = {}
    for name, condition in phases.items():
        wait_for(condition, timeout=300, what=f"{what}: {name}", interval=0.02)
        marks[name] = time.perf_counter() - started
    return marks


def test_bench_pull_consumer(
    blob_events: list[dict[str, Any]], bench_container: Any, settings: Settings, azurite: AzuriteEndpoints,
    add_mount: Callable[..., Any], catalog: Any, worker: Any, bench_report: Any, tmp_path: Path,
) -> None:  # fmt: skip
    blob_events = blob_events[:EVENTS]
    server = EventGridServer(lock_s=60).start()
    procs: list[Proc] = []
    try:
        bare_sub = server.subscription(TOPIC, "bare")
        procs.append(
            Proc.python(
                BARE_PULL, [server.endpoint, TOPIC, "bare", str(EVENTS)], os.environ, tmp_path / "bare.log"
            ).start()
        )
        wait_for(lambda: "receive" in server.requests, timeout=60, what="the bare loop to poll")
        bare = timed(
            lambda: publish(server.endpoint, server.key, TOPIC, blob_events),
            {"acked": lambda: len(bare_sub.acked) == EVENTS},
            "bare loop",
        )
        procs[-1].stop()

        add_mount("bench-pull", f"az://{bench_container.container_name}/")
        sub = server.subscription(TOPIC, "mountsync")
        env = env_for(
            settings,
            AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string,
            AZURE_EVENTGRID_KEY=server.key,
            MOUNTSYNC_LOG_LEVEL="WARNING",
        )
        args = [
            "produce",
            "azure-eventgrid",
            "--endpoint",
            server.endpoint,
            "--topic",
            TOPIC,
            "--subscription",
            "mountsync",
        ]
        server.requests.clear()
        procs.append(Proc.mountsync(args, env, tmp_path / "producer.log").start())
        wait_for(lambda: "receive" in server.requests, timeout=60, what="the producer to poll")
        ours = timed(
            lambda: publish(server.endpoint, server.key, TOPIC, blob_events),
            {
                "acked": lambda: len(sub.acked) == EVENTS,
                "catalog": lambda: live_count(catalog, "bench-pull") == EVENTS,
            },
            f"mountsync pull: {procs[-1].log()}",
        )
    finally:
        for proc in procs:
            proc.stop()
        server.stop()
    bench_report.row(
        "azure pull consumer: enqueued+acked",
        EVENTS / ours["acked"],
        "events/s",
        "bare receive+acknowledge",
        EVENTS / bare["acked"],
        TARGET,
    )
    bench_report.row(
        "azure pull -> catalog (incl. worker apply)",
        EVENTS / ours["catalog"],
        "events/s",
        "bare receive+acknowledge",
        EVENTS / bare["acked"],
        TARGET,
    )


def start_http(args: list[str], env: dict[str, str] | None, log: Path, code: str | None = None) -> tuple[Proc, int]:
    port = free_port()
    if code is None:
        proc = Proc.mountsync([*args, "--port", str(port)], env or {}, log).start()
    else:
        proc = Proc.python(code, [str(port), *args], os.environ, log).start()
    probe = WebhookDelivery(f"http://127.0.0.1:{port}/eventgrid?key=bench")

    def up() -> bool:
        try:
            return probe.handshake() or code is not None
        except OSError:
            assert proc.alive(), proc.log()
            return False

    wait_for(up, timeout=60, what="HTTP server to answer")
    return proc, port


def deliver_all(url: str, events: list[dict[str, Any]], batch: int) -> None:
    """Event Grid style: batches POSTed by 4 concurrent senders; every one must get a 2xx."""
    hook = WebhookDelivery(url)
    batches = [events[i : i + batch] for i in range(0, len(events), batch)]
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(hook.deliver, batches))
    assert set(statuses) == {200}, statuses[:5]


@pytest.mark.parametrize("batch", [100, 1], ids=["batch-100", "single-event"])
def test_bench_webhook(
    batch: int, blob_events: list[dict[str, Any]], bench_container: Any, settings: Settings,
    azurite: AzuriteEndpoints, add_mount: Callable[..., Any], catalog: Any, worker: Any, bench_report: Any,
    tmp_path: Path, redis_client: Any,
) -> None:  # fmt: skip
    events = batched_events(blob_events) if batch > 1 else blob_events[: EVENTS // 2]
    warmup = blob_events[EVENTS:]
    # The bare app answers batches at 30-50k events/s: it gets the events three times over, so its
    # clock too runs for about a second (duplicates are no less work for it).
    bare_events = events * (BARE_ROUNDS if batch > 1 else 1)
    bare_key = f"{settings.redis_prefix}bench:bare-webhook"
    bare_proc, port = start_http([settings.redis_url, bare_key], None, tmp_path / "bare-http.log", code=BARE_HTTP)
    redis_client.delete(bare_key)  # the start-up probe's push
    delivered = False

    def send(url: str, some: list[dict[str, Any]]) -> None:
        nonlocal delivered
        delivered = False
        deliver_all(url, some, batch)
        delivered = True

    try:
        deliver_all(f"http://127.0.0.1:{port}/eventgrid", warmup, batch)
        bare_cpu = cpu_seconds(bare_proc)
        bare = timed(lambda: send(f"http://127.0.0.1:{port}/eventgrid", bare_events), {"200": lambda: delivered},
                     "bare HTTP")  # fmt: skip
        bare_cpu = cpu_seconds(bare_proc) - bare_cpu
    finally:
        bare_proc.stop()
    assert redis_client.llen(bare_key) == (len(bare_events) + len(warmup)) // batch, "the baseline lost pushes"
    redis_client.delete(bare_key)
    name = f"bench-hook-{batch}"
    add_mount(name, f"az://{bench_container.container_name}/")
    env = env_for(
        settings,
        AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string,
        MOUNTSYNC_EVENTGRID_SECRET="bench",
        MOUNTSYNC_LOG_LEVEL="WARNING",
    )
    serve, port = start_http(["serve", "--receivers", "azure-eventgrid"], env, tmp_path / "serve.log")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=30) as ready:  # opens the runtime
            assert ready.status == 200
        deliver_all(f"http://127.0.0.1:{port}/eventgrid?key=bench", warmup, batch)
        wait_for(lambda: live_count(catalog, name) == len(warmup), timeout=60, what="the warm-up batch applied")
        serve_cpu: list[float] = [cpu_seconds(serve)]
        drainer_cpu: list[float] = [children_cpu_seconds(serve)]

        def applied() -> bool:
            if live_count(catalog, name) < len(events) + len(warmup):
                return False
            drainer_cpu.append(children_cpu_seconds(serve) - drainer_cpu[0])
            return True

        def answered() -> bool:
            if delivered and len(serve_cpu) == 1:
                serve_cpu.append(cpu_seconds(serve) - serve_cpu[0])
                worker.resume()
            return delivered

        worker.pause()  # until the last 200 (see the module docstring)
        ours = timed(
            lambda: send(f"http://127.0.0.1:{port}/eventgrid?key=bench", events),
            {"200": answered, "catalog": applied},
            f"mountsync webhook: {serve.log()}",
        )
    finally:
        worker.resume()
        serve.stop()
    label = "batches of 100" if batch > 1 else "one event per POST"
    bench_report.row(
        f"azure webhook ({label}): queued+200",
        len(events) / ours["200"],
        "events/s",
        "same stack: parse + LPUSH + 200",
        len(bare_events) / bare["200"],
        WEBHOOK_TARGET,
    )
    # Item 5's target is the receiver's (check, normalize, durably queue); the baseline applies
    # nothing, so "-> catalog" (the worker's apply included, after the last 200) is a figure.
    bench_report.row(
        f"azure webhook ({label}) -> catalog",
        len(events) / ours["catalog"],
        "events/s",
        "same stack: parse + LPUSH + 200",
        len(bare_events) / bare["200"],
        END_TO_END,
    )
    # Where the rate goes: CPU per event of the serve process (the receivers) until the last 200,
    # against the bare app's; on 2 cores both share them with the senders (and serve with its inbox
    # drainer process, which normalizes meanwhile). The drainer's own CPU per event, until every
    # event is in the catalog, follows.
    bench_report.row(
        f"azure webhook ({label}): serve CPU per event",
        1e6 * serve_cpu[-1] / len(events),
        "us",
        "same stack: parse + LPUSH + 200",
        1e6 * bare_cpu / len(bare_events),
        "",
    )
    bench_report.row(f"azure webhook ({label}): inbox drainer CPU per event", 1e6 * drainer_cpu[-1] / len(events), "us")
