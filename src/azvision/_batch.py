"""The one retry layer and the one batch engine, shared by every backend.

* :class:`RetryPolicy` — honours ``Retry-After``/``retry-after-ms`` on 429 and 503, backs off with jitter on
  5xx and dropped connections, never retries earlier than the server asked, and stops at a total deadline.
* :class:`Throttle` — a client-side rate limit (``max_rps``) plus a shared "cool-down" gate: when one
  request is told to wait, every request waits, so a batch does not turn one 429 into a storm.
* :func:`ordered_map` — bounded-concurrency, in-order streaming with bounded memory: at most ``window``
  inputs are read ahead of the one being yielded, so an iterator of a million paths is never materialised.

Example:
    >>> import asyncio
    >>> async def double(x: int) -> int:
    ...     return 2 * x
    >>> async def main() -> list[object]:
    ...     return [r async for r in ordered_map(range(5), double, concurrency=2)]
    >>> asyncio.run(main())
    [0, 2, 4, 6, 8]
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from ._errors import AzVisionError, BackendTimeoutError, RateLimitError

__all__ = [
    "RetryPolicy",
    "RetryState",
    "Throttle",
    "aiter_any",
    "ordered_map",
    "run_async_iter",
    "wait_before_retry",
]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class RetryPolicy:
    """How failed calls are retried. The only retry layer: vendor clients' own retries are switched off.

    Example:
        >>> RetryPolicy(max_attempts=1).max_attempts  # never retry
        1
    """

    max_attempts: int = 6
    backoff_base: float = 0.25
    backoff_max: float = 20.0
    #: Total seconds one input may take, retries and waits included.
    deadline: float | None = 120.0
    #: Extra random wait on top of a server's Retry-After, as a fraction of it (spreads the herd).
    retry_after_jitter: float = 0.1

    def start(self, rng: random.Random | None = None) -> RetryState:
        """A fresh state for one input."""
        return RetryState(self, rng or random.Random())


class RetryState:
    """Tracks one input's attempts; :meth:`next_delay` says how long to wait or re-raises."""

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self.policy = policy
        self.rng = rng
        self.attempts = 0
        self.started = time.monotonic()

    def remaining(self) -> float | None:
        """Seconds left before the deadline (``None`` without one)."""
        if self.policy.deadline is None:
            return None
        return self.policy.deadline - (time.monotonic() - self.started)

    def next_delay(self, error: AzVisionError) -> float:
        """Seconds to wait before the next attempt; raises ``error`` when it must not be retried."""
        self.attempts += 1
        if not error.retryable or self.attempts >= self.policy.max_attempts:
            raise error
        if error.retry_after is not None:
            delay = error.retry_after * (1.0 + self.rng.uniform(0.0, self.policy.retry_after_jitter))
            delay = max(delay, 0.01)
        else:
            cap = min(self.policy.backoff_max, self.policy.backoff_base * 2 ** (self.attempts - 1))
            delay = self.rng.uniform(cap / 2, cap)  # "equal jitter": never zero, never synchronised
        remaining = self.remaining()
        if remaining is not None and delay >= remaining:
            if isinstance(error, BackendTimeoutError):
                raise error
            raise BackendTimeoutError(
                f"gave up after {self.attempts} attempt(s): the {self.policy.deadline:.0f} s deadline "
                f"would pass before the next retry; last error: {error}",
                status_code=error.status_code,
                code=error.code,
                backend=error.backend,
                source=error.source,
            ) from error
        return delay


