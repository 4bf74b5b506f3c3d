"""What only Azure does, against Azurite: prefixes relative to the mount, HNS directory markers,
account keys and named credential sets, deterministic block ids for staged-block resume. The
contract every adapter keeps is tests/storage/."""

from __future__ import annotations

import os
from typing import Any

import pytest

from mountsync.shared.errors import CredentialsRejected, ObjectNotFound
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
