"""Checking http(s) URLs given on the command line or in mount options, before an SDK sees them.

Why: boto3 and friends turn a malformed endpoint into a traceback deep in their client factory
(``ValueError: Invalid endpoint: ://``); an operator should get one line naming the option.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from mountsync.shared.errors import BadInput


def check_http_url(value: str, option: str, example: str = "https://HOST[:PORT]") -> str:
    """``value`` if it is an absolute http(s) URL with a host, else ``BadInput`` naming ``option``."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number or out of range
    except ValueError:
        raise BadInput(f"{option} {value!r} is not a valid URL (expected {example})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"{option} {value!r} is not an http(s) URL (expected {example})")
    return value
