"""What routers count: calls per backend, cache hits and list-price cost, summed through nesting.

Example:
    >>> usage = Usage.of_leaf("custom_vision", 10, 0.002) + Usage.of_leaf("onnx", 25, 0.0)
    >>> usage.calls, round(usage.cost_usd, 4)
    ({'custom_vision': 10, 'onnx': 25}, 0.02)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._pricing import cost_per_1000_images

__all__ = ["RoutingStats", "StageStats", "Usage", "leaf_cost"]


def leaf_cost(backend: object) -> float | None:
    """List-price USD of one call to ``backend`` (``None`` when unknown, e.g. Azure ML, Azure OpenAI).

    Example:
        >>> class Fake:
        ...     name = "custom_vision"
        >>> leaf_cost(Fake())
        0.002
    """
    name = getattr(backend, "name", None)
    if not isinstance(name, str):
        return None
    mode = getattr(backend, "mode", "tags")
    features = getattr(backend, "features", ())
    per_1000 = cost_per_1000_images(
        name,
        mode=mode if isinstance(mode, str) else "tags",
        features=tuple(str(f) for f in features) if isinstance(features, tuple | list) else (),
    )
    return None if per_1000 is None else per_1000 / 1000.0


@dataclass(frozen=True)
class Usage:
    """Backend calls by backend name, cache hits and misses, and the list-price cost of the calls.

    ``cost_usd`` sums the backends with a known price; ``unpriced`` names the others.
    """

    calls: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    unpriced: tuple[str, ...] = ()
    cache_hits: int = 0
    cache_misses: int = 0

    @classmethod
    def of_leaf(cls, name: str, calls: int, cost_per_call: float | None, billed: int | None = None) -> Usage:
        """One backend's usage: ``calls`` requests, of which ``billed`` (default all) answered and are
        billed at ``cost_per_call`` (``None``: no known price). Failed requests (5xx, 429) are not billed.
        """
        billed = calls if billed is None else billed
        if cost_per_call is None:
            return cls({name: calls}, 0.0, (name,) if billed else ())
        return cls({name: calls}, cost_per_call * billed)

    def __add__(self, other: Usage) -> Usage:
        calls = dict(self.calls)
        for name, count in other.calls.items():
            calls[name] = calls.get(name, 0) + count
        return Usage(
            calls,
            self.cost_usd + other.cost_usd,
            tuple(dict.fromkeys((*self.unpriced, *other.unpriced))),
            self.cache_hits + other.cache_hits,
            self.cache_misses + other.cache_misses,
        )

    @property
    def backend_calls(self) -> int:
        """Calls to all backends together."""
        return sum(self.calls.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``calls`` by backend, ``backend_calls``, cache hits and misses, ``cost_usd``."""
        return {
            "calls": dict(self.calls),
            "backend_calls": self.backend_calls,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "cost_usd": round(self.cost_usd, 6),
            "unpriced": list(self.unpriced),
        }


@dataclass(frozen=True)
class StageStats:
    """One member of a router: requests it got, answers of its that were final, errors, skips (cool-down),
    and the list-price cost of its answers (failed requests are not billed)."""

    name: str
    calls: int
    answered: int
    errors: int
    skipped: int = 0
    cost_usd: float | None = None


@dataclass(frozen=True)
class RoutingStats:
    """A router's counts (`Cascade.stats()`, `Fallback.stats()`, `CachedClassifier.stats()`).

    Example:
        >>> stats = RoutingStats("cascade", "cascade(onnx→custom_vision)", 4, (), Usage({"onnx": 4}))
        >>> stats.usage.backend_calls, stats.to_dict()["inputs"]
        (4, 4)
    """

    kind: str
    name: str
    inputs: int
    stages: tuple[StageStats, ...]
    usage: Usage

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts (what the CLI reports print)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "inputs": self.inputs,
            "stages": [
                {
                    "name": s.name,
                    "calls": s.calls,
                    "answered": s.answered,
                    "errors": s.errors,
                    "skipped": s.skipped,
                    "cost_usd": None if s.cost_usd is None else round(s.cost_usd, 6),
                }
                for s in self.stages
            ],
            "usage": self.usage.to_dict(),
        }
