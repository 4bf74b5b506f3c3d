"""Fixtures for the S3 tests: the moto stand-in and a fresh bucket opened through the adapter."""

from __future__ import annotations

import uuid

import pytest

from mountsync.shared.storage import open_storage
from mountsync.shared.storage.s3 import S3Storage
from tests.standins.s3 import MotoEndpoints, moto, moto_server  # noqa: F401


@pytest.fixture
def bucket_name(moto: MotoEndpoints) -> str:  # noqa: F811
    name = f"bkt-{uuid.uuid4().hex[:12]}"
    moto.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def storage(moto: MotoEndpoints, bucket_name: str) -> S3Storage:  # noqa: F811
    adapter = open_storage(f"s3://{bucket_name}/", {"endpoint_url": moto.endpoint_url})
    assert isinstance(adapter, S3Storage)
    return adapter
