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
    lo = np.maximum(first[:, None, :2], second[None, :, :2])
    hi = np.minimum(first[:, None, 2:], second[None, :, 2:])
    shared = np.prod(np.clip(hi - lo, 0.0, None), axis=-1)
    union = np.prod(first[:, 2:] - first[:, :2], axis=-1)[:, None] + np.prod(
        second[:, 2:] - second[:, :2], axis=-1
    )
    union = union - shared
    iou: np.ndarray = np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)
    return iou


def _suppress(corners: np.ndarray, ranked: np.ndarray) -> list[int]:
    """Greedy keep-list (positions in ``ranked``) over boxes already ordered best first."""
    iou = overlaps(corners[ranked], corners[ranked])
    alive = np.ones(len(ranked), bool)
    kept: list[int] = []
    for i in range(len(ranked)):
        if alive[i]:
            kept.append(i)
            alive[i + 1 :] &= iou[i, i + 1 :] <= NMS_IOU
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
    found: list[tuple[float, int, int]] = []  # (score, cell index, tag)
    for tag in range(tags):
        cells = np.flatnonzero(score[:, tag] >= max(min_score, MIN_SCORE))
        ranked = cells[np.lexsort((cells, -score[cells, tag]))]
        found += [(float(score[ranked[i], tag]), int(ranked[i]), tag) for i in _suppress(corners, ranked)]
    found.sort(key=lambda f: (-f[0], f[1], f[2]))
    regions: list[Region] = []
    for value, cell, tag in found[:MAX_BOXES]:
        x0, y0, x1, y1 = np.clip(corners[cell], 0.0, 1.0).tolist()
        regions.append((tag, min(max(value, 0.0), 1.0), (x0, y0, x1 - x0, y1 - y0)))
    return regions
