"""Fixtures for the alignment tests, on the lead's session database (tests/conftest.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

from mountsync.shared.config import Settings
from tests.alignment.support import FakeBucket


@pytest.fixture
def conn(catalog: psycopg.Connection) -> psycopg.Connection:
    """An autocommit connection to a catalog emptied for this test."""
    return catalog


@pytest.fixture
def catalog_url(settings: Settings) -> str:
    return settings.database_url


@pytest.fixture
def bucket(conn: psycopg.Connection, tmp_path: Path) -> FakeBucket:
    return FakeBucket.create(conn, f"m{uuid.uuid4().hex[:8]}", str(tmp_path))
