"""What only S3 does, against moto server: folder-marker keys, multipart puts, Content-MD5,
credential sets and endpoints (MinIO path-style), S3's error codes. The contract every adapter
keeps (listing, stat, reads, check, puts, resumable uploads) is tests/storage/."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import pytest
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from mountsync.shared.errors import ConfigError, CredentialsRejected, StorageUnavailable
from mountsync.shared.storage import open_storage
from mountsync.shared.storage.s3 import MIN_PART_SIZE, S3Storage
from mountsync.shared.storage.s3_client import parse_timestamp
from tests.standins.s3 import MotoEndpoints


def put(storage: S3Storage, key: str, data: bytes) -> None:
    storage.put(key, io.BytesIO(data), len(data))


def test_a_folder_marker_key_is_listed_under_its_folder(storage: S3Storage) -> None:
    """Keys ending in '/' exist only on S3 (and GCS); the console creates them for folders."""
    for key in ("top.txt", "dir/a.txt", "dir/b.txt", "dir/sub/c.txt", "dir/"):
        put(storage, key, b"x")

    assert {i.key for i in storage.list("", recursive=False)} == {"top.txt"}
    # The marker "dir/" belongs to folder "dir" (as the catalog files it), so it is listed there.
    assert {i.key for i in storage.list("dir/", recursive=False)} == {
        "dir/",
        "dir/a.txt",
        "dir/b.txt",
    }
    assert {i.key for i in storage.list("dir/")} == {
        "dir/",
        "dir/a.txt",
        "dir/b.txt",
        "dir/sub/c.txt",
    }


def test_large_put_goes_multipart(storage: S3Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mountsync.shared.storage.s3.PUT_SINGLE_MAX", MIN_PART_SIZE)
    monkeypatch.setattr("mountsync.shared.storage.s3.PUT_PART_SIZE", MIN_PART_SIZE)
    data = os.urandom(2 * MIN_PART_SIZE + 100)
    info = storage.put("auto-mp.bin", io.BytesIO(data), len(data))
    assert info.size == len(data)
    assert info.etag is not None and info.etag.endswith("-3")


def test_unknown_credential_set_is_a_config_error(
    moto: MotoEndpoints, bucket_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    adapter = open_storage(f"s3://{bucket_name}/", {"endpoint_url": moto.endpoint_url, "credentials": "nobody"})
    with pytest.raises(ConfigError, match="'nobody'"):
        adapter.check(writable=False)


def test_named_credential_set_is_used(
    moto: MotoEndpoints, bucket_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "credentials").write_text(
        "[annotators]\naws_access_key_id = AKIDNAMED\naws_secret_access_key = named-secret\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    adapter = open_storage(f"s3://{bucket_name}/", {"endpoint_url": moto.endpoint_url, "credentials": "annotators"})
    adapter.check(writable=True)
    assert adapter.client._request_signer._credentials.access_key == "AKIDNAMED"


def test_no_credentials_at_all_is_refused_with_the_reason(
    moto: MotoEndpoints, bucket_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    adapter = open_storage(f"s3://{bucket_name}/", {"endpoint_url": moto.endpoint_url})
    with pytest.raises(ConfigError, match="no usable AWS credentials"):
        adapter.check(writable=False)


def test_endpoint_from_aws_endpoint_url_is_honoured(
    moto: MotoEndpoints, bucket_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint_url)
    adapter = open_storage(f"minio://{bucket_name}/data/", {})
    assert isinstance(adapter, S3Storage)
    adapter.check(writable=True)
    assert adapter.client.meta.config.s3 == {"addressing_style": "path", "payload_signing_enabled": False}


def test_unreachable_endpoint_is_storage_unavailable(bucket_name: str) -> None:
    from mountsync.shared.errors import StorageUnavailable
    from tests.standins.s3 import free_port

    adapter = open_storage(f"s3://{bucket_name}/", {"endpoint_url": f"http://127.0.0.1:{free_port()}"})
    adapter.client.meta.config.retries["max_attempts"] = 1
    with pytest.raises(StorageUnavailable, match="did not answer"):
        adapter.stat("x")


def test_rejected_credentials_are_credentials_rejected(bucket_name: str) -> None:
    """moto with IAM auth on: an unknown access key is refused like on AWS."""
    from tests.standins.s3 import MotoServer

    server = MotoServer(extra_env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    endpoints = server.start()
    try:
        adapter = open_storage(f"s3://{bucket_name}/", {"endpoint_url": endpoints.endpoint_url})
        with pytest.raises(CredentialsRejected, match=r"InvalidAccessKeyId|AccessDenied|Signature"):
            adapter.check(writable=False)
    finally:
        server.stop()


def test_a_local_file_goes_in_one_request_read_in_place(
    storage: S3Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mountsync.shared.storage.s3.PUT_INLINE_MAX", 1024)
    monkeypatch.setattr("mountsync.shared.storage.s3.PUT_SINGLE_MAX", MIN_PART_SIZE)  # would go multipart if buffered
    data = os.urandom(2 * MIN_PART_SIZE + 100)
    path = tmp_path / "local.bin"
    path.write_bytes(b"head" + data)
    with open(path, "rb") as stream:
        stream.seek(4)  # sent from where the stream stands
        info = storage.put("streamed.bin", stream, len(data))
    assert info.size == len(data)
    assert info.etag == hashlib.md5(data).hexdigest()  # one PutObject: the ETag is the MD5
    with storage.open("streamed.bin") as back:
        assert back.read() == data


def test_bodies_carry_content_md5_and_skip_the_payload_hash(
    storage: S3Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 refuses a body that does not match its Content-MD5; with that check on every body the
    SigV4 payload hash would only hash it twice, so it is off even on plain http."""
    monkeypatch.setattr("mountsync.shared.storage.s3.PUT_INLINE_MAX", 1024)
    sent: list[Any] = []
    storage.client.meta.events.register("before-send.s3.PutObject", lambda request, **_: sent.append(request))
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(4096))
    given = hashlib.md5(path.read_bytes()).hexdigest()
    storage.put("inline.bin", io.BytesIO(b"inline"), 6)  # from memory
    with open(path, "rb") as stream:
        storage.put("given.bin", stream, 4096, md5=given)  # streamed, MD5 given by the caller
    with open(path, "rb") as stream:
        storage.put("read.bin", stream, 4096)  # streamed, MD5 read ahead
    expected = [hashlib.md5(b"inline").digest(), bytes.fromhex(given), bytes.fromhex(given)]
    assert [base64.b64decode(r.headers["Content-MD5"]) for r in sent] == expected
    assert {r.headers["X-Amz-Content-SHA256"] for r in sent} == {b"UNSIGNED-PAYLOAD"}


