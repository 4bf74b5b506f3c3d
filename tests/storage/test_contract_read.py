"""The reading half of the Storage contract (shared/storage/base.py), run over every provider:
listing, stat, streaming reads, the folder summaries reindex compares, the credential check."""

from __future__ import annotations

import hashlib
import os

import pytest

from mountsync.shared.catalog.apply import fingerprint_hash
from mountsync.shared.errors import BadInput, ObjectNotFound
from mountsync.workers.reindex import summarize, summarize_listing
from tests.storage.rig import StorageRig, put, read_all

# Keys users really have: spaces, '+', '%' (never decoded twice), '=', unicode, deep folders.
ODD_KEYS = [
    "plain.txt",
    "with space/and+plus.txt",
    "percent%25and%2F=equals.bin",
    "ünï/cödé/名前.jpg",
    "a/b/c/d/e/f/g/h/i/j/deep.png",
]


def test_listing_is_complete_across_pages_and_agrees_with_stat(rig: StorageRig) -> None:
    bodies = {f"many/{i:03d}.txt": f"body {i}".encode() for i in range(23)}
    bodies.update({f"many/sub/{i}.txt": b"s" * i for i in range(3)})
    for key, data in bodies.items():
        put(rig.storage, key, data)
    rig.small_pages(5)  # several listing requests on every provider that pages

    listed = {info.key: info for info in rig.storage.list("many/")}
    direct = {info.key for info in rig.storage.list("many/", recursive=False)}

    assert set(listed) == set(bodies)
    assert direct == {k for k in bodies if "/sub/" not in k}
    for key, data in bodies.items():
        stat = rig.storage.stat(key)
        assert (listed[key].size, listed[key].etag) == (len(data), stat.etag)
        assert listed[key].etag and not listed[key].etag.startswith('"')  # unquoted, like events
        assert listed[key].modified_ns > 0
        if rig.caps.etag_is_content_md5:
            assert listed[key].etag == hashlib.md5(data).hexdigest()


def test_odd_keys_round_trip_exactly(rig: StorageRig) -> None:
    for key in ODD_KEYS:
        put(rig.storage, key, key.encode())

    assert {info.key for info in rig.storage.list()} == set(ODD_KEYS)
    for key in ODD_KEYS:
        assert read_all(rig.storage, key) == key.encode()
        assert rig.storage.stat(key).size == len(key.encode())
    assert [i.key for i in rig.storage.list("ünï/cödé/")] == ["ünï/cödé/名前.jpg"]
    assert [i.key for i in rig.storage.list("with space/", recursive=False)] == ["with space/and+plus.txt"]


def test_an_empty_bucket_and_an_unknown_prefix_list_nothing(rig: StorageRig) -> None:
    assert list(rig.storage.list()) == []
    assert list(rig.storage.list("", recursive=False)) == []
    put(rig.storage, "top.txt", b"x")
    assert [i.key for i in rig.storage.list("")] == ["top.txt"]  # the empty prefix is the whole bucket
    assert list(rig.storage.list("nothing/here/")) == []


def test_non_recursive_listing_yields_direct_children_only(rig: StorageRig) -> None:
    for key in ("top.txt", "dir/a.txt", "dir/b.txt", "dir/sub/c.txt", "dirt/d.txt"):
        put(rig.storage, key, b"x")

    assert {i.key for i in rig.storage.list("", recursive=False)} == {"top.txt"}
    assert {i.key for i in rig.storage.list("dir/", recursive=False)} == {"dir/a.txt", "dir/b.txt"}
    assert {i.key for i in rig.storage.list("dir/")} == {"dir/a.txt", "dir/b.txt", "dir/sub/c.txt"}


def test_zero_byte_objects_are_listed_stated_and_read(rig: StorageRig) -> None:
    written = put(rig.storage, "empty/marker.txt", b"")

    (listed,) = rig.storage.list("empty/")
    assert (listed.key, listed.size) == ("empty/marker.txt", 0)
    assert rig.storage.stat("empty/marker.txt").size == written.size == 0
    assert read_all(rig.storage, "empty/marker.txt") == b""
    if rig.caps.etag_is_content_md5:
        assert listed.etag == hashlib.md5(b"").hexdigest()


