"""`Fallback`: the next backend when one fails, and a cool-down (that ends) for one that keeps failing."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._errors import AzVisionError, ConfigurationError, ServiceError
from .._models import Prediction
from .._pacing import Clock
from .._protocol import Classifier
from .._retry import attempt_cap
from ._base import Router, Steps, add_notes
from ._labels import LabelMapping, SharedLabels
from ._policy import describe, moves_on

__all__ = ["Fallback", "MemberHealth"]

Verdict = Literal["try", "probe", "skip"]


@dataclass
class MemberHealth:
    """One member's state: consecutive failures, and the end of its cool-down when it is cooling down.

    Closed (``cooling_until is None``): it gets every input. Open (now < ``cooling_until``): skipped.
    Half-open (the cool-down has ended): one input probes it; success closes it, failure opens it again.
    """

    failures: int = 0
    cooling_until: float | None = None
    probing: bool = False
    last_error: str | None = None


class Fallback(Router):
    """Ask the first member; on a service, connection, timeout or rate-limit error, the next one.

    A member with another member behind it makes ``1 + retries`` attempts (default one: the next member
    answers now rather than after this one's back-off or ``Retry-After`` waits); ``retries=None`` leaves
    each member its own `RetryPolicy`. The last member always keeps its own. A bad image
    (`InvalidImageError`), a refused key (`AuthenticationError`), an unknown project or deployment
    (`NotFoundError`) or a wrong setting (`ConfigurationError`) never moves on: it is raised at once, as
    the next member would fail the same way or hide a mistake that stays.

    After ``cooldown_after`` consecutive failures a member cools down for ``cooldown`` seconds (skipped,
    so a dead primary costs nothing); a ``Retry-After`` (429, 503) cools that member alone for at least as
    long, while the next member is asked at once. When the cool-down ends, one input probes the member
    (half-open): an answer brings it back, a failure starts a new cool-down. When every member is
    cooling down the input fails at once with a `ServiceError` whose ``retry_after`` says when the first
    one is back. ``clock`` (default `time.monotonic`) is injectable for tests. Members must answer in the
    same labels, checked as a `Cascade` checks its stages (``label_map``, ``labels``).

    The error of an input every member failed is the last member's own (with its own ``retry_after``).
    `Prediction.notes` says which members failed first and why.

    Example:
        >>> from azvision import Fallback, CustomVisionBackend
        >>> primary = CustomVisionBackend()  # doctest: +SKIP
        >>> secondary = CustomVisionBackend(endpoint="https://westeurope...", key=...)  # doctest: +SKIP
        >>> clf = Fallback([primary, secondary], cooldown_after=3, cooldown=30)  # doctest: +SKIP
        >>> clf.classify("cat.jpg").notes  # doctest: +SKIP
        ('fallback: custom_vision failed (ServiceError, HTTP 503)', 'fallback: answered by custom_vision@2')
    """

    kind = "fallback"

    def __init__(
        self,
        members: Sequence[Classifier],
        *,
        cooldown_after: int = 3,
        cooldown: float = 30.0,
        clock: Clock | None = None,
        retries: int | None = 0,
        label_map: LabelMapping | None = None,
        labels: Sequence[str] | None = None,
        concurrency: int | None = None,
    ) -> None:
        super().__init__(members, concurrency=concurrency)
        if retries is not None and retries < 0:
            raise ConfigurationError(f"retries must be 0 or more (or None), got {retries}")
        #: Retries a member with another member behind it makes before the input moves on (``None``: its
        #: own policy's). The last member always keeps its own policy.
        self.retries = retries
        self._labels = SharedLabels("fallback", self.member_names, self.members, label_map, labels)
        if cooldown_after < 1:
            raise ConfigurationError(f"cooldown_after must be at least 1, got {cooldown_after}")
        if cooldown < 0:
            raise ConfigurationError(f"cooldown must be 0 or more seconds, got {cooldown}")
        self.cooldown_after = cooldown_after
        self.cooldown = float(cooldown)
        self._clock: Clock = clock or time.monotonic
        self._health = [MemberHealth() for _ in self.members]
        self._lock = threading.Lock()

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The members' shared label space, when one says (a `Cascade` checks it)."""
        return self._labels.labels

    def _settings(self) -> dict[str, Any]:
        return self._labels.settings()

    def health(self) -> list[MemberHealth]:
        """A copy of every member's state, in member order."""
        with self._lock:
            return [MemberHealth(**vars(h)) for h in self._health]

    @contextlib.contextmanager
    def _calling(self, index: int) -> Iterator[object]:
        if self.retries is None or index == len(self.members) - 1:
            yield None
            return
        outer = attempt_cap.get()  # a fallback around this one may cap lower
        token = attempt_cap.set(min(1 + self.retries, outer if outer is not None else 1 + self.retries))
        try:
            yield None
        finally:
            attempt_cap.reset(token)

    # -- the circuit --------------------------------------------------------------------------------
    def _verdict(self, index: int) -> Verdict:
        with self._lock:
            health = self._health[index]
            if health.cooling_until is None:
                return "try"
            if self._clock() < health.cooling_until or health.probing:
                return "skip"
            health.probing = True
            return "probe"

    def _succeeded(self, index: int) -> None:
        with self._lock:
            self._health[index] = MemberHealth()

    def _failed(self, index: int, error: AzVisionError, probe: bool) -> None:
        now = self._clock()
        with self._lock:
            health = self._health[index]
            health.failures += 1
            health.last_error = describe(error)
            until = health.cooling_until if health.cooling_until is not None and not probe else None
            if probe or health.failures >= self.cooldown_after:
                until = max(until or now, now + self.cooldown)
            if error.retry_after is not None:  # a 429 or 503 said when: not before that
                until = max(until or now, now + error.retry_after)
            health.cooling_until = until
            health.probing = False

    def _released(self, index: int, probe: bool) -> None:
        """The input's own fault (a bad image): no verdict on the member; let another input probe it."""
        if probe:
            with self._lock:
                self._health[index].probing = False

    def _all_cooling(self) -> ServiceError:
        now = self._clock()
        with self._lock:
            waits = [
                (h.cooling_until - now, name, h)
                for name, h in zip(self.member_names, self._health, strict=True)
                if h.cooling_until is not None
            ]
        wait, name, _ = min(waits, key=lambda w: w[0])
        summary = ", ".join(f"{n} ({h.failures} failures, last {h.last_error})" for _, n, h in waits)
        return ServiceError(
            f"every backend of the fallback is cooling down: {summary}; {name} is probed again in "
            f"{max(wait, 0.0):.1f} s",
            code="AllBackendsCoolingDown",
            backend=self.name,
            retry_after=max(wait, 0.0),
        )

    # -- one input ----------------------------------------------------------------------------------
    def _decide(
        self, index: int, probe: bool, outcome: Prediction | AzVisionError, notes: list[str]
    ) -> Prediction | None:
        """The answer, ``None`` to ask the next member; raises the error that ends the input."""
        name = self.member_names[index]
        if isinstance(outcome, Prediction):
            try:
                outcome = self._labels.answer(index, outcome)
            except ConfigurationError:
                self._released(index, probe)
                raise
            self._succeeded(index)
            self._count(index, "answered")
            after = []
            if notes:
                probed = " (probe after its cool-down)" if probe else ""
                after.append(f"fallback: answered by {name}{probed}")
            elif probe:
                after.append(f"fallback: {name} answered a probe after its cool-down")
            return add_notes(outcome, *after, before=notes)
        self._count(index, "error")
        if not moves_on(outcome):
            self._released(index, probe)
            raise outcome
        self._failed(index, outcome, probe)
        notes.append(f"fallback: {name} failed ({describe(outcome)})")
        return None

    def _skip(self, index: int, notes: list[str]) -> None:
        self._count(index, "skipped")
        notes.append(f"fallback: {self.member_names[index]} skipped (cooling down)")

    def _steps(self) -> Steps:
        notes: list[str] = []
        failed: AzVisionError | None = None
        for index in range(len(self.members)):
            verdict = self._verdict(index)
            if verdict == "skip":
                self._skip(index, notes)
                continue
            try:
                outcome = yield index
            except GeneratorExit:  # interrupted mid-call: no verdict on the member, free its probe
                self._released(index, verdict == "probe")
                raise
            if isinstance(outcome, AzVisionError):
                failed = outcome
            answer = self._decide(index, verdict == "probe", outcome, notes)
            if answer is not None:
                return answer
        raise failed if failed is not None else self._all_cooling()

    def __repr__(self) -> str:
        members = ", ".join(repr(m) for m in self.members)
        return f"Fallback([{members}], cooldown_after={self.cooldown_after}, cooldown={self.cooldown:g})"
