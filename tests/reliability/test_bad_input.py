"""The bad-input catalogue (deploy/RELIABILITY.md): each bad input and the behaviour a user sees.

- Events: dead-lettered with the reason (``dead_letters`` row, message rejected, nothing queued),
  except where a bad-looking input is a legitimate object (``..`` in a bucket key, percent signs,
  either Unicode normal form): kept exactly, and changes for unmounted buckets are counted as
  drops. One bad event never holds back or fails the good ones delivered with it.
- HTTP: 4xx with the reason in JSON.
- CLI: exit 2, the reason on stderr, nothing on stdout, no traceback.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote_plus

import psycopg
import pytest
from fastapi.testclient import TestClient as Client

from mountsync.producers.http.app import make_app
from mountsync.producers.http.receivers import MAX_BODY
from mountsync.producers.normalize.azure import normalize_azure
from mountsync.producers.normalize.fs import normalize_fs
from mountsync.producers.normalize.gcs import normalize_gcs
from mountsync.producers.normalize.s3 import normalize_s3
from mountsync.producers.pipeline import Outcome
from mountsync.producers.runtime import Runtime, build_runtime
from mountsync.shared.catalog.deadletters import MAX_STORED_PAYLOAD
from mountsync.shared.config import Settings
from mountsync.shared.events import MAX_KEY_BYTES, RawMessage, Source
from mountsync.shared.migration.client import JobNotFound
from mountsync.shared.queues import QUEUE_REINDEX, TASK_REINDEX, TASK_SUBMIT_MIGRATION, make_client, send
from tests.helpers import bearer, wait_for

Normalizer = Callable[[RawMessage], list[Any]]


@pytest.fixture(scope="module")
def runtime(settings: Settings) -> Iterator[Runtime]:
    """The producer runtime on the session's catalog and queue (the session worker applies)."""
    rt = build_runtime(settings)
    yield rt
    rt.close()


def s3_body(key: str, *, bucket: str = "bad-input", name: str = "ObjectCreated:Put", encode: bool = True,
            extra: dict[str, Any] | None = None) -> bytes:  # fmt: skip
    obj = {"key": quote_plus(key, safe="/") if encode else key, "size": 3, "eTag": '"abc"',
           "sequencer": "0055AED6DCD90281E5", **(extra or {})}  # fmt: skip
    record = {"eventVersion": "2.1", "eventSource": "aws:s3", "eventTime": "2024-05-01T12:00:00.000Z",
              "eventName": name, "s3": {"bucket": {"name": bucket}, "object": obj}}  # fmt: skip
    return json.dumps({"Records": [record]}).encode()


def gcs_message(object_id: str = "a.jpg", event: str = "OBJECT_FINALIZE", **attrs: str) -> RawMessage:
    attributes = {"eventType": event, "bucketId": "bad-input", "objectId": object_id,
                  "objectGeneration": "1714564800123456", "payloadFormat": "NONE",
                  "eventTime": "2024-05-01T12:00:00Z", **attrs}  # fmt: skip
    return RawMessage(Source.GCS_PUBSUB, "g-1", b"", {k: v for k, v in attributes.items() if v})


def azure_body(url_key: str, event: str = "Microsoft.Storage.BlobCreated") -> bytes:
    return json.dumps([{
        "topic": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct",
        "subject": "/blobServices/default/containers/bad-input/blobs/x", "eventType": event, "id": "e-1",
        "eventTime": "2024-05-01T12:00:00.0000000Z",
        "data": {"api": "PutBlob", "eTag": "0x8D1", "contentLength": 1, "sequencer": "0" * 48,
                 "url": f"https://acct.blob.core.windows.net/bad-input/{url_key}"},
    }]).encode()  # fmt: skip


def fs_body(**fields: Any) -> bytes:
    doc = {"root": "/data", "key": "a.jpg", "exists": True, "size": 1, "etag": "e", "observed_ns": 1}
    return json.dumps({**doc, **fields}).encode()


