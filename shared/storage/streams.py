"""Stream adapters for the storage adapters: SDK download bodies whose errors become mountsync errors,
a window over a seekable stream sent in place as a request body, and an upload body that must be
exactly the size announced."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, BinaryIO

from mountsync.shared.errors import MountsyncError, StorageUnavailable


class TranslatingReader(io.RawIOBase):
    """Reads ``inner`` (anything with ``read(n)`` and ``close()``); an SDK or transport error raised
    midway is passed through ``translate`` so callers only ever see the project's error tree."""

    def __init__(self, inner: Any, translate: Callable[[Exception], Exception]) -> None:
        self._inner = inner
        self._translate = translate

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._inner.read(len(buffer))
        except MountsyncError:
            raise
        except Exception as exc:  # urllib3/botocore/google streaming errors differ by version
            raise self._translate(exc) from exc
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            try:
                self._inner.close()
            finally:
                super().close()


class StreamWindow(io.RawIOBase):
    """The next ``size`` bytes of a seekable stream, read in place: a request body an SDK can
    rewind for a retry (botocore records ``tell()`` and seeks back) that never reads past
    ``size``, so a file that grows while it is sent is cut where it was hashed."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self._stream, self._start, self._size = stream, stream.tell(), size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, min(self._size, base + offset))
        self._stream.seek(self._start + self._pos)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        left = self._size - self._pos
        n = left if n is None or n < 0 else min(n, left)
        data = self._stream.read(n) if n else b""
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def __len__(self) -> int:
        return self._size


class ExactlySized(io.RawIOBase):
    """Exactly ``size`` bytes of ``stream`` for an SDK to upload: a stream that ends early or goes
    on past ``size`` raises ``StorageUnavailable`` before its last bytes are handed over, so the
    SDK never publishes a truncated or padded copy of a source that changed while it was sent
    (retry: hash it again, send it again)."""

    def __init__(self, stream: BinaryIO, size: int, where: str) -> None:
        self._stream, self._size, self._where = stream, size, where
        self._pos = 0
        self._seekable = _seekable(stream)
        self._start = stream.tell() if self._seekable else 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._seekable  # lets an SDK rewind for a retry, as it could with the stream itself

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if not self._seekable:
            raise io.UnsupportedOperation("the source stream cannot seek")
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, min(self._size, base + offset))
        self._stream.seek(self._start + self._pos)
        return self._pos

    def read(self, n: int | None = -1) -> bytes:
        want = self._size - self._pos if n is None or n < 0 else min(n, self._size - self._pos)
        blocks = []
        while want:
            block = self._stream.read(want)
            if not block:
                raise StorageUnavailable(
                    f"the source for {self._where} ended after {self._pos} of {self._size} bytes "
                    "(it changed while it was sent)"
                )
            blocks.append(block)
            self._pos += len(block)
            want -= len(block)
        if self._pos == self._size and self._stream.read(1):
            raise StorageUnavailable(
                f"the source for {self._where} is longer than the {self._size} bytes announced "
                "(it changed while it was sent)"
            )
        return b"".join(blocks)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def __len__(self) -> int:
        return self._size


def _seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError):
        return False
