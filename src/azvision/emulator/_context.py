"""Shared state handed to every emulated service (keys, config, stats, seeded randomness).

Each service module (``custom_vision``, ``image_analysis``, ``azure_ml``) exposes
``routes(ctx: EmulatorContext) -> list[starlette.routing.BaseRoute]``; ``server`` mounts them all
behind the fault middleware (``faults``) and owns the uvicorn thread.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EmulatorConfig:
    """Constructor arguments of `azvision.emulator.Emulator`, frozen."""

    host: str = "127.0.0.1"
    port: int = 0
    latency_ms: float = 0.0
    rate_limit_tps: float | None = None
    fail_rate: float = 0.0
    drop_rate: float = 0.0
    seed: int = 0
    data_dir: Path | None = None
    # name -> path of score.py, or an ``azure_ml.AmlEndpointSpec``
    aml_endpoints: dict[str, Any] = field(default_factory=dict)
    training_seconds: float = 0.5
    # Azure OpenAI: per-deployment quotas and the labelled folder zero-shot answers come from
    openai_rpm: float | None = None
    openai_tpm: float | None = None
    openai_knowledge: Path | None = None


class Stats:
    """Thread-safe request counters: ``{route: {status: count}}``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[str]] = {}

    def record(self, route: str, status: int | str) -> None:
        with self._lock:
            self._counts.setdefault(route, Counter())[str(status)] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {route: dict(c) for route, c in self._counts.items()}

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


@dataclass
class EmulatorContext:
    """Everything a service module needs; one per running emulator."""

    config: EmulatorConfig
    training_key: str = field(default_factory=lambda: "emu-train-" + secrets.token_hex(12))
    prediction_key: str = field(default_factory=lambda: "emu-pred-" + secrets.token_hex(12))
    vision_key: str = field(default_factory=lambda: "emu-vision-" + secrets.token_hex(12))
    aml_key: str = field(default_factory=lambda: "emu-aml-" + secrets.token_hex(12))
    openai_key: str = field(default_factory=lambda: "emu-openai-" + secrets.token_hex(12))
    prediction_resource_id: str = (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/emulator"
        "/providers/Microsoft.CognitiveServices/accounts/emulator-prediction"
    )
    endpoint: str = ""  # "http://127.0.0.1:PORT", set once the socket is bound
    stats: Stats = field(default_factory=Stats)
    # Services may keep their own state objects here (keyed by module name) so that
    # ``POST /_emulator/reset`` and ``data_dir`` persistence can reach them.
    services: dict[str, Any] = field(default_factory=dict)
