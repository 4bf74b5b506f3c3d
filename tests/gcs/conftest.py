"""GCS tests: stand-ins come from tests/standins/gcs.py (session-scoped, free ports)."""

from __future__ import annotations

import uuid

import pytest

from tests.standins.gcs import (  # noqa: F401
    fake_gcs,
    fake_gcs_notifying,
    gcs_resumable_emulator,
    pubsub_emulator,
)


@pytest.fixture
def bucket_name() -> str:
    """A bucket name no other test uses (stand-ins live for the whole session)."""
    return f"ms-{uuid.uuid4().hex[:16]}"
