"""Alignment settings, read from ``Settings.extra`` (the MOUNTSYNC_* variables) at the edge.

| variable | default | meaning |
|---|---|---|
| MOUNTSYNC_IMAGE_TYPES | png,jpg,jpeg | image extensions that make frames |
| MOUNTSYNC_VIDEO_TYPES | mp4,webm,avi,mov,... | extensions of video datasets |
| MOUNTSYNC_FRAME_MANIFEST | frames.txt | manifest file name for the `manifest` order |
| MOUNTSYNC_FRAME_ORDER | dive | order of new datasets: dive, lexicographic, manifest |
| MOUNTSYNC_ALIGNMENT_DEBOUNCE | 0.5 | seconds a folder's changes are gathered before a check |
| MOUNTSYNC_ALIGNMENT_STREAM_DEBOUNCE | 2 | window for folders streaming appends (see hooks) |
| MOUNTSYNC_ALIGNMENT_AUTOPIN | true | pin a dataset's manifest when it is first imported |
| MOUNTSYNC_ALIGNMENT_SETTLE | 2 | seconds a new folder must be quiet before its import pin |
| MOUNTSYNC_ALIGNMENT_ALERT_APPENDS | false | also alert on appends to pinned datasets |
| MOUNTSYNC_ALIGNMENT_ALERT_NEW | false | also alert on new datasets |
| MOUNTSYNC_ALIGNMENT_QUARANTINE | breaking | quarantine on: breaking, any (non-append), never |
| MOUNTSYNC_ALERT_WEBHOOK | (none) | URL that receives each alert as a JSON POST |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mountsync.shared.config import Settings
from mountsync.shared.errors import ConfigError
from mountsync.workers.alignment.datasets import MediaTypes
from mountsync.workers.alignment.sortorder import DEFAULT_POLICY, POLICIES

QUARANTINE_POLICIES = ("breaking", "any", "never")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(extra: Mapping[str, str], var: str, default: bool) -> bool:
    raw = extra.get(var)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{var}={raw!r}: use true or false")


def _choice(extra: Mapping[str, str], var: str, default: str, choices: tuple[str, ...]) -> str:
    value = (extra.get(var) or default).strip().lower()
    if value not in choices:
        raise ConfigError(f"{var}={value!r}: choose one of {', '.join(choices)}")
    return value


def _seconds(extra: Mapping[str, str], var: str, default: float) -> float:
    raw = extra.get(var)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a number of seconds") from None
    if not 0 <= value <= 3600:
        raise ConfigError(f"{var}={raw!r}: use 0 to 3600 seconds")
    return value


@dataclass(frozen=True)
class AlignmentConfig:
    types: MediaTypes = field(default_factory=MediaTypes)
    default_order: str = DEFAULT_POLICY
    debounce_s: float = 0.5
    stream_debounce_s: float = 2.0
    autopin: bool = True
    # A folder still being uploaded is not pinned yet: parallel uploads arrive out of name
    # order, and pinning half a folder would report those late frames as inserts.
    settle_s: float = 2.0
    alert_appends: bool = False
    alert_new: bool = False
    quarantine: str = "breaking"
    webhook_url: str | None = None

    @classmethod
    def from_extra(cls, extra: Mapping[str, str]) -> AlignmentConfig:
        return cls(
            types=MediaTypes.from_extra(extra),
            default_order=_choice(extra, "MOUNTSYNC_FRAME_ORDER", DEFAULT_POLICY, POLICIES),
            debounce_s=_seconds(extra, "MOUNTSYNC_ALIGNMENT_DEBOUNCE", 0.5),
            stream_debounce_s=_seconds(extra, "MOUNTSYNC_ALIGNMENT_STREAM_DEBOUNCE", 2.0),
            autopin=_flag(extra, "MOUNTSYNC_ALIGNMENT_AUTOPIN", True),
            settle_s=_seconds(extra, "MOUNTSYNC_ALIGNMENT_SETTLE", 2.0),
            alert_appends=_flag(extra, "MOUNTSYNC_ALIGNMENT_ALERT_APPENDS", False),
            alert_new=_flag(extra, "MOUNTSYNC_ALIGNMENT_ALERT_NEW", False),
            quarantine=_choice(extra, "MOUNTSYNC_ALIGNMENT_QUARANTINE", "breaking", QUARANTINE_POLICIES),
            webhook_url=(extra.get("MOUNTSYNC_ALERT_WEBHOOK") or "").strip() or None,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> AlignmentConfig:
        return cls.from_extra(settings.extra)
