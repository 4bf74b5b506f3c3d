"""A real Label Studio server (from PyPI, pinned in .ci/install-platforms) for the connector tests.

Fixtures (registered as a plugin by tests/conftest.py):

- ``label_studio_server`` (session): Label Studio in its own venv under
  ``.mountsync/label-studio/venv`` (its pins conflict with ours; ``.ci/install-platforms`` makes
  it, and this fixture runs that script when the venv is missing). It runs on SQLite in a temp
  dir, on a free port. Yields a frozen ``LabelStudioServer`` with a personal access token.
- ``label_studio`` (function): the same server and a fresh project (tests never share tasks).

Start time: Label Studio migrates its database on every start, which takes over a minute on an
empty SQLite file. The first start builds a migrated template (``.mountsync/label-studio/
template-VERSION``, with the admin user); later sessions copy it and start in about 20 s.

Token: a personal access token (the 1.23 default; legacy tokens stay off). The fixture logs in
through the login form like a person and asks ``POST /api/token/`` for one, so the test runs
the same authentication path as a user's token.

If Label Studio cannot be installed or started, the test fails under CI=true and is skipped
otherwise (never a silent pass).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import ROOT, Proc, free_port, require_service
from tests.standins.s3 import MotoEndpoints

HOME = ROOT / ".mountsync" / "label-studio"
VENV = HOME / "venv"
INSTALLER = ROOT / ".ci" / "install-platforms"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "mountsync-test-password"  # a throwaway local server's login, never a real secret
START_DEADLINE_S = 240.0
IMAGE_CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<Choices name="label" toName="image"><Choice value="ok"/></Choices></View>'
)


@dataclass(frozen=True)
class LabelStudioServer:
    """Where Label Studio answers and the personal access token of its admin."""

    url: str
    token: str
    version: str

    def access_headers(self) -> dict[str, str]:
        """Headers for the test's own setup calls (projects, annotations)."""
        response = requests.post(f"{self.url}/api/token/refresh/", json={"refresh": self.token}, timeout=30)
        response.raise_for_status()
        return {"Authorization": f"Bearer {response.json()['access']}"}

    def create_project(self, title: str) -> int:
        response = requests.post(
            f"{self.url}/api/projects/",
            json={"title": title, "label_config": IMAGE_CONFIG},
            headers=self.access_headers(),
            timeout=30,
        )
        response.raise_for_status()
        return int(response.json()["id"])

    def annotate(self, task_id: int) -> None:
        """Add one annotation to a task, the way a labeler's submit does."""
        result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["ok"]}}]
        response = requests.post(
            f"{self.url}/api/tasks/{task_id}/annotations/",
            json={"result": result},
            headers=self.access_headers(),
            timeout=30,
        )
        response.raise_for_status()

    def add_s3_import_storage(self, project: int, bucket: str, prefix: str, moto: MotoEndpoints) -> int:
        """Label Studio's own S3 source storage on a moto bucket (the benchmarks' baseline)."""
        response = requests.post(
            f"{self.url}/api/storages/s3/",
            json={
                "project": project,
                "title": f"moto {bucket}",
                "bucket": bucket,
                "prefix": prefix,
                "use_blob_urls": True,
                "recursive_scan": True,
                "aws_access_key_id": moto.access_key_id,
                "aws_secret_access_key": moto.secret_access_key,
                "region_name": moto.region,
                "s3_endpoint": moto.endpoint_url,
            },
            headers=self.access_headers(),
            timeout=30,
        )
        response.raise_for_status()
        return int(response.json()["id"])

    def sync_s3_import_storage(self, storage_id: int) -> dict[str, Any]:
        """Run the storage's sync; without Redis it completes inside this request."""
        response = requests.post(
            f"{self.url}/api/storages/s3/{storage_id}/sync", headers=self.access_headers(), timeout=600
        )
        response.raise_for_status()
        return dict(response.json())


@dataclass(frozen=True)
class LabelStudioProject:
    server: LabelStudioServer
    project_id: int


def installed_version() -> str | None:
    marker = VENV / ".installed"
    if not (VENV / "bin" / "label-studio").exists() or not marker.exists():
        return None
    return marker.read_text().strip().split("==", 1)[-1]


def ensure_installed() -> str:
    """The pinned Label Studio version, installing the venv first when it is missing."""
    version = installed_version()
    if version is None:
        subprocess.run([str(INSTALLER), "label-studio"], check=True, capture_output=True, timeout=900)
        version = installed_version()
    if version is None:
        raise RuntimeError(f"{INSTALLER} label-studio left no usable venv in {VENV}")
    return version


