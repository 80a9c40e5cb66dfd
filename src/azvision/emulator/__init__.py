"""Offline emulator of Azure Custom Vision, Image Analysis and Azure ML online endpoints.

The public face is `Emulator`, `EmulatorConfig`, `AmlEndpointSpec`,
`serve` and the pytest plugin (``azvision.emulator.pytest_plugin``); every other module is
private. The emulator is sealed from the SDK it checks: it imports nothing of ``azvision``
outside this package and shares only data files (``azvision/data/``).

``Emulator`` and ``serve`` are imported on first use, so importing this package (for example by
the pytest plugin that every test run loads) stays cheap and works without the emulator extra.

Example::

    from azvision.emulator import Emulator

    with Emulator() as emu:
        print(emu.endpoint)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from azvision.emulator._aml_spec import AmlEndpointSpec
from azvision.emulator._context import EmulatorConfig

if TYPE_CHECKING:
    from azvision.emulator._server import Emulator, serve

__all__ = ["AmlEndpointSpec", "Emulator", "EmulatorConfig", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("Emulator", "serve"):
        from azvision.emulator import _server

        return getattr(_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
