"""Score a classifier on labelled images: accuracy, per-label precision/recall/F1, confusion matrix, latency.

Detectors are scored by `evaluate_detection` / `compute_detection_metrics`: mAP@0.5 and mAP@[.5:.95]
(COCO-style, all-point interpolation), per-label AP, precision and recall at IoU 0.5, ``pr_curve.png``.

A dataset is a folder with one sub-folder per label (``DATASET_DIR/<label>/*.jpg``), read with the training
helper's `Dataset`. Everything here is pure Python except
`plot_confusion_matrix`, which imports matplotlib (the ``eval`` extra) only when called.

Example:
    >>> m = compute_metrics(["cat", "cat", "dog"], ["cat", "dog", "dog"])
    >>> round(m.accuracy, 3), m.per_label["dog"].precision
    (0.667, 0.5)
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

# Object detection (mAP, per-label AP, PR curves) lives in its own module; it is part of this API.
from ._detection_metrics import (
    IOU_THRESHOLDS,
    DetectionLabelMetrics,
    DetectionMetrics,
    box_iou,
    compute_detection_metrics,
    evaluate_detection,
    plot_pr_curves,
    write_detection_report,
)
from ._errors import AzVisionError, missing_extra
from ._images import ImageLike
from ._models import Prediction
from ._protocol import Classifier
from .datasets import Dataset

__all__ = [
    "IOU_THRESHOLDS",
    "NO_LABEL",
    "DetectionLabelMetrics",
    "DetectionMetrics",
    "LabelMetrics",
    "Metrics",
    "box_iou",
    "classify_pairs",
    "compute_detection_metrics",
    "compute_metrics",
    "evaluate",
    "evaluate_detection",
    "percentile",
    "plot_confusion_matrix",
    "plot_pr_curves",
    "write_detection_report",
    "write_report",
]

T = TypeVar("T")

#: The "predicted label" of an image the classifier gave no label at all.
NO_LABEL = "(no label)"


def classify_pairs(
    classifier: Classifier,
    items: Iterable[T],
    image_of: Callable[[T], ImageLike],
    *,
    concurrency: int | None = None,
    max_rps: float | None = None,
) -> Iterator[tuple[T, Prediction | AzVisionError]]:
    """``classify_many`` that hands back each input item next to its outcome, streamed in input order.

    Example:
        >>> for path, outcome in classify_pairs(clf, ["a.jpg", "b.jpg"], lambda path: path):
        ...     print(path, outcome)  # doctest: +SKIP
    """
    in_flight: deque[T] = deque()

    def images() -> Iterator[ImageLike]:
        for item in items:
            in_flight.append(item)
            yield image_of(item)

    for outcome in classifier.classify_many(images(), concurrency=concurrency, max_rps=max_rps):
        yield in_flight.popleft(), outcome


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100) by linear interpolation between ranks; ``None`` for no values.

    Example:
        >>> percentile([10.0, 20.0, 30.0, 40.0], 50)
        25.0
    """
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class LabelMetrics:
    """Precision, recall and F1 of one label; ``support`` is how many images truly have it."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Metrics:
    """The scores of one classifier on one dataset. Build with `compute_metrics` or `evaluate`.

    ``confusion_matrix[i][j]`` counts images of true label ``labels[i]`` predicted as ``labels[j]``. Rows
    are the dataset's labels; extra columns hold labels only the classifier used (and `NO_LABEL`).
    ``accuracy`` and the per-label scores cover the images that got an answer; ``failed`` counts the rest.
    Macro averages run over the dataset's labels.

    Example:
        >>> compute_metrics(["a", "b"], ["a", "a"]).confusion_matrix
        ((1, 0), (1, 0))
    """

    labels: tuple[str, ...]
    true_labels: tuple[str, ...]
    confusion_matrix: tuple[tuple[int, ...], ...]
    per_label: Mapping[str, LabelMetrics]
    total: int
    failed: int = 0
    failures_by_type: Mapping[str, int] = field(default_factory=dict)
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    backend: str | None = None

    @property
    def scored(self) -> int:
        """Images that got an answer (``total - failed``)."""
        return self.total - self.failed

    @property
    def correct(self) -> int:
        """Images whose top label is their true label."""
        index = {lab: j for j, lab in enumerate(self.labels)}
        return sum(row[index[lab]] for lab, row in zip(self.true_labels, self.confusion_matrix, strict=True))

    @property
    def accuracy(self) -> float:
        """``correct / scored`` (0.0 when nothing was scored)."""
        return self.correct / self.scored if self.scored else 0.0

    def _average(self, attr: str, *, weighted: bool) -> float:
        rows = [self.per_label[lab] for lab in self.true_labels]
        weights = [m.support if weighted else 1 for m in rows]
        total = sum(weights)
        return sum(getattr(m, attr) * w for m, w in zip(rows, weights, strict=True)) / total if total else 0.0

    @property
    def macro_f1(self) -> float:
        """Unweighted mean F1 over the dataset's labels."""
        return self._average("f1", weighted=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON written to ``metrics.json``.

        Example:
            >>> compute_metrics(["a"], ["a"]).to_dict()["accuracy"]
            1.0
        """
        averages = {
            name: {attr: self._average(attr, weighted=weighted) for attr in ("precision", "recall", "f1")}
            for name, weighted in (("macro", False), ("weighted", True))
        }
        return {
            "backend": self.backend,
            "accuracy": self.accuracy,
            "total": self.total,
            "scored": self.scored,
            "correct": self.correct,
            "failed": self.failed,
            "failures_by_type": dict(self.failures_by_type),
            "per_label": {
                lab: {"precision": m.precision, "recall": m.recall, "f1": m.f1, "support": m.support}
                for lab, m in self.per_label.items()
            },
            "macro_avg": averages["macro"],
            "weighted_avg": averages["weighted"],
            "confusion_matrix": {
                "rows": list(self.true_labels),
                "columns": list(self.labels),
                "matrix": [list(row) for row in self.confusion_matrix],
            },
            "latency_ms": {"p50": self.latency_p50_ms, "p95": self.latency_p95_ms},
        }


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def compute_metrics(
    y_true: Sequence[str],
    y_pred: Sequence[str | None],
    *,
    labels: Sequence[str] | None = None,
    latencies_ms: Sequence[float] = (),
    failures: Sequence[str] = (),
    backend: str | None = None,
) -> Metrics:
    """Score predictions against the truth. ``y_pred`` entries of ``None`` mean "no label".

    ``labels`` fixes the dataset's label order (default: sorted true labels); ``failures`` lists the error
    type name of every input that got no answer.

    Example:
        >>> compute_metrics(["a", "b"], ["a", None]).labels
        ('a', 'b', '(no label)')
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} entries but y_pred has {len(y_pred)}")
    predicted = [NO_LABEL if p is None else p for p in y_pred]
    rows = list(labels) if labels is not None else sorted(set(y_true))
    rows += sorted(set(y_true) - set(rows))
    extra = sorted(set(predicted) - set(rows) - {NO_LABEL})
    columns = rows + extra + ([NO_LABEL] if NO_LABEL in predicted else [])
    col_index = {lab: j for j, lab in enumerate(columns)}
    row_index = {lab: i for i, lab in enumerate(rows)}
    matrix = [[0] * len(columns) for _ in rows]
    for truth, guess in zip(y_true, predicted, strict=True):
        matrix[row_index[truth]][col_index[guess]] += 1

    true_counts = Counter(y_true)
    pred_counts = Counter(predicted)
    per_label: dict[str, LabelMetrics] = {}
    for lab in [*rows, *extra]:
        hits = matrix[row_index[lab]][col_index[lab]] if lab in row_index else 0
        precision = _ratio(hits, pred_counts[lab])
        recall = _ratio(hits, true_counts[lab])
        f1 = _ratio(2 * hits, pred_counts[lab] + true_counts[lab])
        per_label[lab] = LabelMetrics(precision, recall, f1, true_counts[lab])
    return Metrics(
        labels=tuple(columns),
        true_labels=tuple(rows),
        confusion_matrix=tuple(tuple(r) for r in matrix),
        per_label=per_label,
        total=len(y_true) + len(failures),
        failed=len(failures),
        failures_by_type=dict(sorted(Counter(failures).items())),
        latency_p50_ms=percentile(latencies_ms, 50),
        latency_p95_ms=percentile(latencies_ms, 95),
        backend=backend,
    )


