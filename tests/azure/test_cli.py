"""``mountsync mount add`` on az:// URLs: the credential check runs against Azurite."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.standins.azure import AzuriteEndpoints


def test_mount_add_checks_credentials_and_stores_no_secret(
    cli: Any, catalog: Any, container: Any, azurite: AzuriteEndpoints
) -> None:
    name = f"az-{uuid.uuid4().hex[:6]}"
    url = f"azure://{container.container_name}/frames"
    added = cli("mount", "add", name, url, "--writable", "--no-initial-reindex", "--json",
                AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)  # fmt: skip
    assert added.returncode == 0, added.stderr
    described = json.loads(added.stdout)
    assert (described["provider"], described["bucket"], described["prefix"]) == (
        "azure", container.container_name, "frames/",
    )  # fmt: skip
    assert list(container.list_blobs()) == []  # the write probe was deleted
    stored = catalog.execute("SELECT options::text, url FROM mounts WHERE name = %s", (name,)).fetchone()
    assert azurite.account_key not in "".join(stored)


def test_mount_add_refuses_wrong_credentials_without_printing_them(
    cli: Any, catalog: Any, container: Any, azurite: AzuriteEndpoints
) -> None:
    wrong = azurite.connection_string.replace(azurite.account_key, "d3Jvbmcga2V5" * 8)
    refused = cli("mount", "add", "az-bad", f"az://{container.container_name}/", "--no-initial-reindex",
                  AZURE_STORAGE_CONNECTION_STRING=wrong)  # fmt: skip
    assert refused.returncode != 0
    assert "credentials" in refused.stderr.lower()
    assert "d3Jvbmcga2V5" not in refused.stderr + refused.stdout
    assert catalog.execute("SELECT count(*) FROM mounts").fetchone()[0] == 0


def test_mount_add_refuses_a_missing_container(cli: Any, catalog: Any, azurite: AzuriteEndpoints) -> None:
    refused = cli("mount", "add", "az-missing", "az://no-such-container/", "--no-initial-reindex",
                  AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)  # fmt: skip
    assert refused.returncode == 2
    assert "does not exist" in refused.stderr
