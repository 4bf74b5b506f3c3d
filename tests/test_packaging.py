"""One import package: the wheel installs ``mountsync`` and nothing else at the top level."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.conftest import ROOT

FOLDERS = ("shared", "producers", "workers")


def listed_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(config["packages"])


def test_every_folder_with_python_modules_is_a_listed_subpackage() -> None:
    found = {
        "mountsync." + ".".join(path.parent.relative_to(ROOT).parts)
        for folder in FOLDERS
        for path in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert found == listed_packages()


def test_wheel_installs_exactly_one_top_level_package(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("mountsync-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"mountsync"}
    assert "mountsync/shared/migrations/versions/0001_core.py" in names
    assert "mountsync/shared/migrations/script.py.mako" in names


def test_generic_top_level_names_are_not_importable() -> None:
    probe = "import importlib.util as u; print([n for n in ('shared', 'producers', 'workers') if u.find_spec(n)])"
    proc = subprocess.run([sys.executable, "-c", probe], cwd="/", capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]"
    assert subprocess.run([sys.executable, "-c", "import mountsync.workers.app"], cwd="/", timeout=60).returncode == 0
