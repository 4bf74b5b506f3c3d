"""ChunkControl polls the job state at most once per window, however many item threads ask."""

from __future__ import annotations

import threading
import time
from collections import Counter
from types import SimpleNamespace

from mountsync.workers.migration.service import STATE_POLL_S, ChunkControl


def test_one_thread_polls_the_job_state_per_window() -> None:
    now = [0.0]
    release = threading.Event()
    calls: list[str] = []
    returned: list[str | None] = []

    def job_state(job_id: str) -> str:
        calls.append(job_id)
        release.wait(10)  # a slow query: the other threads ask meanwhile
        return "cancelled"

    rt = SimpleNamespace(clock=lambda: now[0], jobs=SimpleNamespace(job_state=job_state))
    control = ChunkControl(rt, "job", deadline=1e9)  # type: ignore[arg-type]
    now[0] = STATE_POLL_S  # the window is over
    threads = [threading.Thread(target=lambda: returned.append(control.stop_reason())) for _ in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(calls) + len(returned) < len(threads) and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1
    assert Counter(returned) == {"cancelled": 1, None: 7}  # the others kept the last state
    assert control.stop_reason() == "cancelled"  # the polled state, without another query
    assert len(calls) == 1
