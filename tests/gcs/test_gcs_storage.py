"""The GCS adapter against fake-gcs-server (reads, writes) and gcp-storage-emulator (resume)."""

from __future__ import annotations

import base64
import hashlib
import io
from typing import Any

import google_crc32c
import pytest

from mountsync.shared.errors import BadInput, ObjectNotFound, RetryableError, StorageUnavailable
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


def test_overwrite_raises_the_sequencer(fake_gcs: GcsEndpoints, bucket: str) -> None:
    storage = storage_for(fake_gcs, bucket)
    put(storage, "k", b"one")
    first = storage.stat("k")
    put(storage, "k", b"two")
    second = storage.stat("k")
    assert second.sequencer > first.sequencer
    assert second.version != first.version
    assert second.etag != first.etag


def test_listing_streams_every_object_with_the_same_facts_as_stat(
    fake_gcs: GcsEndpoints, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mountsync.shared.storage.gcs.LIST_PAGE_SIZE", 4)  # force several pages
    storage = storage_for(fake_gcs, bucket)
    keys = [f"frames/{i:03d}.png" for i in range(11)] + ["frames/sub/x.png", "top.txt"]
    for key in keys:
        put(storage, key, key.encode())
    listed = {info.key: info for info in storage.list()}
    assert sorted(listed) == sorted(keys)
    assert listed["top.txt"] == storage.stat("top.txt")
    under = sorted(i.key for i in storage.list("frames/"))
    assert under == sorted(k for k in keys if k.startswith("frames/"))
    direct = sorted(i.key for i in storage.list("frames/", recursive=False))
    assert direct == [f"frames/{i:03d}.png" for i in range(11)]


def test_listing_a_missing_bucket_is_an_error_not_an_empty_listing(fake_gcs: GcsEndpoints, bucket_name: str) -> None:
    storage = storage_for(fake_gcs, bucket_name)
    with pytest.raises(StorageUnavailable, match="does not exist"):
        list(storage.list())


def test_open_streams_content_and_missing_keys_raise(fake_gcs: GcsEndpoints, bucket: str) -> None:
    storage = storage_for(fake_gcs, bucket)
    data = bytes(range(256)) * 5000
    put(storage, "blob.bin", data)
    with storage.open("blob.bin") as stream:
        assert stream.read(10) == data[:10]
        assert stream.read() == data[10:]
    with pytest.raises(ObjectNotFound):
        storage.open("nope")
    with pytest.raises(ObjectNotFound):
        storage.stat("nope")
    with pytest.raises(FileNotFoundError):  # ObjectNotFound is also a FileNotFoundError
        storage.delete("nope")


def test_delete_removes_the_object(fake_gcs: GcsEndpoints, bucket: str) -> None:
    storage = storage_for(fake_gcs, bucket)
    put(storage, "gone", b"x")
    storage.delete("gone")
    assert [i.key for i in storage.list()] == []


def test_credential_check_reads_and_writes_then_leaves_nothing(fake_gcs: GcsEndpoints, bucket: str) -> None:
    storage = storage_for(fake_gcs, bucket, "mount/")
    storage.check(writable=False)
    storage.check(writable=True)
    assert list(storage.list()) == []


def test_credential_check_refuses_a_missing_bucket(fake_gcs: GcsEndpoints, bucket_name: str) -> None:
    with pytest.raises(StorageUnavailable, match="does not exist"):
        storage_for(fake_gcs, bucket_name).check(writable=False)


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


# -- resumable writer ---------------------------------------------------------------------
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


@pytest.mark.parametrize("size", [0, 100, PART, 3 * PART + 11])
def test_resumable_upload_on_gcp_storage_emulator(resumable: GCSStorage, size: int) -> None:
    data = bytes((i * 13) % 251 for i in range(size))
    upload_all(resumable, "up.bin", data)
    with resumable.open("up.bin") as stream:
        assert stream.read() == data


def test_a_crashed_upload_resumes_sending_only_the_missing_parts(
    gcs_resumable_emulator: GcsEndpoints, resumable: GCSStorage
) -> None:
    data = bytes((i * 31) % 251 for i in range(4 * PART + 1000))
    chunks = [data[off : off + PART] for off in range(0, len(data), PART)]
    session = resumable.start_upload("resumed.bin", PART)
    sent = [resumable.upload_part(session, n, chunks[n - 1]) for n in (1, 2)]
    assert resumable.list_parts(session) == sent

    # A new process (fresh adapter) picks the session up from the stored upload_id.
    again = storage_for(gcs_resumable_emulator, resumable.url.bucket)
    committed = again.list_parts(session)
    assert [p.number for p in committed] == [1, 2]
    rest = [again.upload_part(session, n, chunks[n - 1]) for n in range(3, len(chunks) + 1)]
    info = again.complete_upload(session, committed + rest)
    assert info.size == len(data)
    assert info.checksums["md5"] == hashlib.md5(data).hexdigest()
    with again.open("resumed.bin") as stream:
        assert stream.read() == data


def test_resending_a_committed_part_is_harmless(resumable: GCSStorage) -> None:
    data = b"a" * PART + b"b" * PART + b"c" * 10
    session = resumable.start_upload("dup.bin", PART)
    first = resumable.upload_part(session, 1, data[:PART])
    assert resumable.upload_part(session, 1, data[:PART]) == first  # retried after a lost answer
    second = resumable.upload_part(session, 2, data[PART : 2 * PART])
    last = resumable.upload_part(session, 3, data[2 * PART :])
    assert resumable.complete_upload(session, [first, second, last]).size == len(data)


def test_a_part_sent_ahead_of_its_turn_is_retryable(resumable: GCSStorage) -> None:
    session = resumable.start_upload("ooo.bin", PART)
    resumable.upload_part(session, 1, b"x" * PART)
    with pytest.raises(RetryableError, match="in order"):
        resumable.upload_part(session, 3, b"z" * PART)
    assert [p.number for p in resumable.list_parts(session)] == [1]


def test_completed_session_lists_every_part(resumable: GCSStorage) -> None:
    data = b"q" * (PART + 5)
    session = resumable.start_upload("done.bin", PART)
    parts = [resumable.upload_part(session, 1, data[:PART]),
             resumable.upload_part(session, 2, data[PART:])]  # fmt: skip
    assert resumable.complete_upload(session, parts).size == len(data)


def test_bad_part_sizes_are_refused(resumable: GCSStorage) -> None:
    with pytest.raises(BadInput, match="256 KiB"):
        resumable.start_upload("x", 1000)
    session = resumable.start_upload("x", PART)
    with pytest.raises(BadInput):
        resumable.upload_part(session, 1, b"x" * (PART + 1))
    with pytest.raises(BadInput, match="without gaps"):
        resumable.complete_upload(session, [PartInfo(2, PART, "")])


def test_abort_discards_the_session(resumable: GCSStorage) -> None:
    session = resumable.start_upload("aborted.bin", PART)
    resumable.upload_part(session, 1, b"x" * PART)
    resumable.abort_upload(session)  # the emulator cannot cancel (501): tolerated, logged
    assert "aborted.bin" not in [i.key for i in resumable.list()]


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
