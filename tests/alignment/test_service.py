"""The alignment services on a real catalog: first import, pin, every kind of change, quarantine,
ack and re-pin. Changes go through the real write path (``apply_changes``) in-process."""

from __future__ import annotations

from dataclasses import replace

import psycopg
import pytest

from mountsync.shared.catalog.mounts import Mount
from mountsync.shared.errors import BadInput
from mountsync.shared.events import Provider
from mountsync.workers.alignment import store
from mountsync.workers.alignment.config import AlignmentConfig
from mountsync.workers.alignment.mountio import NoIO
from mountsync.workers.alignment.service import (
    FolderCheck,
    ack_alert,
    check_folder,
    describe_frames,
    frames_view,
    normalize_folder,
    pin_dataset,
)
from tests.alignment.support import FakeBucket, frame_keys

CONFIG = AlignmentConfig(settle_s=0)


def check(bucket: FakeBucket, folder: str = "seq", config: AlignmentConfig = CONFIG,
          io: object = None, new_keys: list[str] | None = None) -> FolderCheck:  # fmt: skip
    return check_folder(bucket.conn, config, bucket.mount, folder, io or NoIO(), new_keys)  # type: ignore[arg-type]


def dataset(bucket: FakeBucket, path: str = "seq") -> store.Dataset:
    (row,) = store.datasets_at(bucket.conn, bucket.mount.id, path)
    return row


def frame_list(bucket: FakeBucket, path: str = "seq") -> tuple[str, list[str]]:
    view = frames_view(bucket.conn, CONFIG, bucket.mount, path, NoIO())
    return view.source, [f.key for f in view.frames]


@pytest.fixture
def annotated(bucket: FakeBucket) -> FakeBucket:
    """100 frames imported, then pinned with annotations up to frame 40."""
    bucket.put(*frame_keys("seq", 100), "seq/seq.csv")
    check(bucket)
    pin_dataset(bucket.conn, CONFIG, bucket.mount, "seq", NoIO(), last_annotated=40)
    return bucket


def test_first_import_pins_the_dataset_without_an_alert(bucket: FakeBucket) -> None:
    bucket.put(*frame_keys("seq", 100), "seq/seq.csv", "seq/notes.txt")
    result = check(bucket)
    assert result.pinned == ["seq"]
    assert result.events == []
    ds = dataset(bucket)
    assert (ds.type, ds.frame_count, ds.pinned_frames, ds.pinned_by) == ("image-sequence", 100, 100, "import")
    assert ds.annotations == ("seq/seq.csv",)
    assert not ds.quarantined
    assert store.list_alerts(bucket.conn, bucket.mount.id, include_closed=True) == []


def test_insert_before_last_annotated_alerts_and_quarantines(annotated: FakeBucket) -> None:
    annotated.put("seq/frame_0020b.png")
    (event,) = check(annotated).events
    assert (event.action, event.kind, event.breaking, event.quarantined) == ("opened", "insert", True, True)
    assert (event.first_shifted_index, event.frames_moved, event.annotated_frames_moved) == (21, 79, 20)
    assert dataset(annotated).quarantined
    source, keys = frame_list(annotated)
    assert source == "pinned"
    assert keys == frame_keys("seq", 100)  # annotations stay on their images


def test_remove_names_the_removed_frame(annotated: FakeBucket) -> None:
    annotated.delete("seq/frame_0005.png")
    (event,) = check(annotated).events
    assert (event.kind, event.first_shifted_index, event.annotated_frames_moved) == ("remove", 5, 36)
    (alert,) = store.list_alerts(annotated.conn, annotated.mount.id, include_closed=False)
    assert alert.details["removed"] == [{"index": 5, "key": "seq/frame_0005.png"}]


def test_rename_in_one_batch(annotated: FakeBucket) -> None:
    annotated.rename("seq/frame_0030.png", "seq/renamed.png")
    (event,) = check(annotated).events
    assert (event.kind, event.first_shifted_index, event.frames_moved) == ("rename", 30, 70)
    assert (event.annotated_frames_moved, event.quarantined) == (11, True)


def test_rename_split_across_windows_updates_the_same_alert(annotated: FakeBucket) -> None:
    annotated.delete("seq/frame_0010.png")  # window 1: only the delete has arrived
    (first,) = check(annotated).events
    assert (first.action, first.kind, first.first_shifted_index) == ("opened", "remove", 10)
    annotated.put("seq/frame_0010_renamed.png", content="seq/frame_0010.png#1")  # window 2
    (second,) = check(annotated).events
    assert (second.action, second.alert_id, second.kind) == ("updated", first.alert_id, "rename")
    assert (second.first_shifted_index, second.frames_moved) == (10, 1)
    (alert,) = store.list_alerts(annotated.conn, annotated.mount.id, include_closed=False)
    assert alert.details["renamed"] == [{"from": "seq/frame_0010.png", "to": "seq/frame_0010_renamed.png"}]
    assert alert.checks == 2


