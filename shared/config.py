"""Settings, read once at the process edge from a mapping (the environment plus ``.env``).

Nothing in ``shared/`` reads ``os.environ``: the CLI entry point builds ``Settings`` and passes
it down. Values are plain strings and numbers; ``describe()`` (and so ``repr``) redacts passwords in
URLs and leaves out ``extra`` (other ``MOUNTSYNC_*`` variables, which may hold secrets), so a
settings object can be logged. Read a secret from ``extra`` only where it is used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mountsync.shared.errors import ConfigError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DATABASE_URL = "postgresql://127.0.0.1:5432/mountsync"
MIN_VISIBILITY_S = 6


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe for logs and CLI output)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration(raw: str) -> float:
    """Seconds from ``"604800"``, ``"7d"``, ``"12h"``, ``"30m"`` or ``"90s"``; ``ValueError`` otherwise."""
    text = raw.strip().lower()
    unit = _DURATION_UNITS.get(text[-1:], 0.0)
    return float(text[:-1]) * unit if unit else float(text)


@dataclass(frozen=True)
class Settings:
    redis_url: str = DEFAULT_REDIS_URL
    database_url: str = DEFAULT_DATABASE_URL
    # Prefix for every Redis key mountsync and Celery write (queues included); lets several
    # deployments or test runs share one Redis without touching each other's data.
    redis_prefix: str = ""
    # Producers stop pulling while the ``changes`` queue holds more messages than this.
    max_queue_depth: int = 200
    # ``POST /eventgrid`` answers 503 (Event Grid retries) while its inbox holds this many requests.
    inbox_max_depth: int = 100_000
    # Producer batching: up to this many changes per apply task, or whatever arrived in the window.
    batch_size: int = 2000
    batch_window_s: float = 0.5
    # ``serve`` drains its inboxes in a child process per source ("process"), off the receivers'
    # GIL, or in a thread of its own ("thread": one process, for tight containers and debugging).
    inbox_drainer: str = "process"
    feed_maxlen: int = 100_000
    # Change-log entries older than this are pruned (``mountsync.prune_changes``, hourly via beat);
    # a reader asking for an older cursor gets 410 and re-lists ``/objects``.
    changes_retention_s: float = 7 * 86400.0
    # A task delivered more often than this is dead-lettered instead of run again (poison guard).
    max_deliveries: int = 5
    # A sink whose receiver keeps failing is retried (backoff with jitter) this long, then paused.
    sink_retry_for_s: float = 24 * 3600.0
    # A task held by a worker that vanished (SIGKILL, OOM, eviction) is redelivered after this.
    # Live workers refresh the tasks they hold every timeout/6 s (workers/recovery.py), so a task
    # may run far longer than this without being redelivered.
    visibility_timeout_s: int = 60
    task_time_limit_s: int = 3600
    reindex_interval_s: int = 3600
    fs_rescan_interval_s: float = 300.0
    log_format: str = "console"
    log_level: str = "INFO"
    extra: Mapping[str, str] = field(default_factory=dict, repr=False)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """Settings as plain data with secrets redacted (for ``--json`` output and logs)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            out[f.name] = redact_url(value) if f.name.endswith("_url") else value
        return out

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in self.describe().items())})"


INBOX_DRAINERS = ("process", "thread")

_ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "MOUNTSYNC_REDIS_URL": ("redis_url", str),
    "MOUNTSYNC_DATABASE_URL": ("database_url", str),
    "MOUNTSYNC_REDIS_PREFIX": ("redis_prefix", str),
    "MOUNTSYNC_MAX_QUEUE_DEPTH": ("max_queue_depth", int),
    "MOUNTSYNC_INBOX_MAX_DEPTH": ("inbox_max_depth", int),
    "MOUNTSYNC_BATCH_SIZE": ("batch_size", int),
    "MOUNTSYNC_BATCH_WINDOW": ("batch_window_s", float),
    "MOUNTSYNC_INBOX_DRAINER": ("inbox_drainer", str),
    "MOUNTSYNC_FEED_MAXLEN": ("feed_maxlen", int),
    "MOUNTSYNC_CHANGES_RETENTION": ("changes_retention_s", duration),
    "MOUNTSYNC_MAX_DELIVERIES": ("max_deliveries", int),
    "MOUNTSYNC_SINK_RETRY_FOR": ("sink_retry_for_s", duration),
    "MOUNTSYNC_VISIBILITY_TIMEOUT": ("visibility_timeout_s", int),
    "MOUNTSYNC_TASK_TIME_LIMIT": ("task_time_limit_s", int),
    "MOUNTSYNC_REINDEX_INTERVAL": ("reindex_interval_s", int),
    "MOUNTSYNC_FS_RESCAN_INTERVAL": ("fs_rescan_interval_s", float),
    "MOUNTSYNC_LOG_FORMAT": ("log_format", str),
    "MOUNTSYNC_LOG_LEVEL": ("log_level", str),
}

# A zero or negative value would stall (empty batches, no window) or break the loops that use it.
_POSITIVE = (
    "MOUNTSYNC_BATCH_SIZE",
    "MOUNTSYNC_BATCH_WINDOW",
    "MOUNTSYNC_INBOX_MAX_DEPTH",
    "MOUNTSYNC_MAX_DELIVERIES",
    "MOUNTSYNC_CHANGES_RETENTION",
    "MOUNTSYNC_SINK_RETRY_FOR",
)


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build settings from an environment mapping; a bad value is a ``ConfigError`` naming it."""
    values: dict[str, Any] = {}
    for var, (name, kind) in _ENV.items():
        raw = environ.get(var)
        if raw is None or raw == "":
            continue
        try:
            values[name] = kind(raw)
        except ValueError:
            raise ConfigError(
                f"{var}={raw!r} is not a valid {getattr(kind, '__name__', 'value')}; fix or unset it"
            ) from None
    extra = {k: v for k, v in environ.items() if k.startswith("MOUNTSYNC_") and k not in _ENV}
    settings = Settings(**values, extra=extra)
    if settings.visibility_timeout_s < MIN_VISIBILITY_S:
        raise ConfigError(
            f"MOUNTSYNC_VISIBILITY_TIMEOUT={settings.visibility_timeout_s} must be at least {MIN_VISIBILITY_S} "
            "seconds (workers refresh the tasks they hold every timeout/6 s)"
        )
    for var in _POSITIVE:
        if not 0 < getattr(settings, _ENV[var][0]) < math.inf:  # also refuses nan and inf
            raise ConfigError(f"{var}={environ.get(var)!r} must be a number greater than 0; fix or unset it")
    if settings.inbox_drainer not in INBOX_DRAINERS:
        raise ConfigError(
            f"MOUNTSYNC_INBOX_DRAINER={settings.inbox_drainer!r} must be one of {', '.join(INBOX_DRAINERS)}; "
            "fix or unset it"
        )
    if settings.max_queue_depth < 0:
        raise ConfigError(f"MOUNTSYNC_MAX_QUEUE_DEPTH={environ.get('MOUNTSYNC_MAX_QUEUE_DEPTH')!r} must be 0 or more")
    if settings.feed_maxlen < 0:
        raise ConfigError(
            f"MOUNTSYNC_FEED_MAXLEN={environ.get('MOUNTSYNC_FEED_MAXLEN')!r} must be 0 (no Redis stream) or more"
        )
    for url, var in ((settings.redis_url, "MOUNTSYNC_REDIS_URL"),):
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"{var} must be a redis:// URL, got {redact_url(url)!r}")
    if not settings.database_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            f"MOUNTSYNC_DATABASE_URL must be a postgresql:// URL, got {redact_url(settings.database_url)!r}"
        )
    return settings
