"""A deployment's two Azure OpenAI limits: requests per minute and tokens per minute.

Azure checks RPM over short windows (RPM/60 requests a second) and charges TPM at admission by the
request's *estimate* — its prompt tokens plus ``max_tokens`` — not by what the answer used. Both are kept
here as token buckets per deployment: requests refill at RPM/60 a second with one second of burst,
tokens at TPM/60 a second with ten seconds of burst. A request is admitted only when both have room, and
then takes from both; otherwise the answer is a 429 with the wait until both would have room.

Example::

    quota = DeploymentQuota(rpm=60, tpm=None)
    assert quota.admit("gpt-4o", cost=100, now=0.0).wait == 0.0
    assert quota.admit("gpt-4o", cost=100, now=0.0).wait == 1.0
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Admission", "DeploymentQuota"]

_REQUEST_WINDOW_S = 1.0
_TOKEN_WINDOW_S = 10.0


@dataclass(frozen=True)
class Admission:
    """The quota's answer: ``wait`` 0 means admitted; the remaining counts go into response headers."""

    wait: float
    limited_by: str | None  # "requests" | "tokens" when refused
    remaining_requests: int | None
    remaining_tokens: int | None


class _Bucket:
    def __init__(self, per_minute: float, window: float, now: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * window)
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        # A request larger than the whole burst still gets in once the bucket is full.
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def per_minute_left(self) -> int:
        return max(0, int(self.level * 60.0 / (self.capacity / self.rate)))


class DeploymentQuota:
    """RPM and TPM buckets per deployment name; thread-safe. ``None`` disables a limit."""

    def __init__(
        self, *, rpm: float | None, tpm: float | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        for name, value in (("openai_rpm", rpm), ("openai_tpm", tpm)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive (or None for no limit)")
        self.rpm, self.tpm = rpm, tpm
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[_Bucket | None, _Bucket | None]] = {}

    @property
    def enabled(self) -> bool:
        """Whether any limit is set."""
        return self.rpm is not None or self.tpm is not None

    def reset(self) -> None:
        """Forget all buckets (every deployment starts full)."""
        with self._lock:
            self._buckets.clear()

    def admit(self, deployment: str, *, cost: float, now: float | None = None) -> Admission:
        """Take one request of ``cost`` estimated tokens from ``deployment``'s budgets, or say the wait."""
        with self._lock:
            at = self._clock() if now is None else now
            requests, tokens = self._buckets.get(deployment) or self._new(at)
            self._buckets[deployment] = (requests, tokens)
            waits: dict[str, float] = {}
            for name, bucket, amount in (("requests", requests, 1.0), ("tokens", tokens, cost)):
                if bucket is not None:
                    bucket.refill(at)
                    waits[name] = bucket.wait_for(amount)
            limited = max(waits, key=lambda name: waits[name]) if waits else None
            wait = waits[limited] if limited is not None else 0.0
            if wait <= 0.0:
                limited = None
                if requests is not None:
                    requests.level -= 1.0
                if tokens is not None:
                    tokens.level -= min(cost, tokens.capacity)
            return Admission(
                wait=wait,
                limited_by=limited,
                remaining_requests=requests.per_minute_left() if requests is not None else None,
                remaining_tokens=tokens.per_minute_left() if tokens is not None else None,
            )

    def _new(self, now: float) -> tuple[_Bucket | None, _Bucket | None]:
        requests = _Bucket(self.rpm, _REQUEST_WINDOW_S, now) if self.rpm is not None else None
        tokens = _Bucket(self.tpm, _TOKEN_WINDOW_S, now) if self.tpm is not None else None
        return requests, tokens
