"""The words and highlights people read on the status page (pure functions, no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mountsync.producers.statuspage.viewmodel import (
    UNKNOWN,
    compare_frames,
    display_url,
    exact_time,
    first_shifted,
    format_bytes,
    format_duration,
    frame_name,
    lag_view,
    migration_view,
    parse_time,
    reconcile_label,
    relative_time,
)

NOW = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ago", "said"),
    [
        (timedelta(seconds=2), "just now"),
        (timedelta(seconds=42), "42 s ago"),
        (timedelta(minutes=3, seconds=59), "3 min ago"),
        (timedelta(hours=5, minutes=1), "5 h ago"),
        (timedelta(days=1, hours=2), "1 day ago"),
        (timedelta(days=9), "9 days ago"),
        (timedelta(minutes=-3), "in 3 min"),
    ],
)
def test_relative_time(ago: timedelta, said: str) -> None:
    assert relative_time(NOW - ago, NOW) == said


def test_never_and_exact_time_in_utc() -> None:
    assert relative_time(None, NOW) == "never"
    moment = parse_time("2026-12-03T11:00:05+01:00")
    assert exact_time(moment) == "2026-12-03 10:00:05 UTC"
    assert parse_time("2026-12-03T10:00:05") == datetime(2026, 12, 3, 10, 0, 5, tzinfo=UTC)
    assert parse_time(None) is None and exact_time(None) == ""


@pytest.mark.parametrize(
    ("count", "said"),
    [(0, "0 B"), (999, "999 B"), (1500, "1.5 KB"), (12_000_000, "12.0 MB"), (340_000_000, "340 MB"), (None, UNKNOWN)],
)
def test_format_bytes(count: int | None, said: str) -> None:
    assert format_bytes(count) == said


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (None, UNKNOWN),
        (44.6, "45 s"),
        (200, "3 min 20 s"),
        (180, "3 min"),
        (7500, "2 h 5 min"),
        (3 * 86400 + 4 * 3600, "3 days 4 h"),
    ],
)
def test_format_duration(seconds: float | None, said: str) -> None:
    assert format_duration(seconds) == said


def test_display_url_drops_credentials_and_query() -> None:
    assert display_url("s3://key:secret@bucket/prefix/") == "s3://bucket/prefix/"
    assert display_url("az://container/p?sv=2024&sig=SECRET") == "az://container/p"
    assert display_url("http://minio:9000/bucket") == "http://minio:9000/bucket"
    assert display_url("file:///data/images") == "file:///data/images"


def _job(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"state": "running", "bytes_total": 1000, "bytes_done": 250, "items_total": 4,
                               "items_done": 1, "items_skipped": 0, "items_failed": 0, "rate_bps": 2000.0,
                               "eta_s": 125.0}  # fmt: skip
    return {**base, **fields}


def test_running_migration_progress_eta_and_buttons() -> None:
    view = migration_view(_job())
    assert (view.percent, view.bytes_label, view.rate_label, view.eta_label) == (25, "250 B of 1.0 KB", "2.0 KB/s",
                                                                                  "2 min 5 s")  # fmt: skip
    assert view.items_label == "1 of 4" and not view.finished
    assert view.can_cancel and view.can_resume


def test_all_bytes_sent_is_not_100_until_the_job_completes() -> None:
    assert migration_view(_job(bytes_done=1000)).percent == 99
    done = migration_view(_job(state="completed", bytes_done=1000, items_done=4, eta_s=None))
    assert (done.percent, done.eta_label, done.finished, done.can_cancel) == (100, "done", True, False)


def test_migration_without_bytes_counts_items_and_failures() -> None:
    view = migration_view(_job(state="completed_with_errors", bytes_total=0, bytes_done=0, items_failed=1,
                               items_done=3, rate_bps=0))  # fmt: skip
    assert (view.percent, view.failures, view.rate_label, view.can_resume) == (100, 1, UNKNOWN, False)
    assert migration_view(_job(state="cancelled", bytes_done=500)).percent == 50


def test_insert_shifts_every_later_frame() -> None:
    pinned = [{"key": f"f_{i}.png", "live": "same"} for i in (1, 2, 3)]
    current = [{"key": k} for k in ("f_1.png", "f_1b.png", "f_2.png", "f_3.png")]
    rows = compare_frames(pinned, current)
    assert [(r.index, r.pinned_key, r.current_key, r.shifted) for r in rows] == [
        (0, "f_1.png", "f_1.png", False),
        (1, "f_2.png", "f_1b.png", True),
        (2, "f_3.png", "f_2.png", True),
        (3, None, "f_3.png", True),
    ]
    assert first_shifted(rows) == 1


def test_replaced_content_at_the_same_key_is_shifted_too() -> None:
    rows = compare_frames([{"key": "a.png", "live": "changed"}, {"key": "b.png", "live": "same"}],
                          [{"key": "a.png"}, {"key": "b.png"}])  # fmt: skip
    assert [r.shifted for r in rows] == [True, False]
    assert first_shifted(compare_frames([{"key": "a.png"}], [{"key": "a.png"}])) is None


def test_lag_and_reconcile_wording() -> None:
    lag = lag_view({"last_event_at": "2026-12-03T10:00:00+00:00", "last_applied_at": "2026-12-03T10:00:02+00:00",
                    "changes_queued": 3})  # fmt: skip
    assert (lag.apply_delay, lag.queued) == ("2 s after its event", "3 queued")
    assert lag_view({"changes_queued": None}).queued == "unknown (Redis down)"
    assert reconcile_label(None) == "not yet"
    assert reconcile_label({"state": "succeeded", "created": 0, "updated": 0, "deleted": 0}) == "ok, nothing missed"
    assert reconcile_label({"state": "succeeded", "created": 2, "deleted": 1}) == "ok, caught 3 missed changes"
    assert reconcile_label({"state": "succeeded", "updated": 1}) == "ok, caught 1 missed change"
    assert reconcile_label({"state": "failed", "error": "bucket gone"}) == "failed: bucket gone"


def test_frame_names_are_shown_relative_to_their_dataset() -> None:
    assert frame_name("survey/reef_a/frame_1.png", "survey/reef_a") == "frame_1.png"
    assert frame_name("frame_1.png", "") == "frame_1.png"
    assert frame_name("other/frame_1.png", "survey") == "other/frame_1.png"
