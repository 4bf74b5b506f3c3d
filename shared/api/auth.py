"""Bearer-token authentication for every ``/api/v1`` route: 401 without a valid token, 403 for a
read token on a write route. Tokens are checked against their salted hash (``catalog/tokens.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mountsync.shared.api.deps import runtime
from mountsync.shared.catalog.tokens import TokenInfo, verify_token

_bearer = HTTPBearer(auto_error=False, description="`mountsync token create NAME [--scope write]`")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def authenticated(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> TokenInfo:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "missing bearer token (Authorization: Bearer TOKEN)", headers=_CHALLENGE)
    with runtime(request).pool.connection(timeout=10) as conn:
        info = verify_token(conn, credentials.credentials.strip())
    if info is None:
        raise HTTPException(401, "invalid or revoked token", headers=_CHALLENGE)
    return info


def require_read(token: Annotated[TokenInfo, Depends(authenticated)]) -> TokenInfo:
    """Any valid token (read or write)."""
    return token


def require_write(token: Annotated[TokenInfo, Depends(authenticated)]) -> TokenInfo:
    """A token created with ``--scope write``."""
    if token.scope != "write":
        raise HTTPException(403, f"token {token.name!r} has scope read; this route needs a write token")
    return token