# Label Studio queues background jobs (storage syncs, stats) on any Redis answering on
# localhost:6379, which is the test Redis, where no RQ worker runs: they would never finish and
# its keys would land in db 0. Point RQ at a port nothing listens on (1, privileged), so jobs
# run in the request, as on a default install without Redis.
SETTINGS_MODULE = "mountsync_label_studio_settings"
# Label Studio's settings read Django's settings while they load, so Django must find its own
# module there; the queue dicts are shared with the loaded settings, so changing them in place works.
SETTINGS_SOURCE = """import os

os.environ["DJANGO_SETTINGS_MODULE"] = "label_studio.core.settings.label_studio"
from label_studio.core.settings.label_studio import *  # noqa: E402, F403

for _queue in RQ_QUEUES.values():  # noqa: F405
    _queue["HOST"], _queue["PORT"] = "127.0.0.1", 1
"""


def server_env(data_dir: Path) -> dict[str, str]:
    (data_dir / f"{SETTINGS_MODULE}.py").write_text(SETTINGS_SOURCE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        DJANGO_SETTINGS_MODULE=SETTINGS_MODULE,
        PYTHONPATH=str(data_dir),
        DJANGO_DB="sqlite",
        # No calls out of this machine: no version check against PyPI, no analytics.
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
        # Its SSRF guard refuses storage endpoints on private addresses, and moto is on 127.0.0.1.
        SSRF_PROTECTION_ENABLED="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        PYTHONUNBUFFERED="1",
    )
    return env


def start_server(data_dir: Path, log_path: Path, deadline_s: float = START_DEADLINE_S) -> tuple[Proc, str]:
    """``label-studio start`` on ``data_dir``; returns the process and its URL once /health answers."""
    port = free_port()
    command = [
        str(VENV / "bin" / "label-studio"),
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--username",
        ADMIN_EMAIL,
        "--password",
        ADMIN_PASSWORD,
    ]
    proc = Proc(command, server_env(data_dir), log_path).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"label-studio exited: {proc.tail(1500)}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        time.sleep(0.2)
    proc.stop()
    raise RuntimeError(f"label-studio did not answer on {url} within {deadline_s:.0f} s: {proc.tail(1500)}")


def ensure_template(version: str) -> Path:
    """A data dir with the migrated database and the admin user, built once per version."""
    template = HOME / f"template-{version}"
    if (template / "label_studio.sqlite3").exists():
        return template
    HOME.mkdir(parents=True, exist_ok=True)
    with open(HOME / "template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (template / "label_studio.sqlite3").exists():
            return template
        building = Path(tempfile.mkdtemp(prefix="template-", dir=HOME))
        proc, _ = start_server(building, HOME / "template-build.log", deadline_s=600)
        proc.stop()
        for transient in ("export", "media", "test_data"):
            shutil.rmtree(building / transient, ignore_errors=True)
        os.rename(building, template)
    return template


def create_personal_access_token(url: str) -> str:
    """Log in through the form (as a person would) and create a personal access token."""
    with requests.Session() as browser:
        browser.get(f"{url}/user/login/", timeout=30).raise_for_status()
        response = browser.post(
            f"{url}/user/login/",
            data={
                "email": ADMIN_EMAIL,
                "password": ADMIN_PASSWORD,
                "csrfmiddlewaretoken": browser.cookies.get("csrftoken"),
            },
            headers={"Referer": f"{url}/user/login/"},
            allow_redirects=False,
            timeout=30,
        )
        if response.status_code != 302:
            raise RuntimeError(f"label-studio login answered {response.status_code}")
        response = browser.post(
            f"{url}/api/token/",
            headers={"X-CSRFToken": str(browser.cookies.get("csrftoken")), "Referer": f"{url}/"},
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["token"])


@pytest.fixture(scope="session")
def label_studio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """A Label Studio server for the session, with its admin's personal access token."""
    data_dir = tmp_path_factory.mktemp("label-studio")
    proc: Proc | None = None
    try:
        version = ensure_installed()
        shutil.copytree(ensure_template(version), data_dir, dirs_exist_ok=True)
        proc, url = start_server(data_dir, data_dir / "server.log")
        server = LabelStudioServer(url, create_personal_access_token(url), version)
    except (RuntimeError, OSError, subprocess.SubprocessError, requests.RequestException) as exc:
        if proc is not None:
            proc.stop()
        require_service("Label Studio", False, str(exc))
    try:
        yield server
    finally:
        assert proc is not None
        proc.stop()


@pytest.fixture
def label_studio(label_studio_server: LabelStudioServer) -> LabelStudioProject:
    """The session's Label Studio with a new, empty project for this test."""
    project = label_studio_server.create_project(f"mountsync test {uuid.uuid4().hex[:8]}")
    return LabelStudioProject(label_studio_server, project)
