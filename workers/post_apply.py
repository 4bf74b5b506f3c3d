"""Hooks run after a committed apply batch: what follows a change in the catalog, registered at
worker start so the write path names none of them.

Alignment's debounced folder checks are one hook, announcing the alerts a batch opened (the
mass-delete guard's) another, downstream sinks others. Adding one is one ``hooks.register(...)``
line in the worker's setup (``mountsync.workers.app.post_apply_hooks``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from mountsync.shared.catalog.apply import ApplyResult

log = structlog.get_logger("mountsync.apply")

PostApplyHook = Callable[[Any, "ApplyResult"], None]
"""Called with the worker context and what the batch did (it applied changes or opened alerts). It
runs after the commit, so it must not undo anything; an exception is re-raised once every hook has
run."""


class PostApplyHooks:
    """The hooks of one worker process, in registration order (registering twice is a no-op)."""

    def __init__(self, *hooks: PostApplyHook) -> None:
        self._hooks: list[PostApplyHook] = []
        for hook in hooks:
            self.register(hook)

    def register(self, hook: PostApplyHook) -> PostApplyHook:
        """Add ``hook`` (usable as a decorator)."""
        if hook not in self._hooks:
            self._hooks.append(hook)
        return hook

    def __iter__(self) -> Iterator[PostApplyHook]:
        return iter(tuple(self._hooks))

    def __len__(self) -> int:
        return len(self._hooks)

    def run(self, ctx: Any, result: ApplyResult) -> None:
        """Run every hook, even after one fails, then raise the first failure.

        One broken sink must not keep alignment (or another sink) from seeing a committed batch.
        """
        first: Exception | None = None
        for hook in self:
            try:
                hook(ctx, result)
            except Exception as exc:
                log.warning("post-apply hook failed", hook=getattr(hook, "__qualname__", repr(hook)),
                            error=f"{type(exc).__name__}: {exc}")  # fmt: skip
                first = first or exc
        if first is not None:
            raise first
