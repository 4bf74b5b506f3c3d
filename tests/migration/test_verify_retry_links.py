"""Pure parts of the worker side: checksums, backoff, link delivery decisions, final states."""

from __future__ import annotations

import base64
import hashlib
import io
import random
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from mountsync.shared.errors import StorageUnavailable
from mountsync.shared.migration.progress import build_progress
from mountsync.shared.storage.base import ObjectInfo
from mountsync.workers.migration.lifecycle import final_state
from mountsync.workers.migration.links import build_payload, classify_status, parse_retry_after
from mountsync.workers.migration.retry import Backoff, ByteBudget, GaveUp, with_retries
from mountsync.workers.migration.verified import Verified
from mountsync.workers.migration.verify import (
    ChecksumMismatch,
    candidate_part_sizes,
    check_upload,
    composite_etag,
    hash_stream,
    normalize_digest,
    same_content,
)

MiB = 1024 * 1024
DATA = bytes(range(256)) * (4 * 4096 + 7)  # a bit over 4 MiB


def s3_multipart_etag(data: bytes, part_size: int) -> str:
    parts = [data[i : i + part_size] for i in range(0, len(data), part_size)]
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f"{hashlib.md5(joined).hexdigest()}-{len(parts)}"


def test_hash_stream_matches_hashlib_and_s3_multipart_etags() -> None:
    digests = hash_stream(io.BytesIO(DATA), {1 * MiB, 3 * MiB})
    assert digests.sha256 == hashlib.sha256(DATA).hexdigest()
    assert digests.md5 == hashlib.md5(DATA).hexdigest()
    assert digests.size == len(DATA)
    assert digests.composites[1 * MiB] == s3_multipart_etag(DATA, 1 * MiB)
    assert digests.composites[3 * MiB] == s3_multipart_etag(DATA, 3 * MiB)
    part_md5s = [hashlib.md5(DATA[i : i + MiB]).hexdigest() for i in range(0, len(DATA), MiB)]
    assert composite_etag(part_md5s) == s3_multipart_etag(DATA, MiB)


def test_digest_normalization_accepts_hex_and_base64() -> None:
    raw = hashlib.md5(b"x").digest()
    assert normalize_digest(base64.b64encode(raw).decode(), 32) == raw.hex()
    assert normalize_digest(f'"{raw.hex().upper()}"', 32) == raw.hex()
    assert normalize_digest("0x8DC69E3F1A2B3C4", 32) is None
    assert normalize_digest(None, 64) is None


def test_same_content_needs_positive_evidence() -> None:
    digests = hash_stream(io.BytesIO(DATA), candidate_part_sizes(len(DATA), 5, {MiB}))
    size = len(DATA)
    assert same_content(ObjectInfo("k", size, etag=hashlib.md5(DATA).hexdigest()), digests)
    assert same_content(ObjectInfo("k", size, etag=s3_multipart_etag(DATA, MiB)), digests)
    assert same_content(ObjectInfo("k", size, etag="0" * 32), digests) is False
    assert same_content(ObjectInfo("k", size - 1, etag=hashlib.md5(DATA).hexdigest()), digests) is False
    gcs = ObjectInfo("k", size, etag="CKih", checksums={"md5": base64.b64encode(hashlib.md5(DATA).digest()).decode()})
    assert same_content(gcs, digests)
    azure = ObjectInfo("k", size, etag="0x8DC")
    assert same_content(azure, digests) is None  # no evidence: copy again
    record = Verified(size, "0x8DC", digests.sha256, digests.md5)
    assert same_content(azure, digests, record)
    assert same_content(ObjectInfo("k", size, etag="0x8DD"), digests, record) is None  # changed since


