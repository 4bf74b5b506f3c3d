"""``POST /push/gcs`` through the real serve app, Redis, PostgreSQL and a worker.

OIDC: there is no stand-in for Google's signer, so tokens are signed by a local RSA key whose
certificate a local HTTP server publishes; the endpoint verifies them with the real
``google.oauth2.id_token.verify_token`` pointed at that certificates URL (tests/gcs/oidc.py).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient as Client

from mountsync.producers.http.app import make_app
from mountsync.producers.http.context import ServeContext
from mountsync.producers.runtime import Runtime, build_runtime
from mountsync.shared.config import Settings
from mountsync.shared.queues import ChangeQueue, make_client
from tests.gcs.oidc import LocalSigner
from tests.helpers import free_port, wait_for

PAYLOADS = Path(__file__).parent / "payloads"
AUDIENCE = "https://sync.example.com/push/gcs"
PUSHER = "pusher@acme.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def signer() -> Iterator[LocalSigner]:
    local = LocalSigner().start()
    yield local
    local.stop()


@pytest.fixture
def make_client_for(settings: Settings, catalog: psycopg.Connection) -> Iterator[Callable[..., Client]]:
    contexts: list[ServeContext] = []

    def make(runtime: Runtime | None = None, **extra: str) -> Client:
        app = make_app(settings.with_(extra=extra))
        ctx: ServeContext = app.state.serve
        if runtime is not None:
            ctx._runtime = runtime
        contexts.append(ctx)
        return Client(app)

    yield make
    for ctx in contexts:
        if ctx._runtime is not None:
            ctx._runtime.close()


def oidc_extra(signer: LocalSigner) -> dict[str, str]:
    return {
        "MOUNTSYNC_GCS_PUSH_AUDIENCE": AUDIENCE,
        "MOUNTSYNC_GCS_PUSH_SERVICE_ACCOUNTS": f"other@x.iam.gserviceaccount.com, {PUSHER}",
        "MOUNTSYNC_GCS_PUSH_CERTS_URL": signer.certs_url,
    }


def envelope(name: str = "real_finalize_overwrite", **attributes: str) -> bytes:
    doc = json.loads((PAYLOADS / f"{name}.json").read_text())
    attrs = {**doc["attributes"], **attributes}
    data = base64.b64encode(json.dumps(doc["data"]).encode()).decode() if doc["data"] else ""
    message = {"attributes": attrs, "data": data, "messageId": "9876543210",
               "message_id": "9876543210", "publishTime": "2024-05-01T12:00:00.456Z"}  # fmt: skip
    return json.dumps({"message": message, "subscription": "projects/acme/subscriptions/push"}).encode()


def push(client: Client, body: bytes, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.post("/push/gcs", content=body, headers=headers)


def dead_letters(db: psycopg.Connection) -> list[tuple[str, str | None, str]]:
    return db.execute("SELECT source, message_id, reason FROM dead_letters ORDER BY id").fetchall()


def queued(settings: Settings, redis_client: Any) -> int:
    return int(redis_client.llen(f"{settings.redis_prefix}changes"))


def test_a_verified_push_reaches_the_catalog(
    make_client_for: Callable[..., Client], signer: LocalSigner, add_mount: Callable[..., Any],
    catalog_state: Callable[[str], dict[str, Any]], worker: Any,
) -> None:  # fmt: skip
    add_mount("acme", "gs://acme-raw/in/")
    client = make_client_for(**oidc_extra(signer))
    response = push(client, envelope(), signer.token(aud=AUDIENCE, email=PUSHER))
    assert response.status_code == 204
    state = wait_for(lambda: catalog_state("acme"), timeout=30, what="the pushed object in the catalog")
    assert state == {
        "in/2024/05/report 1.csv": {"size": 5, "etag": "5d41402abc4b2a76b9719d911017c592",
                                    "version": "1714564800123456"},
    }  # fmt: skip


def test_the_old_half_of_an_overwrite_is_acknowledged_without_queueing(
    make_client_for: Callable[..., Client], settings: Settings, redis_client: Any,
    db: psycopg.Connection,
) -> None:  # fmt: skip
    client = make_client_for()
    before = queued(settings, redis_client)
    assert push(client, envelope("real_delete_overwritten")).status_code == 204
    assert queued(settings, redis_client) <= before and dead_letters(db) == []


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("no token", 401),
        ("not a bearer token", 401),
        ("forged signature", 401),
        ("expired", 401),
        ("wrong audience", 401),
        ("wrong issuer", 401),
        ("sender not allowed", 403),
        ("email not verified", 403),
    ],
)
def test_pushes_without_a_valid_token_are_refused_and_leave_no_trace(
    make_client_for: Callable[..., Client], signer: LocalSigner, settings: Settings,
    redis_client: Any, db: psycopg.Connection, case: str, status: int,
) -> None:  # fmt: skip
    client = make_client_for(**oidc_extra(signer))
    now = int(time.time())
    tokens: dict[str, str | None] = {
        "no token": None,
        "not a bearer token": "",
        "forged signature": signer.token(aud=AUDIENCE, private_pem=LocalSigner.other_key()),
        "expired": signer.token(aud=AUDIENCE, iat=now - 7200, exp=now - 3600),
        "wrong audience": signer.token(aud="https://elsewhere.example.com/push"),
        "wrong issuer": signer.token(aud=AUDIENCE, iss="https://evil.example.com"),
        "sender not allowed": signer.token(aud=AUDIENCE, email="intruder@evil.iam.gserviceaccount.com"),
        "email not verified": signer.token(aud=AUDIENCE, email_verified=False),
    }
    before = queued(settings, redis_client)
    token = tokens[case]
    if case == "not a bearer token":
        response = client.post("/push/gcs", content=envelope(), headers={"Authorization": "Basic Zm9vOmJhcg=="})
    else:
        response = push(client, envelope(), token)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json() and response.json()["error"]
    assert dead_letters(db) == []
    assert queued(settings, redis_client) == before


def test_audience_defaults_to_the_push_url(make_client_for: Callable[..., Client], signer: LocalSigner) -> None:
    client = make_client_for(MOUNTSYNC_GCS_PUSH_SERVICE_ACCOUNTS=PUSHER, MOUNTSYNC_GCS_PUSH_CERTS_URL=signer.certs_url)
    # TestClient sends to http://testserver
    ok = push(client, envelope(), signer.token(aud="http://testserver/push/gcs", email=PUSHER))
    assert ok.status_code == 204
    assert push(client, envelope(), signer.token(aud=AUDIENCE, email=PUSHER)).status_code == 401


def test_unreachable_signing_keys_mean_retry_later(
    make_client_for: Callable[..., Client], signer: LocalSigner, db: psycopg.Connection
) -> None:
    extra = {**oidc_extra(signer), "MOUNTSYNC_GCS_PUSH_CERTS_URL": f"http://127.0.0.1:{free_port()}/certs"}
    response = push(make_client_for(**extra), envelope(), signer.token(aud=AUDIENCE, email=PUSHER))
    assert response.status_code == 503
    assert dead_letters(db) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b'{"subscription": "projects/p/subscriptions/s"}', "no 'message'"),
        (b'{"message": {"messageId": "77", "data": "***"}}', "base64"),
        (b'{"message": {"messageId": "78", "data": "", "attributes": {"foo": "bar"}}}', "eventType"),
    ],
)
def test_malformed_pushes_are_dead_lettered_with_400(
    make_client_for: Callable[..., Client], signer: LocalSigner, db: psycopg.Connection,
    body: bytes, reason: str,
) -> None:  # fmt: skip
    client = make_client_for(**oidc_extra(signer))
    response = push(client, body, signer.token(aud=AUDIENCE, email=PUSHER))
    assert response.status_code == 400
    assert reason in response.json()["error"]
    [(source, _message_id, recorded)] = dead_letters(db)
    assert source == "gcs-push" and reason in recorded


def test_enqueue_failure_answers_503_so_pubsub_retries(
    make_client_for: Callable[..., Client], settings: Settings, db: psycopg.Connection
) -> None:
    runtime = build_runtime(settings)
    dead_broker = settings.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    runtime.queue = ChangeQueue(make_client(dead_broker), runtime.redis, settings)
    client = make_client_for(runtime=runtime)
    response = push(client, envelope())
    assert response.status_code == 503
    assert dead_letters(db) == []