def test_stat_reports_size_etag_version_and_sequencer(rig: StorageRig) -> None:
    first = put(rig.storage, "k.bin", b"0123456789")
    one = rig.storage.stat("k.bin")
    put(rig.storage, "k.bin", b"another content")
    two = rig.storage.stat("k.bin")

    assert (one.key, one.size, one.etag) == ("k.bin", 10, first.etag)  # put returns what is stored
    assert two.size == 15 and two.etag != one.etag  # new content, new etag: reindex sees the update
    if rig.caps.etag_is_content_md5:
        assert two.etag == hashlib.md5(b"another content").hexdigest()
    if rig.caps.version_without_versioning:
        assert one.version and two.version and one.version != two.version
    else:
        assert one.version is None and two.version is None
    if rig.caps.listing_sequencer:
        assert "" < one.sequencer < two.sequencer  # comparable like the events' sequencers
        assert [i.sequencer for i in rig.storage.list()] == [two.sequencer]
    else:
        assert one.sequencer == two.sequencer == ""


def test_missing_objects_raise_object_not_found_which_is_a_file_not_found(rig: StorageRig) -> None:
    put(rig.storage, "present.txt", b"here")
    for action in (rig.storage.stat, rig.storage.open, rig.storage.delete):
        with pytest.raises(ObjectNotFound, match="nope"):
            action("dir/nope.txt")
        with pytest.raises(FileNotFoundError):  # callers that only know the standard library
            action("nope.txt")
    assert [i.key for i in rig.storage.list()] == ["present.txt"]


def test_open_streams_large_objects_in_blocks(rig: StorageRig) -> None:
    # More than one read chunk of every adapter, and above the size GCS's SDK sends in one request.
    data = os.urandom(9 * 1024 * 1024 + 17)
    put(rig.storage, "big.bin", data)

    with rig.storage.open("big.bin") as stream:
        head = stream.read(10)
        digest = hashlib.sha256(head)
        while block := stream.read(256 * 1024):
            assert len(block) <= 256 * 1024
            digest.update(block)
    assert head == data[:10]
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


def test_folder_summaries_equal_the_ones_built_from_stat(rig: StorageRig) -> None:
    """Reindex compares per-folder (objects, bytes, fingerprint) with the catalog's, which were
    built from event and stat etags: any mismatch would make every reconcile re-list folders."""
    keys = [f"{folder}/f{i}.png" for folder in ("a", "a/b", "c d", "ünï") for i in range(4)] + ["top.txt"]
    for n, key in enumerate(keys):
        put(rig.storage, key, b"x" * n)

    fast, listed = summarize(rig.storage, "", lambda _n: None)
    generic, _ = summarize_listing(rig.storage.list(), lambda _n: None)
    scoped, _ = summarize(rig.storage, "a/", lambda _n: None)

    expected: dict[str, tuple[int, int, int]] = {}
    for key in keys:
        info = rig.storage.stat(key)
        folder = key.rpartition("/")[0]
        objects, size, fingerprint = expected.get(folder, (0, 0, 0))
        expected[folder] = (objects + 1, size + info.size, fingerprint ^ fingerprint_hash(key, info.size, info.etag))
    assert listed == len(keys)
    assert {f: s.key() for f, s in fast.items()} == expected
    assert {f: s.key() for f, s in generic.items()} == expected
    assert set(scoped) == {"a", "a/b"}


def test_check_read_only_and_writable_leave_nothing_behind(rig: StorageRig) -> None:
    mounted = rig.reopen("mnt/")
    mounted.check(writable=False)
    mounted.check(writable=True)
    rig.storage.check(writable=True)
    assert list(rig.storage.list()) == []


def test_a_missing_bucket_is_refused_never_listed_as_empty(rig: StorageRig) -> None:
    """``mount add`` on a mistyped bucket exits 2 with the reason; a reindex of a bucket that
    vanished raises instead of reporting every object deleted."""
    with pytest.raises(BadInput, match="does not exist"):
        rig.missing.check(writable=False)
    with pytest.raises(rig.caps.missing_bucket_on_list, match="does not exist"):
        list(rig.missing.list())
