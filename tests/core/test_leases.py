"""The lease keeper shared by the SQS, Storage Queue and Event Grid sources."""

from __future__ import annotations

import time

from mountsync.producers.leases import LeaseKeeper
from mountsync.shared.events import RawMessage, Source
from tests.helpers import wait_for


def message(name: str) -> RawMessage:
    return RawMessage(source=Source.S3_SQS, message_id=name, body=b"")


def test_renews_only_messages_held_longer_than_the_interval() -> None:
    renewed: list[list[str]] = []
    keeper = LeaseKeeper(lambda due: renewed.append([m.message_id for m in due]), 3600)
    try:
        old, new = message("old"), message("new")
        keeper.hold([old, new])
        keeper._held[id(old)] = (time.monotonic() - 4000, old)
        due = keeper.due()
        assert [m.message_id for m in due] == ["old"]
        keeper.renewed(due)
        assert keeper.due() == []  # renewed: not due again at once
        keeper.drop([old, new])
        assert not keeper._held  # settled messages are no longer renewed
    finally:
        keeper.close()


def test_the_thread_renews_and_survives_a_failing_renewal() -> None:
    calls: list[int] = []

    def renew(due: list[RawMessage]) -> None:
        calls.append(len(due))
        raise RuntimeError("transport down")

    keeper = LeaseKeeper(renew, 0.2)
    try:
        keeper.hold([message("slow")])
        wait_for(lambda: len(calls) >= 2, timeout=10, what="a second renewal after the failing one")
    finally:
        keeper.close()


def test_no_interval_means_no_thread() -> None:
    keeper = LeaseKeeper(lambda due: None, None)
    keeper.hold([message("m")])
    assert keeper._thread is None
    keeper.close()
