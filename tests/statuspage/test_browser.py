"""The status page in a real headless Chromium against a real ``serve``, worker, PostgreSQL and
Redis: sign-in (and a wrong token), a mount whose object count follows the catalog without a
reload, an insert into a pinned dataset (alert, side-by-side frames), a read-only token without
buttons, acknowledging, and a migration's bar reaching 100 %. Screenshots at 1280 and 390 px go to
``.mountsync/artifacts/statuspage/``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from mountsync.shared.catalog.tokens import create_token
from tests.conftest import Cli, WorkerProcess
from tests.helpers import Proc, free_port, port_open, wait_for

pytestmark = pytest.mark.slow
UI_TIMEOUT_S = 40.0


@pytest.fixture
def serve(test_env: dict[str, str], tmp_path: Path, procs: list[Proc], catalog: psycopg.Connection) -> str:
    """A real ``mountsync serve`` (no push receivers) on a free port; its base URL."""
    port = free_port()
    env = {**test_env, "MOUNTSYNC_MIGRATION_SOURCE_ROOTS": str(tmp_path)}
    proc = Proc.mountsync(["serve", "--port", str(port), "--receivers", "none"], env, tmp_path / "serve.log").start()
    procs.append(proc)
    wait_for(lambda: port_open(port) or not proc.alive(), timeout=30, what="serve to listen")
    assert proc.alive(), proc.tail()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def page(browser: WebDriver, serve: str) -> Iterator[WebDriver]:
    browser.set_window_size(1280, 900)
    browser.get(serve + "/")
    browser.delete_all_cookies()
    yield browser


def _text(driver: WebDriver, css: str) -> str:
    try:
        return str(driver.find_element(By.CSS_SELECTOR, css).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def _present(driver: WebDriver, css: str) -> bool:
    return bool(driver.find_elements(By.CSS_SELECTOR, css))


def _sign_in(driver: WebDriver, base: str, token: str) -> None:
    driver.delete_all_cookies()
    driver.get(base + "/")
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "sign-in").click()


def _signed_in(driver: WebDriver, base: str, catalog: psycopg.Connection, scope: str, name: str) -> None:
    _sign_in(driver, base, create_token(catalog, name, scope))
    wait_for(lambda: _text(driver, "#token-name") == name, timeout=UI_TIMEOUT_S, what=f"signed in as {name}")
    driver.execute_script("window.__notReloaded = true;")


def _not_reloaded(driver: WebDriver) -> bool:
    return bool(driver.execute_script("return window.__notReloaded === true;"))


def _tab_to(driver: WebDriver, element_id: str, presses: int = 60) -> WebElement:
    """Press Tab from the top of the page until ``element_id`` has the focus."""
    driver.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);")
    for _ in range(presses):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        focused: WebElement = driver.switch_to.active_element
        if focused.get_attribute("id") == element_id:
            return focused
    raise AssertionError(f"#{element_id} was not reached with {presses} Tab presses")


def _screenshot(driver: WebDriver, path: Path, width: int) -> Path:
    """The whole page laid out at ``width`` CSS px, captured beyond the window (Chromium's CDP)."""
    import base64

    driver.set_window_size(width, 900)
    wait_for(lambda: driver.execute_script("return window.innerWidth;") == width, timeout=10, what="the resize")
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                            "clip": clip})  # fmt: skip
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def _fs_mount(cli: Cli, root: Path, name: str) -> None:
    cli("mount", "add", name, f"file://{root}", check=True)


def _producer(test_env: dict[str, str], tmp_path: Path, procs: list[Proc], mount: str) -> Proc:
    proc = Proc.mountsync(["produce", "fs", "--mount", mount], test_env, tmp_path / f"produce-{mount}.log").start()
    procs.append(proc)
    return proc


