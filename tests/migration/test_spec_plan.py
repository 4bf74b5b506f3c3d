"""Pure parts: spec validation (bad specs rejected with the reason), safe keys, chunking."""

from __future__ import annotations

import pytest

from mountsync.shared.errors import BadInput
from mountsync.shared.migration.plan import (
    CHUNK_SIZE,
    ChunkCutter,
    Entry,
    destination_key,
    part_size_for,
    plan_batches,
    safe_relative_path,
)
from mountsync.shared.migration.spec import MAX_INLINE_ITEMS, TransferOptions, parse_spec

MiB = 1024 * 1024
GOOD = {"source": "file:///data/images", "destination": "s3://bucket/migrated"}


def test_minimal_spec_gets_defaults() -> None:
    spec = parse_spec(GOOD)
    assert spec.items is None and spec.callback is None and spec.job_id is None
    assert spec.destination.prefix == "migrated/"
    assert spec.options == TransferOptions()
    assert spec.options.part_size == 8 * MiB and spec.options.part_concurrency == 5


def test_spec_round_trips_through_wire_form() -> None:
    data = {
        **GOOD,
        "job_id": "job-1",
        "items": [{"entity_id": 7, "path": "./a/b.jpg", "size": 3, "sha256": "A" * 64}],
        "callback": {"task": "platform.relink", "queue": "platform"},
        "options": {"part_size": 16 * MiB, "destination_storage": {"endpoint_url": "http://x"}},
    }
    spec = parse_spec(data)
    assert spec.items[0].entity_id == "7"  # integer ids are accepted as strings
    assert spec.items[0].path == "a/b.jpg"  # a leading ./ is the only rewrite
    assert spec.items[0].sha256 == "a" * 64
    assert parse_spec(spec.to_wire()) == spec


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"source": None}, "'source' is required"),
        ({"destination": "ftp://x/y"}, "unknown URL scheme"),
        ({"destination": "s3://"}, "no bucket"),
        ({"destination": "file:///data/images/out"}, "overlaps the source"),
        ({"source": "s3://b/p/", "destination": "s3://b/"}, "overlaps the source"),
        ({"colour": "red"}, "unknown spec field"),
        ({"job_id": "../x"}, "job_id"),
        ({"items": {"a": 1}}, "items must be a list"),
        ({"items": [{"path": "a"}]}, "entity_id"),
        ({"items": [{"entity_id": "1", "path": "/etc/passwd"}]}, "absolute"),
        ({"items": [{"entity_id": "1", "path": "a/../../b"}]}, "'..'"),
        ({"items": [{"entity_id": "1", "path": "a//b"}]}, "empty"),
        ({"items": [{"entity_id": "1", "path": "a\\b"}]}, "backslash"),
        ({"items": [{"entity_id": "1", "path": "C:/x"}]}, "absolute"),
        ({"items": [{"entity_id": "1", "path": "a\nb"}]}, "control character"),
        ({"items": [{"entity_id": "1", "path": "a", "size": -1}]}, "size"),
        ({"items": [{"entity_id": "1", "path": "a", "md5": "zz"}]}, "md5"),
        ({"items": [{"entity_id": "1", "path": "a"}, {"entity_id": "1", "path": "b"}]}, "repeats"),
        ({"items": [{"entity_id": "1", "path": "a"}, {"entity_id": "2", "path": "./a"}]}, "both map"),
        ({"callback": {"url": "ftp://x"}}, "http"),
        ({"callback": {"url": "https://u:secret@x/hook"}}, "password"),
        ({"callback": {"task": "a b", "queue": "q"}}, "task name"),
        ({"callback": {"task": "t"}}, "callback must be"),
        ({"options": {"part_size": 1024}}, "part_size"),
        ({"options": {"part_size": 5 * MiB + 1}}, "256 KiB"),
        ({"options": {"concurrency": 0}}, "concurrency"),
        ({"options": {"chunk_size": 5000}}, "chunk_size"),
        ({"options": {"skip_existing": "yes"}}, "true or false"),
        ({"options": {"turbo": True}}, "unknown option"),
        ({"options": {"destination_storage": {"secret_access_key": "x"}}}, "secrets never"),
    ],
)
def test_bad_specs_are_rejected_with_the_reason(change: dict, reason: str) -> None:
    data = {**GOOD, **change}
    with pytest.raises(BadInput) as info:
        parse_spec(data)
    assert reason in str(info.value)


def test_too_many_inline_items_is_refused() -> None:
    items = [{"entity_id": str(i), "path": f"f{i}"} for i in range(MAX_INLINE_ITEMS + 1)]
    with pytest.raises(BadInput, match="split the list"):
        parse_spec({**GOOD, "items": items})


@pytest.mark.parametrize("path", ["a", "a/b/c.jpg", "./a", "././a/b", "dir.with.dots/x", "ümlaut/ß.png", "a b/c+d"])
def test_safe_paths(path: str) -> None:
    key = destination_key("prefix/", path)
    assert key.startswith("prefix/") and ".." not in key.split("/")


@pytest.mark.parametrize("path", ["", "/", "/a", "..", "a/..", "../a", "a/./b", "a/", ".", "x\x00y"])
def test_unsafe_paths(path: str) -> None:
    with pytest.raises(BadInput):
        safe_relative_path(path)


def test_key_length_is_capped() -> None:
    with pytest.raises(BadInput, match="longer"):
        destination_key("p/", "x" * 1100)


def test_batches_are_at_most_1000_and_flag_unsafe_and_colliding_items() -> None:
    entries = [Entry(str(i), f"f{i}") for i in range(2500)]
    entries[10] = Entry("bad", "../escape")
    entries[20] = Entry("dup", "./f21")  # same key as entry 21, in the same batch
    batches = list(plan_batches(entries, "p/"))
    assert [len(b) for b in batches] == [1000, 1000, 500]
    flat = [item for batch in batches for item in batch]
    assert flat[10].dest_key is None and "unsafe path" in flat[10].reason
    assert flat[20].dest_key == "p/f21"
    assert flat[21].dest_key is None and "collides with entity 'dup'" in flat[21].reason
    assert all(item.dest_key.startswith("p/") for item in flat if item.dest_key)


def test_batch_size_limit() -> None:
    with pytest.raises(BadInput):
        list(plan_batches([], "", CHUNK_SIZE + 1))


def test_chunk_numbering_and_part_sizes() -> None:
    by_count = ChunkCutter(max_items=1000)
    assert [by_count.place(None) for _ in range(2001)][::1000] == [0, 1, 2]
    by_bytes = ChunkCutter(max_items=1000, max_bytes=250)
    # small files share a chunk; a file that would overflow it opens the next; a file larger
    # than the budget is a chunk of its own; counting continues from a job's last chunk
    assert [by_bytes.place(s) for s in (100, 100, 100, 400, 10, 240, 20)] == [0, 0, 1, 2, 3, 3, 4]
    resumed = ChunkCutter(max_items=3, max_bytes=10**9, chunk=7, items=2)
    assert [resumed.place(1) for _ in range(4)] == [7, 8, 8, 8]
    assert part_size_for(100 * MiB, 16 * MiB) == 16 * MiB
    grown = part_size_for(1024 * 1024 * MiB, 16 * MiB)  # 1 TiB needs bigger parts
    assert grown % MiB == 0 and -(-1024 * 1024 * MiB // grown) <= 10_000
