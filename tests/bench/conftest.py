"""Benchmark reporting: every benchmark adds rows; one table prints at the end and is saved as JSON.

Compare two saved runs with ``python -m tests.bench.compare A.json B.json``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.bench.report import BenchReport, fmt_speed, format_table, run_document, save_path
from tests.conftest import ROOT

_REPORT = BenchReport()


@pytest.fixture(scope="session")
def bench_report() -> BenchReport:
    _REPORT.measure_start()  # before the first benchmark that reports
    return _REPORT


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _REPORT.rows:
        return
    document = run_document(_REPORT)
    out = save_path(_REPORT.started, ROOT)
    out.parent.mkdir(parents=True, exist_ok=True)
    import json

    out.write_text(json.dumps(document, indent=2) + "\n")
    tr = terminalreporter
    tr.section("mountsync benchmarks")
    load = " / ".join(f"{a:.2f}" for a in document["load_at_start"])
    load_end = " / ".join(f"{a:.2f}" for a in document["load_at_end"])
    tr.write_line(f"{document['cpus']} CPUs; load average (1/5/15 min) {load} at start, {load_end} at end")
    if document["machine_speed_s"]:
        tr.write_line(f"machine speed (fixed workloads, lower is faster; compare runs by it): "
                      f"{fmt_speed(document['machine_speed_s'])}")  # fmt: skip
    for line in format_table(document["rows"]):
        tr.write_line(line)
    tr.write_line(f"saved as {out}")
