"""``azvision compare``: several backends on the same labelled folder, side by side.

One report folder per backend under ``--report`` (what ``azvision evaluate`` writes) plus
``comparison.json``; with ``--baseline`` the migration gate. Options for one backend only:
``--opt BACKEND.KEY=VALUE`` or a ``[BACKEND]`` table in ``--config``.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.table import Table

from .._errors import ConfigurationError
from ..datasets import Dataset
from ..detection_datasets import DetectionDataset
from ..evaluation import Metrics
from ._demo_table import format_usd
from ._detection_eval import (
    detection_comparison,
    detection_comparison_table,
    load_detection_dataset,
    run_detection,
    split_task,
    with_task,
)
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
    BackendOptions,
    Concurrency,
    MaxRps,
    with_backend_options,
)
from ._output import error_line, stderr_is_tty, usage_errors
from ._routing import CacheOpt, CascadeOpt, Routing, ThresholdOpt, usage_line, usage_report
from .evaluate import (
    Annotations,
    DatasetDir,
    JsonOut,
    Plot,
    Quiet,
    Report,
    check_plot,
    format_ms,
    format_pct,
    interrupted,
    latency_basis,
    load_dataset,
    run_backend,
)

__all__ = ["comparison_table", "register"]


def comparison_table(
    results: dict[str, Metrics],
    latency_per: dict[str, str] | None = None,
    costs: dict[str, float | None] | None = None,
) -> Group:
    """Two rich tables: one row per backend (accuracy, macro F1, latency, failures, cost), then F1 per label.

    ``latency_per`` says what each backend's latency times (`latency_basis`); when they differ, the
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
            format_pct(m.accuracy),
            format_pct(m.macro_f1),
            format_ms(m.latency_p50_ms),
            format_ms(m.latency_p95_ms),
            str(m.failed),
            format_usd((costs or {}).get(name)),
        )
    per_label = Table(title="F1 per label")
    per_label.add_column("label")
    for name in results:
        per_label.add_column(name, justify="right", no_wrap=True)
    for label in dict.fromkeys(label for m in results.values() for label in m.true_labels):
        per_label.add_row(label, *(format_pct(m.per_label[label].f1) for m in results.values()))
    return Group(summary, per_label)


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
            check_plot(plot, "pr_curve.png" if detection else "confusion_matrix.png")
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
                found = load_dataset(dataset_dir, quiet=quiet)
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
                        results[spec.name], costs[spec.name] = run_backend(
                            spec, clf, found, report / spec.name, redact=redact, concurrency=concurrency,
                            max_rps=max_rps, plot=plot, bar=bar, correct=outcomes[spec.name],
                        )  # fmt: skip
                    elapsed[spec.name] = time.perf_counter() - started
        except KeyboardInterrupt:
            raise interrupted() from None
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
    """Add ``compare`` to the ``azvision`` app."""
    app.command("compare")(compare_command)
