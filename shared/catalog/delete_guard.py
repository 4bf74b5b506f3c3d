"""The mass-delete guard: a step of the apply transaction that holds deletes back instead of
applying them when a mount is being wiped (a wrong lifecycle rule, a sync script with the wrong
prefix, an ``rm -r`` on a share), so annotated work is not lost downstream.

Rule, per mount: deletes of live objects applied within ``WINDOW_S`` are counted. When a batch's
deletes would bring that count above ``percent`` % of the mount's live objects (at the window's
start) and to at least ``minimum`` objects, every delete of that batch is held, and so is every
later delete of the mount while any delete is held (one *episode*). Held deletes are rows of
``held_deletes``: the object stays live (``ls`` marks it ``held``), nothing reaches the change
feed, and one ``mass-delete`` alert is opened per episode. An operator applies them with
``mountsync deletes approve MOUNT``; a newer create of the same key (by the ordering rule)
supersedes its held delete, so restoring a wipe from versioning needs no operator. When no held
delete is left the episode ends and its alert is resolved.

Runs under the apply transaction's per-mount advisory locks, after routing and before the upsert:
it removes the held deletes from ``routed_changes``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import psycopg

from mountsync.shared.errors import BadInput

DEFAULT_PERCENT = 30.0
DEFAULT_MINIMUM = 50
WINDOW_S = 600
ALERT_KIND = "mass-delete"


@dataclass(frozen=True, slots=True)
class Guard:
    """Hold deletes beyond ``percent`` % of live objects and at least ``minimum`` per window."""

    percent: float = DEFAULT_PERCENT
    minimum: int = DEFAULT_MINIMUM

    @property
    def enabled(self) -> bool:
        return self.percent > 0

    def describe(self) -> str:
        return f"{self.percent:g}:{self.minimum}" if self.enabled else "off"


def parse_guard(text: str) -> Guard:
    """``PERCENT:MINIMUM`` (e.g. ``30:50``), or ``0`` / ``off`` to disable; ``BadInput`` otherwise."""
    raw = text.strip().lower()
    if raw in ("0", "off", "0:0"):
        return Guard(0.0, 0)
    percent_text, sep, minimum_text = raw.partition(":")
    try:
        percent = float(percent_text)
        minimum = int(minimum_text) if sep else DEFAULT_MINIMUM
    except ValueError:
        raise BadInput(f"--delete-guard {text!r} is not PERCENT:MINIMUM (e.g. 30:50), or 0 to disable") from None
    if not (math.isfinite(percent) and 0 <= percent <= 100) or minimum < 0:
        raise BadInput(f"--delete-guard {text!r}: PERCENT must be 0-100 and MINIMUM 0 or more")
    return Guard(percent, minimum)


# A non-delete newer than a held delete of the same key supersedes it (the object came back).
SUPERSEDE_SQL = """
WITH gone AS (
    DELETE FROM held_deletes h USING routed_changes r
    WHERE h.mount_id = r.mount_id AND h.key = r.key AND NOT r.removes
      AND CASE WHEN r.seq <> '' AND h.seq <> '' THEN r.seq > h.seq ELSE r.event_ns > h.event_ns END
    RETURNING h.mount_id
)
SELECT DISTINCT mount_id FROM gone
"""

# Per mount of the batch: deletes that would remove a live object, and the guard's inputs.
CANDIDATES_SQL = f"""
WITH cand AS (
    SELECT r.mount_id, count(*) AS n
    FROM routed_changes r JOIN objects o ON o.mount_id = r.mount_id AND o.key = r.key
    WHERE r.removes AND NOT o.deleted
      AND CASE WHEN r.seq <> '' AND o.seq <> '' THEN r.seq > o.seq ELSE r.event_ns > o.event_ns END
    GROUP BY r.mount_id
)
SELECT c.mount_id, c.n,
       coalesce(g.percent, {DEFAULT_PERCENT}) AS percent, coalesce(g.minimum, {DEFAULT_MINIMUM}) AS minimum,
       (SELECT coalesce(sum(f.live_objects), 0) FROM folders f WHERE f.mount_id = c.mount_id) AS live,
       (SELECT coalesce(sum(w.deletes), 0) FROM delete_window w
        WHERE w.mount_id = c.mount_id AND w.at > now() - make_interval(secs => {WINDOW_S})) AS recent,
       EXISTS (SELECT 1 FROM held_deletes h WHERE h.mount_id = c.mount_id) AS holding
