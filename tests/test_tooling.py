"""The style gates STYLE.md asks CI to run: ruff lint and format, strict mypy on shared/."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

PACKAGES = ["shared", "producers", "workers", "tests"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_lint_is_clean() -> None:
    proc = run("ruff", "check", *PACKAGES)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_ruff_format_is_clean() -> None:
    proc = run("ruff", "format", "--check", *PACKAGES)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_mypy_strict_on_shared() -> None:
    proc = run("mypy", "shared")
    assert proc.returncode == 0, proc.stdout[-4000:]
