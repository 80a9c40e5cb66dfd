"""`Cascade`: ask the cheap classifier first, and the next one only for the images it is unsure of."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

from .._batch import aiter_any, ordered_map, thread_map
from .._errors import AzVisionError, ConfigurationError
from .._images import ImageLike
from .._models import Prediction
from .._protocol import Classifier
from ._base import Outcome, Prepared, Router, Steps, add_notes, prepare
from ._labels import LabelMapping, SharedLabels
from ._policy import describe, moves_on

__all__ = ["Cascade"]

#: The threshold the docs recommend for an ONNX export in front of its own Custom Vision iteration.
DEFAULT_THRESHOLD = 0.8


class Cascade(Router):
    """Ask the stages in order; the first answer at or above its stage's threshold is the answer.

    The last stage always answers. ``threshold`` is one value for every stage but the last, or one per
    stage but the last. A stage that fails with a service, connection, timeout or rate-limit error passes
    the image on (the last stage's error is the outcome); a bad image or a refused key ends it at once.

    Stages must answer in the same labels: where they say which (a ``labels`` attribute), a mismatch is
    refused here, unless ``label_map`` folds a stage's labels into the others' (keyed by stage index or
    name, ``{stage_label: shared_label}``, ``None`` drops a label); where they do not, each answer is
    checked as it comes. ``labels`` fixes the shared label space explicitly.

    `Prediction.backend` names the stage that answered; `Prediction.notes` says why (``"cascade: onnx
    0.62 < 0.80 (below threshold), asked custom_vision"``). `stats` counts calls, final answers and
    list-price cost per stage.

    Example:
        >>> from azvision import Cascade, OnnxBackend, CustomVisionBackend
        >>> stages = [OnnxBackend("export.zip"), CustomVisionBackend()]  # doctest: +SKIP
        >>> cascade = Cascade(stages, threshold=0.8)  # doctest: +SKIP
        >>> p = cascade.classify("cat.jpg")  # doctest: +SKIP
        >>> p.backend, p.notes  # doctest: +SKIP
        ('onnx', ('cascade: onnx answered at 0.97 (threshold 0.80)',))
    """

    kind = "cascade"

    def __init__(
        self,
        stages: Sequence[Classifier],
        threshold: float | Sequence[float] = DEFAULT_THRESHOLD,
        *,
        label_map: LabelMapping | None = None,
        labels: Sequence[str] | None = None,
        concurrency: int | None = None,
    ) -> None:
        super().__init__(stages, concurrency=concurrency)
        self.thresholds: tuple[float, ...] = _thresholds(threshold, len(self.members))
        self._labels = SharedLabels("cascade", self.member_names, self.members, label_map, labels)

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The shared label space (sorted), when a stage or ``labels=`` says it."""
        return self._labels.labels

    def _settings(self) -> dict[str, Any]:
        return {
            "thresholds": list(self.thresholds),
            **self._labels.settings(),
        }

    # -- one input --------------------------------------------------------------------------------
    def _decide(self, index: int, outcome: Prediction | AzVisionError, notes: list[str]) -> Prediction | None:
        """The answer, ``None`` to ask the next stage; raises the error that ends the input."""
        name, last = self.member_names[index], index == len(self.members) - 1
        if isinstance(outcome, AzVisionError):
            self._count(index, "error")
            if last or not moves_on(outcome):
                raise outcome
            notes.append(
                f"cascade: {name} failed ({describe(outcome)}), asked {self.member_names[index + 1]}"
            )
            return None
        prediction = self._labels.answer(index, outcome)
        if last:
            self._count(index, "answered")
            return add_notes(prediction, f"cascade: answered by {name}", before=notes)
        threshold = self.thresholds[index]
        if prediction.confidence >= threshold:
            self._count(index, "answered")
            note = f"cascade: {name} answered at {prediction.confidence:.2f} (threshold {threshold:.2f})"
            return add_notes(prediction, note, before=notes)
        self._count(index, "passed")
        notes.append(
            f"cascade: {name} {prediction.confidence:.2f} < {threshold:.2f} (below threshold), "
            f"asked {self.member_names[index + 1]}"
        )
        return None

    def _steps(self) -> Steps:
        notes: list[str] = []
        for index in range(len(self.members)):
            answer = self._decide(index, (yield index), notes)
            if answer is not None:
                return answer
        raise AssertionError("the last stage always answers")  # pragma: no cover

    # -- batches: the first stage answers the whole stream in its own batches ------------------------
    def classify_many(
        self,
        images: Iterable[ImageLike],
        *,
        concurrency: int | None = None,
        max_rps: float | None = None,
    ) -> Iterator[Prediction | AzVisionError]:
        """One outcome per input, in input order. The first stage gets the whole stream through its own
        ``classify_many`` (an ONNX export runs it in batches of 16), the later stages only the images
        below its threshold, ``concurrency`` at a time (default 8); ``max_rps`` paces the first stage.

        Example:
            >>> # for outcome in cascade.classify_many(paths, concurrency=8): ...
        """
        self._check_open()
        first = self.members[0]
        queue: deque[Prepared] = deque()

        def feed() -> Iterator[ImageLike]:
            for image in images:
                item = prepare(image)
                queue.append(item)
                if item.error is None:
                    yield item.image

        def pairs() -> Iterator[tuple[Prepared, Outcome | None]]:
            answers = first.classify_many(feed(), concurrency=concurrency, max_rps=max_rps)
            for outcome in answers:
                yield from _unread(queue)
                yield queue.popleft(), outcome
            yield from _unread(queue)

        def rest(pair: tuple[Prepared, Outcome | None]) -> Prediction:
            return self._one(*pair)

        return thread_map(pairs(), rest, concurrency=self._workers(concurrency), pool=self._pool())

    async def aclassify_many(
        self,
        images: Iterable[ImageLike] | AsyncIterable[ImageLike],
        *,
        concurrency: int | None = None,
        max_rps: float | None = None,
    ) -> AsyncIterator[Prediction | AzVisionError]:
        """Async `classify_many`; ``images`` may be a sync or an async iterable."""
        self._check_open()
        first = self.members[0]
        queue: deque[Prepared] = deque()

        async def feed() -> AsyncIterator[ImageLike]:
            async for image in aiter_any(images):
                item = prepare(image)
                queue.append(item)
                if item.error is None:
                    yield item.image

        async def pairs() -> AsyncIterator[tuple[Prepared, Outcome | None]]:
            async for outcome in first.aclassify_many(feed(), concurrency=concurrency, max_rps=max_rps):
                for pair in _unread(queue):
                    yield pair
                yield queue.popleft(), outcome
            for pair in _unread(queue):
                yield pair

        async def rest(pair: tuple[Prepared, Outcome | None]) -> Prediction:
            return await self._aone(*pair)

        async for outcome in ordered_map(pairs(), rest, concurrency=self._workers(concurrency)):
            yield outcome

    def __repr__(self) -> str:
        stages = ", ".join(repr(m) for m in self.members)
        return f"Cascade([{stages}], threshold={list(self.thresholds)})"


def _unread(queue: deque[Prepared]) -> Iterator[tuple[Prepared, Outcome | None]]:
    """The inputs at the head of ``queue`` that never reached the first stage (a file object that could
    not be read): they go on in their place, with their error."""
    while queue and queue[0].error is not None:
        yield queue.popleft(), None


def _thresholds(threshold: float | Sequence[float], stages: int) -> tuple[float, ...]:
    given = [threshold] * (stages - 1) if isinstance(threshold, int | float) else list(threshold)
    if len(given) != stages - 1:
        raise ConfigurationError(
            f"threshold: give one value, or one per stage but the last ({stages - 1}); got {len(given)}"
        )
    for value in given:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise ConfigurationError(f"a cascade threshold must be a number in [0, 1], got {value!r}")
    return tuple(float(v) for v in given)
