"""``mountsync reindex NAME --dry-run``: what a reconcile would create, update and delete (keys and
counts), with a real worker; nothing is applied, and the next real reconcile does exactly that."""

from __future__ import annotations

import json


def test_dry_run_lists_the_differences_and_applies_nothing(tmp_path, add_mount, catalog_state, cli, worker) -> None:
    root = tmp_path / "tree"
    (root / "cam").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (root / "cam" / name).write_bytes(b"1")
    add_mount("dry", f"file://{root}")
    cli("reindex", "dry", "--wait", "--json", check=True)
    before = catalog_state("dry")
    (root / "cam" / "d.jpg").write_bytes(b"new")
    (root / "cam" / "b.jpg").write_bytes(b"changed")
    (root / "cam" / "c.jpg").unlink()
    plan = json.loads(cli("reindex", "dry", "--dry-run", "--json", check=True).stdout)
    assert plan["dry_run"] is True and (plan["created"], plan["updated"], plan["deleted"]) == (1, 1, 1)
    assert plan["keys"] == {"created": ["cam/d.jpg"], "updated": ["cam/b.jpg"], "deleted": ["cam/c.jpg"]}
    assert not plan["keys_truncated"] and plan["listed"] == 3
    assert catalog_state("dry") == before  # nothing applied
    plain = cli("reindex", "dry", "--dry-run", check=True).stdout
    assert "would delete cam/c.jpg" in plain and "1 to create, 1 to update, 1 to delete" in plain
    real = json.loads(cli("reindex", "dry", "--wait", "--json", check=True).stdout)
    assert (real["created"], real["updated"], real["deleted"]) == (1, 1, 1)
    assert sorted(catalog_state("dry")) == ["cam/a.jpg", "cam/b.jpg", "cam/d.jpg"]
    bad = cli("reindex", "nope", "--dry-run")
    assert bad.returncode == 2 and bad.stdout == "" and "no mount named" in bad.stderr
