"""A real client we did not write: the Pub/Sub emulator's own push subscription delivers
fake-gcs-server's notifications to ``mountsync serve``'s ``POST /push/gcs``; a worker applies
them, and the change feed (``GET /api/v1/changes``) ends where the bucket is.

The emulator cannot sign OIDC tokens, so serve runs this receiver with ``--insecure-receivers``
(the OIDC check itself is covered in test_push.py with locally signed tokens).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.gcs.test_e2e_pubsub import bucket_state, make_bucket, put
from tests.helpers import Proc, bearer, free_port, wait_for
from tests.standins.gcs import GcsEndpoints, PubSubEndpoints


def test_the_emulators_push_subscription_delivers_to_serve(
    fake_gcs_notifying: GcsEndpoints, pubsub_emulator: PubSubEndpoints, bucket_name: str, test_env: dict[str, str],
    add_mount: Callable[..., Any], catalog_state: Callable[[str], Any], worker: Any, catalog: Any,
    procs: list[Proc], tmp_path: Path,
) -> None:  # fmt: skip
    port = free_port()
    serve = Proc.mountsync(["serve", "--port", str(port), "--receivers", "gcs-push", "--insecure-receivers"],
                           {**test_env, **fake_gcs_notifying.env()}, tmp_path / "serve.log").start()  # fmt: skip
    procs.append(serve)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            assert serve.alive(), serve.tail()
            return False

    wait_for(up, timeout=60, what="serve to answer")
    topic = fake_gcs_notifying.topic.rsplit("/", 1)[1]
    pubsub_emulator.create_subscription(f"push-{bucket_name}", topic,
                                        push_config={"push_endpoint": f"{base}/push/gcs"})  # fmt: skip
    storage = make_bucket(fake_gcs_notifying, bucket_name, add_mount)
    mount = "m" + bucket_name[-12:]
    for key in ("seq/0001.png", "seq/0002.png", "seq/0003.png"):
        put(storage, key, key.encode())
    put(storage, "seq/0002.png", b"second version")
    storage.delete("seq/0003.png")
    bucket = bucket_state(storage)
    request = urllib.request.Request(f"{base}/api/v1/changes?mount={mount}&limit=100", headers=bearer(catalog))

    def feed_ends_as_the_bucket() -> bool:
        """Pushes may arrive in any order (a stale one writes nothing), so compare end states:
        each key's last entry is the bucket's content, or a delete for a key the bucket lacks."""
        with urllib.request.urlopen(request, timeout=30) as answer:
            changes = json.loads(answer.read())["changes"]
        last = {c["key"]: c for c in changes}
        live = {k: c["etag"] for k, c in last.items() if c["kind"] != "deleted"}
        return live == {k: v["etag"] for k, v in bucket.items()} and catalog_state(mount) == bucket

    wait_for(feed_ends_as_the_bucket, timeout=120, what="the feed and the catalog to end as the bucket")
    assert "unauthenticated receiver" in serve.log()  # --insecure-receivers is never silent
