"""Settings from the environment: every bad value is one ConfigError naming its variable; repr is safe to log."""

from __future__ import annotations

import pytest

from mountsync.shared.config import Settings, load_settings
from mountsync.shared.errors import ConfigError

POSITIVE = [
    "MOUNTSYNC_BATCH_SIZE",
    "MOUNTSYNC_BATCH_WINDOW",
    "MOUNTSYNC_INBOX_MAX_DEPTH",
    "MOUNTSYNC_MAX_DELIVERIES",
]


def config_error(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("var", POSITIVE)
@pytest.mark.parametrize("raw", ["0", "-1"])
def test_counts_and_windows_must_be_positive(var: str, raw: str) -> None:
    message = config_error({var: raw})
    assert message.startswith(f"{var}={raw!r}") and "greater than 0" in message


@pytest.mark.parametrize("raw", ["nan", "inf"])
def test_the_batch_window_must_be_finite(raw: str) -> None:
    assert config_error({"MOUNTSYNC_BATCH_WINDOW": raw}).startswith("MOUNTSYNC_BATCH_WINDOW=")


def test_the_feed_stream_may_be_off_but_its_length_not_negative() -> None:
    assert load_settings({"MOUNTSYNC_FEED_MAXLEN": "0"}).feed_maxlen == 0
    message = config_error({"MOUNTSYNC_FEED_MAXLEN": "-1"})
    assert message.startswith("MOUNTSYNC_FEED_MAXLEN='-1'") and "0 (no Redis stream) or more" in message


def test_queue_depth_may_be_zero_but_not_negative() -> None:
    assert load_settings({"MOUNTSYNC_MAX_QUEUE_DEPTH": "0"}).max_queue_depth == 0
    assert config_error({"MOUNTSYNC_MAX_QUEUE_DEPTH": "-1"}).startswith("MOUNTSYNC_MAX_QUEUE_DEPTH='-1'")


def test_defaults_and_small_positive_values_load() -> None:
    assert load_settings({}) == Settings()
    small = load_settings({var: "1" for var in POSITIVE})
    assert (small.batch_size, small.batch_window_s, small.max_deliveries) == (1, 1.0, 1)


def test_repr_hides_passwords_and_extra_variables() -> None:
    settings = load_settings(
        {
            "MOUNTSYNC_DATABASE_URL": "postgresql://app:hunter2@db:5432/mountsync",
            "MOUNTSYNC_REDIS_URL": "redis://:s3cret@redis:6379/0",
            "MOUNTSYNC_EVENTGRID_SECRET": "topsecret",
        }
    )
    assert settings.extra["MOUNTSYNC_EVENTGRID_SECRET"] == "topsecret"  # still there for the code that needs it
    for text in (repr(settings), str(settings), f"{settings!r}"):
        assert "hunter2" not in text and "s3cret" not in text and "topsecret" not in text
        assert "postgresql://app:***@db:5432/mountsync" in text and text.startswith("Settings(")
