"""Table-driven classification of changes to a pinned dataset (pure)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from mountsync.workers.alignment.classify import ChangeKind, Classification, Frame, classify_folder_change
from mountsync.workers.alignment.sortorder import get_policy

A = ChangeKind.APPEND
I = ChangeKind.INSERT  # noqa: E741
R = ChangeKind.REMOVE
N = ChangeKind.RENAME
O = ChangeKind.REORDER  # noqa: E741
P = ChangeKind.REPLACE
D = ChangeKind.NEW_DATASET

DIVE = get_policy("dive")


def frame(name: str, content: str | None = None, *, etag: bool = True) -> Frame:
    return Frame(key=f"d/{name}", etag=(content or f"e-{name}") if etag else None, size=10)


def pinned(n: int = 10) -> list[Frame]:
    return [frame(f"{i:02d}.png") for i in range(n)]


def ordered(frames: list[Frame]) -> list[Frame]:
    return sorted(frames, key=lambda f: DIVE.key(f.key.rpartition("/")[2]))


def without(frames: list[Frame], *names: str) -> list[Frame]:
    keys = {f"d/{n}" for n in names}
    return [f for f in frames if f.key not in keys]


Edit = Callable[[list[Frame]], list[Frame]]


def add(*new: Frame) -> Edit:
    return lambda fs: ordered([*fs, *new])


def remove(*names: str) -> Edit:
    return lambda fs: without(fs, *names)


def rename(old: str, new: str) -> Edit:
    return lambda fs: ordered([*without(fs, old), frame(new, f"e-{old}")])


def replace(name: str) -> Edit:
    return lambda fs: [frame(name, "new-content") if f.key == f"d/{name}" else f for f in fs]


def swap(a: int, b: int) -> Edit:
    def edit(fs: list[Frame]) -> list[Frame]:
        out = list(fs)
        out[a], out[b] = out[b], out[a]
        return out

    return edit


def chain(*edits: Edit) -> Edit:
    def edit(fs: list[Frame]) -> list[Frame]:
        for e in edits:
            fs = e(fs)
        return fs

    return edit


@dataclass(frozen=True)
class Case:
    id: str
    edit: Edit
    kinds: tuple[ChangeKind, ...]
    first: int | None
    moved: int
    last_annotated: int | None = None
    annotated_moved: int | None = None
    breaking: bool = True


CASES = [
    Case("unchanged", lambda fs: fs, (), None, 0, breaking=False),
    Case("append", add(frame("10.png"), frame("11.png")), (A,), None, 0, breaking=False),
    Case("append-annotated", add(frame("10.png")), (A,), None, 0, 4, 0, breaking=False),
    Case("insert-before-annotated", add(frame("03a.png")), (I,), 4, 6, 4, 1),
    Case("insert-after-annotated", add(frame("07a.png")), (I,), 8, 2, 4, 0, breaking=False),
    Case("insert-first", add(frame("0.png")), (I,), 0, 10),
    Case("remove", remove("02.png"), (R,), 2, 8, 4, 3),
    Case("remove-last", remove("09.png"), (R,), 9, 1, 4, 0, breaking=False),
    Case("remove-all", lambda fs: [], (R,), 0, 10),
    Case("rename-in-place", rename("05.png", "05b.png"), (N,), 5, 1),
    Case("rename-in-place-unannotated", rename("05.png", "05b.png"), (N,), 5, 1, 4, 0, breaking=False),
    Case("rename-moves-frame", rename("01.png", "99.png"), (N,), 1, 9, 40, 9),
    Case("replace", replace("03.png"), (P,), 3, 1, 4, 1),
    Case("replace-after-annotated", replace("08.png"), (P,), 8, 1, 4, 0, breaking=False),
    Case("reorder", swap(2, 3), (O,), 2, 2, 4, 2),
    Case(
        "mixed-insert-replace-append",
        chain(add(frame("03a.png"), frame("10.png")), replace("01.png")),
        (I, P, A),
        1,
        7,
        4,
        2,
    ),
    Case("mixed-remove-rename", chain(remove("02.png"), rename("06.png", "06x.png")), (R, N), 2, 8),
    Case("mixed-remove-and-append", chain(remove("00.png"), add(frame("10.png"))), (R, A), 0, 10),
    Case(
        "remove-then-readd-elsewhere",
        chain(remove("04.png"), add(frame("04.png"))),
        (),
        None,
        0,
        breaking=False,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_classification(case: Case) -> None:
    before = pinned()
    result = classify_folder_change(before, case.edit(list(before)), last_annotated=case.last_annotated)
    assert result.kinds == case.kinds
    assert result.kind == (case.kinds[0] if case.kinds else None)
    assert result.first_shifted_index == case.first
    assert result.frames_moved == case.moved
    assert result.annotated_frames_moved == case.annotated_moved
    assert result.breaking is case.breaking


def test_details_name_the_frames() -> None:
    before = pinned()
    after = chain(add(frame("03a.png")), remove("07.png"), rename("01.png", "01z.png"), replace("05.png"))(list(before))
    details = classify_folder_change(before, after).details()
    assert details["inserted"] == [{"index": 4, "key": "d/03a.png"}]
    assert details["removed"] == [{"index": 7, "key": "d/07.png"}]
    assert details["renamed"] == [{"from": "d/01.png", "to": "d/01z.png"}]
    assert details["replaced"] == [{"index": 5, "key": "d/05.png"}]
    assert details["kinds"] == ["remove", "insert", "rename", "replace"]
    assert details["pinned_frames"] == 10
    assert details["current_frames"] == 10


def test_reorder_names_the_frames_out_of_order() -> None:
    before = pinned()
    after = [before[i] for i in (0, 1, 7, 2, 3, 4, 5, 6, 8, 9)]
    result = classify_folder_change(before, after)
    assert result.reordered == ("d/07.png",)
    assert result.first_shifted_index == 2


def test_new_dataset() -> None:
    result = classify_folder_change([], [frame("a.png"), frame("b.png")])
    assert (result.kind, result.breaking) == (D, False)
    assert result.appended == ("d/a.png", "d/b.png")
    assert classify_folder_change([], []).kind is None


def classify(before: list[Frame], after: list[Frame], last: int | None = None) -> Classification:
    return classify_folder_change(before, after, last_annotated=last)


def test_rename_split_across_windows_delete_first() -> None:
    before = pinned()
    window1 = without(before, "05.png")  # only the delete has arrived
    first = classify(before, window1, 40)
    assert (first.kinds, first.first_shifted_index) == ((R,), 5)
    window2 = rename("05.png", "05b.png")(list(before))  # the create arrived too
    second = classify(before, window2, 40)
    assert second.kinds == (N,)
    assert second.renamed == (("d/05.png", "d/05b.png"),)
    assert (second.first_shifted_index, second.frames_moved) == (5, 1)


def test_rename_split_across_windows_create_first() -> None:
    before = pinned()
    window1 = ordered([*before, frame("05b.png", "e-05.png")])  # the copy landed first
    first = classify(before, window1)
    assert (first.kinds, first.first_shifted_index, first.frames_moved) == ((I,), 6, 4)
    window2 = without(window1, "05.png")
    assert classify(before, window2).kinds == (N,)


def test_rename_back_is_unchanged() -> None:
    before = pinned()
    there = rename("05.png", "05b.png")(list(before))
    back = ordered([*without(there, "05b.png"), frame("05.png")])
    assert classify(before, there).kinds == (N,)
    assert classify(before, back).kind is None


def test_duplicate_content_pairs_one_rename_per_copy() -> None:
    before = [frame("0.png", "same"), frame("1.png", "same"), frame("2.png")]
    after = [frame("1x.png", "same"), frame("2.png")]
    result = classify(before, after)
    assert result.kinds == (R, N)
    assert result.renamed == (("d/0.png", "d/1x.png"),)
    assert result.removed == ((1, "d/1.png"),)


def test_without_etags_a_rename_is_a_remove_and_an_insert() -> None:
    before = [frame(f"{i}.png", etag=False) for i in range(3)]
    after = [before[0], frame("1b.png", etag=False), before[2]]
    assert classify(before, after).kinds == (R, I)


def test_metadata_only_change_is_not_a_change() -> None:
    before = [Frame("d/a.png", etag="x", size=1, version="v1")]
    after = [Frame("d/a.png", etag="x", size=1, version="v2")]
    assert classify(before, after).kind is None


def test_video_overwrite_is_a_replace() -> None:
    before = [Frame("v/clip.mp4", etag="a", size=100)]
    result = classify(before, [Frame("v/clip.mp4", etag="b", size=120)])
    assert (result.kind, result.first_shifted_index, result.breaking) == (P, 0, True)
    assert classify(before, []).kind is R
