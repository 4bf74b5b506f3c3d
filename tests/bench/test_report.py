"""The benchmark table's targets and the comparison of two saved runs (plain tests, not benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.compare import main as compare_main
from tests.bench.report import END_TO_END, WITHIN_1_3X, BenchReport, format_table, run_document, target_met


@pytest.mark.parametrize(
    ("target", "value", "ratio", "met"),
    [
        ("<= 1.5x", 0.3, 1.49, True),
        ("<= 1.5x", 0.3, 1.56, False),
        (WITHIN_1_3X, 10.0, 0.8, True),
        (WITHIN_1_3X, 10.0, 0.76, False),
        (">= 20,000/s", 19_377.0, None, False),
        (">= 20,000/s", 31_350.0, 1.6, True),
        ("< 300 MiB", 212.0, None, True),
        ("<= 1.5x", 0.3, None, None),  # no baseline, nothing to check
        ("bounded by MAX_QUEUE_DEPTH", 3.0, None, None),
        (END_TO_END, 11_798.0, 0.32, None),  # an end-to-end row beside a queue-only baseline
        ("", 3.0, 1.0, None),
    ],
)
def test_targets_are_checked_against_ratio_or_value(target: str, value: float, ratio: float | None, met: bool) -> None:
    assert target_met(target, value, ratio) is met


def saved_run(path: Path, rows: list[tuple[str, float, float | None, str]], *, speed: bool = False) -> Path:
    report = BenchReport()
    if speed:
        report.measure_start()
    for name, value, baseline, target in rows:
        report.row(name, value, "s", "walk" if baseline else "", baseline, target)
    path.write_text(json.dumps(run_document(report)))
    return path


def test_table_shows_figure_baseline_ratio_and_target() -> None:
    report = BenchReport()
    report.row("reindex 100k files, in sync", 0.30, "s", "os.scandir walk + stat", 0.20, "<= 1.5x")
    lines = format_table(run_document(report)["rows"])
    assert lines[0].split()[:3] == ["benchmark", "figure", "unit"]
    assert "os.scandir walk + stat" in lines[2] and "1.50x" in lines[2] and "yes" in lines[2]


def test_compare_prints_both_runs_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = saved_run(tmp_path / "a.json", [("reindex", 0.30, 0.20, "<= 1.5x"), ("gone", 1.0, None, "")])
    b = saved_run(tmp_path / "b.json", [("reindex", 0.27, 0.20, "<= 1.5x"), ("new", 2.0, None, "")])
    assert compare_main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    reindex = next(line for line in out.splitlines() if line.startswith("reindex"))
    assert "-10.0%" in reindex and "1.50x" in reindex and "1.35x" in reindex
    assert any(line.startswith("gone") for line in out.splitlines())
    assert any(line.startswith("new") for line in out.splitlines())


def test_a_run_records_the_machine_speed_at_start_and_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = saved_run(tmp_path / "a.json", [("reindex", 0.30, 0.20, "<= 1.5x")], speed=True)
    speed = json.loads(a.read_text())["machine_speed_s"]
    assert set(speed) == {"loop", "json"} and all(0 < s < 10 for pair in speed.values() for s in pair)
    old = tmp_path / "old.json"  # saved before the speed was recorded
    old.write_text(json.dumps({k: v for k, v in json.loads(a.read_text()).items() if k != "machine_speed_s"}))
    unmeasured = json.loads(saved_run(tmp_path / "u.json", [("reindex", 0.30, 0.20, "<= 1.5x")]).read_text())
    assert unmeasured["machine_speed_s"] is None  # no benchmark asked for the report: nothing measured
    assert compare_main([str(old), str(a)]) == 0
    header_a, header_b = capsys.readouterr().out.splitlines()[:2]
    loop, json_s = speed["loop"], speed["json"]
    assert "machine speed" not in header_a
    assert (
        f"machine speed loop {loop[0]:.3f} -> {loop[1]:.3f}, json {json_s[0]:.3f} -> {json_s[1]:.3f} CPU-s" in header_b
    )


def test_compare_refuses_a_file_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = saved_run(tmp_path / "a.json", [("reindex", 0.30, 0.20, "<= 1.5x")])
    bad = tmp_path / "b.json"
    bad.write_text("{not json")
    assert compare_main([str(good), str(bad)]) == 2
    assert compare_main([str(good), str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("error:") and "missing.json" in err[1]
