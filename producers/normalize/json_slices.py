"""The elements of a JSON array with the text each was written as, so one element can be kept
exactly as a sender wrote it (``split_event_bodies``: one event of a batch in the dead-letter store)."""

from __future__ import annotations

import json
import re
from typing import Any

_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def array_elements(text: str) -> list[tuple[Any, str]]:
    """(value, its source text) of each element of the JSON array ``text``; ``ValueError`` if
    ``text`` is anything but one array (``json.JSONDecodeError`` is a ``ValueError``)."""
    at = _skip_space(text, 0)
    if text[at : at + 1] != "[":
        raise ValueError("not an array")
    at = _skip_space(text, at + 1)
    elements: list[tuple[Any, str]] = []
    closed = text[at : at + 1] == "]"
    if closed:
        at += 1
    while not closed:
        value, stop = _DECODER.raw_decode(text, at)
        elements.append((value, text[at:stop]))
        at = _skip_space(text, stop)
        closed = text[at : at + 1] == "]"
        if not closed and text[at : at + 1] != ",":
            raise ValueError(f"expected , or ] at {at}")
        at = _skip_space(text, at + 1)
    if _skip_space(text, at) != len(text):
        raise ValueError("text after the array")
    return elements


def _skip_space(text: str, at: int) -> int:
    match = _JSON_SPACE.match(text, at)
    return match.end() if match else at
