"""What the status page shows, read from ``/api/v1`` inside the serving process.

The page is one more client of the API: it calls the same routes a platform calls, through the
application itself (no network hop), as the signed-in browser (its session cookie, and for actions
its CSRF token). So it sees exactly what the API says, the API's scope checks apply to its buttons,
and the page needs no queries of its own (alerts and datasets live in ``workers/``, which
``producers/`` must not import).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from starlette.types import ASGIApp

from mountsync.shared.api.sessions import CSRF_HEADER, SESSION_COOKIE

API = "/api/v1"
MIGRATIONS_SHOWN = 20
QUARANTINED_SHOWN = 10


def api_path(*parts: str | int) -> str:
    """``/api/v1/...`` with each part quoted (a folder keeps its slashes: routes take it as a path)."""
    return API + "".join("/" + quote(str(p), safe="/") for p in parts)


@dataclass
class PageData:
    """Everything one render needs; ``None`` for a section this server does not have."""

    mounts: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    migrations: list[dict[str, Any]] = field(default_factory=list)
    sinks: list[dict[str, Any]] | None = None
    dead_letters: list[dict[str, Any]] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def head_cursor(self) -> int:
        """The newest change-log cursor any mount has seen (where the feed wait starts)."""
        return max((int(m.get("last_cursor") or 0) for m in self.mounts), default=0)

    @property
    def busy(self) -> bool:
        """A migration is moving: its bar should move too, so the page re-reads more often."""
        return any(j.get("state") in ("submitted", "planning", "running") for j in self.migrations)

    def digest(self, tick: int) -> str:
        """Changes when anything shown changes, and every ``tick`` (relative times age)."""
        blob = json.dumps([asdict(self), tick], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


class ApiReader:
    """Calls ``/api/v1`` on the serving app as the browser session ``session_id``."""

    def __init__(self, app: ASGIApp, session_id: str, csrf: str = "") -> None:
        headers = {CSRF_HEADER: csrf} if csrf else {}
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://statuspage.internal",
            cookies={SESSION_COOKIE: session_id},
            headers=headers,
            timeout=90,
        )

    async def __aenter__(self) -> ApiReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        response = await self._client.get(path, params={k: v for k, v in params.items() if v is not None})
        return response.status_code, _body(response)

    async def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        response = await self._client.post(path, json=body)
        return response.status_code, _body(response)

    async def wait_for_change(self, after: int, seconds: float) -> None:
        """Return when the change feed has an entry after ``after``, or after ``seconds``."""
        status, _ = await self.get(api_path("changes"), after=after, limit=1, wait=round(seconds, 1))
        if status != 200:  # 410 (pruned) or the API down: still wait, so the page does not spin
            await asyncio.sleep(seconds)


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"error": response.text[:200] or f"HTTP {response.status_code}"}


def _problem(what: str, status: int, body: Any) -> str:
    reason = body.get("error") if isinstance(body, dict) else None
    return f"{what}: {reason or f'HTTP {status}'}"


async def _list(reader: ApiReader, data: PageData, what: str, path: str, key: str, **params: Any) -> list[Any] | None:
    """The rows under ``key``, ``None`` when the route does not exist here (404), [] on a failure."""
    status, body = await reader.get(path, **params)
    if status == 404 and isinstance(body, dict) and body.get("error") in (None, "Not Found"):
        return None
    if status != 200:
        data.problems.append(_problem(what, status, body))
        return []
    rows = body.get(key, []) if isinstance(body, dict) else []
    return list(rows)


async def _comparison(reader: ApiReader, mount: str, dataset: dict[str, Any]) -> dict[str, Any] | None:
    folder = str(dataset.get("dataset") or dataset.get("folder") or "")
    status, body = await reader.get(api_path("mounts", mount, "datasets", folder or "/", "frames"))
    if status != 200 or not isinstance(body, dict):
        return None
    pinned = body.get("pinned") or (body.get("frames") if body.get("source") == "pinned" else [])
    current = body.get("current") if body.get("current") is not None else []
    return {"mount": mount, "folder": folder, "type": body.get("type"), "pinned": pinned, "current": current}


async def read_page(reader: ApiReader) -> PageData:
    """One consistent-enough snapshot of every section (each route reads its own transaction)."""
    data = PageData()
    data.mounts = await _list(reader, data, "mounts", api_path("mounts"), "mounts") or []
    data.alerts = await _list(reader, data, "alerts", api_path("alerts"), "alerts", status="open") or []
    data.migrations = (
        await _list(reader, data, "migrations", api_path("migrations"), "jobs", limit=MIGRATIONS_SHOWN) or []
    )
    data.sinks = await _list(reader, data, "sinks", api_path("sinks"), "sinks")
    data.dead_letters = await _list(reader, data, "dead letters", api_path("deadletters"), "dead_letters")
    for mount in data.mounts:
        name = str(mount["name"])
        datasets = await _list(reader, data, f"datasets of {name}", api_path("mounts", name, "datasets"), "datasets")
        for dataset in datasets or []:
            if dataset.get("quarantined") and len(data.quarantined) < QUARANTINED_SHOWN:
                found = await _comparison(reader, name, dataset)
                if found is not None:
                    data.quarantined.append(found)
    return data
