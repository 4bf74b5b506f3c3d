"""The pure rules under the platform clients: error mapping, token shapes, names and markers."""

from __future__ import annotations

import re

import pytest
import requests

from mountsync.shared.errors import (
    ConfigError,
    PlatformAuthRejected,
    PlatformRecordMissing,
    PlatformRequestRejected,
    PlatformUnavailable,
)
from mountsync.workers.connectors.girder_client import (
    common_key_prefix,
    dive_dataset_markers,
    exact_name_regex,
    refine_girder_status,
)
from mountsync.workers.connectors.http import raise_for_outcome, retry_after_seconds
from mountsync.workers.connectors.label_studio_client import is_personal_access_token


def answer(status: int, body: str = "", **headers: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body.encode()
    response.headers.update(headers)
    return response


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, PlatformUnavailable),
        (503, PlatformUnavailable),
        (429, PlatformUnavailable),
        (401, PlatformAuthRejected),
        (403, PlatformAuthRejected),
        (404, PlatformRecordMissing),
        (400, PlatformRequestRejected),
        (422, PlatformRequestRejected),
    ],
)
def test_each_answer_maps_to_what_the_caller_must_do(status: int, error: type[Exception]) -> None:
    with pytest.raises(error) as raised:
        raise_for_outcome("Girder", "GET", "/item/1", answer(status, '{"message": "no"}'))
    assert "Girder GET /item/1" in str(raised.value)


def test_success_and_redirects_pass_and_auth_errors_are_config_errors() -> None:
    for status in (200, 201, 204, 303):
        raise_for_outcome("Label Studio", "GET", "/api/tasks", answer(status))
    assert issubclass(PlatformAuthRejected, ConfigError)
    assert issubclass(PlatformRecordMissing, PlatformRequestRejected)


def test_retry_after_is_honoured_in_seconds_only() -> None:
    with pytest.raises(PlatformUnavailable) as raised:
        raise_for_outcome("Label Studio", "POST", "/api/x", answer(429, **{"Retry-After": "7"}))
    assert raised.value.retry_after_s == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2026 07:28:00 GMT") is None
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("-3") == 0.0


def test_girders_400s_for_missing_ids_and_bad_keys_are_read_for_what_they_mean() -> None:
    assert refine_girder_status(400, '{"message": "Invalid folder id (abc).", "type": "rest"}') == 404
    assert refine_girder_status(400, '{"message": "Invalid item id (abc)."}') == 404
    assert refine_girder_status(400, '{"message": "Invalid API key.", "type": "validation"}') == 401
    assert refine_girder_status(400, '{"message": "Name must not be empty."}') == 400
    assert refine_girder_status(500, "Invalid folder id (abc).") == 500


def test_a_personal_access_token_is_told_apart_from_a_legacy_token() -> None:
    pat = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2ln"  # payload {"token_type":"refresh"}
    access = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIn0.c2ln"  # payload {"token_type":"access"}
    assert is_personal_access_token(pat)
    assert not is_personal_access_token(access)
    assert not is_personal_access_token("0123456789abcdef0123456789abcdef01234567")
    assert not is_personal_access_token("a.%%%.c")


@pytest.mark.parametrize("name", ["f0001.png", "a+b (1).jpg", "x.png.bak", "[0].tif"])
def test_the_include_regex_matches_exactly_one_name(name: str) -> None:
    pattern = re.compile(exact_name_regex(name))
    assert pattern.match(name)
    assert not pattern.match(name + ".bak")
    assert not pattern.match("z" + name)


def test_the_common_prefix_is_by_character_like_s3_prefixes() -> None:
    assert common_key_prefix(["ds/a/0010.png", "ds/a/0011.png", "ds/a/0099.png"]) == "ds/a/00"
    assert common_key_prefix(["ds/a/x.png"]) == "ds/a/x.png"
    assert common_key_prefix([]) == ""


def test_dive_markers_use_dives_names() -> None:
    assert dive_dataset_markers("image-sequence", fps=5) == {"annotate": True, "type": "image-sequence", "fps": 5}
    assert dive_dataset_markers("video") == {"annotate": True, "type": "video"}
    with pytest.raises(ValueError):
        dive_dataset_markers("large-image")
