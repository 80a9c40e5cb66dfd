"""The migration gate of ``azvision compare --baseline NAME --max-drop D``: is a challenger worse, really?

Each challenger's accuracy is compared with the baseline's on the same images. The difference comes with
a 95 % confidence interval from a paired bootstrap over images (seeded, so the same run gives the same
interval): the images answered by both are resampled with replacement, and the interval is the 2.5th to
97.5th percentile of the resampled differences. A challenger fails the gate when its accuracy is more
than ``max_drop`` below the baseline's; the interval tells whether a difference is more than noise.

`gate` is the accuracy gate from per-image outcomes; `verdict` is the same over any metric (mAP@0.5 for
detection), with intervals from `bootstrap_interval`, which resamples image indices for any statistic.

Example:
    >>> report = gate({"custom_vision": [True, True, True, False], "onnx": [True, False, True, False]},
    ...               baseline="custom_vision", max_drop=0.1)
    >>> report.failed, report.rows[1].difference
    (('onnx',), -0.25)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GateReport", "GateRow", "bootstrap_difference", "bootstrap_interval", "gate", "verdict"]

#: Outcome of one image: right, wrong, or ``None`` when the backend gave no answer (an error).
Outcome = bool | None


def _accuracy(outcomes: Sequence[Outcome]) -> float:
    scored = [o for o in outcomes if o is not None]
    return sum(scored) / len(scored) if scored else 0.0


def bootstrap_interval(
    images: int,
    statistic: Callable[[Sequence[int]], float],
    *,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float] | None:
    """A percentile bootstrap interval of ``statistic`` over ``images`` images, resampled with replacement.

    ``statistic`` gets the indices of one resample (e.g. a challenger's mAP minus the baseline's on those
    images). ``None`` for no image.

    Example:
        >>> bootstrap_interval(4, lambda idx: sum(idx) / len(idx), resamples=500) < (3.0, 3.0)
        True
    """
    if images <= 0:
        return None
    rng = random.Random(seed)
    population = range(images)
    values = sorted(statistic(rng.choices(population, k=images)) for _ in range(resamples))
    return _percentiles(values, confidence)


def _percentiles(values: Sequence[float], confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    n = len(values)
    low = values[min(n - 1, int(tail * n))]
    high = values[max(0, min(n - 1, int((1.0 - tail) * n) - 1))]
    return round(low, 6), round(high, 6)


def bootstrap_difference(
    baseline: Sequence[Outcome],
    challenger: Sequence[Outcome],
    *,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float] | None:
    """A ``(low, high)`` confidence interval of ``accuracy(challenger) - accuracy(baseline)``.

    Paired: image ``i`` of one list is image ``i`` of the other; images either backend failed on are left
    out. ``None`` when no image was answered by both. (The accuracy case of `bootstrap_interval`, drawn
    straight from the per-image differences.)

    Example:
        >>> bootstrap_difference([True] * 50, [True] * 50)
        (0.0, 0.0)
    """
    if len(baseline) != len(challenger):
        raise ValueError(f"{len(baseline)} baseline outcomes but {len(challenger)} challenger outcomes")
    diffs = [
        int(c) - int(b) for b, c in zip(baseline, challenger, strict=True) if b is not None and c is not None
    ]
    if not diffs:
        return None
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(resamples))
    return _percentiles(means, confidence)


@dataclass(frozen=True)
class GateRow:
    """One backend's line of the gate: accuracy, difference from the baseline with its interval, cost.

    Example:
        >>> GateRow("onnx", 0.9, -0.05, (-0.1, 0.0), 0.0, passed=True).to_dict()["ci95"]
        [-0.1, 0.0]
    """

    backend: str
    accuracy: float
    difference: float | None
    ci95: tuple[float, float] | None
    cost_per_1000: float | None
    passed: bool = True
    baseline: bool = False
    images: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape in ``comparison.json`` (``"gate"."rows"``)."""
        return {
            "backend": self.backend,
            "baseline": self.baseline,
            "accuracy": self.accuracy,
            "difference": self.difference,
            "ci95": list(self.ci95) if self.ci95 is not None else None,
            "cost_per_1000_images_usd": self.cost_per_1000,
            "images": self.images,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class GateReport:
    """The baseline first, then each challenger; ``failed`` names the challengers over ``max_drop``.

    Example:
        >>> gate({"a": [True], "b": [True]}, baseline="a").passed
        True
    """

    baseline: str
    max_drop: float | None
    rows: tuple[GateRow, ...]
    failed: tuple[str, ...] = field(default=())
    resamples: int = 2000
    seed: int = 0
    #: What the rows' ``accuracy`` and ``difference`` measure (``"accuracy"``, ``"map50"``…).
    metric: str = "accuracy"

    @property
    def passed(self) -> bool:
        """No challenger dropped more than ``max_drop`` below the baseline."""
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        """The ``"gate"`` object of ``comparison.json``."""
        return {
            "baseline": self.baseline,
            "metric": self.metric,
            "max_drop": self.max_drop,
            "passed": self.passed,
            "failed": list(self.failed),
            "bootstrap": {"resamples": self.resamples, "seed": self.seed, "confidence": 0.95},
            "rows": [row.to_dict() for row in self.rows],
        }


def verdict(
    scores: Mapping[str, float],
    *,
    baseline: str,
    max_drop: float | None = None,
    intervals: Mapping[str, tuple[float, float] | None] | None = None,
    costs: Mapping[str, float | None] | None = None,
    images: Mapping[str, int] | None = None,
    metric: str = "accuracy",
    resamples: int = 2000,
    seed: int = 0,
) -> GateReport:
    """The gate over any metric: each backend's ``scores`` against the baseline's.

    ``intervals`` holds each challenger's 95 % interval of its difference (`bootstrap_interval`), ``costs``
    the list-price cost per 1,000 images, ``images`` how many images each row rests on.

    Example:
        >>> verdict({"cv": 0.8, "automl": 0.7}, baseline="cv", max_drop=0.05, metric="map50").failed
        ('automl',)
    """
    if baseline not in scores:
        raise ValueError(f"the baseline {baseline!r} is not among the compared backends: {', '.join(scores)}")
    spans, price, counts = intervals or {}, costs or {}, images or {}
    rows = [
        GateRow(
            baseline,
            scores[baseline],
            None,
            None,
            price.get(baseline),
            baseline=True,
            images=counts.get(baseline, 0),
        )
    ]
    failed = []
    for name, score in scores.items():
        if name == baseline:
            continue
        difference = round(score - scores[baseline], 6)
        passed = max_drop is None or difference >= -max_drop - 1e-12
        if not passed:
            failed.append(name)
        rows.append(
            GateRow(
                name,
                score,
                difference,
                spans.get(name),
                price.get(name),
                passed=passed,
                images=counts.get(name, 0),
            )
        )
    return GateReport(baseline, max_drop, tuple(rows), tuple(failed), resamples, seed, metric)


def gate(
    outcomes: Mapping[str, Sequence[Outcome]],
    *,
    baseline: str,
    max_drop: float | None = None,
    costs: Mapping[str, float | None] | None = None,
    accuracies: Mapping[str, float] | None = None,
    resamples: int = 2000,
    seed: int = 0,
) -> GateReport:
    """The accuracy gate, from every backend's per-image outcomes (in the same image order).

    ``accuracies`` overrides the accuracy computed from the outcomes (e.g. the evaluation's own);
    ``costs`` gives each backend's list-price cost per 1,000 images.

    Example:
        >>> gate({"a": [True, False]}, baseline="b")
        Traceback (most recent call last):
        ...
        ValueError: the baseline 'b' is not among the compared backends: a
    """
    if baseline not in outcomes:
        raise ValueError(
            f"the baseline {baseline!r} is not among the compared backends: {', '.join(outcomes)}"
        )
    scores = {name: _accuracy(values) for name, values in outcomes.items()}
    scores.update(accuracies or {})
    base = outcomes[baseline]
    intervals = {
        name: bootstrap_difference(base, values, resamples=resamples, seed=seed)
        for name, values in outcomes.items()
        if name != baseline
    }
    images = {
        name: sum(b is not None and c is not None for b, c in zip(base, values, strict=True))
        for name, values in outcomes.items()
    }
    images[baseline] = sum(o is not None for o in base)
    return verdict(
        scores,
        baseline=baseline,
        max_drop=max_drop,
        intervals=intervals,
        costs=costs,
        images=images,
        resamples=resamples,
        seed=seed,
    )
