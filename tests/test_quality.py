"""The house rules the suite enforces: ruff clean, formatted, and mypy --strict clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TREES = ["src", "tests", "benchmarks", "examples", "noxfile.py"]


def _tool(name: str) -> list[str]:
    if shutil.which(name) is None and not (Path(sys.executable).parent / name).exists():
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return [sys.executable, "-m", name]


def test_ruff_check_and_format() -> None:
    ruff = _tool("ruff")
    check = subprocess.run([*ruff, "check", *TREES], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout[-3000:]
    fmt = subprocess.run(
        [*ruff, "format", "--check", *TREES], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert fmt.returncode == 0, fmt.stdout[-3000:]


@pytest.mark.slow
def test_mypy_strict(tmp_path: Path) -> None:
    mypy = _tool("mypy")
    result = subprocess.run(
        [*mypy, "--cache-dir", str(tmp_path / "mypy-cache")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]
