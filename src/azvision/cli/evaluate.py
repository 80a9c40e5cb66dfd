"""``azvision evaluate``: one backend on a labelled folder (``azvision compare``, in ``compare.py``, runs
several side by side with the same code).

The report folder gets ``metrics.json``, ``confusion_matrix.png`` and ``predictions.jsonl`` (one result line
per image, with its ``expected`` label).
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .._errors import AzVisionError, ConfigurationError
from .._images import ImageLike
from .._models import Prediction
from .._pricing import TokenTally, cost_per_1000_images, describe_basis
from .._protocol import Classifier
from ..datasets import Dataset
from ..evaluation import Metrics, evaluate, write_report
from ._demo_table import format_pct, format_usd
from ._detection_eval import (
    detection_table,
    load_detection_dataset,
    run_detection,
    split_task,
    with_task,
)
from ._diagnose import FailureTally, backend_endpoint
from ._options import (
    BackendName,
    BackendOptions,
    BackendSpec,
    Concurrency,
    MaxRps,
    Redactor,
    with_backend_options,
)
from ._output import JsonlWriter, error_line, progress, result_record, stderr_is_tty, usage_errors
from ._routing import CacheOpt, CascadeOpt, Routing, ThresholdOpt, usage_line, usage_report

__all__ = [
    "check_plot",
    "cost_of",
    "format_ms",
    "format_pct",
    "interrupted",
    "latency_basis",
    "load_dataset",
    "metrics_table",
    "register",
    "run_backend",
]

Report = Annotated[Path, typer.Option("--report", "-r", help="Folder for the report (created if needed).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, no table.")]
JsonOut = Annotated[
    bool, typer.Option("--json", help="Print the report as one JSON line instead of a table.")
]
Plot = Annotated[bool, typer.Option("--plot/--no-plot", help="Draw confusion_matrix.png (needs matplotlib).")]
DatasetDir = Annotated[
    Path,
    typer.Argument(
        help="Folder with one sub-folder of images per label (--task detection: annotated images)."
    ),
]
Annotations = Annotated[
    Path | None,
    typer.Option(help="--task detection: the COCO .json / VOC / YOLO annotations, if not in DATASET_DIR."),
]


_LABEL_MAP_HINT = (
    "Image Analysis answers with its own vocabulary (tags such as 'sky' or 'flower'), not your labels, "
    "hence 0 %: fold its tags into your labels with --label-map FILE.json (or label_map in --config), "
    'e.g. {"rose": ["flower", "petal"]}'
)


def format_ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def metrics_table(metrics: Metrics) -> Table:
    """A rich table: precision/recall/F1/support per label, then the averages, latency and failures.

    Example:
        >>> from azvision.evaluation import compute_metrics
        >>> metrics_table(compute_metrics(["a"], ["a"])).row_count
        2
    """
    name = metrics.backend or "classifier"
    table = Table(
        title=f"{name}: accuracy {format_pct(metrics.accuracy)} on {metrics.scored} images",
        caption=f"latency p50 {format_ms(metrics.latency_p50_ms)} ms · "
        f"p95 {format_ms(metrics.latency_p95_ms)} ms · {metrics.failed} failed",
    )
    for column in ("label", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label in metrics.true_labels:
        m = metrics.per_label[label]
        table.add_row(label, format_pct(m.precision), format_pct(m.recall), format_pct(m.f1), str(m.support))
    macro = metrics.to_dict()["macro_avg"]
    table.add_row(
        "macro avg",
        format_pct(macro["precision"]),
        format_pct(macro["recall"]),
        format_pct(macro["f1"]),
        str(metrics.scored),
        style="bold",
        end_section=True,
    )
    return table


def load_dataset(folder: Path, *, quiet: bool) -> Dataset:
    dataset = Dataset.from_folder(folder)
    if not dataset.items:
        raise ConfigurationError(f"no images found in {folder}: it needs one sub-folder of images per label")
    if dataset.skipped and not quiet:
        error_line(
            f"note: {len(dataset.skipped)} file(s) in {folder} skipped (not images or not in a label folder)"
        )
    return dataset


def check_plot(plot: bool, picture: str = "confusion_matrix.png") -> None:
    if plot and importlib.util.find_spec("matplotlib") is None:
        raise ConfigurationError(
            f"{picture} needs matplotlib: pip install 'azvision[eval]' (or pass --no-plot)"
        )


def run_backend(
    spec: BackendSpec,
    clf: Classifier,
    dataset: Dataset,
    report: Path,
    *,
    redact: Redactor,
    concurrency: int | None,
    max_rps: float | None,
    plot: bool,
    bar: bool,
    correct: list[bool | None] | None = None,
) -> tuple[Metrics, dict[str, Any]]:
    """Evaluate one backend into ``report``; ``correct`` collects each image's outcome (``None``: failed)."""
    report.mkdir(parents=True, exist_ok=True)
    tally = FailureTally()
    tokens = TokenTally()
    with (
        (report / "predictions.jsonl").open("w", encoding="utf-8") as stream,
        progress(spec.name, total=len(dataset), enabled=bar) as advance,
    ):
        writer = JsonlWriter(stream)

        def on_outcome(image: ImageLike, truth: str, outcome: Prediction | AzVisionError) -> None:
            tally.add(outcome)
            tokens.add(outcome)
            record = result_record(str(image), outcome, spec.name, redact)
            writer.write({**record, "expected": truth})
            advance(isinstance(outcome, Prediction))
            if correct is not None:
                correct.append(outcome.label == truth if isinstance(outcome, Prediction) else None)

        started = time.perf_counter()
        metrics = evaluate(clf, dataset, concurrency=concurrency, max_rps=max_rps, on_outcome=on_outcome)
        elapsed = time.perf_counter() - started
    rate = metrics.scored / elapsed if elapsed > 0 and metrics.scored else None
    cost = cost_of(spec.name, spec.kwargs, tokens=tokens, images_per_second=rate)
    extra = {
        "dataset": str(dataset.root),
        "skipped_files": len(dataset.skipped),
        "latency_per": latency_basis(clf),
        **cost,
    }
    routing = usage_report(clf)
    if routing is not None:
        extra["routing"] = routing
    write_report(metrics, report, plot=plot, extra=extra)
    hint = tally.hint(spec.name, endpoint=backend_endpoint(clf))
    if hint is not None:
        error_line(redact(hint))
    if (
        spec.name == "image_analysis"
        and metrics.scored
        and not metrics.accuracy
        and not spec.kwargs.get("label_map")
    ):
        typer.echo(f"azvision: note: {_LABEL_MAP_HINT}", err=True)
    return metrics, cost


