"""Input the catalog cannot hold, refused before a route runs.

PostgreSQL text never holds a NUL byte, so no mount, folder, key, cursor or migration path
contains one. A path or query parameter with ``%00``, or a JSON body with ``\\u0000`` in any
string, is a 400 that names where (``path.mount``, ``body.items[2].path``), rather than a driver
error once the route queries with it. ``errors.py`` keeps a 400 for any other value the catalog
refuses (``psycopg.DataError``), without the field.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from mountsync.shared.errors import BadInput

_ESCAPED_NUL = b"\\u0000"


async def refuse_nul_bytes(request: Request) -> None:
    """A dependency of every ``/api/v1`` route."""
    for where, params in (("path", request.path_params), ("query", request.query_params)):
        for name, value in params.items():
            if isinstance(value, str) and "\x00" in value:
                raise _refused(f"{where}.{name}")
    if request.method in ("POST", "PUT", "PATCH"):
        # Routes with a JSON body: FastAPI has read and cached it. Routes without one: nothing else
        # reads it, so reading it here takes it from no one.
        body = await request.body()
        if _ESCAPED_NUL in body:  # the only way JSON text carries a NUL; parse only then
            found = _nul_in(_parsed(body), "body")
            if found:
                raise _refused(found)


def _refused(where: str) -> BadInput:
    return BadInput(f"{where}: contains a NUL byte (%00 or \\u0000), which no name, key, path or cursor "
                    "holds; remove it")  # fmt: skip


def _parsed(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON: the route's own parsing answers with the reason


def _nul_in(value: Any, where: str) -> str | None:
    """The location of the first string (or object key) holding a NUL, else None."""
    pending = [(value, where)]
    while pending:
        item, at = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return at
        elif isinstance(item, dict):
            for key, inner in reversed(item.items()):
                if "\x00" in key:
                    return f"{at} (a key)"
                pending.append((inner, f"{at}.{key}"))
        elif isinstance(item, list):
            pending.extend((inner, f"{at}[{i}]") for i, inner in reversed(list(enumerate(item))))
    return None
