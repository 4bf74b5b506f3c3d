"""A raw stream over an SDK download body whose read errors become mountsync errors."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from shared.errors import MountsyncError


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