class Throttle:
    """Client-side pacing shared by all threads and tasks of one backend.

    ``reserve()`` returns how long the caller must sleep before sending. It spaces requests at most
    ``max_rps`` per second and holds everybody back while a server-requested cool-down runs. Without a
    ``max_rps`` it learns one: on the first 429 it paces at the success rate of the last two seconds,
    slows by 5 % on each later 429 and speeds up by 0.2 % per success — so a batch settles just under an
    unknown quota instead of running stop-and-go.

    Example:
        >>> t = Throttle(max_rps=None)
        >>> t.reserve()
        0.0
    """

    _WINDOW = 2.0

    def __init__(self, max_rps: float | None = None) -> None:
        if max_rps is not None and max_rps <= 0:
            raise ValueError("max_rps must be positive")
        self.max_rps = max_rps
        #: The learned rate when no ``max_rps`` was given (``None`` until the first 429).
        self.learned_rps: float | None = None
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._gate_until = 0.0
        self._successes: deque[float] = deque()

    def _rate(self) -> float | None:
        return self.max_rps or self.learned_rps

    def reserve(self) -> float:
        """Claim the next send slot; returns the seconds to wait for it."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._gate_until)
            rate = self._rate()
            if rate:
                start = max(start, self._next_slot)
                self._next_slot = start + 1.0 / rate
            return start - now

    def succeeded(self) -> None:
        """Record an answered request (feeds the learned rate)."""
        with self._lock:
            now = time.monotonic()
            self._successes.append(now)
            while self._successes and self._successes[0] < now - self._WINDOW:
                self._successes.popleft()
            if self.learned_rps is not None:
                self.learned_rps *= 1.002

    def throttled(self, seconds: float) -> None:
        """A 429: hold every caller back for ``seconds`` and, without ``max_rps``, slow the learned rate."""
        with self._lock:
            now = time.monotonic()
            self._gate_until = max(self._gate_until, now + seconds)
            if self.max_rps is not None:
                return
            if self.learned_rps is None:
                recent = sum(1 for t in self._successes if t >= now - self._WINDOW)
                if recent:  # no history yet: just wait as told, and learn from the next 429
                    self.learned_rps = max(recent / self._WINDOW, 0.5)
            else:
                self.learned_rps = max(self.learned_rps * 0.95, 0.5)


def wait_before_retry(state: RetryState, throttle: Throttle, error: AzVisionError) -> float:
    """Seconds to wait before retrying ``error`` (re-raises it when it must not be retried).

    A 429 is about the quota everyone shares, so it holds the whole batch back through ``throttle``;
    any other retry (a 503 with Retry-After, a dropped connection) waits only for its own request.
    """
    delay = state.next_delay(error)
    if isinstance(error, RateLimitError):
        throttle.throttled(delay)
    return delay


async def ordered_map(
    items: Iterable[T] | AsyncIterable[T],
    fn: Callable[[T], Awaitable[R]],
    *,
    concurrency: int | Callable[[], int],
    window: int | None = None,
    on_error: Callable[[T, BaseException], R | AzVisionError] | None = None,
) -> AsyncIterator[R | AzVisionError]:
    """Apply ``fn`` to every item with bounded concurrency; yield results in input order.

    A failing item yields its :class:`AzVisionError` in its place (other exceptions are wrapped into one,
    chained), so the output always has exactly one entry per input. ``concurrency`` may be a callable,
    read before each start, for adaptive sizing.
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
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if on_error is not None:
                return on_error(item, exc)
            wrapped = AzVisionError(f"unexpected {type(exc).__name__}: {exc}")
            wrapped.__cause__ = exc
            return wrapped
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


_DONE = object()


class _Fatal:
    """An exception that ended the async side (not an item's outcome): re-raised to the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def run_async_iter(make: Callable[[], AsyncIterator[R]], *, buffer: int = 64) -> Iterator[R]:
    """Drive an async iterator on a private event loop thread and stream its items to a sync caller.

    Closing the returned generator (``break``, Ctrl-C, garbage collection) cancels the async side.
    """
    out: queue.Queue[object] = queue.Queue(maxsize=max(1, buffer))
    stop = threading.Event()
    loop = asyncio.new_event_loop()
    task_holder: list[asyncio.Task[None]] = []

    async def pump() -> None:
        agen = make()
        try:
            async for item in agen:
                while not stop.is_set():
                    try:
                        out.put_nowait(item)
                        break
                    except queue.Full:
                        await asyncio.sleep(0.005)
                if stop.is_set():
                    return
        except BaseException as exc:  # handed to the consumer, who re-raises it
            out.put(_Fatal(exc))
        finally:
            with contextlib.suppress(Exception):
                await agen.aclose()  # type: ignore[attr-defined]
            out.put(_DONE)

    def runner() -> None:
        asyncio.set_event_loop(loop)
        try:
            task = loop.create_task(pump())
            task_holder.append(task)
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(task)
        except BaseException as exc:  # KeyboardInterrupt/SystemExit escape asyncio and stop the loop
            out.put(_Fatal(exc))
            # Finish the orphaned tasks here; left to the garbage collector they would run their
            # cleanup on a closed loop at some random later moment.
            leftovers = asyncio.all_tasks(loop)
            for leftover in leftovers:
                leftover.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        finally:
            out.put(_DONE)
            with contextlib.suppress(BaseException):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=runner, name="azvision-batch", daemon=True)
    thread.start()
    try:
        while True:
            got = out.get()
            if got is _DONE:
                return
            if isinstance(got, _Fatal):
                raise got.exc
            yield got  # type: ignore[misc]
    finally:
        stop.set()
        if thread.is_alive() and task_holder:
            with contextlib.suppress(RuntimeError):  # the loop may close between the check and the call
                loop.call_soon_threadsafe(task_holder[0].cancel)
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                out.get(timeout=0.05)
        thread.join()


def auto_concurrency(max_rps: float | None, latency_s: float, *, default: int, cap: int = 64) -> int:
    """Workers needed to keep ``max_rps`` busy at the observed latency (Little's law, +25 % headroom).

    Example:
        >>> auto_concurrency(20, 0.2, default=8)
        6
    """
    if not max_rps:
        return default
    return max(1, min(cap, math.ceil(max_rps * max(latency_s, 0.001) * 1.25) + 1))