def cost_of(
    backend: str,
    options: Mapping[str, Any],
    *,
    tokens: TokenTally | None = None,
    images_per_second: float | None = None,
) -> dict[str, Any]:
    """``cost_per_1000_usd`` (list price, ``None`` when unknown) and ``cost_basis`` of one backend's run.

    Token-billed backends (Azure OpenAI) are priced from the ``tokens`` the run used, Azure ML from its
    measured ``images_per_second``.

    Example:
        >>> cost_of("custom_vision", {})["cost_per_1000_usd"]
        2.0
    """
    mode = str(options.get("mode") or "tags")
    settings: dict[str, Any] = {"mode": mode, "images_per_second": images_per_second, "tokens": tokens}
    return {
        "cost_per_1000_usd": cost_per_1000_images(backend, **settings),
        "cost_basis": describe_basis(backend, **settings),
    }


def latency_basis(classifier: object) -> str:
    """``"batch of N"`` when a backend times whole batches (ONNX), else ``"request"``.

    Example:
        >>> latency_basis(object())
        'request'
    """
    size = getattr(classifier, "batch_size", None)
    return f"batch of {size}" if isinstance(size, int) and size > 1 else "request"


def interrupted() -> typer.Exit:
    error_line("interrupted: the report is incomplete; run the command again")
    return typer.Exit(130)