def test_sign_in_refuses_a_wrong_token_then_accepts_the_right_one(
    page: WebDriver, serve: str, catalog: psycopg.Connection, artifacts: Path
) -> None:
    token = create_token(catalog, "ops-lead", "read")
    _sign_in(page, serve, token[:-4] + "AAAA")
    error = wait_for(lambda: _text(page, "#login-error"), timeout=UI_TIMEOUT_S, what="the wrong-token message")
    assert "not valid or was revoked" in error
    assert page.find_element(By.ID, "token").get_attribute("aria-invalid") == "true"
    for width in (1280, 390):
        _screenshot(page, artifacts / f"sign-in-{width}.png", width)
    page.set_window_size(1280, 900)
    assert not page.get_cookies()
    _sign_in(page, serve, token)
    wait_for(lambda: _text(page, "#token-name") == "ops-lead", timeout=UI_TIMEOUT_S, what="the page after sign-in")
    (cookie,) = page.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and token not in cookie["value"]
    assert page.execute_script("return document.cookie;") == ""  # scripts cannot read the session
    page.find_element(By.ID, "sign-out").click()
    wait_for(lambda: _present(page, "#token"), timeout=UI_TIMEOUT_S, what="the sign-in form after sign-out")


def test_a_mount_appears_and_its_object_count_follows_without_reload(
    page: WebDriver,
    serve: str,
    catalog: psycopg.Connection,
    cli: Cli,
    worker: WorkerProcess,
    test_env: dict[str, str],
    tmp_path: Path,
    procs: list[Proc],
) -> None:
    _signed_in(page, serve, catalog, "read", "watcher")
    assert "No mounts yet" in _text(page, "#mounts")
    root = tmp_path / "photos"
    root.mkdir()
    _fs_mount(cli, root, "photos")
    wait_for(lambda: _present(page, "#mount-photos"), timeout=UI_TIMEOUT_S, what="the new mount on the page")
    _producer(test_env, tmp_path, procs, "photos")
    count = lambda: _text(page, "#mount-photos [data-objects]")  # noqa: E731
    for total in (5, 12):
        for i in range(total):
            (root / f"img_{i:03}.jpg").write_bytes(os.urandom(64))
        wait_for(lambda t=total: count() == str(t), timeout=UI_TIMEOUT_S, what=f"{total} objects on the page")
    assert _not_reloaded(page)
    assert f"file://{root}" in _text(page, "#mount-photos .url")


def _open_alert_id(catalog: psycopg.Connection) -> int | None:
    row = catalog.execute("SELECT id FROM alignment_alerts WHERE status = 'open' ORDER BY id LIMIT 1").fetchone()
    return int(row[0]) if row else None


# The page re-renders its tables as it polls: rows read element by element could go stale between
# the find and the read (a CI failure: StaleElementReferenceException), so one script reads them all.
_FRAMES_JS = """
return Array.from(document.querySelectorAll('#quarantined table.frames tbody tr'), tr => {
  const cells = tr.querySelectorAll('th, td');
  return [tr.getAttribute('data-index') || '', cells[1].innerText.trim(), cells[2].innerText.trim(),
          (tr.getAttribute('class') || '').includes('shifted')];
});
"""


def _frames_rows(driver: WebDriver) -> list[tuple[str, str, str, bool]]:
    return [(str(i), str(a), str(b), bool(shifted)) for i, a, b, shifted in driver.execute_script(_FRAMES_JS)]


