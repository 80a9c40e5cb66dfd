"""Fixtures shared by every test folder."""

from __future__ import annotations

import io

import pytest
from PIL import Image


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


@pytest.fixture
def png_bytes() -> bytes:
    return make_png()


@pytest.fixture(autouse=True)
def _no_azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's real Azure settings by accident."""
    from azvision._config import ENV

    for name in {"AZVISION_BACKEND", *(var for names in ENV.values() for var in names.values())}:
        monkeypatch.delenv(name, raising=False)
