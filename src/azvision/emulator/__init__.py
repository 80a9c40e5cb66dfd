"""Offline emulator of Azure Custom Vision, Image Analysis and Azure ML online endpoints.

``Emulator`` and ``serve`` are imported on first use, so importing this package (for example by
the pytest plugin that every test run loads) stays cheap and works without the emulator extra.

Example::

    from azvision.emulator import Emulator

    with Emulator() as emu:
        print(emu.endpoint)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from azvision.emulator._context import EmulatorConfig

if TYPE_CHECKING:
    from azvision.emulator.server import Emulator, serve

__all__ = ["Emulator", "EmulatorConfig", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("Emulator", "serve"):
        from azvision.emulator import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