def test_pinned_insert_alert_side_by_side_read_only_ack_and_migration(
    page: WebDriver,
    serve: str,
    catalog: psycopg.Connection,
    cli: Cli,
    worker: WorkerProcess,
    test_env: dict[str, str],
    tmp_path: Path,
    procs: list[Proc],
    artifacts: Path,
) -> None:
    root = tmp_path / "survey"
    reef = root / "reef_a"
    reef.mkdir(parents=True)
    for i in range(1, 7):
        (reef / f"frame_{i}.png").write_bytes(os.urandom(80 + i))
    _fs_mount(cli, root, "survey")
    _producer(test_env, tmp_path, procs, "survey")
    wait_for(lambda: catalog.execute("SELECT count(*) FROM objects WHERE NOT deleted").fetchone() == (6,),
             timeout=UI_TIMEOUT_S, what="the import")  # fmt: skip
    cli("pin", "survey", "reef_a", "--last-annotated", "5", check=True)
    (reef / "frame_2b.png").write_bytes(b"inserted frame")
    alert_id = wait_for(lambda: _open_alert_id(catalog), timeout=UI_TIMEOUT_S, what="the alignment alert")

    _signed_in(page, serve, catalog, "write", "annotation-lead")
    row = f"#alert-{alert_id}"
    wait_for(lambda: _present(page, row), timeout=UI_TIMEOUT_S, what="the alert on the page")
    assert "insert" in _text(page, row) and "reef_a" in _text(page, row)
    frames = wait_for(lambda: _frames_rows(page), timeout=UI_TIMEOUT_S, what="the side-by-side frames")
    assert frames[:3] == [("0", "frame_1.png", "frame_1.png", False),
                          ("1", "frame_2.png", "frame_2.png", False),
                          ("2", "frame_3.png", "frame_2b.png", True)]  # fmt: skip
    assert all(shifted for *_, shifted in frames[2:]) and len(frames) == 7
    assert "shifted from index 2" in _text(page, "#quarantined h3")

    # A migration moves 3 files; its bar reaches 100 % on the open page.
    source, dest = tmp_path / "to_move", tmp_path / "moved"
    source.mkdir()
    dest.mkdir()
    for i in range(3):
        (source / f"clip_{i}.bin").write_bytes(os.urandom(200_000))
    job = cli("migrate", "submit", "--source", f"file://{source}", "--dest", f"file://{dest}", check=True)
    job_id = job.stdout.strip().split()[-1]
    bar = f"#job-{job_id} progress"
    wait_for(lambda: _present(page, bar) and page.find_element(By.CSS_SELECTOR, bar).get_attribute("value") == "100",
             timeout=UI_TIMEOUT_S * 2, what="the migration's bar at 100 %")  # fmt: skip
    assert "100 %" in _text(page, f"#job-{job_id}") and "600 KB of 600 KB" in _text(page, f"#job-{job_id}")
    assert _not_reloaded(page)

    for width in (1280, 390):
        _screenshot(page, artifacts / f"status-{width}.png", width)
        overflow = page.execute_script("return document.documentElement.scrollWidth;")
        assert overflow <= width, f"the page scrolls sideways at {width} px ({overflow} px wide)"
    page.set_window_size(1280, 900)

    # The same page for a read-only token: everything visible, no action buttons.
    _signed_in(page, serve, catalog, "read", "viewer")
    wait_for(lambda: _present(page, row), timeout=UI_TIMEOUT_S, what="the alert for the read-only token")
    buttons = [b.get_attribute("id") for b in page.find_elements(By.TAG_NAME, "button")]
    assert buttons == ["sign-out"], buttons
    assert _present(page, "#quarantined table.frames") and _present(page, bar)

    # Acknowledge with the write token: the alert and the quarantine go away without a reload.
    _signed_in(page, serve, catalog, "write", "annotation-lead-2")
    wait_for(lambda: page.find_elements(By.ID, f"ack-{alert_id}"), timeout=UI_TIMEOUT_S, what="the ack button")
    _tab_to(page, f"ack-{alert_id}").send_keys(Keys.ENTER)  # keyboard only: reachable and usable
    wait_for(lambda: "acknowledged" in _text(page, "#notice"), timeout=UI_TIMEOUT_S, what="the ack notice")
    wait_for(lambda: not _present(page, row) and "No open alerts" in _text(page, "#alerts"),
             timeout=UI_TIMEOUT_S, what="the alert to leave the page")  # fmt: skip
    wait_for(lambda: "No quarantined datasets" in _text(page, "#quarantined"), timeout=UI_TIMEOUT_S,
             what="the quarantine to end")  # fmt: skip
    assert _not_reloaded(page)
    status = catalog.execute("SELECT status FROM alignment_alerts WHERE id = %s", (alert_id,)).fetchone()
    assert status == ("acked",)


