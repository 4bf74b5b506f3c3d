"""``POST``/``OPTIONS /eventgrid`` with the real pipeline and werkzeug, fake queue and dead letters.

A body whose events all have a sound envelope is appended to the inbox as delivered; ``drain``
then runs what the drainer runs on it (``event_messages``, the pipeline, directory reindexes).
The drainer itself, on real Redis and PostgreSQL, is tested in ``tests/core/test_inbox.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient as Client

from mountsync.producers.azure_common import request_directory_reindex
from mountsync.producers.azure_webhook import _State, handle
from mountsync.producers.http.push import PushRequest
from mountsync.producers.inbox_events import EventEntries, event_messages, events_entry
from mountsync.producers.normalize.azure import make_normalizer, split_event_bodies, split_events
from mountsync.producers.pipeline import Outcome, Pipeline
from mountsync.shared.config import Settings
from mountsync.shared.errors import ServiceUnavailable
from mountsync.shared.events import RawMessage, Source

PAYLOADS = Path(__file__).parent / "payloads"


class FakeQueue:
    def __init__(self) -> None:
        self.changes: list[Any] = []
        self.down = False

    def enqueue(self, changes: list[Any]) -> None:
        if self.down:
            raise ServiceUnavailable("redis down")
        self.changes.extend(changes)


class FakeDeadLetters:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, bytes]] = []
        self.down = False

    def record(self, source: str, message_id: str, reason: str, payload: bytes, attributes: Any = None) -> int:
        if self.down:
            raise OSError("postgres down")
        self.records.append((message_id, reason, payload))
        return len(self.records)


@dataclass
class FakeMount:
    name: str
    prefix: str


@dataclass
class FakeMounts:
    mounts: dict[str, list[FakeMount]] = field(default_factory=dict)

    def for_container(self, container: str) -> list[FakeMount]:
        return self.mounts.get(container, [])


@dataclass
class Ctx:
    settings: Settings
    _azure_webhook: Any = None

    def start_drainer(self, source: Any) -> None:
        """The harness's pipeline writes to a fake queue: there is no inbox to drain."""


@dataclass
class Harness:
    client: Client
    queue: FakeQueue
    deadletters: FakeDeadLetters
    reindexed: list[tuple[str, str]]
    mounts: FakeMounts
    send_reindex: Any
    appended: list[dict[bytes, bytes]] = field(default_factory=list)

    def append_events(self, body: bytes, attributes: Any) -> None:
        if self.queue.down:
            raise ServiceUnavailable("redis down")
        self.appended.append(events_entry(body, attributes))

    def drain(self) -> tuple[Outcome, list[RawMessage]]:
        """What the drainer does with the appended entries: (the outcome, messages held back
        because their directory reindex could not be queued)."""
        messages = [m for i, fields in enumerate(self.appended)
                    for m in event_messages(Source.AZURE_EVENTGRID, "inbox", f"{i}-0".encode(), fields, 1,
                                            split_events)]  # fmt: skip
        self.appended.clear()
        entries = EventEntries(split_events, split_event_bodies, make_normalizer())
        drainer = Pipeline(entries.normalize, self.queue, self.deadletters, letter_body=entries.letter_body)  # type: ignore[arg-type]
        outcome = drainer.process(messages)
        return outcome, request_directory_reindex(outcome.ack, self.mounts, self.send_reindex)  # type: ignore[arg-type]


def make_harness(**extra: str) -> Harness:
    queue, deadletters, reindexed, mounts = FakeQueue(), FakeDeadLetters(), [], FakeMounts()
    pipeline = Pipeline(make_normalizer(), queue, deadletters)  # type: ignore[arg-type]

    def send_reindex(name: str, prefix: str) -> None:
        if name == "broken":
            raise ServiceUnavailable("redis down")
        reindexed.append((name, prefix))

    harness = Harness(None, queue, deadletters, reindexed, mounts, send_reindex)  # type: ignore[arg-type]
    ctx = Ctx(Settings(extra=extra), _State(pipeline, mounts, send_reindex, harness.append_events))  # type: ignore[arg-type]

    app = FastAPI()

    @app.api_route("/eventgrid", methods=["POST", "OPTIONS"])
    async def eventgrid(request: Request) -> Response:
        push = PushRequest(request.method, str(request.url), request.headers, request.query_params,
                           await request.body())  # fmt: skip
        answer = handle(push, ctx)
        if answer.body is None:
            return Response(status_code=answer.status, headers=answer.headers)
        return JSONResponse(answer.body, answer.status, headers=answer.headers)

    harness.client = Client(app)
    return harness


