"""``azvision evaluate`` (one backend) and ``azvision compare`` (several, side by side) on a labelled folder.

Per backend, the report folder gets ``metrics.json``, ``confusion_matrix.png`` and ``predictions.jsonl``
(one result line per image, with its ``expected`` label). ``compare`` writes one such folder per backend
under ``--report`` plus ``comparison.json``. Options for one backend only: ``--opt BACKEND.KEY=VALUE`` or a
``[BACKEND]`` table in ``--config``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.table import Table

from .._errors import AzVisionError, ConfigurationError
from .._images import ImageLike
from .._models import Prediction
from .._pricing import TokenTally, cost_per_1000_images, describe_basis
from .._protocol import Classifier
from ..datasets import Dataset
from ..detection_datasets import DetectionDataset
from ..evaluation import Metrics, evaluate, write_report
from ._demo_table import format_usd
from ._detection_eval import (
    detection_comparison,
    detection_comparison_table,
    detection_table,
    load_detection_dataset,
    run_detection,
    split_task,
    with_task,
)
from ._diagnose import FailureTally, backend_endpoint
from ._gate_report import (
    Baseline,
    Bootstrap,
    MaxDrop,
    Seed,
    gate_failure,
    gate_report,
    gate_table,
    with_baseline,
)
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

__all__ = ["comparison_table", "cost_of", "latency_basis", "metrics_table", "register"]

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


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
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
        title=f"{name}: accuracy {_pct(metrics.accuracy)} on {metrics.scored} images",
        caption=f"latency p50 {_ms(metrics.latency_p50_ms)} ms · p95 {_ms(metrics.latency_p95_ms)} ms · "
        f"{metrics.failed} failed",
    )
    for column in ("label", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label in metrics.true_labels:
        m = metrics.per_label[label]
        table.add_row(label, _pct(m.precision), _pct(m.recall), _pct(m.f1), str(m.support))
    macro = metrics.to_dict()["macro_avg"]
    table.add_row(
        "macro avg",
        _pct(macro["precision"]),
        _pct(macro["recall"]),
        _pct(macro["f1"]),
        str(metrics.scored),
        style="bold",
        end_section=True,
    )
    return table


def comparison_table(
    results: dict[str, Metrics],
    latency_per: dict[str, str] | None = None,
    costs: dict[str, float | None] | None = None,
) -> Group:
    """Two rich tables: one row per backend (accuracy, macro F1, latency, failures, cost), then F1 per label.

    ``latency_per`` says what each backend's latency times (:func:`latency_basis`); when they differ, the
    table says so, since a batch's latency is not comparable with one request's. ``costs`` are list-price
    dollars per 1,000 images (`cost_of`).

    Example:
        >>> from azvision.evaluation import compute_metrics
        >>> summary, per_label = comparison_table({"onnx": compute_metrics(["a"], ["a"])}).renderables
        >>> summary.row_count, per_label.row_count
        (1, 1)
    """
    per = latency_per or {}
    batched = {name: basis for name, basis in per.items() if basis != "request"}
    note = None
    if batched and len(batched) < len(results):
        timed = ", ".join(f"{name} per {basis} images" for name, basis in batched.items())
        note = f"latency: {timed} (one run for the whole batch); the others per request"
    summary = Table(title="comparison", caption=note)
    summary.add_column("backend", no_wrap=True)
    for column in ("accuracy", "macro F1", "p50 ms", "p95 ms", "failed", "$/1k img"):
        summary.add_column(column, justify="right")
    for name, m in results.items():
        summary.add_row(
            name,
            _pct(m.accuracy),
            _pct(m.macro_f1),
            _ms(m.latency_p50_ms),
            _ms(m.latency_p95_ms),
            str(m.failed),
            format_usd((costs or {}).get(name)),
        )
    per_label = Table(title="F1 per label")
    per_label.add_column("label")
    for name in results:
        per_label.add_column(name, justify="right", no_wrap=True)
    for label in dict.fromkeys(label for m in results.values() for label in m.true_labels):
        per_label.add_row(label, *(_pct(m.per_label[label].f1) for m in results.values()))
    return Group(summary, per_label)


def _load_dataset(folder: Path, *, quiet: bool) -> Dataset:
    dataset = Dataset.from_folder(folder)
    if not dataset.items:
        raise ConfigurationError(f"no images found in {folder}: it needs one sub-folder of images per label")
    if dataset.skipped and not quiet:
        error_line(
            f"note: {len(dataset.skipped)} file(s) in {folder} skipped (not images or not in a label folder)"
        )
    return dataset


def _check_plot(plot: bool, picture: str = "confusion_matrix.png") -> None:
    if plot and importlib.util.find_spec("matplotlib") is None:
        raise ConfigurationError(
            f"{picture} needs matplotlib: pip install 'azvision[eval]' (or pass --no-plot)"
        )


def _run(
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


def _interrupted() -> typer.Exit:
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
        _check_plot(plot)
        dataset = _load_dataset(dataset_dir, quiet=quiet)
        spec, clf = Routing.of(cascade, threshold, cache).build(options, backend)
    try:
        with clf, usage_errors(redact):
            metrics, cost = _run(
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
        raise _interrupted() from None
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
        _check_plot(plot, "pr_curve.png")
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
        raise _interrupted() from None
    if json_out:
        typer.echo(json.dumps(metrics.to_dict()))
    elif not quiet:
        Console().print(detection_table(metrics))
    below = min_map is not None and metrics.map50 < min_map
    if below:
        error_line(f"mAP@0.5 {metrics.map50:.1%} is below --min-accuracy {min_map:.1%}")
    raise typer.Exit(1 if below or metrics.failed else 0)


@with_backend_options
def compare_command(
    dataset_dir: DatasetDir,
    report: Report,
    backends: Annotated[
        list[str] | None,
        typer.Option("--backend", "-b", help="A backend to compare; give two or more."),
    ] = None,
    concurrency: Concurrency = None,
    max_rps: MaxRps = None,
    cascade: CascadeOpt = None,
    threshold: ThresholdOpt = None,
    cache: CacheOpt = None,
    plot: Plot = True,
    quiet: Quiet = False,
    json_out: JsonOut = False,
    baseline: Baseline = None,
    max_drop: MaxDrop = None,
    bootstrap: Bootstrap = 2000,
    seed: Seed = 0,
    annotations: Annotations = None,
    *,
    options: BackendOptions,
) -> None:
    """Evaluate several backends on the same labelled folder and report them side by side.

    With --task detection the backends are detectors, scored by mAP on annotated images.

    Shared flags (`--key`, `--endpoint`…) go to every backend that takes them; give one backend its own
    values with `--opt BACKEND.KEY=VALUE` (e.g. `--opt onnx.model_path=export.zip`) or a `[BACKEND]` table
    in `--config`. Writes `REPORT/<backend>/` per backend and `REPORT/comparison.json`. `--cascade A,B`
    adds the cascade of those backends as one more entry (`REPORT/cascade/`); `--cache FILE` puts every
    entry behind that answer cache.

    The migration gate: with `--baseline NAME` each other backend is shown with its accuracy difference
    from the baseline, a 95 % bootstrap interval of it and the cost per 1,000 images; with `--max-drop D`
    the exit status is 3 when any backend's accuracy is more than D below the baseline's.
    """
    redact = options.redactor()
    with usage_errors(redact):
        task, without_task = split_task(options)
    detection = task == "detection"
    with contextlib.ExitStack() as stack:
        with usage_errors(redact):
            _check_plot(plot, "pr_curve.png" if detection else "confusion_matrix.png")
            routing = Routing.of(cascade, threshold, cache)
            if detection:
                if routing.stages or cache is not None or baseline is not None:
                    raise ConfigurationError(
                        "--cascade, --cache and --baseline are for classification; "
                        "compare detectors with --backend A --backend B"
                    )
                found: DetectionDataset | Dataset = load_detection_dataset(dataset_dir, annotations)
                specs = with_task(without_task.resolve(backends or []), task)
            else:
                if annotations is not None:
                    raise ConfigurationError("--annotations is for --task detection")
                found = _load_dataset(dataset_dir, quiet=quiet)
                named = with_baseline(backends or [], baseline, max_drop)
                specs, stage_specs = routing.resolve(options, named)
            if len(specs) + bool(routing.stages) < 2:
                raise ConfigurationError("compare needs two or more backends: --backend A --backend B")
            clfs = [stack.enter_context(routing.cached(spec.create())) for spec in specs]
            if routing.stages:
                cascade_spec, routed = routing.cascade(options, stage_specs)
                specs.append(cascade_spec)
                clfs.append(stack.enter_context(routed))
        results: dict[str, Any] = {}
        costs: dict[str, dict[str, Any]] = {}
        outcomes: dict[str, list[bool | None]] = {}
        elapsed: dict[str, float] = {}
        try:
            with usage_errors(redact):
                for spec, clf in zip(specs, clfs, strict=True):
                    bar = not quiet and stderr_is_tty()
                    started = time.perf_counter()
                    if isinstance(found, DetectionDataset):
                        results[spec.name] = run_detection(
                            spec, clf, found, report / spec.name, redact=redact, concurrency=concurrency,
                            max_rps=max_rps, plot=plot, bar=bar, extra={"latency_per": latency_basis(clf)},
                        )  # fmt: skip
                    else:
                        outcomes[spec.name] = []
                        results[spec.name], costs[spec.name] = _run(
                            spec, clf, found, report / spec.name, redact=redact, concurrency=concurrency,
                            max_rps=max_rps, plot=plot, bar=bar, correct=outcomes[spec.name],
                        )  # fmt: skip
                    elapsed[spec.name] = time.perf_counter() - started
        except KeyboardInterrupt:
            raise _interrupted() from None
    if isinstance(found, DetectionDataset):
        comparison = detection_comparison(results, found)
        (report / "comparison.json").write_text(json.dumps(comparison, indent=2, ensure_ascii=False) + "\n")
        if json_out:
            typer.echo(json.dumps(comparison))
        elif not quiet:
            Console().print(detection_comparison_table(results))
        raise typer.Exit(1 if any(m.failed for m in results.values()) else 0)
    dataset = found
    latency_per = {spec.name: latency_basis(clf) for spec, clf in zip(specs, clfs, strict=True)}
    comparison = _comparison(results, dataset, latency_per, costs)
    reports = {spec.name: usage_report(clf) for spec, clf in zip(specs, clfs, strict=True)}
    for entry in comparison["backends"]:
        if reports.get(entry["backend"]) is not None:
            entry["routing"] = reports[entry["backend"]]
    verdict = None
    if baseline is not None:
        verdict = gate_report(
            specs,
            results,
            outcomes,
            elapsed,
            baseline=baseline,
            max_drop=max_drop,
            resamples=bootstrap,
            seed=seed,
        )
        comparison["gate"] = verdict.to_dict()
    (report / "comparison.json").write_text(json.dumps(comparison, indent=2, ensure_ascii=False) + "\n")
    if json_out:
        typer.echo(json.dumps(comparison))
    elif not quiet:
        dollars = {name: cost["cost_per_1000_usd"] for name, cost in costs.items()}
        console = Console()
        console.print(comparison_table(results, latency_per, dollars))
        console.print(
            "\n".join(
                ["cost basis (list prices, recalled, not fetched):"]
                + [f"  {name}: {cost['cost_basis']}" for name, cost in costs.items()]
            ),
            markup=False,
            soft_wrap=True,
        )
        for spec, clf in zip(specs, clfs, strict=True):
            line = usage_line(clf)
            if line is not None:
                typer.echo(f"{spec.name}: {line}")
        if verdict is not None:
            console.print(gate_table(verdict))
    if verdict is not None and not verdict.passed:
        error_line(gate_failure(verdict))
        raise typer.Exit(3)
    raise typer.Exit(1 if any(m.failed for m in results.values()) else 0)


def _comparison(
    results: dict[str, Metrics],
    dataset: Dataset,
    latency_per: dict[str, str],
    costs: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    return {
        "dataset": str(dataset.root),
        "images": len(dataset),
        "labels": list(dataset.labels),
        "backends": [
            {
                "backend": name,
                "accuracy": m.accuracy,
                "macro_f1": m.macro_f1,
                "latency_p50_ms": m.latency_p50_ms,
                "latency_p95_ms": m.latency_p95_ms,
                "latency_per": latency_per[name],
                "failed": m.failed,
                **costs[name],
                "report": name,
            }
            for name, m in results.items()
        ],
        "metrics": {name: m.to_dict() for name, m in results.items()},
    }


def register(app: typer.Typer) -> None:
    """Add ``azvision evaluate`` and ``azvision compare`` to ``app``."""
    app.command("evaluate")(evaluate_command)
    app.command("compare")(compare_command)
