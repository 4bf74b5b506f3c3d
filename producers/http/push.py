"""What a push receiver sees of an HTTP request and what it answers, free of any web framework.

Receivers (``gcs_push``, ``azure_webhook``, ``minio_push``) are plain functions
``handle(PushRequest, ctx) -> PushAnswer`` that block on Redis; ``receivers.py`` reads the body
on the event loop and runs them on the threadpool, so a slow Redis never stalls the loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class PushRequest:
    """``headers`` look up case-insensitively (Starlette's ``Headers``)."""

    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    remote: str | None = None


@dataclass(frozen=True, slots=True)
class PushAnswer:
    """``body`` None: an empty response (e.g. Pub/Sub's 204)."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def answer(data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> PushAnswer:
    return PushAnswer(status, data, headers or {})
