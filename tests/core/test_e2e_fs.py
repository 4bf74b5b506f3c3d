"""End to end on the fs provider with a real Celery worker, producer and CLI."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mountsync.shared.storage.local import fs_etag
from tests.conftest import ROOT
from tests.helpers import wait_for


def dir_state(root: Path) -> dict[str, dict[str, object]]:
    state = {}
    for path in root.rglob("*"):
        if path.is_file():
            st = path.stat()
            state[path.relative_to(root).as_posix()] = {
                "size": st.st_size,
                "etag": fs_etag(st),
                "version": None,
            }
    return state


def make_tree(root: Path, folders: int, per_folder: int) -> None:
    for f in range(folders):
        folder = root / f"seq_{f:03d}"
        folder.mkdir(parents=True)
        for i in range(per_folder):
            (folder / f"frame_{i:05d}.jpg").write_bytes(b"x" * (i % 7 + 1))


def test_reindex_of_a_2000_file_tree(tmp_path, add_mount, catalog_state, cli, worker) -> None:
    make_tree(tmp_path, folders=20, per_folder=100)
    add_mount("tree", f"file://{tmp_path}")
    first = cli("reindex", "tree", "--wait", "--json", "--timeout", "120", check=True)
    import json

    summary = json.loads(first.stdout)
    assert summary["state"] == "succeeded"
    assert (summary["listed"], summary["created"], summary["deleted"]) == (2000, 2000, 0)
    assert catalog_state("tree") == dir_state(tmp_path)
    # Change a few files behind the system's back: the reconcile finds exactly those.
    (tmp_path / "seq_000" / "frame_00000.jpg").unlink()
    (tmp_path / "seq_001" / "frame_00001.jpg").write_bytes(b"changed content")
    (tmp_path / "seq_019" / "new.jpg").write_bytes(b"n")
    second = json.loads(cli("reindex", "tree", "--wait", "--json", check=True).stdout)
    assert (second["created"], second["updated"], second["deleted"]) == (1, 1, 1)
    assert second["folders_checked"] == 3 and second["folders_skipped"] == 17
    assert catalog_state("tree") == dir_state(tmp_path)
    third = json.loads(cli("reindex", "tree", "--wait", "--json", check=True).stdout)
    assert (third["created"], third["updated"], third["deleted"], third["unchanged"]) == (0, 0, 0, 2000)


def random_changes(root: Path, rng: random.Random, count: int) -> None:
    files: list[Path] = sorted(p for p in root.rglob("*") if p.is_file())
    for step in range(count):
        roll = rng.random()
        if roll < 0.45 or not files:
            folder = root / f"d{rng.randrange(6)}" / (f"s{rng.randrange(3)}" if rng.random() < 0.3 else "")
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"img_{step:04d}.png"
            path.write_bytes(os.urandom(rng.randrange(1, 64)))
            files.append(path)
        elif roll < 0.7:
            rng.choice(files).write_bytes(os.urandom(rng.randrange(64, 128)))
        elif roll < 0.9:
            victim = files.pop(rng.randrange(len(files)))
            victim.unlink()
        else:
            src = files.pop(rng.randrange(len(files)))
            dst = src.with_name(f"renamed_{step:04d}{src.suffix}")
            src.rename(dst)
            files.append(dst)


@pytest.mark.slow
def test_500_random_changes_through_the_fs_producer_converge(
    tmp_path, add_mount, catalog, catalog_state, test_env, worker
) -> None:
    from mountsync.shared.catalog.delete_guard import Guard
    from mountsync.shared.catalog.held import set_guard

    root = tmp_path / "watched"
    root.mkdir()
    make_tree(root, folders=3, per_folder=20)
    mount = add_mount("watched", f"file://{root}")
    # The churn deletes far more than 30 % of this small tree within minutes: the mass-delete guard
    # would (rightly) hold it. This test is about events converging, so the guard is off here.
    set_guard(catalog, mount.id, Guard(0, 0))
    producer = subprocess.Popen(
        [sys.executable, "-m", "mountsync.shared", "produce", "fs", "--mount", "watched"],
        env=test_env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: catalog_state("watched") == dir_state(root),
            timeout=60,
            what="start-up reindex to import the tree",
        )
        random_changes(root, random.Random(11), 500)
        wait_for(
            lambda: catalog_state("watched") == dir_state(root),
            timeout=90,
            what="catalog to equal the directory after 500 changes",
        )
        # Moving a whole directory out of the tree is one inotify event: it must still converge.
        (root / "d1").rename(tmp_path / "moved_out")
        wait_for(
            lambda: catalog_state("watched") == dir_state(root),
            timeout=60,
            what="catalog to drop a directory moved out",
        )
    finally:
        producer.send_signal(signal.SIGTERM)
        _, err = producer.communicate(timeout=30)
    assert producer.returncode == 0, err.decode()
    assert b"Traceback" not in err
