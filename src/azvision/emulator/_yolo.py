"""The emulated service's reading of a compact detector's ``model_outputs0`` grid.

Written from the documented behaviour (``shared/reference/custom-vision-export-format.md`` §3.2), not
shared with the SDK, so the SDK's decoder is checked against an independent one:

* channels are anchor-major, ``tx, ty, tw, th, to, class logits…`` per anchor, over an ``H×W`` grid;
* centre ``((σ(tx) + col) / W, (σ(ty) + row) / H)``, size ``(exp(tw)·aw / W, exp(th)·ah / H)``;
* score of a class = ``softmax(logits) · σ(to)``;
* class-aware greedy suppression at IoU 0.45, scores from 0.01, at most 64 boxes (the samples' numbers).

Example:
    >>> import numpy as np
    >>> grid = np.full((len(ANCHORS) * 6, 1, 1), -20.0)
    >>> grid[4], grid[:4] = 20.0, 0.0  # first anchor: a sure object in the only cell
    >>> [(round(p, 2), [round(v, 3) for v in box]) for _, p, box in read_grid(grid, 1, 0.5)]
    [(1.0, [0.214, 0.161, 0.573, 0.677])]
"""

from __future__ import annotations

import numpy as np

__all__ = ["ANCHORS", "MAX_BOXES", "MIN_SCORE", "NMS_IOU", "overlaps", "read_grid"]

#: The compact detector's anchor sizes (width, height) in grid cells, as its metadata lists them.
ANCHORS: tuple[tuple[float, float], ...] = (
    (0.573, 0.677),
    (1.87, 2.06),
    (3.34, 5.47),
    (7.88, 3.53),
    (9.77, 9.17),
)
#: Overlap above which a weaker box of the same tag is dropped (``Yolo.NmsThreshold``).
NMS_IOU = 0.45
#: Lowest score a box is reported with.
MIN_SCORE = 0.01
#: Most boxes reported for one image.
MAX_BOXES = 64

Region = tuple[int, float, tuple[float, float, float, float]]  # tag index, score, (left, top, w, h)


def _squash(values: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * values))  # σ without overflow warnings
    return out


def overlaps(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU of every ``(n, 4)`` box with every ``(m, 4)`` box (``x0, y0, x1, y1``) → ``(n, m)``.

    Example:
        >>> overlaps(np.array([[0, 0, 1, 1.0]]), np.array([[0, 0, 0.5, 1], [2, 2, 3, 3.0]])).tolist()
        [[0.5, 0.0]]
    """
    a, b = first[:, None, :], second[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0, None)
    shared = width * height
    union = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (
        b[..., 3] - b[..., 1]
    )
    union = union - shared
    iou: np.ndarray = np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)
    return iou


def _suppress(boxes: np.ndarray, tags: np.ndarray) -> list[int]:
    """Greedy keep-list (positions) over ``(n, 4)`` corner boxes of candidates already ordered best first:
    a candidate goes when a kept one of its tag overlaps it by more than `NMS_IOU`; at most `MAX_BOXES`."""
    alive = np.ones(len(boxes), bool)
    kept: list[int] = []
    while len(kept) < MAX_BOXES and (left := np.flatnonzero(alive)).size:
        best = int(left[0])
        kept.append(best)
        alive[best] = False
        rivals = left[1:][tags[left[1:]] == tags[best]]
        iou = overlaps(boxes[best][None], boxes[rivals])[0]
        alive[rivals[iou > NMS_IOU]] = False
    return kept


def read_grid(grid: np.ndarray, tags: int, min_score: float) -> list[Region]:
    """One image's ``(A·(5+tags), H, W)`` grid → ``(tag index, score, box)`` after NMS, best first.

    Boxes are clipped to the image after suppression; equal scores keep grid order (anchor, row, column).
    """
    per_anchor = 5 + tags
    a, h, w = len(ANCHORS), grid.shape[1], grid.shape[2]
    t = (
        np.asarray(grid, np.float64)
        .reshape(a, per_anchor, h, w)
        .transpose(0, 2, 3, 1)
        .reshape(-1, per_anchor)
    )
    anchor_index, row, col = np.unravel_index(np.arange(a * h * w), (a, h, w))
    prior = np.asarray(ANCHORS)[anchor_index]
    cx = (_squash(t[:, 0]) + col) / w
    cy = (_squash(t[:, 1]) + row) / h
    bw = np.exp(np.minimum(t[:, 2], 50.0)) * prior[:, 0] / w
    bh = np.exp(np.minimum(t[:, 3], 50.0)) * prior[:, 1] / h
    corners = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    logits = t[:, 5:] - t[:, 5:].max(axis=1, keepdims=True)
    chance = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    score = chance * _squash(t[:, 4])[:, None]
    cells, tag_of = np.nonzero(score >= max(min_score, MIN_SCORE))
    order = np.lexsort((tag_of, cells, -score[cells, tag_of]))
    cells, tag_of = cells[order], tag_of[order]
    regions: list[Region] = []
    for position in _suppress(corners[cells], tag_of):
        cell, tag = int(cells[position]), int(tag_of[position])
        x0, y0, x1, y1 = np.clip(corners[cell], 0.0, 1.0).tolist()
        regions.append((tag, min(max(float(score[cell, tag]), 0.0), 1.0), (x0, y0, x1 - x0, y1 - y0)))
    return regions
