"""The Azure Blob adapter against Azurite: listing, stat, read, check, staged-block resume."""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any

import pytest

from mountsync.shared.errors import BadInput, CredentialsRejected, ObjectNotFound
from mountsync.shared.events import normalize_etag
from mountsync.shared.storage import open_storage
from mountsync.shared.storage.azure import AzureStorage, upload_id_for
from tests.standins.azure import AzuriteEndpoints

KEYS = ["a.txt", "dir/b 1.txt", "dir/sub/c+d%20e=f.bin", "dir/ünï/ç.jpg", "deep/" * 8 + "x"]


def storage_for(container: Any, azurite: AzuriteEndpoints, prefix: str = "") -> AzureStorage:
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    url = f"az://{container.container_name}/{prefix}"
    return AzureStorage(open_storage(url, {}).url, {}, environ=env)


def test_open_storage_picks_the_azure_adapter(azure_env: AzuriteEndpoints) -> None:
    for scheme in ("az", "azure"):
        storage = open_storage(f"{scheme}://photos/raw", {})
        assert isinstance(storage, AzureStorage)
        assert (storage.url.bucket, storage.url.prefix) == ("photos", "raw/")
        assert storage.account_name == "devstoreaccount1"


def test_listing_and_stat_agree_with_what_the_sdk_wrote(container: Any, azurite: AzuriteEndpoints) -> None:
    written = {}
    for i, key in enumerate(KEYS):
        response = container.get_blob_client(key).upload_blob(b"x" * (i + 1))
        written[key] = normalize_etag(response["etag"])
    storage = storage_for(container, azurite)

    listed = {info.key: info for info in storage.list()}

    assert set(listed) == set(KEYS)
    for i, key in enumerate(KEYS):
        assert listed[key].size == i + 1
        assert listed[key].etag == written[key]
        assert not listed[key].etag.startswith('"')
        assert storage.stat(key) == listed[key]


def test_non_recursive_listing_yields_direct_children_only(container: Any, azurite: AzuriteEndpoints) -> None:
    for key in KEYS:
        container.upload_blob(key, b"1")
    storage = storage_for(container, azurite)

    assert {i.key for i in storage.list("dir/", recursive=False)} == {"dir/b 1.txt"}
    assert {i.key for i in storage.list(recursive=False)} == {"a.txt"}


def test_prefix_is_relative_to_the_mount_prefix(container: Any, azurite: AzuriteEndpoints) -> None:
    for key in KEYS:
        container.upload_blob(key, b"1")
    storage = storage_for(container, azurite, prefix="dir")

    assert {i.key for i in storage.list()} == {k for k in KEYS if k.startswith("dir/")}
    assert {i.key for i in storage.list("sub/")} == {"dir/sub/c+d%20e=f.bin"}
    assert {i.key for i in storage.list("dir/sub/")} == {"dir/sub/c+d%20e=f.bin"}


def test_hns_directory_markers_are_not_objects(container: Any, azurite: AzuriteEndpoints) -> None:
    container.upload_blob("folder", b"", metadata={"hdi_isfolder": "true"})
    container.upload_blob("folder/file.png", b"png")
    storage = storage_for(container, azurite)

    assert [i.key for i in storage.list()] == ["folder/file.png"]
    with pytest.raises(ObjectNotFound):
        storage.stat("folder")


def test_open_streams_content_and_missing_blobs_raise(container: Any, azurite: AzuriteEndpoints) -> None:
    data = os.urandom(9 * 1024 * 1024 + 17)
    container.upload_blob("big.bin", data)
    storage = storage_for(container, azurite)

    with storage.open("big.bin") as stream:
        digest = hashlib.sha256()
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    with pytest.raises(ObjectNotFound):
        storage.open("nope.bin")
    with pytest.raises(ObjectNotFound):
        storage.stat("nope.bin")
    with pytest.raises(FileNotFoundError):
        storage.delete("nope.bin")


