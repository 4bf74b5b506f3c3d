"""Prometheus metrics of a Celery worker: ``mountsync worker --metrics-port 9100``.

Tasks run in prefork children, so each child writes its counters to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, set before Celery starts) and
the parent serves them all: apply batch latency, changes applied/stale/dropped, reindex
differences and durations, alignment checks and alerts, migration bytes and parts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import MutableMapping
from typing import Any

import structlog

log = structlog.get_logger("mountsync.worker")

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
ADDRESS_VAR = "MOUNTSYNC_WORKER_METRICS"


def prepare(environ: MutableMapping[str, str], host: str, port: int) -> None:
    """Before exec'ing Celery: a fresh directory for the children's metric files, and the address."""
    directory = tempfile.mkdtemp(prefix="mountsync-worker-metrics-")
    environ[MULTIPROC_DIR] = directory
    environ[ADDRESS_VAR] = f"{host}:{port}"


def start(environ: MutableMapping[str, str]) -> Any:
    """In the worker's main process: serve the merged metrics of all children (or do nothing)."""
    address = environ.get(ADDRESS_VAR, "")
    if not address or not environ.get(MULTIPROC_DIR):
        return None
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    host, _, port = address.rpartition(":")
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    server, _thread = start_http_server(int(port), addr=host, registry=registry)
    log.info("worker metrics endpoint", host=host, port=int(port), path="/metrics")
    return server


def child_exited(environ: MutableMapping[str, str], pid: int) -> None:
    """A child is gone: drop its live gauges (counters and histograms stay summed)."""
    if environ.get(MULTIPROC_DIR):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def cleanup(environ: MutableMapping[str, str]) -> None:
    directory = environ.get(MULTIPROC_DIR, "")
    if directory and os.path.basename(directory).startswith("mountsync-worker-metrics-"):
        shutil.rmtree(directory, ignore_errors=True)
