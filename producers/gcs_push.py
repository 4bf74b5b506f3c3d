"""``POST /push/gcs``: GCS notifications delivered by a Pub/Sub push subscription.

Answers (Pub/Sub redelivers on anything but 102/200/201/202/204, with backoff):

- 204 only after the notification's changes are on Redis (or it needed none);
- 401 missing or invalid token, 403 a valid token from a sender not allowed: nothing recorded;
- 400 a malformed push (not an envelope, bad base64, not a GCS notification): recorded as a
  dead letter with the reason first. Pub/Sub retries 4xx too, so give the push subscription a
  dead-letter topic (``max_delivery_attempts``) to stop the retries;
- 503 when the changes cannot be queued, the dead-letter store is down, or Google's signing
  keys cannot be fetched: Pub/Sub retries later.

Authentication (settings from the environment, all optional):

- ``MOUNTSYNC_GCS_PUSH_AUDIENCE``: the audience configured on the push subscription (default:
  the URL the request was sent to, which behind a proxy may differ: set it explicitly);
- ``MOUNTSYNC_GCS_PUSH_SERVICE_ACCOUNTS``: comma-separated service-account emails allowed to push;
- ``MOUNTSYNC_GCS_PUSH_CERTS_URL``: where the signing certificates are (default Google's).

Verification is on when an audience or an allowlist is configured: the bearer JWT must be signed
by Google's keys, unexpired, for the audience, issued by ``accounts.google.com``, and its
``email`` verified and on the allowlist. Without either setting the endpoint accepts anyone
(it logs a warning once): expose it only behind something that authenticates.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from werkzeug.wrappers import Request, Response

from mountsync.shared import metrics
from mountsync.shared.errors import InvalidEvent, RetryableError
from mountsync.shared.events import RawMessage, Source, load_json

log = structlog.get_logger("mountsync.producer.gcs-push")

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
CERTS_TTL_S = 300.0
CLOCK_SKEW_S = 10


@dataclass(frozen=True)
class PushAuth:
    """Who may push; ``enabled`` is false when nothing is configured."""

    audience: str = ""
    service_accounts: frozenset[str] = frozenset()
    certs_url: str = GOOGLE_CERTS_URL

    @property
    def enabled(self) -> bool:
        return bool(self.audience or self.service_accounts)

    @classmethod
    def from_extra(cls, extra: Mapping[str, str]) -> PushAuth:
        accounts = extra.get("MOUNTSYNC_GCS_PUSH_SERVICE_ACCOUNTS", "")
        return cls(
            audience=extra.get("MOUNTSYNC_GCS_PUSH_AUDIENCE", "").strip(),
            service_accounts=frozenset(a.strip() for a in accounts.split(",") if a.strip()),
            certs_url=extra.get("MOUNTSYNC_GCS_PUSH_CERTS_URL", "").strip() or GOOGLE_CERTS_URL,
        )


class AuthFailure(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class CachingRequest:
    """A google-auth transport request that keeps GET answers (the signing certs) for a while.

    ``verify_token`` fetches the certificates on every call; Google rotates them daily, so a
    few minutes of caching saves a round trip per push without missing a rotation for long.
    """

    def __init__(self, ttl_s: float = CERTS_TTL_S) -> None:
        import google.auth.transport.requests

        self._inner = google.auth.transport.requests.Request()
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def __call__(self, url: str, method: str = "GET", **kwargs: Any) -> Any:
        if method != "GET":
            return self._inner(url, method=method, **kwargs)
        with self._lock:
            hit = self._cache.get(url)
        if hit and time.monotonic() - hit[0] < self._ttl_s:
            return hit[1]
        response = self._inner(url, method=method, **kwargs)
        if response.status == 200:
            with self._lock:
                self._cache[url] = (time.monotonic(), response)
        return response


class PushVerifier:
    """Checks the Pub/Sub OIDC token of one request; raises ``AuthFailure`` or ``RetryableError``."""

    def __init__(self, auth: PushAuth) -> None:
        self.auth = auth
        self._request = CachingRequest()

    def verify(self, request: Request) -> dict[str, Any]:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthFailure(401, "missing bearer token")
        claims = self._decode(token.strip(), self.auth.audience or request.url)
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise AuthFailure(401, f"token issuer {claims.get('iss')!r} is not Google")
        if self.auth.service_accounts:
            email = claims.get("email")
            if email not in self.auth.service_accounts:
                raise AuthFailure(403, f"sender {email!r} is not an allowed service account")
            if claims.get("email_verified") is not True:
                raise AuthFailure(403, f"sender {email!r} has no verified email")
        return claims

    def _decode(self, token: str, audience: str) -> dict[str, Any]:
        from google.auth import exceptions as auth_exceptions
        from google.oauth2 import id_token

        try:
            return dict(
                id_token.verify_token(
                    token, self._request,  # type: ignore[arg-type]  # duck-typed transport
                    audience=audience, certs_url=self.auth.certs_url,
                    clock_skew_in_seconds=CLOCK_SKEW_S,
                )
            )  # fmt: skip
        except auth_exceptions.TransportError as exc:
            raise RetryableError(f"cannot fetch the token signing keys: {exc}") from exc
        except (ValueError, auth_exceptions.GoogleAuthError) as exc:
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            if "Could not fetch certificates" in reason:
                raise RetryableError(f"cannot fetch the token signing keys: {reason}") from exc
            raise AuthFailure(401, f"invalid token: {reason}") from exc


def parse_envelope(body: bytes, received_ns: int) -> RawMessage:
    """The push envelope (formats.md §1.5) as the same RawMessage streaming pull produces."""
    doc = load_json(body, "push body")
    message = doc.get("message") if isinstance(doc, dict) else None
    if not isinstance(message, dict):
        raise InvalidEvent(
            "push body has no 'message' object (payload unwrapping must stay off: it drops the GCS attributes)"
        )
    message_id = message.get("messageId") or message.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        raise InvalidEvent("push message has no messageId")
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise InvalidEvent("push message attributes are not a string map")
    try:
        data = base64.b64decode(message.get("data") or "", validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidEvent(f"push message data is not base64: {exc}") from exc
    attempt = doc.get("deliveryAttempt")
    return RawMessage(
        source=Source.GCS_PUSH, message_id=message_id, body=data, attributes=attributes,
        received_ns=received_ns, delivery_count=attempt if isinstance(attempt, int) and attempt > 0 else 1,
    )  # fmt: skip


class _Endpoint:
    """Per-server state: verifier and pipeline, built on first use."""

    def __init__(self, ctx: Any) -> None:
        from mountsync.producers.normalize.gcs import normalize_gcs
        from mountsync.producers.sources import enricher_for

        self.auth = PushAuth.from_extra(ctx.settings.extra)
        self.verifier = PushVerifier(self.auth) if self.auth.enabled else None
        runtime = ctx.runtime
        self.deadletters = runtime.deadletters
        self.pipeline = runtime.pipeline(normalize_gcs, enrich=enricher_for(Source.GCS_PUSH, runtime.pool))
        if self.verifier is None:
            log.warning("POST /push/gcs accepts unauthenticated pushes; set "
                        "MOUNTSYNC_GCS_PUSH_AUDIENCE and MOUNTSYNC_GCS_PUSH_SERVICE_ACCOUNTS")  # fmt: skip


_endpoints: dict[int, tuple[Any, _Endpoint]] = {}
_endpoints_lock = threading.Lock()


def _endpoint(ctx: Any) -> _Endpoint:
    with _endpoints_lock:
        found = _endpoints.get(id(ctx))
        if found is None or found[0] is not ctx:
            found = (ctx, _Endpoint(ctx))
            _endpoints[id(ctx)] = found
        return found[1]


def _answer(status: int, reason: str = "") -> Response:
    if status == 204:
        return Response(status=204)
    return Response(json.dumps({"error": reason}), status=status, mimetype="application/json")


def handle(request: Request, ctx: Any) -> Response:
    """Verify, parse, normalize and enqueue one push; the status tells Pub/Sub what happened."""
    endpoint = _endpoint(ctx)
    if endpoint.verifier is not None:
        try:
            endpoint.verifier.verify(request)
        except AuthFailure as exc:
            log.warning("push refused", status=exc.status, reason=str(exc))
            return _answer(exc.status, str(exc))
        except RetryableError as exc:
            log.error("cannot verify push token now", error=str(exc))
            return _answer(503, str(exc))
    body = request.get_data(cache=False)
    try:
        raw = parse_envelope(body, time.time_ns())
    except InvalidEvent as exc:
        return _dead_letter_envelope(endpoint, body, str(exc))
    outcome = endpoint.pipeline.process([raw])
    if outcome.ack:
        return _answer(204)
    if outcome.reject:
        return _answer(400, outcome.reasons[0] if outcome.reasons else "invalid notification")
    return _answer(503, "could not queue the change; retry later")


def _dead_letter_envelope(endpoint: _Endpoint, body: bytes, reason: str) -> Response:
    source = Source.GCS_PUSH.value
    message_id = _message_id_of(body)
    try:
        endpoint.deadletters.record(source, message_id, f"push envelope: {reason}", body, {})
    except Exception as exc:  # the store is down: let Pub/Sub retry rather than lose it
        log.error("dead-letter store unavailable", error=str(exc))
        return _answer(503, "dead-letter store unavailable; retry later")
    metrics.DEAD_LETTERED.labels(source, "push envelope").inc()
    log.warning("malformed push dead-lettered", reason=reason, message_id=message_id)
    return _answer(400, reason)


def _message_id_of(body: bytes) -> str | None:
    try:
        message = json.loads(body).get("message") or {}
        value = message.get("messageId") or message.get("message_id")
    except Exception:
        return None
    return value if isinstance(value, str) else None
