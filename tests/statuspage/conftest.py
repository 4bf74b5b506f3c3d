"""A real headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by selenium.

Selenium is given both paths, so it never looks for (or downloads) a browser or driver of its own.
A browser that cannot start fails under CI=true (never a skip) and skips on a developer machine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, require_service

CHROMIUM = os.environ.get("MOUNTSYNC_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MOUNTSYNC_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
ARTIFACTS = ROOT / ".mountsync" / "artifacts" / "statuspage"


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One Chromium for the session; each test gets clean cookies through ``page``."""
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager must not reach the network
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    require_service("chromium", not missing, f"missing {', '.join(missing)} (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="mountsync-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        shutil.rmtree(profile, ignore_errors=True)
        require_service("chromium", False, f"the browser did not start: {exc.msg}")
        raise
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go (kept after the run, outside git: .mountsync/ is ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
