"""The benchmark table: rows with figure, baseline, ratio and target; printed once and saved as JSON.

Pure parts (``target_met``, ``format_table``, ``run_document``) are separate from the pytest hooks in
``conftest.py`` so ``compare.py`` and the unit tests read the same shapes. A run is saved under
``.mountsync/bench/<UTC time>.json`` (or ``MOUNTSYNC_BENCH_JSON``) with the load average at its
start and end: the machine is shared, and two runs are only comparable beside their load.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# "<= 1.5x", ">= 0.7x baseline", "< 300 MiB", ">= 20,000/s": the first comparison in a target.
_COMPARISON = re.compile(r"(<=|>=|<|>|≤|≥)\s*([0-9][0-9,]*(?:\.[0-9]+)?)\s*(x\b)?")
_OPS = {
    "<=": float.__le__,
    "≤": float.__le__,
    ">=": float.__ge__,
    "≥": float.__ge__,
    "<": float.__lt__,
    ">": float.__gt__,
}
# The target of a row that goes through a worker's apply while its baseline stops at the queue: a
# figure to read, not a comparison (the baseline does less work).
END_TO_END = "end-to-end figure (worker-bound)"
# The pull consumers' target: within 1.3x of a bare receive + acknowledge loop on the same stand-in.
WITHIN_1_3X = "mountsync >= 0.77x baseline (within 1.3x)"


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

    @property
    def met(self) -> bool | None:
        return target_met(self.target, self.value, self.ratio)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ratio": self.ratio, "met": self.met}


@dataclass
class BenchReport:
    rows: list[Row] = field(default_factory=list)
    started: str = field(default_factory=lambda: _now())
    load_at_start: tuple[float, ...] = field(default_factory=lambda: os.getloadavg())
    speed_at_start: dict[str, float] = field(default_factory=dict)  # measure_start() fills it

    def measure_start(self) -> None:
        """The machine's speed before the first benchmark (once; a run without one needs none)."""
        if not self.speed_at_start:
            self.speed_at_start = machine_speed()

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


def machine_speed(tries: int = 3) -> dict[str, float]:
    """CPU seconds of two fixed workloads, best of ``tries`` each: how fast the machine runs now.

    On a shared VM the same code's CPU per change moves by 20-50% within an hour (the host's other
    tenants). ``loop`` is pure interpreter work that stays in the cache; ``json`` builds, encodes
    and decodes 100,000 small dicts (~100 MB touched), as the pipeline's processes do. Read at a
    run's start and end, they tell a slow machine from a slower build."""
    loop = json_s = float("inf")
    for _ in range(tries):
        started, total = time.process_time(), 0
        for i in range(2_000_000):
            total += i * i
        loop = min(loop, time.process_time() - started)
        started = time.process_time()
        rows = [{"key": f"cam{i % 200:03d}/{i:07d}.jpg", "size": i, "etag": f"{i:032x}"} for i in range(100_000)]
        json.loads(json.dumps(rows))
        json_s = min(json_s, time.process_time() - started)
    return {"loop": loop, "json": json_s}


def fmt_speed(speed: dict[str, list[float]]) -> str:
    """``{"loop": [start, end], "json": [start, end]}`` as one phrase for a header line."""
    return ", ".join(f"{name} {start:.3f} -> {end:.3f}" for name, (start, end) in speed.items()) + " CPU-s"


def target_met(target: str, value: float, ratio: float | None) -> bool | None:
    """Whether a row meets its target; None when the target states no number to check.

    A number followed by ``x`` is checked against the ratio, any other number against the value
    (in the row's own unit)."""
    match = _COMPARISON.search(target)
    if match is None:
        return None
    op, number, per_ratio = match.group(1), float(match.group(2).replace(",", "")), match.group(3)
    subject = ratio if per_ratio else value
    if subject is None:
        return None
    return bool(_OPS[op](float(subject), number))


def fmt_number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"


def fmt_ratio(ratio: float | None) -> str:
    return f"{ratio:.2f}x" if ratio is not None else "-"


def fmt_met(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[met]


def format_table(rows: list[dict[str, Any]]) -> list[str]:
    """Lines of the one table (rows as saved in JSON, so a saved run prints the same way)."""
    name_w = max([44, *(len(r["name"]) for r in rows)])
    base_w = max([30, *(len(r["baseline_name"]) for r in rows)])
    header = (
        f"{'benchmark':{name_w}} {'figure':>12} {'unit':10} {'baseline':{base_w}} {'baseline fig.':>13} "
        f"{'ratio':>7} {'met':>4}  target"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['name']:{name_w}} {fmt_number(r['value']):>12} {r['unit']:10} {r['baseline_name'] or '-':{base_w}} "
            f"{fmt_number(r['baseline_value']):>13} {fmt_ratio(r['ratio']):>7} {fmt_met(r.get('met')):>4}  "
            f"{r['target'] or '-'}"
        )
    return lines


def run_document(report: BenchReport) -> dict[str, Any]:
    """The JSON saved for one run: when, where (commit, cores, load) and every row."""
    return {
        "started": report.started,
        "finished": _now(),
        "commit": _commit(),
        "cpus": os.cpu_count(),
        "load_at_start": list(report.load_at_start),
        "load_at_end": list(os.getloadavg()),
        "machine_speed_s": _speed_pairs(report.speed_at_start, machine_speed()) if report.speed_at_start else None,
        "rows": [r.as_dict() for r in report.rows],
    }


def _speed_pairs(start: dict[str, float], end: dict[str, float]) -> dict[str, list[float]]:
    return {name: [start[name], end[name]] for name in start}


def save_path(started: str, root: Path) -> Path:
    explicit = os.environ.get("MOUNTSYNC_BENCH_JSON")
    if explicit:
        return Path(explicit)
    return root / ".mountsync" / "bench" / f"{started.replace(':', '').replace('-', '')}.json"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
    except OSError:
        return ""
    return out.stdout.strip()
