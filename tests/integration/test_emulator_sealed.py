"""The emulator is sealed from the SDK it checks: it shares data files, never code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import azvision.emulator

PACKAGE = Path(azvision.emulator.__file__).resolve().parent
PUBLIC = {"__init__.py", "pytest_plugin.py"}


def emulator_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "assets" not in p.relative_to(PACKAGE).parts)


def azvision_imports(path: Path) -> list[str]:
    """Every ``azvision...`` module a file imports, relative imports resolved."""
    package = ["azvision", "emulator"]
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found += [module] if node.module else [f"{module}.{alias.name}" for alias in node.names]
    return [name for name in found if name == "azvision" or name.startswith("azvision.")]


def test_the_checker_sees_relative_and_absolute_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from .. import _preprocess\nfrom ..backends._taxonomy import X\nimport azvision._images\n"
    )
    assert azvision_imports(sample) == [
        "azvision._preprocess",
        "azvision.backends._taxonomy",
        "azvision._images",
    ]


def test_no_emulator_module_imports_azvision_outside_the_emulator() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): bad
        for path in emulator_modules()
        if (
            bad := [
                m
                for m in azvision_imports(path)
                if m != "azvision.emulator" and not m.startswith("azvision.emulator.")
            ]
        )
    }
    assert offenders == {}


def test_only_the_public_face_is_unprefixed() -> None:
    public = {path.name for path in emulator_modules() if not path.name.startswith("_")} | {"__init__.py"}
    assert public == PUBLIC
    assert sorted(azvision.emulator.__all__) == ["AmlEndpointSpec", "Emulator", "EmulatorConfig", "serve"]


def test_a_running_emulator_loads_no_sdk_module() -> None:
    code = (
        "import sys, azvision\n"
        "before = set(sys.modules)\n"
        "from azvision.emulator import Emulator\n"
        "with Emulator() as emu:\n"
        "    pass\n"
        "print(sorted(m for m in set(sys.modules) - before if not m.startswith('azvision.emulator')"
        " and m.startswith('azvision.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    # Beyond what ``import azvision`` itself loads (Python imports it to reach the sub-package).
    assert done.stdout.strip().splitlines()[-1] == "[]"
