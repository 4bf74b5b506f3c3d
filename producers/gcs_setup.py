"""``mountsync gcs notification BUCKET --topic T``: a bucket notification config done right.

GCS notifications created with the Python client (and some tutorials) default to payload format
NONE: messages then carry no size, checksum or metageneration, and every event costs a stat.
This command prints (or, with ``--apply``, creates) a config with ``JSON_API_V1``, the chosen
event types (all four by default: DELETE and ARCHIVE are needed to see removals) and an
optional object-name prefix, plus the permissions and subscription settings that go with it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import typer

from mountsync.shared.errors import BadInput

EVENT_TYPES = ("OBJECT_FINALIZE", "OBJECT_METADATA_UPDATE", "OBJECT_DELETE", "OBJECT_ARCHIVE")
ALIASES = {
    "finalize": "OBJECT_FINALIZE", "create": "OBJECT_FINALIZE",
    "metadata": "OBJECT_METADATA_UPDATE", "metadata-update": "OBJECT_METADATA_UPDATE",
    "metadataupdate": "OBJECT_METADATA_UPDATE", "delete": "OBJECT_DELETE", "archive": "OBJECT_ARCHIVE",
}  # fmt: skip
PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")  # Google Cloud project ids
TOPIC_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$")  # Pub/Sub's rule for topic names
TOPIC_RE = re.compile(r"^(?://pubsub\.googleapis\.com/)?projects/([^/]+)/topics/([^/]+)$")
PAYLOAD_FORMAT = "JSON_API_V1"


@dataclass(frozen=True)
class NotificationPlan:
    """A notification config for one bucket (pure data; printing and applying use it)."""

    bucket: str
    project: str
    topic: str
    event_types: tuple[str, ...] = EVENT_TYPES
    prefix: str = ""
    custom_attributes: dict[str, str] = field(default_factory=dict)

    @property
    def topic_path(self) -> str:
        return f"projects/{self.project}/topics/{self.topic}"

    def resource(self) -> dict[str, Any]:
        """The JSON API notification resource (what ``POST .../notificationConfigs`` takes)."""
        body: dict[str, Any] = {
            "topic": f"//pubsub.googleapis.com/{self.topic_path}",
            "payload_format": PAYLOAD_FORMAT,
            "event_types": list(self.event_types),
        }
        if self.prefix:
            body["object_name_prefix"] = self.prefix
        if self.custom_attributes:
            body["custom_attributes"] = dict(self.custom_attributes)
        return body

    def gcloud_command(self) -> str:
        args = ["gcloud", "storage", "buckets", "notifications", "create", f"gs://{self.bucket}",
                f"--topic={self.topic_path}", "--payload-format=json",
                f"--event-types={','.join(self.event_types)}"]  # fmt: skip
        if self.prefix:
            args.append(f"--object-prefix={self.prefix}")
        if self.custom_attributes:
            pairs = ",".join(f"{k}={v}" for k, v in self.custom_attributes.items())
            args.append(f"--custom-attributes={pairs}")
        return shlex.join(args)

    def matches(self, existing: dict[str, Any]) -> bool:
        """True when ``existing`` (a JSON API resource) delivers exactly what this plan does."""
        return (
            _topic_path(existing.get("topic", "")) == self.topic_path
            and existing.get("payload_format") == PAYLOAD_FORMAT
            and sorted(existing.get("event_types") or EVENT_TYPES) == sorted(self.event_types)
            and (existing.get("object_name_prefix") or "") == self.prefix
            and dict(existing.get("custom_attributes") or {}) == self.custom_attributes
        )


def _topic_path(topic: str) -> str:
    return topic.removeprefix("//pubsub.googleapis.com/")


def parse_event_types(values: Sequence[str]) -> tuple[str, ...]:
    chosen: list[str] = []
    for value in (v.strip() for item in values for v in item.split(",")):
        if not value:
            continue
        name = value.upper() if value.upper() in EVENT_TYPES else ALIASES.get(value.lower())
        if name is None:
            raise BadInput(f"unknown event type {value!r}; use {', '.join(EVENT_TYPES)}")
        if name not in chosen:
            chosen.append(name)
    return tuple(chosen) or EVENT_TYPES


def plan_notification(
    bucket: str, topic: str, *, project: str = "", prefix: str = "",
    event_types: Sequence[str] = (), custom_attributes: Sequence[str] = (),
) -> NotificationPlan:  # fmt: skip
    """Validate the inputs into a plan; ``BadInput`` names what is wrong."""
    if not bucket or "/" in bucket or bucket.startswith("gs:"):
        raise BadInput(f"{bucket!r} is not a bucket name (write the name only, without gs://)")
    found = TOPIC_RE.match(topic)
    if found:
        topic_project, topic_name = found.groups()
    elif "/" not in topic and topic:
        if not project:
            raise BadInput(f"topic {topic!r} needs --project, or write projects/P/topics/{topic}")
        topic_project, topic_name = project, topic
    else:
        raise BadInput(f"{topic!r} is not a topic; write projects/PROJECT/topics/NAME")
    if not PROJECT_RE.match(topic_project):
        raise BadInput(
            f"project id {topic_project!r} is not valid: 6-30 lowercase letters, digits or '-', starting with a letter"
        )
    if not TOPIC_NAME_RE.match(topic_name):
        raise BadInput(
            f"topic name {topic_name!r} is not valid: 3-255 letters, digits, '-', '_', '.', '~', "
            "'+' or '%', starting with a letter"
        )
    attributes: dict[str, str] = {}
    for pair in custom_attributes:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadInput(f"custom attribute {pair!r} must be KEY=VALUE")
        attributes[key] = value
    kinds = parse_event_types(event_types)
    return NotificationPlan(bucket, topic_project, topic_name, kinds, prefix, attributes)


def describe(plan: NotificationPlan) -> list[str]:
    """What an operator should know besides the config (printed with it)."""
    notes = [
        "GCS publishes as its service agent: grant it roles/pubsub.publisher on the topic "
        f"(find it with `gcloud storage service-agent --project={plan.project}`).",
        "Pull: `mountsync produce gcs-pubsub --subscription projects/P/subscriptions/S` "
        "(a subscription with exactly-once delivery makes acks confirmed).",
        "Push: point the subscription at https://HOST/push/gcs with an OIDC service account, set "
        "MOUNTSYNC_GCS_PUSH_AUDIENCE and MOUNTSYNC_GCS_PUSH_SERVICE_ACCOUNTS, keep payload "
        "unwrapping off, and give it a dead-letter topic.",
    ]
    unseen = {
        "OBJECT_FINALIZE": "new and overwritten objects",
        "OBJECT_DELETE": "deletes in unversioned buckets",
        "OBJECT_ARCHIVE": "deletes in versioned buckets",
    }
    for kind, what in unseen.items():
        if kind not in plan.event_types:
            notes.insert(0, f"Without {kind}, {what} are only found by reindex.")
    return notes


def apply_notification(plan: NotificationPlan, client: Any, *, replace: bool = False) -> dict[str, Any]:
    """Create the config unless an identical one exists; ``replace`` drops others on the topic."""
    bucket = client.bucket(plan.bucket)
    existing = list(bucket.list_notifications())
    for notification in existing:
        if plan.matches(notification._properties):
            return {"created": False, "notification_id": notification.notification_id, "removed": []}
    removed: list[str] = []
    if replace:
        for notification in existing:
            if _topic_path(notification._properties.get("topic", "")) == plan.topic_path:
                notification.delete()
                removed.append(str(notification.notification_id))
    notification = bucket.notification(
        topic_name=plan.topic, topic_project=plan.project,
        custom_attributes=plan.custom_attributes or None, event_types=list(plan.event_types),
        blob_name_prefix=plan.prefix or None, payload_format=PAYLOAD_FORMAT,
    )  # fmt: skip
    notification.create()
    others = [str(n.notification_id) for n in existing
              if _topic_path(n._properties.get("topic", "")) == plan.topic_path and
              str(n.notification_id) not in removed]  # fmt: skip
    return {"created": True, "notification_id": notification.notification_id, "removed": removed,
            "other_configs_on_topic": others}  # fmt: skip


def register_root(app: typer.Typer) -> None:
    gcs_app = typer.Typer(help="Google Cloud Storage helpers.", no_args_is_help=True)
    app.add_typer(gcs_app, name="gcs")

    @gcs_app.command("notification")
    def notification(
        bucket: str = typer.Argument(..., help="Bucket name (without gs://)."),
        topic: str = typer.Option(..., "--topic", help="projects/P/topics/T, or T with --project."),
        project: str = typer.Option("", "--project", help="Project of the topic."),
        prefix: str = typer.Option("", "--prefix", help="Only objects whose names start with this."),
        event_types: list[str] = typer.Option(  # noqa: B008 - typer's declaration style
            [],
            "--event-types",
            help="OBJECT_FINALIZE, OBJECT_METADATA_UPDATE, OBJECT_DELETE, "
            "OBJECT_ARCHIVE (or finalize, metadata, delete, archive); default: all.",
        ),
        attribute: list[str] = typer.Option(  # noqa: B008
            [], "--attribute", help="Custom attribute KEY=VALUE added to every message."
        ),
        apply: bool = typer.Option(False, "--apply", help="Create it on the bucket (else print)."),
        replace: bool = typer.Option(False, "--replace", help="With --apply: delete other configs on the same topic."),
        credentials: str = typer.Option("", "--credentials", help="Named credential set."),
        endpoint_url: str = typer.Option("", "--endpoint-url", help="Another JSON API endpoint."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    ) -> None:
        """Print (or --apply) a bucket notification config with payload JSON_API_V1."""
        from mountsync.shared.http_urls import check_http_url
        from mountsync.shared.output import console, emit_json, err_console

        if endpoint_url:
            check_http_url(endpoint_url, "--endpoint-url")
        plan = plan_notification(bucket, topic, project=project, prefix=prefix,
                                 event_types=event_types, custom_attributes=attribute)  # fmt: skip
        result: dict[str, Any] = {"bucket": plan.bucket, "config": plan.resource(),
                                  "gcloud": plan.gcloud_command(), "notes": describe(plan),
                                  "applied": None}  # fmt: skip
        if apply:
            result["applied"] = apply_notification(plan, _client(plan.bucket, credentials, endpoint_url),
                                                   replace=replace)  # fmt: skip
        if as_json:
            emit_json(result)
            return
        _print(result, console, err_console)


def _client(bucket: str, credentials: str, endpoint_url: str) -> Any:
    from mountsync.shared.storage.gcs import GCSStorage
    from mountsync.shared.storage.url import parse_storage_url

    options = {k: v for k, v in (("credentials", credentials), ("endpoint_url", endpoint_url)) if v}
    return GCSStorage(parse_storage_url(f"gs://{bucket}/"), options).client


def _print(result: dict[str, Any], console: Any, err_console: Any) -> None:
    import json

    console.print(f"Notification config for gs://{result['bucket']}:")
    console.print(json.dumps(result["config"], indent=2), markup=False)
    applied = result["applied"]
    if applied is None:
        console.print("\nCreate it with `--apply`, or with:", markup=False)
        console.print(f"  {result['gcloud']}", markup=False, soft_wrap=True)
    elif applied["created"]:
        console.print(f"\nCreated notification config {applied['notification_id']}.")
        if applied.get("removed"):
            console.print(f"Removed config(s) {', '.join(applied['removed'])} on the same topic.")
        if applied.get("other_configs_on_topic"):
            err_console.print(
                f"warning: config(s) {', '.join(applied['other_configs_on_topic'])} also publish to "
                "this topic (duplicates, maybe payload NONE); remove them or rerun with --replace",
                markup=False,
            )
    else:
        console.print(f"\nAn identical config exists already ({applied['notification_id']}); nothing changed.")
    for note in result["notes"]:
        console.print(f"- {note}", markup=False)
