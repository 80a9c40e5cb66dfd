"""The emulated vision chat model: what it "sees" in a request and how sure it is of each label.

**An emulation, not a language model.** It understands one task — choosing among the labels a
structured-output schema offers — and decides from, in this order:

1. *in-context examples*: images earlier in the conversation, each labelled by the text just before it
   in the same message (``Example of "cat":``) or by the assistant message that follows it. Their features
   from the emulator's frozen backbone (the one its Custom Vision learner uses) train a linear head, so
   few-shot works for real photos;
2. *knowledge*: a labelled folder (one sub-folder per label) the emulator was started with
   (``openai_knowledge``), for zero-shot labels it "knows";
3. *pixels*: otherwise, the tags the emulated Image Analysis computes from the pixels, matched against
   the label names. Weak, deterministic, and said so in the docs.

Example::

    model = VisionModel(knowledge=None)
    probabilities = model.label_probabilities(("red", "blue"), query=png_bytes, examples=[])
"""

from __future__ import annotations

import hashlib
import io
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ._features import get_feature_extractor
from ._head import LinearHead, train_head
from ._ia_describe import caption_of, tags_of
from ._pixels import analyse

__all__ = ["Example", "VisionModel", "caption"]

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}
_FEATURE_CACHE = 512
_HEAD_CACHE = 64
_PIXEL_SHARPNESS = 6.0


@dataclass(frozen=True)
class Example:
    """One in-context image and the label the conversation gives it."""

    label: str
    data: bytes


class VisionModel:
    """Label probabilities for a query image; thread-safe, with bounded caches of features and heads."""

    def __init__(self, knowledge: Path | None) -> None:
        self.knowledge = knowledge
        self._lock = threading.Lock()
        self._features: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._heads: OrderedDict[tuple[object, ...], LinearHead] = OrderedDict()
        self._known: dict[str, np.ndarray] | None = None

    def label_probabilities(
        self, labels: Sequence[str], *, query: bytes, examples: Sequence[Example]
    ) -> dict[str, float]:
        """A probability for each of ``labels`` (summing to 1) that ``query`` shows it."""
        taught = [example for example in examples if example.label in labels]
        if len({example.label for example in taught}) >= 2:
            return self._from_examples(labels, query, taught)
        known = self._knowledge_for(labels)
        if len(known) >= 2:
            return self._from_knowledge(labels, query, known)
        return _from_pixels(labels, query)

    # -- few-shot -------------------------------------------------------------------------------
    def _from_examples(
        self, labels: Sequence[str], query: bytes, examples: Sequence[Example]
    ) -> dict[str, float]:
        taught = sorted({example.label for example in examples}, key=list(labels).index)
        key = ("examples", tuple(taught), *(hashlib.sha256(e.data).digest() for e in examples))
        head = self._head(
            key, lambda: self._train(taught, [(e.label, self._feature(e.data)) for e in examples])
        )
        return _spread(labels, head, self._feature(query))

    # -- zero-shot from the knowledge folder ----------------------------------------------------------
    def _knowledge_for(self, labels: Sequence[str]) -> dict[str, np.ndarray]:
        if self.knowledge is None:
            return {}
        with self._lock:
            if self._known is None:
                self._known = _load_knowledge(self.knowledge)
            known = self._known
        by_name = {name.lower(): name for name in known}
        return {label: known[by_name[label.lower()]] for label in labels if label.lower() in by_name}

    def _from_knowledge(
        self, labels: Sequence[str], query: bytes, known: dict[str, np.ndarray]
    ) -> dict[str, float]:
        taught = [label for label in labels if label in known]
        rows = [(label, row) for label in taught for row in known[label]]
        head = self._head(("knowledge", tuple(taught)), lambda: self._train(taught, rows))
        return _spread(labels, head, self._feature(query))

    # -- shared ---------------------------------------------------------------------------------
    def _feature(self, data: bytes) -> np.ndarray:
        digest = hashlib.sha256(data).digest()
        with self._lock:
            cached = self._features.get(digest)
            if cached is not None:
                self._features.move_to_end(digest)
                return cached
        feature: np.ndarray = get_feature_extractor().features([data])[0]
        with self._lock:
            self._features[digest] = feature
            while len(self._features) > _FEATURE_CACHE:
                self._features.popitem(last=False)
        return feature

    def _head(self, key: tuple[object, ...], build: Callable[[], LinearHead]) -> LinearHead:
        with self._lock:
            head = self._heads.get(key)
        if head is None:
            head = build()
            with self._lock:
                self._heads[key] = head
                while len(self._heads) > _HEAD_CACHE:
                    self._heads.popitem(last=False)
        return head

    @staticmethod
    def _train(taught: Sequence[str], rows: Sequence[tuple[str, np.ndarray]]) -> LinearHead:
        features = np.stack([row for _, row in rows])
        targets = [[list(taught).index(label)] for label, _ in rows]
        return train_head(features, targets, list(taught))


def _spread(labels: Sequence[str], head: LinearHead, feature: np.ndarray) -> dict[str, float]:
    """The head's probabilities over its labels; labels it was never shown get none."""
    row = head.predict_proba(feature[None, :])[0]
    taught = dict(zip(head.labels, (float(p) for p in row), strict=True))
    return {label: taught.get(label, 0.0) for label in labels}


def _load_knowledge(root: Path) -> dict[str, np.ndarray]:
    extractor = get_feature_extractor()
    known: dict[str, np.ndarray] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
        if files:
            known[folder.name] = extractor.features([p.read_bytes() for p in files])
    return known


def _open(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.convert("RGB")


def _from_pixels(labels: Sequence[str], query: bytes) -> dict[str, float]:
    tags = tags_of(analyse(_open(query)))
    scores = []
    for label in labels:
        words = set(label.lower().replace("_", " ").replace("-", " ").split())
        matched = [conf for name, conf in tags if name == label.lower() or words & set(name.split())]
        scores.append(max(matched, default=0.0))
    top = max(scores, default=0.0)
    weights = [math.exp(_PIXEL_SHARPNESS * (score - top)) for score in scores]
    total = sum(weights) or 1.0
    return {label: weight / total for label, weight in zip(labels, weights, strict=True)}


def caption(data: bytes) -> str:
    """A one-sentence description from the pixels (for requests with no label schema)."""
    stats = analyse(_open(data))
    text, _confidence = caption_of(stats, tags_of(stats))
    return text[:1].upper() + text[1:] + "."
