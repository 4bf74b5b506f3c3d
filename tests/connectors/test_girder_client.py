"""The Girder client against a real Girder 5 on MongoDB, with an S3 assetstore on moto."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from mountsync.shared.errors import ConfigError, PlatformAuthRejected, PlatformUnavailable
from mountsync.workers.connectors.girder_client import GirderClient, dive_dataset_markers
from tests.helpers import free_port
from tests.standins.girder import GirderWorkspace

# The first test of a session may build the Girder venv (about a minute, once).
pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def client(girder: GirderWorkspace) -> Iterator[GirderClient]:
    made = GirderClient.from_env(girder.server.api_url, "GIRDER_KEY", {"GIRDER_KEY": girder.server.api_key})
    yield made
    made.close()


def put(girder: GirderWorkspace, key: str, body: bytes) -> None:
    girder.moto.client("s3").put_object(Bucket=girder.bucket, Key=key, Body=body)


def test_the_api_key_reaches_the_server_as_its_admin(client: GirderClient) -> None:
    assert client.whoami() == ("admin", True)


def test_folder_paths_are_created_once_and_found_again(client: GirderClient, girder: GirderWorkspace) -> None:
    leaf = client.ensure_folder_path(girder.folder_id, "site/cam1/day2")
    again = client.ensure_folder_path(girder.folder_id, "/site/cam1/day2/")

    assert leaf is not None and again is not None and leaf.id == again.id and leaf.name == "day2"
    site = client.find_folder(girder.folder_id, "site")
    assert site is not None
    assert [f.name for f in client.child_folders(site.id)] == ["cam1"]
    assert client.find_folder(girder.folder_id, "nowhere") is None
    assert client.ensure_folder_path(girder.folder_id, "") is None


def test_an_object_becomes_an_item_whose_download_redirects_to_the_bucket(
    client: GirderClient, girder: GirderWorkspace
) -> None:
    body = b"frame-bytes-" * 100
    put(girder, "ds/a/f0001.png", body)
    put(girder, "ds/a/f0001.png.bak", b"not me")
    folder = client.ensure_folder_path(girder.folder_id, "ds/a")
    assert folder is not None

    item = client.reference_object(girder.assetstore_id, folder.id, "ds/a/f0001.png")

    [file] = client.item_files(item.id)
    assert (file.name, file.size, file.assetstore_id) == ("f0001.png", len(body), girder.assetstore_id)
    location = client.download_location(file.id)
    assert location is not None
    assert location.startswith(f"{girder.moto.endpoint_url}/{girder.bucket}/ds/a/f0001.png?")
    assert requests.get(location, timeout=30).content == body
    assert [i.name for i in client.items(folder.id)] == ["f0001.png"]


def test_referencing_the_same_object_again_makes_no_duplicate(client: GirderClient, girder: GirderWorkspace) -> None:
    put(girder, "k/x.jpg", b"123")
    folder = client.ensure_folder_path(girder.folder_id, "k")
    assert folder is not None

    first = client.reference_object(girder.assetstore_id, folder.id, "k/x.jpg")
    second = client.reference_object(girder.assetstore_id, folder.id, "k/x.jpg")

    assert first.id == second.id
    assert len(list(client.items(folder.id))) == 1
    assert len(client.item_files(first.id)) == 1


def test_an_overwritten_object_is_followed_by_size_and_bytes(client: GirderClient, girder: GirderWorkspace) -> None:
    put(girder, "v/clip.png", b"old")
    folder = client.ensure_folder_path(girder.folder_id, "v")
    assert folder is not None
    item = client.reference_object(girder.assetstore_id, folder.id, "v/clip.png")
    put(girder, "v/clip.png", b"new and longer")

    refreshed = client.refresh_reference(girder.assetstore_id, item, "v/clip.png")
    client.set_item_metadata(refreshed.id, {"mountsync": {"etag": "e2", "changed": True}})

    assert refreshed.id == item.id
    [file] = client.item_files(item.id)
    assert file.size == len(b"new and longer")
    location = client.download_location(file.id)
    assert location is not None and requests.get(location, timeout=30).content == b"new and longer"
    [listed] = client.items(folder.id)
    assert listed.meta == {"mountsync": {"etag": "e2", "changed": True}}


def test_deleting_an_item_keeps_the_object_and_is_idempotent(client: GirderClient, girder: GirderWorkspace) -> None:
    put(girder, "d/gone.png", b"keep my bytes")
    folder = client.ensure_folder_path(girder.folder_id, "d")
    assert folder is not None
    item = client.reference_object(girder.assetstore_id, folder.id, "d/gone.png")

    assert client.delete_item(item.id) is True
    assert client.delete_item(item.id) is False

    assert client.find_item(folder.id, "gone.png") is None
    stored = girder.moto.client("s3").get_object(Bucket=girder.bucket, Key="d/gone.png")["Body"].read()
    assert stored == b"keep my bytes"


def test_dive_markers_and_a_quarantine_note_go_on_and_off_a_folder(
    client: GirderClient, girder: GirderWorkspace
) -> None:
    folder = client.ensure_folder_path(girder.folder_id, "dataset1")
    assert folder is not None

    client.set_folder_metadata(
        folder.id, {**dive_dataset_markers("image-sequence", fps=10), "mountsync_alert": "insert"}
    )
    marked = client.get_folder(folder.id)
    assert marked is not None
    assert marked.meta == {"annotate": True, "type": "image-sequence", "fps": 10, "mountsync_alert": "insert"}

    cleared = client.set_folder_metadata(folder.id, {"mountsync_alert": None})
    assert cleared.meta == {"annotate": True, "type": "image-sequence", "fps": 10}
    assert dive_dataset_markers("video") == {"annotate": True, "type": "video"}


def test_deleting_a_folder_removes_its_tree_and_is_idempotent(client: GirderClient, girder: GirderWorkspace) -> None:
    put(girder, "t/u/a.png", b"a")
    leaf = client.ensure_folder_path(girder.folder_id, "t/u")
    top = client.find_folder(girder.folder_id, "t")
    assert leaf is not None and top is not None
    client.reference_object(girder.assetstore_id, leaf.id, "t/u/a.png")

    assert client.delete_folder(top.id) is True

    assert client.get_folder(leaf.id) is None and client.get_folder(top.id) is None
    assert client.delete_folder(top.id) is False


def test_girders_own_import_mirrors_a_prefix_into_nested_folders(client: GirderClient, girder: GirderWorkspace) -> None:
    for key in ("imp/s1/001.png", "imp/s1/002.png", "imp/s2/v.mp4", "imp/top.txt"):
        put(girder, key, key.encode())

    client.import_objects(girder.assetstore_id, "imp/", girder.folder_id)

    names = {f.name: f.id for f in client.child_folders(girder.folder_id)}
    assert set(names) == {"s1", "s2"}
    assert sorted(i.name for i in client.items(names["s1"])) == ["001.png", "002.png"]
    assert [i.name for i in client.items(names["s2"])] == ["v.mp4"]
    assert [i.name for i in client.items(girder.folder_id)] == ["top.txt"]


def test_a_refused_api_key_is_a_config_error_that_never_shows_the_key(girder: GirderWorkspace) -> None:
    client = GirderClient(girder.server.api_url, "not-a-real-key-" + "x" * 25)

    with pytest.raises(PlatformAuthRejected) as refused:
        client.whoami()
    assert "not-a-real-key" not in str(refused.value)
    with pytest.raises(ConfigError, match="GIRDER_MISSING"):
        GirderClient.from_env(girder.server.api_url, "GIRDER_MISSING", {})


def test_a_missing_folder_reads_as_none_and_a_dead_server_is_retryable(client: GirderClient) -> None:
    assert client.get_folder("0123456789abcdef01234567") is None

    dead = GirderClient(f"http://127.0.0.1:{free_port()}", "any-key", timeout_s=2)
    with pytest.raises(PlatformUnavailable):
        dead.whoami()


def test_many_objects_of_one_folder_are_referenced_in_one_import(client: GirderClient, girder: GirderWorkspace) -> None:
    keys = [f"seq/cam/{i:04d}.png" for i in range(250)]  # more than one import batch
    for key in keys:
        put(girder, key, key.encode())
    put(girder, "seq/cam/other.png", b"not asked for")
    folder = client.ensure_folder_path(girder.folder_id, "seq/cam")
    assert folder is not None

    items = client.reference_objects(girder.assetstore_id, folder.id, [*keys, "seq/cam/vanished.png"])
    again = client.reference_objects(girder.assetstore_id, folder.id, keys[:3])

    assert sorted(items) == keys
    assert {k: i.id for k, i in again.items()} == {k: items[k].id for k in keys[:3]}
    assert sorted(i.name for i in client.items(folder.id)) == sorted(k.rsplit("/", 1)[1] for k in keys)
    [file] = client.item_files(items["seq/cam/0007.png"].id)
    location = client.download_location(file.id)
    assert location is not None and requests.get(location, timeout=30).content == b"seq/cam/0007.png"
    with pytest.raises(ValueError, match="one folder"):
        client.reference_objects(girder.assetstore_id, folder.id, ["a/x.png", "b/y.png"])
