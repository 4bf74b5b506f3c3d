"""Debounced folder checks after every committed batch; all state lives in Redis.

Protocol (safe with any number of workers and processes):
- ``after_apply`` adds each touched folder to the sorted set ``mountsync:alignment:due`` with
  ``ZADD NX`` (score = when the check is due). Only the call that actually added the member
  sends the delayed ``check_folder`` task, so a burst of changes to one folder within the
  debounce window costs one check, and a folder is never checked later than one window after
  its first change (no starvation under a steady stream).
- Each ``check_folder`` task claims *every* due folder (``claim_due``, one Lua script), not
  just its own, so a check never waits for its own delayed task to be fetched behind others.
  Claiming removes the member *before* the catalog is read, so any change committed after that
  read adds the member again and schedules the next check: no change is missed.
- A claimed folder holds a lease until its check ends; a worker killed mid-check leaves an old
  lease that the next drain claims again (as a full check).
- A member whose task was lost (worker killed with the task prefetched) stays in the set with
  an old score; the sweep task re-sends it. The sweep also re-checks folders the catalog says
  changed after their last check (in case a hook never ran).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson
import structlog

from mountsync.shared.errors import ConfigError
from mountsync.shared.events import Kind
from mountsync.shared.lua import LuaScript
from mountsync.shared.queues import QUEUE_ALIGNMENT, send
from mountsync.workers.alignment.config import AlignmentConfig
from mountsync.workers.alignment.datasets import Role

if TYPE_CHECKING:
    from mountsync.shared.catalog.apply import ApplyResult
    from mountsync.workers.context import WorkerContext

log = structlog.get_logger("mountsync.alignment")

TASK_CHECK = "mountsync.alignment.check_folder"
TASK_PIN = "mountsync.alignment.pin"
TASK_NOTIFY = "mountsync.alignment.notify"
TASK_SWEEP = "mountsync.alignment.sweep"
DUE_KEY = "mountsync:alignment:due"
NEW_KEYS = "mountsync:alignment:new:"
STREAMING = "mountsync:alignment:streaming:"
FULL_FLAG = "mountsync:alignment:full:"
RUNNING_KEY = "mountsync:alignment:running"
# A check normally takes about a second; a lease this old means its worker died mid-check. With the
# sweep every 30 s, such a folder is checked again within about 2 minutes of the kill.
LEASE_S = 75.0
MAX_RECORDED_KEYS = 5000  # beyond this a full check is cheaper than shipping the keys
RECORD_TTL_S = 86_400
# A due member older than this has lost its task (a check normally runs within a second).
LOST_AFTER_S = 60.0


def config_for(ctx: WorkerContext) -> AlignmentConfig:
    try:
        return AlignmentConfig.from_settings(ctx.settings)
    except ConfigError as exc:
        # A bad alignment variable must not stop the catalog from applying changes.
        log.error("alignment settings are invalid; using defaults", error=str(exc))
        return AlignmentConfig()


def member(mount_id: int, folder: str) -> str:
    return json.dumps([mount_id, folder], ensure_ascii=False, separators=(",", ":"))


def parse_member(raw: bytes | str) -> tuple[int, str]:
    mount_id, folder = json.loads(raw)
    return int(mount_id), str(folder)


def after_apply(ctx: "WorkerContext", result: "ApplyResult") -> None:  # noqa: UP037
    """Post-apply hook: a debounced check of every folder whose datasets this batch may have changed."""
    config = config_for(ctx)
    role_of, other, image, created = config.types.role, Role.OTHER, Role.IMAGE, Kind.CREATED
    records: dict[tuple[int, str], list[str] | None] = {}
    for change in result.applied:
        key = change.key
        role = role_of(key)
        if role is other:
            continue
        folder = (change.mount_id, change.folder)
        new_keys = records.setdefault(folder, [])
        if new_keys is None:
            continue
        if role is image and change.kind is created and not change.was_live:
            new_keys.append(key)
        else:
            records[folder] = None  # anything but a brand-new image needs the full check
    if records:
        schedule_checks(ctx, sorted(records), config.debounce_s, records, config.stream_debounce_s)


def announce_opened_alerts(ctx: "WorkerContext", result: "ApplyResult") -> None:  # noqa: UP037
    """Post-apply hook: the alerts the batch opened (the mass-delete guard's) reach the sinks
    subscribed to alerts and the alignment webhook, as a folder check's alerts do."""
    if result.alerts:
        announce_alerts(ctx, result.alerts)


def announce_alerts(ctx: WorkerContext, alert_ids: Sequence[int]) -> None:
    """New or changed alerts: put them where sinks read them, and send each to the webhook."""
    from mountsync.workers.sinks.events import publish_alignment_alerts

    publish_alignment_alerts(ctx, alert_ids)  # best effort: the alert is in the catalog already
    if config_for(ctx).webhook_url:
        for alert_id in alert_ids:
            send(ctx.app, TASK_NOTIFY, alert_id, queue=QUEUE_ALIGNMENT)


def schedule_checks(
    ctx: WorkerContext,
    folders: Sequence[tuple[int, str]],
    delay_s: float,
    records: dict[tuple[int, str], list[str] | None] | None = None,
    stream_delay_s: float = 0.0,
) -> int:
    """Mark folders due in ``delay_s``; send one delayed check per newly due folder.

    ``records`` says what changed per folder (new image keys, or None for "anything else");
    a folder without a record gets the full check. Records and due marks are written in one
    script so a check's claim never sees one without the other. A folder streaming appends
    (its last check took the fast path) gathers append-only batches over ``stream_delay_s``;
    anything else is due after ``delay_s`` and pulls an already scheduled, later check forward.
    """
    now = ctx.clock.now()
    names = [member(mount_id, folder) for mount_id, folder in folders]
    streaming = _streaming(ctx, folders, names) if records is not None and stream_delay_s > delay_s else set()
    plan: list[tuple[int, str, float]] = []
    steps: list[tuple[str, str, list[str] | None]] = []
    for (mount_id, folder), name in zip(folders, names, strict=True):
        keys = records.get((mount_id, folder)) if records is not None else None
        if keys and len(keys) <= MAX_RECORDED_KEYS:
            wait = stream_delay_s if (mount_id, folder) in streaming else delay_s
        else:
            keys, wait = None, delay_s
        steps.append((name, repr(now + wait), keys))
        plan.append((mount_id, folder, wait))
    # One script instead of a MULTI of three commands per folder: same atomicity, and no client-side
    # packing and parsing of ~600 commands per batch (issue 18's profile: a quarter of apply_batch).
    # orjson: the steps carry every new image key of the batch (json 139 ns a key, orjson 17).
    replies = _SCHEDULE(ctx.redis, [ctx.key(DUE_KEY)], [ctx.key(NEW_KEYS), ctx.key(FULL_FLAG), RECORD_TTL_S,
                                                     orjson.dumps(steps)])  # fmt: skip
    sent = 0
    for (mount_id, folder, wait), added in zip(plan, replies, strict=True):
        if added:
            _send_check(ctx, mount_id, folder, wait)
            sent += 1
    return sent


# For each [member, score, keys|null]: with new image keys, append them to the folder's record and
# mark it due unless it already is (ZADD NX); otherwise flag a full check and pull its due time
# forward (ZADD LT CH). Returns 1 per folder that became due or moved (a check must be sent).
_SCHEDULE = LuaScript("""
local out = {}
for i, step in ipairs(cjson.decode(ARGV[4])) do
  local name, score, keys = step[1], step[2], step[3]
  if type(keys) == 'table' then
    for j = 1, #keys, 1000 do
      redis.call('RPUSH', ARGV[1] .. name, unpack(keys, j, math.min(j + 999, #keys)))
    end
    redis.call('EXPIRE', ARGV[1] .. name, ARGV[3])
    out[i] = redis.call('ZADD', KEYS[1], 'NX', score, name)
  else
    redis.call('SET', ARGV[2] .. name, 1, 'EX', ARGV[3])
    out[i] = redis.call('ZADD', KEYS[1], 'LT', 'CH', score, name)
  end
end
return out
""")


def _streaming(ctx: WorkerContext, folders: Sequence[tuple[int, str]], names: Sequence[str]) -> set[tuple[int, str]]:
    """The folders (with their ``member`` names) whose last check took the fast path."""
    marks = ctx.redis.mget([ctx.key(f"{STREAMING}{name}") for name in names])
    return {folder for folder, mark in zip(folders, marks, strict=True) if mark}


def mark_streaming(ctx: WorkerContext, mount_id: int, folder: str, stream_delay_s: float) -> None:
    """The folder's last check was a pure append: batch its next appends over a longer window."""
    if stream_delay_s > 0:
        ctx.redis.set(ctx.key(f"{STREAMING}{member(mount_id, folder)}"), 1, px=int(stream_delay_s * 2000))


def _send_check(ctx: WorkerContext, mount_id: int, folder: str, delay_s: float) -> None:
    options = {"countdown": delay_s} if delay_s > 0 else {}
    send(ctx.app, TASK_CHECK, mount_id, folder, queue=QUEUE_ALIGNMENT, **options)


# Atomically take every due folder (and checks whose worker died mid-check) with its record.
# A folder comes back at most once: one with a stale lease that is also due is already taken
# (as a full check) by the first loop, which covers its record, so the second only consumes it.
_CLAIM_DUE = LuaScript("""
local out, taken = {}, {}
local running = redis.call('HGETALL', KEYS[2])
for i = 1, #running, 2 do
  if tonumber(running[i + 1]) < tonumber(ARGV[5]) then
    redis.call('HSET', KEYS[2], running[i], ARGV[1])
    table.insert(out, {running[i], '1', {}})
    taken[running[i]] = true
  end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  local keys = redis.call('LRANGE', ARGV[3] .. m, 0, -1)
  local full = redis.call('GET', ARGV[4] .. m) or ''
  redis.call('DEL', ARGV[3] .. m, ARGV[4] .. m)
  if not taken[m] then
    if redis.call('HEXISTS', KEYS[2], m) == 1 then full = '1' end
    redis.call('HSET', KEYS[2], m, ARGV[1])
    table.insert(out, {m, full, keys})
  end
end
return out
""")
_RELEASE = LuaScript("""
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
""")


@dataclass(frozen=True)
class Claim:
    """A folder taken for checking: ``new_keys`` allows the append fast path, None = full check."""

    mount_id: int
    folder: str
    new_keys: list[str] | None
    lease: str


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def claim_due(ctx: WorkerContext, limit: int = 100) -> list[Claim]:
    """Take every folder whose check is due (at most ``limit``), whoever's task is running.

    Checks are not tied to the delivery of their own delayed task: any check task drains all
    due folders, so one task held up behind others in the queue delays nothing. Each claimed
    folder holds a lease in ``mountsync:alignment:running`` until ``release``; a lease older
    than ``LEASE_S`` (the worker died mid-check) is claimed again, as a full check.
    """
    now = ctx.clock.now()
    rows = _CLAIM_DUE(
        ctx.redis,
        [ctx.key(DUE_KEY), ctx.key(RUNNING_KEY)],
        [repr(now), limit, ctx.key(NEW_KEYS), ctx.key(FULL_FLAG), repr(now - LEASE_S)],
    )
    claims = []
    for raw_member, full, raw_keys in rows:
        mount_id, folder = parse_member(raw_member)
        keys = [_text(k) for k in raw_keys] if not _text(full) and raw_keys else None
        claims.append(Claim(mount_id, folder, keys, repr(now)))
    return claims


def release(ctx: WorkerContext, claim: Claim) -> None:
    """The claimed folder's check finished (or was rescheduled): drop its lease."""
    _RELEASE(ctx.redis, [ctx.key(RUNNING_KEY)], [member(claim.mount_id, claim.folder), claim.lease])


def resend_lost(ctx: WorkerContext, delay_s: float, limit: int = 1000) -> int:
    """Re-send checks for due members whose task must have been lost."""
    key = ctx.key(DUE_KEY)
    now = ctx.clock.now()
    stale = ctx.redis.zrangebyscore(key, "-inf", now - LOST_AFTER_S, start=0, num=limit)
    for raw in stale:
        mount_id, folder = parse_member(raw)
        ctx.redis.zadd(key, {raw: now + delay_s}, xx=True)
        _send_check(ctx, mount_id, folder, delay_s)
    abandoned = [m for m, lease in ctx.redis.hgetall(ctx.key(RUNNING_KEY)).items() if float(lease) < now - LEASE_S]
    if abandoned:  # a worker died mid-check: one drain claims them all again
        mount_id, folder = parse_member(abandoned[0])
        _send_check(ctx, mount_id, folder, 0)
    return len(stale) + len(abandoned)


def pending(ctx: WorkerContext) -> list[tuple[tuple[int, str], float]]:
    """Folders waiting for a check and when each is due (for tests and operators)."""
    rows: Iterable[tuple[bytes, float]] = ctx.redis.zrange(ctx.key(DUE_KEY), 0, -1, withscores=True)
    return [(parse_member(raw), float(score)) for raw, score in rows]
