"""Dataset recognition: image sequences, videos, annotations and sidecars linked by stem."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mountsync.shared.errors import ConfigError
from mountsync.workers.alignment.datasets import (
    ANNOTATION_TYPES,
    IMAGE_SEQUENCE,
    SIDECAR_SUFFIX,
    VIDEO,
    MediaTypes,
    Role,
    basename,
    describe_folder,
    split_name,
)

TYPES = MediaTypes()


@pytest.mark.parametrize(
    ("key", "role"),
    [
        ("f/0001.png", Role.IMAGE),
        ("f/0001.JPG", Role.IMAGE),
        ("f/0001.jpeg", Role.IMAGE),
        ("f/0001.tif", Role.OTHER),  # not served by default
        ("f/clip.mp4", Role.VIDEO),
        ("f/clip.MOV", Role.VIDEO),
        ("f/clip.webm", Role.VIDEO),
        ("f/clip.avi", Role.VIDEO),
        ("f/clip.csv", Role.ANNOTATION),
        ("f/clip.json", Role.ANNOTATION),
        ("f/clip_metadata.json", Role.SIDECAR),
        ("f/clip_metadata.yaml", Role.SIDECAR),
        ("f/frames.txt", Role.MANIFEST),
        ("f/._0001.png", Role.OTHER),  # macOS resource fork, not a frame
        ("f/.DS_Store", Role.OTHER),
        ("f/README", Role.OTHER),
        ("f/notes.txt", Role.OTHER),
        ("top.png", Role.IMAGE),
        ("f/", Role.OTHER),  # a folder marker has no name
        ("f/0001.", Role.OTHER),  # a trailing dot: no extension
        ("f/x.png/y", Role.OTHER),  # the dot is in the folder, not the name
        ("f/_metadata.json", Role.SIDECAR),
        ("f/metadata.json", Role.ANNOTATION),
        ("f/clip_metadata", Role.OTHER),  # a sidecar needs an extension
    ],
)
def test_roles(key: str, role: Role) -> None:
    assert TYPES.role(key) is role


def role_by_the_rules(types: MediaTypes, key: str) -> Role:
    """The module's documented rules, spelled with split_name and basename (role is a faster cut)."""
    name = basename(key)
    if not name or name.startswith("."):
        return Role.OTHER
    if name == types.manifest_name:
        return Role.MANIFEST
    _, stem, ext = split_name(key)
    if ext in types.images:
        return Role.IMAGE
    if ext in types.videos:
        return Role.VIDEO
    if stem.endswith(SIDECAR_SUFFIX) and ext:
        return Role.SIDECAR
    return Role.ANNOTATION if ext in ANNOTATION_TYPES else Role.OTHER


@given(st.lists(st.sampled_from(["a", "/", ".", "_metadata", "frames", ".txt", "PNG", "png", "json", "mp4", "é"]),
                max_size=8).map("".join))  # fmt: skip
def test_role_follows_the_rules_for_any_key(key: str) -> None:
    assert TYPES.role(key) is role_by_the_rules(TYPES, key)


def test_other_image_types_are_configurable() -> None:
    types = MediaTypes.from_extra({"MOUNTSYNC_IMAGE_TYPES": "png, .TIF,tiff"})
    assert types.role("a/x.tif") is Role.IMAGE
    assert types.role("a/x.jpg") is Role.OTHER
    assert MediaTypes.from_extra({}).images == frozenset({"png", "jpg", "jpeg"})


@pytest.mark.parametrize(
    "extra",
    [
        {"MOUNTSYNC_IMAGE_TYPES": "png,mp4"},  # both image and video
        {"MOUNTSYNC_IMAGE_TYPES": "a/b"},
        {"MOUNTSYNC_FRAME_MANIFEST": "x/frames.txt"},
    ],
)
def test_bad_type_config_is_config_error(extra: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        MediaTypes.from_extra(extra)


def test_image_folder_is_one_sequence_with_its_annotations() -> None:
    keys = ["d/2.png", "d/1.png", "d/d.csv", "d/d_metadata.json", "d/notes.txt", "d/frames.txt"]
    contents = describe_folder("d", keys, TYPES)
    (ds,) = contents.datasets
    assert (ds.path, ds.type, ds.name) == ("d", IMAGE_SEQUENCE, "d")
    assert sorted(ds.media) == ["d/1.png", "d/2.png"]
    assert ds.annotations == ("d/d.csv",)
    assert ds.sidecars == ("d/d_metadata.json",)
    assert contents.manifest == "d/frames.txt"
    assert contents.orphans == ()


def test_each_video_is_its_own_dataset_linked_by_stem() -> None:
    keys = ["v/a.mp4", "v/b.webm", "v/a.json", "v/b.csv", "v/b_metadata.json", "v/c.csv"]
    contents = describe_folder("v", keys, TYPES)
    by_path = {d.path: d for d in contents.datasets}
    assert set(by_path) == {"v/a.mp4", "v/b.webm"}
    assert by_path["v/a.mp4"].type == VIDEO
    assert by_path["v/a.mp4"].name == "a"
    assert by_path["v/a.mp4"].annotations == ("v/a.json",)
    assert by_path["v/b.webm"].annotations == ("v/b.csv",)
    assert by_path["v/b.webm"].sidecars == ("v/b_metadata.json",)
    assert contents.orphans == ("v/c.csv",)  # no media with stem c


def test_annotations_arriving_before_media_link_once_it_arrives() -> None:
    early = describe_folder("v", ["v/a.csv", "v/a_metadata.json"], TYPES)
    assert early.datasets == ()
    assert early.orphans == ("v/a.csv", "v/a_metadata.json")
    later = describe_folder("v", ["v/a.csv", "v/a_metadata.json", "v/a.mp4"], TYPES)
    (ds,) = later.datasets
    assert ds.annotations == ("v/a.csv",)
    assert ds.sidecars == ("v/a_metadata.json",)
    assert later.orphans == ()


def test_images_and_videos_side_by_side() -> None:
    keys = ["m/1.jpg", "m/clip.mp4", "m/clip.csv", "m/m.json"]
    contents = describe_folder("m", keys, TYPES)
    kinds = [(d.type, d.path) for d in contents.datasets]
    assert kinds == [(IMAGE_SEQUENCE, "m"), (VIDEO, "m/clip.mp4")]
    seq, video = contents.datasets
    assert video.annotations == ("m/clip.csv",)
    assert seq.annotations == ("m/m.json",)  # not a video stem: the folder's annotations


def test_root_folder_and_no_media() -> None:
    contents = describe_folder("", ["1.png"], TYPES)
    assert contents.datasets[0].path == ""
    assert contents.datasets[0].name == "/"
    assert describe_folder("x", ["x/readme.md"], TYPES).datasets == ()