FROM cand c LEFT JOIN delete_guards g ON g.mount_id = c.mount_id
ORDER BY c.mount_id
"""

HOLD_SQL = """
INSERT INTO held_deletes AS h (mount_id, key, folder, kind, version, seq, event_ns, source, source_id)
SELECT r.mount_id, r.key, r.folder, r.kind, r.version, coalesce(r.seq, ''), r.event_ns, r.source, r.source_id
FROM routed_changes r JOIN objects o ON o.mount_id = r.mount_id AND o.key = r.key
WHERE r.mount_id = ANY(%s) AND r.removes AND NOT o.deleted
  AND CASE WHEN r.seq <> '' AND o.seq <> '' THEN r.seq > o.seq ELSE r.event_ns > o.event_ns END
ON CONFLICT (mount_id, key) DO UPDATE SET
    kind = EXCLUDED.kind, version = EXCLUDED.version, seq = EXCLUDED.seq, event_ns = EXCLUDED.event_ns,
    source = EXCLUDED.source, source_id = EXCLUDED.source_id
WHERE CASE WHEN EXCLUDED.seq <> '' AND h.seq <> '' THEN EXCLUDED.seq > h.seq ELSE EXCLUDED.event_ns > h.event_ns END
"""

OPEN_ALERT_SQL = f"""
INSERT INTO alignment_alerts (dataset_id, mount_id, path, kind, kinds, breaking, details)
VALUES (NULL, %s, '', '{ALERT_KIND}', ARRAY['{ALERT_KIND}'], true, %s::jsonb)
ON CONFLICT (mount_id) WHERE status = 'open' AND kind = '{ALERT_KIND}'
DO UPDATE SET checks = alignment_alerts.checks + 1, details = EXCLUDED.details, updated_at = now()
RETURNING id, (xmax = 0) AS opened
"""

RESOLVE_SQL = f"""
UPDATE alignment_alerts SET status = 'resolved', closed_at = now(), closed_by = %s, updated_at = now()
WHERE kind = '{ALERT_KIND}' AND status = 'open' AND mount_id = ANY(%s)
  AND NOT EXISTS (SELECT 1 FROM held_deletes h WHERE h.mount_id = alignment_alerts.mount_id)
"""


@dataclass(frozen=True, slots=True)
class GuardOutcome:
    """What the guard did in one batch: deletes held per mount id, alerts opened (for the webhook)."""

    held: dict[int, int]
    opened_alerts: list[int]


def must_hold(n: int, live: int, recent: int, guard: Guard, holding: bool) -> bool:
    """Pure: hold this batch's ``n`` deletes? ``live`` is the mount's live count before the batch,
    ``recent`` the deletes applied in the window (so ``live + recent`` ~ live at its start)."""
    if not guard.enabled or n <= 0:
        return False
    if holding:
        return True
    total = recent + n
    return total > guard.percent / 100.0 * (live + recent) and total >= guard.minimum


def guard_batch(cur: psycopg.Cursor[Any]) -> GuardOutcome:
    """Run inside ``apply_changes`` after routing: supersede, hold, count, alert."""
    superseded = [int(r[0]) for r in cur.execute(SUPERSEDE_SQL).fetchall()]
    held: dict[int, int] = {}
    opened: list[int] = []
    applied_counts: list[tuple[int, int]] = []
    for mount_id, n, percent, minimum, live, recent, holding in cur.execute(CANDIDATES_SQL).fetchall():
        guard = Guard(float(percent), int(minimum))
        if must_hold(int(n), int(live), int(recent), guard, bool(holding)):
            held[int(mount_id)] = int(n)
            details = {"held": int(n), "live_objects": int(live), "deleted_in_window": int(recent),
                       "window_s": WINDOW_S, "guard": guard.describe()}  # fmt: skip
            alert_id, new = cur.execute(OPEN_ALERT_SQL, (mount_id, json.dumps(details))).fetchone() or (None, False)
            if new and alert_id is not None:
                opened.append(int(alert_id))
        else:
            applied_counts.append((int(mount_id), int(n)))
    if held:
        ids = list(held)
        cur.execute(HOLD_SQL, (ids,))
        cur.execute("DELETE FROM routed_changes WHERE mount_id = ANY(%s) AND removes", (ids,))
    if applied_counts:
        cur.executemany("INSERT INTO delete_window (mount_id, deletes) VALUES (%s, %s)", applied_counts)
        cur.execute(
            f"DELETE FROM delete_window WHERE mount_id = ANY(%s) AND at < now() - make_interval(secs => {WINDOW_S})",
            ([m for m, _ in applied_counts],),
        )
    if superseded:
        cur.execute(RESOLVE_SQL, ("restored", superseded))
    return GuardOutcome(held, opened)
