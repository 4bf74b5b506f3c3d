"""Benchmark reporting: every benchmark adds rows; one table with ratios prints at the end."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Row:
    name: str
    value: float
    unit: str
    baseline_name: str
    baseline_value: float | None
    target: str

    @property
    def ratio(self) -> float | None:
        if not self.baseline_value:
            return None
        return self.value / self.baseline_value


@dataclass
class BenchReport:
    rows: list[Row] = field(default_factory=list)

    def row(
        self,
        name: str,
        value: float,
        unit: str,
        baseline_name: str = "",
        baseline_value: float | None = None,
        target: str = "",
    ) -> Row:
        added = Row(name, float(value), unit, baseline_name, baseline_value, target)
        self.rows.append(added)
        return added


_REPORT = BenchReport()


@pytest.fixture(scope="session")
def bench_report() -> BenchReport:
    return _REPORT


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _REPORT.rows:
        return
    tr = terminalreporter
    tr.section("mountsync benchmarks")
    header = f"{'benchmark':44} {'value':>14} {'unit':10} {'baseline':34} {'baseline value':>14} {'ratio':>7}  target"
    tr.write_line(header)
    tr.write_line("-" * len(header))
    for r in _REPORT.rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        tr.write_line(
            f"{r.name:44} {_fmt(r.value):>14} {r.unit:10} {r.baseline_name:34} "
            f"{_fmt(r.baseline_value):>14} {ratio:>7}  {r.target}"
        )
    out = Path(os.environ.get("MOUNTSYNC_BENCH_JSON", ".mountsync/bench.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([asdict(r) | {"ratio": r.ratio} for r in _REPORT.rows], indent=2))
