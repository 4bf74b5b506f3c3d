"""Start-up check: is the Redis that holds the queues configured to keep them?

Queued changes live only in Redis until a worker applies them (the cloud message was acked once
they were enqueued), so a Redis that evicts keys under memory pressure or forgets everything on
restart loses changes with no trace. Every process that talks to the queues runs this check at
start and logs each problem loudly; the reconcile (reindex) would find the damage only later.

``CONFIG GET`` is refused on managed Redis (ElastiCache, Memorystore, Azure Cache); ``INFO`` is
then used, and when both are refused the check says it could not verify instead of passing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from redis.exceptions import RedisError, ResponseError

log = structlog.get_logger("mountsync.redis")

UNVERIFIED = "could not verify the Redis durability settings"


def check_redis_durability(client: Any) -> list[str]:
    """Problems (one sentence each, with the fix) that can make Redis lose queued tasks; ``[]`` if none.

    Raises ``redis.RedisError`` when Redis cannot be reached at all.
    """
    config = _config(client)
    if config is None:
        return [
            f"{UNVERIFIED} (CONFIG GET and INFO were both refused); make sure the server runs "
            "with maxmemory-policy noeviction and appendonly yes"
        ]
    return _problems(config)


def _config(client: Any) -> dict[str, str] | None:
    try:
        found: dict[str, str] = {}
        for name in ("maxmemory-policy", "appendonly", "save", "appendfsync"):
            found.update({str(k): str(v) for k, v in _decoded(client.config_get(name)).items()})
        if "maxmemory-policy" in found:
            return found
    except ResponseError:  # CONFIG disabled or renamed (managed Redis): fall back to INFO
        pass
    return _config_from_info(client)


def _config_from_info(client: Any) -> dict[str, str] | None:
    try:
        memory = _decoded(client.info("memory"))
        persistence = _decoded(client.info("persistence"))
    except ResponseError:
        return None
    if "maxmemory_policy" not in memory:
        return None
    # INFO shows whether AOF is on but not the RDB schedule; an unknown schedule is not reported.
    return {
        "maxmemory-policy": str(memory["maxmemory_policy"]),
        "appendonly": "yes" if str(persistence.get("aof_enabled", "0")) == "1" else "no",
    }


def _decoded(value: Mapping[Any, Any]) -> dict[str, Any]:
    def text(v: Any) -> Any:
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else v

    return {text(k): text(v) for k, v in dict(value).items()}


def _problems(config: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    policy = config.get("maxmemory-policy", "")
    if policy != "noeviction":
        problems.append(
            f"Redis maxmemory-policy is {policy!r}: under memory pressure it deletes keys, "
            "including queued tasks; set maxmemory-policy noeviction"
        )
    aof = config.get("appendonly", "no") == "yes"
    save = config.get("save")
    if not aof and save == "":
        problems.append(
            "Redis has no persistence (appendonly no, save ''): a restart loses every queued change; set appendonly yes"
        )
    elif not aof and save is not None:
        problems.append(
            f"Redis persists only RDB snapshots (save {save!r}): a crash loses the changes "
            "queued since the last snapshot; set appendonly yes"
        )
    elif not aof:
        problems.append("Redis AOF persistence is off (appendonly no); set appendonly yes")
    if aof and config.get("appendfsync") == "no":
        problems.append(
            "Redis appendfsync is 'no': the OS decides when the AOF reaches disk and a crash can "
            "lose ~30 s of queued changes; use appendfsync everysec"
        )
    return problems


def warn_if_redis_loses_data(client: Any, component: str) -> list[str]:
    """Run the check and log every problem as an error (loud, but the process keeps running)."""
    try:
        problems = check_redis_durability(client)
    except RedisError as exc:
        log.warning("cannot check the Redis settings now", component=component, error=str(exc))
        return []
    for problem in problems:
        log.error("redis may lose queued tasks", component=component, problem=problem)
    return problems
