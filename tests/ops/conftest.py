"""Fixtures for the operations tests: processes (serve, producers, Flower) and HTTP scraping."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from prometheus_client.parser import text_string_to_metric_families

from mountsync.shared.config import Settings
from tests.conftest import ROOT, WorkerProcess, env_for
from tests.helpers import free_port, wait_for


@dataclass
class HttpAnswer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_get(url: str, auth: tuple[str, str] | None = None, timeout: float = 10) -> HttpAnswer:
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpAnswer(response.status, response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return HttpAnswer(exc.code, exc.read())
    except OSError:
        return HttpAnswer(0, b"")


def http_post(url: str, body: bytes, headers: dict[str, str] | None = None) -> HttpAnswer:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return HttpAnswer(response.status, response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return HttpAnswer(exc.code, exc.read())


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus exposition -> {(sample name, labels): value} (fails on a malformed exposition)."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    answer = http_get(url)
    assert answer.status == 200, answer
    return samples(answer.body.decode())


class Process:
    """A ``mountsync ...`` subprocess in its own session with its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args, self.log_path = args, log_path
        log = open(log_path, "ab")  # noqa: SIM115 - owned by the subprocess
        self.proc = subprocess.Popen([sys.executable, "-m", "mountsync.shared", *args], env=env, stdout=log,
                                     stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)  # fmt: skip
        log.close()

    def output(self) -> str:
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        return int(self.proc.returncode)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Any]:
    """Start ``mountsync`` subprocesses; all are stopped at the end of the test."""
    started: list[Process] = []

    def start(*args: str, env: dict[str, str], name: str = "") -> Process:
        log_path = tmp_path / f"{name or args[0]}-{len(started)}.log"
        process = Process(list(args), env, log_path)
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()


def wait_http(url: str, process: Process, what: str, timeout: float = 60) -> None:
    def up() -> bool:
        assert process.alive(), f"{what} exited: {process.output()[-3000:]}"
        return http_get(url, timeout=2).status != 0

    wait_for(up, timeout=timeout, what=what)


@pytest.fixture
def iso_settings(settings: Settings) -> Iterator[Settings]:
    """The session database with a Redis prefix of its own: queues no session worker consumes."""
    iso = settings.with_(redis_prefix=f"{settings.redis_prefix}iso{uuid.uuid4().hex[:6]}:")
    yield iso
    client = redis_lib.Redis.from_url(iso.redis_url)
    for key in client.scan_iter(match=f"{iso.redis_prefix}*", count=1000):
        client.delete(key)
    client.close()


def start_worker(settings: Settings, log_path: Path, queues: str = "changes,reindex,alignment,migrations",
                 **env: str) -> WorkerProcess:  # fmt: skip
    log_path.touch()
    return WorkerProcess(env_for(settings, **env), log_path, queues, 1).start()


__all__ = ["free_port"]
