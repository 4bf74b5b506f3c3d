"""S3 benchmark: events/s from SQS through ``mountsync produce s3-sqs`` into the catalog, beside a
bare boto3 receive+delete loop on the same moto queue in the same run (target: mountsync's
overhead within 1.3x of the bare loop).

The events are real: moto sends an S3 notification for each of MESSAGES uploads to a tap queue;
the bodies are collected once, then the bench queue is filled with the same bodies before each
run. Clocks start when the consumer begins receiving (the bare script's first receive; the
producer's ``consuming`` log line, after imports and connections) and stop when the queue is
empty (every message deleted; the test reads the producer's log rather than polling moto, whose
queue-attribute calls scan the queue and would slow the run), and for mountsync also when every
object is in the catalog (the worker's apply included).
Run with ``pytest -m bench tests/bench/test_bench_s3.py``.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from mountsync.shared.config import Settings
from tests.bench.report import WITHIN_1_3X
from tests.conftest import env_for
from tests.helpers import Proc, enqueued_changes, live_count, wait_for
from tests.s3.notify import create_queue, queue_empty, route
from tests.standins.s3 import MotoEndpoints

# moto's SQS serves ~20-50 receives/s on this machine, so each pass takes tens of seconds.
pytestmark = [pytest.mark.bench, pytest.mark.timeout(1800)]

MESSAGES = 500
ROUNDS = 2
TARGET = WITHIN_1_3X

BARE = """
import sys, time, boto3
endpoint, url, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
print("start", time.time(), flush=True)
done = 0
while done < total:
    response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    messages = response.get("Messages", [])
    if messages:
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        failed = sqs.delete_message_batch(QueueUrl=url, Entries=entries).get("Failed", [])
        done += len(messages) - len(failed)
print("done", time.time(), flush=True)
"""


@pytest.fixture
def notifications(moto: MotoEndpoints) -> list[str]:
    """MESSAGES real S3 notification bodies for MESSAGES new objects in bucket ``bench``."""
    s3, sqs = moto.client("s3"), moto.client("sqs")
    s3.create_bucket(Bucket="bench")
    tap_url, tap_arn = create_queue(moto, "tap")
    route(moto, "direct", "bench", tap_arn)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket="bench", Key=f"frames/{i // 100:03d}/{i:05d}.jpg",
                                              Body=b"x" * (i % 97 + 1)), range(MESSAGES)))  # fmt: skip
    bodies: list[str] = []

    def drain() -> bool:
        response = sqs.receive_message(QueueUrl=tap_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in response.get("Messages", []):
            if "Records" in message["Body"]:
                bodies.append(message["Body"])
        if response.get("Messages"):
            handles = [m["ReceiptHandle"] for m in response["Messages"]]
            entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
            sqs.delete_message_batch(QueueUrl=tap_url, Entries=entries)
        return len(bodies) >= MESSAGES

    wait_for(drain, timeout=300, what="moto's notifications", interval=0)
    return bodies


def fill(moto: MotoEndpoints, url: str, bodies: list[str]) -> None:
    sqs = moto.client("sqs")
    batches = [bodies[i : i + 10] for i in range(0, len(bodies), 10)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda batch: sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": body} for i, body in enumerate(batch)]), batches))  # fmt: skip
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert int(attrs["Attributes"]["ApproximateNumberOfMessages"]) == len(bodies)


def consuming_at(log: str) -> float | None:
    for line in log.splitlines():
        if line.startswith("{") and '"consuming"' in line:
            stamp = json.loads(line)["timestamp"].replace("Z", "+00:00")
            return datetime.fromisoformat(stamp).timestamp()
    return None


def wait_drained(moto: MotoEndpoints, queue_url: str, producer: Proc, n: int) -> None:
    """Until every message is deleted. Polling moto meanwhile would slow it (each queue-attribute
    call scans the queue), so follow the producer's log first and ask moto only at the end."""
    wait_for(lambda: enqueued_changes(producer.log()) >= n, timeout=600, what="every change enqueued")
    wait_for(lambda: queue_empty(moto, queue_url), timeout=60, what="every message deleted")


