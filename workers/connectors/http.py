"""HTTP to an annotation platform, with every outcome translated into the project's error tree.

The platform clients (Label Studio, Girder) share this so that a caller (a sink) decides the same
way for both: ``PlatformUnavailable`` -> back off and retry (``retry_after_s`` when the platform
said), ``PlatformAuthRejected`` -> stop and ask for new credentials, ``PlatformRequestRejected``
-> this request can never succeed as it is. Error messages name the method and the path, never
the query string or headers: Girder takes its API key as a query parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import requests

from mountsync.shared.errors import (
    PlatformAuthRejected,
    PlatformRecordMissing,
    PlatformRequestRejected,
    PlatformUnavailable,
)

DEFAULT_TIMEOUT_S = 30.0
_DETAIL_CHARS = 300


class Credentials(Protocol):
    """Supplies auth headers; ``refresh`` gets new ones after a 401 (False: nothing to refresh)."""

    def headers(self) -> Mapping[str, str]: ...

    def refresh(self) -> bool: ...


class NoCredentials:
    """For the calls that authenticate themselves (token exchanges)."""

    def headers(self) -> Mapping[str, str]:
        return {}

    def refresh(self) -> bool:
        return False


def retry_after_seconds(value: str | None) -> float | None:
    """The Retry-After header as seconds (only the delta form; an HTTP date is ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


# A platform's own way of saying "missing" or "refused" (Girder answers 400 for both) as the
# status the translation should use: (status, body) -> status.
StatusRefiner = Callable[[int, str], int]


def raise_for_outcome(
    platform: str, method: str, path: str, response: requests.Response, refine: StatusRefiner | None = None
) -> None:
    """Translate a non-2xx/3xx answer into the error tree; 2xx and redirects pass."""
    status = response.status_code
    if status < 400:
        return
    where = f"{platform} {method} {path}"
    detail = response.text[:_DETAIL_CHARS].strip()
    if refine is not None:
        status = refine(status, detail)
    if status == 429 or status >= 500:
        raise PlatformUnavailable(
            f"{where} answered {status}; retry later", retry_after_seconds(response.headers.get("Retry-After"))
        )
    if status in (401, 403):
        raise PlatformAuthRejected(f"{where} answered {status}: the token or API key was refused ({detail})")
    if status == 404:
        raise PlatformRecordMissing(f"{where} answered 404: {detail}", status)
    raise PlatformRequestRejected(f"{where} answered {status}: {detail}", status)


class PlatformHttp:
    """One ``requests.Session`` against ``base_url``; a 401 refreshes the credentials once."""

    def __init__(
        self,
        platform: str,
        base_url: str,
        credentials: Credentials | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        refine: StatusRefiner | None = None,
    ) -> None:
        self.platform = platform
        self.refine = refine
        self.base_url = base_url.rstrip("/")
        self.credentials: Credentials = credentials or NoCredentials()
        self.timeout_s = timeout_s
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        follow_redirects: bool = True,
    ) -> requests.Response:
        """Send one request; raise the translated error for anything but 2xx/3xx."""
        response = self._send(method, path, params, json, data, follow_redirects)
        if response.status_code == 401 and self.credentials.refresh():
            response = self._send(method, path, params, json, data, follow_redirects)
        raise_for_outcome(self.platform, method, path, response, self.refine)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """``request`` and decode the JSON body (None for an empty body, like a 204)."""
        response = self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise PlatformUnavailable(f"{self.platform} {method} {path} answered with a body that is not JSON") from exc

    def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json: Any,
        data: Mapping[str, Any] | None,
        follow_redirects: bool,
    ) -> requests.Response:
        try:
            return self._session.request(
                method,
                f"{self.base_url}{path}",
                params=params,
                json=json,
                data=data,
                headers=dict(self.credentials.headers()),
                timeout=self.timeout_s,
                allow_redirects=follow_redirects,
            )
        except requests.RequestException as exc:
            # The exception text can carry the full URL with its query (an API key): leave it out.
            raise PlatformUnavailable(
                f"{self.platform} {method} {path} failed: {type(exc).__name__}; retry later"
            ) from None
