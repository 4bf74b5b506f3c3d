"""``POST /push/minio``: MinIO bucket notifications through its webhook target.

MinIO has no SQS target; its webhook target posts one event per request with the same records
S3 sends (``{"EventName", "Key", "Records": [...]}``), which the S3 normalizer reads. Configure
the target with ``queue_dir`` so MinIO keeps and retries events while mountsync is down:

    mc admin config set ALIAS notify_webhook:mountsync endpoint=http://serve:8080/push/minio \\
        auth_token=TOKEN queue_dir=/data/.events queue_limit=100000
    mc event add ALIAS/BUCKET arn:minio:sqs::mountsync:webhook --event put,delete

Answers: 200 once the change is on Redis (or the event was dead-lettered: MinIO must not retry
it), 401 for a wrong token (``MOUNTSYNC_MINIO_WEBHOOK_TOKEN``), 503 when Redis or the dead-letter
store is down (MinIO retries from its queue_dir). Deliveries are counted under source ``s3-sqs``,
the S3 normalizer's source.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from werkzeug.wrappers import Request, Response

from mountsync.producers.serve import json_response
from mountsync.shared.events import RawMessage, Source

TOKEN_SETTING = "MOUNTSYNC_MINIO_WEBHOOK_TOKEN"


def _authorized(request: Request, token: str) -> bool:
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    given = given[len("Bearer ") :] if given.startswith("Bearer ") else given
    return hmac.compare_digest(given.encode(), token.encode())


def _pipeline(ctx: Any) -> Any:
    pipeline = getattr(ctx, "_minio_pipeline", None)
    if pipeline is None:
        from mountsync.producers.sources import enricher_for, normalizer_for

        # As the SQS producer: a delete of one version on a versioned bucket may leave the key alive.
        pipeline = ctx.runtime.pipeline(
            normalizer_for(Source.MINIO), enrich=enricher_for(Source.MINIO, ctx.runtime.pool)
        )
        ctx._minio_pipeline = pipeline
    return pipeline


def handle(request: Request, ctx: Any) -> Response:
    if not _authorized(request, ctx.settings.extra.get(TOKEN_SETTING, "")):
        return json_response({"error": "wrong or missing token"}, 401)
    body = request.get_data(cache=False)
    message_id = "minio-" + hashlib.sha256(body).hexdigest()[:32]  # the same event, the same id
    raw = RawMessage(Source.S3_SQS, message_id, body, {}, received_ns=time.time_ns())
    outcome = _pipeline(ctx).process([raw])
    if outcome.nack:
        return json_response({"error": "could not queue the change; retry later"}, 503)
    return json_response({"queued": outcome.changes, "dead_lettered": len(outcome.reject)})
