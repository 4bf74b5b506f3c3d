"""Pure view-model functions of the status page: what a row says, computed from API rows.

No I/O, no clock (``now`` is passed in), no templates: the templates only print what these return,
so the wording people read ("3 min ago", "ETA 2 min", which frames shifted) is tested here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")
UNKNOWN = "\u2013"  # an en dash: a figure not known (yet)


def parse_time(value: str | None) -> datetime | None:
    """An API timestamp (ISO 8601) as an aware datetime; naive values are taken as UTC."""
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def exact_time(moment: datetime | None) -> str:
    """The hover text: the exact moment in UTC, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def relative_time(moment: datetime | None, now: datetime) -> str:
    """ "just now", "42 s ago", "3 min ago", "5 h ago", "2 days ago" (or "in 3 min" ahead)."""
    if moment is None:
        return "never"
    seconds = (now - moment).total_seconds()
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    if seconds < 60:
        amount = f"{int(seconds)} s"
    elif seconds < 3600:
        amount = f"{int(seconds // 60)} min"
    elif seconds < 86400:
        amount = f"{int(seconds // 3600)} h"
    else:
        days = int(seconds // 86400)
        amount = f"{days} day" if days == 1 else f"{days} days"
    return f"in {amount}" if ahead else f"{amount} ago"


def format_bytes(count: int | float | None) -> str:
    """Decimal units, as storage consoles show them: 999 B, 1.5 KB, 12 MB, 3.4 GB."""
    if count is None:
        return UNKNOWN
    value = float(count)
    for unit in _UNITS:
        if abs(value) < 1000 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if abs(value) < 100 else f"{value:.0f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def format_duration(seconds: float | None) -> str:
    """A short span: "45 s", "3 min 20 s", "2 h 5 min", "3 days 4 h"; UNKNOWN when not known."""
    if seconds is None or seconds < 0:
        return UNKNOWN
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} days {hours} h" if hours else f"{days} days"


def display_url(url: str) -> str:
    """A mount URL fit to show: no user, password, query (SAS tokens live there) or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True, slots=True)
class MigrationView:
    """One migration row: the bar, the figures beside it, and which buttons make sense."""

    percent: int
    bytes_label: str
    rate_label: str
    eta_label: str
    items_label: str
    failures: int
    finished: bool
    can_cancel: bool
    can_resume: bool


# shared/migration/jobs.py: ACTIVE_STATES and FINAL_STATES (not imported: the page reads the API only).
ACTIVE_MIGRATION_STATES = frozenset({"submitted", "planning", "running"})
COMPLETED_MIGRATION_STATES = frozenset({"completed", "completed_with_errors"})


def migration_view(job: Mapping[str, Any]) -> MigrationView:
    """Progress by bytes when the job knows its size, else by items. The bar shows 100 % only once
    the job completed: a running job whose bytes are all sent still verifies and links (99 %).
    Resume re-queues the open chunks of a running job whose workers were lost."""
    state = str(job.get("state", ""))
    total, done = int(job.get("bytes_total") or 0), int(job.get("bytes_done") or 0)
    items_total = int(job.get("items_total") or 0)
    items_settled = sum(int(job.get(k) or 0) for k in ("items_done", "items_skipped", "items_failed"))
    completed = state in COMPLETED_MIGRATION_STATES
    running = state in ACTIVE_MIGRATION_STATES
    if completed:
        percent = 100
    elif total > 0:
        percent = int(100 * done / total)
    elif items_total > 0:
        percent = int(100 * items_settled / items_total)
    else:
        percent = 0
    if running:
        percent = min(percent, 99)
    rate = job.get("rate_bps")
    return MigrationView(
        percent=percent,
        bytes_label=f"{format_bytes(done)} of {format_bytes(total)}",
        rate_label=f"{format_bytes(rate)}/s" if rate else UNKNOWN,
        eta_label=format_duration(job.get("eta_s")) if running else "done" if completed else UNKNOWN,
        items_label=f"{items_settled} of {items_total}",
        failures=int(job.get("items_failed") or 0),
        finished=not running,
        can_cancel=running,
        can_resume=running,
    )


@dataclass(frozen=True, slots=True)
class FramePair:
    """Index ``index`` as the annotations know it (pinned) and as the folder has it now."""

    index: int
    pinned_key: str | None
    current_key: str | None
    pinned_state: str  # "same", "changed", "missing" or "" (no pinned frame at this index)
    shifted: bool  # the frame at this index is no longer the one annotated


def compare_frames(pinned: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]]) -> list[FramePair]:
    """Pinned and current order side by side; an index whose key or content differs is shifted."""
    rows: list[FramePair] = []
    for index in range(max(len(pinned), len(current))):
        old = pinned[index] if index < len(pinned) else None
        new = current[index] if index < len(current) else None
        old_key = str(old["key"]) if old else None
        new_key = str(new["key"]) if new else None
        state = str(old.get("live", "same")) if old else ""
        shifted = old_key != new_key or state in ("changed", "missing")
        rows.append(FramePair(index, old_key, new_key, state, shifted))
    return rows


def frame_name(key: str, folder: str) -> str:
    """A frame's key as shown beside its dataset: relative to the dataset's folder when inside it."""
    inside = folder.strip("/") + "/" if folder.strip("/") else ""
    return key[len(inside) :] if inside and key.startswith(inside) else key


def first_shifted(rows: Sequence[FramePair]) -> int | None:
    return next((row.index for row in rows if row.shifted), None)


@dataclass(frozen=True, slots=True)
class LagView:
    """How far a mount is behind: the gap between its newest event and its application."""

    apply_delay: str  # how long the newest applied change took from its event ("2 s after its event")
    queued: str


def lag_view(mount: Mapping[str, Any]) -> LagView:
    event, applied = parse_time(mount.get("last_event_at")), parse_time(mount.get("last_applied_at"))
    delay = (
        f"{format_duration(max(0.0, (applied - event).total_seconds()))} after its event"
        if event and applied
        else UNKNOWN
    )
    queued = mount.get("changes_queued")
    return LagView(apply_delay=delay, queued="unknown (Redis down)" if queued is None else f"{int(queued)} queued")


def reconcile_label(run: Mapping[str, Any] | None) -> str:
    """The last reconcile's result in a few words: "ok, caught 3 missed changes" or "failed: <error>"."""
    if not run:
        return "not yet"
    if run.get("state") == "failed":
        return f"failed: {run.get('error') or 'see mountsync reindex --wait'}"
    missed = sum(int(run.get(k) or 0) for k in ("created", "updated", "deleted"))
    return "ok, nothing missed" if missed == 0 else f"ok, caught {missed} missed change{'s' if missed != 1 else ''}"
