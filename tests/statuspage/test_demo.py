"""``mountsync demo --keep-running`` prints the status page's URL and a token that signs in."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.helpers import Proc, wait_for


@pytest.mark.slow
def test_demo_keep_running_prints_the_page_url_and_a_token_that_signs_in(
    test_env: dict[str, str], catalog: psycopg.Connection, tmp_path: Path, procs: list[Proc]
) -> None:
    demo = Proc.mountsync(["demo", "--data-dir", str(tmp_path / "demo"), "--keep-running"], test_env,
                          tmp_path / "demo.log").start()  # fmt: skip
    procs.append(demo)
    line = wait_for(lambda: next((x for x in demo.log().splitlines() if "status page" in x), "") or not demo.alive(),
                    timeout=240, what="the demo to print the status page")  # fmt: skip
    assert isinstance(line, str), demo.tail()
    match = re.search(r"(http://127\.0\.0\.1:\d+/)\s+sign in with the token (\S+)", line)
    assert match, line
    url, token = match.groups()
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as http:
        wait_for(lambda: _answers(http), timeout=60, what="the demo's serve")
        assert http.post("/login", data={"token": token}).status_code == 303
        page = http.get("/").text
        assert 'id="token-name">demo<' in page and 'id="mount-demo"' in page and "Reconcile now" in page
    assert demo.proc is not None
    os.kill(demo.proc.pid, signal.SIGINT)  # Ctrl-C: the demo stops its processes and servers
    wait_for(lambda: not demo.alive(), timeout=60, what="the demo to stop on Ctrl-C")


def _answers(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False
