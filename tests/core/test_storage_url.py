"""Storage URL parsing: schemes, aliases, and what is wrong with a bad URL."""

from __future__ import annotations

import pytest

from mountsync.shared.errors import BadInput
from mountsync.shared.events import Provider
from mountsync.shared.storage import parse_storage_url


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
