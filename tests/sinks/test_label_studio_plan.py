"""The connector's pure plan: what each change means for a project, and that applied ones are no-ops."""

from __future__ import annotations

from datetime import UTC, datetime

from mountsync.shared.catalog.change_log import ChangeEntry
from mountsync.workers.sinks.label_studio_plan import Mapped, object_url, plan_batch

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def entry(cursor: int, key: str, kind: str = "created", etag: str | None = "e1", quarantined: bool = False):
    return ChangeEntry(cursor, "m", "", key, kind, 1, etag, None, "1", None, NOW, quarantined)


def keys(pairs) -> list[str]:
    return [p[0].key if isinstance(p, tuple) else p.key for p in pairs]


def test_a_new_key_is_created_once_even_when_the_batch_mentions_it_twice() -> None:
    plan = plan_batch([entry(1, "a"), entry(2, "a", "updated", "e2"), entry(3, "b")], {})
    assert keys(plan.create) == ["a", "b"] and plan.create[0].etag == "e2"


def test_a_delete_checks_annotations_and_a_never_imported_key_is_only_forgotten() -> None:
    mapped = {"a": Mapped("a", 10, "e1", "live", cursor=1), "b": Mapped("b", None, "e1", "importing", cursor=1)}
    plan = plan_batch([entry(5, "a", "deleted", None), entry(6, "b", "deleted", None), entry(7, "c", "deleted")],
                      mapped)  # fmt: skip
    assert keys(plan.check_delete) == ["a"] and keys(plan.forget) == ["b"] and not plan.create


def test_an_overwrite_marks_changed_and_a_recreated_kept_task_too() -> None:
    mapped = {"a": Mapped("a", 10, "e1", "live", cursor=1), "k": Mapped("k", 11, "e1", "kept", cursor=2)}
    plan = plan_batch([entry(5, "a", "updated", "e2"), entry(6, "k", "created", "e1")], mapped)
    assert keys(plan.mark_changed) == ["a", "k"] and plan.mark_changed[0][1].etag == "e1"


def test_entries_the_map_already_reflects_plan_nothing() -> None:
    mapped = {"a": Mapped("a", 10, "e2", "changed", cursor=5), "d": Mapped("d", 12, "e1", "deleted", cursor=6)}
    replay = [entry(1, "a"), entry(5, "a", "updated", "e2"), entry(2, "d"), entry(6, "d", "deleted", None)]
    assert plan_batch(replay, mapped).empty()


def test_a_kept_task_is_not_deleted_again_and_quarantine_marks_without_a_change() -> None:
    mapped = {"k": Mapped("k", 11, "e1", "kept", cursor=2), "q": Mapped("q", 12, "e1", "live", cursor=2)}
    plan = plan_batch([entry(7, "k", "deleted", None), entry(8, "q", "metadata", "e1", quarantined=True)], mapped)
    assert not plan.check_delete and keys(plan.mark_quarantine) == ["q"]


def test_task_data_points_at_the_object_as_label_studio_storages_expect() -> None:
    assert object_url("s3", "bkt", "a/b c.png") == "s3://bkt/a/b c.png"
    assert object_url("gcs", "bkt", "x.jpg") == "gs://bkt/x.jpg"
    assert object_url("azure", "ctr", "x.jpg") == "azure-blob://ctr/x.jpg"
