"""What every backend shares: image loading, the retry loop, throttling, batches, sync/async, lifecycle.

A backend subclasses `BaseBackend` and implements only `BaseBackend._predict` (one request for
one validated image, vendor errors already mapped at its choke point). Everything else lives here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import ClassVar

from .._batch import BatchContext, auto_concurrency, ordered_map, thread_map
from .._config import Secret, redact
from .._errors import AzVisionError
from .._images import ImageLike, ImageLimits, LoadedImage, load_image
from .._lifecycle import Closing
from .._models import Prediction
from .._retry import Clock, Pacer, RetryPolicy, RetryState, Throttle, acall, call

__all__ = ["BaseBackend"]


class BaseBackend(Closing, ABC):
    """Shared machinery of all backends; see `azvision.Classifier` for the public methods.

    Subclasses set ``name`` and ``image_limits`` and implement `_predict`.
    """

    #: Registry name, e.g. ``"custom_vision"``; also ``Prediction.backend``.
    name: ClassVar[str]
    #: What the service accepts; images outside are downscaled or rejected before any call.
    image_limits: ClassVar[ImageLimits]
    #: Workers for ``classify_many`` when neither ``concurrency`` nor ``max_rps`` is given.
    default_concurrency: ClassVar[int] = 8

    def __init__(
        self,
        *,
        max_rps: float | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        concurrency: int | None = None,
    ) -> None:
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency
        #: The clock and sleep every wait goes through (tests substitute a virtual clock).
        self._clock: Clock = time.monotonic
        self._sleep: Callable[[float], object] = time.sleep
        self._throttle = Throttle(max_rps)
        #: Budgets a request spends several units of (tokens per minute); `_request_cost` says how many.
        self._cost_pacers: list[Pacer] = []
        self._rng = random.Random()
        self._latency_ewma: float | None = None
        self._open_state(self.name)

    # -- the one hook ---------------------------------------------------------------------------
    @abstractmethod
    def _predict(self, image: LoadedImage) -> Prediction:
        """Send one validated image; return the mapped `Prediction` or raise `AzVisionError`."""

    async def _apredict(self, image: LoadedImage) -> Prediction:
        """Async form of `_predict`; the default runs it on the backend's worker threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), self._predict, image)

    def _load(self, image: ImageLike) -> LoadedImage:
        return load_image(image, self.image_limits)

    # -- single images --------------------------------------------------------------------------
    @property
    def max_rps(self) -> float | None:
        """The client-side request rate limit (``None``: unlimited)."""
        return self._throttle.max_rps

    def classify(self, image: ImageLike) -> Prediction:
        """Classify one image (path, bytes, file object, URL or PIL image), retrying what can be retried.

        Example:
            >>> # with azvision.create_classifier("onnx", model_path="export.zip") as clf:
            >>> #     clf.classify("cat.jpg").label
        """
        self._check_open()
        return self._send(self._load(image), None)

    async def aclassify(self, image: ImageLike) -> Prediction:
        """Async `classify`."""
        self._check_open()
        loop = asyncio.get_running_loop()
        loaded = await loop.run_in_executor(self._pool(), self._load, image)
        return await self._asend(loaded, None)

    def _request_cost(self, image: LoadedImage) -> float:
        """What one request costs against the deployment's second quota (tokens); 1 without one."""
        return 1.0

    def _state(self, loaded: LoadedImage, batch: BatchContext | None) -> RetryState:
        return self.retry.start(
            self._rng,
            clock=self._clock,
            throttle=self._throttle,
            pacers=self._throttle.pacers(batch.pacer if batch is not None else None),
            breaker=batch.breaker if batch is not None else None,
            costed=[(p, self._request_cost(loaded)) for p in self._cost_pacers],
            backend=self.name,
            source=loaded.source,
        )

    def _send(self, loaded: LoadedImage, batch: BatchContext | None) -> Prediction:
        """One image through the sync retry driver."""
        started = 0.0

        def attempt() -> Prediction:
            nonlocal started
            started = time.perf_counter()
            return self._predict(loaded)

        answer = call(
            attempt,
            self._state(loaded, batch),
            sleep=batch.sleep if batch is not None else self._sleep,
            on_error=lambda exc: self._annotate(exc, loaded),
        )
        return self._finish(answer, loaded, started)

    async def _asend(self, loaded: LoadedImage, batch: BatchContext | None) -> Prediction:
        """One image through the async retry driver."""
        started = 0.0

        async def attempt() -> Prediction:
            nonlocal started
            started = time.perf_counter()
            return await self._apredict(loaded)

        answer = await acall(
            attempt, self._state(loaded, batch), on_error=lambda exc: self._annotate(exc, loaded)
        )
        return self._finish(answer, loaded, started)

    def _finish(self, prediction: Prediction, loaded: LoadedImage, started: float) -> Prediction:
        self._throttle.succeeded()
        elapsed = time.perf_counter() - started
        self._latency_ewma = (
            elapsed if self._latency_ewma is None else 0.8 * self._latency_ewma + 0.2 * elapsed
        )
        update: dict[str, object] = {"latency_ms": round(elapsed * 1000, 3)}
        if prediction.source is None and loaded.source is not None:
            update["source"] = loaded.source
        if loaded.notes:
            update["notes"] = prediction.notes + loaded.notes
        if prediction.image_size is None and loaded.size is not None:
            update["image_size"] = loaded.size
        result = prediction.model_copy(update=update)
        return result.with_image(loaded.origin or loaded.data)

    def _secret_values(self) -> list[Secret]:
        """The credentials this backend holds: its own and its helpers' (auth objects) Secret attributes."""
        found: list[Secret] = []
        for value in vars(self).values():
            inner = vars(value).values() if hasattr(value, "__dict__") and not isinstance(value, type) else ()
            for candidate in (value, *inner):
                if isinstance(candidate, Secret) and candidate.get():
                    found.append(candidate)
        return found

    def _annotate(self, exc: AzVisionError, loaded: LoadedImage) -> None:
        if exc.source is None:
            exc.source = loaded.source
        # A service may quote the credential it received in its error text, raw, escaped or URL-encoded;
        # never pass that on, not even through the chained vendor exception a traceback would print.
        secrets = self._secret_values()
        if not secrets:
            return
        masked = redact(exc.message, secrets)
        if masked != exc.message:
            exc.message = masked
            exc.args = (masked,)
        chained: BaseException | None = exc.__cause__ or exc.__context__
        while chained is not None:
            shown = f"{chained}\n{chained.args!r}"
            if redact(shown, secrets) != shown:
                exc.__cause__ = None
                exc.__suppress_context__ = True
                break
            chained = chained.__cause__ or chained.__context__

    # -- batches --------------------------------------------------------------------------------
    def _concurrency_now(self, override: int | None, batch: BatchContext) -> int:
        if override is not None:
            return override
        if self.concurrency is not None:
            return self.concurrency
        latency = self._latency_ewma if self._latency_ewma is not None else 0.3
        rate = batch.max_rps or self._throttle.max_rps
        return auto_concurrency(rate, latency, default=self.default_concurrency)

    def _batch(self, max_rps: float | None) -> BatchContext:
        sleep = None if self._sleep is time.sleep else self._sleep
        return BatchContext(max_rps=max_rps, sleep=sleep, clock=self._clock)

    @staticmethod
    def _window(concurrency: int, batch: BatchContext, throttle: Throttle) -> int:
        # Read far enough ahead that one image waiting out a Retry-After does not stall the others:
        # about two seconds of traffic at the rate limit.
        rate = batch.max_rps or throttle.max_rps or 0.0
        return min(max(2 * concurrency, concurrency + int(2 * rate)), 512)

    def _item(self, image: ImageLike, batch: BatchContext) -> Prediction:
        with _batch_input(image, batch) as item:
            item.loaded = self._load(image)
            return self._send(item.loaded, batch)

    async def _aitem(self, image: ImageLike, batch: BatchContext) -> Prediction:
        with _batch_input(image, batch) as item:
            loop = asyncio.get_running_loop()
            item.loaded = await loop.run_in_executor(self._pool(), self._load, image)
            return await self._asend(item.loaded, batch)

    def classify_many(
        self,
        images: Iterable[ImageLike],
        *,
        concurrency: int | None = None,
        max_rps: float | None = None,
    ) -> Iterator[Prediction | AzVisionError]:
        """Classify many images: one outcome per input, in input order, streamed with bounded memory.

        A failed input yields its typed error in its place; the batch goes on. ``max_rps`` is this batch's
        own limit (overlapping batches on one client keep theirs; a 429 cools every one down). After three
        identical errors that no retry can fix (a wrong key or endpoint, an unknown model) the batch stops
        sending and answers every remaining input with that error (``stopped_batch`` is set on those).

        Example:
            >>> # for outcome in clf.classify_many(paths, max_rps=10):
            >>> #     print(outcome.label if isinstance(outcome, Prediction) else outcome)
        """
        self._check_open()
        batch = self._batch(max_rps)
        first = self._concurrency_now(concurrency, batch)
        return thread_map(
            images,
            lambda image: self._item(image, batch),
            concurrency=lambda: self._concurrency_now(concurrency, batch),
            window=self._window(first, batch, self._throttle),
            pool=self._pool(),
            stop=batch.stop,
        )

    async def aclassify_many(
        self,
        images: Iterable[ImageLike] | AsyncIterable[ImageLike],
        *,
        concurrency: int | None = None,
        max_rps: float | None = None,
    ) -> AsyncIterator[Prediction | AzVisionError]:
        """Async `classify_many`."""
        self._check_open()
        batch = self._batch(max_rps)
        first = self._concurrency_now(concurrency, batch)
        async for outcome in ordered_map(
            images,
            lambda image: self._aitem(image, batch),
            concurrency=lambda: self._concurrency_now(concurrency, batch),
            window=self._window(first, batch, self._throttle),
        ):
            yield outcome

    # -- lifecycle ------------------------------------------------------------------------------
    def _close_clients(self) -> None:
        """Release vendor clients; backends override."""

    def close(self) -> None:
        """Release connections and worker threads. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._close_clients()
        self._stop_pool()

    async def aclose(self) -> None:
        """Async `close`."""
        self.close()


class _BatchInput:
    """One input of a batch, once loaded (what its errors are named after)."""

    loaded: LoadedImage | None = None


@contextlib.contextmanager
def _batch_input(image: ImageLike, batch: BatchContext) -> Iterator[_BatchInput]:
    """Check the batch's breaker before an input is read, and name the input in any error it gets."""
    item = _BatchInput()
    try:
        batch.breaker.check(image if isinstance(image, str) else None)
        yield item
    except AzVisionError as exc:
        _name_source(exc, image, item.loaded)
        raise


def _name_source(exc: AzVisionError, image: ImageLike, loaded: LoadedImage | None) -> None:
    if exc.source is None:
        if loaded is not None and loaded.source is not None:
            exc.source = loaded.source
        elif isinstance(image, str):
            exc.source = image
