"""The one write path on a real PostgreSQL: ordering, idempotency, tombstones, folders, drops, feed."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from mountsync.shared.catalog.apply import apply_changes, drain_feed, fingerprint_hash
from mountsync.shared.config import Settings
from mountsync.shared.events import Kind, ObjectChange, Provider, Source


def s3(
    key: str,
    kind: str,
    seq: str = "",
    ns: int = 1,
    size: int | None = 1,
    etag: str | None = "e",
    bucket: str = "bkt",
) -> ObjectChange:
    removes = kind in ("deleted", "archived")
    return ObjectChange(
        Provider.S3,
        bucket,
        key,
        Kind(kind),
        ns,
        Source.S3_SQS,
        size=None if removes else size,
        etag=None if removes else etag,
        sequencer=seq,
    )


@pytest.fixture
def apply(settings: Settings, catalog: psycopg.Connection) -> Callable[[list[ObjectChange]], Any]:
    conn = psycopg.connect(settings.database_url)

    def run(changes: list[ObjectChange]) -> Any:
        return apply_changes(conn, changes)

    yield run
    conn.close()


def live(catalog: psycopg.Connection) -> dict[str, tuple[int | None, str | None]]:
    rows = catalog.execute("SELECT key, size, etag FROM objects WHERE NOT deleted ORDER BY key").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def test_out_of_order_events_converge_to_the_newest(apply, add_mount, catalog) -> None:
    add_mount("m", "s3://bkt/")
    apply([s3("k", "created", "0003", etag="v3")])
    result = apply([s3("k", "created", "0001", etag="v1"), s3("k", "created", "0002", etag="v2")])
    assert result.applied == [] and result.stale == 1
    assert live(catalog) == {"k": (1, "v3")}


def test_duplicates_change_nothing_the_second_time(apply, add_mount, catalog) -> None:
    add_mount("m", "s3://bkt/")
    batch = [s3(f"a/{i}.jpg", "created", f"{i:04d}") for i in range(50)]
    first = apply(batch)
    again = apply(list(reversed(batch)) + batch)
    assert len(first.applied) == 50 and again.applied == [] and again.stale == 50
    assert catalog.execute("SELECT count(*) FROM change_log").fetchone()[0] == 50


def test_create_after_delete_does_not_resurrect(apply, add_mount, catalog) -> None:
    add_mount("m", "s3://bkt/")
    apply([s3("k", "created", "01")])
    apply([s3("k", "deleted", "03")])
    apply([s3("k", "created", "02")])  # late, older create
    assert live(catalog) == {}
    tomb = catalog.execute("SELECT deleted, seq FROM objects WHERE key = 'k'").fetchone()
    assert tomb == (True, "03")
    apply([s3("k", "created", "04", etag="new")])  # a genuinely newer create does come back
    assert live(catalog) == {"k": (1, "new")}


def test_without_sequencers_event_time_orders(apply, add_mount, catalog) -> None:
    add_mount("m", "s3://bkt/")
    apply([s3("k", "created", ns=10, etag="late")])
    apply([s3("k", "created", ns=5, etag="early")])
    assert live(catalog) == {"k": (1, "late")}
    apply([s3("k", "deleted", ns=10)])  # same time: a duplicate, not applied
    assert live(catalog) == {"k": (1, "late")}


def test_random_shuffles_and_duplicates_converge(apply, add_mount, catalog) -> None:
    add_mount("m", "s3://bkt/")
    rng = random.Random(7)
    history: list[ObjectChange] = []
    truth: dict[str, tuple[int, str]] = {}
    for step in range(600):
        key = f"f{rng.randrange(4)}/{rng.randrange(30)}.jpg"
        seq = f"{step:06X}"
        if rng.random() < 0.3:
            history.append(s3(key, "deleted", seq))
            truth.pop(key, None)
        else:
            size, etag = rng.randrange(1, 999), f"e{step}"
            history.append(s3(key, "created", seq, size=size, etag=etag))
            truth[key] = (size, etag)
    delivered = history + rng.sample(history, 200)
    rng.shuffle(delivered)
    for start in range(0, len(delivered), 37):
        apply(delivered[start : start + 37])
    assert live(catalog) == truth
    folders = dict(catalog.execute("SELECT path, live_objects FROM folders").fetchall())
    expected: dict[str, int] = {}
    for key in truth:
        expected[key.rsplit("/", 1)[0]] = expected.get(key.rsplit("/", 1)[0], 0) + 1
    assert {p: n for p, n in folders.items() if n} == expected
    for path, fp in catalog.execute("SELECT path, fingerprint FROM folders").fetchall():
        want = 0
        for key, (size, etag) in truth.items():
            if key.rsplit("/", 1)[0] == path:
                want ^= fingerprint_hash(key, size, etag)
        assert fp == want, path


def test_routing_to_mounts_and_unmounted_drops(apply, add_mount, catalog) -> None:
    add_mount("raw", "s3://bkt/raw/")
    add_mount("all", "s3://bkt/")
    result = apply([s3("raw/1.jpg", "created", "1"), s3("x.jpg", "created", "1", bucket="other")])
    assert len(result.applied) == 2 and result.dropped == 1  # raw/1.jpg lands in both mounts
    drops = catalog.execute("SELECT reason, bucket, count, last_key FROM drops").fetchall()
    assert drops == [("unmounted", "other", 1, "x.jpg")]


def test_feed_gets_every_applied_change_once(apply, add_mount, catalog, settings, redis_client) -> None:
    add_mount("m", "s3://bkt/")
    apply([s3("a.jpg", "created", "1"), s3("b.jpg", "created", "1")])
    apply([s3("a.jpg", "deleted", "2"), s3("b.jpg", "created", "1")])
    stream = f"{settings.redis_prefix}mountsync:feed"
    assert drain_feed(catalog, redis_client, stream, 1000) == 3
    assert drain_feed(catalog, redis_client, stream, 1000) == 0
    entries = [e for _, e in redis_client.xrange(stream)]
    assert [(e[b"key"], e[b"kind"]) for e in entries] == [
        (b"a.jpg", b"created"),
        (b"b.jpg", b"created"),
        (b"a.jpg", b"deleted"),
    ]
    assert entries[0][b"mount"] == b"m" and entries[0][b"sequencer"] == b"1"


def test_newer_observation_of_same_content_is_not_news(apply, add_mount, catalog) -> None:
    add_mount("m", "s3://bkt/")
    apply([s3("k", "created", ns=10, etag="same")])
    again = apply([s3("k", "created", ns=20, etag="same")])  # e.g. a reindex seeing it later
    assert again.applied == [] and again.stale == 1
    assert catalog.execute("SELECT count(*) FROM change_log").fetchone()[0] == 1
    # ...but the ordering state moved on: an event older than that observation is now stale.
    apply([s3("k", "deleted", ns=15)])
    assert live(catalog) == {"k": (1, "same")}


def test_removing_a_mount_deletes_its_objects_and_keeps_the_others(apply, add_mount, catalog) -> None:
    from mountsync.shared.catalog.mounts import Mounts

    gone, kept = add_mount("gone", "s3://bkt/a/"), add_mount("kept", "s3://bkt/b/")
    apply([s3("a/1.jpg", "created", "01"), s3("b/1.jpg", "created", "01")])
    folders_of_gone = "SELECT count(*) FROM folders WHERE mount_id = %s"
    assert catalog.execute(folders_of_gone, (gone.id,)).fetchone() == (1,)
    Mounts(catalog).remove("gone")
    rows = catalog.execute("SELECT mount_id, key FROM objects ORDER BY key").fetchall()
    assert rows == [(kept.id, "b/1.jpg")]
    assert catalog.execute(folders_of_gone, (gone.id,)).fetchone() == (0,)


def test_a_removal_during_an_apply_leaves_no_orphaned_objects(settings, add_mount, catalog) -> None:
    """``objects`` has no foreign key to ``mounts``: the mount's apply lock orders the two."""
    import threading

    from mountsync.shared.catalog.mounts import Mounts
    from tests.helpers import wait_for

    mount = add_mount("racing", "s3://bkt/")
    applier = psycopg.connect(settings.database_url)
    remover = psycopg.connect(settings.database_url, autocommit=True)
    removal = threading.Thread(target=Mounts(remover).remove, args=("racing",))
    try:
        with applier.transaction():  # the apply's transaction stays open: it holds the mount's lock
            apply_changes(applier, [s3(f"k{i}.jpg", "created", "01") for i in range(50)])
            removal.start()
            wait_for(
                lambda: catalog.execute(
                    "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = %s", (mount.id,)
                ).fetchone(),
                timeout=10,
                what="the removal to wait for the apply's mount lock",
            )
        # The apply committed; the removal goes on.
        removal.join(timeout=10)
        assert not removal.is_alive()
        orphans = catalog.execute("SELECT count(*) FROM objects WHERE mount_id = %s", (mount.id,)).fetchone()
        assert orphans == (0,)
        # An apply after the removal routes nothing to it: the bucket is unmounted now.
        result = apply_changes(applier, [s3("late.jpg", "created", "02")])
        assert (result.applied, result.dropped) == ([], 1)
    finally:
        applier.close()
        remover.close()


