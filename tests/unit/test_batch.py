"""The batch engine and the retry layer: order, completeness, bounded read-ahead, Retry-After, deadline."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections.abc import Iterator

import pytest

from azvision import (
    AzVisionError,
    BackendConnectionError,
    BackendTimeoutError,
    InvalidImageError,
    Label,
    Prediction,
    RateLimitError,
    RetryPolicy,
    ServiceError,
)
from azvision._batch import auto_concurrency, ordered_map, thread_map
from azvision._images import ImageLimits, LoadedImage
from azvision._retry import Breaker, Pacer, RetryState, Throttle, VirtualClock
from azvision.backends._base import BaseBackend


class ScriptedBackend(BaseBackend):
    """Answers from a script of outcomes per input (bytes) — no network, real base machinery."""

    name = "scripted"
    image_limits = ImageLimits(service="scripted")

    def __init__(
        self, script: dict[bytes, list[AzVisionError | None]] | None = None, delay: float = 0.0, **kw: object
    ) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.script = script or {}
        self.delay = delay
        self.calls: list[tuple[bytes, float]] = []
        self.lock = threading.Lock()

    def _predict(self, image: LoadedImage) -> Prediction:
        assert image.data is not None
        with self.lock:
            self.calls.append((image.data, self._clock()))
            queue = self.script.get(image.data, [])
            outcome = queue.pop(0) if queue else None
        if self.delay:
            time.sleep(self.delay * random.random())
        if outcome is not None:
            raise outcome
        return Prediction(
            labels=[Label(name=image.data.decode(errors="replace")[:8], confidence=1.0)], backend=self.name
        )


def virtual(backend: ScriptedBackend) -> VirtualClock:
    """Run ``backend``'s waits in virtual time."""
    clock = VirtualClock()
    backend._clock = clock.now
    backend._sleep = clock.sleep
    backend._throttle = Throttle(backend._throttle.max_rps, clock=clock.now)
    return clock


def png(i: int) -> bytes:
    from tests.conftest import make_png

    return make_png((8 + i % 50, 8), (i % 256, (i * 7) % 256, 0))


def test_outcomes_stream_in_input_order_one_per_input() -> None:
    images = [png(i) for i in range(60)]
    with ScriptedBackend(delay=0.01, concurrency=8) as backend:
        out = list(backend.classify_many(images))
    assert len(out) == 60
    assert all(isinstance(o, Prediction) for o in out)
    assert [o.image_size for o in out if isinstance(o, Prediction)] == [(8 + i % 50, 8) for i in range(60)]


def test_bad_inputs_yield_errors_in_place_and_batch_goes_on() -> None:
    items: list[object] = [png(1), b"", "missing.jpg", png(2), b"not an image"]
    with ScriptedBackend() as backend:
        out = list(backend.classify_many(items))  # type: ignore[arg-type]
    kinds = [type(o).__name__ for o in out]
    assert kinds == [
        "Prediction",
        "InvalidImageError",
        "InvalidImageError",
        "Prediction",
        "InvalidImageError",
    ]
    assert isinstance(out[2], InvalidImageError) and out[2].source == "missing.jpg"


def test_retry_after_is_honoured_and_never_undercut() -> None:
    img = png(3)
    backend = ScriptedBackend({img: [RateLimitError("throttled", status_code=429, retry_after=0.3)]})
    virtual(backend)
    backend.classify(img)
    (_, first), (_, second) = backend.calls
    assert second - first >= 0.3


def test_5xx_and_drops_are_retried_with_backoff_then_succeed() -> None:
    img = png(4)
    script = {img: [ServiceError("down", status_code=503), BackendConnectionError("dropped")]}
    backend = ScriptedBackend(script, retry=RetryPolicy(backoff_base=0.01))
    assert backend.classify(img).backend == "scripted"
    assert len(backend.calls) == 3


