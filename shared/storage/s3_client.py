"""Building S3 clients: named credential sets, MinIO path-style, and one shared model loader."""

from __future__ import annotations

import threading
import weakref
from datetime import UTC, datetime
from typing import Any

from mountsync.shared.errors import ConfigError
from mountsync.shared.storage.url import StorageURL


def make_s3_client(
    url: StorageURL, profile: str | None, region: str | None, endpoint_url: str | None, addressing_style: str | None
) -> Any:
    """A boto3-compatible S3 client for one mount: named credential set, region, endpoint and
    addressing style (path-style for anything that is not AWS)."""
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    session = _botocore_session(profile)
    try:
        session.get_scoped_config()  # a missing profile fails here, with its name
    except ProfileNotFound as exc:
        raise ConfigError(
            f"credential set {profile!r} is not a profile in the AWS config or "
            "credentials files; add it or choose another --credentials NAME"
        ) from exc

    def build(style: str | None) -> Any:
        # Every request with a body carries Content-MD5 (the service rejects a body that does
        # not match it), so the SigV4 SHA-256 of the payload would only hash it a second
        # time; botocore skips it by itself on https, this skips it on plain-http endpoints.
        s3_config: dict[str, Any] = {"payload_signing_enabled": False}
        if style:
            s3_config["addressing_style"] = style
        config = Config(
            s3=s3_config,
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=32,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return session.create_client("s3", region_name=region, endpoint_url=endpoint_url, config=config)

    # MinIO and stand-ins want the bucket in the path, not the host. With an explicit
    # endpoint that is known before building; otherwise boto3's own configuration
    # (AWS_ENDPOINT_URL) decides, and the client is built again only when it is not AWS.
    style = addressing_style
    if style is None and endpoint_url and not _is_aws(endpoint_url):
        style = "path"
    try:
        client = build(style)
        if style is None and not _is_aws(client.meta.endpoint_url):
            client = build("path")
    except BotoCoreError as exc:
        raise ConfigError(f"cannot configure S3 for {url}: {exc}") from exc
    _SESSION_OF[client] = session
    return client


def session_of(client: Any) -> Any:
    """The botocore session a client of ``make_s3_client`` was built from (its credentials)."""
    return _SESSION_OF[client]


# The session each client was built from (building a session costs tens of milliseconds).
_SESSION_OF: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


_LOADER: Any = None
_LOADER_LOCK = threading.Lock()


def _botocore_session(profile: str | None) -> Any:
    """A fresh botocore session (credentials and configuration read as usual, as boto3 would)
    that shares one process-wide loader of the service models.

    Loading and parsing the S3 model is most of the CPU of building a client (tens of
    milliseconds); a migration opens its storages once per chunk task, and a fresh model per
    client cost more CPU than hashing the data. The loader only caches the SDK's own JSON files."""
    global _LOADER
    import botocore.loaders
    import botocore.session

    with _LOADER_LOCK:
        if _LOADER is None:
            _LOADER = botocore.loaders.create_loader()
        loader = _LOADER
    session = botocore.session.Session(profile=profile)
    session.register_component("data_loader", loader)
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
    return session


def parse_timestamp(value: Any) -> datetime:
    """A response timestamp: ISO 8601 (every ``LastModified`` of a listing) parsed by the standard
    library, anything else (RFC 822 headers, epoch numbers) by botocore's own parser.

    botocore parses every timestamp with dateutil, about 0.4 ms each: a listing of 1,000 keys
    cost more CPU than the requests that fetched it."""
    if isinstance(value, str) and value[-1:] == "Z" and "T" in value:
        try:
            return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)
        except ValueError:
            pass
    from botocore.utils import parse_timestamp as botocore_parse

    parsed: datetime = botocore_parse(value)
    return parsed


def _is_aws(endpoint_url: str | None) -> bool:
    host = (endpoint_url or "").split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))
