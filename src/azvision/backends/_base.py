"""What every backend shares: image loading, the retry loop, throttling, batches, sync/async, lifecycle.

A backend subclasses :class:`BaseBackend` and implements only :meth:`BaseBackend._predict` (one request for
one validated image, vendor errors already mapped at its choke point). Everything else lives here, once.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import ClassVar

from typing_extensions import Self

from .._batch import (
    RetryPolicy,
    RetryState,
    Throttle,
    auto_concurrency,
    ordered_map,
    run_async_iter,
    wait_before_retry,
)
from .._config import Secret, redact
from .._errors import AzVisionError, BackendTimeoutError
from .._images import ImageLike, ImageLimits, LoadedImage, load_image
from .._models import Prediction

__all__ = ["BaseBackend"]


class BaseBackend(ABC):
    """Shared machinery of all backends; see :class:`azvision.Classifier` for the public methods.

    Subclasses set ``name`` and ``image_limits`` and implement :meth:`_predict`.
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
        self._throttle = Throttle(max_rps)
        self._rng = random.Random()
        self._latency_ewma: float | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._closed = False

    # -- the one hook ---------------------------------------------------------------------------
    @abstractmethod
    def _predict(self, image: LoadedImage) -> Prediction:
        """Send one validated image; return the mapped :class:`Prediction` or raise :class:`AzVisionError`."""

    async def _apredict(self, image: LoadedImage) -> Prediction:
        """Async form of :meth:`_predict`; the default runs it on the backend's worker threads."""
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
        loaded = self._load(image)
        state = self.retry.start(self._rng)
        while True:
            time.sleep(self._slot_wait(state, loaded))
            started = time.perf_counter()
            try:
                return self._finish(self._predict(loaded), loaded, started)
            except AzVisionError as exc:
                self._annotate(exc, loaded)
                time.sleep(self._on_failure(state, exc))

    async def aclassify(self, image: ImageLike) -> Prediction:
        """Async :meth:`classify`."""
        self._check_open()
        loop = asyncio.get_running_loop()
        loaded = await loop.run_in_executor(self._pool(), self._load, image)
        state = self.retry.start(self._rng)
        while True:
            await asyncio.sleep(self._slot_wait(state, loaded))
            started = time.perf_counter()
            try:
                return self._finish(await self._apredict(loaded), loaded, started)
            except AzVisionError as exc:
                self._annotate(exc, loaded)
                await asyncio.sleep(self._on_failure(state, exc))

    def _slot_wait(self, state: RetryState, loaded: LoadedImage) -> float:
        """Seconds until this input may be sent; a timeout error if that is past its deadline."""
        wait = self._throttle.reserve()
        remaining = state.remaining()
        if remaining is not None and wait > remaining:
            raise BackendTimeoutError(
                f"gave up after {state.attempts} attempt(s): waiting {wait:.1f} s for the rate limit or a "
                f"server-requested cool-down would pass the {state.policy.deadline:.0f} s deadline",
                backend=self.name,
                source=loaded.source,
            )
        return wait

    def _on_failure(self, state: RetryState, exc: AzVisionError) -> float:
        return wait_before_retry(state, self._throttle, exc)

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
    def _concurrency_now(self, override: int | None) -> int:
        if override is not None:
            return override
        if self.concurrency is not None:
            return self.concurrency
        latency = self._latency_ewma if self._latency_ewma is not None else 0.3
        return auto_concurrency(self._throttle.max_rps, latency, default=self.default_concurrency)

    async def _classify_item(self, image: ImageLike) -> Prediction:
        try:
            return await self.aclassify(image)
        except AzVisionError as exc:
            if exc.source is None and isinstance(image, str):
                exc.source = image
            raise

    def classify_many(
        self,
        images: Iterable[ImageLike],
        *,
        concurrency: int | None = None,
        max_rps: float | None = None,
    ) -> Iterator[Prediction | AzVisionError]:
        """Classify many images: one outcome per input, in input order, streamed with bounded memory.

        A failed input yields its typed error in its place; the batch goes on.

        Example:
            >>> # for outcome in clf.classify_many(paths, max_rps=10):
            >>> #     print(outcome.label if isinstance(outcome, Prediction) else outcome)
        """
        self._check_open()
        return run_async_iter(lambda: self.aclassify_many(images, concurrency=concurrency, max_rps=max_rps))

    async def aclassify_many(
        self,
        images: Iterable[ImageLike] | AsyncIterable[ImageLike],
        *,
        concurrency: int | None = None,
        max_rps: float | None = None,
    ) -> AsyncIterator[Prediction | AzVisionError]:
        """Async :meth:`classify_many`."""
        self._check_open()
        previous = self._throttle
        if max_rps is not None:
            self._throttle = Throttle(max_rps)
        try:
            # Read far enough ahead that one image waiting out a Retry-After does not stall the
            # others: about two seconds of traffic at the rate limit.
            rate = self._throttle.max_rps or 0.0
            window = min(
                max(
                    2 * self._concurrency_now(concurrency), self._concurrency_now(concurrency) + int(2 * rate)
                ),
                512,
            )
            async for outcome in ordered_map(
                images,
                self._classify_item,
                concurrency=lambda: self._concurrency_now(concurrency),
                window=window,
            ):
                yield outcome
        finally:
            self._throttle = previous

    # -- lifecycle ------------------------------------------------------------------------------
    def _pool(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=64, thread_name_prefix=f"azvision-{self.name}"
                )
            return self._executor

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed")

    def _close_clients(self) -> None:
        """Release vendor clients; backends override."""

    def close(self) -> None:
        """Release connections and worker threads. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._close_clients()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