def evaluate(
    classifier: Classifier,
    dataset: str | os.PathLike[str] | Dataset | Iterable[tuple[ImageLike, str]],
    *,
    labels: Sequence[str] | None = None,
    concurrency: int | None = None,
    max_rps: float | None = None,
    on_outcome: Callable[[ImageLike, str, Prediction | AzVisionError], None] | None = None,
) -> Metrics:
    """Classify every image of ``dataset`` and score the answers.

    ``dataset`` is a folder with one sub-folder per label, a `Dataset`
    or an iterable of ``(image, true_label)``; ``on_outcome`` is called for every image as its answer
    arrives (progress bars, per-image logs).

    Example:
        >>> with azvision.create_classifier("onnx", model_path="export.zip") as clf:  # doctest: +SKIP
        ...     print(evaluate(clf, "flowers/test").accuracy)
        0.95
    """
    if isinstance(dataset, (str, os.PathLike)):
        dataset = Dataset.from_folder(dataset)
    if isinstance(dataset, Dataset):
        labels = dataset.labels if labels is None else labels
        items: Iterable[tuple[ImageLike, str]] = ((str(it.path), it.label) for it in dataset)
    else:
        items = dataset
    y_true: list[str] = []
    y_pred: list[str | None] = []
    latencies: list[float] = []
    failures: list[str] = []
    backend = getattr(classifier, "name", None)
    for (image, truth), outcome in classify_pairs(
        classifier, items, lambda item: item[0], concurrency=concurrency, max_rps=max_rps
    ):
        if on_outcome is not None:
            on_outcome(image, truth, outcome)
        if isinstance(outcome, AzVisionError):
            failures.append(type(outcome).__name__)
            continue
        backend = outcome.backend
        y_true.append(truth)
        y_pred.append(outcome.label)
        if outcome.latency_ms is not None:
            latencies.append(outcome.latency_ms)
    return compute_metrics(
        y_true,
        y_pred,
        labels=labels,
        latencies_ms=latencies,
        failures=failures,
        backend=backend if isinstance(backend, str) else None,
    )


