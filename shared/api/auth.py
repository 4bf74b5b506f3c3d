"""Bearer-token authentication for every ``/api/v1`` route: 401 without a valid token, 403 for a
read token on a write route. Tokens are checked against their salted hash (``catalog/tokens.py``).
A browser signed in on the status page (``sessions.py``) counts as its token; it must send the
session's CSRF token with anything but GET."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mountsync.shared.api.deps import runtime
from mountsync.shared.api.sessions import CSRF_HEADER, SAFE_METHODS, signed_in
from mountsync.shared.catalog.tokens import TokenInfo, verify_token

_bearer = HTTPBearer(auto_error=False, description="`mountsync token create NAME [--scope write]`")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def authenticated(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> TokenInfo:
    if credentials is None:
        found = signed_in(request)  # the status page's browser session (its cookie)
        if found is not None:
            _, session, token = found
            if request.method not in SAFE_METHODS and not session.csrf_matches(request.headers.get(CSRF_HEADER)):
                raise HTTPException(403, f"a browser session must send its CSRF token ({CSRF_HEADER}) to change things")
            return token
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
