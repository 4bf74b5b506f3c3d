"""End to end on moto: real bucket notifications -> SQS (direct, via SNS, via EventBridge) ->
``mountsync produce s3-sqs`` -> Redis -> worker -> catalog; reindex of S3 mounts; dead letters;
unmounted buckets; a producer killed between enqueue and delete."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.s3.notify import (
    ROUTES,
    Producer,
    bucket_state,
    create_queue,
    later_second,
    queue_empty,
    route,
    without_versions,
)
from tests.s3.sqs_gate import SqsGate
from tests.standins.s3 import MotoEndpoints

ODD_KEYS = [
    "with space/and+plus.txt",
    "percent%25and%2F=equals.bin",
    "a=b/c=d/k=v.csv",
    "ünï/cödé/名前.jpg",
    "deep/" + "/".join(f"l{i}" for i in range(12)) + "/leaf.png",
    "looks-like-a-folder/",
]
PART = 5 * 1024 * 1024

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def env(test_env: dict[str, str], moto: MotoEndpoints) -> dict[str, str]:
    """The subprocess environment: the test's catalog and Redis, moto's dummy credentials."""
    extra = {k: v for k, v in moto.env().items() if k != "AWS_ENDPOINT_URL"}
    return {**test_env, **extra}


@pytest.fixture
def producers(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Producer]]:
    started: list[Producer] = []

    def start(queue_url: str, *args: str, log_name: str = "producer.log") -> Producer:
        producer = Producer(env, tmp_path / log_name, queue_url, *args).start()
        started.append(producer)
        return producer

    yield start
    for producer in started:
        if producer.proc and producer.proc.poll() is None:
            code = producer.stop()
            assert code == 0, producer.log()[-3000:]
        assert "Traceback" not in producer.log(), producer.log()[-3000:]


def catalog_matches(catalog_state: Callable[[str], Any], mount: str, moto: MotoEndpoints,
                    bucket: str) -> Callable[[], bool]:  # fmt: skip
    return lambda: without_versions(catalog_state(mount)) == bucket_state(moto, bucket)


def multipart(s3: Any, bucket: str, key: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for number, data in ((1, b"a" * PART), (2, b"tail")):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=data)
        parts.append({"PartNumber": number, "ETag": etag["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})


@pytest.mark.parametrize("route_name", ROUTES)
def test_notifications_reach_the_catalog_exactly(
    route_name: str, moto: MotoEndpoints, add_mount: Any, catalog_state: Any, producers: Any
) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="frames")
    queue_url, queue_arn = create_queue(moto, "frames-events")
    route(moto, route_name, "frames", queue_arn)
    add_mount("frames", "s3://frames/", endpoint_url=moto.endpoint_url)
    # moto's EventBridge sequencer is one constant for every event: order by time instead.
    extra = ["--ignore-sequencer"] if route_name == "eventbridge" else []
    producer = producers(queue_url, "--endpoint-url", moto.endpoint_url, *extra)
    in_sync = catalog_matches(catalog_state, "frames", moto, "frames")

    for key in [*ODD_KEYS, "a.txt", "b.txt", "gone-1", "gone-2", "gone-3"]:
        s3.put_object(Bucket="frames", Key=key, Body=f"first {key}".encode())
    wait_for(in_sync, timeout=60, what=f"puts to reach the catalog ({route_name})")
    assert len(catalog_state("frames")) == len(ODD_KEYS) + 5

    wait_for(later_second(), timeout=3, what="the next second")
    s3.put_object(Bucket="frames", Key="a.txt", Body=b"overwritten, longer than before")
    s3.copy_object(Bucket="frames", Key="copy of a.txt", CopySource={"Bucket": "frames", "Key": "a.txt"})
    multipart(s3, "frames", "video/clip.mp4")
    wait_for(in_sync, timeout=60, what=f"overwrite, copy, multipart ({route_name})")
    assert catalog_state("frames")["video/clip.mp4"]["etag"].endswith("-2")

    wait_for(later_second(), timeout=3, what="the next second")
    s3.delete_object(Bucket="frames", Key="b.txt")
    s3.delete_objects(Bucket="frames", Delete={"Objects": [{"Key": f"gone-{i}"} for i in (1, 2, 3)]})
    wait_for(in_sync, timeout=60, what=f"deletes to reach the catalog ({route_name})")
    assert "b.txt" not in catalog_state("frames")
    wait_for(lambda: queue_empty(moto, queue_url), timeout=30, what="every message deleted")
    assert producer.proc is not None and producer.proc.poll() is None


def test_unmounted_buckets_and_prefixes_are_counted_as_dropped(
    moto: MotoEndpoints, add_mount: Any, catalog_state: Any, producers: Any, db: Any
) -> None:
    s3 = moto.client("s3")
    queue_url, queue_arn = create_queue(moto, "shared-events")
    for bucket in ("mounted", "stranger"):
        s3.create_bucket(Bucket=bucket)
        route(moto, "direct", bucket, queue_arn)
    add_mount("data", "s3://mounted/data/", endpoint_url=moto.endpoint_url)
    producers(queue_url, "--endpoint-url", moto.endpoint_url)

    s3.put_object(Bucket="mounted", Key="data/in.txt", Body=b"in")
    s3.put_object(Bucket="mounted", Key="elsewhere/out.txt", Body=b"out")
    s3.put_object(Bucket="stranger", Key="x.txt", Body=b"x")

    wait_for(lambda: "data/in.txt" in catalog_state("data"), timeout=60, what="mounted object")
    drops = wait_for(
        lambda: dict(db.execute("SELECT bucket, count FROM drops WHERE reason = 'unmounted'").fetchall())
        if len(db.execute("SELECT 1 FROM drops").fetchall()) == 2 else None,
        timeout=60, what="drops for the unmounted prefix and bucket",
    )  # fmt: skip
    assert drops == {"mounted": 1, "stranger": 1}
    assert catalog_state("data").keys() == {"data/in.txt"}
    assert db.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
    wait_for(lambda: queue_empty(moto, queue_url), timeout=30, what="all messages deleted")


def test_malformed_bodies_are_dead_lettered_then_deleted(
    moto: MotoEndpoints, add_mount: Any, catalog_state: Any, producers: Any, db: Any
) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="frames")
    queue_url, queue_arn = create_queue(moto, "frames-events")
    route(moto, "direct", "frames", queue_arn)
    add_mount("frames", "s3://frames/", endpoint_url=moto.endpoint_url)
    sqs = moto.client("sqs")
    sqs.send_message(QueueUrl=queue_url, MessageBody="this is not an S3 event")
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"Records": [{"eventName": "x"}]}))
    s3.put_object(Bucket="frames", Key="good.txt", Body=b"fine")
    producers(queue_url, "--endpoint-url", moto.endpoint_url)

    wait_for(lambda: "good.txt" in catalog_state("frames"), timeout=60, what="the good event")
    rows = wait_for(
        lambda: (r := db.execute(
            "SELECT source, reason, payload FROM dead_letters ORDER BY id").fetchall()) and len(r) == 2 and r,
        timeout=60, what="two dead letters",
    )  # fmt: skip
    by_payload = {bytes(r[2]): (r[0], r[1]) for r in rows}
    assert by_payload[b"this is not an S3 event"][0] == "s3-sqs"
    assert "not JSON" in by_payload[b"this is not an S3 event"][1]
    assert "unknown S3 event name 'x'" in by_payload[json.dumps({"Records": [{"eventName": "x"}]}).encode()][1]
    wait_for(lambda: queue_empty(moto, queue_url), timeout=30, what="bad messages deleted after recording")


def reindex(cli: Any, env: dict[str, str], name: str) -> dict[str, Any]:
    result = cli("reindex", name, "--wait", "--json", "--timeout", "180", check=True, timeout=240, **env)
    summary: dict[str, Any] = json.loads(result.stdout)
    assert summary["state"] == "succeeded", summary
    return summary


def test_reindex_of_1000_objects_then_zero_differences(
    moto: MotoEndpoints, add_mount: Any, catalog_state: Any, cli: Any, env: dict[str, str]
) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="bulk")
    keys = [f"seq_{i // 100:02d}/frame_{i:05d}.jpg" for i in range(1000 - len(ODD_KEYS))] + ODD_KEYS
    for i, key in enumerate(keys):
        s3.put_object(Bucket="bulk", Key=key, Body=b"x" * (i % 13 + 1))
    add_mount("bulk", "s3://bulk/", endpoint_url=moto.endpoint_url)

    first = reindex(cli, env, "bulk")
    assert (first["listed"], first["created"], first["updated"], first["deleted"]) == (1000, 1000, 0, 0)
    assert without_versions(catalog_state("bulk")) == bucket_state(moto, "bulk")

    second = reindex(cli, env, "bulk")
    assert (second["created"], second["updated"], second["deleted"], second["unchanged"]) == (0, 0, 0, 1000)

    s3.delete_object(Bucket="bulk", Key=keys[0])
    s3.put_object(Bucket="bulk", Key=keys[1], Body=b"changed behind our back")
    s3.put_object(Bucket="bulk", Key="seq_03/new.jpg", Body=b"new")
    third = reindex(cli, env, "bulk")
    assert (third["created"], third["updated"], third["deleted"]) == (1, 1, 1)
    assert without_versions(catalog_state("bulk")) == bucket_state(moto, "bulk")


def test_duplicated_and_reordered_events_converge(
    moto: MotoEndpoints, add_mount: Any, catalog_state: Any, producers: Any, cli: Any,
    env: dict[str, str],
) -> None:  # fmt: skip
    s3, sqs = moto.client("s3"), moto.client("sqs")
    s3.create_bucket(Bucket="churn")
    capture_url, capture_arn = create_queue(moto, "capture")
    route(moto, "direct", "churn", capture_arn)
    rng = random.Random(7)
    keys = [f"k{i:02d}.bin" for i in range(30)]
    for _ in range(300):
        key = rng.choice(keys)
        if rng.random() < 0.25:
            s3.delete_object(Bucket="churn", Key=key)
        else:
            s3.put_object(Bucket="churn", Key=key, Body=rng.randbytes(rng.randrange(1, 200)))
    captured = []
    while batch := sqs.receive_message(QueueUrl=capture_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages"):
        captured.extend(m["Body"] for m in batch)
    assert len(captured) > 250
    bodies = captured + rng.sample(captured, len(captured) // 2)  # half of them twice
    rng.shuffle(bodies)
    replay_url, _ = create_queue(moto, "replay")
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(QueueUrl=replay_url, Entries=[
            {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start : start + 10])
        ])  # fmt: skip
    add_mount("churn", "s3://churn/", endpoint_url=moto.endpoint_url)
    producers(replay_url, "--endpoint-url", moto.endpoint_url)

    wait_for(lambda: queue_empty(moto, replay_url), timeout=120, what="replayed events consumed")
    # Events carry millisecond times (moto has no sequencer): order by time already converges.
    wait_for(catalog_matches(catalog_state, "churn", moto, "churn"), timeout=60,
             what="catalog to equal the bucket after shuffled duplicates")  # fmt: skip
    summary = reindex(cli, env, "churn")  # the reconcile finds nothing left to fix
    assert (summary["created"], summary["updated"], summary["deleted"]) == (0, 0, 0)


def payload(name: str) -> str:
    return (Path(__file__).parent / "payloads" / name).read_text()


def test_real_s3_sequencers_order_changes_through_the_catalog(
    moto: MotoEndpoints, add_mount: Any, catalog_state: Any, producers: Any, db: Any
) -> None:
    """Recorded real-S3 payloads (moto has no sequencer) fed through the whole path."""
    sqs = moto.client("sqs")
    queue_url, _ = create_queue(moto, "recorded")
    # The bucket exists (empty): the producer stats deletes that name a version (normalize/s3_enrich).
    moto.client("s3").create_bucket(Bucket="acme-raw")
    add_mount("raw", "s3://acme-raw/seq/", endpoint_url=moto.endpoint_url)
    producers(queue_url, "--endpoint-url", moto.endpoint_url)
    key = "seq/frame 0007.png"

    def row() -> Any:
        return db.execute("SELECT deleted, size, seq FROM objects WHERE key = %s", (key,)).fetchone()

    # 1. The delete marker arrives first.
    sqs.send_message(QueueUrl=queue_url, MessageBody=payload("aws_order_delete.json"))
    wait_for(lambda: row() is not None, timeout=60, what="the delete's tombstone")
    assert row()[0] is True
    # 2. The older PUT arrives late, in one message with a sentinel for another key (one batch).
    late_put = json.loads(payload("aws_order_put.json"))
    sentinel = json.loads(payload("aws_order_put.json"))["Records"][0]
    sentinel["s3"]["object"]["key"] = "seq/sentinel.png"
    late_put["Records"].append(sentinel)
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(late_put))
    wait_for(lambda: "seq/sentinel.png" in catalog_state("raw"), timeout=60, what="the sentinel")
    assert row()[0] is True, "an older PUT (longer sequencer, same time) resurrected a deleted key"
    # 3. A newer PUT with an *earlier* eventTime still wins: the sequencer decides, not the clock.
    sqs.send_message(QueueUrl=queue_url, MessageBody=payload("aws_order_put_again.json"))
    wait_for(lambda: row()[0] is False, timeout=60, what="the newest PUT")
    assert row()[1] == 2048 and row()[2].startswith("0055AED6DCD9028300")


def test_producer_killed_between_enqueue_and_delete_loses_and_duplicates_nothing(
    moto: MotoEndpoints, add_mount: Any, catalog_state: Any, producers: Any, settings: Any,
    redis_client: Any, db: Any,
) -> None:  # fmt: skip
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="frames")
    queue_url, queue_arn = create_queue(moto, "frames-events", visibility_s=3)
    route(moto, "direct", "frames", queue_arn)
    add_mount("frames", "s3://frames/", endpoint_url=moto.endpoint_url)
    for i in range(40):
        s3.put_object(Bucket="frames", Key=f"f/{i:03d}.jpg", Body=io.BytesIO(b"x" * (i + 1)))

    with SqsGate(moto.endpoint_url) as gate:
        gate.hold("DeleteMessageBatch")
        doomed = producers(queue_url, "--endpoint-url", gate.url, log_name="doomed.log")
        wait_for(lambda: gate.held, timeout=60, what="the producer to try deleting its first batch")
        held_ids = len(gate.held[0]["Entries"])
        wait_for(lambda: len(catalog_state("frames")) >= held_ids - 1, timeout=60,
                 what="the held batch's changes to be on Redis and applied")  # fmt: skip
        assert not queue_empty(moto, queue_url)  # its messages are still in SQS, undeleted
        doomed.kill()
        gate.release()

    producers(queue_url, "--endpoint-url", moto.endpoint_url, log_name="restarted.log")
    wait_for(catalog_matches(catalog_state, "frames", moto, "frames"), timeout=90,
             what="every object after the restart")  # fmt: skip
    wait_for(lambda: queue_empty(moto, queue_url), timeout=60, what="redelivered messages deleted")
    feed = redis_client.xrange(f"{settings.redis_prefix}mountsync:feed")
    fed_keys = [fields[b"key"].decode() for _, fields in feed]
    assert sorted(fed_keys) == sorted(catalog_state("frames")), "a redelivered change was applied twice"
    assert db.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
