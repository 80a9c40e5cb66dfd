"""``azvision evaluate|compare --task detection``: mAP reports for detectors on an annotated data set.

Per backend the report folder gets ``metrics.json`` (``map50``, ``map50_95``, per-label AP / precision /
recall at IoU 0.5), ``pr_curve.png`` and ``predictions.jsonl`` (each result line with its ``expected``
regions).
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table

from .._errors import AzVisionError, ConfigurationError
from .._models import Prediction
from .._protocol import Classifier
from ..detection_datasets import DetectionDataset, DetectionItem
from ..evaluation import DetectionMetrics, evaluate_detection, write_detection_report
from ._demo_table import format_pct
from ._diagnose import FailureTally, backend_endpoint
from ._options import BackendOptions, BackendSpec, Redactor
from ._output import JsonlWriter, error_line, progress, result_record

__all__ = [
    "detection_comparison_table",
    "detection_table",
    "load_detection_dataset",
    "run_detection",
    "split_task",
    "with_task",
]


def split_task(options: BackendOptions) -> tuple[str, BackendOptions]:
    """The ``--task`` value, and the options without it (it is also a `CustomVisionBackend` keyword,
    given back by `with_task` to the backends that take it)."""
    task = str(options.flags.get("task") or "classification")
    if task not in ("classification", "detection"):
        raise ConfigurationError(f"--task must be classification or detection, got {task!r}")
    flags = {k: v for k, v in options.flags.items() if k != "task"}
    return task, dataclasses.replace(options, flags=flags)


def with_task(specs: list[BackendSpec], task: str) -> list[BackendSpec]:
    """Give ``task`` to each backend whose class takes a ``task`` keyword."""
    out = []
    for spec in specs:
        takes = "task" in inspect.signature(spec.cls).parameters
        out.append(BackendSpec(spec.name, spec.cls, {**spec.kwargs, "task": task}) if takes else spec)
    return out


def load_detection_dataset(folder: Path, annotations: Path | None) -> DetectionDataset:
    """The annotated data set of ``folder`` (or of ``annotations``, its images in ``folder``)."""
    if annotations is not None:
        data = DetectionDataset.from_path(annotations, images_dir=folder)
    else:
        data = DetectionDataset.from_path(folder)
    if not data.items:
        raise ConfigurationError(f"no annotated images in {annotations or folder}")
    return data


def _expected(item: DetectionItem) -> list[dict[str, Any]]:
    return [{"label": r.label, "box": r.box.model_dump()} for r in item.regions]


def run_detection(
    spec: BackendSpec,
    clf: Classifier,
    dataset: DetectionDataset,
    report: Path,
    *,
    redact: Redactor,
    concurrency: int | None,
    max_rps: float | None,
    plot: bool,
    bar: bool,
    extra: dict[str, Any],
) -> DetectionMetrics:
    """Evaluate one detector and write its report folder."""
    report.mkdir(parents=True, exist_ok=True)
    tally = FailureTally()
    with (
        (report / "predictions.jsonl").open("w", encoding="utf-8") as stream,
        progress(spec.name, total=len(dataset), enabled=bar) as advance,
    ):
        writer = JsonlWriter(stream)

        def on_outcome(item: DetectionItem, outcome: Prediction | AzVisionError) -> None:
            tally.add(outcome)
            record = result_record(str(item.path), outcome, spec.name, redact)
            writer.write({**record, "expected": _expected(item)})
            advance(isinstance(outcome, Prediction))

        metrics = evaluate_detection(
            clf, dataset, concurrency=concurrency, max_rps=max_rps, on_outcome=on_outcome
        )
    write_detection_report(
        metrics,
        report,
        plot=plot,
        extra={"dataset": str(dataset.root), "images_without_regions": dataset.negatives, **extra},
    )
    hint = tally.hint(spec.name, endpoint=backend_endpoint(clf))
    if hint is not None:
        error_line(redact(hint))
    return metrics


def detection_table(metrics: DetectionMetrics) -> Table:
    """Per label: AP@0.5, AP@[.5:.95], precision and recall at IoU 0.5, true boxes.

    Example:
        >>> from azvision.evaluation import compute_detection_metrics
        >>> detection_table(compute_detection_metrics([[]], [[]])).row_count
        1
    """
    table = Table(
        title=f"{metrics.backend or 'detector'}: mAP@0.5 {format_pct(metrics.map50)} · "
        f"mAP@[.5:.95] {format_pct(metrics.map50_95)} on {metrics.scored} images",
        caption=f"precision/recall at IoU 0.5, confidence ≥ {metrics.threshold:g} · {metrics.failed} failed",
    )
    for column in ("label", "AP50", "AP50:95", "precision", "recall", "boxes"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, m in metrics.per_label.items():
        table.add_row(
            label,
            format_pct(m.ap50),
            format_pct(m.ap50_95),
            format_pct(m.precision),
            format_pct(m.recall),
            str(m.support),
        )
    table.add_row("mean", format_pct(metrics.map50), format_pct(metrics.map50_95), "", "", "", style="bold")
    return table


def detection_comparison_table(results: dict[str, DetectionMetrics]) -> Group:
    """One row per backend (mAP@0.5, mAP@[.5:.95], latency, failures), then AP@0.5 per label."""
    summary = Table(title="comparison")
    summary.add_column("backend", no_wrap=True)
    for column in ("mAP@0.5", "mAP@[.5:.95]", "p50 ms", "failed"):
        summary.add_column(column, justify="right")
    for name, m in results.items():
        p50 = "–" if m.latency_p50_ms is None else f"{m.latency_p50_ms:.0f}"
        summary.add_row(name, format_pct(m.map50), format_pct(m.map50_95), p50, str(m.failed))
    per_label = Table(title="AP@0.5 per label")
    per_label.add_column("label")
    for name in results:
        per_label.add_column(name, justify="right", no_wrap=True)
    for label in dict.fromkeys(label for m in results.values() for label in m.per_label):
        per_label.add_row(
            label,
            *(format_pct(m.per_label[label].ap50) if label in m.per_label else "–" for m in results.values()),
        )
    return Group(summary, per_label)


def detection_comparison(results: dict[str, DetectionMetrics], dataset: DetectionDataset) -> dict[str, Any]:
    """``comparison.json`` for detectors."""
    return {
        "task": "detection",
        "dataset": str(dataset.root),
        "images": len(dataset),
        "labels": list(dataset.labels),
        "backends": [
            {
                "backend": name,
                "map50": m.map50,
                "map50_95": m.map50_95,
                "latency_p50_ms": m.latency_p50_ms,
                "latency_p95_ms": m.latency_p95_ms,
                "failed": m.failed,
                "report": name,
            }
            for name, m in results.items()
        ],
        "metrics": {name: m.to_dict() for name, m in results.items()},
    }
