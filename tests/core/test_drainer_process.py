"""``serve``'s inbox drainer as a child process (``producers/drainer_process.py``), on real Redis
and PostgreSQL: it drains what the receivers accepted, its metrics reach the parent's registry,
``stop`` ends it, and it does not outlive a parent killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mountsync.producers.drainer_process import DRAINER_NICENESS, MetricRelay, metric_samples
from mountsync.producers.http.context import ServeContext
from mountsync.producers.inbox import Inbox
from mountsync.shared import metrics
from mountsync.shared.config import ConfigError, load_settings
from mountsync.shared.events import Kind, ObjectChange, Provider, Source
from tests.conftest import env_for
from tests.helpers import queued_changes, wait_for

SOURCE = Source.AZURE_EVENTGRID


def change(i: int) -> ObjectChange:
    return ObjectChange(Provider.AZURE, "frames", f"cam/{i:04d}.jpg", Kind.CREATED, 1_700_000_000 + i, SOURCE,
                        size=i, etag=f"0x{i:X}", sequencer=f"{i:048X}", source_id=f"ev-{i}")  # fmt: skip


def enqueued_total() -> float:
    return sum(value for name, _, value in metric_samples() if name == "CHANGES_ENQUEUED")


def gone(pid: int) -> bool:
    """The process has exited (an orphan's zombie counts: nobody may reap it in a container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_relay_adds_a_childs_growth_to_counters_and_sets_gauges() -> None:
    relay = MetricRelay()
    series = metrics.CHANGES_ENQUEUED.labels("relay-test")
    before = series._value.get()
    relay.apply([("CHANGES_ENQUEUED", (("source", "relay-test"),), 5.0), ("QUEUE_DEPTH", (("queue", "relay-q"),), 9.0)])
    relay.apply(
        [("CHANGES_ENQUEUED", (("source", "relay-test"),), 12.0), ("QUEUE_DEPTH", (("queue", "relay-q"),), 2.0)]
    )
    relay.apply([("CHANGES_ENQUEUED", (("source", "relay-test"),), 12.0)])  # the same snapshot again adds nothing
    assert series._value.get() == before + 12
    assert metrics.QUEUE_DEPTH.labels("relay-q")._value.get() == 2
    MetricRelay().apply([("CHANGES_ENQUEUED", (("source", "relay-test"),), 3.0)])  # a restarted child counts from 0
    assert series._value.get() == before + 15


def test_inbox_drainer_setting_is_checked() -> None:
    assert load_settings({}).inbox_drainer == "process"
    assert load_settings({"MOUNTSYNC_INBOX_DRAINER": "thread"}).inbox_drainer == "thread"
    with pytest.raises(ConfigError, match=r"MOUNTSYNC_INBOX_DRAINER='fork' must be one of process, thread"):
        load_settings({"MOUNTSYNC_INBOX_DRAINER": "fork"})


def test_child_drains_the_inbox_relays_its_metrics_and_stops(own: Any) -> None:
    settings, runtime = own
    inbox = Inbox(runtime.redis, settings, SOURCE)
    for i in range(20):
        inbox.enqueue([change(i)])
    enqueued = enqueued_total()
    ctx = ServeContext(settings, consumer="child-test")
    try:
        ctx.start_drainer(SOURCE)
        drainer = ctx._drainers[SOURCE]
        assert drainer.pid != os.getpid() and ctx.drainers_alive() == {"azure-eventgrid": True}
        wait_for(lambda: len(queued_changes(runtime.redis, settings)) == 20, what="every change on the queue")
        wait_for(lambda: runtime.redis.xlen(inbox.key) == 0, what="drained entries deleted")
        wait_for(lambda: enqueued_total() == enqueued + 20, what="the child's counts in this process's metrics")
        assert os.getpriority(os.PRIO_PROCESS, drainer.pid) == min(19, os.nice(0) + DRAINER_NICENESS)  # receivers first
        ctx.start_drainer(SOURCE)  # a no-op while it runs
        assert ctx._drainers[SOURCE] is drainer
    finally:
        ctx.stop()
    assert not drainer.alive and gone(drainer.pid)


def test_a_killed_child_is_seen_dead_and_the_next_request_starts_another(own: Any) -> None:
    settings, _runtime = own
    ctx = ServeContext(settings, consumer="kill-test")
    try:
        ctx.start_drainer(SOURCE)
        first = ctx._drainers[SOURCE]
        wait_for(lambda: first.alive, what="the first drainer up")
        os.kill(first.pid, signal.SIGKILL)
        wait_for(lambda: not first.alive, what="the killed drainer seen dead")
        ctx.start_drainer(SOURCE)  # what every Event Grid request does
        second = ctx._drainers[SOURCE]
        assert second is not first and second.alive and second.pid != first.pid
    finally:
        ctx.stop()


PARENT = """
import sys, time
from mountsync.producers.http.context import ServeContext
from mountsync.shared.config import load_settings
from mountsync.shared.events import Source
import os
ctx = ServeContext(load_settings(os.environ), consumer="orphan-test")
ctx.start_drainer(Source.AZURE_EVENTGRID)
print(ctx._drainers[Source.AZURE_EVENTGRID].pid, flush=True)
time.sleep(600)
"""


def test_child_stops_when_its_parent_is_killed(own: Any) -> None:
    settings, _ = own
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(PARENT)], env=env_for(settings),
                              stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not gone(child)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
    wait_for(lambda: gone(child), timeout=20, what="the orphaned drainer to exit")