def test_check_upload_needs_size_and_explicit_checksums_to_match() -> None:
    digests = hash_stream(io.BytesIO(DATA))
    md5_hex = hashlib.md5(DATA).hexdigest()
    assert check_upload(ObjectInfo("k", len(DATA), etag=md5_hex), digests, None) == "md5-etag"
    with pytest.raises(ChecksumMismatch, match="bytes"):
        check_upload(ObjectInfo("k", 1, etag=None), digests, None)
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ChecksumMismatch, match="md5"):
        check_upload(ObjectInfo("k", len(DATA), checksums={"md5": wrong}), digests, None)
    with pytest.raises(ChecksumMismatch, match="sha256"):
        check_upload(ObjectInfo("k", len(DATA), checksums={"sha256": "0" * 64}), digests, None)
    # An ETag that is not the MD5 (SSE-KMS) is no evidence either way: size decides.
    assert check_upload(ObjectInfo("k", len(DATA), etag="0" * 32), digests, None) == "size"
    part_md5s = [hashlib.md5(DATA[i : i + MiB]).hexdigest() for i in range(0, len(DATA), MiB)]
    good = ObjectInfo("k", len(DATA), etag=s3_multipart_etag(DATA, MiB))
    assert check_upload(good, digests, part_md5s) == "multipart-etag"


def test_backoff_is_exponential_capped_and_jittered() -> None:
    backoff = Backoff(1.0, 60.0, random.Random(7))
    delays = [backoff.delay(n) for n in range(1, 12) for _ in range(20)]
    assert all(0 <= d <= 60 for d in delays)
    assert max(backoff.delay(1) for _ in range(50)) <= 1.0
    assert len({round(d, 6) for d in delays}) > 100  # jittered, not a fixed ladder


def test_with_retries_retries_only_retryable_errors() -> None:
    calls, slept = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise StorageUnavailable("503")
        return "ok"

    assert with_retries(flaky, attempts=5, backoff=Backoff(0.5, 1), what="x", sleep=slept.append) == "ok"
    assert len(calls) == 3 and len(slept) == 2
    with pytest.raises(GaveUp, match="gave up after 2 attempt"):
        with_retries(
            lambda: (_ for _ in ()).throw(StorageUnavailable("down")),
            attempts=2,
            backoff=Backoff(0, 0),
            what="y",
            sleep=slept.append,
        )
    with pytest.raises(ValueError):
        with_retries(lambda: int("x"), attempts=5, backoff=Backoff(0, 0), what="z", sleep=slept.append)


def test_byte_budget_blocks_until_released() -> None:
    budget = ByteBudget(10)
    budget.acquire(8)
    got = threading.Event()
    thread = threading.Thread(target=lambda: (budget.acquire(5), got.set()))
    thread.start()
    assert not got.wait(0.2)
    budget.release(8)
    assert got.wait(5)
    thread.join()
    assert budget.peak == 8 and budget.used == 5
    budget.acquire(0)
    big = ByteBudget(4)
    big.acquire(10)  # alone, an oversized request runs rather than deadlocks


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (400, "failed"),
        (404, "failed"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
    ],
)
def test_http_status_classification(status: int, state: str) -> None:
    assert classify_status(status) == state


def test_retry_after_parsing() -> None:
    assert parse_retry_after("7") == 7.0
    now = datetime(2030, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(30, abs=1)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_payload_shape() -> None:
    links = [{"entity_id": "1", "link": "s3://b/k", "size": 3, "checksum": "sha256:ab"}]
    assert build_payload("j", 0, links) == {"job_id": "j", "batch": 0, "links": links}


@pytest.mark.parametrize(
    ("ok", "failed", "batches_failed", "state"),
    [
        (3, 0, 0, "completed"),
        (0, 0, 0, "completed"),
        (2, 1, 0, "completed_with_errors"),
        (0, 2, 0, "failed"),
        (3, 0, 1, "completed_with_errors"),
    ],
)
def test_final_state(ok: int, failed: int, batches_failed: int, state: str) -> None:
    assert final_state(ok, failed, batches_failed)[0] == state


def test_progress_rate_and_eta() -> None:
    job = {"job_id": "j", "state": "running", "source": "s", "destination": "d", "elapsed": 10.0}
    items = {
        "items_total": 4,
        "bytes_total": 1000,
        "bytes_finished": 300,
        "bytes_partial": 100,
        "bytes_sent": 400,
        "bytes_dropped": 0,
    }
    p = build_progress(job, items)
    assert p.rate_bps == 40.0 and p.bytes_done == 400 and p.eta_s == pytest.approx(15.0)
    done = build_progress({**job, "state": "completed"}, items)
    assert done.eta_s == 0.0
    fresh = build_progress({**job, "elapsed": 0}, {})
    assert fresh.rate_bps == 0 and fresh.eta_s is None
