"""Held-out quality of a trained head: stratified k-fold precision, recall and average precision.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = np.vstack([rng.normal(0, 1, (10, 512)), rng.normal(3, 1, (10, 512))])
    >>> cross_validate(x, [[0]] * 10 + [[1]] * 10, ["low", "high"]).precision
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from azvision.emulator._head import check_inputs, target_matrix, train_head

__all__ = ["Performance", "TagScore", "cross_validate"]


@dataclass(frozen=True)
class TagScore:
    """Held-out quality of one tag at the evaluation threshold (fractions in [0, 1]).

    Example:
        >>> TagScore(1.0, 0.5, 0.75, 0.0, 0.1).recall
        0.5
    """

    precision: float
    recall: float
    average_precision: float
    precision_std: float
    recall_std: float


@dataclass(frozen=True)
class Performance:
    """Held-out quality of a whole iteration, as the service reports it.

    ``precision``/``recall`` are pooled over all tags' predictions at the threshold,
    ``average_precision`` is the mean of the tags' average precisions, and each ``*_std`` is
    the standard deviation of that number across the cross-validation folds.

    Example:
        >>> Performance({}, 1.0, 1.0, 1.0, 0.0, 0.0).average_precision
        1.0
    """

    per_tag: dict[str, TagScore]
    precision: float
    recall: float
    average_precision: float
    precision_std: float
    recall_std: float


def cross_validate(
    features: np.ndarray,
    targets: Sequence[Sequence[int]],
    labels: Sequence[str],
    *,
    multilabel: bool = False,
    threshold: float = 0.5,
    folds: int = 5,
    seed: int = 0,
) -> Performance:
    """Estimate precision, recall and average precision on held-out folds.

    Stratified k-fold (multilabel images are stratified by their rarest tag); ``folds`` drops
    to the image count of the smallest tag when that is lower, and never below 2. Every image
    is predicted once, by a head trained without it.

    Raises:
        ValueError: fewer than 2 images, or malformed targets.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = np.vstack([rng.normal(0, 1, (10, 512)), rng.normal(1, 1, (10, 512))])
        >>> cross_validate(x, [[0]] * 10 + [[1]] * 10, ["low", "high"]).precision
        1.0
    """
    x = check_inputs(features, labels)
    n, k = len(x), len(labels)
    if n < 2:
        raise ValueError("cross-validation needs at least 2 images")
    y = target_matrix(targets, k, n, multilabel=multilabel)
    counts = y.sum(axis=0)
    present = counts[counts > 0]
    n_folds = max(2, min(folds, int(present.min()) if present.size else folds, n))
    fold_of = _stratified_folds(y, counts, n_folds, seed)

    scores = np.zeros((n, k))
    for fold in range(n_folds):
        held_out = fold_of == fold
        train_rows = np.flatnonzero(~held_out)
        head = train_head(
            x[train_rows],
            [targets[row] for row in train_rows.tolist()],
            labels,
            multilabel=multilabel,
        )
        scores[held_out] = head.predict_proba(x[held_out])

    predicted = scores >= threshold
    truth = y > 0
    per_tag: dict[str, TagScore] = {}
    for j, label in enumerate(labels):
        fold_precision, fold_recall = _per_fold(predicted[:, j], truth[:, j], fold_of, n_folds)
        per_tag[label] = TagScore(
            precision=_ratio((predicted[:, j] & truth[:, j]).sum(), predicted[:, j].sum()),
            recall=_ratio((predicted[:, j] & truth[:, j]).sum(), truth[:, j].sum()),
            average_precision=_average_precision(scores[:, j], truth[:, j]),
            precision_std=_std(fold_precision),
            recall_std=_std(fold_recall),
        )
    fold_precision, fold_recall = _per_fold(predicted, truth, fold_of, n_folds)
    tags_with_images = [per_tag[label] for j, label in enumerate(labels) if counts[j] > 0]
    return Performance(
        per_tag=per_tag,
        precision=_ratio((predicted & truth).sum(), predicted.sum()),
        recall=_ratio((predicted & truth).sum(), truth.sum()),
        average_precision=float(np.mean([t.average_precision for t in tags_with_images]))
        if tags_with_images
        else 0.0,
        precision_std=_std(fold_precision),
        recall_std=_std(fold_recall),
    )


def _stratified_folds(y: np.ndarray, counts: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Each image's stratum is its rarest tag (its only tag, for multiclass); untagged images
    # form one more stratum.
    rarity = np.where(y > 0, counts[None, :], np.inf)
    stratum = np.where(y.any(axis=1), rarity.argmin(axis=1), y.shape[1])
    fold_of = np.empty(len(y), dtype=np.int64)
    next_fold = 0
    for group in np.unique(stratum):
        members = rng.permutation(np.flatnonzero(stratum == group))
        fold_of[members] = (next_fold + np.arange(len(members))) % n_folds
        next_fold = (next_fold + len(members)) % n_folds
    return fold_of


def _per_fold(
    predicted: np.ndarray, truth: np.ndarray, fold_of: np.ndarray, n_folds: int
) -> tuple[list[float], list[float]]:
    precisions: list[float] = []
    recalls: list[float] = []
    for fold in range(n_folds):
        rows = fold_of == fold
        hits = int((predicted[rows] & truth[rows]).sum())
        if predicted[rows].sum():
            precisions.append(hits / int(predicted[rows].sum()))
        if truth[rows].sum():
            recalls.append(hits / int(truth[rows].sum()))
    return precisions, recalls


def _ratio(numerator: Any, denominator: Any) -> float:
    return float(numerator) / float(denominator) if denominator else 0.0


def _std(values: list[float]) -> float:
    return float(np.std(values)) if values else 0.0


def _average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    positives = int(truth.sum())
    if positives == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    hits = truth[order]
    precision_at_hits = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    return float(precision_at_hits.sum() / positives)