def process(runtime: Runtime, normalize: Normalizer, *messages: RawMessage | bytes) -> Outcome:
    source = {normalize_s3: Source.S3_SQS, normalize_fs: Source.FS}.get(normalize, Source.AZURE_EVENTGRID)
    raws = [m if isinstance(m, RawMessage) else RawMessage(source, f"m{i}", m)
            for i, m in enumerate(messages)]  # fmt: skip
    return runtime.pipeline(normalize).process(raws)


def letters(db: psycopg.Connection) -> list[tuple[str, str, int]]:
    rows = db.execute("SELECT source, reason, length(payload) FROM dead_letters ORDER BY id").fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def assert_dead_lettered(outcome: Outcome, db: psycopg.Connection, *fragments: str) -> None:
    assert outcome.reject and not outcome.ack and not outcome.nack and outcome.changes == 0
    [(_, reason, _)] = letters(db)
    for fragment in fragments:
        assert fragment in reason, reason


# -- events: dead letters with a reason --------------------------------------------------------
MALFORMED = [
    (normalize_s3, b"{not json", "not JSON"),
    (normalize_s3, b'{"Records": [{"eventName": "ObjectCreated:Put"}]}', "has no 's3'"),
    (normalize_s3, b'{"hello": "world"}', "not an S3 event"),
    (normalize_s3, s3_body("k", name="ObjectFrobbed:Put"), "unknown S3 event name 'ObjectFrobbed:Put'"),
    (normalize_s3, s3_body("k", extra={"size": "lots"}), "not a number"),
    (normalize_s3, s3_body("k", extra={"size": 2**63}), "out of range"),
    (normalize_s3, s3_body("a\x01b"), "control character"),
    (normalize_s3, s3_body("nul\x00key"), "control character"),
    (normalize_s3, s3_body("k" * (MAX_KEY_BYTES + 1)), f"longer than {MAX_KEY_BYTES} bytes"),
    (normalize_s3, s3_body("ok.jpg", bucket="nul\x00bucket"), "bucket contains NUL"),
    (normalize_azure, b"[{", "body is not JSON"),
    (normalize_azure, b'{"hello": 1}', "neither an Event Grid event"),
    (normalize_azure, azure_body("k", "Microsoft.Storage.BlobFrobbed"), "unsupported event type"),
    (normalize_azure, azure_body("bad%FFutf8.jpg"), "not percent-encoded UTF-8"),
    (normalize_azure, b"[" * 100_000, "nested more than"),
    (normalize_fs, b"nope", "not JSON"),
    (normalize_fs, fs_body(key="../escape.jpg"), "not a relative path inside the root"),
    (normalize_fs, fs_body(root=1), "'root' missing or not str"),
]


@pytest.mark.parametrize(("normalize", "body", "reason"), MALFORMED,
                         ids=[f"{n.__name__}-{r[:24]}" for n, _, r in MALFORMED])  # fmt: skip
def test_bad_events_are_dead_lettered_with_the_reason(runtime, catalog, normalize, body, reason) -> None:
    assert_dead_lettered(process(runtime, normalize, body), catalog, reason)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (gcs_message(event="OBJECT_FROBBED"), "unknown eventType 'OBJECT_FROBBED'"),
        (gcs_message(objectId=""), "without the 'objectId' attribute"),
        (gcs_message(objectGeneration="-5"), "out of range"),
        (gcs_message(payloadFormat="JSON_API_V1"), "has no data"),
        (RawMessage(Source.GCS_PUBSUB, "g", b"{", {**gcs_message().attributes,
                                                   "payloadFormat": "JSON_API_V1"}), "not JSON"),
    ],
)  # fmt: skip
def test_bad_gcs_notifications_are_dead_lettered(runtime, catalog, message, reason) -> None:
    assert_dead_lettered(process(runtime, normalize_gcs, message), catalog, reason)