def test_non_retryable_errors_are_not_retried() -> None:
    img = png(5)
    backend = ScriptedBackend({img: [ServiceError("model failed", status_code=424)]})
    with pytest.raises(ServiceError):
        backend.classify(img)
    assert len(backend.calls) == 1


def test_attempts_are_capped() -> None:
    img = png(6)
    backend = ScriptedBackend(
        {img: [ServiceError("down", status_code=500)] * 10},
        retry=RetryPolicy(max_attempts=3, backoff_base=0.001),
    )
    with pytest.raises(ServiceError):
        backend.classify(img)
    assert len(backend.calls) == 3


def test_deadline_stops_retries_with_timeout_error() -> None:
    img = png(7)
    backend = ScriptedBackend(
        {img: [RateLimitError("slow", status_code=429, retry_after=5.0)]}, retry=RetryPolicy(deadline=1.0)
    )
    clock = virtual(backend)
    with pytest.raises(BackendTimeoutError, match="deadline"):
        backend.classify(img)
    assert clock.now() < 1.0  # gave up at once instead of sleeping past the deadline


def test_one_429_holds_back_the_whole_batch() -> None:
    throttled = png(8)
    others = [png(100 + i) for i in range(6)]
    backend = ScriptedBackend(
        {throttled: [RateLimitError("slow", status_code=429, retry_after=0.4)]}, concurrency=1
    )
    virtual(backend)
    list(backend.classify_many([throttled, *others]))
    t429 = backend.calls[0][1]
    later = [t for data, t in backend.calls[1:] if t > t429 + 0.05]
    # every request sent after the 429 was answered waited for the cool-down
    assert all(t >= t429 + 0.4 for t in later)


def test_max_rps_spaces_requests() -> None:
    images = [png(200 + i) for i in range(11)]
    backend = ScriptedBackend(concurrency=1)
    virtual(backend)
    list(backend.classify_many(images, max_rps=20))
    sent = [t for _, t in backend.calls]
    assert all(b - a >= 0.05 - 1e-9 for a, b in itertools.pairwise(sent))  # 20/s: 50 ms apart


def test_read_ahead_is_bounded() -> None:
    consumed = 0

    def source() -> Iterator[bytes]:
        nonlocal consumed
        for i in range(1_000_000):
            consumed += 1
            yield png(i % 40)

    backend = ScriptedBackend(concurrency=4)
    stream = backend.classify_many(source())
    for _ in range(20):
        next(stream)
    stream.close()  # type: ignore[attr-defined]
    assert consumed < 20 + 64


def test_throttle_pacing_and_gate() -> None:
    clock = VirtualClock()
    throttle = Throttle(max_rps=10, clock=clock.now)
    states = [
        RetryPolicy().start(clock=clock.now, throttle=throttle, pacers=throttle.pacers()) for _ in range(3)
    ]
    waits = [s.send_wait() for s in states]
    assert waits == pytest.approx([0.0, 0.1, 0.2])
    gate = Throttle(clock=clock.now)
    gate.throttled(0.5, sent_at=0.0)
    assert RetryPolicy().start(clock=clock.now, throttle=gate).send_wait() == pytest.approx(0.5)


def test_ordered_map_wraps_unexpected_exceptions() -> None:
    async def work(x: int) -> int:
        if x == 2:
            raise KeyError("bug")
        return x

    async def main() -> list[object]:
        return [r async for r in ordered_map(range(4), work, concurrency=2)]

    out = asyncio.run(main())
    assert out[0] == 0 and out[3] == 3
    assert isinstance(out[2], AzVisionError) and "KeyError" in str(out[2])
    assert isinstance(out[2].__cause__, KeyError)


def test_thread_map_wraps_unexpected_exceptions_in_place() -> None:
    def work(x: int) -> int:
        if x == 2:
            raise KeyError("bug")
        return x

    out = list(thread_map(range(4), work, concurrency=2))
    assert out[0] == 0 and out[3] == 3
    assert isinstance(out[2], AzVisionError) and isinstance(out[2].__cause__, KeyError)


