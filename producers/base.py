"""The contract between ``run_source`` and one event transport (SQS, Pub/Sub, Event Grid, a watcher)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from mountsync.shared.events import ObjectChange, RawMessage, Source

Normalizer = Callable[[RawMessage], list[ObjectChange]]
"""Pure: raw message -> changes. ``[]`` for test/validation events; raises ``InvalidEvent``."""

Enricher = Callable[[list[ObjectChange]], list[ObjectChange]]
"""Optional I/O step after normalization (e.g. stat objects whose notification had no payload)."""


class ChangeSink(Protocol):
    """Where a pipeline puts changes: the ``changes`` queue, or a push endpoint's inbox."""

    def enqueue(self, changes: Sequence[ObjectChange]) -> None: ...


class EventSource(Protocol):
    """A transport that delivers ``RawMessage``s at least once and takes acks.

    - ``receive`` blocks at most ``wait_s`` seconds and returns ``[]`` on timeout; transient
      failures raise ``RetryableError`` (the loop backs off and calls again).
    - ``ack`` settles messages after their changes are durably queued. It returns the messages
      whose ack failed (they will come back; applying twice is harmless) and raises
      ``RetryableError`` only when nothing could be acked.
    - ``nack`` makes messages redeliverable soon (best effort; a lost nack means a lease timeout).
    - ``reject`` removes a message for good; called only after it was dead-lettered.
    - ``extend`` lengthens leases of messages still being batched (no-op where the SDK does it).
    - ``close`` stops receiving; messages received but not acked are redelivered by the service.
    """

    name: Source

    def receive(self, max_messages: int, wait_s: float) -> list[RawMessage]: ...

    def ack(self, messages: Sequence[RawMessage]) -> list[RawMessage]: ...

    def nack(self, messages: Sequence[RawMessage]) -> None: ...

    def reject(self, messages: Sequence[RawMessage]) -> None: ...

    def extend(self, messages: Sequence[RawMessage], seconds: float) -> None: ...

    def close(self) -> None: ...