@pytest.fixture
def hook() -> Harness:
    return make_harness()


def post(h: Harness, name_or_body: str | bytes, path: str = "/eventgrid", **headers: str) -> Any:
    body = name_or_body if isinstance(name_or_body, bytes) else (PAYLOADS / name_or_body).read_bytes()
    headers.setdefault("Content-Type", "application/json")
    return h.client.post(path, content=body, headers=headers)


def test_event_grid_validation_handshake(hook: Harness) -> None:
    response = post(hook, "eg_validation.json", **{"aeg-event-type": "SubscriptionValidation"})
    assert response.status_code == 200
    assert response.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    assert hook.queue.changes == [] and hook.deadletters.records == []


def test_cloudevents_abuse_protection_handshake(hook: Harness) -> None:
    response = hook.client.options("/eventgrid", headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert response.status_code == 200
    assert response.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    assert response.headers["WebHook-Allowed-Rate"] == "*"
    assert hook.client.options("/eventgrid").status_code == 400


def test_event_grid_batch_is_queued_then_200(hook: Harness) -> None:
    response = post(hook, "eg_batch_mixed.json", **{"aeg-event-type": "Notification"})
    assert response.status_code == 200
    assert response.json() == {"queued": 3}
    assert hook.queue.changes == [] and len(hook.appended) == 1  # on Redis as delivered: one append
    hook.drain()
    assert [c.key for c in hook.queue.changes] == ["seq/0002.png", "seq/0001.png", "seq/0003.png"]


def test_cloudevents_single_and_batch(hook: Harness) -> None:
    single = post(hook, "ce_blob_created.json", **{"Content-Type": "application/cloudevents+json"})
    batch = post(hook, "sftp_create_commit.json", **{"Content-Type": "application/cloudevents-batch+json"})
    assert (single.status_code, batch.status_code) == (200, 200)
    hook.drain()
    assert [c.key for c in hook.queue.changes] == ["2024/report 1+2 ü.csv", "vendor/a.mp4"]


def test_malformed_body_is_dead_lettered_with_400(hook: Harness) -> None:
    response = post(hook, b"{not json")
    assert response.status_code == 400
    assert response.json()["dead_lettered"] == 1
    [(_, reason, payload)] = hook.deadletters.records
    assert payload == b"{not json" and "JSON" in reason


def test_an_event_with_a_bad_envelope_is_dead_lettered_with_400_and_the_others_queued(hook: Harness) -> None:
    events = json.loads((PAYLOADS / "eg_batch_mixed.json").read_text())
    events[1]["eventType"] = "Microsoft.Storage.BlobMoved"  # a type nobody sends: a misrouted subscription
    response = post(hook, json.dumps(events).encode())
    assert response.status_code == 400
    assert response.json()["queued"] == 2 and "unsupported event type" in response.json()["reasons"][0]
    assert [r[0] for r in hook.deadletters.records] == [events[1]["id"]]
    assert hook.appended == []


def test_one_bad_event_does_not_hold_back_the_others(hook: Harness) -> None:
    """A sound envelope around bad content: queued with the batch, dead-lettered by the drainer."""
    events = json.loads((PAYLOADS / "eg_batch_mixed.json").read_text())
    events[1]["data"]["url"] = "https://acmeraw.blob.core.windows.net/"
    response = post(hook, json.dumps(events).encode())
    assert (response.status_code, response.json()) == (200, {"queued": 3})
    outcome, _ = hook.drain()
    assert [c.key for c in hook.queue.changes] == ["seq/0002.png", "seq/0003.png"]
    assert [r[0] for r in hook.deadletters.records] == [events[1]["id"]]
    assert [m.message_id for m in outcome.reject] == [events[1]["id"]]


def test_a_bad_event_is_dead_lettered_with_its_bytes_as_delivered(hook: Harness) -> None:
    events = json.loads((PAYLOADS / "eg_batch_mixed.json").read_text())
    events[2]["data"]["url"] = "https://acmeraw.blob.core.windows.net/"
    events[2]["subject"] += " caf\u00e9"  # sent escaped: a re-serialization would write it differently
    body = json.dumps(events, indent=3).encode()
    assert post(hook, body).status_code == 200
    hook.drain()
    assert len(hook.queue.changes) == 2
    [(message_id, _, stored)] = hook.deadletters.records
    assert message_id == events[2]["id"]
    assert stored in body and b"\\u00e9" in stored  # the slice as sent (indented, escaped), not re-encoded
    assert json.loads(stored) == events[2]


def test_enqueue_failure_is_503_and_nothing_dead_lettered(hook: Harness) -> None:
    hook.queue.down = True
    response = post(hook, "eg_batch_mixed.json")
    assert response.status_code == 503
    assert hook.deadletters.records == [] and hook.appended == []


def test_dead_letter_store_down_is_503(hook: Harness) -> None:
    hook.deadletters.down = True
    assert post(hook, b"[1]").status_code == 503


def test_secret_is_required_when_configured() -> None:
    h = make_harness(MOUNTSYNC_EVENTGRID_SECRET="s3cret")
    assert post(h, "eg_blob_created.json").status_code == 401
    assert post(h, "eg_blob_created.json", path="/eventgrid?key=wrong").status_code == 401
    assert h.client.options("/eventgrid", headers={"WebHook-Request-Origin": "x"}).status_code == 401
    assert post(h, "eg_validation.json").status_code == 401
    assert h.queue.changes == [] and h.deadletters.records == []
    assert post(h, "eg_blob_created.json", path="/eventgrid?key=s3cret").status_code == 200
    assert post(h, "eg_blob_created.json", **{"X-Mountsync-Key": "s3cret"}).status_code == 200
    h.drain()
    assert len(h.queue.changes) == 2


def test_directory_events_queue_reindexes_of_overlapping_mounts(hook: Harness) -> None:
    hook.mounts.mounts["lake"] = [FakeMount("clips", "clips/"), FakeMount("run6", "clips/run6/x/"),
                                  FakeMount("other", "elsewhere/")]  # fmt: skip
    response = post(hook, "hns_directories.json")
    assert response.status_code == 200
    hook.drain()
    assert sorted(hook.reindexed) == [
        ("clips", "new run"),
        ("clips", "old run"),
        ("clips", "run6"),
        ("run6", ""),
    ]


def test_directory_event_whose_reindex_cannot_be_queued_is_held_for_a_retry(hook: Harness) -> None:
    """The drainer nacks it: its inbox entry stays pending until the reindex is queued."""
    hook.mounts.mounts["lake"] = [FakeMount("broken", "")]
    assert post(hook, "hns_directories.json").status_code == 200
    _, held = hook.drain()
    assert held and all("Directory" in m.payload["eventType"] for m in held)


def test_directory_events_in_base64_queue_bodies_are_recognized() -> None:
    import base64

    events = json.loads((PAYLOADS / "hns_directories.json").read_text())
    bodies = [base64.b64encode(json.dumps(e).encode()) for e in events]
    sent: list[tuple[str, str]] = []
    mounts = FakeMounts({"lake": [FakeMount("lake", "")]})
    messages = [RawMessage(Source.AZURE_QUEUE, str(i), b) for i, b in enumerate(bodies)]
    assert request_directory_reindex(messages, mounts, lambda n, p: sent.append((n, p))) == []  # type: ignore[arg-type]
    assert sent == [("lake", "clips/old run"), ("lake", "clips/new run"), ("lake", "clips/run6")]
