"""CLI output: ``--json`` prints exactly one JSON document on stdout; tables go through rich."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str, ensure_ascii=False, indent=None))
    sys.stdout.write("\n")
    sys.stdout.flush()


def emit_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> None:
    table = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


def emit(data: Any, *, as_json: bool, columns: Sequence[str] | None = None, title: str | None = None) -> None:
    """Rows of dicts as a table (columns picked) or the whole value as JSON."""
    if as_json:
        emit_json(data)
        return
    if isinstance(data, dict):
        emit_table(("field", "value"), data.items(), title)
        return
    cols = list(columns or (data[0].keys() if data else []))
    emit_table(cols, ([row.get(c) for c in cols] for row in data), title)
