"""Pacing shared by the retry driver: a rate ``Pacer``, one client's ``Throttle`` (cool-down and the AIMD
learned rate), the ``Headroom`` a service reports before it throttles, and the batch ``Breaker``. Timing
decisions only, from an injectable clock; no I/O.

Example:
    >>> p = Pacer(10, clock=lambda: 0.0)
    >>> p.commit(p.earliest())
    0.0
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from ._errors import AuthenticationError, AzVisionError, BackendConnectionError, NotFoundError

__all__ = ["Breaker", "Clock", "Headroom", "Pacer", "Throttle"]

Clock = Callable[[], float]


class Pacer:
    """At most ``rate`` units per second, spaced evenly (a request is 1 unit; a token quota counts tokens).

    Example:
        >>> from azvision._retry import VirtualClock
        >>> clock = VirtualClock()
        >>> p = Pacer(10, clock=clock.now)
        >>> [p.commit(p.earliest()) for _ in range(3)]
        [0.0, 0.1, 0.2]
    """

    def __init__(self, rate: float, *, clock: Clock = time.monotonic) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"a rate limit must be a positive number, got {rate!r}")
        self.rate = rate
        self._clock = clock
        self._next = -math.inf
        self._lock = threading.Lock()

    def earliest(self) -> float:
        """The earliest moment the next unit may go (no reservation)."""
        return max(self._clock(), self._next)

    def commit(self, start: float, cost: float = 1.0) -> float:
        """Reserve ``cost`` units at ``start`` or the next free moment after it; returns that moment."""
        with self._lock:
            at = max(start, self._next)
            self._next = at + cost / self.rate
            return at

    def busy(self) -> bool:
        """True while callers are queued behind this pacer (it is what limits them)."""
        return self._next > self._clock()


class Throttle:
    """One client's view of the service, shared by every thread, task and batch using that client.

    * A 429 starts a cool-down: nobody sends until its ``Retry-After`` has passed (while the quota is
      unknown; once a rate is known, the rate is cut instead and only the throttled request waits).
    * ``max_rps`` is the client's own limit, shared by everything that uses the client.
    * Without ``max_rps`` the rate is learned by AIMD: the first 429 starts at the success rate of the last
      two seconds (1/s with no history) in slow start (×2 per second until the next 429), each later
      congestion signal cuts it to 85 %, and while requests queue behind it it grows by 5 % per second.
      All the 429s of requests sent before the last cut are one signal, so a burst cuts once.

    Example:
        >>> from azvision._retry import VirtualClock
        >>> clock = VirtualClock()
        >>> t = Throttle(clock=clock.now)
        >>> t.throttled(1.0, sent_at=0.0)
        >>> t.learned_rps, t.gate_until
        (1.0, 1.0)
    """

    WINDOW = 2.0
    MIN_RPS = 0.2
    START_RPS = 1.0
    CUT = 0.85
    GROWTH = 1.05
    SLOW_START_GROWTH = 2.0

    def __init__(self, max_rps: float | None = None, *, clock: Clock = time.monotonic) -> None:
        if max_rps is not None and not max_rps > 0:
            raise ValueError("max_rps must be positive")
        self.max_rps = max_rps
        self.clock = clock
        self.pacer = Pacer(max_rps, clock=clock) if max_rps else None
        self.learned_rps: float | None = None
        self.learned: Pacer | None = None
        self.gate_until = -math.inf
        self._cut_at = -math.inf
        self._slow_start = False
        self._lock = threading.Lock()
        self._successes: deque[float] = deque()

    def succeeded(self) -> None:
        """Record an answered request (feeds the learned rate)."""
        with self._lock:
            now = self.clock()
            self._successes.append(now)
            while self._successes and self._successes[0] < now - self.WINDOW:
                self._successes.popleft()
            learned = self.learned
            if learned is None or self.learned_rps is None or not learned.busy():
                return  # grow only while the learned rate is what holds requests back
            growth = self.SLOW_START_GROWTH if self._slow_start else self.GROWTH
            self.learned_rps *= growth ** (1.0 / self.learned_rps)
            learned.rate = self.learned_rps

    def counted(self, sent_at: float) -> bool:
        """Whether a 429 for a request sent at ``sent_at`` belongs to a burst a rate cut already answered.

        Such a request was sent at a rate the client has since lowered: its 429 is the client's own probing,
        not a sign that this input is failing.
        """
        with self._lock:
            return self.max_rps is None and sent_at < self._cut_at

    def throttled(self, seconds: float, *, sent_at: float, learn: bool = True) -> None:
        """A 429 for a request sent at ``sent_at``, told to wait ``seconds``."""
        with self._lock:
            now = self.clock()
            if not learn or self.max_rps is not None or self.learned_rps is None:
                self.gate_until = max(self.gate_until, now + seconds)
            if not learn or self.max_rps is not None or sent_at < self._cut_at:
                return  # a known limit, or a request of the burst already counted
            self._cut_at = now
            if self.learned_rps is None:
                recent = sum(1 for t in self._successes if t >= now - self.WINDOW)
                rate = recent / self.WINDOW if recent else self.START_RPS
                self._slow_start = True
            else:
                rate = self.learned_rps * self.CUT
                self._slow_start = False
            self.learned_rps = max(rate, self.MIN_RPS)
            if self.learned is None:
                self.learned = Pacer(self.learned_rps, clock=self.clock)
            self.learned.rate = self.learned_rps

    def pacers(self, batch: Pacer | None = None) -> list[Pacer]:
        """The pacers a request must pass: the batch's own limit (else the client's) and the learned rate."""
        own = batch or self.pacer
        if own is not None:
            return [own]
        return [self.learned] if self.learned is not None else []


class Headroom:
    """What is left of one quota, as the service's answers report it (``x-ratelimit-remaining-tokens``).

    `hold` reads one report and says how long to hold new sends, treating it as a 429 that has not
    happened yet (see `Throttle.throttled`):

    * a **known** quota (``limit``, per minute, in the report's units) is already kept by the client's own
      pacer, so only a report that would not cover ``need`` more units holds, until the rest refills;
      it means someone else spends the quota too;
    * an **unknown** one is a congestion signal for the learned rate once under ``FRACTION`` of the most
      ever reported (a fresh quota reports all of it), as ECN marks a packet before the queue overflows.

    A negative report (some gateways send -1) means "not known" and is ignored.

    Example:
        >>> known = Headroom(limit=600)  # 600 requests a minute: one refills in 0.1 s
        >>> known.hold(30, need=1), known.hold(0, need=1)
        (0.0, 0.1)
        >>> learning = Headroom()
        >>> learning.hold(600, need=1), learning.hold(30, need=1)
        (0.0, 0.1)
    """

    FRACTION = 0.1

    def __init__(self, limit: float | None = None) -> None:
        self.limit = limit
        self._most = 0.0
        self._lock = threading.Lock()

    def hold(self, remaining: float, *, need: float) -> float:
        """Seconds to hold new sends after a report of ``remaining`` units left (0: carry on)."""
        if not remaining >= 0 or math.isinf(remaining):
            return 0.0
        if self.limit is not None:
            return 0.0 if remaining >= need else (need - remaining) / (self.limit / 60.0)
        with self._lock:
            self._most = most = max(self._most, remaining)
        if most <= 0 or remaining >= self.FRACTION * most:
            return 0.0
        return need / (most / 60.0)


_FATAL = (AuthenticationError, NotFoundError)


class Breaker:
    """Stops a batch after ``threshold`` consecutive identical errors that no retry can fix.

    A wrong key (401/403), a wrong model or project (404), or an endpoint that cannot be reached at all
    (connection refused, a name that does not resolve, a TLS failure) would fail every input the same way;
    after the breaker trips, every input not yet answered gets that error without being sent.

    Example:
        >>> b = Breaker(threshold=2)
        >>> for _ in range(2):
        ...     b.record(AuthenticationError("access denied", status_code=401))
        >>> b.tripped is not None
        True
    """

    def __init__(self, threshold: int = 3) -> None:
        self.threshold = threshold
        self.tripped: AzVisionError | None = None
        self._key: tuple[object, ...] | None = None
        self._count = 0
        self._lock = threading.Lock()

    @staticmethod
    def _signature(error: AzVisionError) -> tuple[object, ...] | None:
        if isinstance(error, _FATAL):
            return (type(error), error.status_code, error.code)
        if isinstance(error, BackendConnectionError) and error.reason in ("refused", "dns", "tls"):
            return (type(error), error.reason)
        return None

    def record(self, error: AzVisionError | None) -> None:
        """Count an outcome (``None``: a success, which resets the count)."""
        with self._lock:
            key = None if error is None else self._signature(error)
            if key is None:
                self._key, self._count = None, 0
                return
            self._count = self._count + 1 if key == self._key else 1
            self._key = key
            if self._count >= self.threshold and self.tripped is None and error is not None:
                self.tripped = error

    def check(self, source: str | None) -> None:
        """Raise the tripping error (a copy naming ``source``) once the breaker has tripped."""
        tripped = self.tripped
        if tripped is None:
            return
        error = copy.copy(tripped)
        error.source = source
        error.stopped_batch = True
        raise error
