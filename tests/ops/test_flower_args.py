"""Flower's arguments and the authentication rule of ``mountsync flower`` (no process started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mountsync.shared.errors import ConfigError
from mountsync.workers.flower import auth_mode, flower_args, is_loopback

OAUTH = {"FLOWER_AUTH": ".*@example.com", "FLOWER_AUTH_PROVIDER": "flower.views.auth.GoogleAuth2LoginHandler",
         "FLOWER_OAUTH2_KEY": "k", "FLOWER_OAUTH2_SECRET": "s", "FLOWER_OAUTH2_REDIRECT_URI": "https://x/login",
         "FLOWER_COOKIE_SECRET": "c"}  # fmt: skip


def test_auth_modes() -> None:
    assert auth_mode({}) == "none"
    assert auth_mode({"FLOWER_BASIC_AUTH": "ops:pw,viewer:pw2"}) == "basic"
    assert auth_mode(OAUTH) == "oauth"
    with pytest.raises(ConfigError, match="user:password"):
        auth_mode({"FLOWER_BASIC_AUTH": "ops"})
    with pytest.raises(ConfigError, match="FLOWER_OAUTH2_SECRET"):
        auth_mode({k: v for k, v in OAUTH.items() if k != "FLOWER_OAUTH2_SECRET"})


LOOPBACK = [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("", False),
            ("10.0.0.5", False)]  # fmt: skip


@pytest.mark.parametrize(("address", "loopback"), LOOPBACK)
def test_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_arguments_never_carry_the_password(tmp_path: Path) -> None:
    env = {"FLOWER_BASIC_AUTH": "ops:secret-pw", "MOUNTSYNC_STATE_DIR": str(tmp_path / "state")}
    args = flower_args(env, address="0.0.0.0", port=5555, persistent=True, url_prefix="/flower/",
                       read_only=True)  # fmt: skip
    assert not [a for a in args if "secret-pw" in a]  # Flower reads FLOWER_BASIC_AUTH itself (not in ps)
    assert f"--db={tmp_path / 'state' / 'flower.db'}" in args and "--persistent=True" in args
    assert {"--address=0.0.0.0", "--port=5555", "--url_prefix=flower", "--read_only=True"} <= set(args)
    assert (tmp_path / "state").is_dir()
    with pytest.raises(ConfigError, match="without authentication"):
        flower_args({}, address="0.0.0.0", port=5555)
    assert "--address=127.0.0.1" in flower_args({}, address="127.0.0.1", port=5555)
