"""Blob events built from real Azurite operations, and the ways Event Grid delivers them.

Azurite emits no events, so ``BlobEventFactory`` performs each operation with the SDK and builds
the event Event Grid would send from what the service answered: ``eTag`` and ``contentLength``
from the blob's properties after the write, ``url`` from the SDK's blob client (percent-encoded,
path-style for Azurite), ``requestId``/``clientRequestId`` from the response. Only what Event
Grid itself adds is made here: the event id, the time (7 fractional digits) and a per-factory
increasing 48-hex-digit ``sequencer``.

Azurite has no hierarchical namespace, so ``rename`` copies then deletes the source (what an
HNS RenameFile amounts to) and emits the one ``BlobRenamed`` event a real HNS account sends.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from tests.standins.azure import ACCOUNT

TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/mountsync-tests"
    f"/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}"
)


def _now_7() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}0Z"


class BlobEventFactory:
    """Runs blob operations on a container and returns Event Grid schema events for them."""

    def __init__(self, container: Any, topic: str = TOPIC) -> None:
        self.container = container
        self.topic = topic
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def _sequencer(self) -> str:
        with self._lock:
            return f"{0:016X}{next(self._counter):016X}{0:016X}"

    def _event(self, event_type: str, key: str, data: dict[str, Any]) -> dict[str, Any]:
        data = {
            **data,
            "sequencer": self._sequencer(),
            "storageDiagnostics": {"batchId": str(uuid.uuid4())},
        }
        container = self.container.container_name
        return {
            "topic": self.topic,
            "subject": f"/blobServices/default/containers/{container}/blobs/{key}",
            "eventType": event_type,
            "id": data.get("requestId") or str(uuid.uuid4()),
            "data": data,
            "dataVersion": "",
            "metadataVersion": "1",
            "eventTime": _now_7(),
        }

    def _created(self, key: str, api: str, response: dict[str, Any]) -> dict[str, Any]:
        blob = self.container.get_blob_client(key)
        props = blob.get_blob_properties()
        return self._event("Microsoft.Storage.BlobCreated", key, {
            "api": api,
            "clientRequestId": response.get("client_request_id") or str(uuid.uuid4()),
            "requestId": response.get("request_id") or str(uuid.uuid4()),
            "eTag": props.etag.strip('"'),
            "contentType": props.content_settings.content_type or "application/octet-stream",
            "contentLength": props.size,
            "blobType": "BlockBlob",
            "url": blob.url,
        })  # fmt: skip

    def put(self, key: str, data: bytes) -> dict[str, Any]:
        response = self.container.get_blob_client(key).upload_blob(data, overwrite=True)
        return self._created(key, "PutBlob", response)

    def put_blocks(self, key: str, chunks: Iterable[bytes]) -> dict[str, Any]:
        from azure.storage.blob import BlobBlock

        blob = self.container.get_blob_client(key)
        ids = []
        for n, chunk in enumerate(chunks, 1):
            ids.append(f"blk-{n:06d}")
            blob.stage_block(ids[-1], chunk)
        response = blob.commit_block_list([BlobBlock(block_id=i) for i in ids])
        return self._created(key, "PutBlockList", response)

    def copy(self, source: str, dest: str) -> dict[str, Any]:
        src = self.container.get_blob_client(source)
        response = self.container.get_blob_client(dest).start_copy_from_url(src.url)
        return self._created(dest, "CopyBlob", response)

    def delete(self, key: str) -> dict[str, Any]:
        blob = self.container.get_blob_client(key)
        content_type = blob.get_blob_properties().content_settings.content_type
        response = blob.delete_blob() or {}
        return self._event("Microsoft.Storage.BlobDeleted", key, {
            "api": "DeleteBlob",
            "clientRequestId": response.get("client_request_id") or str(uuid.uuid4()),
            "requestId": response.get("request_id") or str(uuid.uuid4()),
            "contentType": content_type or "application/octet-stream",
            "blobType": "BlockBlob",
            "url": blob.url,
        })  # fmt: skip

    def set_tier(self, key: str, tier: str) -> dict[str, Any]:
        blob = self.container.get_blob_client(key)
        blob.set_standard_blob_tier(tier)
        props = blob.get_blob_properties()
        return self._event("Microsoft.Storage.BlobTierChanged", key, {
            "api": "SetBlobTier", "clientRequestId": str(uuid.uuid4()),
            "requestId": str(uuid.uuid4()), "contentType": props.content_settings.content_type,
            "contentLength": props.size, "blobType": "BlockBlob", "url": blob.url,
            "accessTier": tier,
        })  # fmt: skip

    def rename(self, source: str, dest: str) -> dict[str, Any]:
        src = self.container.get_blob_client(source)
        dst = self.container.get_blob_client(dest)
        response = dst.start_copy_from_url(src.url)
        src.delete_blob()
        return self._event("Microsoft.Storage.BlobRenamed", dest, {
            "api": "RenameFile",
            "clientRequestId": response.get("client_request_id") or str(uuid.uuid4()),
            "requestId": response.get("request_id") or str(uuid.uuid4()),
            "sourceUrl": src.url, "destinationUrl": dst.url, "url": dst.url,
        })  # fmt: skip


def as_cloudevent(event: dict[str, Any]) -> dict[str, Any]:
    """The same event in the CloudEvents 1.0 schema (what namespace topics carry)."""
    return {
        "specversion": "1.0", "type": event["eventType"], "source": event["topic"],
        "id": event["id"], "time": event["eventTime"], "subject": event["subject"],
        "datacontenttype": "application/json", "data": event["data"],
    }  # fmt: skip


def publish(endpoint: str, key: str, topic: str, events: list[dict[str, Any]]) -> None:
    """POST CloudEvents to a namespace topic's ``:publish`` (as the publisher client does)."""
    body = json.dumps([as_cloudevent(e) if "eventType" in e else e for e in events]).encode()
    request = urllib.request.Request(
        f"{endpoint}/topics/{topic}:publish?api-version=2024-06-01", data=body, method="POST",
        headers={"Content-Type": "application/cloudevents-batch+json; charset=utf-8",
                 "Authorization": f"SharedAccessKey {key}"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def queue_delivery(queue_client: Any, events: Iterable[dict[str, Any]]) -> None:
    """Event Grid -> Storage Queue: one event per message, base64 of the JSON object."""
    for event in events:
        queue_client.send_message(base64.b64encode(json.dumps(event).encode()).decode())


class WebhookDelivery:
    """Pushes events to a webhook the way Event Grid does, after the validation handshake."""

    def __init__(self, url: str, *, cloudevents: bool = False, subscription: str = "mountsync"):
        self.url = url
        self.cloudevents = cloudevents
        self.subscription = subscription

    def _send(self, method: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes, Any]:
        request = urllib.request.Request(self.url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers

    def handshake(self) -> bool:
        """True when the endpoint proved it wants the events."""
        if self.cloudevents:
            status, _, headers = self._send("OPTIONS", None, {"WebHook-Request-Origin": "eventgrid.azure.net"})
            allowed = headers.get("WebHook-Allowed-Origin") if headers else None
            return status == 200 and allowed in ("eventgrid.azure.net", "*")
        code = str(uuid.uuid4())
        validation = [{
            "id": str(uuid.uuid4()), "topic": TOPIC, "subject": "", "eventTime": _now_7(),
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "dataVersion": "1",
            "metadataVersion": "1",
            "data": {"validationCode": code, "validationUrl": "https://example.invalid/validate"},
        }]  # fmt: skip
        status, body, _ = self.post_raw(json.dumps(validation).encode(), "SubscriptionValidation")
        return status == 200 and json.loads(body or b"{}").get("validationResponse") == code

    def post_raw(self, body: bytes, event_type: str = "Notification", content_type: str = "") -> tuple[int, bytes, Any]:
        headers = {
            "Content-Type": content_type or ("application/cloudevents-batch+json; charset=utf-8"
                                             if self.cloudevents else "application/json"),
            "aeg-event-type": event_type, "aeg-subscription-name": self.subscription.upper(),
            "aeg-delivery-count": "0", "aeg-data-version": "", "aeg-metadata-version": "1",
        }  # fmt: skip
        return self._send("POST", body, headers)

    def deliver(self, events: list[dict[str, Any]]) -> int:
        """One POST of a batch (all-or-nothing, like Event Grid); returns the HTTP status."""
        items = [as_cloudevent(e) for e in events] if self.cloudevents else events
        status, _, _ = self.post_raw(json.dumps(items).encode())
        return status
