"""The one batch engine: in-order streaming with bounded concurrency and memory, sync and async.

* [thread_map][azvision._batch.thread_map] — the sync path: a plain thread pool, no event loop.
* [ordered_map][azvision._batch.ordered_map] — the async path, for ``aclassify_many``.
* [BatchContext][azvision._batch.BatchContext] — what belongs to one batch: its own rate limit, its
  breaker, and the stop signal that ends its waits when the consumer goes away.

Both maps read at most ``window`` inputs ahead of the one being yielded (an iterator of a million paths is
never materialised), answer every input in its place (a failing item yields its
[AzVisionError][azvision.AzVisionError]) and stop their work when the caller stops reading.

Example:
    >>> list(thread_map(range(5), lambda x: 2 * x, concurrency=2))
    [0, 2, 4, 6, 8]
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from ._errors import AzVisionError
from ._retry import Breaker, Pacer

__all__ = [
    "BatchContext",
    "BatchStopped",
    "aiter_any",
    "auto_concurrency",
    "ordered_map",
    "thread_map",
]

T = TypeVar("T")
R = TypeVar("R")


class BatchStopped(BaseException):
    """Raised inside a batch's workers once its consumer has gone away (not an input's outcome)."""


class BatchContext:
    """What one batch owns: its ``max_rps`` (the client's learned view of the service stays shared), the
    breaker that stops it after repeated identical errors, and a stop signal for its waits.

    Example:
        >>> ctx = BatchContext(max_rps=5)
        >>> ctx.pacer.rate
        5
    """

    def __init__(
        self,
        *,
        max_rps: float | None = None,
        breaker: Breaker | None = None,
        sleep: Callable[[float], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_rps = max_rps
        self.pacer = Pacer(max_rps, clock=clock) if max_rps is not None else None
        self.breaker = breaker if breaker is not None else Breaker()
        self.stop = threading.Event()
        self._sleep = sleep

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, ending early with [BatchStopped][azvision._batch.BatchStopped] on stop."""
        if self._sleep is not None:
            self._sleep(seconds)
            stopped = self.stop.is_set()
        else:
            stopped = self.stop.wait(seconds)
        if stopped:
            raise BatchStopped


def _wrap(exc: Exception) -> AzVisionError:
    wrapped = AzVisionError(f"unexpected {type(exc).__name__}: {exc}")
    wrapped.__cause__ = exc
    return wrapped


def thread_map(
    items: Iterable[T],
    fn: Callable[[T], R],
    *,
    concurrency: int | Callable[[], int],
    window: int | None = None,
    pool: ThreadPoolExecutor | None = None,
    stop: threading.Event | None = None,
) -> Iterator[R | AzVisionError]:
    """Apply ``fn`` to every item on worker threads; yield outcomes in input order.

    At most ``concurrency`` items run at once (a callable is read before each start), and at most
    ``window`` are read ahead. Work goes on between ``next()`` calls: each finished item starts the next.
    A ``KeyboardInterrupt`` in a worker reaches the caller; closing the iterator (``break``, Ctrl-C,
    garbage collection) sets ``stop`` and starts nothing more.

    Example:
        >>> list(thread_map(["a", "b"], str.upper, concurrency=4))
        ['A', 'B']
    """
    limit = concurrency if callable(concurrency) else (lambda: concurrency)
    read_ahead = window or max(2 * limit(), 8)
    own_pool = pool is None
    workers = pool or ThreadPoolExecutor(max_workers=max(1, min(64, limit())), thread_name_prefix="azvision")
    stopped = stop or threading.Event()
    lock = threading.Lock()
    waiting: deque[tuple[T, Future[R | AzVisionError]]] = deque()
    running = 0

    def run(item: T, future: Future[R | AzVisionError]) -> None:
        nonlocal running
        try:
            future.set_result(fn(item))
        except AzVisionError as exc:
            future.set_result(exc)
        except Exception as exc:
            future.set_result(_wrap(exc))
        except BaseException as exc:  # KeyboardInterrupt, BatchStopped: handed to the consumer
            future.set_exception(exc)
        finally:
            with lock:
                running -= 1
            start_more()

    def start_more() -> None:
        nonlocal running
        while True:
            with lock:
                if stopped.is_set() or not waiting or running >= max(1, limit()):
                    return
                item, future = waiting.popleft()
                running += 1
            try:
                workers.submit(run, item, future)
            except RuntimeError:  # the pool was shut down under us: the batch is over
                with lock:
                    running -= 1
                return

    slots: deque[Future[R | AzVisionError]] = deque()
    iterator = iter(items)
    exhausted = False
    try:
        while True:
            while not exhausted and len(slots) < read_ahead:
                try:
                    item = next(iterator)
                except StopIteration:
                    exhausted = True
                    break
                future: Future[R | AzVisionError] = Future()
                with lock:
                    waiting.append((item, future))
                slots.append(future)
            start_more()
            if not slots:
                return
            yield slots.popleft().result()
    finally:
        stopped.set()
        with lock:
            waiting.clear()
        if own_pool:
            workers.shutdown(wait=False, cancel_futures=True)


async def ordered_map(
    items: Iterable[T] | AsyncIterable[T],
    fn: Callable[[T], Awaitable[R]],
    *,
    concurrency: int | Callable[[], int],
    window: int | None = None,
) -> AsyncIterator[R | AzVisionError]:
    """Async form of [thread_map][azvision._batch.thread_map]: ``fn`` is a coroutine function.

    Example:
        >>> async def double(x: int) -> int:
        ...     return 2 * x
        >>> async def main() -> list[object]:
        ...     return [r async for r in ordered_map(range(5), double, concurrency=2)]
        >>> asyncio.run(main())
        [0, 2, 4, 6, 8]
    """
    limit = concurrency if callable(concurrency) else (lambda: concurrency)
    read_ahead = window or max(2 * limit(), 8)
    running = 0
    wake = asyncio.Event()

    async def run_one(item: T) -> R | AzVisionError:
        nonlocal running
        while running >= max(1, limit()):
            wake.clear()
            await wake.wait()
        running += 1
        try:
            return await fn(item)
        except AzVisionError as exc:
            return exc
        except Exception as exc:
            return _wrap(exc)
        finally:
            running -= 1
            wake.set()

    pending: deque[asyncio.Task[R | AzVisionError]] = deque()
    iterator = aiter_any(items)
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < read_ahead:
                try:
                    item = await anext(iterator)
                except StopAsyncIteration:
                    exhausted = True
                    break
                pending.append(asyncio.ensure_future(run_one(item)))
            if not pending:
                return
            yield await pending.popleft()
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


async def aiter_any(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    """Iterate a sync or async iterable asynchronously."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


def auto_concurrency(max_rps: float | None, latency_s: float, *, default: int, cap: int = 64) -> int:
    """Workers needed to keep ``max_rps`` busy at the observed latency (Little's law, +25 % headroom).

    Example:
        >>> auto_concurrency(20, 0.2, default=8)
        6
    """
    if not max_rps:
        return default
    return max(1, min(cap, math.ceil(max_rps * max(latency_s, 0.001) * 1.25) + 1))