def test_overwrite_is_a_replace_breaking_only_for_annotated_frames(annotated: FakeBucket) -> None:
    annotated.overwrite("seq/frame_0070.png")
    (late,) = check(annotated).events
    assert (late.kind, late.breaking, late.quarantined, late.first_shifted_index) == (
        "replace",
        False,
        False,
        70,
    )
    annotated.overwrite("seq/frame_0003.png")
    (early,) = check(annotated).events
    assert (early.action, early.kind, early.breaking, early.quarantined) == ("updated", "replace", True, True)
    assert early.annotated_frames_moved == 1


def test_append_flows_in_and_extends_the_pin(annotated: FakeBucket) -> None:
    annotated.put("seq/frame_0100.png", "seq/frame_0101.png")
    result = check(annotated)
    assert result.events == []
    assert result.kinds == {"seq": "append"}
    ds = dataset(annotated)
    assert (ds.pinned_frames, ds.quarantined, ds.last_annotated) == (102, False, 40)
    assert frame_list(annotated) == ("live", frame_keys("seq", 102))
    assert check(annotated).kinds == {}  # nothing new: the append is part of the pin now


def test_revert_resolves_the_alert_and_lifts_quarantine(annotated: FakeBucket) -> None:
    annotated.put("seq/frame_0000a.png")
    (opened,) = check(annotated).events
    assert opened.quarantined
    annotated.delete("seq/frame_0000a.png")
    (resolved,) = check(annotated).events
    assert (resolved.action, resolved.alert_id) == ("resolved", opened.alert_id)
    assert not dataset(annotated).quarantined
    (alert,) = store.list_alerts(annotated.conn, annotated.mount.id, include_closed=True)
    assert alert.status == "resolved"


def test_ack_accepts_the_folder_as_it_is(annotated: FakeBucket) -> None:
    annotated.put("seq/frame_0000a.png")
    (opened,) = check(annotated).events
    alert, pin = ack_alert(annotated.conn, CONFIG, opened.alert_id, lambda m: NoIO())
    assert (alert.status, alert.quarantined) == ("acked", True)
    assert "ack" in (alert.closed_by or "")
    assert (pin.frames, pin.dataset.quarantined, pin.dataset.last_annotated) == (101, False, 40)
    assert frame_list(annotated)[1][:2] == ["seq/frame_0000.png", "seq/frame_0000a.png"]
    assert check(annotated).events == []
    with pytest.raises(BadInput, match="already acked"):
        ack_alert(annotated.conn, CONFIG, opened.alert_id, lambda m: NoIO())
    with pytest.raises(BadInput, match="no alert"):
        ack_alert(annotated.conn, CONFIG, 987654, lambda m: NoIO())


def test_repin_closes_open_alerts(annotated: FakeBucket) -> None:
    annotated.delete("seq/frame_0001.png")
    (opened,) = check(annotated).events
    result = pin_dataset(annotated.conn, CONFIG, annotated.mount, "seq", NoIO(), last_annotated=10)
    assert result.closed_alerts == [opened.alert_id]
    assert (result.frames, result.dataset.last_annotated, result.dataset.quarantined) == (99, 10, False)


def test_insert_after_last_annotated_warns_without_quarantine(annotated: FakeBucket) -> None:
    annotated.put("seq/frame_0090b.png")
    (event,) = check(annotated).events
    assert (event.kind, event.breaking, event.quarantined, event.annotated_frames_moved) == (
        "insert",
        False,
        False,
        0,
    )
    assert frame_list(annotated)[0] == "live"


def test_quarantine_policies(bucket: FakeBucket) -> None:
    bucket.put(*frame_keys("seq", 10))
    check(bucket)
    bucket.put("seq/frame_0000a.png")
    never = replace(CONFIG, quarantine="never")
    (event,) = check(bucket, config=never).events
    assert (event.breaking, event.quarantined) == (True, False)
    assert not dataset(bucket).quarantined


def test_appends_and_new_datasets_can_be_alerted(bucket: FakeBucket) -> None:
    loud = replace(CONFIG, alert_appends=True, alert_new=True)
    bucket.put(*frame_keys("seq", 3))
    (new,) = check(bucket, config=loud).events
    assert new.kind == "new-dataset"
    bucket.put("seq/frame_0003.png")
    (append,) = check(bucket, config=loud).events
    assert append.kind == "append"
    alerts = store.list_alerts(bucket.conn, bucket.mount.id, include_closed=True)
    assert [a.status for a in alerts] == ["resolved", "resolved"]
    assert store.list_alerts(bucket.conn, bucket.mount.id, include_closed=False) == []


