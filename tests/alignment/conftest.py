"""Fixtures for the alignment service tests: a migrated catalog database of our own.

The lead's tests/conftest.py provides the shared ``settings``/``db``/``worker`` fixtures for the
end-to-end tests; these service tests only need PostgreSQL and apply changes in-process.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from shared.catalog import db as catalog_db
from tests.alignment.support import FakeBucket

ADMIN_URL = os.environ.get("MOUNTSYNC_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _require_postgres() -> None:
    try:
        with catalog_db.connect(ADMIN_URL):
            return
    except Exception as exc:  # ServiceUnavailable
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")


@pytest.fixture(scope="session")
def catalog_url() -> Iterator[str]:
    _require_postgres()
    base = ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/align_{uuid.uuid4().hex[:10]}"
    catalog_db.upgrade(url)
    yield url
    catalog_db.drop_database(url)


@pytest.fixture
def conn(catalog_url: str) -> Iterator[psycopg.Connection]:
    with catalog_db.connect(catalog_url) as connection:
        yield connection


@pytest.fixture
def bucket(conn: psycopg.Connection, tmp_path) -> FakeBucket:  # type: ignore[no-untyped-def]
    return FakeBucket.create(conn, f"m{uuid.uuid4().hex[:8]}", str(tmp_path))
