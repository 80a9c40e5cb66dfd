"""``azvision classify INPUT...``: one result line per input, in input order, streamed and resumable."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer

from .._errors import ConfigurationError
from ..evaluation import classify_pairs
from ._diagnose import FailureTally, backend_endpoint
from ._options import BackendName, BackendOptions, Concurrency, MaxRps, with_backend_options
from ._output import error_line, progress, result_record, stderr_is_tty, usage_errors
from ._resume import input_key, is_url, open_results
from ._routing import CacheOpt, CascadeOpt, Routing, ThresholdOpt, usage_line, usage_report

__all__ = ["IMAGE_EXTENSIONS", "count_inputs", "iter_image_files", "iter_inputs", "register"]

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


def iter_inputs(inputs: Iterable[str], on_empty: Callable[[str], None] | None = None) -> Iterator[str]:
    """Expand command-line inputs lazily: URLs and files as given, folders into their image files.

    A path that does not exist is passed through, so it gets its own error line; ``on_empty`` is called
    with each folder that holds no image.

    Example:
        >>> list(iter_inputs(["https://example.com/cat.jpg"]))
        ['https://example.com/cat.jpg']
    """
    for item in inputs:
        if _is_folder(item):
            found = False
            for path in iter_image_files(item):
                found = True
                yield path
            if not found and on_empty is not None:
                on_empty(item)
        else:
            yield item


def count_inputs(inputs: Iterable[str], done: Mapping[str, bool], *, limit: int = 100_000) -> int | None:
    """How many inputs are left to classify (folders counted), or ``None`` past ``limit`` (keep streaming).

    Example:
        >>> count_inputs(["https://example.com/a.png", "https://example.com/b.png"], {})
        2
    """
    total = 0
    for scanned, source in enumerate(iter_inputs(inputs)):
        if scanned >= limit:
            return None
        total += not done or input_key(source) not in done
    return total


def _is_folder(item: str) -> bool:
    return not is_url(item) and os.path.isdir(item)


def _check_paths(inputs: Sequence[str]) -> None:
    missing = [item for item in inputs if not is_url(item) and not os.path.exists(item)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ConfigurationError(f"no such file or folder: {missing[0]}{more}")


def _summary_text(counts: dict[str, int], output: Path | None, seconds: float) -> str:
    text = f"{counts['classified']} classified, {counts['failed']} failed in {seconds:.1f} s"
    if counts["retried"]:
        text += f" ({counts['retried']} earlier failures retried)"
    if counts["skipped"]:
        text += f"; {counts['skipped']} already in {output} skipped ({counts['skipped_failed']} failed)"
    if counts["empty_folders"]:
        text += f"; {counts['empty_folders']} empty folder{'s' if counts['empty_folders'] > 1 else ''}"
    return text + (f" → {output}" if output else "")


@with_backend_options
def classify(
    inputs: Annotated[
        list[str] | None, typer.Argument(help="Image files, folders (recursive) or http(s) URLs.")
    ] = None,
    backend: BackendName = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="FILE.jsonl or FILE.csv (default: JSONL on stdout)."),
    ] = None,
    concurrency: Concurrency = None,
    max_rps: MaxRps = None,
    cascade: CascadeOpt = None,
    threshold: ThresholdOpt = None,
    cache: CacheOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip inputs already in --output and append the rest.")
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="Classify the failed lines of --output again and rewrite it in place (implies --resume).",
        ),
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
    configuration error (a missing file or folder, an output another run is writing), 130 interrupted
    (run again with --resume to continue).
    """
    redact = options.redactor()
    inputs = inputs or []
    resume = resume or retry_failed
    with usage_errors(redact):
        routing = Routing.of(cascade, threshold, cache)
        if not routing.stages:
            options.resolve([backend] if backend else [])  # a wrong backend option is reported first
        if not inputs and not retry_failed:
            raise ConfigurationError("give at least one INPUT: an image file, a folder or a URL")
        if resume and output is None:
            flag = "--retry-failed" if retry_failed else "--resume"
            raise ConfigurationError(f"{flag} needs --output FILE (the results to continue)")
        _check_paths(inputs)
        spec, clf = routing.build(options, backend)
    counts = dict.fromkeys(
        ("written", "classified", "failed", "retried", "skipped", "skipped_failed", "empty_folders"), 0
    )
    tally = FailureTally()
    started = time.monotonic()

    def run(sources: Iterable[str]) -> Iterator[dict[str, Any]]:
        for source, outcome in classify_pairs(
            clf, sources, lambda s: s, concurrency=concurrency, max_rps=max_rps
        ):
            tally.add(outcome)
            yield {**result_record(source, outcome, spec.name, redact), "time": utc_now()}

    def count(record: dict[str, Any]) -> bool:
        ok = record.get("error") is None
        counts["written"] += 1
        counts["classified"] += ok
        counts["failed"] += not ok
        return ok

    def empty(folder: str) -> None:
        counts["empty_folders"] += 1
        if not quiet:
            typer.echo(f"azvision: warning: no images in the folder {folder}", err=True)

    try:
        with clf, usage_errors(redact), open_results(output, resume=resume) as results:
            retried: set[str] = set()
            if retry_failed:
                failed = results.failed
                retried = {input_key(source) for source in failed}
                with progress("retrying", total=len(failed), enabled=_bar(quiet)) as advance:
                    results.retry_failed(run, on_record=lambda record: advance(count(record)))
                counts["retried"] = len(failed)
            done = results.done

            def pending() -> Iterator[str]:
                for source in iter_inputs(inputs, on_empty=empty):
                    key = input_key(source)
                    if key in retried:
                        continue
                    if key in done:
                        counts["skipped"] += 1
                        counts["skipped_failed"] += not done[key]
                    else:
                        yield source

            bar = _bar(quiet)
            total = count_inputs(inputs, {**done, **dict.fromkeys(retried, True)}) if bar else None
            with progress("classifying", total=total, enabled=bar) as advance:
                for record in run(pending()):
                    results.write(record)
                    advance(count(record))
    except KeyboardInterrupt:
        where = f" to {output}; run the same command with --resume to continue" if output else ""
        error_line(f"interrupted: {counts['written']} result(s) written{where}")
        raise typer.Exit(130) from None
    _summarise(counts, output, time.monotonic() - started, quiet=quiet, as_json=json_summary, routed=clf)
    hint = tally.hint(spec.name, endpoint=backend_endpoint(clf))
    if hint is not None:
        error_line(redact(hint))
    raise typer.Exit(1 if counts["failed"] or counts["skipped_failed"] else 0)


def utc_now() -> str:
    """When an answer arrived, for the JSONL ``time`` field (``azvision monitor``'s daily trend).

    Example:
        >>> utc_now().endswith("Z") and utc_now()[10] == "T"
        True
    """
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _bar(quiet: bool) -> bool:
    return not quiet and stderr_is_tty()


def _summarise(
    counts: dict[str, int],
    output: Path | None,
    seconds: float,
    *,
    quiet: bool,
    as_json: bool,
    routed: object = None,
) -> None:
    routing = usage_report(routed)
    if as_json:
        summary: dict[str, Any] = {
            **counts,
            "output": str(output) if output else None,
            "seconds": round(seconds, 3),
        }
        if routing is not None:
            summary["routing"] = routing
        typer.echo(json.dumps(summary), err=output is None)
    elif not quiet:
        typer.echo(_summary_text(counts, output, seconds), err=True)
        line = usage_line(routed)
        if line is not None:
            typer.echo(line, err=True)


def register(app: typer.Typer) -> None:
    """Add ``azvision classify`` to ``app``."""
    app.command("classify")(classify)
