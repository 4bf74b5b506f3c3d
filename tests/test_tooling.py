"""The style gates STYLE.md asks CI to run: ruff lint and format, strict mypy over the whole package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ["shared", "producers", "workers", "tests"]
SUBPACKAGES = ("shared", "producers", "workers")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def typecheck_view() -> Path:
    """``.mountsync/typecheck/mountsync`` links to the fixed folders, so mypy sees them under their
    installed names (it cannot follow setuptools' editable finder)."""
    view = ROOT / ".mountsync" / "typecheck"
    package = view / "mountsync"
    package.mkdir(parents=True, exist_ok=True)
    for name in SUBPACKAGES:
        link = package / name
        if not link.is_symlink():
            link.symlink_to(Path("..", "..", "..", name))
    return view


def test_ruff_lint_is_clean() -> None:
    proc = run("ruff", "check", *PACKAGES)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_ruff_format_is_clean() -> None:
    proc = run("ruff", "format", "--check", *PACKAGES)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_mypy_strict_over_the_whole_package() -> None:
    env = {**os.environ, "MYPYPATH": str(typecheck_view())}
    proc = run("mypy", "-p", "mountsync", env=env)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "Success" in proc.stdout