def test_put_and_delete(container: Any, azurite: AzuriteEndpoints) -> None:
    storage = storage_for(container, azurite)
    info = storage.put("new/é.txt", io.BytesIO(b"hello"), 5)

    assert (info.key, info.size) == ("new/é.txt", 5)
    assert info.etag == normalize_etag(container.get_blob_client("new/é.txt").get_blob_properties().etag)
    storage.delete("new/é.txt")
    assert list(storage.list()) == []


def test_check_read_only_and_writable_leave_nothing_behind(container: Any, azurite: AzuriteEndpoints) -> None:
    storage = storage_for(container, azurite, prefix="mnt")
    storage.check(writable=False)
    storage.check(writable=True)
    assert list(container.list_blobs()) == []


def test_check_refuses_a_missing_container(azurite: AzuriteEndpoints) -> None:
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    storage = AzureStorage(open_storage("az://does-not-exist/", {}).url, {}, environ=env)
    with pytest.raises(BadInput, match="does not exist"):
        storage.check(writable=False)


def test_check_refuses_a_wrong_key(container: Any, azurite: AzuriteEndpoints) -> None:
    wrong = azurite.connection_string.replace(azurite.account_key, "d3Jvbmcga2V5" * 8)
    storage = AzureStorage(
        open_storage(f"az://{container.container_name}/", {}).url, {},
        environ={"AZURE_STORAGE_CONNECTION_STRING": wrong},
    )  # fmt: skip
    with pytest.raises(CredentialsRejected):
        storage.check(writable=False)


def test_account_url_with_key_from_a_named_credential_set(container: Any, azurite: AzuriteEndpoints) -> None:
    env = {"AZURE_STORAGE_KEY_TEAM_A": azurite.account_key}
    options = {"account_url": azurite.blob_url, "credentials": "team-a"}
    container.upload_blob("k", b"v")
    storage = AzureStorage(open_storage(f"az://{container.container_name}/", {}).url, options, environ=env)
    assert [i.key for i in storage.list()] == ["k"]
    assert "account key" in storage.access.how
    assert azurite.account_key not in repr(storage.access)


def test_staged_blocks_resume_sends_only_missing_parts(container: Any, azurite: AzuriteEndpoints) -> None:
    part = 256 * 1024
    data = os.urandom(part * 3 - 1000)
    chunks = [data[i : i + part] for i in range(0, len(data), part)]
    first = storage_for(container, azurite)
    session = first.start_upload("mig/video.mp4", part)
    first.upload_part(session, 1, chunks[0])
    first.upload_part(session, 2, chunks[1])

    # A new process (new adapter) resumes: same upload id, finds parts 1 and 2 staged.
    second = storage_for(container, azurite)
    resumed = second.start_upload("mig/video.mp4", part)
    assert resumed.upload_id == session.upload_id == upload_id_for("mig/video.mp4", part)
    staged = second.list_parts(resumed)
    assert [(p.number, p.size) for p in staged] == [(1, part), (2, part)]
    missing = [n for n in (1, 2, 3) if n not in {p.number for p in staged}]
    assert missing == [3]
    parts = [*staged, second.upload_part(resumed, 3, chunks[2])]
    info = second.complete_upload(resumed, parts)

    assert info.size == len(data)
    assert container.download_blob("mig/video.mp4").readall() == data
    assert second.list_parts(resumed) == []


def test_a_different_part_size_does_not_reuse_blocks(container: Any, azurite: AzuriteEndpoints) -> None:
    storage = storage_for(container, azurite)
    old = storage.start_upload("k.bin", 1024)
    storage.upload_part(old, 1, b"a" * 1024)
    new = storage.start_upload("k.bin", 2048)
    assert new.upload_id != old.upload_id
    assert storage.list_parts(new) == []
    assert storage.list_parts(storage.start_upload("fresh.bin", 1024)) == []


def test_complete_refuses_gaps(container: Any, azurite: AzuriteEndpoints) -> None:
    storage = storage_for(container, azurite)
    session = storage.start_upload("gap.bin", 4)
    p1 = storage.upload_part(session, 1, b"aaaa")
    p3 = storage.upload_part(session, 3, b"cc")
    with pytest.raises(BadInput, match="without gaps"):
        storage.complete_upload(session, [p1, p3])
