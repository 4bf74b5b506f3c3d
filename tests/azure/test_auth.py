"""Where Azure credentials come from (pure: explicit environment mappings, no network)."""

from __future__ import annotations

import pytest

from mountsync.shared.errors import ConfigError
from mountsync.shared.storage.azure_auth import account_from_url, resolve_access

CONN = "DefaultEndpointsProtocol=https;AccountName=acmeraw;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net"


def test_connection_string_from_the_sdk_variable() -> None:
    access = resolve_access({}, "blob", {"AZURE_STORAGE_CONNECTION_STRING": CONN})
    assert access.account_url == "https://acmeraw.blob.core.windows.net"
    assert access.account_name == "acmeraw"
    queue = resolve_access({}, "queue", {"AZURE_STORAGE_CONNECTION_STRING": CONN})
    assert queue.account_url == "https://acmeraw.queue.core.windows.net"


def test_development_storage_shortcut() -> None:
    env = {"AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"}
    access = resolve_access({}, "queue", env)
    assert access.account_url == "http://127.0.0.1:10001/devstoreaccount1"
    assert access.account_name == "devstoreaccount1"


def test_named_set_wins_and_never_falls_back() -> None:
    env = {
        "AZURE_STORAGE_CONNECTION_STRING": CONN,
        "AZURE_STORAGE_CONNECTION_STRING_PROD_EU": CONN.replace("acmeraw", "acmeprod"),
    }
    assert resolve_access({"credentials": "prod-eu"}, "blob", env).account_name == "acmeprod"
    with pytest.raises(ConfigError, match="AZURE_STORAGE_CONNECTION_STRING_MISSING"):
        resolve_access({"credentials": "missing"}, "blob", env)


def test_account_url_with_sas_or_key() -> None:
    url = "https://acmeraw.blob.core.windows.net"
    sas = resolve_access({"account_url": url}, "blob", {"AZURE_STORAGE_SAS_TOKEN": "?sv=1&sig=x"})
    assert sas.credential == "sv=1&sig=x"
    key = resolve_access({"account_url": url}, "blob", {"AZURE_STORAGE_KEY": "c2VjcmV0"})
    assert key.credential == {"account_name": "acmeraw", "account_key": "c2VjcmV0"}
    from_conn = resolve_access({"account_url": url}, "queue", {"AZURE_STORAGE_CONNECTION_STRING": CONN})
    assert from_conn.account_url == "https://acmeraw.queue.core.windows.net"
    assert from_conn.credential["account_key"] == "c2VjcmV0"
    assert "c2VjcmV0" not in repr(from_conn)


def test_account_url_without_a_secret_uses_default_azure_credential() -> None:
    access = resolve_access({"endpoint_url": "https://acmeraw.blob.core.windows.net/"}, "blob", {})
    assert type(access.credential).__name__ == "DefaultAzureCredential"
    assert access.how.endswith("DefaultAzureCredential")


def test_sas_in_the_stored_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="SAS"):
        resolve_access({"account_url": "https://a.blob.core.windows.net/?sv=1&sig=abc"}, "blob", {})


def test_nothing_configured_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match="AZURE_STORAGE_CONNECTION_STRING"):
        resolve_access({}, "blob", {})
    with pytest.raises(ConfigError, match="malformed"):
        resolve_access({}, "blob", {"AZURE_STORAGE_CONNECTION_STRING": "garbage"})


@pytest.mark.parametrize(
    ("url", "account"),
    [
        ("https://acmeraw.blob.core.windows.net", "acmeraw"),
        ("https://acmeraw.dfs.core.windows.net/in/x", "acmeraw"),
        ("http://127.0.0.1:10000/devstoreaccount1", "devstoreaccount1"),
        ("http://localhost:10000/devstoreaccount1/c/k", "devstoreaccount1"),
    ],
)
def test_account_from_url(url: str, account: str) -> None:
    assert account_from_url(url) == account
