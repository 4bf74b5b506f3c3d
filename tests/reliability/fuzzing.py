"""Fuzzing helpers: recorded seed payloads, structural mutations, a hard per-example deadline and
the invariants every normalizer output must satisfy (it must be storable by the catalog as is).

Examples are derandomized (the same inputs on every run, so CI is deterministic); set
``MOUNTSYNC_FUZZ_EXAMPLES`` to run more of them (e.g. 20000 for a long local session).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from mountsync.shared.events import Kind, ObjectChange, Provider, Source

TESTS = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("MOUNTSYNC_FUZZ_EXAMPLES", "150"))
HARD_DEADLINE_S = 2.0
INT64 = 2**63

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # no timed assertions: hard_deadline below catches hangs
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Values that broke parsers somewhere: empty, NUL, controls, traversal, bad percent-encoding,
# lone surrogates, overlong digits, extreme times, huge and negative numbers, wrong types.
NASTY_STRINGS = [
    "", " ", "\x00", "a\x00b", "\x1f", "a\nb", "\r\n", "..", "../../etc/passwd", "/abs", "a//b",
    "%", "%FF", "%00", "%2F", "%25", "%zz", "+", "a+b%20c", "\ud800", "é", "e\u0301", "名前",
    "\u202e", "\ufeff", "9" * 5000, "x" * 5000, "0x1F", "-1", "1e400", "NaN", "true", "null",
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2024-02-30T25:61:61Z",
    "2024-05-01T12:00:00.1234567890123Z", "2024-05-01T12:00:00Z", "2024-05-01", "T", "Z",
    "00000000000000000000", "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF", "s3:ObjectCreated:Put",
    "OBJECT_FINALIZE", "Microsoft.Storage.BlobCreated", "JSON_API_V1", "NONE",
    "http://127.0.0.1:1/acct/c/k%FF", "https://acct.blob.core.windows.net/", "{}", "[]", "{",
]  # fmt: skip
NASTY_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2**63, -(2**63) - 1, 10**30, -(10**30), 1.5, float("inf"),
    float("nan"), [], {}, [None], {"": None}, *NASTY_STRINGS,
]  # fmt: skip

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
    | st.sampled_from(NASTY_VALUES)
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


def load_json_files(folder: str, *, skip: tuple[str, ...] = ()) -> list[Any]:
    return [json.loads(p.read_text()) for p in sorted((TESTS / folder / "payloads").glob("*.json"))
            if p.stem not in skip]  # fmt: skip


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from _paths(value, (*prefix, index))


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    value = copy.deepcopy(value)  # drawn values may be shared (NASTY_VALUES): never mutate them
    if not path:
        return value
    parent = _get(doc, path[:-1])
    parent[path[-1]] = value
    return doc


def _delete(doc: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return doc
    parent = _get(doc, path[:-1])
    del parent[path[-1]]
    return doc


def _splice(text: str, draw: Any) -> str:
    at = draw(st.integers(0, len(text)))
    piece = draw(st.sampled_from(NASTY_STRINGS) | st.text(max_size=6))
    cut = draw(st.integers(0, min(3, len(text) - at)))
    return text[:at] + piece + text[at + cut :]


@st.composite
def mutated(draw: Any, seeds: list[Any], max_mutations: int = 4) -> Any:
    """A deep copy of one seed with 0..n mutations (replace, delete, splice, retype, add a key)."""
    doc = json.loads(json.dumps(draw(st.sampled_from(seeds))))
    for _ in range(draw(st.integers(0, max_mutations))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        target = _get(doc, path)
        action = draw(st.sampled_from(["replace", "nasty", "delete", "splice", "add", "stringify"]))
        if action == "replace":
            doc = _set(doc, path, draw(json_values))
        elif action == "nasty":
            doc = _set(doc, path, draw(st.sampled_from(NASTY_VALUES)))
        elif action == "delete":
            doc = _delete(doc, path)
        elif action == "splice" and isinstance(target, str):
            doc = _set(doc, path, _splice(target, draw))
        elif action == "add" and isinstance(target, dict):
            key = draw(st.text(max_size=12) | st.sampled_from(sorted(target) or [""]))
            target[key] = copy.deepcopy(draw(json_values))
        elif action == "stringify":
            doc = _set(doc, path, target if isinstance(target, str) else json.dumps(target))
    return doc


@contextlib.contextmanager
def hard_deadline(seconds: float = HARD_DEADLINE_S) -> Iterator[None]:
    """Interrupt a call that runs longer than ``seconds`` (a hang fails the example, not the run)."""

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"normalizer still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _storable_text(value: Any, name: str, *, optional: bool) -> None:
    if value is None and optional:
        return
    assert isinstance(value, str), f"{name} is {type(value).__name__}, not str"
    assert "\x00" not in value, f"{name} holds NUL: PostgreSQL text cannot store it"
    value.encode("utf-8")  # lone surrogates cannot be stored or sent either


def _int64(value: Any, name: str, *, optional: bool) -> None:
    if value is None and optional:
        return
    assert isinstance(value, int) and not isinstance(value, bool), f"{name} is not an int"
    assert -INT64 <= value < INT64, f"{name} {value} does not fit the catalog's bigint"


def assert_storable(change: Any) -> None:
    """What the catalog needs of a change to apply it without failing its whole batch."""
    assert isinstance(change, ObjectChange), f"normalizer returned {type(change).__name__}"
    assert isinstance(change.provider, Provider) and isinstance(change.kind, Kind)
    assert isinstance(change.source, Source)
    for name in ("bucket", "key", "sequencer"):
        _storable_text(getattr(change, name), name, optional=False)
    for name in ("etag", "version", "source_id"):
        _storable_text(getattr(change, name), name, optional=True)
    _int64(change.event_ns, "event_ns", optional=False)
    _int64(change.size, "size", optional=True)
    assert change.size is None or change.size >= 0
    assert change.key and change.bucket
    assert ObjectChange.from_json(change.to_json()) == change, "does not survive the wire"
