"""The Redis debounce behind ``after_apply``: one check per folder per window, nothing missed."""

from __future__ import annotations

import uuid
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
import redis as redis_lib

from mountsync.shared.catalog.apply import AppliedChange, ApplyResult
from mountsync.shared.config import Settings
from mountsync.shared.events import Kind
from mountsync.shared.testing import ManualClock, RecordingApp
from mountsync.workers.alignment import hooks, tasks
from mountsync.workers.context import WorkerContext


@pytest.fixture
def ctx(settings: Settings, redis_client: redis_lib.Redis) -> WorkerContext:
    own = replace(settings, redis_prefix=f"{settings.redis_prefix}hooks{uuid.uuid4().hex[:6]}:",
                  extra={"MOUNTSYNC_ALIGNMENT_DEBOUNCE": "0.5"})  # fmt: skip
    return WorkerContext(settings=own, pool=None, redis=redis_client, app=RecordingApp(), clock=ManualClock())  # type: ignore[arg-type]


def applied(key: str, mount_id: int = 1, kind: Kind = Kind.CREATED, was_live: bool = False) -> AppliedChange:
    folder = key.rpartition("/")[0]
    return AppliedChange(mount_id=mount_id, mount_name="m", key=key, folder=folder, kind=kind, size=1,
                         etag="e", version=None, sequencer="", source_id=None, was_live=was_live,
                         prev_etag=None, prev_version=None)  # fmt: skip


def batch(changes: list[AppliedChange]) -> ApplyResult:
    return ApplyResult(received=len(changes), applied=changes, stale=0, dropped=0)


MISSING = object()


def take(ctx: WorkerContext, mount_id: int, folder: str, wait: float = 10.0) -> Any:
    """Let time pass, claim what is due; the folder's recorded keys (None: full check)."""
    ctx.clock.advance(wait)  # type: ignore[attr-defined]
    claims = {(c.mount_id, c.folder): c for c in hooks.claim_due(ctx)}
    for claim in claims.values():
        hooks.release(ctx, claim)
    found = claims.get((mount_id, folder))
    return MISSING if found is None else found.new_keys


def checks(ctx: WorkerContext) -> list[list[Any]]:
    return [args for name, args, _ in ctx.app.sent if name == hooks.TASK_CHECK]  # type: ignore[attr-defined]


def test_a_burst_in_one_folder_costs_one_delayed_check(ctx: WorkerContext) -> None:
    for i in range(50):
        hooks.after_apply(ctx, batch([applied(f"seq/{i}.png"), applied(f"other/{i}.jpg", mount_id=2)]))
    assert sorted(checks(ctx)) == [[1, "seq"], [2, "other"]]
    options = [opts for _, _, opts in ctx.app.sent]  # type: ignore[attr-defined]
    assert {(o["queue"], o["countdown"]) for o in options} == {("alignment", 0.5)}
    assert [due for _, due in hooks.pending(ctx)] == [1_000_000.5, 1_000_000.5]


def test_irrelevant_files_schedule_nothing(ctx: WorkerContext) -> None:
    hooks.after_apply(ctx, batch([applied("docs/readme.md"), applied("docs/.DS_Store")]))
    assert checks(ctx) == []


def test_changes_after_the_claim_schedule_the_next_check(ctx: WorkerContext) -> None:
    hooks.after_apply(ctx, batch([applied("seq/1.png")]))
    assert take(ctx, 1, "seq") == ["seq/1.png"]
    hooks.after_apply(ctx, batch([applied("seq/2.png", kind=Kind.DELETED)]))
    assert checks(ctx) == [[1, "seq"], [1, "seq"]]
    assert take(ctx, 1, "seq") is None  # a delete: the full check
    assert take(ctx, 2, "never-scheduled") is MISSING


def test_a_folder_is_not_claimed_before_it_is_due(ctx: WorkerContext) -> None:
    hooks.after_apply(ctx, batch([applied("seq/1.png")]))
    assert take(ctx, 1, "seq", wait=0.1) is MISSING
    assert take(ctx, 1, "seq", wait=0.5) == ["seq/1.png"]


def test_any_check_task_drains_every_due_folder(ctx: WorkerContext) -> None:
    hooks.after_apply(ctx, batch([applied(f"f{i}/1.png") for i in range(5)]))
    ctx.clock.advance(1)  # type: ignore[attr-defined]
    assert sorted(c.folder for c in hooks.claim_due(ctx)) == [f"f{i}" for i in range(5)]
    assert hooks.claim_due(ctx) == []


def test_a_check_that_died_is_claimed_again_as_a_full_check(ctx: WorkerContext) -> None:
    hooks.after_apply(ctx, batch([applied("seq/1.png")]))
    ctx.clock.advance(1)  # type: ignore[attr-defined]
    (first,) = hooks.claim_due(ctx)  # the worker dies: never released
    assert first.new_keys == ["seq/1.png"]
    ctx.clock.advance(hooks.LEASE_S / 2)  # type: ignore[attr-defined]
    assert hooks.claim_due(ctx) == []  # still within its lease
    ctx.clock.advance(hooks.LEASE_S)  # type: ignore[attr-defined]
    (again,) = hooks.claim_due(ctx)
    assert (again.folder, again.new_keys) == ("seq", None)
    hooks.release(ctx, again)
    ctx.clock.advance(hooks.LEASE_S * 2)  # type: ignore[attr-defined]
    assert hooks.claim_due(ctx) == []


