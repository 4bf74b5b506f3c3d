"""``mountsync gcs notification``: the plan, its printout, and ``--apply`` through the real SDK.

Neither fake-gcs-server nor gcp-storage-emulator implements the notificationConfigs API, so
``--apply`` runs against a small local stub of those three JSON API calls (list, insert,
delete); what the SDK sends to it is what real GCS would receive.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mountsync.producers.gcs_setup import EVENT_TYPES, apply_notification, plan_notification
from mountsync.shared.errors import BadInput
from tests.standins.gcs import GcsEndpoints

PATH_RE = re.compile(r"^/storage/v1/b/([^/]+)/notificationConfigs(?:/([^/?]+))?")


class NotificationStub:
    """The notificationConfigs part of the GCS JSON API, in memory."""

    def __init__(self) -> None:
        self.configs: dict[str, dict[str, dict[str, Any]]] = {}
        self.posted: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: Any = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                bucket, _ = PATH_RE.match(self.path).groups()  # type: ignore[union-attr]
                items = list(stub.configs.get(bucket, {}).values())
                self._reply(200, {"kind": "storage#notifications", "items": items})

            def do_POST(self) -> None:
                bucket, _ = PATH_RE.match(self.path).groups()  # type: ignore[union-attr]
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.posted.append(body)
                configs = stub.configs.setdefault(bucket, {})
                config_id = str(len(stub.posted))
                link = f"http://stub/b/{bucket}/notificationConfigs/{config_id}"
                resource = {**body, "id": config_id, "kind": "storage#notification",
                            "etag": config_id, "selfLink": link}  # fmt: skip
                configs[config_id] = resource
                self._reply(200, resource)

            def do_DELETE(self) -> None:
                bucket, config_id = PATH_RE.match(self.path).groups()  # type: ignore[union-attr]
                stub.configs.get(bucket, {}).pop(config_id, None)
                self._reply(204)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def client(self) -> Any:
        return GcsEndpoints(self.url).client()


@pytest.fixture
def stub() -> Iterator[NotificationStub]:
    server = NotificationStub()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_plan_defaults_to_every_event_type_and_json_payload() -> None:
    plan = plan_notification("media", "projects/acme-media/topics/gcs-events")
    assert plan.resource() == {
        "topic": "//pubsub.googleapis.com/projects/acme-media/topics/gcs-events",
        "payload_format": "JSON_API_V1",
        "event_types": list(EVENT_TYPES),
    }
    assert "--payload-format=json" in plan.gcloud_command()


def test_plan_takes_short_event_names_a_prefix_and_a_bare_topic() -> None:
    plan = plan_notification("media", "gcs-events", project="acme-media", prefix="raw/",
                             event_types=["finalize,delete", "OBJECT_ARCHIVE"])  # fmt: skip
    assert plan.topic_path == "projects/acme-media/topics/gcs-events"
    assert plan.resource()["event_types"] == ["OBJECT_FINALIZE", "OBJECT_DELETE", "OBJECT_ARCHIVE"]
    assert plan.resource()["object_name_prefix"] == "raw/"


@pytest.mark.parametrize(
    ("bucket", "topic", "kwargs", "reason"),
    [
        ("gs://media", "projects/acme-media/topics/gcs-events", {}, "bucket name"),
        ("media", "gcs-events", {}, "--project"),
        ("media", "projects/acme-media/subscriptions/s", {}, "not a topic"),
        ("media", "projects/acme-media/topics/t", {}, "not valid"),
        ("media", "projects/acme/topics/gcs-events", {}, "project id"),
        (
            "media",
            "projects/acme-media/topics/gcs-events",
            {"event_types": ["explode"]},
            "unknown event type",
        ),
        ("media", "projects/acme-media/topics/gcs-events", {"custom_attributes": ["novalue"]}, "KEY=VALUE"),
    ],
)
def test_bad_inputs_are_refused_with_the_reason(bucket: str, topic: str, kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(BadInput, match=reason):
        plan_notification(bucket, topic, **kwargs)


def test_cli_prints_the_config_as_json(cli: Any) -> None:
    proc = cli("gcs", "notification", "media", "--topic", "projects/acme-media/topics/gcs-events",
               "--event-types", "finalize", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["config"]["payload_format"] == "JSON_API_V1"
    assert doc["config"]["event_types"] == ["OBJECT_FINALIZE"]
    assert doc["applied"] is None
    assert any("OBJECT_DELETE" in note for note in doc["notes"])


def test_cli_refuses_bad_input_with_exit_2(cli: Any) -> None:
    proc = cli("gcs", "notification", "media", "--topic", "gcs-events")
    assert proc.returncode == 2
    assert "--project" in proc.stderr and proc.stdout == ""


def test_apply_creates_once_and_replaces_payload_none_configs(stub: NotificationStub) -> None:
    client = stub.client()
    old = client.bucket("media").notification(topic_name="gcs-events", topic_project="acme-media")  # NONE default
    old.create()
    plan = plan_notification("media", "projects/acme-media/topics/gcs-events", prefix="raw/")
    first = apply_notification(plan, client)
    assert first["created"] and first["other_configs_on_topic"] == [str(old.notification_id)]
    sent = stub.posted[-1]
    assert sent["payload_format"] == "JSON_API_V1"
    assert sent["event_types"] == list(EVENT_TYPES) and sent["object_name_prefix"] == "raw/"
    again = apply_notification(plan, client)
    assert not again["created"] and again["notification_id"] == first["notification_id"]
    replaced = apply_notification(plan_notification("media", "projects/acme-media/topics/gcs-events"), client,
                                  replace=True)  # fmt: skip
    assert replaced["created"]
    assert sorted(replaced["removed"]) == sorted([str(old.notification_id), first["notification_id"]])
    assert [c["payload_format"] for c in stub.configs["media"].values()] == ["JSON_API_V1"]


def test_cli_apply_through_the_sdk(cli: Any, stub: NotificationStub) -> None:
    args = ("gcs", "notification", "media", "--topic", "projects/acme-media/topics/gcs-events", "--apply",
            "--endpoint-url", stub.url, "--json")  # fmt: skip
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["applied"]["created"] is True
    assert json.loads(cli(*args).stdout)["applied"]["created"] is False
    assert len(stub.configs["media"]) == 1
