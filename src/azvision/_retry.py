"""The one retry driver: a sans-I/O retry state and two thin drivers, sync and async.

Every call azvision makes to a service — a prediction, a training call, an upload batch, an export
download — goes through `call` or `acall`. The decisions (how long to wait for a send slot, whether
an error is retried and after how long, when the deadline ends it) are made by `RetryState`, which
does no I/O: it reads an injectable clock and returns seconds. The drivers only sleep and call, so every
timing rule is tested in virtual time.

* `RetryPolicy` — attempts, back-off with jitter, ``Retry-After`` honoured, a total deadline.
* `Pacer` — at most ``rate`` units per second (requests, or tokens for a per-minute token quota).
* `Throttle` — one client's view of the service: a cool-down after a 429 and, without a known
  quota, a rate learned by AIMD (a burst of 429s is one congestion signal, as in TCP).
* `Breaker` — stops a batch after a few identical errors that no retry can fix (a wrong key, a
  wrong endpoint).
* `PollSchedule` and `poll` — waiting for a long-running job, with a deadline.

Example:
    >>> clock = VirtualClock()
    >>> state = RetryPolicy(backoff_base=1.0).start(clock=clock.now)
    >>> from azvision._errors import ServiceError
    >>> result = call(lambda: "ok", state, sleep=clock.sleep)
    >>> result, clock.now()
    ('ok', 0.0)
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypedDict, TypeVar

from typing_extensions import Unpack

from ._errors import (
    AzVisionError,
    BackendTimeoutError,
    RateLimitError,
)
from ._pacing import Breaker, Clock, Pacer, Throttle

__all__ = [
    "Breaker",
    "Clock",
    "Pacer",
    "PollSchedule",
    "RetryContext",
    "RetryPolicy",
    "RetryState",
    "Throttle",
    "VirtualClock",
    "acall",
    "attempt_cap",
    "call",
    "poll",
]

T = TypeVar("T")

#: While set, an input makes at most this many attempts, whatever its policy: a `Fallback` sets it around
#: a member that has another member behind it, so that the input moves on instead of sitting out retries.
attempt_cap: ContextVar[int | None] = ContextVar("azvision_attempt_cap", default=None)


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

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """The wait after failed attempt number ``attempt`` (1-based) when the server named none.

        "Equal jitter": never zero, never synchronised across clients.

        Example:
            >>> 0.125 <= RetryPolicy().backoff(1, random.Random(0)) <= 0.25
            True
        """
        cap = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return rng.uniform(cap / 2, cap)

    def start(self, rng: random.Random | None = None, **context: Unpack[RetryContext]) -> RetryState:
        """A fresh state for one input (its deadline starts now); `context` is described in `RetryContext`.

        Example:
            >>> RetryPolicy().start(backend="onnx").attempts
            0
        """
        return RetryState(self, rng or random.Random(), **context)


class RetryContext(TypedDict, total=False):
    """What one input's retries read and report, all optional (keywords of `RetryPolicy.start`).

    `clock` (default `time.monotonic`) times the deadline and the slots; `throttle` is the client's view
    of the service; `pacers` count one unit per request; `costed` pairs a pacer with what one request
    costs it (a tokens-per-minute budget and the request's estimated tokens); `breaker` stops a batch
    after repeated identical errors; `backend` and `source` name the errors raised.
    """

    clock: Clock
    throttle: Throttle | None
    pacers: Sequence[Pacer]
    breaker: Breaker | None
    costed: Sequence[tuple[Pacer, float]]
    backend: str | None
    source: str | None


class VirtualClock:
    """A clock for tests and simulations: ``sleep`` advances ``now`` instead of waiting.

    Example:
        >>> c = VirtualClock()
        >>> c.sleep(1.5); c.now()
        1.5
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        """The current virtual time."""
        return self._now

    def sleep(self, seconds: float) -> None:
        """Advance the clock."""
        with self._lock:
            self._now += max(0.0, seconds)

    async def asleep(self, seconds: float) -> None:
        """Advance the clock, and let other tasks run."""
        self.sleep(seconds)
        await asyncio.sleep(0)


class RetryState:
    """One input's attempts: what to wait before sending, and what to do after a failure. No I/O."""

    #: Slots are claimed at most this many seconds ahead; a caller further back looks again after it.
    HORIZON = 0.5

    def __init__(self, policy: RetryPolicy, rng: random.Random, **context: Unpack[RetryContext]) -> None:
        self.policy = policy
        self.rng = rng
        self.clock: Clock = context.get("clock", time.monotonic)
        self.throttle = context.get("throttle")
        self.pacers = list(context.get("pacers", ()))
        self.breaker = context.get("breaker")
        self.costed = [*((p, 1.0) for p in self.pacers), *context.get("costed", ())]
        self.backend = context.get("backend")
        self.source = context.get("source")
        self.attempts = 0
        self.started = self.clock()
        self.sent_at = self.started
        self._claimed = False

    def remaining(self) -> float | None:
        """Seconds left before the deadline (``None`` without one)."""
        if self.policy.deadline is None:
            return None
        return self.policy.deadline - (self.clock() - self.started)

    def send_wait(self) -> float:
        """Claim the next send slot; returns the seconds to wait for it.

        Raises `BackendTimeoutError` — claiming nothing — when the wait would pass the deadline,
        and the breaker's error once it has tripped.
        """
        if self.breaker is not None:
            self.breaker.check(self.source)
        now = self.clock()
        start = now
        if self.throttle is not None:
            start = max(start, self.throttle.gate_until)
        # a cost above what a pacer allows per second still goes, alone in its slot
        start = max([start, *(p.earliest() for p, _ in self.costed)])
        remaining = self.remaining()
        if remaining is not None and start - now > remaining:
            raise BackendTimeoutError(
                f"gave up after {self.attempts} attempt(s): waiting {start - now:.1f} s for the rate limit "
                f"or a server-requested cool-down would pass the {self.policy.deadline:.0f} s deadline",
                backend=self.backend,
                source=self.source,
            )
        if start - now > self.HORIZON:
            # Claim no slot far ahead: a learned rate may rise meanwhile, and a slot claimed at today's
            # rate would hold the request back at it. Look again shortly.
            self._claimed = False
            return self.HORIZON
        for pacer, cost in self.costed:
            start = max(start, pacer.commit(start, cost))
        self._claimed = True
        return max(0.0, start - now)

    def clear_to_send(self) -> bool:
        """After the wait: still clear (a slot claimed, no cool-down begun meanwhile)? Marks the send time."""
        if not self._claimed:
            return False
        now = self.clock()
        if self.throttle is not None and self.throttle.gate_until > now:
            return False
        self.sent_at = now
        return True

    def succeeded(self) -> None:
        """The attempt was answered."""
        if self.throttle is not None:
            self.throttle.succeeded()
        if self.breaker is not None:
            self.breaker.record(None)

    def failed(self, error: AzVisionError) -> float:
        """Seconds to wait before the next attempt; raises ``error`` when it must not be retried."""
        self.attempts += 1
        if self.breaker is not None:
            self.breaker.record(error)
        if self.breaker is not None and self.breaker.tripped is not None:
            raise error
        throttle = self.throttle
        learning = isinstance(error, RateLimitError) and throttle is not None and not self._has_own_limit()
        if learning and throttle is not None and throttle.counted(self.sent_at):
            # A 429 of a burst the learned rate was already cut for is the client probing the quota (as TCP
            # does), not this input failing: it does not use up an attempt. The deadline still bounds it.
            self.attempts -= 1
        cap = attempt_cap.get()
        limit = self.policy.max_attempts if cap is None else min(cap, self.policy.max_attempts)
        if not error.retryable or self.attempts >= limit:
            raise error
        if error.retry_after is not None:
            delay = error.retry_after * (1.0 + self.rng.uniform(0.0, self.policy.retry_after_jitter))
            delay = max(delay, 0.01)
        else:
            delay = self.policy.backoff(self.attempts, self.rng)
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
        if isinstance(error, RateLimitError) and self.throttle is not None:
            # A 429 is about the quota everyone shares; any other retry waits only for its own request.
            self.throttle.throttled(delay, sent_at=self.sent_at, learn=not self._has_own_limit())
        return delay

    def _has_own_limit(self) -> bool:
        return bool(self.pacers) and (self.throttle is None or self.pacers != [self.throttle.learned])


def call(
    fn: Callable[[], T],
    state: RetryState,
    *,
    sleep: Callable[[float], object] = time.sleep,
    on_error: Callable[[AzVisionError], object] | None = None,
) -> T:
    """Call ``fn`` until it answers or ``state`` gives up (the sync driver).

    ``on_error`` sees every failed attempt's error first (to add context, redact secrets).

    Example:
        >>> call(lambda: 42, RetryPolicy().start())
        42
    """
    while True:
        while True:
            wait = state.send_wait()
            if wait > 0:
                sleep(wait)
            if state.clear_to_send():
                break
        try:
            result = fn()
        except AzVisionError as exc:
            if on_error is not None:
                on_error(exc)
            sleep(state.failed(exc))
            continue
        state.succeeded()
        return result


async def acall(
    fn: Callable[[], Awaitable[T]],
    state: RetryState,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    on_error: Callable[[AzVisionError], object] | None = None,
) -> T:
    """Async `call`.

    Example:
        >>> async def answer() -> int:
        ...     return 42
        >>> asyncio.run(acall(answer, RetryPolicy().start()))
        42
    """
    while True:
        while True:
            wait = state.send_wait()
            if wait > 0:
                await sleep(wait)
            if state.clear_to_send():
                break
        try:
            result = await fn()
        except AzVisionError as exc:
            if on_error is not None:
                on_error(exc)
            await sleep(state.failed(exc))
            continue
        state.succeeded()
        return result


class PollSchedule:
    """When to look again at a long-running job: ``interval`` growing by ``growth`` up to ``max_interval``.

    Example:
        >>> clock = VirtualClock()
        >>> s = PollSchedule(10.0, interval=1.0, growth=2.0, clock=clock.now)
        >>> [s.next_wait() for _ in range(3)]
        [1.0, 2.0, 4.0]
    """

    def __init__(
        self,
        timeout: float,
        *,
        interval: float = 0.5,
        growth: float = 1.0,
        max_interval: float = 10.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.clock = clock
        self.deadline = clock() + timeout
        self._interval = interval
        self._growth = growth
        self._max = max(max_interval, interval)

    def next_wait(self) -> float | None:
        """Seconds until the next look; ``None`` once the deadline has passed."""
        remaining = self.deadline - self.clock()
        if remaining <= 0:
            return None
        wait = min(self._interval, remaining)
        self._interval = min(self._interval * self._growth, self._max)
        return wait


def poll(
    step: Callable[[], T | None],
    schedule: PollSchedule,
    *,
    on_timeout: Callable[[], AzVisionError],
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Run ``step`` until it returns a value (it raises to fail); ``on_timeout()`` is raised at the deadline.

    Example:
        >>> clock = VirtualClock()
        >>> looks = iter([None, None, "done"])
        >>> poll(lambda: next(looks), PollSchedule(60, clock=clock.now), sleep=clock.sleep,
        ...      on_timeout=lambda: BackendTimeoutError("late"))
        'done'
    """
    while True:
        found = step()
        if found is not None:
            return found
        wait = schedule.next_wait()
        if wait is None:
            raise on_timeout()
        sleep(wait)
