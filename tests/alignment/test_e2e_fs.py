"""End to end on the fs provider: a real worker mirrors a folder (reindex through the one write
path), the alignment hook checks it, and the CLI shows alerts, quarantine and pinned frames.

Scenario per the issue: 100 frames pinned with annotations up to frame 40, then an insert, a
remove, a rename, an overwrite and an append, each on a fresh mirror.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mountsync.shared.config import Settings
from mountsync.shared.queues import make_client
from tests.helpers import wait_for

MOUNT = "fsalign"
FRAMES = [f"seq/frame_{i:04d}.png" for i in range(100)]


def write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def run(cli: Any, *args: str) -> Any:
    proc = cli(*args, "--json", check=True)
    return json.loads(proc.stdout)


def sync(cli: Any) -> None:
    """Mirror the directory into the catalog (the same write path events use)."""
    run(cli, "reindex", MOUNT, "--wait")


def dataset(cli: Any) -> dict[str, Any] | None:
    return next((d for d in run(cli, "datasets", MOUNT) if d["dataset"] == "seq"), None)


def open_alerts(cli: Any) -> list[dict[str, Any]]:
    return run(cli, "alerts", MOUNT)


@pytest.fixture
def mirror(tmp_path: Path, add_mount: Callable[..., Any], cli: Any, worker: Any) -> Path:
    """100 frames and their annotation file, mirrored, pinned with annotations up to frame 40."""
    root = tmp_path / "root"
    for i, key in enumerate(FRAMES):
        write(root / key, b"\x89PNG frame %d" % i)
    write(root / "seq/seq.csv", b"# track annotations\n")
    add_mount(MOUNT, f"file://{root}")
    sync(cli)
    first = wait_for(lambda: (d := dataset(cli)) and d["pinned"] and d, what="first import pinned")
    assert (first["frames"], first["pinned_frames"], first["pinned_by"]) == (100, 100, "import")
    assert first["annotations"] == ["seq/seq.csv"]
    pinned = run(cli, "pin", MOUNT, "seq", "--last-annotated", "40")
    assert (pinned["pinned_frames"], pinned["last_annotated"]) == (100, 40)
    return root


def insert(root: Path) -> None:
    write(root / "seq/frame_0020b.png", b"\x89PNG inserted")


def remove(root: Path) -> None:
    (root / "seq/frame_0005.png").unlink()


def rename(root: Path) -> None:
    os.rename(root / "seq/frame_0030.png", root / "seq/zz_0030.png")  # sorts last now


def overwrite(root: Path) -> None:
    write(root / "seq/frame_0010.png", b"\x89PNG a different picture")


# mutation, kind, first shifted index, frames moved, annotated frames moved
BREAKING = [
    (insert, "insert", 21, 79, 20),
    (remove, "remove", 5, 95, 36),
    (rename, "rename", 30, 70, 11),
    (overwrite, "replace", 10, 1, 1),
]


@pytest.mark.parametrize(("mutate", "kind", "first", "moved", "annotated"), BREAKING,
                         ids=[b[1] for b in BREAKING])  # fmt: skip
def test_breaking_change_alerts_quarantines_and_serves_the_pin(
    mirror: Path, cli: Any, mutate: Callable[[Path], None], kind: str, first: int, moved: int,
    annotated: int,
) -> None:  # fmt: skip
    mutate(mirror)
    sync(cli)
    (alert,) = wait_for(lambda: open_alerts(cli), what=f"an open {kind} alert")
    assert (alert["kind"], alert["breaking"], alert["quarantined"]) == (kind, True, True)
    assert (alert["first_shifted_index"], alert["frames_moved"]) == (first, moved)
    assert (alert["annotated_frames_moved"], alert["last_annotated"]) == (annotated, 40)
    assert dataset(cli)["quarantined"]  # type: ignore[index]

    served = run(cli, "frames", MOUNT, "seq")
    assert (served["source"], served["quarantined"]) == ("pinned", True)
    assert [f["key"] for f in served["frames"]] == FRAMES  # annotations keep their images
    if kind == "replace":
        assert served["frames"][10]["live"] == "changed"

    acked = run(cli, "alerts", "ack", str(alert["id"]))
    assert acked["status"] == "acked"
    live = run(cli, "frames", MOUNT, "seq")
    assert (live["source"], live["quarantined"]) == ("live", False)
    assert open_alerts(cli) == []
    closed = run(cli, "alerts", MOUNT, "--all")
    assert [(a["id"], a["status"]) for a in closed] == [(alert["id"], "acked")]


def test_append_flows_in_without_an_alert(mirror: Path, cli: Any) -> None:
    write(mirror / "seq/frame_0100.png", b"\x89PNG appended")
    write(mirror / "seq/frame_0101.png", b"\x89PNG appended too")
    sync(cli)
    grown = wait_for(lambda: (d := dataset(cli)) and d["pinned_frames"] == 102 and d, what="pin to grow")
    assert (grown["quarantined"], grown["last_annotated"], grown["open_alerts"]) == (False, 40, 0)
    served = run(cli, "frames", MOUNT, "seq")
    assert served["source"] == "live"
    assert [f["key"] for f in served["frames"]][-2:] == ["seq/frame_0100.png", "seq/frame_0101.png"]
    assert run(cli, "alerts", MOUNT, "--all") == []


def test_new_folder_becomes_a_dataset_without_an_alert(mirror: Path, cli: Any) -> None:
    write(mirror / "clips/a.mp4", b"\x00\x00\x00\x18ftypmp42")
    write(mirror / "clips/a.json", b"{}")
    write(mirror / "seq2/001.jpg", b"\xff\xd8")
    sync(cli)
    wanted = {"seq", "seq2", "clips/a.mp4"}
    found = wait_for(lambda: {d["dataset"]: d for d in run(cli, "datasets", MOUNT)} if wanted <= {
        d["dataset"] for d in run(cli, "datasets", MOUNT)} else None, what="new datasets")  # fmt: skip
    assert found["clips/a.mp4"]["type"] == "video"
    assert found["clips/a.mp4"]["annotations"] == ["clips/a.json"]
    assert found["seq2"]["pinned"]
    assert run(cli, "alerts", MOUNT, "--all") == []


def test_other_services_pin_by_task_name(mirror: Path, cli: Any, settings: Settings) -> None:
    client = make_client(settings)  # what another service does: no import of our code
    client.send_task("mountsync.alignment.pin", args=[MOUNT, "seq", 60], queue="alignment")
    wait_for(lambda: (d := dataset(cli)) and d["last_annotated"] == 60, what="pin sent by name")
    insert(mirror)
    sync(cli)
    (alert,) = wait_for(lambda: open_alerts(cli), what="an insert alert")
    assert (alert["annotated_frames_moved"], alert["last_annotated"]) == (40, 60)


def test_cli_input_errors_exit_2(mirror: Path, cli: Any) -> None:
    for args in (("pin", MOUNT, "seq", "--last-annotated", "100"), ("pin", MOUNT, "nowhere"),
                 ("frames", "no-such-mount", "seq"), ("alerts", "ack", "99999"),
                 ("pin", MOUNT, "seq", "--last-annotated", "x")):  # fmt: skip
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stdout == ""
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