def run_bare(moto: MotoEndpoints, queue_url: str, n: int, log: Path, procs: list[Proc]) -> float:
    bare = Proc.python(BARE, [moto.endpoint_url, queue_url, str(n)], {**os.environ, **moto.env()}, log).start()
    procs.append(bare)
    wait_for(lambda: "done" in bare.log(), timeout=600, what="the bare loop", interval=0.1)
    marks = dict(line.split() for line in bare.log().splitlines() if line.split()[0] in ("start", "done"))
    assert queue_empty(moto, queue_url)
    return float(marks["done"]) - float(marks["start"])


def start_producer(env: dict[str, str], queue_url: str, moto: MotoEndpoints, log: Path,
                   procs: list[Proc]) -> tuple[Proc, float]:  # fmt: skip
    args = ["produce", "s3-sqs", "--queue-url", queue_url, "--endpoint-url", moto.endpoint_url, "--wait-seconds", "1"]
    proc = Proc.mountsync(args, env, log).start()
    procs.append(proc)
    started = wait_for(lambda: consuming_at(proc.log()), timeout=60, what="the producer to start")
    return proc, started


def test_bench_sqs_consumer(
    notifications: list[str], moto: MotoEndpoints, settings: Settings, add_mount: Any, catalog: Any,
    worker: Any, bench_report: Any, procs: list[Proc], tmp_path: Path,
) -> None:  # fmt: skip
    queue_url, _ = create_queue(moto, "bench-events", visibility_s=120)
    n = len(notifications)
    aws_env = {k: v for k, v in moto.env().items() if k != "AWS_ENDPOINT_URL"}
    add_mount("bench-s3", "s3://bench/", endpoint_url=moto.endpoint_url)

    # 1. The consumers alone: the producer's tasks go to a private Redis prefix no worker reads.
    #    Bare and ours alternate, best of ROUNDS each: the machine is shared, load comes and goes.
    private = replace(settings, redis_prefix=f"{settings.redis_prefix}s3bench:")
    bare_runs, alone_runs = [], []
    for round_no in range(ROUNDS):
        fill(moto, queue_url, notifications)
        bare_runs.append(run_bare(moto, queue_url, n, tmp_path / f"bare-{round_no}.log", procs))
        fill(moto, queue_url, notifications)
        alone, started = start_producer(env_for(private, **aws_env), queue_url, moto,
                                        tmp_path / f"alone-{round_no}.log", procs)  # fmt: skip
        wait_drained(moto, queue_url, alone, n)
        alone_runs.append(time.time() - started)
        alone.stop()
        assert "Traceback" not in alone.log()
    bare_s, alone_s = min(bare_runs), min(alone_runs)

    # 2. Into the catalog: the session's worker applies what the producer enqueues.
    fill(moto, queue_url, notifications)
    ours, started = start_producer(env_for(settings, **aws_env), queue_url, moto,
                                   tmp_path / "producer.log", procs)  # fmt: skip
    wait_drained(moto, queue_url, ours, n)
    acked_s = time.time() - started
    wait_for(lambda: live_count(catalog, "bench-s3") >= n, timeout=900, what="every object in the catalog",
             interval=0.05)  # fmt: skip
    catalog_s = time.time() - started

    baseline = (f"bare boto3 receive+delete loop (best of {ROUNDS})", n / bare_s)
    bench_report.row(f"s3 sqs consumer alone (best of {ROUNDS})", n / alone_s, "events/s", *baseline, TARGET)
    bench_report.row("s3 sqs consumer beside a worker: deleted", n / acked_s, "events/s", *baseline, TARGET)
    bench_report.row("s3 sqs -> catalog (incl. worker apply)", n / catalog_s, "events/s", *baseline, TARGET)
    assert live_count(catalog, "bench-s3") == n
    assert "Traceback" not in ours.log()
