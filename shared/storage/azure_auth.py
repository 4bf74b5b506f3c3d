"""Where Azure Storage credentials come from, for the Blob adapter and the Storage Queue consumer.

Resolution order (the first that applies wins; secrets never come from mount options, which are
stored in the catalog):

1. ``credentials=NAME`` (a named credential set): the environment variable
   ``AZURE_STORAGE_CONNECTION_STRING_<NAME>``, or, with ``account_url``,
   ``AZURE_STORAGE_SAS_TOKEN_<NAME>`` / ``AZURE_STORAGE_KEY_<NAME>``. ``<NAME>`` is upper-cased
   with every character other than A-Z, 0-9 turned into ``_``. A named set that resolves to nothing
   is a ``ConfigError`` (never a silent fallback to other credentials).
2. ``account_url`` (alias ``endpoint_url``): ``AZURE_STORAGE_SAS_TOKEN``, else ``AZURE_STORAGE_KEY``
   (shared key for the account named by the URL), else the key in
   ``AZURE_STORAGE_CONNECTION_STRING`` when it names the same account, else
   ``DefaultAzureCredential`` (managed identity, workload identity, ``AZURE_CLIENT_*``, az login).
   A URL that carries a SAS (``?...sig=``) is refused: the URL would be stored in the catalog.
3. ``AZURE_STORAGE_CONNECTION_STRING`` (the SDK convention; Azurite's too).

The account name (used to tell events of different storage accounts apart) is the connection
string's ``AccountName``, else the first DNS label of the host (``acct.blob.core.windows.net``),
else, for path-style endpoints on an IP or ``localhost`` (Azurite), the first path segment.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mountsync.shared.errors import ConfigError, MissingExtra

SERVICES = ("blob", "queue")
DEV_PORTS = {"blob": 10000, "queue": 10001}
DEV_ACCOUNT = "devstoreaccount1"


@dataclass(frozen=True)
class AzureAccess:
    """How to reach one storage service: the endpoint plus a credential (never printed)."""

    service: str
    account_url: str
    account_name: str
    connection_string: str | None = field(default=None, repr=False)
    credential: Any = field(default=None, repr=False)
    how: str = ""  # which rule matched, for `mount check` output and logs (no secret in it)


def sdk_environ() -> Mapping[str, str]:
    """The process environment, read only for the SDK's credential conventions.

    The Azure Storage SDK does not read ``AZURE_STORAGE_CONNECTION_STRING`` itself (boto3 and
    google-auth do read their variables); this is the one place mountsync does it for them.
    """
    return os.environ


def env_suffix(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def parse_connection_string(text: str) -> dict[str, str]:
    """``Key=Value;...`` into an upper-cased-key dict; ``ConfigError`` when malformed."""
    pairs = [part.split("=", 1) for part in text.strip().rstrip(";").split(";") if part.strip()]
    if not pairs or any(len(pair) != 2 for pair in pairs):
        raise ConfigError("the Azure Storage connection string is malformed (want Key=Value;...)")
    return {key.strip().upper(): value.strip() for key, value in pairs}


def account_from_url(url: str) -> str:
    """Account name from a service URL: host-style first label, or path-style first segment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if _is_local(host):
        first = parts.path.strip("/").split("/", 1)[0]
        if not first:
            raise ConfigError(f"{url!r}: a local endpoint needs the account in the path")
        return first
    label = host.split(".", 1)[0]
    if not label:
        raise ConfigError(f"{url!r} is not an Azure Storage account URL")
    return label


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def service_url_from_connection_string(settings: Mapping[str, str], service: str) -> str:
    if settings.get("USEDEVELOPMENTSTORAGE", "").lower() == "true":
        return f"http://127.0.0.1:{DEV_PORTS[service]}/{DEV_ACCOUNT}"
    explicit = settings.get(f"{service.upper()}ENDPOINT")
    if explicit:
        return explicit.rstrip("/")
    name = settings.get("ACCOUNTNAME")
    if not name:
        raise ConfigError(f"the connection string has neither {service.title()}Endpoint nor AccountName")
    protocol = settings.get("DEFAULTENDPOINTSPROTOCOL", "https")
    suffix = settings.get("ENDPOINTSUFFIX", "core.windows.net")
    return f"{protocol}://{name}.{service}.{suffix}"


