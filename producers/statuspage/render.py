"""Turn ``PageData`` into HTML: rows get their view-model (times, labels, highlights) here, and the
Jinja2 templates shipped in this package only print them (autoescaped)."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from mountsync.producers.statuspage.reading import PageData, api_path
from mountsync.producers.statuspage.viewmodel import (
    compare_frames,
    display_url,
    exact_time,
    first_shifted,
    format_duration,
    frame_name,
    lag_view,
    migration_view,
    parse_time,
    reconcile_label,
    relative_time,
)
from mountsync.shared.api.sessions import Session


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("mountsync.producers.statuspage", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["frame_name"] = frame_name
    return env


def _mount_row(mount: dict[str, Any]) -> dict[str, Any]:
    run = mount.get("last_reconcile")
    return {
        "name": mount["name"],
        "provider": mount.get("provider", ""),
        "url": display_url(str(mount.get("url", ""))),
        "objects": int(mount.get("objects") or 0),
        "last_event": parse_time(mount.get("last_event_at")),
        "last_applied": parse_time(mount.get("last_applied_at")),
        "lag": lag_view(mount),
        "reconciled": parse_time(run.get("finished_at")) if run else None,
        "reconcile": reconcile_label(run),
        "reconcile_failed": bool(run and run.get("state") == "failed"),
        "held": mount.get("held_deletes"),
    }


def _quarantine_row(found: dict[str, Any]) -> dict[str, Any]:
    rows = compare_frames(found["pinned"] or [], found["current"] or [])
    return {
        "mount": found["mount"],
        "folder": found["folder"],
        "rows": rows,
        "first_shifted": first_shifted(rows),
        "content_base": api_path("mounts", found["mount"], "datasets", found["folder"] or "/", "frames"),
    }


def context(data: PageData, session: Session, now: datetime) -> dict[str, Any]:
    """The template variables: raw sections plus their rows made readable."""
    return {
        "data": data,
        "session": session,
        "now": now,
        "ago": lambda moment: relative_time(moment, now),
        "exact": exact_time,
        "mounts": [_mount_row(m) for m in data.mounts],
        "show_held": any(m.get("held_deletes") is not None for m in data.mounts),
        "alerts": [{**a, "created": parse_time(a.get("created_at"))} for a in data.alerts],
        "quarantined": [_quarantine_row(q) for q in data.quarantined],
        "migrations": [
            {**j, "view": migration_view(j), "created": parse_time(j.get("created_at"))} for j in data.migrations
        ],
        "sinks": [
            {
                **s,
                "lag": format_duration(s.get("lag_seconds")) + " behind",
                "delivered": parse_time(s.get("delivered_at")),
            }
            for s in data.sinks or []
        ],
        "dead_letters": [{**d, "created": parse_time(d.get("created_at"))} for d in data.dead_letters or []],
    }


def render_sections(data: PageData, session: Session, now: datetime) -> str:
    return environment().get_template("sections.html").render(context(data, session, now))


def render_page(data: PageData, session: Session, now: datetime, digest: str, notice: str = "") -> str:
    values = {**context(data, session, now), "digest": digest, "notice": notice}
    return environment().get_template("page.html").render(values)


def render_login(error: str = "") -> str:
    return environment().get_template("login.html").render(error=error)
