"""Convergence property: whatever happens to the events, a reconcile leaves catalog == bucket.

Random sequences of put, overwrite, copy, delete and rename run on a bucket model of each
provider; the provider's own notification payloads for them go through the real normalizers and
are delivered shuffled, duplicated and with some dropped, in random batches, through the worker's
apply path into the real catalog (PostgreSQL). Then the scheduled reconcile (``run_reindex``)
runs against the model's listing. Properties:

1. without drops, the events alone bring the catalog to the bucket (ordering + idempotency);
2. after the reconcile the catalog equals the bucket, and the reconcile reports exactly the
   differences the lost events left (created / updated / deleted), nothing else;
3. the lost events arriving late afterwards (and any duplicates) change nothing.

Compared per key: (size, etag), and the version too when no event was lost (a reindex compares
size and etag only, so an overwrite with identical content whose event was lost keeps the old
GCS generation; see deploy/RELIABILITY.md).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import redis as redis_lib
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from mountsync.shared.catalog.db import open_pool
from mountsync.shared.catalog.mounts import Mount, Mounts
from mountsync.shared.clock import SystemClock
from mountsync.shared.config import Settings
from mountsync.shared.events import Provider, RawMessage
from mountsync.shared.queues import make_client
from mountsync.workers.context import WorkerContext
from mountsync.workers.reindex import run_reindex
from mountsync.workers.service import apply_batch
from tests.reliability.bucket_model import NORMALIZERS, BucketModel, ModelStorage

EXAMPLES = int(os.environ.get("MOUNTSYNC_CONVERGENCE_EXAMPLES", "60"))
PROPERTY = hsettings(
    max_examples=EXAMPLES, deadline=timedelta(seconds=20), derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip
KEYS = ["a.bin", "b.bin", "d1/a.bin", "d1/b.bin", "d1/d2/c.bin", "d3/e f+g.bin"]
CONTENTS = [b"", b"a", b"bb", b"ccc", b"a" * 10]
URLS = {Provider.S3: "s3://{}/", Provider.GCS: "gs://{}/", Provider.AZURE: "az://{}/",
        Provider.FS: "file:///{}"}  # fmt: skip

key = st.sampled_from(KEYS)
operation = st.one_of(
    st.tuples(st.just("put"), key, st.sampled_from(CONTENTS)),
    st.tuples(st.just("copy"), key, key),
    st.tuples(st.just("delete"), key),
    st.tuples(st.just("rename"), key, key),
)


@pytest.fixture(scope="module")
def ctx(settings: Settings) -> Iterator[WorkerContext]:
    """The worker's context, in this process: the session catalog, a Redis prefix of its own."""
    own = settings.with_(redis_prefix=f"{settings.redis_prefix}conv:")
    pool = open_pool(own.database_url, min_size=1, max_size=2, name="convergence")
    context = WorkerContext(own, pool, redis_lib.Redis.from_url(own.redis_url), make_client(own),
                            SystemClock())  # fmt: skip
    yield context
    context.close()


def new_mount(ctx: WorkerContext, provider: Provider) -> tuple[Mount, BucketModel]:
    tag = uuid.uuid4().hex[:10]
    bucket = f"conv/{tag}" if provider is Provider.FS else f"conv{tag}"
    with ctx.pool.connection() as conn:
        mount = Mounts(conn).add(f"conv-{tag}", URLS[provider].format(bucket))
    start = time.time_ns() - 86_400 * 10**9  # every event happened before the reconcile
    return mount, BucketModel(provider, mount.bucket, start)


def run_operations(model: BucketModel, operations: list[tuple[Any, ...]]) -> list[RawMessage]:
    messages: list[RawMessage] = []
    for name, *args in operations:
        messages.extend(getattr(model, name)(*args))
    return messages


def catalog(ctx: WorkerContext, mount: Mount, *, versions: bool) -> dict[str, tuple[Any, ...]]:
    with ctx.pool.connection() as conn:
        rows = conn.execute("SELECT key, size, etag, version FROM objects WHERE mount_id = %s "
                            "AND NOT deleted", (mount.id,)).fetchall()  # fmt: skip
    return {r[0]: (r[1], r[2], r[3]) if versions else (r[1], r[2]) for r in rows}


