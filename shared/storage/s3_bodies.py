"""Request bodies for S3 puts: read exactly the announced size, hash them, and check an ETag
after a put the service did not check itself."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from mountsync.shared.errors import StorageUnavailable
from mountsync.shared.storage.base import PartInfo

READ_BLOCK = 1024 * 1024
MD5_HEX = re.compile(r"^[0-9a-f]{32}$")


def b64_of_hex(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def multipart_etag(parts: list[PartInfo]) -> str:
    """The ETag S3 gives a completed multipart object: md5 of the parts' md5s, dash, part count."""
    digest = hashlib.md5(b"".join(bytes.fromhex(p.etag) for p in parts)).hexdigest()
    return f"{digest}-{len(parts)}"


def blocks(stream: BinaryIO, size: int, where: str) -> Iterator[bytes]:
    """Exactly ``size`` bytes of ``stream`` in blocks; ``StorageUnavailable`` if it ends early (the
    source changed while it was sent: hash it again, send it again)."""
    remaining = size
    while remaining:
        block = stream.read(min(remaining, READ_BLOCK))
        if not block:
            raise StorageUnavailable(f"source for {where} ended after {size - remaining} of {size} bytes")
        remaining -= len(block)
        yield block


def read_exactly(stream: BinaryIO, size: int, where: str) -> bytes:
    return b"".join(blocks(stream, size, where))


def seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError):
        return False


def md5_of(stream: BinaryIO, size: int, where: str) -> str:
    digest = hashlib.md5()
    for block in blocks(stream, size, where):
        digest.update(block)
    return digest.hexdigest()


def check_etag(body: Any, size: int, etag: str | None, where: str) -> None:
    """After a put the service did not check: its ETag (the MD5 of what it stored, for a plain
    single-part object) must be the MD5 of the body. Encrypted objects' ETags are not MD5s and
    prove nothing either way."""
    if not etag or not MD5_HEX.match(etag):
        return
    if isinstance(body, bytes | bytearray | memoryview):
        digest = hashlib.md5(body).hexdigest()
    else:
        body.seek(0)
        digest = md5_of(body, size, where)
    if digest != etag:
        raise StorageUnavailable(f"{where} stored content whose MD5 {etag} differs from the body's {digest}")


def expect_end(stream: BinaryIO, size: int, where: str) -> None:
    if stream.read(1):
        raise StorageUnavailable(f"source for {where} is longer than the {size} bytes announced")
