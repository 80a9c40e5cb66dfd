"""``--output`` files that outlive a run: one writer at a time, ``--resume`` and ``--retry-failed``.

The file is locked (``flock``) for the whole run, so a second run on it is refused instead of writing every
input again. An existing file is read and checked before anything in it changes: a file that is not
azvision output is refused byte for byte intact. Inputs are matched on their resolved path, so ``small``
and ``./small`` are the same images. File names that are not valid UTF-8 are written as their own bytes
(``surrogateescape``) and read back to the same name.

Example:
    >>> input_key("https://example.com/cat.jpg")
    'https://example.com/cat.jpg'
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .._errors import ConfigurationError
from ._output import CSV_COLUMNS, CsvWriter, JsonlWriter, ResultWriter

__all__ = ["Results", "input_key", "is_url", "open_results"]

_JSONL_START = b'{"source": '


def is_url(item: str) -> bool:
    """Whether a command-line input is a URL rather than a local path.

    Example:
        >>> is_url("https://example.com/a.png"), is_url("photos/a.png")
        (True, False)
    """
    return "://" in item[:16]


def input_key(source: str) -> str:
    """What identifies an input from one run to the next: a URL as given, a path resolved.

    Example:
        >>> input_key("photos/../photos/a.png") == input_key("./photos/a.png")
        True
    """
    return source if is_url(source) else os.path.realpath(source)


@dataclass
class _Entry:
    """One result already in the file: its input, whether it succeeded and its line as written."""

    source: str
    ok: bool
    line: str


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def _csv_line(row: Iterable[object]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(row)
    return buf.getvalue()


def _refuse(path: Path, why: str) -> ConfigurationError:
    return ConfigurationError(f"cannot resume {path}: {why}; the file was left as it was")


def _parse(path: Path, data: bytes) -> tuple[list[_Entry], int]:
    """The results in ``data`` and where its whole lines end; raises before anything is changed.

    A last line without its newline (a run killed mid-write) is dropped, but only when it is the start of
    an azvision line: anything else means the file is not ours.
    """
    end = data.rfind(b"\n") + 1
    partial = data[end:]
    text = data[:end].decode("utf-8", errors="surrogateescape")
    entries: list[_Entry] = []
    if _is_csv(path):
        header = _csv_line(CSV_COLUMNS).encode()
        rows = list(csv.reader(io.StringIO(text)))
        if rows and tuple(rows[0]) != CSV_COLUMNS:
            raise _refuse(path, f"it is not an azvision CSV (header {rows[0]})")
        if not rows and partial and not header.startswith(partial):
            raise _refuse(path, "it is not an azvision CSV (no header)")
        for number, row in enumerate(rows[1:], start=2):
            if len(row) != len(CSV_COLUMNS):
                raise _refuse(path, f"row {number} has {len(row)} columns, not {len(CSV_COLUMNS)}")
            entries.append(_Entry(row[0], not row[3], _csv_line(row)))
        return entries, end
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            source, error = record["source"], record["error"]
            if not isinstance(source, str) or not isinstance(error, dict | None):
                raise TypeError("'source' must be a string and 'error' null or an object")
        except (ValueError, KeyError, TypeError) as exc:
            raise _refuse(path, f"line {number} is not an azvision result ({exc})") from None
        entries.append(_Entry(source, error is None, line + "\n"))
    if partial and not (partial.startswith(_JSONL_START) or _JSONL_START.startswith(partial)):
        raise _refuse(path, f"its last line is not an azvision result ({partial[:40]!r})")
    return entries, end


def _lock(fd: int, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows has no flock; the run goes on unlocked
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigurationError(
            f"{path} is being written by another azvision run: wait for it to end, or pass another --output"
        ) from None


def _text(handle: IO[bytes]) -> io.TextIOWrapper:
    return io.TextIOWrapper(handle, encoding="utf-8", errors="surrogateescape", newline="")


class Results:
    """The output of one run: ``write`` one record per input; ``done`` holds what an earlier run wrote.

    Use `open_results` to get one.
    """

    def __init__(self, path: Path | None, stream: io.TextIOWrapper | None, entries: list[_Entry]) -> None:
        self.path = path
        self._stream = stream
        self._entries = entries
        self._writer = self._writer_for(stream)

    def _writer_for(self, stream: io.TextIOWrapper | None) -> ResultWriter:
        if stream is None:
            return JsonlWriter(sys.stdout)
        if self.path is not None and _is_csv(self.path):
            return CsvWriter(stream, header=stream.tell() == 0)
        return JsonlWriter(stream)

    @property
    def done(self) -> dict[str, bool]:
        """Inputs already in the file (by `input_key`) → whether each succeeded."""
        return {input_key(e.source): e.ok for e in self._entries}

    @property
    def failed(self) -> list[str]:
        """The inputs of the failed lines, in file order."""
        return [e.source for e in self._entries if not e.ok]

    def write(self, record: dict[str, Any]) -> None:
        """Write and flush one record."""
        self._writer.write(record)

    def retry_failed(
        self,
        run: Callable[[list[str]], Iterator[dict[str, Any]]],
        on_record: Callable[[dict[str, Any]], None] = lambda record: None,
    ) -> None:
        """Rewrite the file with each failed line replaced by ``run``'s new record for it, in file order.

        The new file is written beside the old one and renamed over it at the end: interrupted, the old file
        is left whole. Afterwards `write` appends to the new file, which stays locked.
        """
        if self.path is None or self._stream is None:
            raise ConfigurationError("--retry-failed needs --output FILE (the results to retry)")
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        stream = _text(open(fd, "r+b"))  # noqa: SIM115 - it becomes this object's stream, closed by close()
        try:
            _lock(fd, Path(temp))
            writer = self._writer_for(stream)
            records = run(self.failed)
            entries: list[_Entry] = []
            for entry in self._entries:
                if entry.ok:
                    stream.write(entry.line)
                    entries.append(entry)
                    continue
                record = next(records)
                writer.write(record)
                entries.append(_Entry(entry.source, record.get("error") is None, ""))
                on_record(record)
            stream.flush()
            os.fsync(fd)
            os.chmod(temp, os.stat(self.path).st_mode & 0o7777)
            os.replace(temp, self.path)
        except BaseException:
            stream.close()
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        self._stream.close()
        self._stream, self._writer, self._entries = stream, writer, entries

    def close(self) -> None:
        """Close (and unlock) the file."""
        if self._stream is not None:
            self._stream.close()


@contextlib.contextmanager
def open_results(path: Path | None, *, resume: bool) -> Iterator[Results]:
    """The results of ``--output`` (JSONL on stdout when ``None``), locked; with ``resume``, what it holds.

    Example:
        >>> with open_results(Path("out.jsonl"), resume=True) as results:  # doctest: +SKIP
        ...     results.write({"source": "a.png", "label": "cat", "error": None})
    """
    if path is None:
        if resume:
            raise ConfigurationError("--resume needs --output FILE (the results to continue)")
        yield Results(None, None, [])
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise ConfigurationError(f"cannot write {path}: {exc.strerror or exc}") from exc
    handle = open(fd, "r+b")  # noqa: SIM115 - closed by Results.close below
    results: Results | None = None
    try:
        _lock(fd, path)
        entries: list[_Entry] = []
        if resume:
            entries, end = _parse(path, handle.read())
            handle.truncate(end)
        else:
            handle.truncate(0)
        handle.seek(0, os.SEEK_END)
        results = Results(path, _text(handle), entries)
        yield results
    finally:
        if results is not None:
            results.close()
        else:
            handle.close()
