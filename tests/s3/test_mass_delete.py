"""1,000 of 1,500 objects deleted on S3 (moto), found by a reconcile through a real worker: the deletes
are held (objects stay live and marked, nothing reaches the change feed), one ``mass-delete`` alert
reaches the webhook, ``deletes approve`` applies them, and the catalog converges on the bucket.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from mountsync.shared.config import Settings
from tests.alignment.support import Receiver, start_receiver
from tests.conftest import Cli, WorkerProcess, env_for
from tests.helpers import free_port, live_count, wait_for
from tests.standins.s3 import MotoEndpoints

pytestmark = pytest.mark.faults
TOTAL, WIPED = 1500, 1000


@pytest.fixture
def webhook() -> Iterator[str]:
    server = start_receiver(free_port())
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts/200"
    server.shutdown()
    server.server_close()


def mass_delete_alerts() -> list[dict[str, Any]]:
    return [b["alert"] for _, b in Receiver.received if b.get("alert", {}).get("kind") == "mass-delete"]


def feed_kinds(settings: Settings) -> list[str]:
    with redis_lib.Redis.from_url(settings.redis_url) as client:
        return [f[b"kind"].decode() for _, f in client.xrange(f"{settings.redis_prefix}mountsync:feed")]


def test_a_wipe_found_by_a_reconcile_is_held_alerted_then_approved(
    settings: Settings, moto: MotoEndpoints, catalog: Any, webhook: str, tmp_path: Path
) -> None:
    own = settings.with_(redis_prefix=f"{settings.redis_prefix}wipe{uuid.uuid4().hex[:6]}:")
    env = env_for(own, **moto.env(), MOUNTSYNC_ALERT_WEBHOOK=webhook)
    s3 = moto.client("s3")
    bucket = f"wipe-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    keys = [f"cam{i % 5}/{i:05d}.jpg" for i in range(TOTAL)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    cli = Cli(env)
    worker = WorkerProcess(env, tmp_path / "w.log", "changes,reindex,alignment", 2).start()
    try:
        cli("mount", "add", "wiped", f"s3://{bucket}/", "--json", check=True)  # queues the first reindex
        wait_for(lambda: live_count(own.database_url, "wiped") == TOTAL, timeout=120, what="the first reindex")
        for start in range(0, WIPED, 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start : start + WIPED]]})
        run = json.loads(cli("reindex", "wiped", "--wait", "--json", check=True, timeout=180).stdout)
        assert run["state"] == "succeeded" and (run["deleted"], run["held"]) == (0, WIPED)
        held = json.loads(cli("deletes", "list", "wiped", "--json", check=True).stdout)
        assert held["held"] == WIPED and held["alert"]
        listed = json.loads(cli("ls", "wiped", "--json", check=True).stdout)
        assert len(listed) == TOTAL and sum(r["held"] for r in listed) == WIPED
        assert "deleted" not in feed_kinds(own)  # nothing propagated
        wait_for(lambda: mass_delete_alerts(), timeout=60, what="the mass-delete alert at the webhook")
        approved = json.loads(cli("deletes", "approve", "wiped", "--json", check=True).stdout)
        assert approved["approved"] == WIPED
        assert live_count(own.database_url, "wiped") == TOTAL - WIPED
        assert feed_kinds(own).count("deleted") == WIPED
        again = json.loads(cli("reindex", "wiped", "--wait", "--json", check=True, timeout=180).stdout)
        assert again["created"] == again["deleted"] == again["updated"] == again["held"] == 0
    finally:
        worker.stop()
    alerts = mass_delete_alerts()
    assert len(alerts) == 1 and alerts[0]["details"]["held"] == WIPED and alerts[0]["mount"] == "wiped"
