"""``mountsync token ...`` and ``serve``'s refusal to run unauthenticated receivers, as a user runs them."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from mountsync.shared.config import Settings
from tests.conftest import env_for
from tests.helpers import Proc, free_port, wait_for


def test_a_token_is_printed_once_and_stored_only_as_a_hash(cli, catalog) -> None:
    created = cli("token", "create", "platform", "--scope", "write", "--json", check=True)
    doc = json.loads(created.stdout)
    assert doc["name"] == "platform" and doc["scope"] == "write" and doc["token"].startswith("mst_")
    stored = catalog.execute("SELECT token_id, salt, token_hash FROM api_tokens").fetchall()
    assert len(stored) == 1 and doc["token"].split("_", 2)[2].encode() not in b"".join(bytes(v) for v in stored[0][1:])
    listed = cli("token", "list", "--json", check=True)
    assert [t["name"] for t in json.loads(listed.stdout)] == ["platform"] and doc["token"] not in listed.stdout
    again = cli("token", "create", "platform")
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1 and "exists" in again.stderr
    bad = cli("token", "create", "x", "--scope", "admin")
    assert bad.returncode == 2 and "--scope" in bad.stderr and "Traceback" not in bad.stderr
    assert cli("token", "revoke", "platform", "--json", check=True).returncode == 0
    gone = cli("token", "revoke", "platform")
    assert gone.returncode == 2 and "no token named" in gone.stderr


def test_serve_refuses_receivers_without_authentication(cli) -> None:
    refused = cli("serve", "--port", str(free_port()))
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    for needed in ("/push/gcs", "MOUNTSYNC_EVENTGRID_SECRET", "MOUNTSYNC_MINIO_WEBHOOK_TOKEN", "--insecure-receivers"):
        assert needed in lines[0]
    bad = cli("serve", "--receivers", "smtp")
    assert bad.returncode == 2 and "unknown smtp" in bad.stderr


def test_insecure_receivers_start_with_a_warning(settings: Settings, procs: list[Proc], tmp_path: Path) -> None:
    port = free_port()
    serve = Proc.mountsync(["serve", "--port", str(port), "--insecure-receivers"], env_for(settings),
                           tmp_path / "serve.log").start()  # fmt: skip
    procs.append(serve)

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    wait_for(lambda: up() or not serve.alive(), timeout=60, what="serve to answer /healthz")
    assert serve.alive(), serve.tail()
    assert "unauthenticated receiver" in serve.log() and "/eventgrid" in serve.log()
