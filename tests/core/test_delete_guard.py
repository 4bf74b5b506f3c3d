"""The mass-delete guard on a real PostgreSQL: a wipe is held (objects stay live, nothing in the feed,
one alert per episode), a restore supersedes held deletes, approving applies them, and the CLI shows
and approves them. The S3 (moto) 1,000-of-1,500 case with a reconcile: tests/s3/test_mass_delete.py.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from mountsync.shared.catalog.apply import apply_changes
from mountsync.shared.catalog.delete_guard import Guard, must_hold, parse_guard
from mountsync.shared.catalog.held import approve, held_count, set_guard
from mountsync.shared.catalog.listing import objects_page
from mountsync.shared.errors import BadInput
from mountsync.shared.events import Kind, ObjectChange, Provider, Source


def change(key: str, kind: Kind, seq: int) -> ObjectChange:
    removes = kind is Kind.DELETED
    return ObjectChange(Provider.S3, "guarded", key, kind, seq, Source.S3_SQS, size=None if removes else 10,
                        etag=None if removes else f"e{seq}", sequencer=f"{seq:08d}")  # fmt: skip


def keys(n: int, start: int = 0) -> list[str]:
    return [f"cam/{i:05d}.jpg" for i in range(start, start + n)]


def apply(conn: psycopg.Connection, changes: list[ObjectChange]) -> Any:
    with conn.transaction():
        return apply_changes(conn, changes)


def live(conn: psycopg.Connection, mount_id: int) -> int:
    return int(conn.execute("SELECT count(*) FROM objects WHERE mount_id = %s AND NOT deleted", (mount_id,))
               .fetchone()[0])  # fmt: skip


def logged_deletes(conn: psycopg.Connection) -> int:
    """Deletes the durable change log (and so the feed, the API and the sinks) has seen."""
    return int(conn.execute("SELECT count(*) FROM change_log WHERE kind = 'deleted'").fetchone()[0])


def mass_alerts(conn: psycopg.Connection, mount_id: int) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT id, status, checks, closed_by FROM alignment_alerts WHERE mount_id = %s "
                        "AND kind = 'mass-delete' ORDER BY id", (mount_id,)).fetchall()  # fmt: skip


@pytest.fixture
def guarded(add_mount: Any, catalog: psycopg.Connection) -> Any:
    mount = add_mount("guarded", "s3://guarded/")
    apply(catalog, [change(k, Kind.CREATED, 10) for k in keys(200)])
    return mount


@pytest.mark.parametrize(
    ("text", "guard"),
    [("30:50", Guard(30, 50)), ("12.5:3", Guard(12.5, 3)), ("0", Guard(0, 0)), ("off", Guard(0, 0)),
     ("40", Guard(40, 50)), (" 100:0 ", Guard(100, 0))],
)  # fmt: skip
def test_parse_guard(text: str, guard: Guard) -> None:
    assert parse_guard(text) == guard


@pytest.mark.parametrize("text", ["", "abc", "30:x", "-1:5", "101:5", "30:-1", "nan:5", "30:50:1", "inf"])
def test_parse_guard_refuses(text: str) -> None:
    with pytest.raises(BadInput, match="delete-guard"):
        parse_guard(text)


@pytest.mark.parametrize(
    ("n", "live_", "recent", "guard", "holding", "held"),
    [
        (100, 200, 0, Guard(), False, True),  # 50 % and >= 50
        (49, 100, 0, Guard(), False, False),  # 49 % but under the minimum of 50
        (50, 1000, 0, Guard(), False, False),  # 5 %
        (40, 160, 30, Guard(), False, True),  # the window counts: 70 of 190
        (1, 1000, 0, Guard(), True, True),  # an episode holds every later delete
        (1000, 1000, 0, Guard(0, 0), True, False),  # disabled
        (0, 10, 0, Guard(), True, False),
    ],
)  # fmt: skip
def test_must_hold(n: int, live_: int, recent: int, guard: Guard, holding: bool, held: bool) -> None:
    assert must_hold(n, live_, recent, guard, holding) is held


def test_a_wipe_is_held_until_approved_and_never_reaches_the_feed(catalog, guarded) -> None:
    few = apply(catalog, [change(k, Kind.DELETED, 20) for k in keys(10)])  # 5 %: applied
    assert len(few.applied) == 10 and not few.held and logged_deletes(catalog) == 10
    wipe = apply(catalog, [change(k, Kind.DELETED, 20) for k in keys(120, 10)])  # 63 % of 190
    assert wipe.held == {guarded.id: 120} and not wipe.applied and len(wipe.alerts) == 1
    assert live(catalog, guarded.id) == 190 and held_count(catalog, guarded.id) == 120
    assert logged_deletes(catalog) == 10  # nothing for the held ones
    page = json.loads(objects_page(catalog, guarded, "", "", 1000).objects_json)  # what GET /objects serves
    assert len(page) == 190 and sum(row["held"] for row in page) == 120
    later = apply(catalog, [change(k, Kind.DELETED, 21) for k in keys(2, 150)])  # same episode
    assert later.held == {guarded.id: 2} and not later.alerts
    [(alert_id, status, checks, _)] = mass_alerts(catalog, guarded.id)
    assert (status, checks) == ("open", 2)
    again = apply(catalog, [change(k, Kind.DELETED, 20) for k in keys(120, 10)])  # redelivery
    assert not again.applied and held_count(catalog, guarded.id) == 122
    taken, _ = approve(catalog, guarded)
    assert taken == 122 and held_count(catalog, guarded.id) == 0
    assert live(catalog, guarded.id) == 200 - 10 - 122 and logged_deletes(catalog) == 132
    assert mass_alerts(catalog, guarded.id) == [(alert_id, "resolved", 3, "approved")]  # 3 batches held


def test_a_restore_supersedes_held_deletes_by_the_ordering_rule(catalog, guarded) -> None:
    apply(catalog, [change(k, Kind.DELETED, 20) for k in keys(100)])
    assert held_count(catalog, guarded.id) == 100
    # An overwrite between the object (10) and the held delete (20): applied, but the delete stays.
    older = apply(catalog, [change(k, Kind.CREATED, 15) for k in keys(100)])
    assert len(older.applied) == 100 and held_count(catalog, guarded.id) == 100
    restored = apply(catalog, [change(k, Kind.CREATED, 30) for k in keys(99)])  # versioning restore
    assert len(restored.applied) == 99 and held_count(catalog, guarded.id) == 1
    assert mass_alerts(catalog, guarded.id)[0][1] == "open"
    apply(catalog, [change(k, Kind.CREATED, 30) for k in keys(1, 99)])
    assert held_count(catalog, guarded.id) == 0 and live(catalog, guarded.id) == 200
    assert mass_alerts(catalog, guarded.id)[0][1:] == ("resolved", 1, "restored")
    assert logged_deletes(catalog) == 0


def test_a_disabled_guard_applies_every_delete(catalog, guarded) -> None:
    set_guard(catalog, guarded.id, parse_guard("0"))
    result = apply(catalog, [change(k, Kind.DELETED, 20) for k in keys(200)])
    assert len(result.applied) == 200 and not result.held and live(catalog, guarded.id) == 0
    assert not mass_alerts(catalog, guarded.id)


def test_cli_lists_marks_and_approves_held_deletes(cli, catalog, guarded) -> None:
    apply(catalog, [change(k, Kind.DELETED, 20) for k in keys(80)])
    listed = json.loads(cli("deletes", "list", "guarded", "--json", check=True).stdout)
    assert listed["held"] == 80 and listed["guard"] == "30:50" and listed["alert"]
    assert [d["key"] for d in listed["deletes"]] == keys(80)
    rows = json.loads(cli("ls", "guarded", "--json", check=True).stdout)
    assert len(rows) == 200 and sum(r["held"] for r in rows) == 80
    approved = json.loads(cli("deletes", "approve", "guarded", "--json", check=True).stdout)
    assert approved == {"mount": "guarded", "approved": 80}
    assert live(catalog, guarded.id) == 120
    assert json.loads(cli("deletes", "list", "guarded", "--json", check=True).stdout)["held"] == 0
    assert json.loads(cli("mount", "set", "guarded", "--delete-guard", "50:10", "--json", check=True).stdout) == {
        "mount": "guarded", "delete_guard": "50:10"}  # fmt: skip
    for args in (["mount", "set", "guarded", "--delete-guard", "lots"], ["deletes", "list", "nope"],
                 ["deletes", "approve", "nope"]):  # fmt: skip
        bad = cli(*args)
        assert bad.returncode == 2 and bad.stdout == "" and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
