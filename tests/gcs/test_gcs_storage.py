"""What only GCS does, against fake-gcs-server: generations and metagenerations as version and
sequencer, content etags from MD5/CRC32C, credential sets, the 256 KiB rules and finalization of
resumable sessions. The contract every adapter keeps is tests/storage/."""

from __future__ import annotations

import base64
import hashlib
import io
from typing import Any

import google_crc32c
import pytest

from mountsync.shared.errors import BadInput
from mountsync.shared.events import gcs_content_etag
from mountsync.shared.storage import PartInfo, open_storage
from mountsync.shared.storage.gcs import GCSStorage
from mountsync.shared.storage.gcs_resumable import CHUNK_ALIGN
from tests.standins.gcs import GcsEndpoints

PART = CHUNK_ALIGN  # smallest legal part: keeps the tests fast


def storage_for(endpoints: GcsEndpoints, bucket: str, prefix: str = "") -> GCSStorage:
    adapter = open_storage(f"gs://{bucket}/{prefix}", endpoints.storage_options())
    assert isinstance(adapter, GCSStorage)
    return adapter


@pytest.fixture
def bucket(fake_gcs: GcsEndpoints, bucket_name: str) -> str:
    fake_gcs.create_bucket(bucket_name)
    return bucket_name


def put(storage: GCSStorage, key: str, data: bytes) -> None:
    storage.put(key, io.BytesIO(data), len(data))


def test_aliases_open_the_gcs_adapter(fake_gcs: GcsEndpoints, bucket: str) -> None:
    for scheme in ("gs", "gcs", "google"):
        adapter = open_storage(f"{scheme}://{bucket}/x/", fake_gcs.storage_options())
        assert isinstance(adapter, GCSStorage)
        assert adapter.url.prefix == "x/"


def test_stat_reports_generation_sequencer_and_content_checksums(fake_gcs: GcsEndpoints, bucket: str) -> None:
    storage = storage_for(fake_gcs, bucket)
    put(storage, "dir/a b.txt", b"hello")
    info = storage.stat("dir/a b.txt")
    blob = fake_gcs.client().bucket(bucket).get_blob("dir/a b.txt")
    assert info.key == "dir/a b.txt"
    assert info.size == 5
    assert info.version == str(blob.generation)
    assert info.sequencer == f"{blob.generation:020d}.0.{blob.metageneration:020d}"
    assert info.etag == hashlib.md5(b"hello").hexdigest()
    crc = google_crc32c.Checksum(b"hello").digest().hex()
    assert info.checksums == {"md5": hashlib.md5(b"hello").hexdigest(), "crc32c": crc}
    assert info.modified_ns > 0


def test_unknown_credential_set_is_a_config_error(bucket_name: str) -> None:
    from mountsync.shared.errors import ConfigError

    storage = GCSStorage(
        open_storage(f"gs://{bucket_name}/", {"anonymous": True}).url,
        {"credentials": "no-such-set-xyz"},
    )
    with pytest.raises(ConfigError, match="GOOGLE_APPLICATION_CREDENTIALS_NO_SUCH_SET_XYZ"):
        storage.stat("k")


def test_content_etag_prefers_md5_then_crc32c() -> None:
    md5 = base64.b64encode(hashlib.md5(b"x").digest()).decode()
    assert gcs_content_etag(md5, "AAAAAA==", '"CAE="') == hashlib.md5(b"x").hexdigest()
    assert gcs_content_etag(None, "AAAAAQ==", '"CAE="') == "crc32c:00000001"
    assert gcs_content_etag(None, None, '"CAE="') == "CAE="


# -- resumable writer: GCS's own rules ---------------------------------------------------------------------
def upload_all(storage: GCSStorage, key: str, data: bytes, part_size: int = PART) -> None:
    session = storage.start_upload(key, part_size)
    parts = [
        storage.upload_part(session, n + 1, data[off : off + part_size])
        for n, off in enumerate(range(0, max(len(data), 1), part_size))
    ]
    info = storage.complete_upload(session, parts)
    assert info.size == len(data)
    assert info.etag == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("size", [0, 100, PART, 2 * PART, 2 * PART + 7])
def test_resumable_upload_on_fake_gcs_server(fake_gcs: GcsEndpoints, bucket: str, size: int) -> None:
    storage = storage_for(fake_gcs, bucket)
    data = bytes((i * 7) % 251 for i in range(size))
    upload_all(storage, "up.bin", data)
    with storage.open("up.bin") as stream:
        assert stream.read() == data


@pytest.fixture
def resumable(gcs_resumable_emulator: GcsEndpoints, bucket_name: str) -> GCSStorage:
    gcs_resumable_emulator.create_bucket(bucket_name)
    return storage_for(gcs_resumable_emulator, bucket_name)


def test_bad_part_sizes_are_refused(resumable: GCSStorage) -> None:
    with pytest.raises(BadInput, match="256 KiB"):
        resumable.start_upload("x", 1000)
    session = resumable.start_upload("x", PART)
    with pytest.raises(BadInput):
        resumable.upload_part(session, 1, b"x" * (PART + 1))
    with pytest.raises(BadInput, match="without gaps"):
        resumable.complete_upload(session, [PartInfo(2, PART, "")])


def test_mount_add_runs_the_credential_check_on_gs_urls(
    cli: Any, catalog: Any, fake_gcs: GcsEndpoints, bucket: str
) -> None:
    ok = cli("mount", "add", "gcs-ok", f"gs://{bucket}/frames/", "--writable",
             "--endpoint-url", fake_gcs.endpoint_url)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert list(storage_for(fake_gcs, bucket).list()) == []  # the write probe was cleaned up
    refused = cli("mount", "add", "gcs-missing", f"gs://{bucket}-nope/", "--endpoint-url",
                  fake_gcs.endpoint_url)  # fmt: skip
    assert refused.returncode != 0
    assert "does not exist" in refused.stderr
