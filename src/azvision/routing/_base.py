"""What `Cascade`, `Fallback` and `CachedClassifier` share: inputs read once, batches, counts, lifecycle.

A router subclasses `Router` and implements `Router._steps`: a generator that yields the index of the
member to ask next, receives its outcome (a `Prediction` or the `AzVisionError` it raised), and returns
the answer or raises the input's error. The same steps drive the sync and the async path. Batches go
through the one batch engine (`azvision._batch`): in input order, bounded concurrency and memory, every
input answered in its place.

Example:
    >>> from azvision.routing._base import prepare
    >>> prepare(b"...").image
    b'...'
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._batch import ordered_map, thread_map
from .._errors import AzVisionError, ConfigurationError
from .._images import DEFAULT_MAX_INPUT_BYTES, ImageLike, _read_source
from .._lifecycle import Closing
from .._models import Prediction
from .._pacing import Pacer
from .._protocol import Classifier
from ._identity import identity
from ._stats import RoutingStats, StageStats, Usage, leaf_cost

__all__ = ["Outcome", "Prepared", "Router", "Steps", "add_notes", "member_name", "prepare"]

_DEFAULT_CONCURRENCY = 8

Outcome = Prediction | AzVisionError
#: A router's plan for one input: yields member indices, is sent their outcomes, returns the answer.
Steps = Generator[int, Outcome, Prediction]


@dataclass(frozen=True)
class Prepared:
    """One input as every member can read it again: a path, URL, bytes or PIL image kept as given, a file
    object read once into bytes (a second member would find it at its end)."""

    image: ImageLike
    source: str | None = None
    error: AzVisionError | None = field(default=None, compare=False)


def prepare(image: ImageLike) -> Prepared:
    """`Prepared` for ``image``; a file object that cannot be read carries its `InvalidImageError`.

    Example:
        >>> prepare("photos/cat.jpg").source
        'photos/cat.jpg'
    """
    if isinstance(image, str):
        return Prepared(image, image)
    if hasattr(image, "__fspath__"):
        return Prepared(image, str(image))
    if isinstance(image, bytearray | memoryview):
        return Prepared(bytes(image))
    if callable(getattr(image, "read", None)):
        try:
            data, source, _ = _read_source(image, DEFAULT_MAX_INPUT_BYTES)
        except AzVisionError as exc:
            return Prepared(b"", None, exc)
        return Prepared(data, source)
    return Prepared(image)


def member_name(member: Classifier) -> str:
    """A member's name: its backend name (``"onnx"``), or a router's own description."""
    name = getattr(member, "name", None)
    return name if isinstance(name, str) else type(member).__name__


def _unique_names(members: Sequence[Classifier]) -> tuple[str, ...]:
    """Member names, with ``@2``, ``@3`` … on repeats (two Custom Vision resources in one fallback)."""
    seen: Counter[str] = Counter()
    names = []
    for member in members:
        base = member_name(member)
        seen[base] += 1
        names.append(base if seen[base] == 1 else f"{base}@{seen[base]}")
    return tuple(names)


class _Counts:
    """Per-member counters, updated from many threads."""

    def __init__(self, size: int) -> None:
        self.lock = threading.Lock()
        self.calls = [0] * size
        self.answered = [0] * size
        self.errors = [0] * size
        self.skipped = [0] * size
        #: Requests that got an answer (final or passed on): what a service bills.
        self.billed = [0] * size
        self.inputs = 0


class Router(Closing):
    """The shared machinery of routers; see `azvision.Classifier` for the public methods."""

    #: What the router is in ``stats()`` and ``name``: ``"cascade"``, ``"fallback"`` or ``"cache"``.
    kind: str = "router"

    def __init__(self, members: Sequence[Classifier], *, concurrency: int | None = None) -> None:
        members = tuple(members)
        if not members:
            raise ConfigurationError(f"a {self.kind} needs at least one classifier")
        for member in members:
            if not isinstance(member, Classifier):
                raise ConfigurationError(
                    f"a {self.kind} takes classifiers (backends or routers), got {type(member).__name__}"
                )
        if concurrency is not None and concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {concurrency}")
        self.members: tuple[Classifier, ...] = members
        self.member_names: tuple[str, ...] = _unique_names(members)
        self.concurrency = concurrency
        self._counts = _Counts(len(members))
        self._open_state(self.kind)

    # -- the hooks ------------------------------------------------------------------------------
    def _steps(self) -> Steps:
        """Which member to ask next for one input, given the outcomes so far (see the module)."""
        raise NotImplementedError

    def _route(self, item: Prepared, first: Outcome | None = None) -> Prediction:
        """Answer one prepared input through the members, or raise its `AzVisionError`.

        ``first`` is member 0's outcome when a batch has already asked it (a cascade's first stage).
        """
        steps = self._steps()
        try:
            index = next(steps)
            while True:
                outcome: Outcome
                if index == 0 and first is not None:
                    outcome, first = first, None
                else:
                    try:
                        with self._calling(index):
                            outcome = self.members[index].classify(item.image)
                    except AzVisionError as exc:
                        outcome = exc
                index = steps.send(outcome)
        except StopIteration as done:
            answer: Prediction = done.value
            return answer
        finally:
            steps.close()  # interrupted (Ctrl-C, a batch that stopped): the steps release what they hold

    async def _aroute(self, item: Prepared, first: Outcome | None = None) -> Prediction:
        """Async `_route`."""
        steps = self._steps()
        try:
            index = next(steps)
            while True:
                outcome: Outcome
                if index == 0 and first is not None:
                    outcome, first = first, None
                else:
                    try:
                        with self._calling(index):
                            outcome = await self.members[index].aclassify(item.image)
                    except AzVisionError as exc:
                        outcome = exc
                index = steps.send(outcome)
        except StopIteration as done:
            answer: Prediction = done.value
            return answer
        finally:
            steps.close()

    def _calling(self, index: int) -> contextlib.AbstractContextManager[object]:
        """The context member ``index`` is asked in (a fallback caps the retries of all but its last)."""
        return contextlib.nullcontext()

    @property
    def name(self) -> str:
        """``kind(member → member …)``, e.g. ``"cascade(onnx→custom_vision)"``."""
        return f"{self.kind}({'→'.join(self.member_names)})"

    # -- counting -------------------------------------------------------------------------------
    def _count(self, index: int, outcome: str) -> None:
        """Record member ``index``'s ``outcome``: ``"answered"``, ``"passed"``, ``"error"``, ``"skipped"``."""
        counts = self._counts
        with counts.lock:
            if outcome != "skipped":
                counts.calls[index] += 1
            if outcome in ("answered", "passed"):
                counts.billed[index] += 1
            if outcome == "answered":
                counts.answered[index] += 1
            elif outcome == "error":
                counts.errors[index] += 1
            elif outcome == "skipped":
                counts.skipped[index] += 1

    def usage(self) -> Usage:
        """Backend calls, cache hits and cost of every backend below this router, summed through nesting."""
        total = Usage()
        with self._counts.lock:
            counts = list(zip(self._counts.calls, self._counts.billed, strict=True))
        for member, name, (calls, billed) in zip(self.members, self.member_names, counts, strict=True):
            if isinstance(member, Router):
                total += member.usage()  # a router counts its own backends' calls
            else:
                total += Usage.of_leaf(name, calls, leaf_cost(member), billed)
        return total + self._own_usage()

    def _own_usage(self) -> Usage:
        return Usage()

    def cache_identity(self) -> dict[str, Any]:
        """What a `CachedClassifier` keys this router's answers by: its kind, settings and members."""
        return {
            "kind": self.kind,
            "settings": self._settings(),
            "members": [identity(member) for member in self.members],
        }

    def _settings(self) -> dict[str, Any]:
        """The router's own settings that change answers (a cascade's thresholds)."""
        return {}

    def stats(self) -> RoutingStats:
        """Counts per member and in all: calls, final answers, errors, list-price cost (`azvision._pricing`).

        Example:
            >>> # cascade.stats().stages[0].answered, cascade.stats().usage.cost_usd
        """
        usage = self.usage()
        with self._counts.lock:
            c = self._counts
            stages = tuple(
                StageStats(
                    name=name,
                    calls=c.calls[i],
                    answered=c.answered[i],
                    errors=c.errors[i],
                    skipped=c.skipped[i],
                    cost_usd=_member_cost(member, c.billed[i]),
                )
                for i, (member, name) in enumerate(zip(self.members, self.member_names, strict=True))
            )
            inputs = c.inputs
        return RoutingStats(kind=self.kind, name=self.name, inputs=inputs, stages=stages, usage=usage)

    # -- single images --------------------------------------------------------------------------
    def classify(self, image: ImageLike) -> Prediction:
        """Classify one image through the members (see the class documentation for the rule)."""
        self._check_open()
        return self._one(prepare(image))

    async def aclassify(self, image: ImageLike) -> Prediction:
        """Async `classify`."""
        self._check_open()
        return await self._aone(prepare(image))

    def _one(self, item: Prepared, first: Outcome | None = None) -> Prediction:
        with self._counts.lock:
            self._counts.inputs += 1
        if item.error is not None:
            raise item.error
        return _with_source(self._route(item, first), item)

    async def _aone(self, item: Prepared, first: Outcome | None = None) -> Prediction:
        with self._counts.lock:
            self._counts.inputs += 1
        if item.error is not None:
            raise item.error
        return _with_source(await self._aroute(item, first), item)

    # -- batches --------------------------------------------------------------------------------
    def _workers(self, concurrency: int | None) -> int:
        return concurrency or self.concurrency or _DEFAULT_CONCURRENCY

    def classify_many(
        self,
        images: Iterable[ImageLike],
        *,
        concurrency: int | None = None,
        max_rps: float | None = None,
    ) -> Iterator[Prediction | AzVisionError]:
        """One outcome per input, in input order, ``concurrency`` inputs in flight (default 8).

        ``max_rps`` paces the inputs entering the router; each member keeps its own limits and retries.

        Example:
            >>> # for outcome in router.classify_many(paths, concurrency=4): ...
        """
        self._check_open()
        pacer = Pacer(max_rps) if max_rps is not None else None

        def one(image: ImageLike) -> Prediction:
            if pacer is not None:
                time.sleep(max(0.0, pacer.commit(pacer.earliest()) - time.monotonic()))
            return self._one(prepare(image))

        return thread_map(images, one, concurrency=self._workers(concurrency), pool=self._pool())

    async def aclassify_many(
        self,
        images: Iterable[ImageLike] | AsyncIterable[ImageLike],
        *,
        concurrency: int | None = None,
        max_rps: float | None = None,
    ) -> AsyncIterator[Prediction | AzVisionError]:
        """Async `classify_many`; ``images`` may be a sync or an async iterable."""
        self._check_open()
        pacer = Pacer(max_rps) if max_rps is not None else None

        async def one(image: ImageLike) -> Prediction:
            if pacer is not None:
                await asyncio.sleep(max(0.0, pacer.commit(pacer.earliest()) - time.monotonic()))
            return await self._aone(prepare(image))

        async for outcome in ordered_map(images, one, concurrency=self._workers(concurrency)):
            yield outcome

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Close every member (and this router's worker threads). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for member in self.members:
            member.close()
        self._stop_pool()

    async def aclose(self) -> None:
        """Async `close`."""
        if self._closed:
            return
        self._closed = True
        for member in self.members:
            await member.aclose()
        self._stop_pool()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(repr(m) for m in self.members)})"


def _member_cost(member: Classifier, billed: int) -> float | None:
    if isinstance(member, Router):
        return member.usage().cost_usd
    per_image = leaf_cost(member)
    return None if per_image is None else per_image * billed


def _with_source(prediction: Prediction, item: Prepared) -> Prediction:
    if prediction.source is None and item.source is not None:
        return prediction.model_copy(update={"source": item.source})
    return prediction


def add_notes(prediction: Prediction, *notes: str, before: Sequence[str] = ()) -> Prediction:
    """``prediction`` with ``notes`` appended and ``before`` in front (what happened first comes first)."""
    copy = prediction.model_copy(update={"notes": (*before, *prediction.notes, *notes)})
    copy._preview = prediction._preview
    return copy
