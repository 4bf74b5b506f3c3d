"""API bearer tokens: created once, kept only as a salted SHA-256, checked in constant time.

A token reads ``mst_<id>_<secret>``: the id (public, 8 random bytes) finds the row, the secret
(32 random bytes) is what is hashed. 256 bits of randomness make a slow password hash pointless;
a per-token salt keeps equal secrets from hashing alike. The plain token is returned once by
``create_token`` and never stored, logged or shown again.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg

from mountsync.shared.errors import BadInput, NotFound

SCOPES = ("read", "write")
PREFIX = "mst"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TOKEN = re.compile(rf"^{PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{43}})$")


@dataclass(frozen=True, slots=True)
class TokenInfo:
    name: str
    scope: str
    created_at: datetime
    last_used_at: datetime | None

    def describe(self) -> dict[str, str | None]:
        return {
            "name": self.name,
            "scope": self.scope,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
        }


def _hash(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode("ascii")).digest()


def create_token(conn: psycopg.Connection, name: str, scope: str) -> str:
    """Store a new token's hash under ``name``; returns the plain token (shown once)."""
    if not _NAME.match(name):
        raise BadInput(f"token name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    if scope not in SCOPES:
        raise BadInput(f"--scope {scope!r}: use read or write")
    token_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_bytes(16)
    try:
        conn.execute(
            "INSERT INTO api_tokens (name, scope, token_id, salt, token_hash) VALUES (%s, %s, %s, %s, %s)",
            (name, scope, token_id, salt, _hash(salt, secret)),
        )
    except psycopg.errors.UniqueViolation:
        raise BadInput(f"a token named {name!r} exists; revoke it first or pick another name") from None
    return f"{PREFIX}_{token_id}_{secret}"


def list_tokens(conn: psycopg.Connection) -> list[TokenInfo]:
    rows = conn.execute("SELECT name, scope, created_at, last_used_at FROM api_tokens ORDER BY name").fetchall()
    return [TokenInfo(*row) for row in rows]


def revoke_token(conn: psycopg.Connection, name: str) -> None:
    if conn.execute("DELETE FROM api_tokens WHERE name = %s", (name,)).rowcount == 0:
        raise NotFound(f"no token named {name!r}; `mountsync token list` shows them")


def verify_token(conn: psycopg.Connection, token: str) -> TokenInfo | None:
    """The token's record when ``token`` is valid, else ``None`` (no hint of why)."""
    match = _TOKEN.match(token)
    if not match:
        return None
    token_id, secret = match.groups()
    row = conn.execute(
        "SELECT name, scope, created_at, last_used_at, salt, token_hash FROM api_tokens WHERE token_id = %s",
        (token_id,),
    ).fetchone()
    if row is None or not hmac.compare_digest(_hash(bytes(row[4]), secret), bytes(row[5])):
        return None
    # At most one write a minute per token, so reads stay reads.
    conn.execute(
        "UPDATE api_tokens SET last_used_at = now() WHERE token_id = %s "
        "AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        (token_id,),
    )
    return TokenInfo(*row[:4])
