"""The storage rig: an empty bucket on every provider, for the one parametrized ``rig`` fixture.

Every test in ``tests/storage/`` takes ``rig`` and runs four times: over a local directory
(``file://``), S3 (moto server), GCS (fake-gcs-server) and Azure Blob (Azurite), as
cloudpathlib's ``rig`` fixture does for its clouds. Where a provider genuinely behaves
differently, the rig's ``Capabilities`` say so with the reason, and the test asserts the
provider's documented behaviour instead of skipping.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mountsync.shared.errors import BadInput, MountsyncError, StorageUnavailable
from mountsync.shared.storage import ObjectInfo, Storage, open_storage
from mountsync.shared.storage.gcs_resumable import CHUNK_ALIGN
from mountsync.shared.storage.s3 import MIN_PART_SIZE

PROVIDERS = ["local", "s3", "gcs", "azure"]


@dataclass(frozen=True)
class Capabilities:
    """What differs between providers, each ``False`` with the reason in ``why_not``."""

    paginates: bool = True
    etag_is_content_md5: bool = True
    version_without_versioning: bool = False
    listing_sequencer: bool = False
    put_checks_md5: bool = False
    parts_in_any_order: bool = True
    abort_discards_parts: bool = True
    # A missing bucket makes ``list`` raise this (``check`` always says BadInput: a user mistake).
    missing_bucket_on_list: type[MountsyncError] = BadInput
    why_not: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("paginates", "etag_is_content_md5", "version_without_versioning", "listing_sequencer",
                     "put_checks_md5", "parts_in_any_order", "abort_discards_parts"):  # fmt: skip
            if not getattr(self, name) and name not in self.why_not:
                raise AssertionError(f"capability {name} is off without a reason")


@dataclass
class StorageRig:
    """An empty bucket on one provider, and the ways a test reaches it.

    - ``storage``: the adapter on the bucket (no mount prefix).
    - ``reopen(prefix)``: a fresh adapter on the same bucket, as another process would open it.
    - ``missing``: an adapter on a bucket that does not exist.
    - ``sessions`` / ``reopen_sessions()``: the adapter the resumable-session tests use; the same
      bucket except on GCS, where fake-gcs-server forgets a session once its status is asked, so
      those tests run on gcp-storage-emulator (the stand-in the GCS resume tests always used).
    - ``part_size``: the smallest part size the provider accepts for every part but the last.
    - Ranged reads are not part of the protocol (``open`` streams the whole object), so the
      suite reads in blocks and checks that a partial read continues where it stopped.
    - ``small_pages(n)``: make listings fetch ``n`` keys per request, so a few keys span pages
      (``paginates`` False: there are no pages).
    """

    name: str
    storage: Storage
    reopen: Callable[[str], Storage]
    missing: Storage
    sessions: Storage
    reopen_sessions: Callable[[], Storage]
    part_size: int
    caps: Capabilities
    small_pages: Callable[[int], None]


def local_rig(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StorageRig:
    root = tmp_path / "bucket"
    root.mkdir()

    def reopen(prefix: str = "") -> Storage:
        return open_storage(f"file://{root}")  # a file:// mount has no prefix: its root is the bucket

    caps = Capabilities(
        paginates=False,
        etag_is_content_md5=False,
        put_checks_md5=True,
        missing_bucket_on_list=StorageUnavailable,
        why_not={
            "paginates": "a directory is read with scandir, which has no pages",
            "etag_is_content_md5": "the etag is mtime and size: hashing would make listing read every byte",
            "version_without_versioning": "files have no versions",
            "listing_sequencer": "a directory listing cannot order versions",
        },
    )
    storage = reopen()
    return StorageRig(
        "local", storage, reopen, open_storage(f"file://{tmp_path}/no-such-dir"), storage, reopen,
        part_size=1, caps=caps, small_pages=lambda _n: None,
    )  # fmt: skip


def s3_rig(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StorageRig:
    moto = request.getfixturevalue("moto")
    bucket = f"bkt-{uuid.uuid4().hex[:12]}"
    moto.client("s3").create_bucket(Bucket=bucket)
    options = {"endpoint_url": moto.endpoint_url}

    def reopen(prefix: str = "") -> Storage:
        return open_storage(f"s3://{bucket}/{prefix}", options)

    storage = reopen()

    def small_pages(n: int) -> None:
        def page_size(params: dict[str, Any], **_: Any) -> None:
            params["MaxKeys"] = n  # botocore's paginator follows the continuation tokens

        storage.client.meta.events.register("before-parameter-build.s3.ListObjectsV2", page_size)  # type: ignore[attr-defined]

    caps = Capabilities(
        why_not={
            "version_without_versioning": "S3 has version ids only on versioned buckets (tests/s3/test_s3_versions.py)",
            "listing_sequencer": "ListObjectsV2 carries no ordering token (the event sequencer is not listed)",
            "put_checks_md5": "S3 refuses a body that does not match Content-MD5, moto does not check it "
            "(tests/s3/test_s3_storage.py builds S3's BadDigest answer)",
        },
    )
    return StorageRig(
        "s3", storage, reopen, open_storage(f"s3://{bucket}-missing/", options), storage,
        lambda: reopen(""), part_size=MIN_PART_SIZE, caps=caps, small_pages=small_pages,
    )  # fmt: skip


def gcs_rig(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StorageRig:
    fake_gcs = request.getfixturevalue("fake_gcs")
    emulator = request.getfixturevalue("gcs_resumable_emulator")
    bucket = f"ms-{uuid.uuid4().hex[:16]}"
    fake_gcs.create_bucket(bucket)
    emulator.create_bucket(bucket)

    def reopen(prefix: str = "") -> Storage:
        return open_storage(f"gs://{bucket}/{prefix}", fake_gcs.storage_options())

    def reopen_sessions() -> Storage:
        return open_storage(f"gs://{bucket}/", emulator.storage_options())

    def small_pages(n: int) -> None:
        monkeypatch.setattr("mountsync.shared.storage.gcs.LIST_PAGE_SIZE", n)

    caps = Capabilities(
        version_without_versioning=True,
        listing_sequencer=True,
        parts_in_any_order=False,
        abort_discards_parts=False,
        why_not={
            "put_checks_md5": "GCS verifies with the checksums it computes itself; the md5 argument is for S3",
            "parts_in_any_order": "a resumable session takes bytes strictly in order",
            "abort_discards_parts": "gcp-storage-emulator cannot cancel a session (501); GCS expires it",
        },
    )
    return StorageRig(
        "gcs", reopen(), reopen, open_storage(f"gs://{bucket}-missing/", fake_gcs.storage_options()),
        reopen_sessions(), reopen_sessions, part_size=CHUNK_ALIGN, caps=caps, small_pages=small_pages,
    )  # fmt: skip


def azure_rig(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StorageRig:
    from mountsync.shared.storage.azure import AzureStorage

    azurite = request.getfixturevalue("azurite")
    container = azurite.blob_service().create_container(f"c{uuid.uuid4().hex[:20]}")
    request.addfinalizer(container.delete_container)
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}

    def open_container(name: str, prefix: str = "") -> Storage:
        return AzureStorage(open_storage(f"az://{name}/{prefix}", {}).url, {}, environ=env)

    def reopen(prefix: str = "") -> Storage:
        return open_container(container.container_name, prefix)

    def small_pages(n: int) -> None:
        monkeypatch.setattr("mountsync.shared.storage.azure.LIST_PAGE_SIZE", n)

    caps = Capabilities(
        etag_is_content_md5=False,
        abort_discards_parts=False,
        why_not={
            "etag_is_content_md5": "an Azure ETag is an opaque change token, not a content hash",
            "version_without_versioning": "Azure has version ids only with blob versioning on",
            "listing_sequencer": "List Blobs carries no ordering token (the event sequencer is not listed)",
            "put_checks_md5": "Azure verifies with its own Content-MD5; the md5 argument is for S3",
            "abort_discards_parts": "Azure has no call to discard uncommitted blocks; it drops them after "
            "7 days or at the next commit of that blob",
        },
    )
    storage = reopen()
    return StorageRig(
        "azure", storage, reopen, open_container(f"missing{uuid.uuid4().hex[:12]}"), storage,
        lambda: reopen(""), part_size=1, caps=caps, small_pages=small_pages,
    )  # fmt: skip


RIGS: dict[str, Callable[[pytest.FixtureRequest, pytest.MonkeyPatch, Path], StorageRig]] = {
    "local": local_rig,
    "s3": s3_rig,
    "gcs": gcs_rig,
    "azure": azure_rig,
}


def put(storage: Storage, key: str, data: bytes) -> ObjectInfo:
    """Write ``data`` at ``key`` with one ``put`` of the adapter under test."""
    return storage.put(key, io.BytesIO(data), len(data))


def read_all(storage: Storage, key: str) -> bytes:
    """The object's content, read through ``open`` in blocks (as the migration streams it)."""
    with storage.open(key) as stream:
        return b"".join(iter(lambda: stream.read(64 * 1024), b""))
