"""Fixtures for the Azure tests: Azurite (shared stand-in) and fresh containers/queues per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.standins.azure import AzuriteEndpoints, azurite  # noqa: F401


@pytest.fixture
def container(azurite: AzuriteEndpoints) -> Iterator[Any]:  # noqa: F811
    """A new, empty blob container (ContainerClient), deleted after the test."""
    client = azurite.blob_service().create_container(f"c{uuid.uuid4().hex[:20]}")
    try:
        yield client
    finally:
        client.delete_container()


@pytest.fixture
def azure_env(azurite: AzuriteEndpoints, monkeypatch: pytest.MonkeyPatch) -> AzuriteEndpoints:  # noqa: F811
    """Azurite's connection string in the environment, other Azure credentials removed."""
    for name in ("AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    return azurite


@pytest.fixture
def eventgrid() -> Iterator[Any]:
    """The project's Event Grid namespace test server (fresh per test), key ``test-key``."""
    from tests.azure.eventgrid_server import EventGridServer

    server = EventGridServer(lock_s=30.0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def storage_queue(azurite: AzuriteEndpoints) -> Iterator[Any]:  # noqa: F811
    """A new Storage Queue (QueueClient, raw text bodies), deleted after the test."""
    from azure.storage.queue import QueueClient

    name = f"q{uuid.uuid4().hex[:20]}"
    client = QueueClient.from_connection_string(
        azurite.connection_string, name, message_decode_policy=None, message_encode_policy=None
    )
    client.create_queue()
    try:
        yield client
    finally:
        client.delete_queue()
