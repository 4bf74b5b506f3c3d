"""A local source rewritten while one item is copied (single puts, fs -> fs): the checksum recorded
is the one of the bytes written, and a source that changed size starts the item over at once."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from mountsync.shared.migration.spec import TransferOptions
from mountsync.shared.storage.local import LocalStorage
from mountsync.shared.storage.url import parse_storage_url
from mountsync.workers.migration.items import ItemRow
from mountsync.workers.migration.retry import ByteBudget
from mountsync.workers.migration.transfer import Transfer

# Up to 1 KiB buffered (_put); above that, up to 1 MiB, hashed then streamed (_put_streamed).
OPTIONS = TransferOptions(multipart_threshold=1024 * 1024, max_buffer_bytes=1024, skip_existing=False)


class HookedSource:
    """A local source that runs ``hooks[n]`` just before its n-th ``open``."""

    def __init__(self, inner: LocalStorage, hooks: dict[int, Callable[[], None]]) -> None:
        self._inner, self.hooks, self.opens = inner, hooks, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def open(self, key: str) -> BinaryIO:
        self.opens += 1
        if self.opens in self.hooks:
            self.hooks[self.opens]()
        return self._inner.open(key)


class FakeStore:
    """Stands in for the item and part stores: these tests copy one local file and need no database."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def refresh_upload(self, item: ItemRow) -> ItemRow:
        return item

    def set_size(self, job_id: str, seq: int, size: int) -> None:
        self.sizes.append(size)


class Running:
    def check(self, item: ItemRow) -> None:
        return None


def run_item(tmp_path: Path, first: bytes, hooks: dict[int, Callable[[Path], None]]) -> tuple[Any, HookedSource]:
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    path = tmp_path / "src" / "a.bin"
    path.write_bytes(first)
    source = HookedSource(
        LocalStorage(parse_storage_url(f"file://{tmp_path / 'src'}")),
        {n: partial(hook, path) for n, hook in hooks.items()},
    )
    dest = LocalStorage(parse_storage_url(f"file://{tmp_path / 'dst'}"))
    item = ItemRow("job", 1, 0, "e1", "a.bin", "a.bin", None, None, None, None, None, 0)
    with ThreadPoolExecutor(1) as pool:
        store: Any = FakeStore()  # no database in these tests: the item and part stores are doubles
        transfer = Transfer(source, dest, OPTIONS, items=store, parts=store, verified=store,
                            budget=ByteBudget(OPTIONS.max_buffer_bytes), part_pool=pool,
                            control=Running(), sleep=lambda _: None)  # fmt: skip
        return transfer.run(item), source


def rewrite(data: bytes) -> Callable[[Path], None]:
    def hook(path: Path) -> None:
        with open(path, "r+b") as out:  # in place: same file, same size or not
            out.write(data)
            out.truncate()

    return hook


def test_streamed_source_rewritten_at_the_same_size_after_hashing_is_sent_again(tmp_path: Path) -> None:
    before, after = b"a" * 4096, b"b" * 4096
    outcome, source = run_item(tmp_path, before, {2: rewrite(after)})  # open 2 is the copy
    assert outcome.state == "done", outcome.reason
    assert (tmp_path / "dst" / "a.bin").read_bytes() == after
    assert outcome.checksum == f"sha256:{hashlib.sha256(after).hexdigest()}"
    assert source.opens == 4  # hashed, copy refused; hashed again, copied
    assert [p.name for p in (tmp_path / "dst").iterdir()] == ["a.bin"]  # no temp file left


@pytest.mark.parametrize(
    ("first", "then"),
    [(b"a" * 4096, b"b" * 5000), (b"a" * 100, b"b" * 200), (b"a" * 4096, b"b" * 200)],
    ids=["streamed", "buffered", "streamed-then-buffered"],
)
def test_source_that_changed_size_since_the_stat_starts_the_item_over(
    tmp_path: Path, first: bytes, then: bytes
) -> None:
    outcome, source = run_item(tmp_path, first, {1: rewrite(then)})
    assert outcome.state == "done", outcome.reason
    assert outcome.size == len(then)
    assert (tmp_path / "dst" / "a.bin").read_bytes() == then
    # One read noticed the change (not max_attempts re-reads against the stale size); the item
    # was started over with a fresh stat and copied.
    streamed = len(then) > OPTIONS.max_buffer_bytes
    assert source.opens == 1 + (2 if streamed else 1)
