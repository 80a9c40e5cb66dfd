"""Answers kept per partition, so that a re-run task (or job) does not send, and pay for, a row again.

With ``classify(..., checkpoint_dir=DIR)`` every task appends each row it has answered to a file of its own
(``DIR/<run>/part-<partition>-<attempt id>.jsonl``, flushed line by line, so a task killed halfway keeps
what it got). A later attempt of the same partition (Spark's task retry, a lost executor's recompute, the
same job run again) reads the earlier attempts' files first and answers those rows from them. Rows are
matched by a hash of their cell (the image bytes, or the path or URL as written) and ``<run>`` is a hash of
the backend and its options, so an answer is never reused for another image or another model. Errors are
not kept: a failed row is tried again.

Example:
    >>> cell_key(b"abc") == cell_key(b"abc") != cell_key("abc")
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from pathlib import Path
from typing import IO, Any

__all__ = ["Checkpoint", "cell_key"]

_log = logging.getLogger("azvision.spark")


def cell_key(cell: object) -> str:
    """What identifies a row's input: a hash of its bytes, or of its path or URL as written."""
    if isinstance(cell, (bytes, bytearray, memoryview)):
        return "b" + hashlib.sha256(bytes(cell)).hexdigest()[:40]
    return "s" + hashlib.sha256(str(cell).encode("utf-8", "surrogatepass")).hexdigest()[:40]


class Checkpoint:
    """One task's view of its partition's answers: those of earlier attempts, and the file it adds to."""

    def __init__(self, folder: str | os.PathLike[str], partition: int) -> None:
        self.folder = Path(folder)
        self.prefix = f"part-{partition:05d}-"
        self.known: dict[str, dict[str, Any]] = {}
        self._out: IO[str] | None = None
        self._broken = False
        try:
            for earlier in sorted(self.folder.glob(f"{self.prefix}*.jsonl")):
                self._read(earlier)
        except OSError as exc:  # a checkpoint that cannot be read costs calls, never the task
            _log.warning("cannot read the checkpoint %s: %s", self.folder, exc)

    def _read(self, path: Path) -> None:
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    entry = json.loads(line)
                    self.known[entry["key"]] = entry["prediction"]
                except (ValueError, KeyError, TypeError):
                    continue  # the last line of a killed attempt may be cut short

    def get(self, key: str) -> dict[str, Any] | None:
        """The answer an earlier attempt wrote for ``key``, if any."""
        return self.known.get(key)

    def put(self, key: str, prediction: dict[str, Any]) -> None:
        """Keep an answer (one flushed line); a checkpoint that cannot be written is given up, not fatal."""
        if self._broken:
            return
        try:
            if self._out is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                path = self.folder / f"{self.prefix}{uuid.uuid4().hex[:12]}.jsonl"  # one file an attempt
                self._out = path.open("a", encoding="utf-8")
            self._out.write(json.dumps({"key": key, "prediction": prediction}) + "\n")
            self._out.flush()
        except OSError as exc:
            self._broken = True
            _log.warning("cannot write the checkpoint %s, going on without it: %s", self.folder, exc)

    def close(self) -> None:
        """Close this attempt's file."""
        if self._out is not None:
            self._out.close()
            self._out = None
