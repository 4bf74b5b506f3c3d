"""Browser sessions of the status page: an API token signs in once, the browser keeps only a
random session id in an HttpOnly, SameSite=Strict cookie (Secure behind TLS).

The session lives in Redis (so every ``serve`` replica sees it and logout ends it everywhere)
under the SHA-256 of its id: a Redis dump yields no usable cookie. It holds the token's name,
scope and creation time, never the token; a revoked or re-created token ends the session on its
next request. Requests that change something carry the session's CSRF token (a form field or
the ``X-CSRF-Token`` header), compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from redis.exceptions import RedisError
from starlette.requests import HTTPConnection, Request

from mountsync.shared.api.deps import runtime
from mountsync.shared.catalog.tokens import TokenInfo, list_tokens
from mountsync.shared.errors import ServiceUnavailable

SESSION_COOKIE = "mountsync_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SESSION_TTL_S = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Session:
    token_name: str
    scope: str
    token_created_at: str  # ISO time: tells a re-created token of the same name from this one
    csrf: str

    @property
    def can_write(self) -> bool:
        return self.scope == "write"

    def csrf_matches(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf.encode(), str(presented).encode())


class SessionStore:
    """Sessions in Redis with a fixed lifetime (a new sign-in after ``SESSION_TTL_S``)."""

    def __init__(self, redis: Any, prefix: str = "", ttl_s: int = SESSION_TTL_S) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_s = ttl_s

    def _key(self, session_id: str) -> str:
        digest = hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()
        return f"{self._prefix}mountsync:session:{digest}"

    def create(self, token_name: str, scope: str, token_created_at: str) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        session = Session(token_name, scope, token_created_at, secrets.token_urlsafe(32))
        try:
            self._redis.set(self._key(session_id), json.dumps(asdict(session)), ex=self._ttl_s)
        except RedisError as exc:
            raise ServiceUnavailable(f"cannot keep the session: Redis: {exc}") from exc
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        try:
            raw = self._redis.get(self._key(session_id))
        except RedisError as exc:
            raise ServiceUnavailable(f"cannot check the session: Redis: {exc}") from exc
        if raw is None:
            return None
        try:
            return Session(**json.loads(raw))
        except (TypeError, ValueError):
            return None

    def delete(self, session_id: str | None) -> None:
        if session_id:
            try:
                self._redis.delete(self._key(session_id))
            except RedisError as exc:
                raise ServiceUnavailable(f"cannot end the session: Redis: {exc}") from exc


def behind_tls(conn: HTTPConnection) -> bool:
    """True when the browser reached us over https (directly or through a TLS-ending proxy)."""
    forwarded = conn.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return conn.url.scheme == "https" or forwarded == "https"


def cookie_options(conn: HTTPConnection) -> dict[str, Any]:
    """Attributes of the session cookie (``Response.set_cookie`` keywords)."""
    return {
        "key": SESSION_COOKIE,
        "httponly": True,
        "samesite": "strict",
        "secure": behind_tls(conn),
        "path": "/",
        "max_age": SESSION_TTL_S,
    }


def session_store(request: Request) -> SessionStore:
    rt = runtime(request)
    return SessionStore(rt.redis, rt.settings.redis_prefix)


def token_of_session(conn: psycopg.Connection, session: Session) -> TokenInfo | None:
    """The token the session signed in with, while it exists (not revoked, not re-created)."""
    for token in list_tokens(conn):
        if token.name == session.token_name and token.created_at.isoformat() == session.token_created_at:
            return token
    return None


def signed_in(request: Request) -> tuple[str, Session, TokenInfo] | None:
    """The browser's session (id, session, token) when its cookie names a live one, else None.

    Blocking (Redis, PostgreSQL): call it from a worker thread in async code."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    store = session_store(request)
    try:
        session = store.get(session_id)
        if session is None:
            return None
        with runtime(request).pool.connection(timeout=10) as conn:
            token = token_of_session(conn, session)
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(f"cannot check the session: PostgreSQL: {exc}") from exc
    if token is None:
        store.delete(session_id)
        return None
    return session_id, session, token
