"""What the migration tasks do: plan a job, run a chunk, record what finished.

The walk of one spec, in call order: ``tasks.submit_migration`` -> ``submit`` (``parse_spec``
once; ``JobStore`` records the job) -> ``plan`` (``plan_batches`` cuts the listing into planned
items; ``ItemStore.add_items`` stores them a batch at a time and says which chunks filled) ->
one ``mountsync.migration.upload_chunk`` task per chunk -> ``run_chunk`` (reads the spec back
from the job row, opens the storages once, claims items in batches) -> ``Transfer.run`` per
item (``transfer``: parts recorded through ``PartStore``) -> ``record`` (one transaction for all
items that finished together) -> ``Lifecycle.settle`` (link batches, final state).

Every function is safe to run twice (tasks are delivered at least once): planning skips paths
already planned, chunk runs claim items under a lease, link batches are cut under a job lock.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import structlog

from mountsync.shared.errors import BadInput, MountsyncError, RetryableError
from mountsync.shared.events import Provider
from mountsync.shared.migration import TASK_CHUNK, TASK_DELIVER
from mountsync.shared.migration import metrics as m
from mountsync.shared.migration.plan import Entry, plan_batches, relative_to_prefix
from mountsync.shared.migration.spec import MigrationSpec, parse_spec
from mountsync.shared.storage import open_storage
from mountsync.shared.storage.base import Storage
from mountsync.workers.migration.common import Outcome, Stop, object_link
from mountsync.workers.migration.items import Finished, ItemRow
from mountsync.workers.migration.retry import ByteBudget
from mountsync.workers.migration.runtime import MigrationRuntime
from mountsync.workers.migration.transfer import Transfer
from mountsync.workers.migration.verified import Remembered
from mountsync.workers.sinks.events import publish_migration_event

log = structlog.get_logger("mountsync.migration")

STATE_POLL_S = 0.25  # a cancel stops uploads within a part or two (one small query per poll)
# Finished items are recorded together: at most this long after the first of them finished...
RECORD_EVERY_S = 0.5
RECORD_BATCH = 64  # ...or as soon as this many are waiting


def open_storages(spec: MigrationSpec) -> tuple[Storage, Storage]:
    source = open_storage(spec.source, spec.options.source_storage)
    dest_options = dict(spec.options.destination_storage)
    if spec.destination.provider is Provider.S3:
        dest_options["crt_puts"] = True  # many small puts: botocore's CPU per request dominated
    dest = open_storage(spec.destination, dest_options)
    return source, dest


# --- submission and planning -------------------------------------------------------------
def submit(rt: MigrationRuntime, data: Any, task_id: str | None, *, last_try: bool = True) -> str:
    """Validate, record and plan a job; chunk tasks are queued as chunks fill up.

    A bad spec is recorded as a failed job (when it has an id) and raised as ``BadInput``. A
    transient failure while listing is raised for the task to retry (planning is idempotent),
    unless this is the ``last_try``: then, like any other planning error, it fails the job."""
    job_id = _job_id_of(data, task_id)
    try:
        spec = parse_spec(data)
    except BadInput as exc:
        rt.jobs.record_rejected(job_id, data, str(exc))
        log.warning("migration spec rejected", job_id=job_id, reason=str(exc))
        raise
    rt.jobs.create_job(job_id, spec)
    state = rt.jobs.job_state(job_id)
    if state not in ("submitted", "planning"):
        return job_id  # planned already (a redelivery), or cancelled before it started
    rt.jobs.set_state(job_id, "planning", only_from=("submitted", "planning"))
    sent: set[int] = set()
    try:
        chunks = plan(rt, job_id, spec, sent)
    except RetryableError as exc:
        if not last_try:
            raise
        _fail_planning(rt, job_id, exc)
        return job_id
    except MountsyncError as exc:
        _fail_planning(rt, job_id, exc)
        return job_id
    rt.jobs.mark_planned(job_id, chunks)
    rt.jobs.set_state(job_id, "running", only_from=("planning",))
    for chunk in rt.items.open_chunks(job_id):
        if chunk not in sent:
            rt.send(TASK_CHUNK, job_id, chunk)
    settle_job(rt, job_id)  # a job with nothing to copy ends here
    return job_id


def _job_id_of(data: Any, task_id: str | None) -> str:
    given = data.get("job_id") if isinstance(data, dict) else None
    if isinstance(given, str) and given:
        return given
    if task_id:
        return task_id
    return uuid.uuid4().hex


def plan(rt: MigrationRuntime, job_id: str, spec: MigrationSpec, sent: set[int]) -> int:
    """Store the items in batches, queueing each chunk as soon as it is full (so copying
    starts while a large prefix is still being listed). Returns the number of chunks."""
    size = spec.options.chunk_size
    last_chunk = -1
    for batch in plan_batches(entries(spec), spec.destination.prefix, size):
        for chunk in rt.items.add_items(job_id, batch, size, spec.options.chunk_bytes):
            if chunk > last_chunk >= 0:
                rt.send(TASK_CHUNK, job_id, last_chunk)  # the previous chunk is full now
                sent.add(last_chunk)
            last_chunk = max(last_chunk, chunk)
    total = rt.items.chunk_count(job_id)
    return max(total, last_chunk + 1)


def entries(spec: MigrationSpec) -> Iterator[Entry]:
    """The given items, or the source prefix listed (streamed) with relative paths as ids."""
    if spec.items is not None:
        yield from spec.items
        return
    source = open_storage(spec.source, spec.options.source_storage)
    prefix = spec.source.prefix
    for info in source.list(prefix, recursive=True):
        relative = relative_to_prefix(prefix, info.key)
        yield Entry(relative, relative, info.size)


def _fail_planning(rt: MigrationRuntime, job_id: str, exc: Exception) -> None:
    reason = f"planning failed: {exc}"
    log.error("migration planning failed", job_id=job_id, reason=str(exc))
    rt.jobs.fail(job_id, reason, only_from=("planning",))


# --- chunks ------------------------------------------------------------------------------
class ChunkControl:
    """Shared by the threads of one chunk run: notices a cancel (the job state is polled every
    ``STATE_POLL_S``), the end of the time budget, and keeps the leases of the items in flight alive from a
    heartbeat thread (so a part that takes longer than a lease cannot lose its item)."""

    def __init__(self, rt: MigrationRuntime, job_id: str, deadline: float) -> None:
        self.rt, self.job_id, self.deadline = rt, job_id, deadline
        self._lock = threading.Lock()
        self._state = "running"
        self._polled = rt.clock()
        self._active: set[int] = set()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="mig-lease", daemon=True)

    def __enter__(self) -> ChunkControl:
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._beat.join()

    def working_on(self, seq: int, active: bool) -> None:
        with self._lock:
            (self._active.add if active else self._active.discard)(seq)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.rt.lease_s / 3):
            with self._lock:
                seqs = list(self._active)
            try:
                state = self.rt.items.renew(self.job_id, seqs, self.rt.lease_s)
            except MountsyncError as exc:  # the next beat tries again; leases are generous
                log.warning("lease renewal failed", job_id=self.job_id, error=str(exc))
                continue
            with self._lock:
                self._state, self._polled = state, self.rt.clock()

    def stop_reason(self) -> str | None:
        now = self.rt.clock()
        with self._lock:
            poll = now - self._polled >= STATE_POLL_S
            if poll:
                self._polled = now  # one thread polls per window; the others use the last state
        if poll:
            state = self.rt.jobs.job_state(self.job_id) or "missing"
            with self._lock:
                self._state = state
        with self._lock:
            state = self._state
        if state not in ("planning", "running"):
            return "cancelled"
        return "deadline" if now >= self.deadline else None

    def check(self, item: ItemRow) -> None:
        reason = self.stop_reason()
        if reason:
            raise Stop(reason)


@dataclass
class ChunkResult:
    counts: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None

    def add(self, state: str) -> None:
        self.counts[state] = self.counts.get(state, 0) + 1


def run_chunk(rt: MigrationRuntime, job_id: str, chunk: int) -> dict[str, Any]:
    """Copy the open items of one chunk; returns counts per outcome."""
    job = rt.jobs.job(job_id)
    if job is None or job["state"] not in ("planning", "running"):
        if job is not None:
            settle_job(rt, job_id)
        return {"job_id": job_id, "chunk": chunk, "skipped": "job not active"}
    spec = parse_spec(job["spec"])
    source, dest = open_storages(spec)
    with ChunkControl(rt, job_id, rt.clock() + rt.chunk_budget_s) as control:
        result = _drive(rt, spec, source, dest, job_id, chunk, control)
    if result.stopped == "deadline" and chunk in rt.items.open_chunks(job_id):
        rt.send(TASK_CHUNK, job_id, chunk)  # continue in a fresh task
    settle_job(rt, job_id)
    return {"job_id": job_id, "chunk": chunk, **result.counts}


def _drive(
    rt: MigrationRuntime, spec: MigrationSpec, source: Storage, dest: Storage,
    job_id: str, chunk: int, control: ChunkControl,
) -> ChunkResult:  # fmt: skip
    o = spec.options
    result = ChunkResult()
    part_workers = max(2, min(64, o.concurrency * o.part_concurrency, o.max_buffer_bytes // o.part_size + 1))
    with ThreadPoolExecutor(part_workers, "mig-part") as parts, \
            ThreadPoolExecutor(o.concurrency, "mig-item") as items:  # fmt: skip
        transfer = Transfer(source, dest, o, items=rt.items, parts=rt.parts, verified=rt.verified,
                            budget=ByteBudget(o.max_buffer_bytes), part_pool=parts, control=control)  # fmt: skip
        if o.skip_existing:
            transfer.index_destination(rt.items.open_keys(job_id, chunk))
        inflight: dict[Future[Outcome], ItemRow] = {}
        recorder = Recorder(rt, dest, control, result)
        # Claim a few slots at a time (one query per several items, not per item); once a claim
        # comes back short the chunk has nothing more to hand out until the end, when a last
        # claim picks up items whose lease ran out meanwhile.
        claim_from, drained = max(1, o.concurrency // 4), False
        while True:
            result.stopped = control.stop_reason()
            free = o.concurrency - len(inflight)
            wanted = (free >= claim_from and not drained) or not inflight
            if wanted and free > 0 and result.stopped is None:
                rows = rt.items.claim(job_id, chunk, free, rt.lease_s)
                drained = len(rows) < free
                for row in rows:
                    control.working_on(row.seq, True)
                    inflight[items.submit(_run_item, transfer, row)] = row
            if not inflight:
                recorder.flush()
                return result
            finished, _ = wait(list(inflight), timeout=recorder.wait_s(), return_when=FIRST_COMPLETED)
            recorder.add([(inflight.pop(future), future.result()) for future in finished])


class Recorder:
    """The outcomes of a chunk's finished items, recorded together (``record``: two transactions
    for the batch): once ``RECORD_BATCH`` wait, ``RECORD_EVERY_S`` after the first of them
    finished, or at the end. Their leases are renewed until then; a crash before that leaves
    them running, and the next claim copies them again (or skips them on the evidence)."""

    def __init__(self, rt: MigrationRuntime, dest: Storage, control: ChunkControl, result: ChunkResult) -> None:
        self.rt, self.dest, self.control, self.result = rt, dest, control, result
        self.waiting: list[tuple[ItemRow, Outcome]] = []
        self.since = 0.0

    def add(self, done: list[tuple[ItemRow, Outcome]]) -> None:
        if done and not self.waiting:
            self.since = self.rt.clock()
        self.waiting.extend(done)
        if len(self.waiting) >= RECORD_BATCH or (self.waiting and self.wait_s() == 0.0):
            self.flush()

    def wait_s(self) -> float | None:
        """How long the chunk may wait for more items before the waiting ones are due."""
        if not self.waiting:
            return None
        return max(0.0, self.since + RECORD_EVERY_S - self.rt.clock())

    def flush(self) -> None:
        if not self.waiting:
            return
        done, self.waiting = self.waiting, []
        record(self.rt, self.dest, done)
        for row, outcome in done:
            self.control.working_on(row.seq, False)
            self.result.add(outcome.state)


def _run_item(transfer: Transfer, row: ItemRow) -> Outcome:
    try:
        return transfer.run(row)
    except Exception as exc:  # a bug must not take the other items of the chunk down
        log.exception("migration item crashed", job_id=row.job_id, entity_id=row.entity_id)
        return Outcome("failed", reason=f"internal error: {type(exc).__name__}: {exc}")


def record(rt: MigrationRuntime, dest: Storage, done: list[tuple[ItemRow, Outcome]]) -> None:
    """Record items that finished together: their verified copies, then their outcomes with the
    released ones given back as pending (one transaction each, however many items)."""
    finished: list[Finished] = []
    released: list[tuple[str, int]] = []
    remembered: list[Remembered] = []
    for row, outcome in done:
        if outcome.state == "released":
            released.append((row.job_id, row.seq))
            continue
        link = object_link(dest.url, row.dest_key) if outcome.state in ("done", "skipped") else None
        reason = outcome.reason or ("job cancelled" if outcome.state == "cancelled" else None)
        finished.append(Finished(row.job_id, row.seq, outcome.state, reason=reason,
                                 checksum=outcome.checksum, etag=outcome.etag, link=link,
                                 sent=outcome.sent))  # fmt: skip
        if outcome.verified is not None:
            remembered.append(outcome.verified)
    rt.verified.remember(remembered)
    rt.items.finish(finished, released)
    for row, outcome in done:
        if outcome.state == "released":
            continue
        m.ITEMS_FINISHED.labels(outcome.state).inc()
        log.info("migration item", job_id=row.job_id, entity_id=row.entity_id, state=outcome.state,
                 reason=outcome.reason, verified_by=outcome.verified_by)  # fmt: skip


def settle_job(rt: MigrationRuntime, job_id: str) -> None:
    """Cut link batches and end the job if nothing is left; queues the batches' deliveries."""
    settled = rt.lifecycle.settle(job_id)
    for batch in settled.batches:
        rt.send(TASK_DELIVER, job_id, batch)
    if settled.final_state:
        log.info("migration job finished", job_id=job_id, state=settled.final_state)
        publish_migration_event(settled.final_state, {"job_id": job_id, "state": settled.final_state})
