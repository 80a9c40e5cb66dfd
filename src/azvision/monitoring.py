"""Watch what a deployed model sees: label mix against the training set, confidence, errors, daily trend.

`monitor` reads ``azvision classify`` JSONL files (one result a line; lines with a ``time`` field
also give a daily trend, older files without it still work) and measures:

- the **label mix** of the answers against a baseline (the training set's label counts), as the
  population stability index, ``PSI = sum((p - q) * ln(p / q))`` over the labels, each share floored at
  0.001 so that a label missing on one side counts without dividing by zero. Rule of thumb: below 0.1
  stable, 0.1–0.25 moderate shift, above 0.25 a real shift; the default alarm is 0.2;
- the **confidence histogram** (ten bins of 0.1) and the **share below the threshold** (the review
  queue's ``max_confidence``, 0.6 by default);
- **errors by type** (``error.type``) and their share;
- per UTC day (lines with ``time``): count, mean confidence, share below the threshold, errors, PSI.

Crossing a limit (``max_psi``, ``max_low_share``, ``max_error_share``) is an alarm; ``azvision monitor``
exits 1 on any, for cron or CI. `plot_monitor` draws ``monitor.png`` (matplotlib, the ``eval`` extra).

Example:
    >>> records = [{"label": "cat", "confidence": 0.9, "error": None},
    ...            {"label": "dog", "confidence": 0.4, "error": None}]
    >>> report = monitor_records(records, baseline={"cat": 10, "dog": 10})
    >>> report.psi, report.below_threshold, report.alarms
    (0.0, 0.5, ('50.0% of answers are below confidence 0.6 (limit 20.0%)',))
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import ConfigurationError, missing_extra

__all__ = [
    "DailyStats",
    "MonitorReport",
    "monitor",
    "monitor_records",
    "plot_monitor",
    "population_stability_index",
    "read_results",
]

_FLOOR = 0.001
_BINS = 10


def population_stability_index(expected: Mapping[str, float], actual: Mapping[str, float]) -> float:
    """PSI between two label distributions (counts or shares; each is normalised), over their union.

    Example:
        >>> population_stability_index({"a": 50, "b": 50}, {"a": 50, "b": 50})
        0.0
        >>> round(population_stability_index({"a": 50, "b": 50}, {"a": 90, "b": 10}), 3)
        0.879
    """
    labels = sorted(set(expected) | set(actual))
    total_e = sum(expected.values()) or 1.0
    total_a = sum(actual.values()) or 1.0
    psi = 0.0
    for label in labels:
        p = max(actual.get(label, 0.0) / total_a, _FLOOR)
        q = max(expected.get(label, 0.0) / total_e, _FLOOR)
        psi += (p - q) * math.log(p / q)
    return round(psi, 6)


@dataclass(frozen=True)
class DailyStats:
    """One UTC day of results."""

    day: str
    count: int
    errors: int
    mean_confidence: float | None
    below_threshold: float | None
    psi: float | None


@dataclass(frozen=True)
class MonitorReport:
    """What `monitor` measured, and the alarms it raised (empty when all is well)."""

    total: int
    answered: int
    unreadable: int
    threshold: float
    label_counts: dict[str, int]
    baseline_counts: dict[str, int] | None
    psi: float | None
    confidence_histogram: list[int]
    mean_confidence: float | None
    below_threshold: float | None
    errors: dict[str, int]
    error_share: float
    days: tuple[DailyStats, ...] = ()
    limits: dict[str, float] = field(default_factory=dict)
    alarms: tuple[str, ...] = ()

    @property
    def drift(self) -> bool:
        """Whether any limit was crossed."""
        return bool(self.alarms)

    def to_dict(self) -> dict[str, Any]:
        """The contents of ``monitor.json``."""
        return {
            "total": self.total,
            "answered": self.answered,
            "unreadable_lines": self.unreadable,
            "threshold": self.threshold,
            "label_counts": self.label_counts,
            "baseline_counts": self.baseline_counts,
            "psi": self.psi,
            "confidence_histogram": {
                "bins": [round(i / _BINS, 1) for i in range(_BINS + 1)],
                "counts": self.confidence_histogram,
            },
            "mean_confidence": self.mean_confidence,
            "below_threshold": self.below_threshold,
            "errors": self.errors,
            "error_share": self.error_share,
            "days": [vars(day) for day in self.days],
            "limits": self.limits,
            "alarms": list(self.alarms),
            "drift": self.drift,
        }


def read_results(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[dict[str, Any]], int]:
    """The records of JSONL result files, and how many non-blank lines were not JSON objects."""
    records: list[dict[str, Any]] = []
    unreadable = 0
    for path in paths:
        try:
            lines = Path(path).read_text("utf-8", errors="replace").splitlines()
        except OSError as exc:
            raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from None
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                unreadable += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                unreadable += 1
    return records, unreadable


def monitor(
    paths: Iterable[str | os.PathLike[str]],
    *,
    baseline: Mapping[str, int] | str | os.PathLike[str] | None = None,
    threshold: float = 0.6,
    max_psi: float = 0.2,
    max_low_share: float = 0.2,
    max_error_share: float = 0.05,
) -> MonitorReport:
    """Measure ``azvision classify`` JSONL files against a baseline; see the module docs for the measures.

    ``baseline`` is a data set folder (one sub-folder per label: its image counts) or label counts.

    Example:
        >>> report = monitor(["results.jsonl"], baseline="flowers/train")  # doctest: +SKIP
        >>> report.psi, report.alarms  # doctest: +SKIP
        (0.03, ())
    """
    records, unreadable = read_results(paths)
    if not records:
        raise ConfigurationError("no result lines to monitor: the files hold no JSON lines")
    counts: Mapping[str, int] | None
    if baseline is None or isinstance(baseline, Mapping):
        counts = baseline
    else:
        from .datasets import Dataset

        data = Dataset.from_folder(baseline)
        if not data.items:
            raise ConfigurationError(f"the baseline {baseline} has no images in label folders")
        counts = data.counts()
    return monitor_records(
        records,
        baseline=counts,
        threshold=threshold,
        max_psi=max_psi,
        max_low_share=max_low_share,
        max_error_share=max_error_share,
        unreadable=unreadable,
    )


def monitor_records(
    records: list[dict[str, Any]],
    *,
    baseline: Mapping[str, int] | None = None,
    threshold: float = 0.6,
    max_psi: float = 0.2,
    max_low_share: float = 0.2,
    max_error_share: float = 0.05,
    unreadable: int = 0,
) -> MonitorReport:
    """`monitor` on records already read (dicts shaped like ``azvision classify`` JSONL lines)."""
    for name, value in (("threshold", threshold), ("max_low_share", max_low_share)):
        if not 0.0 <= value <= 1.0:
            raise ConfigurationError(f"{name} must be between 0 and 1, got {value!r}")
    stats = _stats(records, baseline, threshold)
    days = tuple(
        DailyStats(day=day, **_day(_stats(group, baseline, threshold)))
        for day, group in sorted(_by_day(records).items())
    )
    limits = {"max_psi": max_psi, "max_low_share": max_low_share, "max_error_share": max_error_share}
    alarms = []
    if stats["psi"] is not None and stats["psi"] > max_psi:
        alarms.append(f"the label mix moved from the baseline: PSI {stats['psi']:.3f} > {max_psi}")
    low = stats["below_threshold"]
    if low is not None and low > max_low_share:
        alarms.append(f"{low:.1%} of answers are below confidence {threshold} (limit {max_low_share:.1%})")
    if stats["error_share"] > max_error_share:
        alarms.append(f"{stats['error_share']:.1%} of inputs failed (limit {max_error_share:.1%})")
    return MonitorReport(
        total=len(records),
        unreadable=unreadable,
        threshold=threshold,
        baseline_counts=dict(baseline) if baseline is not None else None,
        days=days,
        limits=limits,
        alarms=tuple(alarms),
        **stats,
    )


def _stats(
    records: list[dict[str, Any]], baseline: Mapping[str, int] | None, threshold: float
) -> dict[str, Any]:
    answered = [r for r in records if not r.get("error")]
    confidences = [float(r["confidence"]) for r in answered if isinstance(r.get("confidence"), int | float)]
    labels = Counter(str(r["label"]) for r in answered if r.get("label") is not None)
    histogram = [0] * _BINS
    for value in confidences:
        histogram[min(int(value * _BINS), _BINS - 1)] += 1
    errors = Counter(str((r.get("error") or {}).get("type") or "error") for r in records if r.get("error"))
    return {
        "answered": len(answered),
        "label_counts": dict(labels.most_common()),
        "psi": population_stability_index(baseline, labels) if baseline and answered else None,
        "confidence_histogram": histogram,
        "mean_confidence": round(sum(confidences) / len(confidences), 4) if confidences else None,
        "below_threshold": (sum(c < threshold for c in confidences) / len(confidences))
        if confidences
        else None,
        "errors": dict(errors.most_common()),
        "error_share": sum(errors.values()) / len(records) if records else 0.0,
    }


def _day(stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "count": stats["answered"] + sum(stats["errors"].values()),
        "errors": sum(stats["errors"].values()),
        "mean_confidence": stats["mean_confidence"],
        "below_threshold": stats["below_threshold"],
        "psi": stats["psi"],
    }


def _by_day(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        stamp = record.get("time")
        if isinstance(stamp, str) and len(stamp) >= 10:
            groups.setdefault(stamp[:10], []).append(record)
    return groups


def plot_monitor(report: MonitorReport, path: str | os.PathLike[str]) -> Path:
    """Draw ``monitor.png``: label mix against the baseline, the confidence histogram, the daily trend.

    Example:
        >>> plot_monitor(report, "report/monitor.png")  # doctest: +SKIP
        PosixPath('report/monitor.png')
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - the eval extra is missing
        raise missing_extra(exc, what="drawing monitor.png", extra="eval") from exc
    figure, (mix, hist, trend) = plt.subplots(1, 3, figsize=(15, 4.2))
    labels = sorted(set(report.label_counts) | set(report.baseline_counts or {}))
    seen = _shares(report.label_counts, labels)
    x = list(range(len(labels)))
    mix.bar([i - 0.2 for i in x], seen, width=0.4, label="answers")
    if report.baseline_counts:
        mix.bar([i + 0.2 for i in x], _shares(report.baseline_counts, labels), width=0.4, label="baseline")
    mix.set_xticks(x, labels, rotation=30, ha="right")
    psi = "" if report.psi is None else f" (PSI {report.psi:.3f})"
    mix.set_title(f"label mix{psi}")
    mix.set_ylabel("share")
    mix.legend()
    edges = [i / _BINS for i in range(_BINS)]
    hist.bar(edges, report.confidence_histogram, width=1 / _BINS, align="edge", edgecolor="white")
    hist.axvline(report.threshold, color="red", linestyle="--", label=f"threshold {report.threshold}")
    low = "" if report.below_threshold is None else f": {report.below_threshold:.1%} below"
    hist.set_title(f"confidence{low}")
    hist.set_xlabel("confidence")
    hist.legend()
    if report.days:
        days = [d.day for d in report.days]
        trend.plot(days, [d.mean_confidence or 0.0 for d in report.days], marker="o", label="mean confidence")
        trend.plot(days, [d.below_threshold or 0.0 for d in report.days], marker="o", label="below threshold")
        trend.set_ylim(0, 1)
        trend.legend()
        trend.tick_params(axis="x", rotation=30)
    else:
        trend.text(0.5, 0.5, "no timestamps in the results", ha="center", va="center")
        trend.set_axis_off()
    trend.set_title("daily trend")
    state = "DRIFT: " + "; ".join(report.alarms) if report.alarms else "no drift"
    figure.suptitle(f"{report.total} results · {state}"[:160])
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=100)
    plt.close(figure)
    return target


def _shares(counts: Mapping[str, int], labels: list[str]) -> list[float]:
    total = sum(counts.values()) or 1
    return [counts.get(label, 0) / total for label in labels]


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
