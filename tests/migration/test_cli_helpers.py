"""CLI helpers: option values with size units, items files, the spec the CLI builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from mountsync.shared.errors import BadInput
from mountsync.shared.migration.spec import parse_spec
from mountsync.workers.migration.cli import build_spec, human_bytes, human_eta, parse_value, read_items


@pytest.mark.parametrize(
    ("text", "value"),
    [("16MiB", 16 * 1024**2), ("5mib", 5 * 1024**2), ("1.5GiB", int(1.5 * 1024**3)), ("8MB", 8_000_000),
     ("12", 12), ("true", True), ("0.5", 0.5), ("abc", "abc")],
)  # fmt: skip
def test_parse_value(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_items_file_and_spec(tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text('{"entity_id": "1", "path": "a.jpg"}\n\n{"entity_id": 2, "path": "b/c.jpg", "size": 3}\n')
    spec = build_spec("file:///data", "s3://b/p", str(items), None, "platform.relink", "platform", "job-9",
                      ["part_size=32MiB", "skip_existing=false"], "", "http://127.0.0.1:9000")  # fmt: skip
    parsed = parse_spec(spec)
    assert [i.entity_id for i in parsed.items] == ["1", "2"]
    assert parsed.callback.task == "platform.relink" and parsed.job_id == "job-9"
    assert parsed.options.part_size == 32 * 1024**2 and parsed.options.skip_existing is False
    assert parsed.options.destination_storage == {"endpoint_url": "http://127.0.0.1:9000"}


def test_bad_cli_input(tmp_path: Path) -> None:
    broken = tmp_path / "bad.jsonl"
    broken.write_text('{"entity_id": "1", "path": "a"}\nnot json\n')
    with pytest.raises(BadInput, match="line 2"):
        read_items(str(broken))
    with pytest.raises(BadInput, match="No such file"):
        read_items(str(tmp_path / "missing.jsonl"))
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "\n")
    with pytest.raises(BadInput, match="line 1: JSON nested too deeply"):
        read_items(str(deep))
    assert parse_value("[" * 100_000) == "[" * 100_000  # a string, which the option's check refuses
    with pytest.raises(BadInput, match="KEY=VALUE"):
        build_spec("file:///a", "s3://b/c", None, None, None, "q", None, ["oops"], "", "")
    with pytest.raises(BadInput, match="not both"):
        build_spec("file:///a", "s3://b/c", None, "http://x", "t", "q", None, [], "", "")


def test_human_formats() -> None:
    assert human_bytes(0) == "0 B" and human_bytes(1536) == "1.5 KiB" and human_bytes(3 * 1024**3) == "3.0 GiB"
    assert human_eta(None) == "-" and human_eta(75) == "1:15" and human_eta(3725) == "1:02:05"
