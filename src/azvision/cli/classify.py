"""``azvision classify INPUT...``: one result line per input, in input order, streamed and resumable."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from .._models import Prediction
from ..evaluation import classify_pairs
from ._options import BackendName, BackendOptions, Concurrency, MaxRps, with_backend_options
from ._output import error_line, open_results, progress, result_record, stderr_is_tty, usage_errors

__all__ = ["IMAGE_EXTENSIONS", "iter_image_files", "iter_inputs", "register"]

#: File name endings picked up when a folder is given (case-insensitive); files named directly always go.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
)


def iter_image_files(folder: str) -> Iterator[str]:
    """Image files under ``folder``, recursively, sorted by name at every level, one directory at a time.

    Hidden entries (``.name``) are skipped; a symlinked folder is entered once (no loops).

    Example:
        >>> list(iter_image_files("photos"))  # doctest: +SKIP
        ['photos/a.jpg', 'photos/sub/b.png']
    """
    seen: set[tuple[int, int]] = set()

    def walk(directory: str) -> Iterator[str]:
        try:
            stat = os.stat(directory)
            if (stat.st_dev, stat.st_ino) in seen:
                return
            seen.add((stat.st_dev, stat.st_ino))
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                yield from walk(entry.path)
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS and entry.is_file():
                yield entry.path

    yield from walk(folder)


def iter_inputs(inputs: Iterable[str]) -> Iterator[str]:
    """Expand command-line inputs lazily: URLs and files as given, folders into their image files.

    A path that does not exist is passed through, so it gets its own error line.

    Example:
        >>> list(iter_inputs(["https://example.com/cat.jpg"]))
        ['https://example.com/cat.jpg']
    """
    for item in inputs:
        if _is_folder(item):
            yield from iter_image_files(item)
        else:
            yield item


def _is_folder(item: str) -> bool:
    return "://" not in item[:16] and os.path.isdir(item)


def _summary_text(counts: dict[str, int], output: Path | None, seconds: float) -> str:
    text = f"{counts['written']} classified ({counts['failed']} failed) in {seconds:.1f} s"
    if counts["skipped"]:
        text += f"; {counts['skipped']} already in {output} skipped ({counts['skipped_failed']} failed)"
    return text + (f" → {output}" if output else "")


@with_backend_options
def classify(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or http(s) URLs.")],
    backend: BackendName = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="FILE.jsonl or FILE.csv (default: JSONL on stdout)."),
    ] = None,
    concurrency: Concurrency = None,
    max_rps: MaxRps = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip inputs already in --output and append the rest.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, no summary.")] = False,
    json_summary: Annotated[
        bool,
        typer.Option("--json", help="End with a JSON summary (stdout with --output, else stderr)."),
    ] = False,
    *,
    options: BackendOptions,
) -> None:
    """Classify images: one JSON line (or CSV row) per input, in input order.

    Exit status: 0 all inputs succeeded, 1 some failed (every line is still written), 2 usage or
    configuration error, 130 interrupted (run again with --resume to continue).
    """
    redact = options.redactor()
    with usage_errors(redact):
        spec = options.resolve([backend] if backend else [])[0]
        clf = spec.create()
    counts = {"written": 0, "failed": 0, "skipped": 0, "skipped_failed": 0}
    started = time.monotonic()
    try:
        with clf, usage_errors(redact), open_results(output, resume=resume) as (writer, done):

            def pending() -> Iterator[str]:
                for source in iter_inputs(inputs):
                    if source in done:
                        counts["skipped"] += 1
                        counts["skipped_failed"] += not done[source]
                    else:
                        yield source

            # Folders are streamed, so their size is unknown up front.
            total = None if any(map(_is_folder, inputs)) else sum(s not in done for s in inputs)
            with progress("classifying", total=total, enabled=_bar(quiet)) as advance:
                for source, outcome in classify_pairs(
                    clf, pending(), lambda s: s, concurrency=concurrency, max_rps=max_rps
                ):
                    writer.write(result_record(source, outcome, spec.name, redact))
                    ok = isinstance(outcome, Prediction)
                    counts["written"] += 1
                    counts["failed"] += not ok
                    advance(ok)
    except KeyboardInterrupt:
        where = f" to {output}; run the same command with --resume to continue" if output else ""
        error_line(f"interrupted: {counts['written']} result(s) written{where}")
        raise typer.Exit(130) from None
    _summarise(counts, output, time.monotonic() - started, quiet=quiet, as_json=json_summary)
    raise typer.Exit(1 if counts["failed"] or counts["skipped_failed"] else 0)


def _bar(quiet: bool) -> bool:
    return not quiet and stderr_is_tty()


def _summarise(
    counts: dict[str, int], output: Path | None, seconds: float, *, quiet: bool, as_json: bool
) -> None:
    if as_json:
        summary: dict[str, Any] = {
            **counts,
            "output": str(output) if output else None,
            "seconds": round(seconds, 3),
        }
        typer.echo(json.dumps(summary), err=output is None)
    elif not quiet:
        typer.echo(_summary_text(counts, output, seconds), err=True)


def register(app: typer.Typer) -> None:
    """Add ``azvision classify`` to ``app``."""
    app.command("classify")(classify)