def test_oversized_payloads_are_stored_truncated_with_the_reason(runtime, catalog) -> None:
    huge = b'{"Records": "' + b"x" * (MAX_STORED_PAYLOAD + 10) + b'"}'
    assert_dead_lettered(process(runtime, normalize_s3, huge), catalog, "stored truncated")
    assert letters(catalog)[0][2] == MAX_STORED_PAYLOAD


def test_one_bad_event_never_holds_back_the_good_ones(runtime, catalog, add_mount, catalog_state, worker) -> None:
    add_mount("badinput", "s3://bad-input/")
    good = [s3_body(f"good/{i}.jpg") for i in range(5)]
    outcome = process(runtime, normalize_s3, good[0], s3_body("x.jpg", bucket="nul\x00"), *good[1:])
    assert len(outcome.ack) == 5 and len(outcome.reject) == 1 and outcome.changes == 5
    wait_for(lambda: len(catalog_state("badinput")) == 5, timeout=60, what="the good changes applied")


# -- events: legitimate but odd keys are kept exactly --------------------------------------------
def test_odd_but_legal_keys_are_kept_exactly(runtime, catalog, add_mount, catalog_state, worker) -> None:
    add_mount("oddkeys", "s3://bad-input/")
    nfc, nfd = unicodedata.normalize("NFC", "café.jpg"), unicodedata.normalize("NFD", "café.jpg")
    keys = ["a/../../etc/passwd", "./dot/./x", "100%25 real%2Fname+plus.jpg", nfc, nfd, "sp ace/+.jpg"]
    bodies = [s3_body(k) for k in keys]
    bodies.append(s3_body("a%2Fb+c%2B.jpg", encode=False))  # how MinIO and moto send keys
    outcome = process(runtime, normalize_s3, *bodies)
    assert len(outcome.ack) == len(bodies) and not letters(catalog)
    state = wait_for(lambda: (s := catalog_state("oddkeys")) and len(s) == len(bodies) and s,
                     timeout=60, what="every odd key in the catalog")  # fmt: skip
    assert set(state) == {*keys, "a/b c+.jpg"}  # NFC and NFD are two objects, as in the bucket


def test_gcs_object_names_are_never_percent_decoded(runtime, catalog) -> None:
    [change] = normalize_gcs(gcs_message(object_id="a%20b/c+d.jpg"))
    assert change.key == "a%20b/c+d.jpg"


def test_events_for_unmounted_buckets_are_counted_as_drops(runtime, catalog, add_mount, worker) -> None:
    add_mount("mounted", "s3://mounted-bucket/only/")
    outcome = process(runtime, normalize_s3, s3_body("a.jpg", bucket="nobody-mounts-this"),
                      s3_body("elsewhere/b.jpg", bucket="mounted-bucket"))  # fmt: skip
    assert len(outcome.ack) == 2 and not letters(catalog)
    rows = wait_for(lambda: catalog.execute("SELECT bucket, count, last_key FROM drops WHERE reason = "
                                            "'unmounted' ORDER BY bucket").fetchall() or None,
                    timeout=60, what="drops counted")  # fmt: skip
    assert rows == [("mounted-bucket", 1, "elsewhere/b.jpg"), ("nobody-mounts-this", 1, "a.jpg")]
    assert catalog.execute("SELECT count(*) FROM objects").fetchone()[0] == 0


def test_reindex_task_for_an_unknown_mount_fails_visibly(settings, catalog, worker) -> None:
    send(make_client(settings), TASK_REINDEX, "no-such-mount", queue=QUEUE_REINDEX)
    wait_for(lambda: "reindex of an unknown mount" in worker.log_tail(50_000) and "no-such-mount"
             in worker.log_tail(50_000), timeout=60, what="the worker to log the unknown mount")  # fmt: skip


