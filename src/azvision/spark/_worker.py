"""What runs in each Spark task: one backend per Python worker, one batch engine per task, one row per row.

`PartitionJob` is the function ``mapInPandas`` ships to the executors. For its partition it reads the
Arrow batches Spark hands it, sends every row through the one batch engine (the backend's
``classify_many``, or, over several resources, the same `thread_map` dealing rows to each resource at its
own share of the quota) and gives every batch back with its ``prediction`` and ``error`` columns, row for
row. A row that cannot be classified is an error row; the task goes on.

Backends are kept per Python worker process (`worker_backend`), keyed by backend and options: a Python
worker runs many tasks one after the other, and the ONNX model is loaded once in it, not once a task.

Example:
    >>> image_of("file:///data/cat.jpg", "path"), image_of("dbfs:/data/cat.jpg", "path")
    ('/data/cat.jpg', '/dbfs/data/cat.jpg')
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import pickle
import threading
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .._batch import thread_map
from .._errors import AzVisionError, InvalidImageError
from .._images import ImageLike
from .._models import Prediction
from .._protocol import Classifier
from .._registry import create_classifier
from ._checkpoint import Checkpoint, cell_key
from ._quota import Dealer
from ._schema import error_record, prediction_record
from ._ship import resolve

if TYPE_CHECKING:
    import pandas as pd

    from ..backends._base import BaseBackend

__all__ = ["PartitionJob", "Resource", "image_of", "worker_backend", "worker_loads"]

_log = logging.getLogger("azvision.spark")
_Outcome = Prediction | AzVisionError

_backends: dict[str, Classifier] = {}
_loads: Counter[str] = Counter()
_lock = threading.Lock()


def _cache_key(backend: str, options: dict[str, Any]) -> str:
    blob = pickle.dumps((backend, sorted(options.items())), protocol=4)
    return hashlib.sha256(blob).hexdigest()


def worker_backend(backend: str, options: dict[str, Any]) -> Classifier:
    """This process's backend for ``backend`` + ``options``, built (and its model loaded) on first use."""
    key = _cache_key(backend, options)
    with _lock:
        found = _backends.get(key)
        if found is None:
            found = create_classifier(backend, **resolve(options))
            _backends[key] = found
            _loads[f"{backend}:{os.path.basename(str(options.get('model_path', '')))}"] += 1
        return found


def worker_loads() -> dict[str, int]:
    """How many backends this process has built, by ``backend:model file`` (tests prove one per worker).

    Example:
        >>> isinstance(worker_loads(), dict)
        True
    """
    with _lock:
        return dict(_loads)


@atexit.register
def _close_all() -> None:
    with _lock:
        for backend in _backends.values():
            backend.close()
        _backends.clear()


def image_of(value: object, column: str) -> ImageLike | InvalidImageError:
    """A cell of the input column as an image argument, or the error that says why it is none.

    Bytes are the image (``binaryFile``'s ``content``); a string is an ``http(s)`` URL or a path of this
    machine (``file:`` URIs, and ``dbfs:/`` read through Databricks' ``/dbfs`` mount).
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        scheme = urlsplit(value).scheme.lower()
        if scheme in ("http", "https") or len(scheme) <= 1:  # one letter: a Windows drive
            return value
        if scheme == "file":
            return unquote(urlsplit(value).path)
        if scheme == "dbfs":
            return "/dbfs/" + value.split(":", 1)[1].lstrip("/")
        return InvalidImageError(
            f"{value}: a {scheme}:// path is not readable from a Python worker; read the files with "
            f"spark.read.format('binaryFile') and classify its 'content' column",
            source=value,
        )
    if value is None or value != value:  # null, or NaN from pandas
        return InvalidImageError(f"the {column!r} column is null in this row")
    return InvalidImageError(
        f"the {column!r} column holds a {type(value).__name__}: give a path, a URL or binary content"
    )


@dataclass(frozen=True)
class Resource:
    """One Azure resource a job uses: its backend options and each task's share of its quota."""

    options: dict[str, Any] = field(repr=False)
    share: float | None = None
    weight: float = 1.0


def _spread(
    resources: list[tuple[BaseBackend, float | None, float]], images: Iterable[ImageLike]
) -> Iterator[_Outcome]:
    """The batch engine over several resources: rows dealt by quota, each resource at its own share."""
    backends = [backend for backend, _, _ in resources]
    batches = [backend._batch(share) for backend, share, _ in resources]
    dealt = zip(Dealer([weight for _, _, weight in resources]).picks(), images, strict=False)

    def concurrency() -> int:
        return sum(b._concurrency_now(None, ctx) for b, ctx in pairs)

    pairs = list(zip(backends, batches, strict=True))
    window = sum(b._window(b._concurrency_now(None, ctx), ctx, b._throttle) for b, ctx in pairs)
    try:
        yield from thread_map(
            dealt,
            lambda item: backends[item[0]]._item(item[1], batches[item[0]]),
            concurrency=concurrency,
            window=window,
            pool=backends[0]._pool(),
        )
    finally:
        for ctx in batches:
            ctx.stop.set()


