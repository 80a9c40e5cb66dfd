"""Fixtures shared by every test folder."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
#: The project's shared folder (the design, the wire-format references, the real service exports): beside
#: the repository unless ``AZVISION_SHARED_DIR`` says where (a git worktree elsewhere, say).
SHARED = Path(os.environ.get("AZVISION_SHARED_DIR") or REPO.parent / "shared")
REAL_EXPORTS = SHARED / "fixtures" / "real-custom-vision-exports"
_missing_shared: dict[str, Path] = {}


def shared_path(relative: str | Path) -> Path:
    """``SHARED / relative``, or a loud skip when it is missing; a failure with ``AZVISION_REQUIRE_SHARED=1``.

    Call it in a test (or a fixture), or mark the test ``@pytest.mark.needs_shared("fixtures/...")``.
    """
    path = SHARED / relative
    if not path.exists():
        reason = (
            f"{path} is missing: the shared folder is not beside the repository "
            "(set AZVISION_SHARED_DIR to its location)"
        )
        # Opt-in rather than keyed on `CI`: a CI machine without the folder still runs the rest green.
        if os.environ.get("AZVISION_REQUIRE_SHARED") == "1":
            pytest.fail(f"{reason}; AZVISION_REQUIRE_SHARED=1, so it must not be skipped", pytrace=False)
        _missing_shared[str(path)] = path
        pytest.skip(reason)
    return path


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("needs_shared"):
        shared_path(*marker.args)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The skips for want of the shared folder, said where nobody misses them."""
    if _missing_shared:
        terminalreporter.write_sep("!", "tests SKIPPED because the shared folder is missing", yellow=True)
        for path in sorted(_missing_shared):
            terminalreporter.write_line(f"missing: {path}")
        terminalreporter.write_line(
            "set AZVISION_SHARED_DIR=/path/to/shared to run them (AZVISION_REQUIRE_SHARED=1 fails them)"
        )


def make_png(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A small valid PNG."""
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def make_jpeg(
    size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (30, 30, 200), **save: object
) -> bytes:
    """A small valid JPEG."""
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG", **save)
    return buf.getvalue()


@pytest.fixture(scope="session")
def inference_python() -> Path:
    """The Azure ML inference server's Python: its environment is built at most once per run.

    `ensure_environment` keeps it under the azvision cache directory (a marker file under a lock), so later
    runs reuse it. Every test that needs it, directly or through a fixture, is marked `slow` (see
    `pytest_collection_modifyitems`): depend on this fixture before starting an emulator with
    `aml_endpoints`.
    """
    from azvision.emulator._inference_server import ensure_environment

    return ensure_environment()


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "inference_python" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def png_bytes() -> bytes:
    return make_png()


@pytest.fixture(autouse=True)
def _no_azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's real Azure settings by accident."""
    from azvision._config import ENV

    for name in {"AZVISION_BACKEND", *(var for names in ENV.values() for var in names.values())}:
        monkeypatch.delenv(name, raising=False)
