"""What the emulated ``GetIterationPerformance`` reports for a detector: precision, recall and AP per tag.

The service scores boxes at IoU 0.5: within one image a predicted box, taken most probable first, is a
hit when it overlaps a true box of its tag not yet hit by at least 0.5 (the one it overlaps most), else
a miss. Precision and recall count the boxes whose probability reaches the iteration's threshold;
average precision is the area under the whole precision–recall curve, precision taken as the best at
that recall or beyond (all-point interpolation). The means are over the tags that have true boxes.
Written for the emulator alone, on plain ``(left, top, width, height)`` tuples.

Example:
    >>> box = (0.1, 0.1, 0.4, 0.4)
    >>> scores = tag_scores([[(0, box)]], [[(0, 0.9, box), (0, 0.8, box)]], tags=1, threshold=0.5)
    >>> scores[0]
    TagScore(precision=0.5, recall=1.0, average_precision=1.0, support=1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from azvision.emulator._yolo import overlaps

__all__ = ["MATCH_IOU", "TagScore", "tag_scores"]

#: Overlap at which a predicted box counts as finding a true one.
MATCH_IOU = 0.5

Box = tuple[float, float, float, float]


class TagScore(NamedTuple):
    """One tag's numbers; ``support`` is its count of true boxes."""

    precision: float
    recall: float
    average_precision: float
    support: int


def _inside(box: Box) -> np.ndarray:
    """``x0, y0, x1, y1`` of a box cut to the image."""
    left, top, width, height = box
    return np.clip(np.array([left, top, left + width, top + height], np.float64), 0.0, 1.0)


def _outcomes(truth: Sequence[Box], guesses: Sequence[tuple[float, Box]]) -> list[tuple[float, bool]]:
    """One image, one tag: ``(probability, hit?)`` per predicted box."""
    targets = np.array([_inside(b) for b in truth]).reshape(-1, 4)
    free = np.ones(len(targets), bool)
    out: list[tuple[float, bool]] = []
    for probability, box in sorted(guesses, key=lambda g: -g[0]):
        overlap = (
            np.where(free, overlaps(_inside(box)[None], targets)[0], -1.0) if len(targets) else np.zeros(0)
        )
        hit = bool(len(overlap)) and float(overlap.max()) >= MATCH_IOU
        if hit:
            free[int(np.argmax(overlap))] = False
        out.append((probability, hit))
    return out


def _area(hits: np.ndarray, support: int) -> float:
    """All-point interpolated AP of hits ordered by falling probability."""
    if not len(hits) or not support:
        return 0.0
    found = np.cumsum(hits)
    recall = found / support
    precision = found / np.arange(1, len(hits) + 1)
    best_after = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * best_after))


def tag_scores(
    truths: Sequence[Sequence[tuple[int, Box]]],
    found: Sequence[Sequence[tuple[int, float, Box]]],
    *,
    tags: int,
    threshold: float,
) -> list[TagScore]:
    """Per image its true ``(tag, box)`` and predicted ``(tag, probability, box)`` → a score per tag."""
    scores: list[TagScore] = []
    for tag in range(tags):
        results: list[tuple[float, bool]] = []
        support = 0
        for truth, guesses in zip(truths, found, strict=True):
            mine = [box for t, box in truth if t == tag]
            support += len(mine)
            results += _outcomes(mine, [(p, box) for t, p, box in guesses if t == tag])
        probability = np.array([p for p, _ in results])
        hits = np.array([h for _, h in results], bool)
        order = np.argsort(-probability, kind="stable")
        confident = hits[probability >= threshold]
        scores.append(
            TagScore(
                precision=float(confident.mean()) if len(confident) else 0.0,
                recall=float(confident.sum()) / support if support else 0.0,
                average_precision=_area(hits[order], support),
                support=support,
            )
        )
    return scores
