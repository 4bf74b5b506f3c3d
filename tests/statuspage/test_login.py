"""Sign-in, the session cookie, CSRF and scopes of the status page, in process (FastAPI's
TestClient) on the session's real PostgreSQL and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from http.cookies import SimpleCookie

import psycopg
import pytest
from fastapi.testclient import TestClient

from mountsync.producers.http.app import make_app
from mountsync.shared.api.sessions import CSRF_HEADER, SESSION_COOKIE
from mountsync.shared.catalog.tokens import create_token, revoke_token
from mountsync.shared.config import Settings


@pytest.fixture
def client(settings: Settings, catalog: psycopg.Connection) -> Iterator[TestClient]:
    app = make_app(settings)
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client
    app.state.serve.stop()


def _cookie(response: object) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    jar.load(response.headers["set-cookie"])  # type: ignore[attr-defined]
    return jar


def _sign_in(client: TestClient, catalog: psycopg.Connection, scope: str, name: str = "") -> str:
    token = create_token(catalog, name or f"page-{scope}", scope)
    response = client.post("/login", data={"token": token})
    assert response.status_code == 303, response.text
    return token


def _csrf(client: TestClient) -> str:
    page = client.get("/").text
    marker = 'name="csrf_token" value="'
    return page.split(marker, 1)[1].split('"', 1)[0]


def test_without_a_session_the_page_is_the_sign_in_form(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and '<label for="token">API token</label>' in page.text
    assert "mountsync token create" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_a_wrong_token_is_refused_with_one_clear_line(client: TestClient, catalog: psycopg.Connection) -> None:
    create_token(catalog, "someone", "read")
    for wrong in ("mst_0123456789abcdef_" + "x" * 43, "not a token", ""):
        response = client.post("/login", data={"token": wrong})
        assert response.status_code == 401
        assert "That token is not valid or was revoked" in response.text
        assert "set-cookie" not in response.headers


def test_sign_in_sets_a_strict_httponly_cookie_holding_no_token(
    client: TestClient, catalog: psycopg.Connection
) -> None:
    token = create_token(catalog, "lead", "write")
    response = client.post("/login", data={"token": token})
    assert response.status_code == 303 and response.headers["location"] == "/"
    morsel = _cookie(response)[SESSION_COOKIE]
    assert morsel["httponly"] and morsel["samesite"] == "strict" and morsel["path"] == "/"
    assert not morsel["secure"]  # plain http: a Secure cookie would never come back
    secret = token.split("_", 2)[2]  # mst_<id>_<secret>; the secret itself may hold "_"
    assert token not in response.headers["set-cookie"] and secret not in morsel.value
    page = client.get("/")
    assert "Signed in with token" in page.text and 'id="token-name">lead<' in page.text


def test_behind_tls_the_cookie_is_secure(client: TestClient, catalog: psycopg.Connection) -> None:
    token = create_token(catalog, "tls", "read")
    response = client.post("/login", data={"token": token}, headers={"X-Forwarded-Proto": "https"})
    assert _cookie(response)[SESSION_COOKIE]["secure"]


def test_empty_states_say_what_to_do_next(client: TestClient, catalog: psycopg.Connection) -> None:
    _sign_in(client, catalog, "read")
    page = client.get("/").text
    assert "No mounts yet: <code>mountsync mount add NAME s3://bucket/prefix</code>" in page
    assert "No open alerts" in page and "No quarantined datasets" in page
    assert "No migrations yet: <code>mountsync migrate submit --source URL --dest URL</code>" in page


def test_a_read_only_session_sees_no_buttons_and_cannot_act(
    client: TestClient, catalog: psycopg.Connection, add_mount: object, tmp_path: object
) -> None:
    add_mount("photos", f"file://{tmp_path}")  # type: ignore[operator]
    _sign_in(client, catalog, "read")
    page = client.get("/").text
    assert 'id="mount-photos"' in page and "Reconcile now" not in page and "<button" in page  # sign-out only
    assert page.count("<button") == 1
    csrf = _csrf(client)
    answer = client.post("/ui/actions/reindex", data={"csrf_token": csrf, "target": "photos"},
                         headers={"Accept": "application/json"})  # fmt: skip
    assert answer.status_code == 403 and "scope read" in answer.json()["message"]


def test_actions_need_the_csrf_token_and_go_through_the_api(
    client: TestClient, catalog: psycopg.Connection, add_mount: object, tmp_path: object
) -> None:
    add_mount("photos", f"file://{tmp_path}")  # type: ignore[operator]
    _sign_in(client, catalog, "write")
    assert 'id="reconcile-photos"' in client.get("/").text
    forged = client.post("/ui/actions/reindex", data={"csrf_token": "guess", "target": "photos"},
                         headers={"Accept": "application/json"})  # fmt: skip
    assert forged.status_code == 403 and "CSRF" in forged.json()["message"]
    done = client.post("/ui/actions/reindex", data={"csrf_token": _csrf(client), "target": "photos"},
                       headers={"Accept": "application/json"})  # fmt: skip
    assert done.status_code == 200 and done.json()["message"] == "Reconcile of photos queued."
    assert catalog.execute("SELECT count(*) FROM reindex_runs").fetchone() == (1,)
    unknown = client.post("/ui/actions/reindex", data={"csrf_token": _csrf(client), "target": "nope"},
                          headers={"Accept": "application/json"})  # fmt: skip
    assert unknown.status_code == 404 and "nope" in unknown.json()["message"]


def test_the_api_accepts_the_session_for_reads_and_wants_csrf_for_writes(
    client: TestClient, catalog: psycopg.Connection, add_mount: object, tmp_path: object
) -> None:
    add_mount("photos", f"file://{tmp_path}")  # type: ignore[operator]
    _sign_in(client, catalog, "write")
    assert [m["name"] for m in client.get("/api/v1/mounts").json()["mounts"]] == ["photos"]
    refused = client.post("/api/v1/mounts/photos/reindex")
    assert refused.status_code == 403 and CSRF_HEADER in refused.json()["error"]
    accepted = client.post("/api/v1/mounts/photos/reindex", headers={CSRF_HEADER: _csrf(client)})
    assert accepted.status_code == 202


def test_sign_out_and_revocation_end_the_session(client: TestClient, catalog: psycopg.Connection) -> None:
    _sign_in(client, catalog, "read", name="leaving")
    stale = client.post("/logout", data={"csrf_token": "wrong"})
    assert stale.status_code == 403
    out = client.post("/logout", data={"csrf_token": _csrf(client)})
    assert out.status_code == 303 and "API token</label>" in client.get("/").text
    assert client.get("/api/v1/mounts").status_code == 401
    _sign_in(client, catalog, "read", name="revoked")
    assert "Signed in" in client.get("/").text
    revoke_token(catalog, "revoked")
    assert "API token</label>" in client.get("/").text
    assert client.get("/ui/updates?wait=0").status_code == 401


def test_redis_down_is_a_503_with_the_reason_not_a_500(settings: Settings, catalog: psycopg.Connection) -> None:
    """Sessions live in Redis; a closed Redis port stands in for an outage (no double needed)."""
    from dataclasses import replace

    from tests.helpers import free_port

    token = create_token(catalog, "in-outage", "read")
    app = make_app(replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    with TestClient(app, follow_redirects=False) as client:
        response = client.post("/login", data={"token": token})
        assert response.status_code == 503 and "Redis" in response.json()["error"]
    app.state.serve.stop()
