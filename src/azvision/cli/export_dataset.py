"""``azvision export-dataset``: take a Custom Vision project's labelled data out before the service retires.

Every tagged image with its tags and regions, as AutoML-for-images JSONL + ``MLTable`` (default), COCO JSON
or one folder per label, optionally with every trained iteration's model exports. Running the same command
again resumes an interrupted export. ``--all-projects`` exports every project of the resource, each into
its own folder. Exit status: 0 everything exported, 1 the project has no tagged image or something could
not be exported (each one is listed, with its reason), 2 usage, configuration, authentication errors or
an unknown project.

Example (shell)::

    azvision export-dataset --project flowers --format automl --out flowers-export --validation-split 0.2
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from .._errors import AuthenticationError, AzVisionError, ConfigurationError, NotFoundError
from ..training._export_models import DatasetExport
from ._options import Redactor
from ._output import error_line, progress_bars, usage_errors

__all__ = ["export_dataset", "register", "report_lines"]

_PANEL = "Custom Vision training resource (each falls back to its environment variable)"


def register(app: typer.Typer) -> None:
    """Add ``azvision export-dataset`` to the command line."""
    app.command("export-dataset")(export_dataset)


def export_dataset(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to export into (created if needed).")],
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="Project name (or id) to export.")
    ] = None,
    all_projects: Annotated[
        bool,
        typer.Option(
            "--all-projects", help="Export every project of the resource, each into OUT/<project>/."
        ),
    ] = False,
    format: Annotated[
        str, typer.Option("--format", "-f", help="automl (JSONL + MLTable), coco, or folder (one per label).")
    ] = "automl",
    validation_split: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Share of images for a validation set (automl, coco)."),
    ] = None,
    with_exports: Annotated[
        bool, typer.Option("--with-exports", help="Also download every trained iteration's model exports.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the train/validation split.")] = 0,
    endpoint: Annotated[
        str | None, typer.Option(help="Training endpoint URL.", rich_help_panel=_PANEL)
    ] = None,
    training_key: Annotated[
        str | None,
        typer.Option(help="Training key; prefer its variable. Never echoed.", rich_help_panel=_PANEL),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON line (the last line of stdout).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, no summary.")] = False,
) -> None:
    """Export every tagged image of a Custom Vision project, with its tags and regions.

    With --json the last line of stdout is {"project_id", "project", "task", "format", "out_dir", "tagged",
    "exported", "downloaded", "untagged", "failed", "not_exported", "labels", "splits", "files", "models"}
    (with --all-projects, one such line per project).
    """
    redact = Redactor([training_key or ""])
    with usage_errors(redact):
        from ..training.custom_vision import CustomVisionTrainer

        if (project is None) == (not all_projects):
            raise ConfigurationError("give --project NAME or --all-projects (one of the two)")
        trainer = CustomVisionTrainer(endpoint, training_key)
    stderr = Console(stderr=True)
    reports: list[DatasetExport] = []
    try:
        with trainer, usage_errors(redact):
            targets = [(project, out)] if project is not None else _every_project(trainer, out)
            for name, folder in targets:
                with export_progress(stderr, enabled=not quiet) as tell:
                    reports.append(
                        trainer.export_dataset(
                            name,
                            folder,
                            format=format,
                            validation_split=validation_split,
                            with_exports=with_exports,
                            seed=seed,
                            progress=tell,
                        )
                    )
    except (AuthenticationError, NotFoundError) as exc:
        error_line(redact(str(exc)))
        raise typer.Exit(2) from None
    except AzVisionError as exc:
        error_line(redact(f"{type(exc).__name__}: {exc}"))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        error_line("interrupted: what was exported is kept; run the same command again to resume")
        raise typer.Exit(130) from None
    worst = 0
    for report in reports:
        if not quiet:
            out_console = stderr if json_out else Console()
            for line in report_lines(report):
                out_console.print(line, highlight=False, markup=False)
        if json_out:
            typer.echo(json.dumps(report.summary()))
        if report.empty:
            error_line(f"project {report.project_name!r} has no tagged images: nothing was exported")
        failed = [n for n in report.not_exported if n.reason != "untagged"]
        empty = report.empty and not all_projects  # of all projects, an empty one is no failure
        worst = max(worst, 1 if empty or failed or not all(m.ok for m in report.models) else 0)
    raise typer.Exit(worst)


def _every_project(trainer: Any, out: Path) -> list[tuple[str, Path]]:
    """Each project of the resource with its own folder under ``out`` (ids tell same-named ones apart)."""
    projects = trainer.list_projects()
    names = [p.name for p in projects]
    targets = []
    for info in projects:
        folder = re.sub(r"[^\w .()+-]", "_", info.name).strip(" .") or "project"
        if names.count(info.name) > 1:
            folder = f"{folder}-{info.id[:8]}"
        targets.append((info.id, out / folder))
    return targets


@contextmanager
def export_progress(console: Console, *, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """A rich bar on stderr as images settle; a no-op when disabled."""
    if not enabled:
        yield lambda done, total: None
        return
    with progress_bars(console) as bars:
        task = bars.add_task("export", total=None)

        def tell(done: int, total: int) -> None:
            bars.update(task, completed=done, total=total)

        yield tell


def report_lines(report: DatasetExport) -> list[str]:
    """The human summary: counts, files, what was not exported (first 20) and the model exports.

    Example:
        >>> report = DatasetExport(project_id="p", project_name="flowers", task="multiclass",
        ...                        format="automl", out_dir=Path("out"), tagged=3, exported=3, downloaded=1,
        ...                        files=("annotations.jsonl", "MLTable"))
        >>> report_lines(report)[:2]
        ['flowers (multiclass): 3 of 3 tagged images exported to out (1 downloaded now)', \
'files: annotations.jsonl, MLTable']
    """
    lines = [
        f"{report.project_name} ({report.task}): {report.exported} of {report.tagged} tagged images exported "
        f"to {report.out_dir} ({report.downloaded} downloaded now)"
    ]
    if report.files:
        lines.append(f"files: {', '.join(report.files)}")
    if report.splits:
        lines.append("splits: " + ", ".join(f"{name} {count}" for name, count in report.splits.items()))
    untagged = sum(1 for n in report.not_exported if n.reason == "untagged")
    if untagged:
        lines.append(f"not exported: {untagged} untagged image(s)")
    failed = [n for n in report.not_exported if n.reason != "untagged"]
    lines += [f"not exported: {n.image_id}: {n.reason}" for n in failed[:20]]
    if len(failed) > 20:
        lines.append(f"… and {len(failed) - 20} more not exported")
    for model in report.models:
        where = model.folder if model.ok else f"not downloaded: {model.error}"
        flavor = f" {model.flavor}" if model.flavor else ""
        lines.append(f"model {model.iteration} {model.platform}{flavor}: {where}")
    return lines
