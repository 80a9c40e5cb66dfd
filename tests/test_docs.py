"""The documentation site builds with --strict (broken links, bad API references and docstrings fail)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mkdocs_builds_strict(tmp_path: Path) -> None:
    if shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists():
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    html = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "CustomVisionBackend" in html and "classify_many" in html
    # Sphinx roles (`:class:`, `:meth:`…) are not markdown: mkdocstrings would print them as literal text.
    for role in (":class:", ":meth:", ":func:", ":attr:", ":mod:", ":exc:", ":data:"):
        assert role not in html, f"a docstring uses the Sphinx role {role}; write `name` instead"
    documented = [
        "azvision.emulator.Emulator",
        "azvision.emulator.EmulatorConfig",
        "azvision.emulator.AmlEndpointSpec",
        "azvision.evaluation.evaluate",
        "azvision.Dataset",
        "azvision.synthetic",
        "azvision.synthetic.make_dataset",
    ]
    assert [name for name in documented if f'id="{name}"' not in html] == []


def test_readme_quickstart_has_the_two_commands_ci_runs() -> None:
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = [
        line.strip()
        for block in quick.split("```")[1::2]
        for line in block.splitlines()[1:]
        if line.strip() and not line.strip().startswith("#")
    ]
    assert len(commands) == 2
    assert "azvision demo" in commands[0]
    ci = (REPO / ".ci" / "run").read_text()
    assert commands[1] in ci
