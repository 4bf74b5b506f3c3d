"""Shared Azure producer pieces: reindex targets, directory-aware acks, the content enricher."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mountsync.producers.azure_common import DirectoryAwareSource, reindex_targets
from mountsync.producers.normalize.azure_enrich import ContentEnricher
from mountsync.shared.errors import ObjectNotFound, ServiceUnavailable, StorageUnavailable
from mountsync.shared.events import Kind, ObjectChange, Provider, RawMessage, Source
from mountsync.shared.storage.base import ObjectInfo
from mountsync.shared.testing import MemorySource
from tests.helpers import wait_for

PAYLOADS = Path(__file__).parent / "payloads"


@dataclass
class Mount:
    name: str
    prefix: str


class Mounts:
    def __init__(self, *mounts: Mount) -> None:
        self.mounts = list(mounts)

    def for_container(self, container: str) -> list[Mount]:
        return self.mounts if container == "lake" else []


def test_reindex_targets_cover_mounts_above_and_below_the_directory() -> None:
    mounts = [
        Mount("all", ""),
        Mount("clips", "clips/"),
        Mount("deep", "clips/run6/cam1/"),
        Mount("x", "other/"),
    ]
    assert reindex_targets(mounts, "clips/run6") == [("all", "clips/run6"), ("clips", "run6"), ("deep", "")]
    assert reindex_targets(mounts, "clips/run60") == [("all", "clips/run60"), ("clips", "run60")]


def directory_and_blob_messages() -> list[RawMessage]:
    directory = json.loads((PAYLOADS / "hns_directories.json").read_text())[2]
    blob = (PAYLOADS / "eg_blob_created.json").read_bytes()
    return [RawMessage(Source.AZURE_QUEUE, "dir", json.dumps(directory).encode()),
            RawMessage(Source.AZURE_QUEUE, "blob", blob)]  # fmt: skip


def test_directory_events_are_acked_only_after_their_reindex_is_queued() -> None:
    inner, sent = MemorySource(name=Source.AZURE_QUEUE), []
    source = DirectoryAwareSource(inner, Mounts(Mount("lake", "")), lambda n, p: sent.append((n, p)))  # type: ignore[arg-type]
    assert source.ack(directory_and_blob_messages()) == []
    assert sent == [("lake", "clips/run6")] and inner.acked == ["dir", "blob"]


def test_a_reindex_that_cannot_be_queued_holds_the_directory_event_back() -> None:
    def broken(name: str, prefix: str) -> None:
        raise ServiceUnavailable("redis down")

    inner = MemorySource(name=Source.AZURE_QUEUE)
    source = DirectoryAwareSource(inner, Mounts(Mount("lake", "")), broken)  # type: ignore[arg-type]
    failed = source.ack(directory_and_blob_messages())
    assert [m.message_id for m in failed] == ["dir"]
    assert (inner.acked, inner.nacked) == (["blob"], ["dir"])


class FakeStorage:
    def __init__(self, infos: dict[str, ObjectInfo], down: bool = False) -> None:
        self.infos, self.down, self.stats = infos, down, 0

    def stat(self, key: str) -> ObjectInfo:
        self.stats += 1
        if self.down:
            raise StorageUnavailable("azure down")
        if key not in self.infos:
            raise ObjectNotFound(key)
        return self.infos[key]


def change(key: str, kind: Kind, etag: str | None) -> ObjectChange:
    return ObjectChange(Provider.AZURE, "lake", key, kind, 1, Source.AZURE_QUEUE, etag=etag, sequencer="01")


def test_content_enricher_fills_renames_and_tier_changes_only() -> None:
    storage = FakeStorage({"clips/new.tif": ObjectInfo("clips/new.tif", 42, "0xABC"),
                           "clips/tier.tif": ObjectInfo("clips/tier.tif", 7, "0xDEF")})  # fmt: skip
    enrich = ContentEnricher(Mounts(Mount("lake", "clips/")), opener=lambda mount: storage)  # type: ignore[arg-type]
    out = enrich([
        change("clips/new.tif", Kind.CREATED, None), change("clips/tier.tif", Kind.METADATA, None),
        change("clips/full.tif", Kind.CREATED, "0x1"), change("clips/gone.tif", Kind.CREATED, None),
        change("clips/old.tif", Kind.DELETED, None),
    ])  # fmt: skip
    assert [(c.key, c.size, c.etag) for c in out] == [
        ("clips/new.tif", 42, "0xABC"), ("clips/tier.tif", 7, "0xDEF"), ("clips/full.tif", None, "0x1"),
        ("clips/gone.tif", None, None), ("clips/old.tif", None, None),
    ]  # fmt: skip
    assert out[0].sequencer == "01"
    assert storage.stats == 3


def test_content_enricher_retries_when_storage_is_down() -> None:
    enrich = ContentEnricher(Mounts(Mount("lake", "")), opener=lambda m: FakeStorage({}, down=True))  # type: ignore[arg-type]
    with pytest.raises(StorageUnavailable):
        enrich([change("clips/new.tif", Kind.CREATED, None)])


def test_content_enricher_leaves_unmounted_containers_alone() -> None:
    storage: Any = FakeStorage({})
    enrich = ContentEnricher(Mounts(), opener=lambda m: storage)  # type: ignore[arg-type]
    assert enrich([change("a", Kind.CREATED, None)])[0].etag is None
    assert storage.stats == 0


def test_prefetcher_forgets_a_fetch_error_once_fetching_works_again() -> None:
    from mountsync.producers.azure_eventgrid import Prefetcher

    calls: list[int] = []

    def fetch(room: int) -> list[int]:
        calls.append(room)
        if len(calls) == 1:
            raise ServiceUnavailable("receive failed once")
        if len(calls) == 2:
            return [1, 2, 3]
        time.sleep(0.05)  # an empty long poll, shortened
        return []

    prefetcher = Prefetcher(fetch, 10, on_late=lambda late: None)
    try:
        wait_for(lambda: len(calls) >= 3, what="a failed fetch, then a good one, then an empty one")
        assert prefetcher.take(10, 0.5) == [1, 2, 3]
        assert prefetcher.take(10, 0.3) == []  # the first fetch's error is stale: not raised now
    finally:
        prefetcher.close()
