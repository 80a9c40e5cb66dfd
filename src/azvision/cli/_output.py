"""What the CLI prints: JSONL/CSV writers that flush every line, progress, one-line errors.

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> JsonlWriter(out).write({"source": "a.jpg", "label": "cat", "error": None})
    >>> out.getvalue()
    '{"source": "a.jpg", "label": "cat", "error": null}\\n'
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any, Protocol

import typer

from .._errors import AzVisionError, ConfigurationError
from .._models import Prediction

__all__ = [
    "CSV_COLUMNS",
    "CsvWriter",
    "JsonlWriter",
    "ResultWriter",
    "progress",
    "result_record",
    "usage_errors",
]

CSV_COLUMNS = ("source", "label", "confidence", "error_type", "error_message")


def result_record(
    source: str, outcome: Prediction | AzVisionError, backend: str, redact: Callable[[str], str]
) -> dict[str, Any]:
    """One output line: ``Prediction.to_dict()`` or the error's ``to_dict()``, keyed by the input as given.

    Example:
        >>> from azvision import InvalidImageError
        >>> result_record("x.png", InvalidImageError("empty"), "onnx", str)["error"]["type"]
        'InvalidImageError'
    """
    if isinstance(outcome, Prediction):
        return {**outcome.to_dict(), "source": source, "error": None}
    error = outcome.to_dict()
    error["message"] = redact(str(error["message"]))
    return {
        "source": source,
        "label": None,
        "confidence": None,
        "labels": [],
        "backend": backend,
        "error": error,
    }


class ResultWriter(Protocol):
    """Writes one record per input and flushes it at once."""

    def write(self, record: dict[str, Any]) -> None:
        """Write and flush one record."""


class JsonlWriter:
    """One JSON object per line; a line is written in one call and flushed, so Ctrl-C leaves whole lines."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, record: dict[str, Any]) -> None:
        """Write and flush one record.

        A text the stream cannot encode (a file name that is not UTF-8, on a strict stdout) is written
        with JSON escapes instead, which read back to the same text.
        """
        try:
            line = json.dumps(record, ensure_ascii=False) + "\n"
            encoding = getattr(self._stream, "encoding", None) or "utf-8"
            line.encode(encoding, getattr(self._stream, "errors", None) or "strict")
        except (UnicodeEncodeError, LookupError):
            line = json.dumps(record) + "\n"
        self._stream.write(line)
        self._stream.flush()


class CsvWriter:
    """``source,label,confidence,error_type,error_message``; the header only at the start of a file."""

    def __init__(self, stream: IO[str], *, header: bool) -> None:
        self._stream = stream
        if header:
            self._emit(CSV_COLUMNS)

    def _emit(self, row: tuple[object, ...]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(row)
        self._stream.write(buf.getvalue())
        self._stream.flush()

    def write(self, record: dict[str, Any]) -> None:
        """Write and flush one record (newlines in messages become spaces: one record per line)."""
        error = record.get("error") or {}
        message = " ".join(str(error.get("message", "")).split())
        confidence = record.get("confidence")
        self._emit(
            (
                record["source"],
                record.get("label") or "",
                "" if confidence is None else confidence,
                error.get("type", ""),
                message,
            )
        )


def error_line(message: str) -> None:
    """Print ``azvision: error: MESSAGE`` on stderr (plain text: no markup, no traceback)."""
    typer.echo(f"azvision: error: {message}", err=True)


@contextlib.contextmanager
def usage_errors(redact: Callable[[str], str]) -> Iterator[None]:
    """Turn a `ConfigurationError` into one redacted line on stderr and exit status 2."""
    try:
        yield
    except ConfigurationError as exc:
        error_line(redact(as_cli_message(str(exc))))
        raise typer.Exit(2) from None


def as_cli_message(message: str) -> str:
    """Speak in flags on the command line: "pass project_id=..." becomes "pass --project-id".

    Example:
        >>> as_cli_message("missing key: pass key=... or set the environment variable VISION_KEY")
        'missing key: pass --key or set the environment variable VISION_KEY'
    """
    return re.sub(r"\bpass (\w+)=\.\.\.", lambda m: f"pass --{m.group(1).replace('_', '-')}", message)


def progress_bars(console: Any, *extra_columns: Any) -> Any:
    """The CLI's one look for progress: spinner, description, bar, done/total, extra columns, elapsed."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        console=console,
    )


@contextlib.contextmanager
def progress(description: str, *, total: int | None, enabled: bool) -> Iterator[Callable[[bool], None]]:
    """A rich progress bar on stderr when ``enabled``; yields ``advance(ok)``, a no-op when disabled."""
    if not enabled:
        yield lambda ok: None
        return
    from rich.console import Console
    from rich.progress import TextColumn

    with progress_bars(Console(stderr=True), TextColumn("[red]{task.fields[failed]} failed")) as bar:
        task = bar.add_task(description, total=total, failed=0)
        failed = 0

        def advance(ok: bool) -> None:
            nonlocal failed
            failed += not ok
            bar.update(task, advance=1, failed=failed)

        yield advance


def stderr_is_tty() -> bool:
    """Whether a progress bar makes sense (stderr is a terminal)."""
    return sys.stderr.isatty()
