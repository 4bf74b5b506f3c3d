"""Time as a dependency: code that waits or measures takes a ``Clock``, so debounce windows,
batch windows and backoff are testable with ``mountsync.shared.testing.ManualClock``."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time, monotonic time, and an interruptible wait.

    ``wait`` blocks at most ``seconds`` or until ``stop`` is set, and returns whether ``stop`` is
    set (as ``threading.Event.wait`` does); it never raises.
    """

    def now(self) -> float: ...

    def monotonic(self) -> float: ...

    def now_ns(self) -> int: ...

    def wait(self, stop: threading.Event, seconds: float) -> bool: ...


class SystemClock:
    """Wall and monotonic time from the OS; waits on the event itself."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def now_ns(self) -> int:
        return time.time_ns()

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        return stop.wait(max(0.0, seconds))


SYSTEM_CLOCK = SystemClock()