def test_auto_concurrency_follows_littles_law() -> None:
    assert auto_concurrency(20, 0.2, default=8) == 6
    assert auto_concurrency(None, 0.2, default=8) == 8
    assert auto_concurrency(1000, 1.0, default=8) == 64


async def test_async_batch_matches_sync() -> None:
    images = [png(300 + i) for i in range(10)]
    backend = ScriptedBackend(delay=0.005)
    out = [o async for o in backend.aclassify_many(images, concurrency=3)]
    assert [o.image_size for o in out if isinstance(o, Prediction)] == [
        (8 + (300 + i) % 50, 8) for i in range(10)
    ]
    await backend.aclose()


def test_keyboard_interrupt_in_a_worker_reaches_the_caller_instead_of_hanging() -> None:
    class Interrupting(ScriptedBackend):
        def _predict(self, image: LoadedImage) -> Prediction:
            raise KeyboardInterrupt

    backend = Interrupting(concurrency=2)
    with pytest.raises(KeyboardInterrupt):
        list(backend.classify_many([png(1), png(2), png(3)]))


def test_a_503_with_retry_after_waits_only_for_its_own_image() -> None:
    clock = VirtualClock()
    throttle = Throttle(clock=clock.now)
    own = RetryPolicy().start(clock=clock.now, throttle=throttle)
    assert own.failed(ServiceError("busy", status_code=503, retry_after=0.5)) >= 0.5
    other = RetryPolicy().start(clock=clock.now, throttle=throttle)
    assert other.send_wait() == 0.0  # nobody else is held back


def test_a_burst_of_429s_is_one_congestion_signal() -> None:
    clock = VirtualClock()
    throttle = Throttle(clock=clock.now)
    for _ in range(10):
        throttle.succeeded()
    clock.sleep(0.1)
    throttle.throttled(1.0, sent_at=0.0)  # first 429: rate from the last 2 s of successes
    assert throttle.learned_rps == pytest.approx(5.0)
    for _ in range(59):  # the rest of the burst, all sent before the cut
        throttle.throttled(1.0, sent_at=0.05)
    assert throttle.learned_rps == pytest.approx(5.0)
    throttle.throttled(1.0, sent_at=clock.now() + 0.01)  # a request sent after the cut: a new signal
    assert throttle.learned_rps == pytest.approx(5.0 * Throttle.CUT)


def test_429s_of_a_burst_already_answered_by_a_cut_use_up_no_attempt() -> None:
    clock = VirtualClock()
    throttle = Throttle(clock=clock.now)
    policy = RetryPolicy(max_attempts=2, deadline=60.0, retry_after_jitter=0.0)
    probe = RetryState(policy, random.Random(0), clock=clock.now, throttle=throttle)
    probe.sent_at = clock.now()
    clock.sleep(0.1)
    probe.failed(RateLimitError("429", status_code=429, retry_after=0.5))  # the first: a new signal
    clock.sleep(0.5)
    burst = RetryState(policy, random.Random(0), clock=clock.now, throttle=throttle)
    burst.sent_at = 0.05  # sent before the cut above
    for _ in range(10):  # far more 429s than max_attempts, all of the counted burst
        assert burst.failed(RateLimitError("429", status_code=429, retry_after=0.5)) > 0
    own = RetryState(policy, random.Random(0), clock=clock.now, throttle=throttle)
    own.sent_at = clock.now()  # sent after the cut: its 429s are its own
    clock.sleep(0.1)
    own.failed(RateLimitError("429", status_code=429, retry_after=0.5))
    clock.sleep(0.5)
    own.sent_at = clock.now()  # its retry, sent after that cut too
    clock.sleep(0.1)
    with pytest.raises(RateLimitError):
        own.failed(RateLimitError("429", status_code=429, retry_after=0.5))
    clock.sleep(60.0)  # the deadline still ends the burst's input
    with pytest.raises(BackendTimeoutError):
        burst.failed(RateLimitError("429", status_code=429, retry_after=0.5))


