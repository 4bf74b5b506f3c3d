"""The one error body, ``{"error": reason}``, for every failure the API answers.

Mapped from the project's error tree: ``NotFound`` 404, ``Conflict`` 409, other ``BadInput`` 400,
``RetryableError`` (Redis, PostgreSQL, a cloud down) 503. Validation errors are 422 and name each
field (``query.limit: ...``); a body the JSON parser gives up on (nested too deep, not UTF-8) is a
400 that says why, and so is a value the catalog refuses (``psycopg.DataError``, such as a number
beyond its range; a NUL byte is refused earlier, with its field, by ``inputs.py``). Anything else
is a bug: 500 without details, logged with its stack.
"""

from __future__ import annotations

import sys
from typing import Any

import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from mountsync.shared.errors import BadInput, Conflict, MountsyncError, NotFound, RetryableError

log = structlog.get_logger("mountsync.api")


class ErrorBody(BaseModel):
    error: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "bad input (the reason names the field)"},
    401: {"model": ErrorBody, "description": "missing, invalid or revoked bearer token"},
    403: {"model": ErrorBody, "description": "a read token on a write route"},
    404: {"model": ErrorBody, "description": "unknown mount, folder, alert or job"},
    503: {"model": ErrorBody, "description": "Redis, PostgreSQL or the storage is down; retry"},
}


def status_of(exc: MountsyncError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, BadInput):
        return 400
    if isinstance(exc, RetryableError):
        return 503
    return 500


def _field_errors(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _unparsable_body(cause: BaseException) -> str:
    """The reason for a body FastAPI could not parse (it says only "There was an error parsing the body")."""
    if isinstance(cause, RecursionError):
        return f"body: JSON nested more than {sys.getrecursionlimit()} levels deep; send a flatter document"
    if isinstance(cause, UnicodeDecodeError):
        return f"body: not UTF-8 (byte {cause.start}); send JSON encoded as UTF-8"
    return f"body: cannot be parsed ({type(cause).__name__}); send one JSON document"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        reason = str(exc.detail)
        if exc.status_code == 400 and exc.__cause__ is not None and reason == "There was an error parsing the body":
            reason = _unparsable_body(exc.__cause__)
        return JSONResponse({"error": reason}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = jsonable_encoder(exc.errors(), custom_encoder={bytes: lambda b: b.decode("utf-8", "replace")})
        return JSONResponse({"error": _field_errors(exc), "detail": detail}, 422)

    @app.exception_handler(MountsyncError)
    async def mountsync_error(request: Request, exc: MountsyncError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.error("request failed", path=request.url.path, error=f"{type(exc).__name__}: {exc}")
        return JSONResponse({"error": str(exc) if status < 500 or status == 503 else "internal error"}, status)

    @app.exception_handler(psycopg.DataError)
    async def data_error(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # SQLSTATE class 22 (or the driver refusing a value): the request carried a value the catalog
        # cannot take. NUL bytes in path, query and JSON body are refused earlier, with the field.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning("request refused by the catalog", path=request.url.path, error=reason)
        return JSONResponse({"error": f"input: a value the catalog cannot store ({reason}); correct it"}, 400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed", path=request.url.path)
        return JSONResponse({"error": "internal error"}, 500)
