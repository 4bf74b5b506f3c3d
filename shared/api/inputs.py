"""Input the catalog cannot hold, refused before a route runs.

PostgreSQL text never holds a NUL byte, so no mount, folder, key or cursor contains one: a path
or query parameter with ``%00`` is a 400 that names it, rather than a driver error (a 500) once
the route queries with it. A NUL inside a JSON body reaches the catalog as a ``DataError``, which
``errors.py`` answers with a 400 too.
"""

from __future__ import annotations

from fastapi import Request

from mountsync.shared.errors import BadInput


def refuse_nul_bytes(request: Request) -> None:
    """A dependency of every ``/api/v1`` route."""
    for where, params in (("path", request.path_params), ("query", request.query_params)):
        for name, value in params.items():
            if isinstance(value, str) and "\x00" in value:
                raise BadInput(f"{where}.{name}: contains a NUL byte (%00), which no name, key or cursor "
                               "holds; remove it")  # fmt: skip
