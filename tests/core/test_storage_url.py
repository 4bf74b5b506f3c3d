"""Storage URL parsing and the fs adapter contract."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mountsync.shared.errors import BadInput, ObjectNotFound
from mountsync.shared.events import Provider
from mountsync.shared.storage import open_storage, parse_storage_url


@pytest.mark.parametrize(
    "url, provider, bucket, prefix",
    [
        ("s3://bkt/a/b", Provider.S3, "bkt", "a/b/"),
        ("minio://bkt", Provider.S3, "bkt", ""),
        ("gs://bkt/x/", Provider.GCS, "bkt", "x/"),
        ("google://bkt/x", Provider.GCS, "bkt", "x/"),
        ("az://container/p", Provider.AZURE, "container", "p/"),
        ("file:///data/images/", Provider.FS, "/data/images", ""),
        ("fs:///data/images", Provider.FS, "/data/images", ""),
    ],
)
def test_parse(url: str, provider: Provider, bucket: str, prefix: str) -> None:
    parsed = parse_storage_url(url)
    assert (parsed.provider, parsed.bucket, parsed.prefix) == (provider, bucket, prefix)


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://x/y", "unknown URL scheme"),
        ("just-a-path", "not a storage URL"),
        ("s3:///prefix", "no bucket name"),
        ("s3://b/../escape", "not allowed"),
        ("file://relative/path", "absolute path"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        parse_storage_url(url)


def test_fs_adapter_lists_stats_reads_and_writes(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "1.jpg").write_bytes(b"one")
    (tmp_path / "a" / "b" / "2.jpg").write_bytes(b"two!")
    storage = open_storage(f"file://{tmp_path}")
    assert sorted(i.key for i in storage.list()) == ["a/1.jpg", "a/b/2.jpg"]
    assert [i.key for i in storage.list("a/", recursive=False)] == ["a/1.jpg"]
    info = storage.stat("a/b/2.jpg")
    assert info.size == 4 and info.etag
    with storage.open("a/1.jpg") as fh:
        assert fh.read() == b"one"
    with pytest.raises(ObjectNotFound):
        storage.stat("missing.jpg")
    with pytest.raises(FileNotFoundError):  # ObjectNotFound is also a FileNotFoundError
        storage.open("missing.jpg")
    storage.check(writable=True)
    session = storage.start_upload("c/big.bin", part_size=4)
    storage.upload_part(session, 1, b"abcd")
    storage.upload_part(session, 2, b"ef")
    parts = storage.list_parts(session)
    assert [p.number for p in parts] == [1, 2]
    final = storage.complete_upload(session, parts)
    assert final.size == 6 and (tmp_path / "c" / "big.bin").read_bytes() == b"abcdef"
    assert sorted(i.key for i in storage.list()) == ["a/1.jpg", "a/b/2.jpg", "c/big.bin"]
    storage.put("d.txt", io.BytesIO(b"x"), 1)
    storage.delete("d.txt")


def test_fs_adapter_refuses_escaping_keys(tmp_path: Path) -> None:
    storage = open_storage(f"file://{tmp_path}")
    for key in ("../etc/passwd", "/abs", "a//b", "a/./b"):
        with pytest.raises(BadInput):
            storage.stat(key)


def test_fs_folder_summaries_equal_the_generic_listing_summary(tmp_path: Path) -> None:
    from mountsync.workers.reindex import summarize_listing

    for folder in ("a", "a/b", "c d", "ünï"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        for i in range(5):
            (tmp_path / folder / f"f{i}.png").write_bytes(b"x" * i)
    (tmp_path / "top.txt").write_bytes(b"top")
    storage = open_storage(f"file://{tmp_path}")
    generic, listed = summarize_listing(storage.list(), lambda _n: None)
    fast = {f: (n, b, fp) for f, n, b, fp in storage.folder_summaries()}
    assert fast == {f: s.key() for f, s in generic.items()} and listed == 21
    scoped = {f for f, *_ in storage.folder_summaries("a/")}
    assert scoped == {"a", "a/b"}
