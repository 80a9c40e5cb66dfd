"""Routing rules without sockets: scripted backends on the real `BaseBackend` machinery, virtual time."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from azvision import (
    AuthenticationError,
    BackendTimeoutError,
    CachedClassifier,
    Cascade,
    ConfigurationError,
    CustomVisionBackend,
    Fallback,
    Label,
    Prediction,
    RateLimitError,
    RetryPolicy,
    ServiceError,
)
from azvision._images import ImageLimits, LoadedImage
from azvision._retry import VirtualClock
from azvision.backends._base import BaseBackend
from azvision.routing import Usage, moves_on
from azvision.routing._identity import identity

from ..conftest import make_png

Outcome = tuple[str, float] | BaseException


class Scripted(BaseBackend):
    """Answers (or fails) as scripted, one outcome per request; the last one repeats."""

    name: ClassVar[str] = "scripted"
    image_limits: ClassVar[ImageLimits] = ImageLimits(service="scripted", accepts_url=False)

    def __init__(
        self,
        outcomes: Iterable[Outcome],
        *,
        name: str = "scripted",
        labels: tuple[str, ...] = (),
        retry: RetryPolicy | None = None,
    ):
        super().__init__(retry=retry or RetryPolicy(max_attempts=1))
        self.name = name  # type: ignore[misc]
        self.labels = labels or ("cat", "dog")
        self._outcomes = deque(outcomes)
        self._lock = threading.Lock()
        self.requests = 0

    def _predict(self, image: LoadedImage) -> Prediction:
        with self._lock:
            self.requests += 1
            outcome = self._outcomes.popleft() if len(self._outcomes) > 1 else self._outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        label, confidence = outcome
        return Prediction(labels=(Label(name=label, confidence=confidence),), backend=self.name)


IMAGE = make_png()


def test_which_errors_move_on() -> None:
    assert moves_on(ServiceError("x", status_code=500)) and moves_on(RateLimitError("x", retry_after=1))
    assert moves_on(BackendTimeoutError("x"))
    assert not moves_on(AuthenticationError("x")) and not moves_on(ConfigurationError("x"))


def test_a_cascade_stage_that_fails_passes_the_image_on_and_the_last_stages_error_is_the_outcome() -> None:
    local = Scripted([ServiceError("onnxruntime failed", status_code=None)], name="onnx")
    cloud = Scripted([("cat", 0.6)], name="custom_vision")
    with Cascade([local, cloud], threshold=0.9) as cascade:
        answer = cascade.classify(IMAGE)
    assert answer.backend == "custom_vision"
    assert answer.notes == (
        "cascade: onnx failed (ServiceError), asked custom_vision",
        "cascade: answered by custom_vision",
    )
    broken = Cascade(
        [Scripted([("cat", 0.5)], name="onnx"), Scripted([ServiceError("down", status_code=503)])]
    )
    with broken, pytest.raises(ServiceError, match="down"):
        broken.classify(IMAGE)
    with Cascade([Scripted([AuthenticationError("bad key")]), Scripted([("cat", 1.0)])]) as refused:
        with pytest.raises(AuthenticationError):
            refused.classify(IMAGE)
        assert refused.stats().stages[1].calls == 0


def test_when_every_member_cools_down_the_input_fails_at_once_saying_when_one_is_back() -> None:
    clock = VirtualClock(0.0)
    a = Scripted([ServiceError("a down", status_code=500)], name="a")
    b = Scripted([ServiceError("b down", status_code=503)], name="b")
    with Fallback([a, b], cooldown_after=1, cooldown=30, clock=clock.now) as fallback:
        with pytest.raises(ServiceError, match="b down"):
            fallback.classify(IMAGE)
        clock.sleep(5)
        with pytest.raises(ServiceError) as caught:
            fallback.classify(IMAGE)
    assert caught.value.code == "AllBackendsCoolingDown"
    assert caught.value.retry_after == pytest.approx(25.0)
    assert "a (1 failures, last ServiceError, HTTP 500)" in str(caught.value)
    assert (a.requests, b.requests) == (1, 1)


def test_only_one_input_probes_a_member_whose_cool_down_ended() -> None:
    clock = VirtualClock(0.0)
    fallback = Fallback(
        [Scripted([ServiceError("x", status_code=500)]), Scripted([("cat", 1.0)])], clock=clock.now
    )
    fallback._failed(0, ServiceError("x", status_code=500), probe=False)
    fallback._failed(0, ServiceError("x", status_code=500), probe=False)
    fallback._failed(0, ServiceError("x", status_code=500), probe=False)
    assert fallback._verdict(0) == "skip"
    clock.sleep(31)
    assert fallback._verdict(0) == "probe"
    assert fallback._verdict(0) == "skip"  # the probe is in flight
    fallback._succeeded(0)
    assert fallback._verdict(0) == "try"


def test_an_interrupted_probe_frees_the_member_for_the_next_probe() -> None:
    clock = VirtualClock(0.0)
    primary = Scripted([ServiceError("down", status_code=500)], name="primary")
    fallback = Fallback([primary, Scripted([("cat", 1.0)])], cooldown_after=1, cooldown=10, clock=clock.now)
    with fallback:
        assert fallback.classify(IMAGE).notes[0].startswith("fallback: primary failed")
        clock.sleep(11)
        primary._outcomes = deque([KeyboardInterrupt()])
        with pytest.raises(KeyboardInterrupt):
            fallback.classify(IMAGE)  # the probe, cut short by Ctrl-C
        assert fallback._verdict(0) == "probe"  # not stuck "in flight" for ever


def test_a_retry_after_longer_than_the_cool_down_is_kept() -> None:
    clock = VirtualClock(0.0)
    fallback = Fallback([Scripted([("cat", 1.0)]), Scripted([("cat", 1.0)])], cooldown=10, clock=clock.now)
    fallback._failed(0, RateLimitError("quota", status_code=429, retry_after=120.0), probe=False)
    assert fallback.health()[0].cooling_until == pytest.approx(120.0)


def test_usage_adds_up_through_nesting_and_names_unpriced_backends() -> None:
    inner = Fallback([Scripted([("cat", 1.0)], name="azure_ml"), Scripted([("cat", 1.0)])])
    cascade = Cascade([Scripted([("cat", 0.1)], name="onnx"), inner], threshold=0.5)
    with cascade:
        list(cascade.classify_many([IMAGE] * 4))
        usage = cascade.usage()
    assert usage.calls == {"onnx": 4, "azure_ml": 4, "scripted": 0}
    assert usage.unpriced == ("azure_ml",) and usage.cost_usd == 0.0
    assert (Usage({"x": 1}, 0.5) + Usage({"x": 2}, 0.25)).to_dict()["calls"] == {"x": 3}


def test_no_key_reaches_the_cache_key_repr_or_file(tmp_path: Path) -> None:
    key = "k" * 32
    cv = CustomVisionBackend(
        "https://example.cognitiveservices.azure.com/", key, "0" * 8 + "-0000-0000-0000-" + "0" * 12, "prod"
    )
    assert key not in repr(identity(cv))
    with CachedClassifier(Fallback([cv, Scripted([("cat", 1.0)])]), tmp_path / "c.sqlite") as cached:
        assert key not in repr(cached) and key not in cached.name
        assert key not in str(cached.cache_identity())
        cached.classify(IMAGE)
    assert key.encode() not in (tmp_path / "c.sqlite").read_bytes()


def test_routers_refuse_what_is_not_a_classifier() -> None:
    with pytest.raises(ConfigurationError, match="takes classifiers"):
        Fallback(["custom_vision"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="at least one"):
        Cascade([])


class Batched(Scripted):
    """A first stage that records how it was asked: one ``classify_many`` stream, or single calls."""

    def __init__(self, outcomes: Iterable[Outcome], **options: Any) -> None:
        super().__init__(outcomes, **options)
        self.streams = 0

    def classify_many(self, images: Iterable[Any], **options: Any) -> Any:
        self.streams += 1
        return super().classify_many(images, **options)


def test_the_cascades_first_stage_gets_the_whole_batch_as_one_stream_and_order_holds() -> None:
    import asyncio
    import io

    closed = io.BytesIO(IMAGE)
    closed.close()
    sure, unsure = ("cat", 0.95), ("dog", 0.3)
    images = [IMAGE, closed, IMAGE, IMAGE, IMAGE]

    def run(asynchronous: bool) -> tuple[list[object], Batched, Scripted]:
        local = Batched([sure, unsure, sure, unsure], name="onnx")
        cloud = Scripted([("dog", 0.9)], name="custom_vision")
        cascade = Cascade([local, cloud], threshold=0.8)

        async def collect() -> list[object]:
            return [o async for o in cascade.aclassify_many(images, concurrency=1)]

        with cascade:
            outcomes = (
                asyncio.run(collect()) if asynchronous else list(cascade.classify_many(images, concurrency=1))
            )
        return outcomes, local, cloud

    for asynchronous in (False, True):
        outcomes, local, cloud = run(asynchronous)
        assert [o.backend if isinstance(o, Prediction) else type(o).__name__ for o in outcomes] == [
            "onnx", "InvalidImageError", "custom_vision", "onnx", "custom_vision",
        ]  # fmt: skip
        if not asynchronous:
            assert local.streams == 1
        assert local.requests == 4 and cloud.requests == 2


def test_repeats_in_one_batch_ask_the_backend_once(tmp_path: Path) -> None:
    backend = Scripted([("cat", 0.9)])
    with CachedClassifier(backend, tmp_path / "c.sqlite") as cached:
        outcomes = list(cached.classify_many([IMAGE] * 12, concurrency=8))
        usage = cached.stats().usage
    assert all(isinstance(o, Prediction) and o.label == "cat" for o in outcomes)
    assert backend.requests == 1 and (usage.cache_hits, usage.cache_misses) == (11, 1)


def test_a_failed_answer_is_not_shared_the_next_caller_asks_again(tmp_path: Path) -> None:
    backend = Scripted([ServiceError("down", status_code=500), ("cat", 0.9)])
    with CachedClassifier(backend, tmp_path / "c.sqlite") as cached:
        with pytest.raises(ServiceError):
            cached.classify(IMAGE)
        assert cached.classify(IMAGE).label == "cat"
        assert cached.classify(IMAGE).notes[-1] == "cache: hit"
    assert backend.requests == 2


def test_a_cache_file_that_cannot_be_opened_warns_and_classifies_without_caching(tmp_path: Path) -> None:
    backend = Scripted([("cat", 0.9)])
    with pytest.warns(RuntimeWarning, match="not usable"):
        cached = CachedClassifier(backend, tmp_path)  # a folder, not a file
    with cached, pytest.warns(RuntimeWarning):
        labels = [cached.classify(IMAGE).label for _ in range(2)]
    assert labels == ["cat", "cat"] and backend.requests == 2


def test_the_async_cache_path_answers_repeats_from_one_call(tmp_path: Path) -> None:
    import asyncio

    backend = Scripted([("cat", 0.9)])

    async def run() -> list[object]:
        async with CachedClassifier(backend, tmp_path / "c.sqlite") as cached:
            first = await cached.aclassify(IMAGE)
            rest = [o async for o in cached.aclassify_many([IMAGE] * 6, concurrency=3)]
        return [first, *rest]

    outcomes = asyncio.run(run())
    assert [o.notes[-1] if isinstance(o, Prediction) and o.notes else None for o in outcomes] == [
        None, *["cache: hit"] * 6,
    ]  # fmt: skip
    assert backend.requests == 1


def test_each_member_keeps_its_own_retry_after() -> None:
    clock = VirtualClock(0.0)
    a = Scripted([RateLimitError("a quota", status_code=429, retry_after=5.0)], name="a")
    b = Scripted([RateLimitError("b quota", status_code=429, retry_after=60.0)], name="b")
    with Fallback([a, b], cooldown_after=10, clock=clock.now) as fallback:
        with pytest.raises(RateLimitError) as caught:
            fallback.classify(IMAGE)
        assert caught.value.retry_after == 60.0 and "b quota" in str(caught.value)  # b's own, not a's
        a_health, b_health = fallback.health()
        assert (a_health.cooling_until, b_health.cooling_until) == (5.0, 60.0)
        clock.sleep(6)  # a's wait is over, b's is not: a is probed, b still skipped
        a._outcomes = deque([("cat", 0.9)])
        answer = fallback.classify(IMAGE)
    assert answer.backend == "a" and answer.notes == ("fallback: a answered a probe after its cool-down",)


def test_fallback_members_must_answer_in_the_same_labels_or_a_label_map_folds_them() -> None:
    english = Scripted([("cat", 0.9)], name="custom_vision", labels=("cat", "dog"))
    german = Scripted([("Katze", 0.9)], name="azure_openai", labels=("Katze", "Hund"))
    with pytest.raises(ConfigurationError, match=r"fallback's members answer in different labels"):
        Fallback([english, german])
    folded = Fallback([english, german], label_map={"azure_openai": {"Katze": "cat", "Hund": "dog"}})
    assert folded.labels == ("cat", "dog")
    folded._health[0].cooling_until = float("inf")  # the first one is down: the second answers
    with folded:
        answer = folded.classify(IMAGE)
    assert (answer.label, answer.backend) == ("cat", "azure_openai")


def test_routers_are_classifiers_and_a_bad_image_fails_before_any_call(tmp_path: Path) -> None:
    from azvision import Classifier, InvalidImageError

    backends = [Scripted([("cat", 0.9)]) for _ in range(3)]
    routers = [
        CachedClassifier(backends[0], tmp_path / "c.sqlite"),
        Cascade([backends[1], Scripted([("cat", 1.0)])]),
        Fallback([backends[2], Scripted([("cat", 1.0)])]),
    ]
    for router in routers:
        assert isinstance(router, Classifier)
        with router:
            outcomes = list(router.classify_many([str(tmp_path / "missing.jpg"), b"not an image"]))
        assert len(outcomes) == 2 and all(isinstance(o, InvalidImageError) for o in outcomes)
    assert [b.requests for b in backends] == [0, 0, 0]


def test_a_member_with_another_behind_it_makes_one_attempt_unless_retries_says_more() -> None:
    patient = RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_max=0.002)

    def members() -> tuple[Scripted, Scripted]:
        blip = ServiceError("blip", status_code=500)
        return Scripted([blip, ("cat", 0.9)], name="a", retry=patient), Scripted([("dog", 0.9)], name="b")

    a, b = members()
    with Fallback([a, b]) as fallback:
        assert fallback.classify(IMAGE).backend == "b"  # moved on at once
    assert a.requests == 1
    a, b = members()
    with Fallback([a, b], retries=None) as fallback:
        assert fallback.classify(IMAGE).backend == "a"  # its own policy: the retry answered
    assert (a.requests, b.requests) == (2, 0)
    last = Scripted([ServiceError("blip", status_code=500), ("cat", 0.9)], name="last", retry=patient)
    with Fallback([Scripted([ServiceError("down", status_code=500)], name="a"), last]) as fallback:
        assert fallback.classify(IMAGE).backend == "last"  # the last member keeps its own retries
    assert last.requests == 2
