"""The processes a benchmark measures: a process with its children, and the CPU they have used."""

from __future__ import annotations

import psutil


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (a Celery worker's pool, serve's drainers)."""
    main = psutil.Process(pid)
    return [main, *main.children(recursive=True)]


def cpu_seconds(*procs: psutil.Process) -> float:
    """User + system CPU seconds the processes have used so far."""
    total = 0.0
    for proc in procs:
        times = proc.cpu_times()
        total += times.user + times.system
    return total
