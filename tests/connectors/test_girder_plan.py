"""The Girder connector's pure rules: what a batch plans, given the key -> item map."""

from __future__ import annotations

from dataclasses import dataclass

from mountsync.workers.connectors.girder_plan import (
    DatasetState,
    Mapped,
    dataset_folder_meta,
    emptied_candidates,
    mirror_root,
    plan_batch,
    relative_key,
)


@dataclass(frozen=True)
class Entry:
    cursor: int
    key: str
    kind: str
    size: int | None = 3
    etag: str | None = "e1"
    version: str | None = None


def mapped(key: str, etag: str = "e1") -> Mapped:
    return Mapped(key, f"item-{key}", "folder", etag, None)


def test_keys_are_mirrored_below_the_mount_and_connector_prefixes() -> None:
    root = mirror_root("data/", "/cams/")
    assert root == "data/cams/"
    assert relative_key("data/cams/a/b.png", root) == "a/b.png"
    assert relative_key("data/other/b.png", root) is None
    assert relative_key("x/y.png", mirror_root("", "")) == "x/y.png"


def test_a_batch_plans_the_net_effect_per_key_in_cursor_order() -> None:
    entries = [
        Entry(3, "r/a/x.png", "deleted", None, None),
        Entry(1, "r/a/x.png", "created"),
        Entry(2, "r/a/y.png", "created"),
        Entry(4, "r/z.png", "created"),
        Entry(5, "elsewhere/q.png", "created"),
    ]
    plan = plan_batch(entries, {}, "r/")
    assert {folder: [e.key for e in changes] for folder, changes in plan.create.items()} == {
        "a": ["r/a/y.png"],
        "": ["r/z.png"],
    }
    assert [(e.key, row) for e, row in plan.delete] == [("r/a/x.png", None)]


def test_a_redelivered_change_plans_nothing_and_a_new_etag_refreshes() -> None:
    known = {"r/a.png": mapped("r/a.png")}
    assert plan_batch([Entry(1, "r/a.png", "created")], known, "r/").empty()
    plan = plan_batch([Entry(2, "r/a.png", "updated", etag="e2")], known, "r/")
    assert [(e.etag, row.etag) for e, row in plan.refresh] == [("e2", "e1")]


def test_deletes_look_at_every_folder_above_them_deepest_first() -> None:
    assert emptied_candidates(["a/b/c/x.png", "a/y.png", "top.png"]) == ["a/b/c", "a/b", "a"]


def test_dataset_folders_carry_dive_markers_and_quarantine_until_it_is_lifted() -> None:
    quarantined = DatasetState("seq", "image-sequence", annotated=True, quarantined=True, alert_id=7,
                               alert_kind="insert")  # fmt: skip
    assert dataset_folder_meta(quarantined) == {
        "annotate": True,
        "type": "image-sequence",
        "mountsync": {"quarantined": True, "alert_id": 7, "alert": "insert"},
    }
    lifted = DatasetState("seq", "image-sequence", annotated=True, quarantined=False)
    assert dataset_folder_meta(lifted)["mountsync"] is None
    assert dataset_folder_meta(None) == {"annotate": None, "type": None, "mountsync": None}
