"""Routing for cost and resilience: `Cascade`, `Fallback` and `CachedClassifier`, each a `Classifier`.

They compose: ``CachedClassifier(Cascade([onnx, Fallback([custom_vision, azure_openai])]))`` answers a
repeated image from the cache, an image the local model is sure of locally, and the rest in the cloud,
from the second resource while the first is failing. See ``docs/routing.md``.

Example:
    >>> from azvision import CachedClassifier, Cascade, Fallback
    >>> router = CachedClassifier(Cascade([onnx, Fallback([cv, aoai])], threshold=0.8))  # doctest: +SKIP
    >>> router.classify("cat.jpg").notes  # doctest: +SKIP
    ('cascade: onnx answered at 0.97 (threshold 0.80)',)
"""

from __future__ import annotations

from ._cache import CachedClassifier
from ._cascade import Cascade
from ._fallback import Fallback
from ._policy import MOVES_ON, moves_on
from ._stats import RoutingStats, StageStats, Usage

__all__ = [
    "MOVES_ON",
    "CachedClassifier",
    "Cascade",
    "Fallback",
    "RoutingStats",
    "StageStats",
    "Usage",
    "moves_on",
]