def bucket(model: BucketModel, *, versions: bool) -> dict[str, tuple[Any, ...]]:
    if not versions:
        return model.state()
    gcs = model.provider is Provider.GCS
    return {k: (o.size, o.etag, str(o.generation) if gcs else None) for k, o in model.objects.items()}


def deliver(ctx: WorkerContext, provider: Provider, messages: list[RawMessage], sizes: list[int]) -> None:
    """Normalize and apply in batches of the drawn sizes, as producers and the worker would."""
    normalize = NORMALIZERS[provider]
    start = 0
    for size in [*sizes, len(messages)]:
        batch = messages[start : start + size]
        start += size
        changes = [change for raw in batch for change in normalize(raw)]
        if changes:
            apply_batch(ctx, changes)
        if start >= len(messages):
            return


def expected_differences(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, int, int]:
    created = sum(1 for k in after if k not in before)
    updated = sum(1 for k in after if k in before and before[k] != after[k])
    deleted = sum(1 for k in before if k not in after)
    return created, updated, deleted


@pytest.mark.parametrize("provider", list(Provider), ids=[p.value for p in Provider])
@PROPERTY
@given(operations=st.lists(operation, min_size=1, max_size=25), data=st.data())
def test_reconcile_converges_whatever_happened_to_the_events(
    ctx: WorkerContext, provider: Provider, operations: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    mount, model = new_mount(ctx, provider)
    messages = run_operations(model, operations)
    # Fate of each message: 0 = lost, 1-2 = delivered twice, else once.
    fates = data.draw(st.lists(st.integers(0, 9), min_size=len(messages), max_size=len(messages)))
    delivered = [m for m, f in zip(messages, fates, strict=True) if f] + [
        m for m, f in zip(messages, fates, strict=True) if f in (1, 2)
    ]
    lost = [m for m, f in zip(messages, fates, strict=True) if not f]
    shuffled = data.draw(st.permutations(delivered))
    sizes = data.draw(st.lists(st.integers(1, 6), max_size=len(shuffled)))
    deliver(ctx, provider, shuffled, sizes)

    before = catalog(ctx, mount, versions=False)
    if not lost:
        assert catalog(ctx, mount, versions=True) == bucket(model, versions=True), "events alone"
    summary = run_reindex(ctx, mount, ModelStorage(model))  # type: ignore[arg-type]
    assert catalog(ctx, mount, versions=False) == model.state(), "after the reconcile"
    differences = (summary.created, summary.updated, summary.deleted)
    assert differences == expected_differences(before, model.state()), "what the reconcile reported"

    late = lost + (data.draw(st.lists(st.sampled_from(messages), max_size=5)) if messages else [])
    deliver(ctx, provider, data.draw(st.permutations(late)), [])
    assert catalog(ctx, mount, versions=False) == model.state(), "late events changed the catalog"
    again = run_reindex(ctx, mount, ModelStorage(model))  # type: ignore[arg-type]
    assert (again.created, again.updated, again.deleted) == (0, 0, 0)


def test_the_model_emits_what_the_normalizers_read(ctx: WorkerContext, db: psycopg.Connection) -> None:
    """Guard for the property test itself: every operation yields the changes it should."""
    for provider in Provider:
        model = BucketModel(provider, "/conv/x" if provider is Provider.FS else "convx", 10**18)
        normalize = NORMALIZERS[provider]
        created = [c for m in model.put("d/a.bin", b"x") for c in normalize(m)]
        assert [(c.key, c.kind.value, c.size) for c in created] == [("d/a.bin", "created", 1)]
        overwrite = [c for m in model.put("d/a.bin", b"yy") for c in normalize(m)]
        assert [(c.kind.value, c.size) for c in overwrite] == [("created", 2)], provider
        renamed = [c for m in model.rename("d/a.bin", "e.bin") for c in normalize(m)]
        expected = [("d/a.bin", "deleted"), ("e.bin", "created")]
        assert sorted((c.key, c.kind.value) for c in renamed) == expected
        assert [i.key for i in model.listing("", recursive=False)] == ["e.bin"]