def plot_confusion_matrix(metrics: Metrics, path: str | os.PathLike[str]) -> Path:
    """Draw the confusion matrix as a PNG (rows: true label, columns: predicted; colour: row share).

    Needs matplotlib (``pip install 'azvision[eval]'``).

    Example:
        >>> plot_confusion_matrix(compute_metrics(["a", "b"], ["a", "a"]), "cm.png")  # doctest: +SKIP
        PosixPath('cm.png')
    """
    fig = _confusion_figure(metrics)
    out = Path(path)
    fig.savefig(out, format="png")
    return out


def _confusion_figure(metrics: Metrics) -> Any:
    """The confusion-matrix figure, its title wrapped to the figure's width so no word is cut off."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise missing_extra(exc, what="drawing the confusion matrix", extra="eval") from exc
    rows, cols = metrics.true_labels, metrics.labels
    shares = [[n / (sum(row) or 1) for n in row] for row in metrics.confusion_matrix]
    width = max(4.0, 1.0 + 0.7 * len(cols))
    fig = Figure(figsize=(width, max(3.5, 1.0 + 0.6 * len(rows))), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for i, row in enumerate(metrics.confusion_matrix):
        for j, count in enumerate(row):
            colour = "white" if shares[i][j] > 0.5 else "black"
            ax.text(j, i, str(count), ha="center", va="center", color=colour, fontsize=9)
    ax.set_xticks(range(len(cols)), labels=list(cols), rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), labels=list(rows))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    title = f"accuracy {metrics.accuracy:.1%} on {metrics.scored} images"
    if metrics.backend:
        title = f"{metrics.backend}\n{title}"
    # A title over the axes is centred on them and cut at the figure's edge; over the figure, wrapped at
    # about 0.62 em per character of 11 pt text, it always fits.
    fits = max(12, int(width * 72 / (11 * 0.62)) - 2)
    lines = [textwrap.fill(line, fits, break_long_words=True) for line in title.split("\n")]
    fig.suptitle("\n".join(lines), fontsize=11)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true label")
    fig.tight_layout()
    return fig


def write_report(
    metrics: Metrics | DetectionMetrics,
    report_dir: str | os.PathLike[str],
    *,
    plot: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``metrics.json`` (plus the ``extra`` keys) and, with ``plot``, ``confusion_matrix.png``
    (``pr_curve.png`` for `DetectionMetrics`).

    Example:
        >>> write_report(compute_metrics(["a"], ["a"]), "report", plot=False)  # doctest: +SKIP
        [PosixPath('report/metrics.json')]
    """
    out_dir = Path(report_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.json"
    content = {**metrics.to_dict(), **(extra or {})}
    metrics_path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", "utf-8")
    written = [metrics_path]
    if plot and isinstance(metrics, DetectionMetrics):
        written.append(plot_pr_curves(metrics, out_dir / "pr_curve.png"))
    elif plot and isinstance(metrics, Metrics):
        written.append(plot_confusion_matrix(metrics, out_dir / "confusion_matrix.png"))
    return written