@dataclass(frozen=True)
class _Known:
    """A row an earlier attempt answered (from the checkpoint): not sent again."""

    record: dict[str, Any]


_Cell = ImageLike | InvalidImageError | _Known
_Answer = Prediction | AzVisionError | _Known


@dataclass(frozen=True)
class PartitionJob:
    """``mapInPandas``'s function: classifies one partition's batches, one result row per input row.

    ``checkpoint`` is this run's folder of answers kept per partition (see ``_checkpoint``), or ``None``.
    """

    backend: str
    resources: tuple[Resource, ...]
    input_col: str
    output_col: str
    error_col: str
    checkpoint: str | None = None

    def __repr__(self) -> str:  # the options hold keys: never show them
        return f"PartitionJob({self.backend!r}, {len(self.resources)} resource(s), input {self.input_col!r})"

    def _engine(self, images: Iterable[ImageLike]) -> Iterator[_Outcome]:
        built = [(worker_backend(self.backend, r.options), r.share, r.weight) for r in self.resources]
        if len(built) == 1:
            classifier, share, _ = built[0]
            return classifier.classify_many(images, max_rps=share)
        from ..backends._base import BaseBackend

        spread = [(b, s, w) for b, s, w in built if isinstance(b, BaseBackend)]
        if len(spread) != len(built):
            raise AzVisionError(f"the {self.backend!r} backend cannot spread rows over several resources")
        return _spread(spread, images)

    def _cell(self, value: object, checkpoint: Checkpoint | None) -> _Cell:
        cell = image_of(value, self.input_col)
        if checkpoint is not None and not isinstance(cell, InvalidImageError):
            known = checkpoint.get(cell_key(value))
            if known is not None:
                return _Known(known)
        return cell

    def __call__(self, batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        partition = _partition_and_warn()
        checkpoint = Checkpoint(self.checkpoint, partition) if self.checkpoint else None
        source = iter(batches)
        pending: deque[tuple[pd.DataFrame, list[_Cell]]] = deque()
        unfed: deque[list[_Cell]] = deque()

        def read() -> bool:
            batch = next(source, None)
            if batch is None:
                return False
            cells = [self._cell(value, checkpoint) for value in batch[self.input_col]]
            pending.append((batch, cells))
            unfed.append(cells)
            return True

        def fed() -> Iterator[ImageLike]:
            # The engine reads ahead of the rows being answered; bad and known cells never reach it.
            while unfed or read():
                for cell in unfed.popleft():
                    if not isinstance(cell, (InvalidImageError, _Known)):
                        yield cell

        failure: AzVisionError | None = None
        try:
            outcomes: Iterator[_Outcome] = self._engine(fed())
        except AzVisionError as exc:  # the backend cannot be built here: every row says why
            outcomes, failure = iter(()), exc
        try:
            while pending or read():
                batch, cells = pending.popleft()
                answers: list[_Answer] = []
                for value, cell in zip(batch[self.input_col], cells, strict=True):
                    if isinstance(cell, (InvalidImageError, _Known)):
                        answers.append(cell)
                        continue
                    answer = failure or next(outcomes)
                    if checkpoint is not None and isinstance(answer, Prediction):
                        checkpoint.put(cell_key(value), prediction_record(answer))
                    answers.append(answer)
                yield self._with_results(batch, answers)
        finally:
            close = getattr(outcomes, "close", None)
            if close is not None:
                close()
            if checkpoint is not None:
                checkpoint.close()

    def _with_results(self, batch: pd.DataFrame, answers: list[_Answer]) -> pd.DataFrame:
        batch = batch.copy(deep=False)
        batch[self.output_col] = [
            prediction_record(a) if isinstance(a, Prediction) else a.record if isinstance(a, _Known) else None
            for a in answers
        ]
        batch[self.error_col] = [error_record(a) if isinstance(a, AzVisionError) else None for a in answers]
        return batch


def _partition_and_warn() -> int:
    """This task's partition index (0 outside Spark); a warning when it is not the first attempt."""
    from pyspark import TaskContext

    context = TaskContext.get()
    if context is None:
        return 0
    if context.attemptNumber() > 0:
        _log.warning(
            "partition %d runs again (attempt %d): rows not in a checkpoint are sent, and billed, again",
            context.partitionId(),
            context.attemptNumber() + 1,
        )
    return context.partitionId()
