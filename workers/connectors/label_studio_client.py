"""Label Studio's public REST API, as much of it as a connector needs to keep a project's tasks in step.

Authentication is a personal access token (PAT), the default since Label Studio 1.23 (legacy
tokens are off unless an organization turns them back on). A PAT is a long-lived JWT refresh
token; each request carries a short-lived access token obtained from ``/api/token/refresh/`` and
renewed after a 401. The PAT is read from an environment variable the user names and is never
stored, logged or put into an error message.

Tasks carry the connector's bookkeeping in ``meta`` (Label Studio keeps it as given and returns
it on every listing), so the key -> task map can be rebuilt from Label Studio itself.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mountsync.shared.errors import ConfigError, PlatformRecordMissing
from mountsync.workers.connectors.http import DEFAULT_TIMEOUT_S, PlatformHttp

PLATFORM = "Label Studio"
# Label Studio's own default page size is 100; bigger pages list a 100k-task project in fewer calls.
LIST_PAGE_SIZE = 500
IMPORT_BATCH = 1000


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task to create: ``data`` is what the labeling config reads, ``meta`` is ours."""

    data: Mapping[str, Any]
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Task:
    """A task as Label Studio reports it; ``annotations`` counts the ones not cancelled."""

    id: int
    data: Mapping[str, Any]
    meta: Mapping[str, Any]
    annotations: int
    cancelled_annotations: int

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> Task:
        return cls(
            id=int(row["id"]),
            data=row.get("data") or {},
            meta=row.get("meta") or {},
            annotations=int(row.get("total_annotations") or 0),
            cancelled_annotations=int(row.get("cancelled_annotations") or 0),
        )


def is_personal_access_token(token: str) -> bool:
    """A PAT is a JWT whose payload says ``token_type: refresh``; a legacy token is 40 hex chars."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return False
    return isinstance(payload, dict) and payload.get("token_type") == "refresh"


class PersonalAccessToken:
    """Exchanges a PAT for access tokens; ``refresh`` after a 401 (an access token lives minutes)."""

    def __init__(self, http: PlatformHttp, token: str) -> None:
        self._http = http
        self._token = token
        self._access: str | None = None

    def headers(self) -> Mapping[str, str]:
        if self._access is None:
            self._exchange()
        return {"Authorization": f"Bearer {self._access}"}

    def refresh(self) -> bool:
        self._exchange()
        return True

    def _exchange(self) -> None:
        body = self._http.json("POST", "/api/token/refresh/", json={"refresh": self._token})
        self._access = str(body["access"])


class LabelStudioClient:
    """One Label Studio server; every method raises the error tree (see ``connectors.http``)."""

    def __init__(self, url: str, token: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not is_personal_access_token(token):
            raise ConfigError(
                "the Label Studio token is not a personal access token: create one under "
                "Account & Settings > Personal Access Token (legacy tokens are off by default since 1.23)"
            )
        token_http = PlatformHttp(PLATFORM, url, timeout_s=timeout_s)
        self._http = PlatformHttp(PLATFORM, url, PersonalAccessToken(token_http, token), timeout_s)
        self._token_http = token_http

    @classmethod
    def from_env(cls, url: str, token_env: str, environ: Mapping[str, str]) -> LabelStudioClient:
        """The client for ``url`` with the PAT from the variable ``token_env`` (the CLI's --token-env)."""
        token = environ.get(token_env, "").strip()
        if not token:
            raise ConfigError(f"--token-env: the environment variable {token_env} is not set or empty")
        return cls(url, token)

    def close(self) -> None:
        self._http.close()
        self._token_http.close()

    def whoami(self) -> str:
        """The email of the token's user; proves the URL and the token."""
        return str(self._http.json("GET", "/api/current-user/whoami")["email"])

    def import_tasks(self, project: int, tasks: Sequence[NewTask]) -> list[int]:
        """Create ``tasks`` in bulk; returns their ids in the order given.

        Not idempotent by itself (Label Studio deduplicates nothing): the caller keeps the
        key -> id map and creates only keys it has no task for.
        """
        ids: list[int] = []
        for start in range(0, len(tasks), IMPORT_BATCH):
            batch = [{"data": dict(t.data), "meta": dict(t.meta)} for t in tasks[start : start + IMPORT_BATCH]]
            body = self._http.json(
                "POST", f"/api/projects/{project}/import", params={"return_task_ids": "true"}, json=batch
            )
            ids.extend(int(i) for i in body["task_ids"])
        return ids

    def iter_tasks(self, project: int, page_size: int = LIST_PAGE_SIZE) -> Iterator[Task]:
        """Every task of the project, page by page (memory holds one page)."""
        page, seen = 1, 0
        while True:
            # resolve_uri=false: the stored s3://bucket/key, not Label Studio's /tasks/N/resolve/ proxy URL.
            params = {"project": project, "page": page, "page_size": page_size, "resolve_uri": "false"}
            body = self._http.json("GET", "/api/tasks", params=params)
            rows = body.get("tasks") or []
            for row in rows:
                yield Task.from_api(row)
            seen += len(rows)
            # Asking past the last page answers 404 "Invalid page", so stop on the total.
            if not rows or seen >= int(body.get("total") or 0):
                return
            page += 1

    def get_task(self, task_id: int) -> Task | None:
        """The task, or None when it does not exist (deleted by someone else)."""
        try:
            return Task.from_api(self._http.json("GET", f"/api/tasks/{task_id}", params={"resolve_uri": "false"}))
        except PlatformRecordMissing:
            return None

    def update_task(
        self, task_id: int, data: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None
    ) -> Task:
        """Replace the task's ``data`` and/or ``meta`` (each as a whole); annotations stay."""
        patch: dict[str, Any] = {}
        if data is not None:
            patch["data"] = dict(data)
        if meta is not None:
            patch["meta"] = dict(meta)
        return Task.from_api(self._http.json("PATCH", f"/api/tasks/{task_id}", json=patch))

    def delete_task(self, task_id: int) -> bool:
        """Delete one task; False when it was already gone (so a redelivered delete is a no-op)."""
        try:
            self._http.request("DELETE", f"/api/tasks/{task_id}")
        except PlatformRecordMissing:
            return False
        return True

    def delete_tasks(self, project: int, task_ids: Sequence[int]) -> None:
        """Delete many tasks in one call (the Data Manager's delete action); missing ids are ignored."""
        if not task_ids:
            return
        self._http.request(
            "POST",
            "/api/dm/actions",
            params={"id": "delete_tasks", "project": project},
            json={"selectedItems": {"all": False, "included": [int(i) for i in task_ids]}},
        )

    def task_ids_by_meta(self, project: int, path: Sequence[str]) -> dict[str, list[int]]:
        """Map the value at ``meta[path...]`` to the task ids carrying it (several ids = duplicates)."""
        found: dict[str, list[int]] = {}
        for task in self.iter_tasks(project):
            value: Any = task.meta
            for name in path:
                value = value.get(name) if isinstance(value, Mapping) else None
            if isinstance(value, str):
                found.setdefault(value, []).append(task.id)
        return found
