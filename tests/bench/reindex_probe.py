"""Run one reindex (or a bare baseline) in a fresh process and print seconds and peak RSS as JSON.

``python -m tests.bench.reindex_probe walk ROOT``, ``... s3-list BUCKET`` (a bare boto3
``list_objects_v2`` paginate; endpoint and credentials from the AWS_* environment), or
``... reindex ROOT DATABASE_URL MOUNT``.
"""

from __future__ import annotations

import json
import os
import sys
import time


def walk(root: str) -> int:
    count = 0
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    entry.stat(follow_symlinks=False)
                    count += 1
    return count


def s3_list(bucket: str) -> int:
    """What any S3 client does to see a bucket: page through list_objects_v2 and read each entry."""
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", ()):
            count += bool(item["Key"]) and item["Size"] >= 0
    return count


def peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss would include the parent's peak: Linux keeps it across exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reindex(database_url: str, mount_name: str) -> dict[str, object]:
    """Set up like a warm worker (imports, pool, mount), then time only the reindex."""
    import redis

    from mountsync.shared.catalog.db import open_pool
    from mountsync.shared.catalog.mounts import Mounts
    from mountsync.shared.clock import SystemClock
    from mountsync.shared.config import Settings
    from mountsync.shared.queues import make_client
    from mountsync.shared.storage import open_storage
    from mountsync.workers.context import WorkerContext
    from mountsync.workers.reindex import run_reindex

    settings = Settings(database_url=database_url, redis_prefix=os.environ.get("PROBE_PREFIX", "probe:"))
    ctx = WorkerContext(
        settings,
        open_pool(database_url),
        redis.Redis.from_url(settings.redis_url),
        make_client(settings),
        SystemClock(),
    )
    with ctx.pool.connection() as conn:
        mount = Mounts(conn).get(mount_name)
    storage = open_storage(mount.storage_url, mount.options)
    started = time.perf_counter()
    result = run_reindex(ctx, mount, storage).as_dict()
    result["wall_s"] = time.perf_counter() - started
    return result


def main() -> None:
    mode = sys.argv[1]
    result: dict[str, object] = {}
    if mode in ("walk", "s3-list"):
        started = time.perf_counter()
        result["files"] = walk(sys.argv[2]) if mode == "walk" else s3_list(sys.argv[2])
        result["wall_s"] = time.perf_counter() - started
    else:
        result.update(reindex(sys.argv[3], sys.argv[4]))
    result["max_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
