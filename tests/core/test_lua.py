"""``LuaScript`` on the real Redis: a script the server has never seen is loaded on first use
(``NOSCRIPT``) and then run by its SHA; keys and arguments reach the script in order."""

from __future__ import annotations

import uuid
from typing import Any

from mountsync.shared.lua import LuaScript


def test_a_script_the_server_never_saw_is_loaded_then_run_by_its_sha(redis_client: Any, settings: Any) -> None:
    script = LuaScript(f"-- {uuid.uuid4()}\nreturn {{KEYS[1], ARGV[1], ARGV[2], #KEYS, #ARGV}}")
    assert redis_client.script_exists(script.sha) == [False]
    key = f"{settings.redis_prefix}lua-test"
    assert script(redis_client, [key], ["a", 2]) == [key.encode(), b"a", b"2", 1, 2]
    assert redis_client.script_exists(script.sha) == [True]
    assert script(redis_client, [key], ["b", 3]) == [key.encode(), b"b", b"3", 1, 2]


def test_the_sha_is_the_one_redis_computes(redis_client: Any) -> None:
    script = LuaScript("return 1")
    assert redis_client.script_load(script.text) == script.sha
