"""The page's shipped assets: inside the package, nothing from another site, WCAG AA contrast."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest

ASSETS = files("mountsync.producers.statuspage")
CSS = (ASSETS / "static" / "status.css").read_text()
# Text colour on background colour, as status.css pairs them (variables or literal colours).
TEXT_ON_BACKGROUND = [
    ("--text", "--bg"),
    ("--muted", "--bg"),
    ("--muted", "--panel"),
    ("--muted", "--tag-bg"),
    ("--muted", "--shift-bg"),
    ("--text", "--shift-bg"),
    ("--shift-line", "--shift-bg"),  # the "≠" mark of a shifted frame
    ("--bad", "--bg"),
    ("--bad", "--shift-bg"),
    ("--accent-text", "--accent"),  # buttons
    ("--accent", "--bg"),  # links
    ("#ffffff", "--top"),  # header
    ("#ffffff", "#1a7f37"),  # "live"
    ("#ffffff", "--shift-line"),  # "reconnecting"
    ("--text", "#ddf4ff"),  # notices
]


def _colour(name: str) -> str:
    if name.startswith("#"):
        return name
    match = re.search(rf"{re.escape(name)}:\s*(#[0-9a-fA-F]{{6}})", CSS)
    assert match, f"{name} is not defined in status.css"
    return match.group(1)


def _luminance(hex_colour: str) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


@pytest.mark.parametrize(("text", "background"), TEXT_ON_BACKGROUND)
def test_text_contrast_passes_wcag_aa(text: str, background: str) -> None:
    lighter, darker = sorted((_luminance(_colour(text)), _luminance(_colour(background))), reverse=True)
    ratio = (lighter + 0.05) / (darker + 0.05)
    assert ratio >= 4.5, f"{text} on {background}: {ratio:.2f}:1"


def test_assets_ship_in_the_package_and_load_nothing_from_another_site() -> None:
    shipped = [*(ASSETS / "templates").iterdir(), *(ASSETS / "static").iterdir()]
    names = {entry.name for entry in shipped}
    assert {"base.html", "page.html", "sections.html", "login.html", "status.css", "status.js"} <= names
    for entry in shipped:
        text = entry.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), entry.name


def test_every_input_has_a_label() -> None:
    for name in ("login.html", "page.html", "macros.html"):
        html = (ASSETS / "templates" / name).read_text()
        for field in re.findall(r"<input[^>]*>", html):
            if 'type="hidden"' in field:
                continue
            field_id = re.search(r'id="([^"]+)"', field)
            assert field_id and f'for="{field_id.group(1)}"' in html, f"{name}: {field} has no label"
