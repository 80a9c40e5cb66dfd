"""``azvision train``: labelled images to a trained, published and exported Custom Vision model.

Progress bars for the upload and the training go to stderr, then a summary table (per-tag image counts,
precision, recall, average precision). Re-runs are idempotent: images already in the project are not sent
again and, when nothing changed, the latest iteration is reused. Exit status: 0 done, 1 training (or the
service) failed, 2 usage, configuration or authentication errors.

Example (shell)::

    azvision train flowers/ --project flowers --publish-name prod --export onnx --export-dir model/ --json
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._config import ENV
from .._errors import AuthenticationError, AzVisionError, ConfigurationError
from ..training.models import TrainProgress, TrainResult
from ._options import Redactor
from ._output import error_line, progress_bars, usage_errors

__all__ = ["classify_settings", "register", "settings_lines", "summary_lines", "summary_table", "train"]

_TRAIN_PANEL = "Custom Vision training resource (each falls back to its environment variable)"


def register(app: typer.Typer) -> None:
    """Add ``azvision train`` to the command line."""
    app.command("train")(train)


def train(
    dataset: Annotated[
        Path,
        typer.Argument(
            metavar="DATASET_DIR",
            help="Folder with one sub-folder of images per label, or a .csv/.jsonl manifest (multilabel); "
            "for --task detection, a folder of annotated images or the annotation file.",
        ),
    ],
    project: Annotated[str, typer.Option("--project", "-p", help="Project name (created if missing).")],
    publish_name: Annotated[
        str | None, typer.Option(help="Publish the trained iteration under this name.")
    ] = None,
    domain: Annotated[
        str | None,
        typer.Option(
            help="Domain name, e.g. 'General' or 'General (compact)' (default: compact when exporting)."
        ),
    ] = None,
    multilabel: Annotated[
        bool, typer.Option("--multilabel", help="Make a multilabel project (default: from the data set).")
    ] = False,
    export: Annotated[
        str | None, typer.Option(help="Export platform: onnx, tensorflow, coreml, dockerfile, …")
    ] = None,
    flavor: Annotated[str | None, typer.Option(help="Export flavor, e.g. ONNX12, TensorFlowLite.")] = None,
    export_dir: Annotated[
        Path | None, typer.Option(help="Download and unzip the export here (default: PROJECT-PLATFORM/).")
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="Training endpoint URL.", rich_help_panel=_TRAIN_PANEL)
    ] = None,
    training_key: Annotated[
        str | None,
        typer.Option(help="Training key; prefer its variable. Never echoed.", rich_help_panel=_TRAIN_PANEL),
    ] = None,
    prediction_resource_id: Annotated[
        str | None,
        typer.Option(help="ARM id of the prediction resource (to publish).", rich_help_panel=_TRAIN_PANEL),
    ] = None,
    train_timeout: Annotated[
        float, typer.Option(min=1.0, help="Seconds to wait for training before giving up.")
    ] = 3600.0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON line (the last line of stdout).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, no table.")] = False,
    task: Annotated[
        str, typer.Option(help="classification (a folder per label) or detection (annotated boxes).")
    ] = "classification",
    annotations: Annotated[
        Path | None,
        typer.Option(
            help="Detection: the COCO .json / VOC / YOLO annotations, when not found in DATASET_DIR.",
        ),
    ] = None,
) -> None:
    """Train a Custom Vision classifier (or, with --task detection, an object detector): upload, train,
    publish, export.

    With --json the last line of stdout is {"project_id", "iteration_id", "publish_name", "uploaded",
    "duplicates", "failed", "export_dir", "classify"} ("duplicates" counts images that were already in the
    project; "classify" holds, per backend, the environment variables that classify with the new model).
    """
    redact = Redactor([training_key or ""])
    platform = export or ("ONNX" if export_dir is not None else None)
    with usage_errors(redact):
        data = _load(dataset, multilabel=multilabel, task=task, annotations=annotations)
        from ..training.custom_vision import CustomVisionTrainer

        trainer = CustomVisionTrainer(endpoint, training_key, prediction_resource_id=prediction_resource_id)
        if publish_name:
            trainer.validated_resource_id()  # a usage error: found before anything is uploaded
    target = export_dir
    if platform is not None and target is None:
        target = Path(f"{project}-{platform.lower()}")
    stderr = Console(stderr=True)
    try:
        with trainer, usage_errors(redact), training_progress(stderr, enabled=not quiet) as report:
            result = trainer.train_from_folder(
                data,
                project=project,
                publish_name=publish_name,
                domain=domain,
                multilabel=multilabel or None,
                export=platform,
                export_dir=target,
                flavor=flavor,
                timeout=train_timeout,
                progress=report,
                task="detection" if task == "detection" else "classification",
            )
    except AuthenticationError as exc:
        error_line(redact(str(exc)))
        raise typer.Exit(2) from None
    except AzVisionError as exc:
        error_line(redact(f"{type(exc).__name__}: {exc}"))
        raise typer.Exit(1) from None
    settings = classify_settings(result, endpoint=trainer.endpoint)
    if not quiet:
        out = stderr if json_out else Console()
        for line in summary_lines(result):
            out.print(line, highlight=False, markup=False)
        out.print(summary_table(result))
        for line in settings_lines(settings):
            out.print(line, highlight=False, markup=False)
        for failed in result.upload.failed[:20]:
            out.print(
                f"[yellow]not uploaded[/]: {escape(failed.path)}: {escape(failed.reason)}", highlight=False
            )
        if len(result.upload.failed) > 20:
            out.print(f"[yellow]… and {len(result.upload.failed) - 20} more not uploaded[/]")
    if json_out:
        typer.echo(json.dumps({**result.summary(), "classify": settings}))


def _load(
    dataset: Path, *, multilabel: bool, task: str = "classification", annotations: Path | None = None
) -> Any:
    from ..datasets import Dataset

    if task not in ("classification", "detection"):
        raise ConfigurationError(f"--task must be classification or detection, got {task!r}")
    if task == "detection":
        from ..detection_datasets import DetectionDataset

        if annotations is not None:
            return DetectionDataset.from_path(annotations, images_dir=dataset)
        return DetectionDataset.from_path(dataset)
    if annotations is not None:
        raise ConfigurationError("--annotations is for --task detection")

    if dataset.is_file():
        return Dataset.from_manifest(dataset, multilabel=True if multilabel else None)
    data = Dataset.from_folder(dataset)
    if multilabel:
        data = Dataset(items=data.items, skipped=data.skipped, root=data.root, multilabel=True)
    if not data.items:
        raise ConfigurationError(
            f"no images found in {dataset}: expected one sub-folder of images per label "
            f"({len(data.skipped)} file(s) skipped)"
        )
    return data


@contextmanager
def training_progress(console: Console, *, enabled: bool) -> Iterator[Callable[[TrainProgress], None]]:
    """Rich bars on stderr for the upload and the training; other steps print one line each."""
    if not enabled:
        yield lambda event: None
        return
    with progress_bars(console) as bars:
        tasks: dict[str, Any] = {}

        def report(event: TrainProgress) -> None:
            if event.stage == "upload":
                if "upload" not in tasks:
                    tasks["upload"] = bars.add_task("upload", total=event.total)
                bars.update(tasks["upload"], completed=event.done, total=event.total)
            elif event.stage == "train":
                if "train" not in tasks:
                    tasks["train"] = bars.add_task("training", total=None)
                bars.update(tasks["train"], description=f"training: {event.message}")
                if event.message in {"Completed", "Failed"}:
                    bars.update(tasks["train"], total=1, completed=1)
            elif event.message:
                bars.console.print(f"{event.stage}: {event.message}", highlight=False, markup=False)

        yield report


def summary_lines(result: TrainResult) -> list[str]:
    """What was done: project and iteration, upload counts, publication, export folder.

    Example:
        >>> from azvision.training.models import IterationInfo, ProjectInfo, UploadReport
        >>> result = TrainResult(
        ...     project=ProjectInfo(id="p1", name="flowers"),
        ...     iteration=IterationInfo(id="i1", name="Iteration 1", status="Completed", project_id="p1"),
        ...     upload=UploadReport(total=1, uploaded=("a.png",)), publish_name="prod")
        >>> summary_lines(result)
        ['flowers · Iteration 1 (trained)', 'uploaded 1 · already there 0 · failed 0 · skipped 0', \
'published as prod']
    """
    upload = result.upload
    how = "trained" if result.trained else "unchanged, reused"
    there = len(upload.duplicates) + len(upload.already_present)
    lines = [
        f"{result.project.name} · {result.iteration.name} ({how})",
        f"uploaded {len(upload.uploaded)} · already there {there} · failed {len(upload.failed)}"
        f" · skipped {len(result.skipped)}",
    ]
    if result.publish_name:
        lines.append(f"published as {result.publish_name}")
    if result.export_dir is not None:
        lines.append(f"export: {result.export_dir}")
    return lines


def summary_table(result: TrainResult) -> Table:
    """Per-tag image counts, precision, recall and average precision, and the overall row.

    Example:
        >>> from azvision.training.models import (
        ...     IterationInfo, IterationPerformance, ProjectInfo, TagPerformance, UploadReport)
        >>> perf = IterationPerformance(iteration_id="i1", threshold=0.5, precision=1.0, recall=0.5,
        ...                             tags=(TagPerformance(name="rose", precision=1.0, recall=0.5),))
        >>> result = TrainResult(
        ...     project=ProjectInfo(id="p1", name="flowers"),
        ...     iteration=IterationInfo(id="i1", name="Iteration 1", status="Completed", project_id="p1"),
        ...     upload=UploadReport(), performance=perf)
        >>> summary_table(result).row_count
        2
    """
    performance = result.performance
    threshold = f" at probability threshold {performance.threshold:.0%}" if performance is not None else ""
    table = Table(title=f"per-tag performance{threshold}", title_justify="left")
    for column in ("tag", "images", "precision", "recall", "AP"):
        table.add_column(column, justify="left" if column == "tag" else "right")
    for tag in performance.tags if performance is not None else ():
        table.add_row(
            tag.name,
            "–" if tag.image_count is None else str(tag.image_count),
            f"{tag.precision:.1%}",
            f"{tag.recall:.1%}",
            "–" if tag.average_precision is None else f"{tag.average_precision:.1%}",
        )
    if performance is not None:
        ap = "–" if performance.average_precision is None else f"{performance.average_precision:.1%}"
        table.add_row("overall", "", f"{performance.precision:.1%}", f"{performance.recall:.1%}", ap)
    return table


def classify_settings(result: TrainResult, *, endpoint: str) -> dict[str, dict[str, str]]:
    """The environment that classifies with what was made: per backend, variable → value (never a key).

    ``custom_vision`` when an iteration was published (the prediction endpoint is taken to be the training
    one, as on a multi-service resource), ``onnx`` when an ONNX export was downloaded.

    Example:
        >>> from azvision.training.models import IterationInfo, ProjectInfo, UploadReport
        >>> result = TrainResult(
        ...     project=ProjectInfo(id="p1", name="flowers"),
        ...     iteration=IterationInfo(id="i1", name="Iteration 1", status="Completed", project_id="p1"),
        ...     upload=UploadReport(), publish_name="prod")
        >>> classify_settings(result, endpoint="https://x.cognitiveservices.azure.com/")["custom_vision"][
        ...     "CUSTOM_VISION_ITERATION_NAME"]
        'prod'
    """
    settings: dict[str, dict[str, str]] = {}
    if result.publish_name:
        env = ENV["custom_vision"]
        settings["custom_vision"] = {
            "AZVISION_BACKEND": "custom_vision",
            env["endpoint"]: endpoint,
            env["project_id"]: result.project.id,
            env["iteration"]: result.publish_name,
        }
    export_dir = result.export_dir
    is_onnx = result.export is not None and result.export.platform.lower() == "onnx"
    if export_dir is not None and (is_onnx or any(export_dir.glob("*.onnx"))):
        settings["onnx"] = {
            "AZVISION_BACKEND": "onnx",
            ENV["onnx"]["model_path"]: str(export_dir.resolve()),
        }
    return settings


def settings_lines(settings: dict[str, dict[str, str]]) -> list[str]:
    """Shell lines to paste: one ``export`` per variable, then the ``azvision classify`` to run.

    Example:
        >>> onnx = {"AZVISION_BACKEND": "onnx", "AZVISION_ONNX_MODEL_PATH": "/m"}
        >>> for line in settings_lines({"onnx": onnx}):
        ...     print(line)
        classify offline with the ONNX export:
          export AZVISION_BACKEND=onnx
          export AZVISION_ONNX_MODEL_PATH=/m
          azvision classify IMAGES
    """
    heads = {
        "custom_vision": "classify with the published iteration (also set "
        f"{ENV['custom_vision']['key']} to the prediction key; the endpoint is the prediction resource's, "
        "if it is not this one):",
        "onnx": "classify offline with the ONNX export:",
    }
    lines: list[str] = []
    for backend, variables in settings.items():
        lines.append(heads.get(backend, f"classify with {backend}:"))
        lines += [f"  export {name}={shlex.quote(value)}" for name, value in variables.items()]
        lines.append("  azvision classify IMAGES")
    return lines
