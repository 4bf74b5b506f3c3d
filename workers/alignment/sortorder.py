"""Frame order policies: how a folder's image names become frame indices.

Annotations reference frames by integer index, so the order must be stable and total: two
different names never compare equal (DIVE's ``strNumericCompare`` ties ``img_1`` and ``img_01``
and leaves the order to the database; we break every tie on the full name by code point).

Policies, by name:
- ``dive`` (default): DIVE's natural order. The name (with its extension) is split into runs
  of ASCII digits and runs of other characters; digit runs compare as integers and sort before
  text runs; text runs compare by code point (case-sensitive); a name that runs out of runs
  first sorts first. Ties (equal runs, e.g. leading zeros) fall back to the full name.
- ``lexicographic``: plain code point order of the full name.
- ``manifest``: an explicit list of names (a manifest file in the folder). Listed names come
  first, in the listed order; names the list does not mention follow in ``dive`` order, so a
  frame is never hidden just because the list is out of date.

Pure: no I/O, no clock, no environment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mountsync.shared.errors import BadInput

DIVE = "dive"
LEXICOGRAPHIC = "lexicographic"
MANIFEST = "manifest"
POLICIES = (DIVE, LEXICOGRAPHIC, MANIFEST)
DEFAULT_POLICY = DIVE

# ASCII digits only: DIVE (JavaScript /\d/ and Python on ASCII names) never reads "٣" as 3,
# and int() on mixed scripts would make the order depend on Unicode tables.
_RUNS = re.compile(r"[0-9]+|[^0-9]+")

# A run key: digits -> (0, value), text -> (1, text); tuples sort digit runs first.
RunKey = tuple[tuple[int, int | str], ...]


def natural_runs(name: str) -> RunKey:
    """DIVE's comparison key for ``name`` (without the tie-break)."""
    return tuple((0, int(run)) if run[0].isascii() and run[0].isdigit() else (1, run) for run in _RUNS.findall(name))


def dive_key(name: str) -> tuple[RunKey, str]:
    """Total order key of the ``dive`` policy: natural runs, then the full name."""
    return natural_runs(name), name


def dive_compare(a: str, b: str) -> int:
    """-1, 0 or 1 like DIVE's ``strNumericCompare`` (0 only for identical names here)."""
    ka, kb = dive_key(a), dive_key(b)
    return (ka > kb) - (ka < kb)


def lexicographic_key(name: str) -> str:
    return name


@dataclass(frozen=True)
class SortPolicy:
    """A named frame order; ``sort`` orders names (basenames, or keys within one folder)."""

    name: str
    key: Callable[[str], Any]  # a sort key: values compare with < (tuples, strings)
    listed: tuple[str, ...] = field(default=())

    def sort(self, names: Iterable[str]) -> list[str]:
        return sorted(names, key=self.key)


def manifest_policy(listed: Sequence[str]) -> SortPolicy:
    """The ``manifest`` policy for an explicit list of names (first mention wins)."""
    position: dict[str, int] = {}
    for name in listed:
        position.setdefault(name, len(position))

    def key(name: str) -> tuple[int, int, tuple[RunKey, str]]:
        pos = position.get(name)
        if pos is not None:
            return 0, pos, ((), "")
        return 1, 0, dive_key(name)

    return SortPolicy(MANIFEST, key, tuple(position))


def get_policy(name: str, listed: Sequence[str] | None = None) -> SortPolicy:
    """The policy called ``name``; ``manifest`` needs the ``listed`` names (may be empty)."""
    if name == DIVE:
        return SortPolicy(DIVE, dive_key)
    if name == LEXICOGRAPHIC:
        return SortPolicy(LEXICOGRAPHIC, lexicographic_key)
    if name == MANIFEST:
        return manifest_policy(listed or ())
    raise BadInput(f"unknown frame order {name!r}; choose one of {', '.join(POLICIES)}")


def parse_frame_manifest(text: str) -> list[str]:
    """Names from a manifest file: a JSON array of names, or one name per line.

    In the line form, blank lines and lines starting with ``#`` are ignored and surrounding
    whitespace is stripped; a name with a ``/`` is reduced to its last segment (manifests often
    hold paths). A JSON document that is not a list of strings is ``BadInput``.
    """
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except ValueError as exc:
            raise BadInput(f"frame manifest is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise BadInput("frame manifest is not valid JSON we read: nested too deeply") from exc
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise BadInput("a JSON frame manifest must be an array of file names")
        lines = data
    else:
        lines = [line.strip() for line in text.splitlines()]
        lines = [line for line in lines if line and not line.startswith("#")]
    return [line.rsplit("/", 1)[-1] for line in lines if line.rsplit("/", 1)[-1]]