def from_connection_string(text: str, service: str, how: str) -> AzureAccess:
    settings = parse_connection_string(text)
    url = service_url_from_connection_string(settings, service)
    name = settings.get("ACCOUNTNAME") or account_from_url(url)
    if settings.get("USEDEVELOPMENTSTORAGE", "").lower() == "true":
        name = DEV_ACCOUNT
    return AzureAccess(service, url, name, connection_string=text, how=how)


def _service_url(account_url: str, service: str) -> str:
    """``https://acct.blob.core.windows.net`` -> the same account's queue endpoint when asked."""
    url = account_url.rstrip("/")
    parts = urlsplit(url)
    host = parts.hostname or ""
    for other in SERVICES:
        marker = f".{other}."
        if other != service and marker in host:
            return url.replace(marker, f".{service}.", 1)
    return url


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"account URL {url!r} must look like https://ACCOUNT.blob.core.windows.net")
    if "sig" in parse_qs(parts.query):
        raise ConfigError(
            "the account URL carries a SAS token; mount options are stored in the catalog, so put "
            "the token in AZURE_STORAGE_SAS_TOKEN (or a named credential set) instead"
        )


def _default_credential() -> Any:
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError as exc:
        raise MissingExtra("DefaultAzureCredential needs azure-identity: pip install 'mountsync[azure]'") from exc
    return DefaultAzureCredential()


def _with_account_url(
    url: str, service: str, environ: Mapping[str, str], sas: str | None, key: str | None, how: str
) -> AzureAccess:
    name = account_from_url(url)
    if sas:
        return AzureAccess(service, url, name, credential=sas.lstrip("?"), how=f"{how} + SAS token")
    if key:
        credential = {"account_name": name, "account_key": key}
        return AzureAccess(service, url, name, credential=credential, how=f"{how} + account key")
    shared = environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if shared:
        settings = parse_connection_string(shared)
        if settings.get("ACCOUNTNAME") == name and settings.get("ACCOUNTKEY"):
            credential = {"account_name": name, "account_key": settings["ACCOUNTKEY"]}
            return AzureAccess(service, url, name, credential=credential,
                               how=f"{how} + key from AZURE_STORAGE_CONNECTION_STRING")  # fmt: skip
    return AzureAccess(service, url, name, credential=_default_credential(), how=f"{how} + DefaultAzureCredential")


def _named(name: str, account_url: str | None, service: str, environ: Mapping[str, str]) -> AzureAccess:
    suffix = env_suffix(name)
    conn = environ.get(f"AZURE_STORAGE_CONNECTION_STRING_{suffix}")
    if conn:
        return from_connection_string(conn, service, f"credential set {name!r}")
    sas = environ.get(f"AZURE_STORAGE_SAS_TOKEN_{suffix}")
    key = environ.get(f"AZURE_STORAGE_KEY_{suffix}")
    if account_url and (sas or key):
        return _with_account_url(account_url, service, {}, sas, key, f"credential set {name!r}")
    raise ConfigError(
        f"credential set {name!r} is not defined: set AZURE_STORAGE_CONNECTION_STRING_{suffix}, "
        f"or --account-url with AZURE_STORAGE_SAS_TOKEN_{suffix} or AZURE_STORAGE_KEY_{suffix}"
    )


def resolve_access(
    options: Mapping[str, Any], service: str = "blob", environ: Mapping[str, str] | None = None
) -> AzureAccess:
    """Endpoint and credential for ``service`` from mount/producer options and the environment."""
    env = sdk_environ() if environ is None else environ
    raw_url = options.get("account_url") or options.get("endpoint_url")
    account_url = _service_url(str(raw_url), service) if raw_url else None
    if account_url:
        _check_url(account_url)
    if options.get("credentials"):
        return _named(str(options["credentials"]), account_url, service, env)
    if account_url:
        return _with_account_url(
            account_url, service, env, env.get("AZURE_STORAGE_SAS_TOKEN"),
            env.get("AZURE_STORAGE_KEY"), "account URL",
        )  # fmt: skip
    conn = env.get("AZURE_STORAGE_CONNECTION_STRING")
    if conn:
        return from_connection_string(conn, service, "AZURE_STORAGE_CONNECTION_STRING")
    raise ConfigError(
        "no Azure Storage credentials: set AZURE_STORAGE_CONNECTION_STRING, or give --account-url "
        "(with AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_KEY or a DefaultAzureCredential identity), "
        "or --credentials NAME"
    )