def test_a_stale_lease_that_is_also_due_is_claimed_once(ctx: WorkerContext) -> None:
    hooks.after_apply(ctx, batch([applied("seq/1.png")]))
    ctx.clock.advance(1)  # type: ignore[attr-defined]
    hooks.claim_due(ctx)  # the worker dies mid-check: never released
    hooks.after_apply(ctx, batch([applied("seq/2.png")]))  # due again while the dead lease is held
    ctx.clock.advance(hooks.LEASE_S + 1)  # type: ignore[attr-defined]
    claims = hooks.claim_due(ctx)
    assert [(c.folder, c.new_keys) for c in claims] == [("seq", None)]  # once, as a full check
    hooks.release(ctx, claims[0])
    assert hooks.pending(ctx) == []
    assert take(ctx, 1, "seq") is MISSING  # its record went with the full check


def test_only_brand_new_images_allow_the_fast_path(ctx: WorkerContext) -> None:
    hooks.after_apply(ctx, batch([applied("a/1.png"), applied("a/2.png")]))
    hooks.after_apply(ctx, batch([applied("a/3.png")]))
    assert take(ctx, 1, "a") == ["a/1.png", "a/2.png", "a/3.png"]
    for change in (applied("b/1.png", was_live=True),  # overwrite
                   applied("b/1.png", kind=Kind.DELETED), applied("b/x.csv"),
                   applied("b/frames.txt"), applied("b/v.mp4")):  # fmt: skip
        hooks.after_apply(ctx, batch([applied("b/0.png"), change]))
        assert take(ctx, 1, "b") is None, change
    hooks.after_apply(ctx, batch([applied("c/0.png")]))
    hooks.schedule_checks(ctx, [(1, "c")], 0.5)  # the sweep: no record -> full check
    assert take(ctx, 1, "c") is None


def test_lost_tasks_are_sent_again(ctx: WorkerContext) -> None:
    hooks.after_apply(ctx, batch([applied("seq/1.png")]))
    assert hooks.resend_lost(ctx, 0.5) == 0
    ctx.clock.advance(hooks.LOST_AFTER_S + 1)  # type: ignore[attr-defined]
    assert hooks.resend_lost(ctx, 0.5) == 1
    assert checks(ctx) == [[1, "seq"], [1, "seq"]]
    assert hooks.resend_lost(ctx, 0.5) == 0  # re-armed, not re-sent on every sweep


def test_folder_names_survive_the_round_trip(ctx: WorkerContext) -> None:
    odd = 'a "quoted", ünïcode/ folder'
    hooks.after_apply(ctx, batch([applied(f"{odd}/x.png", mount_id=7)]))
    assert hooks.pending(ctx)[0][0] == (7, odd)
    assert take(ctx, 7, odd) == [f"{odd}/x.png"]


def test_bad_alignment_settings_do_not_block_applies(ctx: WorkerContext) -> None:
    broken = replace(ctx, settings=replace(ctx.settings, extra={"MOUNTSYNC_IMAGE_TYPES": "png,mp4"}))
    hooks.after_apply(broken, batch([applied("seq/1.png")]))
    assert checks(broken) == [[1, "seq"]]


def countdowns(ctx: WorkerContext) -> list[float]:
    return [opts["countdown"] for name, _, opts in ctx.app.sent if name == hooks.TASK_CHECK]  # type: ignore[attr-defined]


def test_streaming_folders_gather_appends_longer_but_not_other_changes(ctx: WorkerContext) -> None:
    hooks.mark_streaming(ctx, 1, "cam", 2.0)
    hooks.after_apply(ctx, batch([applied("cam/0001.png")]))
    assert countdowns(ctx) == [2.0]
    hooks.after_apply(ctx, batch([applied("cam/0002.png")]))
    assert countdowns(ctx) == [2.0]  # same window
    hooks.after_apply(ctx, batch([applied("cam/0000.png", kind=Kind.DELETED)]))
    assert countdowns(ctx) == [2.0, 0.5]  # a delete is not kept waiting: pulled forward
    assert [due for _, due in hooks.pending(ctx)] == [1_000_000.5]
    hooks.after_apply(ctx, batch([applied("quiet/0001.png")]))
    assert countdowns(ctx) == [2.0, 0.5, 0.5]  # other folders keep the short window
    assert take(ctx, 1, "cam") is None  # the delete makes it a full check


def test_a_finished_check_forgets_its_delivery_count(ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "current", lambda: ctx)
    task = SimpleNamespace(name=hooks.TASK_CHECK, request=SimpleNamespace(id=uuid.uuid4().hex, retries=2))
    assert tasks.check_folder_task(task, 1, "seq") == {"sent_for": "1:seq", "checked": {}}
    assert list(ctx.redis.scan_iter(match=ctx.key(f"mountsync:deliveries:{task.request.id}*"))) == []
