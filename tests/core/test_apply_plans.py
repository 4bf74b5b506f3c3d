"""The plans PostgreSQL picks for apply's statements, read with ``auto_explain`` from a real apply.

The temp stage tables carry no statistics. Guessing their size, the planner could join a batch to
itself or to the change log's staging in nested loops, quadratic in the batch; apply turns nested
loops off once routing is done (``NO_NESTED_LOOPS``). These tests pin the plans: a mixed batch of
creates, overwrites and deletes on a catalog that already holds rows is applied through
``apply_changes``, and every statement after routing must join by hash or merge. (On PostgreSQL 15
the same batch gets these plans without the setting too: the planner sizes a never-analyzed table
by its pages. The setting is the guarantee; this is the check.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from mountsync.shared.catalog import apply as apply_module
from mountsync.shared.catalog.apply import APPLY_SQL, DROP_SQL, apply_changes
from mountsync.shared.catalog.change_log import APPEND_SQL
from mountsync.shared.config import Settings
from mountsync.shared.events import Kind, ObjectChange, Provider, Source

CATALOG_ROWS = 10_000
BATCH = 2_000

# The statements after routing, by the text apply sends (auto_explain reports it as "Query Text").
AFTER_ROUTING = {"drop": DROP_SQL, "apply": APPLY_SQL, "log": APPEND_SQL}


def change(key: str, kind: Kind, seq: int) -> ObjectChange:
    removes = kind is Kind.DELETED
    return ObjectChange(Provider.S3, "bkt", key, kind, seq, Source.S3_SQS, size=None if removes else seq,
                        etag=None if removes else f"e{seq}", sequencer=f"{seq:012d}")  # fmt: skip


def cataloged(i: int) -> str:
    return f"f{i % 20}/k{i:06d}"


def mixed_batch() -> list[ObjectChange]:
    """700 overwrites and 600 deletes of cataloged keys, 700 creates of new ones."""
    overwrites = [change(cataloged(i), Kind.CREATED, 2) for i in range(0, 700)]
    deletes = [change(cataloged(i), Kind.DELETED, 2) for i in range(700, 1_300)]
    creates = [change(f"f{i % 20}/n{i:06d}", Kind.CREATED, 2) for i in range(BATCH - 1_300)]
    return overwrites + deletes + creates


@pytest.fixture
def explained(settings: Settings, catalog: psycopg.Connection,
              add_mount: Callable[..., Any]) -> Iterator[tuple[psycopg.Connection, list[dict[str, Any]]]]:  # fmt: skip
    """An apply connection whose every statement's plan arrives as a JSON notice (needs a superuser to LOAD)."""
    add_mount("m", "s3://bkt/")
    conn = psycopg.connect(settings.database_url)
    apply_changes(conn, [change(cataloged(i), Kind.CREATED, 1) for i in range(CATALOG_ROWS)])
    plans: list[dict[str, Any]] = []

    def collect(notice: psycopg.errors.Diagnostic) -> None:
        text = notice.message_primary or ""
        if "plan:" in text:
            plans.append(json.loads(text[text.index("{") :]))

    conn.add_notice_handler(collect)
    for setting in ("LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
                    "SET auto_explain.log_level = notice", "SET auto_explain.log_format = json"):  # fmt: skip
        conn.execute(setting)
    conn.commit()
    yield conn, plans
    conn.close()


def node_types(plan: dict[str, Any]) -> Iterator[str]:
    yield plan["Node Type"]
    for child in plan.get("Plans", []):
        yield from node_types(child)


def plans_after_routing(plans: list[dict[str, Any]]) -> dict[str, list[str]]:
    names = {sql: name for name, sql in AFTER_ROUTING.items()}
    return {names[p["Query Text"]]: list(node_types(p["Plan"])) for p in plans if p["Query Text"] in names}


def test_no_statement_after_routing_joins_the_batch_in_nested_loops(
        explained: tuple[psycopg.Connection, list[dict[str, Any]]], catalog: psycopg.Connection) -> None:  # fmt: skip
    conn, plans = explained
    result = apply_changes(conn, mixed_batch())
    kinds = dict(
        catalog.execute("SELECT kind, count(*) FROM change_log WHERE sequencer = '000000000002' GROUP BY kind")
    )
    assert kinds == {"updated": 700, "deleted": 600, "created": 700}
    assert len(result.applied) == BATCH
    found = plans_after_routing(plans)
    assert set(found) == set(AFTER_ROUTING), f"plans seen: {[p['Query Text'][:60] for p in plans]}"
    for name, nodes in found.items():
        assert "Nested Loop" not in nodes, f"{name}: {nodes}"
        assert {"Hash Join", "Merge Join"} & set(nodes), f"{name}: {nodes}"


def test_the_check_can_see_a_nested_loop(explained: tuple[psycopg.Connection, list[dict[str, Any]]],
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """With nested loops left on and hash joins off, the same reading finds them: the check above can fail."""
    monkeypatch.setattr(
        apply_module, "NO_NESTED_LOOPS", "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
    )
    conn, plans = explained
    apply_changes(conn, mixed_batch())
    assert "Nested Loop" in plans_after_routing(plans)["apply"]
