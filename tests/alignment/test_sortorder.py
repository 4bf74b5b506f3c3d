"""Frame order policies: DIVE's public vectors, the total-order tie-break, manifests."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mountsync.shared.errors import BadInput
from mountsync.workers.alignment.sortorder import (
    dive_compare,
    get_policy,
    manifest_policy,
    parse_frame_manifest,
)

# DIVE's own test vectors (reference/anchors.md): each list is in sorted order.
DIVE_VECTORS = [
    [
        "",
        "1",
        "2",
        "100",
        "100a",
        "200",
        "1000",
        "and3",
        "and30",
        "and200__1",
        "b100",
        "first",
        "second",
    ],
    ["1A1", "1A2", "1B1", "1B2"],
]


@pytest.mark.parametrize("vector", DIVE_VECTORS, ids=["dive-main", "dive-alnum"])
def test_dive_public_vectors_are_in_order(vector: list[str]) -> None:
    dive = get_policy("dive")
    for seed in range(5):
        shuffled = vector[:]
        random.Random(seed).shuffle(shuffled)
        assert dive.sort(shuffled) == vector
    for a, b in itertools.pairwise(vector):
        assert dive_compare(a, b) == -1
        assert dive_compare(b, a) == 1


@pytest.mark.parametrize(
    ("policy", "names", "expected"),
    [
        # digit runs compare as integers
        (
            "dive",
            ["frame_10.png", "frame_2.png", "frame_1.png"],
            ["frame_1.png", "frame_2.png", "frame_10.png"],
        ),
        (
            "lexicographic",
            ["frame_10.png", "frame_2.png", "frame_1.png"],
            ["frame_1.png", "frame_10.png", "frame_2.png"],
        ),
        # DIVE ties img_1 and img_01; we break the tie on the full name, whatever the input order
        ("dive", ["img_1.png", "img_01.png"], ["img_01.png", "img_1.png"]),
        ("dive", ["img_01.png", "img_1.png"], ["img_01.png", "img_1.png"]),
        ("dive", ["a_007.jpg", "a_7.jpg", "a_07.jpg"], ["a_007.jpg", "a_07.jpg", "a_7.jpg"]),
        # case-sensitive code points: upper case sorts before lower case
        ("dive", ["b.png", "a.png", "B.png", "A.png"], ["A.png", "B.png", "a.png", "b.png"]),
        # a digit run sorts before text at the same position
        ("dive", ["x_a.png", "x_1.png"], ["x_1.png", "x_a.png"]),
        # the full name with its extension decides
        ("dive", ["f1.png", "f1.jpg", "f1.jpeg"], ["f1.jpeg", "f1.jpg", "f1.png"]),
        # shorter run list first
        ("dive", ["img2b.png", "img2.png"], ["img2.png", "img2b.png"]),
        # huge numbers do not overflow
        (
            "dive",
            ["f99999999999999999999999.png", "f100000000000000000000000.png"],
            ["f99999999999999999999999.png", "f100000000000000000000000.png"],
        ),
        # only ASCII digits are numbers (Arabic-Indic digit three is text)
        ("dive", ["f\u0663.png", "f4.png"], ["f4.png", "f\u0663.png"]),
    ],
)
def test_policy_orders(policy: str, names: list[str], expected: list[str]) -> None:
    assert get_policy(policy).sort(names) == expected


@given(st.lists(st.text(alphabet="ab01_.Z9", max_size=8), max_size=12))
def test_dive_is_a_total_order(names: list[str]) -> None:
    dive = get_policy("dive")
    once = dive.sort(names)
    assert dive.sort(reversed(names)) == once
    for a, b in itertools.pairwise(once):
        assert dive_compare(a, b) <= 0
        assert (dive_compare(a, b) == 0) == (a == b)


def test_manifest_policy_lists_first_then_unlisted_in_dive_order() -> None:
    policy = manifest_policy(["c.png", "a.png", "c.png", "missing.png"])
    names = ["a.png", "b10.png", "b9.png", "c.png"]
    assert policy.sort(names) == ["c.png", "a.png", "b9.png", "b10.png"]
    assert policy.listed == ("c.png", "a.png", "missing.png")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("b.png\n\n# comment\n a.png \n", ["b.png", "a.png"]),
        ('["z.png", "dir/y.png"]', ["z.png", "y.png"]),
        ("", []),
        ("frames/0001.jpg\r\nframes/0002.jpg\r\n", ["0001.jpg", "0002.jpg"]),
    ],
)
def test_parse_frame_manifest(text: str, expected: list[str]) -> None:
    assert parse_frame_manifest(text) == expected


@pytest.mark.parametrize("text", ['["a.png", 3]', "[not json", '[{"a": 1}]', "[" * 100_000])
def test_bad_manifest_is_bad_input(text: str) -> None:
    with pytest.raises(BadInput):
        parse_frame_manifest(text)


def test_unknown_policy_names_the_choices() -> None:
    with pytest.raises(BadInput, match="dive, lexicographic, manifest"):
        get_policy("natural")
