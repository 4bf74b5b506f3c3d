"""The base of the migration stores: one short transaction per public method, on a pool.

Each store (``JobStore`` here; ``ItemStore``, ``PartStore``, ``VerificationCache`` and
``Lifecycle`` in ``mountsync.workers.migration``) owns the SQL of one role. ``_tx`` is for the
store's own methods only: code outside a store calls its public methods, so every query of a
role is found in one module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from mountsync.shared.catalog.db import transaction


class PooledStore:
    """``pool`` is a psycopg ``ConnectionPool`` (autocommit off); methods are thread-safe, so
    the threads of one transfer may share a store."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        with transaction(self.pool) as conn, conn.cursor(row_factory=dict_row) as cur:
            yield cur