# -- HTTP ----------------------------------------------------------------------------------------
@pytest.fixture
def http(settings: Settings, catalog: psycopg.Connection) -> Iterator[Client]:
    app = make_app(settings)
    yield Client(app)
    app.state.serve.stop()  # the Event Grid inbox drainer the first POST started


def test_http_bodies_over_the_limit_are_413(http) -> None:
    response = http.post("/eventgrid", content=b"[" + b" " * MAX_BODY + b"]")
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("path", "body", "status", "reason"),
    [
        ("/push/gcs", b"{not json", 400, "not JSON"),
        ("/push/gcs", b'{"subscription": "s"}', 400, "no 'message' object"),
        ("/push/gcs", b'{"message": {"messageId": "1", "data": "***"}}', 400, "not base64"),
        ("/push/gcs", b'{"message":' * 100_000, 400, "nested more than"),
        ("/eventgrid", b"[{", 400, "body is not JSON"),
        ("/eventgrid", b"[" * 100_000, 400, "nested more than"),
        ("/api/v1/migrations", b"[" * 100_000, 400, "body: JSON nested more than"),
        ("/eventgrid", b'[{"eventType": "Microsoft.Storage.BlobFrobbed", "data": {}}]', 400, "unsupported"),
        ("/api/v1/migrations", b"{", 422, "body"),
        ("/api/v1/migrations", b"[]", 422, "body: Input should be a valid dictionary"),
        ("/api/v1/migrations", b'{"source": "s3://d/x"}', 400, "'destination' is required"),
        ("/api/v1/migrations", b'{"source": "file:///etc", "destination": "s3://b/p"}', 400,
         "MOUNTSYNC_MIGRATION_SOURCE_ROOTS"),
        ("/api/v1/migrations", json.dumps({"source": "s3://d/x", "destination": "s3://b/p",
                                        "items": [{"entity_id": "1", "path": "../x"}]}).encode(),
         400, "'..'"),
        ("/nowhere", b"", 404, "Not Found"),
    ],
)  # fmt: skip
def test_bad_http_requests_are_4xx_with_the_reason(http, catalog, path, body, status, reason) -> None:
    response = http.post(path, content=body, headers={**bearer(catalog, "write"), "Content-Type": "application/json"})
    assert response.status_code == status, response.text
    payload = response.json()
    text = json.dumps(payload)
    assert reason in (payload.get("error", "") + " ".join(payload.get("reasons", [])) or text), text
    if path in ("/push/gcs", "/eventgrid") and status == 400:
        assert letters(catalog), "a malformed push must be kept as a dead letter"


# -- migration specs sent by name ----------------------------------------------------------------
def test_bad_spec_sent_by_name_becomes_a_failed_job_with_the_reason(settings, catalog, worker) -> None:
    from mountsync.shared.migration.client import MigrationClient

    spec = {"source": "file:///data", "destination": "s3://b/p", "job_id": "bad-by-name",
            "items": [{"entity_id": "e1", "path": "a/../../../etc/shadow"}]}  # fmt: skip
    send(make_client(settings), TASK_SUBMIT_MIGRATION, spec, queue="migrations")
    with MigrationClient(settings) as client:
        progress = wait_for(lambda: _status(client, "bad-by-name"), timeout=60, what="the rejected job")
    assert progress.state == "failed"
    assert "'..'" in json.dumps(progress.to_json())


def _status(client: Any, job: str) -> Any:
    try:
        return client.status(job)
    except JobNotFound:
        return None  # sent by task name: the job exists once a worker has run submit_migration


