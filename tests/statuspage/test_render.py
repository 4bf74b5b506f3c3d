"""Sections rendered from API rows (no server): what the browser tests cannot easily reach, such as
sinks, dead letters, held deletes, a failed reconcile and escaping."""

from __future__ import annotations

from datetime import UTC, datetime

from mountsync.producers.statuspage.reading import PageData
from mountsync.producers.statuspage.render import render_sections
from mountsync.shared.api.sessions import Session

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
WRITE = Session("lead", "write", "2026-12-01T00:00:00+00:00", "csrf-value")
READ = Session("viewer", "read", "2026-12-01T00:00:00+00:00", "csrf-value")


def _mount(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "reefs", "provider": "s3", "url": "s3://AKIA:secret@bucket/reefs/?sig=abc", "objects": 12345,
        "last_event_at": "2026-12-03T09:57:00+00:00", "last_applied_at": "2026-12-03T09:57:01+00:00",
        "changes_queued": 4, "last_cursor": 7,
        "last_reconcile": {"state": "failed", "error": "bucket <gone>", "finished_at": "2026-12-03T08:00:00+00:00"},
    }  # fmt: skip
    return {**base, **fields}


def test_mounts_show_figures_without_credentials_and_escape_what_they_print() -> None:
    html = render_sections(PageData(mounts=[_mount(held_deletes=3)]), WRITE, NOW)
    assert "s3://bucket/reefs/" in html and "secret" not in html and "sig=abc" not in html
    assert "12,345" in html and "4 queued" in html and "1 s after its event" in html
    assert '<time datetime="2026-12-03T09:57:00+00:00" title="2026-12-03 09:57:00 UTC">3 min ago</time>' in html
    assert "failed: bucket &lt;gone&gt;" in html and "Held deletes" in html
    assert 'id="reconcile-reefs"' in html and 'value="csrf-value"' in html
    without_guard = render_sections(PageData(mounts=[_mount(held_deletes=None)]), WRITE, NOW)
    assert "Held deletes" not in without_guard  # a catalog without the mass-delete guard


def test_read_only_sessions_get_no_forms_at_all() -> None:
    letters = [{"id": 4, "source": "s3-sqs", "reason": "not JSON", "created_at": "2026-12-03T09:00:00+00:00"}]
    html = render_sections(PageData(mounts=[_mount()], dead_letters=letters), READ, NOW)
    assert "<form" not in html and "<button" not in html
    assert "not JSON" in html and "1 h ago" in html


def test_sinks_and_dead_letters_appear_only_when_the_api_has_them() -> None:
    assert 'id="sinks"' not in render_sections(PageData(), WRITE, NOW)
    empty = render_sections(PageData(sinks=[], dead_letters=[]), WRITE, NOW)
    assert "No sinks: <code>mountsync webhook add NAME URL</code>" in empty and "No dead letters" in empty
    sink = {"name": "ls", "kind": "webhook", "target": "https://hooks.example/x", "state": "paused",
            "state_reason": "failing for 24 h", "lag_entries": 1200, "lag_seconds": 300.0,
            "delivered_at": "2026-12-03T09:55:00+00:00", "last_error": "HTTP 500"}  # fmt: skip
    letter = {"id": 9, "source": "azure-eventgrid", "reason": "no mount", "created_at": "2026-12-03T09:59:00+00:00"}
    html = render_sections(PageData(sinks=[sink], dead_letters=[letter]), WRITE, NOW)
    assert "1,200 entries" in html and "5 min behind" in html and "failing for 24 h" in html
    assert 'id="replay-9"' in html


def test_a_problem_reading_a_section_is_said_on_top() -> None:
    html = render_sections(PageData(problems=["mounts: PostgreSQL: connection refused"]), WRITE, NOW)
    assert 'role="alert"' in html and "mounts: PostgreSQL: connection refused" in html