def test_a_429_with_no_history_starts_slow_and_grows() -> None:
    clock = VirtualClock()
    throttle = Throttle(clock=clock.now)
    throttle.throttled(1.0, sent_at=0.0)
    assert throttle.learned_rps == Throttle.START_RPS
    assert throttle.learned is not None
    throttle.learned.commit(clock.now() + 10)  # requests queue behind the learned rate
    for _ in range(4):
        throttle.succeeded()
    assert throttle.learned_rps > Throttle.START_RPS  # slow start: doubling per second of successes
    fixed = Throttle(max_rps=5, clock=clock.now)
    fixed.throttled(0.01, sent_at=0.0)
    assert fixed.learned_rps is None


def test_a_batch_limit_belongs_to_the_batch() -> None:
    backend = ScriptedBackend(concurrency=1)
    virtual(backend)
    list(backend.classify_many([png(600 + i) for i in range(3)], max_rps=2))
    assert backend.max_rps is None  # the client's own limit is untouched afterwards
    fast = [t for _, t in backend.calls]
    assert fast[1] - fast[0] == pytest.approx(0.5)


def test_identical_auth_errors_stop_the_batch_and_answer_every_input() -> None:
    from azvision import AuthenticationError

    denied = AuthenticationError("access denied", status_code=401)
    images = [png(700 + i) for i in range(20)]
    backend = ScriptedBackend({img: [denied] for img in images}, concurrency=1)
    out = list(backend.classify_many(images))
    assert len(out) == 20 and all(isinstance(o, AuthenticationError) for o in out)
    assert len(backend.calls) == 3  # three identical answers, then nothing more was sent
    assert all(o.stopped_batch for o in out[3:])  # type: ignore[union-attr]
    breaker = Breaker()
    breaker.record(denied)
    breaker.record(None)  # a success in between resets the count
    breaker.record(denied)
    assert breaker.tripped is None


def test_a_cool_down_longer_than_the_deadline_ends_the_input_at_once() -> None:
    backend = ScriptedBackend(retry=RetryPolicy(deadline=0.5))
    clock = virtual(backend)
    backend._throttle.throttled(5.0, sent_at=0.0)  # another request was told to wait 5 s
    with pytest.raises(BackendTimeoutError, match="cool-down would pass the"):
        backend.classify(png(500))
    assert clock.now() == 0.0
    assert backend.calls == []


def test_a_token_budget_spaces_requests_by_their_cost() -> None:
    class Costly(ScriptedBackend):
        def _request_cost(self, image: LoadedImage) -> float:
            return 300.0  # tokens per request

    backend = Costly(concurrency=1)
    virtual(backend)
    backend._cost_pacers.append(Pacer(6000 / 60.0, clock=backend._clock))  # 6,000 tokens per minute
    list(backend.classify_many([png(800 + i) for i in range(4)]))
    sent = [t for _, t in backend.calls]
    assert [b - a for a, b in itertools.pairwise(sent)] == pytest.approx([3.0, 3.0, 3.0])  # 300 / 100 per s


def test_queued_requests_follow_a_learned_rate_that_rises() -> None:
    clock = VirtualClock()
    throttle = Throttle(clock=clock.now)
    throttle.throttled(0.0, sent_at=0.0)  # no history: slow start at 1/s
    assert throttle.learned is not None
    queued = [
        RetryPolicy().start(clock=clock.now, throttle=throttle, pacers=throttle.pacers()) for _ in range(20)
    ]
    for state in queued:
        state.send_wait()
    # nobody holds a slot 19 s ahead at the slow-start rate: at most the next half second is claimed
    assert throttle.learned.earliest() - clock.now() <= RetryState.HORIZON + 1.0
    throttle.learned.rate = 10.0  # the rate rose meanwhile
    clock.sleep(2.0)
    later = [s.send_wait() for s in queued[5:10]]
    assert later == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])  # the queue now moves at 10/s, not 1/s