def test_bad_digest_is_retryable(storage: S3Storage) -> None:
    """S3's answer when a body does not match its Content-MD5 (a source that changed while it
    was sent). moto does not check Content-MD5, so the answer is built by hand here."""
    from botocore.exceptions import ClientError

    answer = {"Error": {"Code": "BadDigest", "Message": "The Content-MD5 you specified did not match"},
              "ResponseMetadata": {"HTTPStatusCode": 400}}  # fmt: skip
    error = storage._translate(ClientError(answer, "PutObject"), "k")  # type: ignore[arg-type]
    assert isinstance(error, StorageUnavailable) and "Content-MD5" in str(error)


def test_a_put_given_the_sha256_is_checked_by_it_instead_of_an_md5(
    storage: S3Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration hashes each file once: the SHA-256 it records is the request's checksum, and
    the answer carries it back (S3 refuses a body that does not match it)."""
    monkeypatch.setattr("mountsync.shared.storage.s3.PUT_INLINE_MAX", 1024)
    sent: list[Any] = []
    storage.client.meta.events.register("before-send.s3.PutObject", lambda request, **_: sent.append(request))
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(4096))
    for name, data in (("inline.bin", b"inline"), ("streamed.bin", path.read_bytes())):
        sha256 = hashlib.sha256(data).hexdigest()
        with open(path, "rb") if name == "streamed.bin" else io.BytesIO(data) as stream:
            info = storage.put(name, stream, len(data), sha256=sha256)
        assert base64.b64decode(info.checksums["sha256"]).hex() == sha256
        assert base64.b64decode(sent[-1].headers["x-amz-checksum-sha256"]).hex() == sha256
        assert "Content-MD5" not in sent[-1].headers
        with storage.open(name) as stream:
            assert stream.read() == data


def test_a_store_that_ignores_the_sha256_gets_its_etag_checked_then_content_md5(storage: S3Storage) -> None:
    """Some S3-compatible stores ignore x-amz-checksum-*: they checked nothing, so the ETag is
    compared with the body's MD5 and later puts go back to Content-MD5. moto honours the header,
    so its answer is stripped of the checksum here (no stand-in ignores it)."""
    sent: list[Any] = []
    storage.client.meta.events.register("before-send.s3.PutObject", lambda request, **_: sent.append(request))
    storage.client.meta.events.register(
        "after-call.s3.PutObject", lambda parsed, **_: parsed.pop("ChecksumSHA256", None)
    )
    first, second = b"first body", b"second body"
    info = storage.put("a.bin", io.BytesIO(first), len(first), sha256=hashlib.sha256(first).hexdigest())
    assert info.etag == hashlib.md5(first).hexdigest() and not info.checksums
    storage.put("b.bin", io.BytesIO(second), len(second), sha256=hashlib.sha256(second).hexdigest())
    assert base64.b64decode(sent[-1].headers["Content-MD5"]) == hashlib.md5(second).digest()
    assert "x-amz-checksum-sha256" not in sent[-1].headers


@pytest.mark.parametrize(
    "value",
    ["2026-12-04T20:53:00.000Z", "2026-12-04T20:53:00Z", "2026-12-04T20:53:00.123456Z",
     "2026-12-04T20:53:00.123456789Z", "2026-12-04T20:53:00+01:00",
     "Fri, 04 Dec 2026 20:53:00 GMT", "1700000000"],
)  # fmt: skip
def test_listing_timestamps_parse_as_botocore_parses_them(value: str) -> None:
    assert parse_timestamp(value) == botocore_parse_timestamp(value)