def test_autopin_off_records_datasets_unpinned(bucket: FakeBucket) -> None:
    quiet = replace(CONFIG, autopin=False)
    bucket.put(*frame_keys("seq", 3))
    assert check(bucket, config=quiet).pinned == []
    assert not dataset(bucket).pinned
    bucket.put("seq/frame_0000a.png")
    assert check(bucket, config=quiet).events == []  # nothing pinned, nothing to protect


def test_videos_and_annotations_arriving_first(bucket: FakeBucket) -> None:
    bucket.put("vids/a.csv", "vids/a_metadata.json")
    check(bucket, "vids")
    assert store.datasets_in_folder(bucket.conn, bucket.mount.id, "vids") == []
    bucket.put("vids/a.mp4", "vids/b.webm")
    assert sorted(check(bucket, "vids").pinned) == ["vids/a.mp4", "vids/b.webm"]
    video = dataset(bucket, "vids/a.mp4")
    assert (video.type, video.annotations, video.sidecars) == (
        "video",
        ("vids/a.csv",),
        ("vids/a_metadata.json",),
    )
    bucket.overwrite("vids/a.mp4")
    (event,) = check(bucket, "vids").events
    assert (event.path, event.kind, event.quarantined) == ("vids/a.mp4", "replace", True)
    assert frame_list(bucket, "vids/a.mp4")[0] == "pinned"
    bucket.delete("vids/b.webm")
    (gone,) = check(bucket, "vids").events
    assert (gone.path, gone.kind) == ("vids/b.webm", "remove")
    assert not dataset(bucket, "vids/b.webm").present


def test_whole_dataset_removed(annotated: FakeBucket) -> None:
    from mountsync.shared.catalog.delete_guard import Guard
    from mountsync.shared.catalog.held import set_guard

    set_guard(annotated.conn, annotated.mount.id, Guard(0, 0))  # else the mass-delete guard holds the wipe
    annotated.delete(*frame_keys("seq", 100))
    (event,) = check(annotated).events
    assert (event.kind, event.first_shifted_index, event.frames_moved) == ("remove", 0, 100)
    ds = dataset(annotated)
    assert (ds.present, ds.quarantined) == (False, True)
    source, keys = frame_list(annotated)
    assert (source, len(keys)) == ("pinned", 100)
    view = frames_view(annotated.conn, CONFIG, annotated.mount, "seq", NoIO())
    assert {row["live"] for row in describe_frames(view)} == {"missing"}


class ManifestIO(NoIO):
    def __init__(self, text: str) -> None:
        self.text = text

    def read_text(self, key: str) -> str:
        return self.text


def test_manifest_order_and_reorder(bucket: FakeBucket) -> None:
    bucket.put("m/a.png", "m/b.png", "m/c.png", "m/frames.txt")
    check(bucket, "m")
    pin_dataset(bucket.conn, CONFIG, bucket.mount, "m", ManifestIO("c.png\nb.png\na.png\n"),
                order="manifest", last_annotated=2)  # fmt: skip
    assert frames_view(bucket.conn, CONFIG, bucket.mount, "m", ManifestIO("c.png\nb.png\na.png")
                       ).frames[0].key == "m/c.png"  # fmt: skip
    bucket.overwrite("m/frames.txt")
    (event,) = check(bucket, "m", io=ManifestIO("a.png\nb.png\nc.png\n")).events
    assert (event.kind, event.first_shifted_index, event.frames_moved) == ("reorder", 0, 2)


def test_pin_refuses_bad_input(annotated: FakeBucket) -> None:
    pin = lambda path, **kw: pin_dataset(annotated.conn, CONFIG, annotated.mount, path, NoIO(), **kw)  # noqa: E731
    with pytest.raises(BadInput, match="past the last frame"):
        pin("seq", last_annotated=100)
    with pytest.raises(BadInput, match="0 or more"):
        pin("seq", last_annotated=-1)
    with pytest.raises(BadInput, match="no dataset"):
        pin("nowhere")
    with pytest.raises(BadInput, match="unknown frame order"):
        pin("seq", order="random")
    assert pin("/seq/", last_annotated=99).dataset.last_annotated == 99


def test_paths_may_be_relative_to_the_mount_prefix() -> None:
    mount = Mount(1, "m", "s3://b/data/", Provider.S3, "b", "data/", "m", False)
    assert normalize_folder(mount, "seq") == ["seq", "data/seq"]
    assert normalize_folder(mount, "data/seq/") == ["data/seq"]
    assert normalize_folder(mount, "/") == ["", "data"]


def test_checks_serialize_per_folder(annotated: FakeBucket, catalog_url: str) -> None:
    """A second connection waits for the folder lock instead of interleaving."""
    with psycopg.connect(catalog_url, autocommit=True) as other, other.transaction():
        store.lock_folder(other, annotated.mount.id, "seq")
        probe = psycopg.connect(catalog_url, autocommit=True)
        try:
            probe.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable), probe.transaction():
                store.lock_folder(probe, annotated.mount.id, "seq")
        finally:
            probe.close()


