"""The ``serve`` app in process (FastAPI's TestClient) on the session's PostgreSQL and Redis."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from mountsync.producers.http.app import make_app
from mountsync.shared.config import Settings
from tests.helpers import bearer


@pytest.fixture
def api(settings: Settings, catalog: psycopg.Connection) -> Iterator[TestClient]:
    app = make_app(settings)
    with TestClient(app) as client:
        yield client
    app.state.serve.stop()


@pytest.fixture
def read_auth(catalog: psycopg.Connection) -> dict[str, str]:
    return bearer(catalog, "read")


@pytest.fixture
def write_auth(catalog: psycopg.Connection) -> dict[str, str]:
    return bearer(catalog, "write")
