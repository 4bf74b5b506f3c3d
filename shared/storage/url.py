"""Storage URLs: ``s3://bucket/prefix``, ``gs://``, ``az://``, ``file:///abs/path`` and aliases."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from mountsync.shared.errors import BadInput
from mountsync.shared.events import Provider

SCHEMES: dict[str, Provider] = {
    "s3": Provider.S3,
    "minio": Provider.S3,
    "gs": Provider.GCS,
    "gcs": Provider.GCS,
    "google": Provider.GCS,
    "az": Provider.AZURE,
    "azure": Provider.AZURE,
    "file": Provider.FS,
    "fs": Provider.FS,
}
CANONICAL = {Provider.S3: "s3", Provider.GCS: "gs", Provider.AZURE: "az", Provider.FS: "file"}


@dataclass(frozen=True, slots=True)
class StorageURL:
    """A parsed storage location. For ``fs`` the bucket is the absolute root directory."""

    provider: Provider
    bucket: str
    prefix: str = ""

    def __str__(self) -> str:
        if self.provider is Provider.FS:
            return f"file://{self.bucket}"
        return f"{CANONICAL[self.provider]}://{self.bucket}/{self.prefix}"

    def key_for(self, relative: str) -> str:
        return f"{self.prefix}{relative}"


def parse_storage_url(text: str) -> StorageURL:
    """Parse a storage URL; ``BadInput`` names the URL and what is wrong with it."""
    scheme, sep, _ = text.partition("://")
    if not sep:
        raise BadInput(f"{text!r} is not a storage URL; use s3://, gs://, az:// or file:///path")
    provider = SCHEMES.get(scheme.lower())
    if provider is None:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise BadInput(f"unknown URL scheme {scheme!r} in {text!r}; known: {known}")
    parts = urlsplit(text)
    if provider is Provider.FS:
        path = unquote(parts.netloc + parts.path) if scheme == "fs" else unquote(parts.path)
        if parts.netloc and scheme == "file" and parts.netloc != "localhost":
            raise BadInput(f"{text!r}: file URLs need an absolute path, like file:///data/images")
        if not path.startswith("/"):
            raise BadInput(f"{text!r}: file URLs need an absolute path, like file:///data/images")
        root = "/" + path.strip("/") if path.strip("/") else "/"
        return StorageURL(Provider.FS, root, "")
    bucket = parts.netloc
    if not bucket:
        raise BadInput(f"{text!r} has no bucket name; write {scheme}://BUCKET/prefix")
    if parts.query or parts.fragment:
        raise BadInput(f"{text!r}: storage URLs take no query or fragment")
    prefix = parts.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if any(seg in ("..", ".") for seg in prefix.split("/")):
        raise BadInput(f"{text!r}: '.' and '..' are not allowed in a prefix")
    return StorageURL(provider, bucket, prefix)
