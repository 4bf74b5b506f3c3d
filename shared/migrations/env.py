"""Alembic environment: runs the catalog migrations on the connection handed in by ``db upgrade``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("alembic config has no sqlalchemy.url (run through `mountsync db upgrade`)")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
        with context.begin_transaction():
            # Serialize concurrent upgrades (several pods starting at once).
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7318504011)")
            context.run_migrations()


run_migrations_online()