@with_backend_options
def evaluate_command(
    dataset_dir: DatasetDir,
    report: Report,
    backend: BackendName = None,
    concurrency: Concurrency = None,
    max_rps: MaxRps = None,
    min_accuracy: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Exit 1 when accuracy is below this (CI gate).")
    ] = None,
    cascade: CascadeOpt = None,
    threshold: ThresholdOpt = None,
    cache: CacheOpt = None,
    plot: Plot = True,
    quiet: Quiet = False,
    json_out: JsonOut = False,
    annotations: Annotations = None,
    *,
    options: BackendOptions,
) -> None:
    """Score one backend on a labelled folder; writes metrics.json and confusion_matrix.png to --report.

    With --task detection the folder holds annotated images (COCO, VOC or YOLO; or give --annotations)
    and the report has mAP@0.5, mAP@[.5:.95], per-label AP/precision/recall and pr_curve.png;
    --min-accuracy then gates mAP@0.5.

    Exit status: 0 done, 1 some images failed or accuracy < --min-accuracy, 2 usage/configuration error.
    """
    redact = options.redactor()
    with usage_errors(redact):
        task, without_task = split_task(options)
    if task == "detection":
        _evaluate_detection(
            dataset_dir, report, backend, concurrency, max_rps, min_accuracy, plot, quiet, json_out,
            annotations, without_task, redact,
        )  # fmt: skip
        return
    with usage_errors(redact):
        if annotations is not None:
            raise ConfigurationError("--annotations is for --task detection")
        check_plot(plot)
        dataset = load_dataset(dataset_dir, quiet=quiet)
        spec, clf = Routing.of(cascade, threshold, cache).build(options, backend)
    try:
        with clf, usage_errors(redact):
            metrics, cost = run_backend(
                spec,
                clf,
                dataset,
                report,
                redact=redact,
                concurrency=concurrency,
                max_rps=max_rps,
                plot=plot,
                bar=not quiet and stderr_is_tty(),
            )
    except KeyboardInterrupt:
        raise interrupted() from None
    routing = usage_report(clf)
    if json_out:
        typer.echo(json.dumps({**metrics.to_dict(), **cost, **({"routing": routing} if routing else {})}))
    elif not quiet:
        console = Console()
        console.print(metrics_table(metrics))
        console.print(
            f"cost: {format_usd(cost['cost_per_1000_usd'])} per 1,000 images — {cost['cost_basis']}",
            markup=False,
            soft_wrap=True,
        )
        line = usage_line(clf)
        if line is not None:
            typer.echo(line)
    below = min_accuracy is not None and metrics.accuracy < min_accuracy
    if below:
        error_line(f"accuracy {metrics.accuracy:.1%} is below --min-accuracy {min_accuracy:.1%}")
    raise typer.Exit(1 if below or metrics.failed else 0)


def _evaluate_detection(
    dataset_dir: Path,
    report: Path,
    backend: str | None,
    concurrency: int | None,
    max_rps: float | None,
    min_map: float | None,
    plot: bool,
    quiet: bool,
    json_out: bool,
    annotations: Path | None,
    options: BackendOptions,
    redact: Redactor,
) -> None:
    with usage_errors(redact):
        check_plot(plot, "pr_curve.png")
        dataset = load_detection_dataset(dataset_dir, annotations)
        spec = with_task(options.resolve([backend] if backend else []), "detection")[0]
        clf = spec.create()
    try:
        with clf, usage_errors(redact):
            metrics = run_detection(
                spec, clf, dataset, report, redact=redact, concurrency=concurrency, max_rps=max_rps,
                plot=plot, bar=not quiet and stderr_is_tty(), extra={"latency_per": latency_basis(clf)},
            )  # fmt: skip
    except KeyboardInterrupt:
        raise interrupted() from None
    if json_out:
        typer.echo(json.dumps(metrics.to_dict()))
    elif not quiet:
        Console().print(detection_table(metrics))
    below = min_map is not None and metrics.map50 < min_map
    if below:
        error_line(f"mAP@0.5 {metrics.map50:.1%} is below --min-accuracy {min_map:.1%}")
    raise typer.Exit(1 if below or metrics.failed else 0)


def register(app: typer.Typer) -> None:
    """Add ``azvision evaluate`` to ``app``."""
    app.command("evaluate")(evaluate_command)
