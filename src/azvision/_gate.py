"""The migration gate of ``azvision compare --baseline NAME --max-drop D``: is a challenger worse, really?

Each challenger's accuracy is compared with the baseline's on the same images. The difference comes with
a 95 % confidence interval from a paired bootstrap over images (seeded, so the same run gives the same
interval): the images answered by both are resampled with replacement, and the interval is the 2.5th to
97.5th percentile of the resampled differences. A challenger fails the gate when its accuracy is more
than ``max_drop`` below the baseline's; the interval tells whether a difference is more than noise.

Example:
    >>> report = gate({"custom_vision": [True, True, True, False], "onnx": [True, False, True, False]},
    ...               baseline="custom_vision", max_drop=0.1)
    >>> report.failed, report.rows[1].difference
    (('onnx',), -0.25)
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GateReport", "GateRow", "bootstrap_difference", "gate"]

#: Outcome of one image: right, wrong, or ``None`` when the backend gave no answer (an error).
Outcome = bool | None


def _accuracy(outcomes: Sequence[Outcome]) -> float:
    scored = [o for o in outcomes if o is not None]
    return sum(scored) / len(scored) if scored else 0.0


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
    out. ``None`` when no image was answered by both.

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
    tail = (1.0 - confidence) / 2.0
    low = means[min(resamples - 1, int(tail * resamples))]
    high = means[max(0, min(resamples - 1, int((1.0 - tail) * resamples) - 1))]
    return round(low, 6), round(high, 6)


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

    @property
    def passed(self) -> bool:
        """No challenger dropped more than ``max_drop`` below the baseline."""
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        """The ``"gate"`` object of ``comparison.json``."""
        return {
            "baseline": self.baseline,
            "max_drop": self.max_drop,
            "passed": self.passed,
            "failed": list(self.failed),
            "bootstrap": {"resamples": self.resamples, "seed": self.seed, "confidence": 0.95},
            "rows": [row.to_dict() for row in self.rows],
        }


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
    """Compare every backend of ``outcomes`` (per-image, in the same image order) with ``baseline``.

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
    accuracy = {name: _accuracy(values) for name, values in outcomes.items()}
    accuracy.update(accuracies or {})
    base = outcomes[baseline]
    rows = [
        GateRow(
            baseline,
            accuracy[baseline],
            None,
            None,
            (costs or {}).get(baseline),
            baseline=True,
            images=sum(o is not None for o in base),
        )
    ]
    failed = []
    for name, values in outcomes.items():
        if name == baseline:
            continue
        difference = round(accuracy[name] - accuracy[baseline], 6)
        passed = max_drop is None or difference >= -max_drop - 1e-12
        if not passed:
            failed.append(name)
        both = sum(b is not None and c is not None for b, c in zip(base, values, strict=True))
        rows.append(
            GateRow(
                name,
                accuracy[name],
                difference,
                bootstrap_difference(base, values, resamples=resamples, seed=seed),
                (costs or {}).get(name),
                passed=passed,
                images=both,
            )
        )
    return GateReport(baseline, max_drop, tuple(rows), tuple(failed), resamples, seed)
