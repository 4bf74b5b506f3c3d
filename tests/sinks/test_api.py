"""``GET /api/v1/sinks``: serve's app in process (FastAPI's TestClient) on the session's PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from mountsync.producers.http.app import make_app
from mountsync.shared.config import Settings
from tests.helpers import bearer
from tests.sinks.conftest import change
from tests.sinks.test_webhook import add_webhook


@pytest.fixture
def api(settings: Settings, catalog: psycopg.Connection) -> Iterator[TestClient]:
    app = make_app(settings)
    with TestClient(app) as client:
        yield client
    app.state.serve.stop()


def test_sinks_are_listed_with_their_lag_and_never_their_secret(api, catalog, cli, add_mount, apply, receiver) -> None:
    add_mount("m", "s3://bkt/")
    secret = add_webhook(cli, "hooks", receiver.url + "?token=t0ps3cret")["secret"]
    apply([change(f"a/{i}.png") for i in range(7)])
    auth = bearer(catalog, "read")

    listed = api.get("/api/v1/sinks", headers=auth)
    one = api.get("/api/v1/sinks/hooks", headers=auth)

    assert listed.status_code == 200 and one.status_code == 200
    [row] = listed.json()["sinks"]
    assert {k: v for k, v in row.items() if k != "lag_seconds"} == {
        k: v for k, v in one.json().items() if k != "lag_seconds"
    }  # the age of the oldest undelivered entry grows between the two requests
    assert (row["name"], row["kind"], row["state"], row["lag_entries"]) == ("hooks", "webhook", "active", 7)
    assert row["lag_seconds"] >= 0 and row["target"] == receiver.url.split("/hooks")[0]
    assert secret.removeprefix("whsec_") not in listed.text and "t0ps3cret" not in listed.text


def test_unknown_sink_is_404_bad_kind_is_422_and_no_token_is_401(api, catalog) -> None:
    auth = bearer(catalog, "read")
    missing = api.get("/api/v1/sinks/nope", headers=auth)
    assert missing.status_code == 404 and "nope" in missing.text
    assert api.get("/api/v1/sinks?kind=ftp", headers=auth).status_code == 422
    assert api.get("/api/v1/sinks").status_code == 401