def test_new_folder_is_pinned_only_once_it_settles(bucket: FakeBucket) -> None:
    patient = replace(CONFIG, settle_s=30)
    bucket.put(*frame_keys("seq", 5))
    first = check(bucket, config=patient)
    assert first.recheck_in is not None and 29 < first.recheck_in <= 30.1
    assert store.datasets_in_folder(bucket.conn, bucket.mount.id, "seq") == []
    bucket.conn.execute("UPDATE folders SET updated_at = now() - interval '31 seconds'")
    assert check(bucket, config=patient).pinned == ["seq"]


def test_fast_path_extends_the_pin_for_pure_appends(annotated: FakeBucket) -> None:
    new = ["seq/frame_0101.png", "seq/frame_0100.png"]
    annotated.put(*new)
    result = check(annotated, new_keys=new)
    assert (result.fast, result.kinds, result.events) == (True, {"seq": "append"}, [])
    ds = dataset(annotated)
    assert (ds.pinned_frames, ds.frame_count) == (102, 102)
    assert frame_list(annotated) == ("live", frame_keys("seq", 102))
    full = check(annotated)  # the full check agrees: nothing differs from the pin
    assert (full.kinds, full.events) == ({}, [])


@pytest.mark.parametrize(
    "setup",
    ["sorts-before-last", "unrecorded-change", "quarantined", "already-pinned"],
)
def test_fast_path_defers_to_the_full_check(annotated: FakeBucket, setup: str) -> None:
    if setup == "quarantined":
        annotated.delete("seq/frame_0001.png")
        check(annotated)
    if setup == "unrecorded-change":
        annotated.put("seq/frame_0050b.png")  # an insert another check claimed
    key = "seq/frame_0000b.png" if setup == "sorts-before-last" else "seq/frame_0100.png"
    if setup == "already-pinned":
        key = "seq/frame_0007.png"
        annotated.overwrite(key)
    else:
        annotated.put(key)
    result = check(annotated, new_keys=[key])
    assert not result.fast
    if setup in ("sorts-before-last", "unrecorded-change"):
        (event,) = result.events
        assert event.kind == "insert"
    if setup == "already-pinned":
        (event,) = result.events
        assert event.kind == "replace"


def test_fast_path_skips_keys_a_full_check_already_pinned(annotated: FakeBucket) -> None:
    """Two apply workers can run their hooks out of commit order: a full check may pin a frame
    before the record naming it is claimed. That record must still take the fast path."""
    annotated.put("seq/frame_0100.png")
    check(annotated)  # full check: pins frame 100 (its hook record not claimed yet)
    annotated.put("seq/frame_0101.png")
    result = check(annotated, new_keys=["seq/frame_0100.png", "seq/frame_0101.png"])
    assert (result.fast, result.events) == (True, [])
    assert dataset(annotated).pinned_frames == 102
    assert check(annotated).kinds == {}


def test_fast_path_defers_when_a_recorded_pinned_frame_was_deleted(annotated: FakeBucket) -> None:
    """A recorded key a full check already pinned, then deleted (that delete's hook has not run):
    a frame is missing, so however the live-object count nets out this is no append."""
    annotated.put("seq/frame_0100.png")
    check(annotated)  # full check: pins frame 100 (its hook record not claimed yet)
    annotated.delete("seq/frame_0100.png")
    annotated.put("seq/frame_0101.png")
    annotated.put("seq/frame_0102.png")  # another apply worker's, not recorded yet: the count nets out
    result = check(annotated, new_keys=["seq/frame_0100.png", "seq/frame_0101.png"])
    assert (result.fast, result.kinds) == (False, {"seq": "remove"})
    (event,) = result.events
    assert event.kind == "remove"


def test_fast_path_takes_appends_whose_hook_has_not_run_yet(annotated: FakeBucket) -> None:
    annotated.put("seq/frame_0100.png")  # committed by another apply worker, not recorded yet
    annotated.put("seq/frame_0101.png")
    result = check(annotated, new_keys=["seq/frame_0101.png"])
    assert (result.fast, dataset(annotated).pinned_frames) == (True, 102)
    late = check(annotated, new_keys=["seq/frame_0100.png"])  # its record arrives at last
    assert (late.fast, late.events, dataset(annotated).pinned_frames) == (True, [], 102)


def test_fast_path_defers_when_an_unrecorded_non_image_arrived(annotated: FakeBucket) -> None:
    annotated.put("seq/readme.txt")
    annotated.put("seq/frame_0100.png")
    result = check(annotated, new_keys=["seq/frame_0100.png"])
    assert not result.fast
    assert result.kinds == {"seq": "append"}
