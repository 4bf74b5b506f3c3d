"""Webhook delivery (against a local HTTP server) and alignment settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mountsync.shared.errors import ConfigError, RetryableError
from mountsync.workers.alignment.config import AlignmentConfig
from mountsync.workers.alignment.notify import post_webhook, safe_target
from tests.alignment.support import Receiver, start_receiver
from tests.helpers import free_port


@pytest.fixture
def receiver() -> Iterator[str]:
    server = start_receiver(free_port())
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_alert_is_posted_as_json(receiver: str) -> None:
    assert post_webhook(f"{receiver}/hook/200", {"id": 7, "kind": "insert"}) == 200
    ((path, body),) = Receiver.received
    assert path == "/hook/200"
    assert body == {"type": "mountsync.alignment.alert", "alert": {"id": 7, "kind": "insert"}}


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_are_retried(receiver: str, status: int) -> None:
    with pytest.raises(RetryableError, match=str(status)):
        post_webhook(f"{receiver}/{status}", {"id": 1})


def test_a_refusal_is_final(receiver: str) -> None:
    assert post_webhook(f"{receiver}/404", {"id": 1}) == 404


def test_unreachable_receiver_is_retried() -> None:
    with pytest.raises(RetryableError, match="unreachable") as info:
        post_webhook(f"http://127.0.0.1:{free_port()}/secret-token?key=abc", {"id": 1}, timeout=2)
    assert "secret-token" not in str(info.value) and "abc" not in str(info.value)


def test_logs_name_only_the_webhook_host() -> None:
    assert safe_target("https://hooks.example.com/T0/B1/secret?x=1") == "https://hooks.example.com"


def test_config_defaults_and_overrides() -> None:
    default = AlignmentConfig.from_extra({})
    assert (default.default_order, default.debounce_s, default.autopin, default.quarantine) == (
        "dive",
        0.5,
        True,
        "breaking",
    )
    assert default.webhook_url is None
    custom = AlignmentConfig.from_extra({
        "MOUNTSYNC_FRAME_ORDER": "lexicographic", "MOUNTSYNC_ALIGNMENT_DEBOUNCE": "2",
        "MOUNTSYNC_ALIGNMENT_AUTOPIN": "no", "MOUNTSYNC_ALIGNMENT_QUARANTINE": "any",
        "MOUNTSYNC_ALERT_WEBHOOK": " http://127.0.0.1:9/x ", "MOUNTSYNC_ALIGNMENT_ALERT_APPENDS": "1",
    })  # fmt: skip
    assert (custom.default_order, custom.debounce_s, custom.autopin, custom.quarantine) == (
        "lexicographic",
        2.0,
        False,
        "any",
    )
    assert (custom.webhook_url, custom.alert_appends) == ("http://127.0.0.1:9/x", True)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("MOUNTSYNC_FRAME_ORDER", "natural"),
        ("MOUNTSYNC_ALIGNMENT_DEBOUNCE", "soon"),
        ("MOUNTSYNC_ALIGNMENT_DEBOUNCE", "-1"),
        ("MOUNTSYNC_ALIGNMENT_AUTOPIN", "maybe"),
        ("MOUNTSYNC_ALIGNMENT_QUARANTINE", "always"),
    ],
)
def test_bad_settings_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        AlignmentConfig.from_extra({var: value})
