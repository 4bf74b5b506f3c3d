"""Command-line arguments for Flower, and the authentication rule ``mountsync flower`` enforces.

Flower reads its own ``FLOWER_*`` variables from the environment (``FLOWER_BASIC_AUTH``,
``FLOWER_AUTH`` + ``FLOWER_AUTH_PROVIDER`` + ``FLOWER_OAUTH2_*``, ``FLOWER_COOKIE_SECRET``), so
secrets are never put on the command line (where ``ps`` would show them). Flower without
authentication lets anyone revoke tasks or shut workers down, so it is refused on any address
but loopback.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping

import structlog

from mountsync.shared.errors import ConfigError

log = structlog.get_logger("mountsync.flower")

OAUTH_VARS = (
    "FLOWER_AUTH_PROVIDER", "FLOWER_OAUTH2_KEY", "FLOWER_OAUTH2_SECRET", "FLOWER_OAUTH2_REDIRECT_URI",
)  # fmt: skip
# Autoscaled worker pods come and go: forget a worker this long after it went offline.
PURGE_OFFLINE_WORKERS_S = 600
STATE_SAVE_INTERVAL_MS = 60_000


def auth_mode(environ: Mapping[str, str]) -> str:
    """``basic``, ``oauth`` or ``none``; ``ConfigError`` for a half-configured setup."""
    basic = environ.get("FLOWER_BASIC_AUTH", "")
    if basic:
        bad = [i for i, entry in enumerate(basic.split(",")) if ":" not in entry or entry.startswith(":")]
        if bad:
            raise ConfigError("FLOWER_BASIC_AUTH must be user:password[,user:password...]")
        return "basic"
    if environ.get("FLOWER_AUTH"):
        missing = [name for name in OAUTH_VARS if not environ.get(name)]
        if missing:
            raise ConfigError(f"FLOWER_AUTH is set for OAuth but {', '.join(missing)} is missing")
        if not environ.get("FLOWER_COOKIE_SECRET"):
            log.warning("FLOWER_COOKIE_SECRET is not set: sessions end at every restart and do "
                        "not work across replicas")  # fmt: skip
        return "oauth"
    return "none"


def is_loopback(address: str) -> bool:
    if address in ("localhost", ""):
        return address == "localhost"
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def flower_args(
    environ: Mapping[str, str],
    *,
    address: str,
    port: int,
    persistent: bool = False,
    max_tasks: int = 20000,
    url_prefix: str = "",
    read_only: bool = False,
) -> list[str]:
    """Arguments after ``celery -A mountsync.workers.app flower``; refuses an open Flower off loopback."""
    mode = auth_mode(environ)
    if mode == "none":
        if not is_loopback(address):
            raise ConfigError(
                f"refusing to serve Flower on {address or 'all addresses'} without authentication; "
                "set FLOWER_BASIC_AUTH=user:password (or FLOWER_AUTH with OAuth) or use --address 127.0.0.1"
            )
        log.warning("Flower runs without authentication (loopback only); its /api answers 401")
    args = [
        f"--address={address}",
        f"--port={port}",
        f"--max_tasks={max_tasks}",
        f"--purge_offline_workers={PURGE_OFFLINE_WORKERS_S}",
    ]
    if url_prefix:
        args.append(f"--url_prefix={url_prefix.strip('/')}")
    if read_only:
        args.append("--read_only=True")
    if persistent:
        state_dir = environ.get("MOUNTSYNC_STATE_DIR", ".")
        os.makedirs(state_dir, exist_ok=True)
        args += [
            "--persistent=True",
            f"--db={os.path.join(state_dir, 'flower.db')}",
            f"--state_save_interval={STATE_SAVE_INTERVAL_MS}",
        ]
    return args
