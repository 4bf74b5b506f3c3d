"""Deletes that name a version, on a real versioned bucket (moto): the key may still be alive."""

from __future__ import annotations

from typing import Any

import pytest

from mountsync.producers.normalize.s3_enrich import VersionedDeleteEnricher
from mountsync.shared.errors import RetryableError
from mountsync.shared.events import Kind, ObjectChange, Provider, Source, normalize_etag
from tests.standins.s3 import MotoEndpoints, free_port


@pytest.fixture
def versioned(moto: MotoEndpoints) -> Any:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    return s3


def deleted(key: str, version: str | None, sequencer: str = "00AA") -> ObjectChange:
    return ObjectChange(
        provider=Provider.S3, bucket="versioned", key=key, kind=Kind.DELETED, event_ns=5,
        source=Source.S3_SQS, version=version, sequencer=sequencer.ljust(32, "0"), source_id="m",
    )  # fmt: skip


def enricher(moto: MotoEndpoints) -> VersionedDeleteEnricher:
    return VersionedDeleteEnricher(
        lambda bucket: {"endpoint_url": moto.endpoint_url} if bucket == "versioned" else None
    )


def test_deleting_a_noncurrent_version_keeps_the_live_object(moto: MotoEndpoints, versioned: Any) -> None:
    v1 = versioned.put_object(Bucket="versioned", Key="f.jpg", Body=b"one")["VersionId"]
    v2 = versioned.put_object(Bucket="versioned", Key="f.jpg", Body=b"second")
    versioned.delete_object(Bucket="versioned", Key="f.jpg", VersionId=v1)

    (change,) = enricher(moto)([deleted("f.jpg", v1)])

    assert change.kind is Kind.CREATED
    assert (change.size, change.etag, change.version) == (6, normalize_etag(v2["ETag"]), v2["VersionId"])
    assert change.sequencer == "00AA".ljust(32, "0") and change.event_ns == 5


def test_deleting_the_current_version_brings_back_the_previous(moto: MotoEndpoints, versioned: Any) -> None:
    v1 = versioned.put_object(Bucket="versioned", Key="f.jpg", Body=b"one")
    v2 = versioned.put_object(Bucket="versioned", Key="f.jpg", Body=b"second")["VersionId"]
    versioned.delete_object(Bucket="versioned", Key="f.jpg", VersionId=v2)

    (change,) = enricher(moto)([deleted("f.jpg", v2)])

    assert (change.kind, change.size, change.version) == (Kind.CREATED, 3, v1["VersionId"])


def test_a_delete_marker_or_a_vanished_key_stays_a_delete(moto: MotoEndpoints, versioned: Any) -> None:
    versioned.put_object(Bucket="versioned", Key="gone.jpg", Body=b"x")
    marker = versioned.delete_object(Bucket="versioned", Key="gone.jpg")["VersionId"]
    changes = [deleted("gone.jpg", marker), deleted("never.jpg", "abc")]
    assert enricher(moto)(changes) == changes


def test_deletes_without_a_version_and_unmounted_buckets_are_not_looked_up(
    moto: MotoEndpoints,
) -> None:
    calls: list[str] = []

    def options_for(bucket: str) -> None:
        calls.append(bucket)
        return None

    plain = deleted("a.jpg", None)
    null = deleted("b.jpg", "null")
    unmounted = deleted("c.jpg", "v9")
    assert VersionedDeleteEnricher(options_for)([plain, null, unmounted]) == [plain, null, unmounted]
    assert calls == ["versioned"]  # only the one that names a version


def test_storage_that_does_not_answer_is_retryable(moto: MotoEndpoints) -> None:
    broken = VersionedDeleteEnricher(lambda _b: {"endpoint_url": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(RetryableError):
        broken([deleted("a.jpg", "v1")])


def test_every_s3_path_enriches_through_the_mount_of_the_bucket(
    moto: MotoEndpoints, versioned: Any, settings: Any, add_mount: Any
) -> None:
    """SQS producer, MinIO push and replay share ``enricher_for``: it finds the mount's options."""
    from mountsync.producers.sources import enricher_for
    from mountsync.shared.catalog.db import open_pool

    add_mount("ver", "s3://versioned", endpoint_url=moto.endpoint_url)
    v1 = versioned.put_object(Bucket="versioned", Key="f.jpg", Body=b"one")["VersionId"]
    versioned.put_object(Bucket="versioned", Key="f.jpg", Body=b"second")
    versioned.delete_object(Bucket="versioned", Key="f.jpg", VersionId=v1)
    pool = open_pool(settings.database_url, min_size=1, max_size=1, name="test-enrich")
    try:
        enrich = enricher_for("s3-sqs", pool)
        assert enrich is not None
        (change,) = enrich([deleted("f.jpg", v1)])
    finally:
        pool.close()
    assert (change.kind, change.size) == (Kind.CREATED, 6)
