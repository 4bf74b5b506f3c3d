"""The durable change log on a real PostgreSQL: kinds, cursor order under concurrent apply
transactions (no reader skips a cursor), pruning."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import psycopg
import pytest

from mountsync.shared.catalog.apply import apply_changes
from mountsync.shared.catalog.change_log import log_bounds, prune_changes, read_changes
from mountsync.shared.config import Settings
from mountsync.shared.events import Kind, ObjectChange, Provider, Source
from tests.helpers import wait_for


def change(key: str, kind: str, seq: str, *, etag: str | None = "e", bucket: str = "bkt",
           version: str | None = None) -> ObjectChange:  # fmt: skip
    removes = kind == "deleted"
    return ObjectChange(Provider.S3, bucket, key, Kind(kind), int(seq), Source.S3_SQS,
                        size=None if removes else 1, etag=None if removes else etag,
                        version=version, sequencer=seq)  # fmt: skip


@pytest.fixture
def conn(settings: Settings, catalog: psycopg.Connection) -> Iterator[psycopg.Connection]:
    with psycopg.connect(settings.database_url) as c:
        yield c


def kinds(catalog: psycopg.Connection) -> list[tuple[str, str]]:
    return [(e.key, e.kind) for e in read_changes(catalog, 0, limit=100)]


def test_kinds_are_the_catalogs_view(conn, add_mount, catalog) -> None:
    add_mount("m", "s3://bkt/", dest_folder="platform/m")
    apply_changes(conn, [change("a.png", "created", "01", etag="v1")])
    apply_changes(conn, [change("a.png", "created", "02", etag="v2")])  # an overwrite
    apply_changes(conn, [change("a.png", "metadata", "03", etag="v2")])  # same content, new metadata
    apply_changes(conn, [change("a.png", "created", "03", etag="v9")])  # duplicate sequencer: stale
    apply_changes(conn, [change("a.png", "deleted", "04")])
    apply_changes(conn, [change("a.png", "deleted", "05")])  # already gone: not news
    apply_changes(conn, [change("a.png", "created", "06", etag="v3")])  # back again
    assert kinds(catalog) == [("a.png", "created"), ("a.png", "updated"), ("a.png", "metadata"),
                              ("a.png", "deleted"), ("a.png", "created")]  # fmt: skip
    first = read_changes(catalog, 0, limit=1)[0].to_json()
    assert first["mount"] == "m" and first["dest_folder"] == "platform/m" and first["etag"] == "v1"
    assert first["sequencer"] == "01" and first["quarantined"] is False and first["event_time"]


def test_a_new_version_with_the_same_bytes_is_updated(conn, add_mount, catalog) -> None:
    add_mount("m", "s3://bkt/")
    apply_changes(conn, [change("a.png", "created", "01", version="v-1")])
    apply_changes(conn, [change("a.png", "created", "02", version="v-2")])
    assert kinds(catalog) == [("a.png", "created"), ("a.png", "updated")]


def test_an_open_apply_holds_back_later_appenders_until_it_commits(settings, conn, add_mount, catalog) -> None:
    """The race the lock prevents: B draws higher cursors while A (lower ones) is uncommitted."""
    add_mount("a", "s3://bkt-a/")
    add_mount("b", "s3://bkt-b/")
    conn.execute("BEGIN")
    apply_changes(conn, [change(f"{i}.png", "created", "01", bucket="bkt-a") for i in range(3)])  # a savepoint
    done = threading.Event()

    def other_writer() -> None:
        with psycopg.connect(settings.database_url) as other:
            apply_changes(other, [change("x.png", "created", "01", bucket="bkt-b")])
        done.set()

    thread = threading.Thread(target=other_writer)
    thread.start()
    wait_for(lambda: catalog.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                     "AND NOT granted").fetchone()[0] == 1,
             what="the second writer to wait for the append lock")  # fmt: skip
    assert not done.is_set()
    assert read_changes(catalog, 0) == []  # nothing visible yet, and nothing above a hole
    conn.execute("COMMIT")
    thread.join(timeout=30)
    entries = read_changes(catalog, 0)
    assert [(e.mount, e.key) for e in entries] == [("a", "0.png"), ("a", "1.png"), ("a", "2.png"), ("b", "x.png")]
    assert [e.cursor for e in entries] == sorted(e.cursor for e in entries)


def test_concurrent_writers_never_make_a_reader_skip(settings, add_mount, catalog) -> None:
    writers, batches = 4, 25
    for w in range(writers):
        add_mount(f"m{w}", f"s3://bkt-{w}/")
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def write(w: int) -> None:
        rng = random.Random(w)
        try:
            with psycopg.connect(settings.database_url) as c:
                for b in range(batches):
                    size = rng.randint(1, 40)
                    apply_changes(c, [change(f"{b}/{i}.png", "created", "01", bucket=f"bkt-{w}") for i in range(size)])
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        with psycopg.connect(settings.database_url, autocommit=True) as c:
            after = 0
            while True:
                final = stop.is_set()  # one more read after the writers finished
                page = read_changes(c, after, limit=500)
                seen.extend(e.cursor for e in page)
                after = page[-1].cursor if page else after
                if final and not page:
                    return

    reader = threading.Thread(target=read)
    reader.start()
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    stop.set()
    reader.join(timeout=60)
    assert not errors
    everything = [r[0] for r in catalog.execute("SELECT cursor FROM change_log ORDER BY cursor")]
    assert len(everything) > writers * batches
    assert seen == everything  # every cursor, once, in order: none skipped while writers overlapped


def test_pruning_moves_the_horizon(conn, add_mount, catalog) -> None:
    add_mount("m", "s3://bkt/")
    apply_changes(conn, [change("old.png", "created", "01")])
    catalog.execute("UPDATE change_log SET applied_at = now() - interval '8 days'")
    apply_changes(conn, [change("new.png", "created", "01")])
    assert prune_changes(catalog, 7 * 86400) == 1
    bounds = log_bounds(catalog)
    assert bounds.pruned_through == 1 and bounds.head == 2
    assert [e.key for e in read_changes(catalog, 0)] == ["new.png"]
    assert prune_changes(catalog, 7 * 86400) == 0
