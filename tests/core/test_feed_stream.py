"""The Redis feed stream, published from the change log by one script per page: every entry
arrives once, in cursor order, with the same fields and exact text as the log."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis as redis_lib

from mountsync.shared.catalog.apply import apply_changes
from mountsync.shared.catalog.change_log import drain_feed, read_changes
from mountsync.shared.config import Settings
from mountsync.shared.events import Kind, ObjectChange, Provider, Source

KEYS = ["plain/1.png", 'quote"s/back\\slash.png', "ünïcødé/日本語 😀.png", "space and,comma/{x}.jpg", "top.png"]


@pytest.fixture
def stream(settings: Settings, redis_client: redis_lib.Redis) -> Iterator[str]:
    key = f"{settings.redis_prefix}feedtest{uuid.uuid4().hex[:6]}"
    yield key
    redis_client.delete(key)


def test_entries_reach_the_stream_with_their_exact_text(settings, add_mount, catalog, redis_client, stream) -> None:
    add_mount("m", "s3://bkt/", dest_folder="dest/ü")
    batch = [ObjectChange(Provider.S3, "bkt", key, Kind.CREATED, 1, Source.S3_SQS, size=None if i == 4 else i,
                          etag=f"e{i}", sequencer=f"{i:04d}") for i, key in enumerate(KEYS)]  # fmt: skip
    with psycopg.connect(settings.database_url) as conn:
        apply_changes(conn, batch)
        conn.commit()
        apply_changes(conn, [ObjectChange(Provider.S3, "bkt", KEYS[0], Kind.DELETED, 2, Source.S3_SQS,
                                          sequencer="0009")])  # fmt: skip
        conn.commit()
        assert drain_feed(conn, redis_client, stream, 1000) == len(KEYS) + 1
        assert drain_feed(conn, redis_client, stream, 1000) == 0  # published once
    logged = read_changes(catalog, 0, limit=100)
    published = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in redis_client.xrange(stream)]
    assert [p["cursor"] for p in published] == [str(e.cursor) for e in logged]
    assert [p["key"] for p in published] == [e.key for e in logged]
    assert published[-1] | {"cursor": ""} == {"cursor": "", "mount": "m", "dest_folder": "dest/ü",
        "folder": "plain", "key": KEYS[0], "kind": "deleted", "size": "", "etag": "", "version": "",
        "sequencer": "0009"}  # fmt: skip
    by_key = {p["key"]: p for p in published[:-1]}
    assert by_key[KEYS[2]]["folder"] == "ünïcødé" and by_key[KEYS[2]]["size"] == "2"
    assert by_key["top.png"]["size"] == "" and by_key["top.png"]["folder"] == ""


def test_a_page_larger_than_one_script_call_is_published_whole(settings, add_mount, catalog, redis_client,
                                                                stream) -> None:  # fmt: skip
    add_mount("m", "s3://bkt/")
    n = 12_000  # more than two pages of 5,000
    batch = [ObjectChange(Provider.S3, "bkt", f"f/{i:06d}.png", Kind.CREATED, 1, Source.S3_SQS, size=i,
                          etag="e", sequencer=f"{i:06d}") for i in range(n)]  # fmt: skip
    with psycopg.connect(settings.database_url) as conn:
        apply_changes(conn, batch)
        conn.commit()
        assert drain_feed(conn, redis_client, stream, 100_000) == n
    keys = [fields[b"key"].decode() for _, fields in redis_client.xrange(stream)]
    assert keys == [c.key for c in batch]


def test_the_stream_is_capped_near_maxlen_and_keeps_the_newest(settings, add_mount, catalog, redis_client,
                                                               stream) -> None:  # fmt: skip
    add_mount("m", "s3://bkt/")
    n, maxlen = 7_000, 500  # two pages, each capped once after its XADDs
    batch = [ObjectChange(Provider.S3, "bkt", f"cap/{i:06d}.png", Kind.CREATED, 1, Source.S3_SQS, size=i,
                          sequencer=f"{i:06d}") for i in range(n)]  # fmt: skip
    with psycopg.connect(settings.database_url) as conn:
        apply_changes(conn, batch)
        conn.commit()
        assert drain_feed(conn, redis_client, stream, maxlen) == n
    node = int(redis_client.config_get("stream-node-max-entries")["stream-node-max-entries"])
    # "MAXLEN ~" trims whole nodes only: at least maxlen entries stay, less than a node more.
    assert maxlen <= redis_client.xlen(stream) < maxlen + node
    keys = [fields[b"key"].decode() for _, fields in redis_client.xrange(stream)]
    assert keys == [c.key for c in batch[-len(keys) :]]