# -- CLI -----------------------------------------------------------------------------------------
def assert_clean_error(proc: Any, *fragments: str) -> list[str]:
    """Exit 2, nothing on stdout, no traceback, the reason on stderr; returns stderr's lines."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == "" and "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    for fragment in fragments:
        assert fragment in lines[-1], proc.stderr
    return lines


UNKNOWN_MOUNT = [
    ["mount", "show", "ghost"], ["mount", "check", "ghost"], ["mount", "remove", "ghost"],
    ["reindex", "ghost"], ["ls", "ghost"], ["datasets", "ghost"], ["frames", "ghost", "f"],
    ["pin", "ghost", "f"], ["produce", "fs", "--mount", "ghost"],
]  # fmt: skip


@pytest.mark.parametrize("args", UNKNOWN_MOUNT, ids=[" ".join(a[:2]) for a in UNKNOWN_MOUNT])
def test_unknown_mount_names_are_one_line_exit_2(cli, catalog, args) -> None:
    lines = assert_clean_error(cli(*args), "no mount named 'ghost'")
    assert [line for line in lines if "error" in line.lower() and "redis" not in line.lower()] == lines[-1:]


def write_items(tmp_path: Any, text: str) -> str:
    path = tmp_path / "items.jsonl"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--source", "ftp://x/y", "--dest", "s3://b/p"], "unknown URL scheme 'ftp'"),
        (["--source", "file:///data", "--dest", "file:///data/sub"], "overlaps the source"),
        (["--source", "file:///data", "--dest", "s3://b/p", "-o", "concurrency=0"], "concurrency"),
        (["--source", "file:///data", "--dest", "s3://b/p", "-o", "bogus=1"], "bogus"),
        (["--source", "file:///data", "--dest", "s3:///no-bucket"], "no bucket name"),
        (["--source", "file:///data", "--dest", "s3://b/../up"], "not allowed"),
        (["--source", "file:///data", "--dest", "s3://b/p", "--items", "ITEMS:{\"entity_id\": \"1\", "
          "\"path\": \"../../etc/passwd\"}\n"], "'..'"),
        (["--source", "file:///data", "--dest", "s3://b/p", "--items", "ITEMS:not json\n"], "items"),
        (["--source", "file:///data", "--dest", "s3://b/p", "--items", "ITEMS:{\"entity_id\": \"1\", "
          "\"path\": \"/abs/path\"}\n"], "absolute"),
        (["--source", "file:///data", "--dest", "s3://b/p", "--items", "ITEMS:{\"entity_id\": \"1\", "
          "\"path\": \"a\\u0000b\"}\n"], "control character"),
    ],
)  # fmt: skip
def test_invalid_migration_specs_are_one_line_exit_2(cli, catalog, tmp_path, args, reason) -> None:
    args = [write_items(tmp_path, a[6:]) if a.startswith("ITEMS:") else a for a in args]
    lines = assert_clean_error(cli("migrate", "submit", *args), reason)
    assert len(lines) == 1, lines
    assert catalog.execute("SELECT count(*) FROM migration_jobs").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("args", "env", "reason"),
    [
        (["ls", "x", "--limit", "abc"], {}, "'--limit'"),
        (["mount", "add"], {}, "Missing argument"),
        (["--bogus"], {}, "No such option"),
        (["reindex", "x", "--timeout", "soon"], {}, "'--timeout'"),
        (["mount", "list"], {"MOUNTSYNC_MAX_QUEUE_DEPTH": "lots"}, "MOUNTSYNC_MAX_QUEUE_DEPTH"),
        (["mount", "list"], {"MOUNTSYNC_REDIS_URL": "http://x"}, "redis://"),
        (["mount", "list"], {"MOUNTSYNC_VISIBILITY_TIMEOUT": "3"}, "VISIBILITY_TIMEOUT"),
        (["worker"], {"MOUNTSYNC_WORKER_SCHEDULE": "sometimes"}, "MOUNTSYNC_WORKER_SCHEDULE"),
    ],
)  # fmt: skip
def test_invalid_cli_arguments_exit_2_without_a_traceback(cli, args, env, reason) -> None:
    assert_clean_error(cli(*args, **env), reason)


def test_usage_errors_are_one_line(cli) -> None:
    assert len(assert_clean_error(cli("ls", "x", "--limit", "abc"), "'--limit'")) == 1
