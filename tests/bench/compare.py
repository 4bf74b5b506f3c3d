"""Compare two saved benchmark runs: ``python -m tests.bench.compare A.json B.json``.

Rows are matched by name. For each: the figure in A and in B, B's change against A, both ratios
against their baselines, and whether each run met the target. The ratios are what to compare:
a run's baseline ran on the same machine at the same moment, the figures alone move with the load.
Exit status 2 (one line on stderr) when a file is missing or is not a saved run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.bench.report import fmt_met, fmt_number, fmt_ratio, fmt_speed


class NotARun(Exception):
    """The file cannot be read as a saved benchmark run."""


def load_run(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise NotARun(f"cannot read {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise NotARun(f"{path} is not JSON ({exc.msg} at line {exc.lineno})") from exc
    if isinstance(document, list):  # the format before runs carried their load and commit
        document = {"rows": document}
    if not isinstance(document, dict) or not isinstance(document.get("rows"), list):
        raise NotARun(f"{path} is not a saved benchmark run (no 'rows' list)")
    return document


def change(a: float | None, b: float | None) -> str:
    if a is None or b is None or a == 0:
        return "-"
    return f"{(b - a) / abs(a) * 100:+.1f}%"


def compare_rows(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per row name, in A's order then rows only B has (pure)."""
    by_name_b = {r["name"]: r for r in b}
    names = [r["name"] for r in a] + [r["name"] for r in b if r["name"] not in {x["name"] for x in a}]
    by_name_a = {r["name"]: r for r in a}
    result = []
    for name in names:
        ra, rb = by_name_a.get(name), by_name_b.get(name)
        result.append(
            {
                "name": name,
                "unit": (ra or rb or {}).get("unit", ""),
                "a": ra and ra["value"],
                "b": rb and rb["value"],
                "change": change(ra and ra["value"], rb and rb["value"]),
                "ratio_a": ra and ra.get("ratio"),
                "ratio_b": rb and rb.get("ratio"),
                "met_a": ra and ra.get("met"),
                "met_b": rb and rb.get("met"),
                "target": (rb or ra or {}).get("target", ""),
            }
        )
    return result


def format_comparison(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    rows = compare_rows(a["rows"], b["rows"])
    name_w = max([44, *(len(r["name"]) for r in rows)])
    lines = [
        f"A: {a.get('started', '?')} commit {a.get('commit', '?')} load {_load(a)}",
        f"B: {b.get('started', '?')} commit {b.get('commit', '?')} load {_load(b)}",
        f"{'benchmark':{name_w}} {'A':>12} {'B':>12} {'unit':10} {'B vs A':>8} {'ratio A':>8} {'ratio B':>8} "
        f"{'met A':>5} {'met B':>5}  target",
    ]
    lines.append("-" * len(lines[-1]))
    for r in rows:
        lines.append(
            f"{r['name']:{name_w}} {fmt_number(r['a']):>12} {fmt_number(r['b']):>12} {r['unit']:10} "
            f"{r['change']:>8} {fmt_ratio(r['ratio_a']):>8} {fmt_ratio(r['ratio_b']):>8} "
            f"{fmt_met(r['met_a']) if r['a'] is not None else '-':>5} "
            f"{fmt_met(r['met_b']) if r['b'] is not None else '-':>5}  {r['target'] or '-'}"
        )
    return lines


def _load(run: dict[str, Any]) -> str:
    start, end = run.get("load_at_start"), run.get("load_at_end")
    if not start:
        return "?"
    load = f"{start[0]:.2f} -> {end[0]:.2f}" if end else f"{start[0]:.2f}"
    speed = run.get("machine_speed_s")  # runs saved before it was recorded have none
    return f"{load}, machine speed {fmt_speed(speed)}" if speed else load


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.bench.compare A.json B.json", file=sys.stderr)
        return 2
    try:
        a, b = (load_run(Path(p)) for p in argv)
    except NotARun as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(format_comparison(a, b)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
