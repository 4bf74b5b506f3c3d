"""``GET /api/v1/deadletters`` and ``POST /api/v1/deadletters/{id}/replay``: what could not be
processed, with the reason, and a retry once the cause is fixed (as ``mountsync deadletters``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from mountsync.producers.deadletters.replay import Replayer, ReplayOptions
from mountsync.shared.api.auth import require_write
from mountsync.shared.api.deps import ApiRuntime, runtime
from mountsync.shared.catalog.deadletters import DeadLetters
from mountsync.shared.errors import Conflict, ServiceUnavailable

router = APIRouter(prefix="/deadletters", tags=["dead letters"])
Runtime = Annotated[ApiRuntime, Depends(runtime)]


@router.get("")
def list_letters(
    rt: Runtime,
    include_replayed: Annotated[bool, Query(description="also letters replayed already")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Dead letters, newest first (the rows of ``mountsync deadletters list --json``)."""
    letters = DeadLetters(rt.pool).list(include_replayed=include_replayed, limit=limit)
    return {"dead_letters": [letter.describe() for letter in letters], "next_cursor": None}


@router.post("/{letter_id}/replay", dependencies=[Depends(require_write)])
def replay_letter(letter_id: int, rt: Runtime) -> dict[str, Any]:
    """Send the letter back through its normalizer (or task); 409 with the new reason if it fails again."""
    letter = DeadLetters(rt.pool).get(letter_id)
    result = Replayer(rt, ReplayOptions()).replay(letter)
    if result.status == "failed":
        raise Conflict(f"dead letter {letter_id} failed again: {result.reason}")
    if result.status == "unavailable":
        raise ServiceUnavailable(f"dead letter {letter_id} cannot be replayed now: {result.reason}")
    return result.describe()
