"""The contract suite's one fixture: ``rig``, an empty bucket on each provider in turn."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.storage.rig import PROVIDERS, RIGS, StorageRig


@pytest.fixture(params=PROVIDERS)
def rig(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StorageRig:
    """The same bucket contract on ``local``, ``s3`` (moto), ``gcs`` (fake-gcs-server) and
    ``azure`` (Azurite); only the stand-ins of the providers that run are started."""
    return RIGS[str(request.param)](request, monkeypatch, tmp_path)
