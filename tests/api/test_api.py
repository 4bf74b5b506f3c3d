"""Every ``/api/v1`` route in process: authentication, mounts, objects, the change feed, alerts,
datasets, migrations and bad input (404, 400/422 naming the field, never 500)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from mountsync.shared.catalog.apply import apply_changes
from mountsync.shared.catalog.change_log import prune_changes
from mountsync.shared.config import Settings
from mountsync.shared.events import Kind, ObjectChange, Provider, Source


def change(key: str, kind: str, seq: str, etag: str = "e", bucket: str = "bkt") -> ObjectChange:
    removes = kind == "deleted"
    return ObjectChange(Provider.S3, bucket, key, Kind(kind), int(seq), Source.S3_SQS,
                        size=None if removes else 3, etag=None if removes else etag, sequencer=seq)  # fmt: skip


@pytest.fixture
def applier(settings: Settings, catalog: psycopg.Connection):
    with psycopg.connect(settings.database_url) as conn:
        yield lambda changes: apply_changes(conn, changes)


def test_the_openapi_document_and_docs_need_no_token(api) -> None:
    doc = api.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "/api/v1/changes" in doc["paths"]
    assert "/api/v1/mounts/{mount}/datasets/{folder}/frames" in doc["paths"]
    assert api.get("/api/v1/docs").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/mounts", "/api/v1/changes", "/api/v1/alerts", "/api/v1/migrations"])
def test_every_route_needs_a_valid_token(api, path) -> None:
    assert api.get(path).status_code == 401
    refused = api.get(path, headers={"Authorization": "Bearer mst_0123456789abcdef_" + "x" * 43})
    assert refused.status_code == 401 and refused.json() == {"error": "invalid or revoked token"}
    assert api.get(path, headers={"Authorization": "Basic dTpw"}).status_code == 401


def test_a_read_token_cannot_write_and_a_revoked_token_is_refused(api, add_mount, catalog, read_auth) -> None:
    add_mount("m", "s3://bkt/")
    forbidden = api.post("/api/v1/mounts/m/reindex", headers=read_auth)
    assert forbidden.status_code == 403 and "write" in forbidden.json()["error"]
    assert api.post("/api/v1/alerts/1/ack", headers=read_auth).status_code == 403
    assert api.post("/api/v1/mounts/m/datasets/x/pin", headers=read_auth).status_code == 403
    assert api.get("/api/v1/mounts", headers=read_auth).status_code == 200
    catalog.execute("DELETE FROM api_tokens")
    assert api.get("/api/v1/mounts", headers=read_auth).status_code == 401


def test_mounts_show_counts_and_lag(api, add_mount, applier, read_auth) -> None:
    add_mount("m", "s3://bkt/", dest_folder="platform/m")
    applier([change("a/1.png", "created", "1"), change("a/2.png", "created", "1")])
    mounts = api.get("/api/v1/mounts", headers=read_auth).json()["mounts"]
    assert [(m["name"], m["dest_folder"], m["objects"], m["bytes"]) for m in mounts] == [("m", "platform/m", 2, 6)]
    one = api.get("/api/v1/mounts/m", headers=read_auth).json()
    assert one["last_cursor"] == 2 and one["last_applied_at"] and one["last_event_at"]
    assert one["last_reconcile"] is None and isinstance(one["changes_queued"], int)
    missing = api.get("/api/v1/mounts/nope", headers=read_auth)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]


def test_objects_come_in_pages_with_an_opaque_cursor(api, add_mount, applier, read_auth) -> None:
    add_mount("m", "s3://bkt/")
    applier([change(f"a/{i:02d}.png", "created", "1") for i in range(25)] + [change("b/x.png", "created", "1")])
    keys, cursor = [], ""
    while True:
        page = api.get("/api/v1/mounts/m/objects", params={"prefix": "a/", "limit": 10, "cursor": cursor},
                       headers=read_auth).json()  # fmt: skip
        keys += [o["key"] for o in page["objects"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert keys == [f"a/{i:02d}.png" for i in range(25)]
    assert page["changes_cursor"] == 26  # the log head: 26 objects were created
    bad = api.get("/api/v1/mounts/m/objects", params={"cursor": "%%%"}, headers=read_auth)
    assert bad.status_code == 400 and "cursor" in bad.json()["error"]
    for limit in (0, 10_001, "x"):
        wrong = api.get("/api/v1/mounts/m/objects", params={"limit": limit}, headers=read_auth)
        assert wrong.status_code == 422 and "query.limit" in wrong.json()["error"]


def test_the_feed_gives_created_updated_deleted_in_cursor_order(api, add_mount, applier, read_auth) -> None:
    add_mount("m", "s3://bkt/", dest_folder="dest")
    add_mount("other", "s3://bkt2/")
    applier([change("f.png", "created", "1", etag="v1")])
    applier([change("f.png", "created", "2", etag="v2"), change("o.png", "created", "1", bucket="bkt2")])
    applier([change("f.png", "deleted", "3")])
    feed = api.get("/api/v1/changes", params={"mount": "m"}, headers=read_auth).json()
    assert [(c["key"], c["kind"]) for c in feed["changes"]] == [("f.png", "created"), ("f.png", "updated"),
                                                                 ("f.png", "deleted")]  # fmt: skip
    first = feed["changes"][0]
    assert set(first) == {"cursor", "mount", "dest_folder", "key", "kind", "size", "etag", "version", "sequencer",
                          "event_time", "applied_at", "quarantined"}  # fmt: skip
    assert first["dest_folder"] == "dest" and first["quarantined"] is False
    page = api.get("/api/v1/changes", params={"after": 0, "limit": 2}, headers=read_auth).json()
    rest = api.get("/api/v1/changes", params={"after": page["next_cursor"]}, headers=read_auth).json()
    cursors = [c["cursor"] for c in page["changes"] + rest["changes"]]
    assert cursors == sorted(cursors) and len(cursors) == 4
    assert api.get("/api/v1/changes", params={"mount": "nope"}, headers=read_auth).status_code == 404
    for bad in ({"after": -1}, {"after": "abc"}, {"limit": 0}, {"wait": 61}):
        answer = api.get("/api/v1/changes", params=bad, headers=read_auth)
        assert answer.status_code == 422 and f"query.{next(iter(bad))}" in answer.json()["error"]
    beyond = api.get("/api/v1/changes", params={"after": 999}, headers=read_auth)
    assert beyond.status_code == 400 and "beyond" in beyond.json()["error"]


def test_a_long_poll_returns_as_soon_as_a_change_is_applied(api, add_mount, applier, read_auth) -> None:
    add_mount("m", "s3://bkt/")
    started = threading.Event()

    def later() -> None:
        started.wait(10)
        time.sleep(0.5)  # the request must be waiting by then: this delay is the thing under test
        applier([change("late.png", "created", "1")])

    thread = threading.Thread(target=later)
    thread.start()
    started.set()
    answer = api.get("/api/v1/changes", params={"after": 0, "wait": 30}, headers=read_auth).json()
    thread.join()
    assert [c["key"] for c in answer["changes"]] == ["late.png"]
    empty = api.get("/api/v1/changes", params={"after": answer["next_cursor"], "wait": 0.3}, headers=read_auth)
    assert empty.json() == {"changes": [], "next_cursor": answer["next_cursor"]}


def test_a_cursor_past_the_retention_is_410_with_where_to_continue(api, add_mount, applier, catalog,
                                                                    read_auth) -> None:  # fmt: skip
    add_mount("m", "s3://bkt/")
    applier([change("old.png", "created", "1")])
    catalog.execute("UPDATE change_log SET applied_at = now() - interval '8 days'")
    applier([change("new.png", "created", "1")])
    prune_changes(catalog, 7 * 86400)
    gone = api.get("/api/v1/changes", params={"after": 0, "mount": "m"}, headers=read_auth)
    assert gone.status_code == 410
    body = gone.json()
    assert body["continue_from"] == 2 and body["relist"] == "/api/v1/mounts/m/objects" and "re-list" in body["error"]
    assert api.get("/api/v1/changes", params={"after": 1}, headers=read_auth).json()["changes"][0]["key"] == "new.png"


def test_alerts_and_datasets_answer_404_and_400_for_bad_names(api, add_mount, applier, read_auth,
                                                              write_auth) -> None:  # fmt: skip
    add_mount("m", "s3://bkt/")
    applier([change("seq/1.png", "created", "1"), change("seq/2.png", "created", "1")])
    assert api.get("/api/v1/alerts", headers=read_auth).json() == {"alerts": [], "next_cursor": None}
    assert api.get("/api/v1/alerts", params={"status": "bogus"}, headers=read_auth).status_code == 400
    assert api.get("/api/v1/alerts", params={"mount": "nope"}, headers=read_auth).status_code == 404
    assert api.post("/api/v1/alerts/12345/ack", headers=write_auth).status_code == 404
    assert api.post("/api/v1/alerts/x/ack", headers=write_auth).status_code == 422
    assert api.get("/api/v1/mounts/nope/datasets", headers=read_auth).status_code == 404
    assert api.get("/api/v1/mounts/m/datasets/none/frames", headers=read_auth).status_code == 404


def test_reindex_is_queued_by_a_write_token(api, add_mount, catalog, write_auth) -> None:
    add_mount("m", "s3://bkt/")
    queued = api.post("/api/v1/mounts/m/reindex", json={"prefix": "a"}, headers=write_auth)
    assert queued.status_code == 202 and queued.json()["state"] == "queued"
    assert catalog.execute("SELECT prefix, trigger FROM reindex_runs").fetchall() == [("a", "api")]
    bad = api.post("/api/v1/mounts/m/reindex", json={"prefix": "../x"}, headers=write_auth)
    assert bad.status_code == 400 and "prefix" in bad.json()["error"]
    assert api.post("/api/v1/mounts/nope/reindex", headers=write_auth).status_code == 404


@pytest.mark.parametrize(("body", "says"), [
    (b"[" * 100_000 + b"]" * 100_000, "body: JSON nested more than"),
    (b'{"source": "\xff"}', "body: not UTF-8 (byte 12)"),
])  # fmt: skip
def test_a_body_the_parser_gives_up_on_is_a_400_that_says_why(api, write_auth, body, says) -> None:
    answer = api.post("/api/v1/migrations", content=body, headers={**write_auth, "Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"].startswith(says)


@pytest.mark.parametrize(("path", "params", "says"), [
    ("/api/v1/mounts/a%00b", {}, "path.mount: contains a NUL byte"),
    ("/api/v1/mounts/m/objects", {"prefix": "a\x00"}, "query.prefix: contains a NUL byte"),
    ("/api/v1/changes", {"mount": "\x00"}, "query.mount: contains a NUL byte"),
    ("/api/v1/mounts/m/datasets/a%00/frames", {}, "path.folder: contains a NUL byte"),
])  # fmt: skip
def test_a_nul_byte_in_a_name_is_a_400_that_names_it(api, add_mount, read_auth, path, params, says) -> None:
    # Found by schemathesis: PostgreSQL text holds no NUL, and the driver's refusal was a 500.
    add_mount("m", "s3://bkt/")
    answer = api.get(path, params=params, headers=read_auth)
    assert answer.status_code == 400 and answer.json()["error"].startswith(says), answer.text


@pytest.mark.parametrize(("path", "body", "says"), [
    ("/api/v1/mounts/m/reindex", {"prefix": "a\x00b"}, "body.prefix: contains a NUL byte"),
    ("/api/v1/migrations", {"source": "file:///src", "destination": "s3://dst/",
                            "items": [{"entity_id": "1", "path": "a"}, {"entity_id": "2", "path": "b\x00"}]},
     "body.items[1].path: contains a NUL byte"),
    ("/api/v1/migrations", {"source": "file:///src", "options": {"a\x00": 1}}, "body.options (a key): contains"),
])  # fmt: skip
def test_a_nul_byte_inside_a_body_is_a_400_that_names_it(api, add_mount, write_auth, path, body, says) -> None:
    add_mount("m", "s3://bkt/")
    answer = api.post(path, json=body, headers=write_auth)
    assert answer.status_code == 400 and answer.json()["error"].startswith(says), answer.text


def test_an_escaped_backslash_before_u0000_is_not_a_nul(api, add_mount, write_auth) -> None:
    add_mount("m", "s3://bkt/")
    answer = api.post("/api/v1/mounts/m/reindex", json={"prefix": "a\\u0000b"}, headers=write_auth)
    assert answer.status_code == 202, answer.text  # a backslash, then "u0000": a legal folder name