def test_a_fast_growing_catalog_gets_planner_statistics_for_what_apply_joins_on(settings: Settings) -> None:
    """A fresh catalog past 2x what the planner last saw is analyzed by the next batch: the row
    count and the join columns, not every column (autovacuum analyzes the rest later)."""
    import uuid

    from mountsync.shared.catalog import db as catalog_db
    from mountsync.shared.catalog.mounts import Mounts

    url = settings.database_url.rsplit("/", 1)[0] + f"/mountsync_test_stats_{uuid.uuid4().hex[:8]}"
    catalog_db.upgrade(url)
    try:
        with psycopg.connect(url) as conn:
            Mounts(conn).add("m", "s3://bkt/")
            conn.commit()
            apply_changes(conn, [s3(f"f{i % 7}/{i:05d}.png", "created", f"{i:05d}") for i in range(3000)])
            conn.commit()
            conn.execute("SELECT pg_stat_force_next_flush()")  # the row count the check reads
            conn.commit()
            apply_changes(conn, [s3("f0/last.png", "created", "99999")])
            conn.commit()
            reltuples = conn.execute("SELECT reltuples FROM pg_class WHERE oid = 'objects'::regclass").fetchone()
            analyzed = conn.execute("SELECT attname FROM pg_stats WHERE tablename = 'objects'").fetchall()
        assert reltuples is not None and reltuples[0] >= 3000
        assert sorted(name for (name,) in analyzed) == ["folder", "key", "mount_id"]
    finally:
        catalog_db.drop_database(url)
