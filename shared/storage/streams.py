"""Stream adapters for the storage adapters: SDK download bodies whose errors become mountsync errors,
and a window over a seekable stream sent in place as a request body."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, BinaryIO

from mountsync.shared.errors import MountsyncError


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