def solid_png(rgb: tuple[int, int, int], size: int = 16) -> bytes:
    """A tiny PNG of one colour (so a thumbnail's pixels tell which version was served)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * size)) + chunk(b"IEND", b"")
    )


COLOURS = {"frame_1": (200, 30, 30), "frame_2": (30, 160, 60), "frame_3": (30, 60, 200), "frame_4": (230, 190, 20),
           "frame_2b": (190, 40, 190)}  # fmt: skip
PIXEL_JS = """
const img = document.querySelector('#quarantined tr[data-index="' + arguments[0] + '"] img.thumb');
if (!img || !img.complete || img.naturalWidth === 0) { return null; }
const canvas = document.createElement('canvas');
canvas.width = 1; canvas.height = 1;
const ctx = canvas.getContext('2d');
ctx.drawImage(img, 0, 0, 1, 1);
return Array.from(ctx.getImageData(0, 0, 1, 1).data.slice(0, 3));
"""


def test_thumbnails_show_the_pinned_versions_of_a_versioned_bucket(
    page: WebDriver,
    serve: str,
    catalog: psycopg.Connection,
    cli: Cli,
    worker: WorkerProcess,
    moto: Any,
    tmp_path: Path,
    artifacts: Path,
) -> None:
    s3 = moto.client("s3")
    bucket = "reef-survey"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for name in ("frame_1", "frame_2", "frame_3", "frame_4"):
        s3.put_object(Bucket=bucket, Key=f"reef_a/{name}.png", Body=solid_png(COLOURS[name]), ContentType="image/png")
    cli("mount", "add", "reefs", f"s3://{bucket}/", "--endpoint-url", moto.endpoint_url, check=True)
    cli("reindex", "reefs", "--wait", check=True)
    cli("pin", "reefs", "reef_a", "--last-annotated", "3", check=True)
    source = tmp_path / "to_move"
    source.mkdir()
    for i in range(4):
        (source / f"clip_{i}.bin").write_bytes(os.urandom(150_000))
    cli("migrate", "submit", "--source", f"file://{source}", "--dest", f"file://{tmp_path / 'moved'}", check=True)
    s3.put_object(Bucket=bucket, Key="reef_a/frame_2b.png", Body=solid_png(COLOURS["frame_2b"]),
                  ContentType="image/png")  # fmt: skip
    cli("reindex", "reefs", "--wait", check=True)
    wait_for(lambda: _open_alert_id(catalog), timeout=UI_TIMEOUT_S, what="the alignment alert")

    _signed_in(page, serve, catalog, "write", "annotation-lead")
    wait_for(lambda: len(_frames_rows(page)) == 5, timeout=UI_TIMEOUT_S, what="the side-by-side frames")
    for index, pinned in enumerate(("frame_1", "frame_2", "frame_3", "frame_4")):
        pixel = wait_for(lambda i=index: page.execute_script(PIXEL_JS, i), timeout=UI_TIMEOUT_S,
                         what=f"the thumbnail of pinned frame {index}")  # fmt: skip
        assert all(abs(a - b) <= 2 for a, b in zip(pixel, COLOURS[pinned], strict=True)), (index, pixel)
    assert page.execute_script(PIXEL_JS, 4) is None  # no pinned frame at index 4: no thumbnail
    wait_for(lambda: "completed" in _text(page, "#migrations"), timeout=UI_TIMEOUT_S * 2, what="the migration")
    for width in (1280, 390):
        _screenshot(page, artifacts / f"thumbnails-{width}.png", width)
        assert page.execute_script("return document.documentElement.scrollWidth;") <= width
