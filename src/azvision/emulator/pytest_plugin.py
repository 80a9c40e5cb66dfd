"""pytest plugin (entry point ``azvision``): the ``azvision_emulator`` fixture.

Installed with azvision, so any test suite can use it. Each test gets a fresh emulator on a free
loopback port, stopped after the test. Options go through the ``azvision_emulator`` marker (the
`Emulator` keyword arguments).

Example::

    import pytest

    @pytest.mark.azvision_emulator(rate_limit_tps=2, seed=7)
    def test_my_app_handles_throttling(azvision_emulator):
        client = make_client(azvision_emulator.endpoint, azvision_emulator.prediction_key)
        ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from azvision.emulator import Emulator

_MARKER = "azvision_emulator"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(**options): keyword arguments for the azvision_emulator fixture's Emulator "
        "(latency_ms, rate_limit_tps, fail_rate, drop_rate, seed, data_dir, aml_endpoints, "
        "training_seconds)",
    )


@pytest.fixture
def azvision_emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """A running `Emulator`, configured by the ``azvision_emulator`` marker."""
    # Imported here so that the plugin costs nothing in test runs that do not use the fixture,
    # and loads even where the emulator extra is not installed.
    from azvision.emulator import Emulator

    marker = request.node.get_closest_marker(_MARKER)
    options = dict(marker.kwargs) if marker is not None else {}
    with Emulator(**options) as emulator:
        yield emulator
