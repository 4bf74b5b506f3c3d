"""PostgreSQL access: connection pools, database creation and schema upgrades (alembic)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from mountsync.shared.config import redact_url
from mountsync.shared.errors import ServiceUnavailable

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def _split_dbname(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    admin = urlunsplit(parts._replace(path="/postgres"))
    return name, admin


def connect(url: str, *, autocommit: bool = True) -> psycopg.Connection:
    """One connection; ``ServiceUnavailable`` with a clear line when PostgreSQL does not answer."""
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceUnavailable(
            f"PostgreSQL at {redact_url(url)} is not reachable ({reason}); start it or set MOUNTSYNC_DATABASE_URL"
        ) from exc


def open_pool(url: str, *, min_size: int = 1, max_size: int = 4, name: str = "mountsync") -> ConnectionPool:
    """A pool that checks connections on checkout; open it in each process (never across fork)."""
    with connect(url):
        pass  # fail fast with a clear message rather than a pool timeout later
    return ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=True,
        check=ConnectionPool.check_connection,
        kwargs={"autocommit": False},
    )


@contextmanager
def transaction(pool: ConnectionPool) -> Iterator[psycopg.Connection]:
    """A pooled connection in a transaction: commits on success, rolls back on error."""
    try:
        with pool.connection() as conn:
            yield conn
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(f"PostgreSQL failed mid-transaction: {exc}") from exc


def create_database(url: str) -> bool:
    """Create the database named in ``url`` if it does not exist; True when it was created."""
    name, admin = _split_dbname(url)
    with connect(admin) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            return False
    return True


def drop_database(url: str) -> None:
    name, admin = _split_dbname(url)
    with connect(admin) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1).replace("postgres://", "postgresql+psycopg://", 1)
    cfg.set_main_option("sqlalchemy.url", sa_url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> list[str]:
    """Create the database if needed and upgrade the schema to every head; returns the heads."""
    from alembic import command
    from alembic.script import ScriptDirectory

    create_database(url)
    cfg = _alembic_config(url)
    try:
        command.upgrade(cfg, "heads")
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(f"schema upgrade failed: {exc}") from exc
    return sorted(ScriptDirectory.from_config(cfg).get_heads())


def current_revisions(url: str) -> list[str]:
    with connect(url) as conn:
        try:
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return sorted(r[0] for r in rows)
