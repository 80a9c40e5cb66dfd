"""Fallback against two emulators: a primary failing on every request (fail_rate=1.0), a healthy secondary."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from azvision import (
    AuthenticationError,
    Fallback,
    InvalidImageError,
    NotFoundError,
    Prediction,
    RateLimitError,
    RetryPolicy,
)
from azvision._retry import VirtualClock
from azvision.emulator import Emulator

from .conftest import FAST_RETRY, Trained, custom_vision, prediction_calls


@pytest.fixture
def failing(trained: Trained) -> Iterator[Emulator]:
    """The primary resource in an outage: every request answers 500 or 503."""
    with Emulator(data_dir=trained.data_dir, fail_rate=1.0) as emu:
        yield emu


def test_a_failing_primary_cools_down_and_every_image_is_answered_by_the_secondary(
    trained: Trained, failing: Emulator, service: Emulator
) -> None:
    paths = trained.paths
    primary, secondary = custom_vision(failing, trained), custom_vision(service, trained)
    with Fallback([primary, secondary], cooldown_after=3, cooldown=600) as fallback:
        outcomes = list(fallback.classify_many(paths, concurrency=1))
        stats = fallback.stats()

    assert all(isinstance(o, Prediction) for o in outcomes)
    predictions = [o for o in outcomes if isinstance(o, Prediction)]
    assert [p.source for p in predictions] == paths
    assert {p.backend for p in predictions} == {"custom_vision"}
    failed = [p for p in predictions if p.notes[0].startswith("fallback: custom_vision failed (ServiceError")]
    for p in predictions:
        assert p.notes[-1] == "fallback: answered by custom_vision@2"
        assert p in failed or p.notes[0] == "fallback: custom_vision skipped (cooling down)"
    # at most three failures before the cool-down (a 503's Retry-After cools it sooner), and the probe
    # when such a short cool-down ends; one attempt each: a member with another behind it does not retry
    assert 1 <= len(failed) <= 4 and predictions[0] in failed
    assert prediction_calls(failing) == len(failed)
    assert prediction_calls(service) == len(paths)
    primary_stats, secondary_stats = stats.stages
    assert (primary_stats.calls, primary_stats.errors) == (len(failed), len(failed))
    assert primary_stats.skipped == len(paths) - len(failed)
    assert secondary_stats.answered == len(paths)
    assert stats.usage.calls == {"custom_vision": len(failed), "custom_vision@2": len(paths)}
    assert stats.usage.cost_usd == pytest.approx(0.002 * len(paths))  # failed requests are not billed
    assert (primary_stats.cost_usd, secondary_stats.cost_usd) == (0.0, pytest.approx(0.002 * len(paths)))


def test_with_retries_none_each_member_keeps_its_own_retry_policy(
    trained: Trained, failing: Emulator, service: Emulator
) -> None:
    members = [custom_vision(failing, trained), custom_vision(service, trained)]
    with Fallback(members, retries=None, cooldown_after=3) as fallback:
        outcomes = list(fallback.classify_many(trained.paths[:5], concurrency=1))
    assert all(isinstance(o, Prediction) for o in outcomes)
    failed = [o for o in outcomes if isinstance(o, Prediction) and "custom_vision failed" in o.notes[0]]
    assert failed
    assert prediction_calls(failing) == FAST_RETRY.max_attempts * len(failed)  # its own attempts, each


def test_the_cool_down_expires_and_a_probe_brings_the_primary_back(
    trained: Trained, service: Emulator
) -> None:
    clock = VirtualClock(1000.0)
    image = trained.paths[0]
    outage = Emulator(data_dir=trained.data_dir, fail_rate=1.0).start()
    port = int(outage.endpoint.rsplit(":", 1)[1])
    primary = custom_vision(outage, trained)
    fallback = Fallback(
        [primary, custom_vision(service, trained)], cooldown_after=2, cooldown=30, clock=clock.now
    )
    try:
        for _ in range(2):
            assert fallback.classify(image).notes[-1] == "fallback: answered by custom_vision@2"
        sent = prediction_calls(outage)
        assert fallback.health()[0].cooling_until == pytest.approx(1030.0)
        assert fallback.classify(image).notes[0] == "fallback: custom_vision skipped (cooling down)"
        assert prediction_calls(outage) == sent

        clock.sleep(31)  # expired: one probe, which fails and starts a new cool-down
        probe = fallback.classify(image)
        assert probe.notes[0].startswith("fallback: custom_vision failed")
        assert prediction_calls(outage) > sent
        assert fallback.health()[0].cooling_until == pytest.approx(1061.0)
        clock.sleep(10)
        assert "skipped" in fallback.classify(image).notes[0]

        outage.stop()  # the outage ends: the same resource, healthy again
        outage = Emulator(data_dir=trained.data_dir, port=port).start()
        clock.sleep(21)
        back = fallback.classify(image)
        assert back.notes == ("fallback: custom_vision answered a probe after its cool-down",)
        assert fallback.classify(image).notes == ()  # closed again: straight to the primary
        assert fallback.health()[0].failures == 0
        assert prediction_calls(outage) == 2
    finally:
        fallback.close()
        outage.stop()


def test_errors_that_are_the_users_to_fix_never_move_on(trained: Trained, service: Emulator) -> None:
    secondary = custom_vision(service, trained)
    wrong_key = custom_vision(service, trained, key="0" * 32)
    with Fallback([wrong_key, secondary]) as fallback:
        with pytest.raises(AuthenticationError):
            fallback.classify(trained.paths[0])
        with pytest.raises(InvalidImageError):
            fallback.classify(b"not an image")
    unknown = custom_vision(service, trained, project_id=str(uuid.uuid4()))
    with Fallback([unknown, custom_vision(service, trained)]) as fallback:
        with pytest.raises(NotFoundError):
            fallback.classify(trained.paths[0])
        assert fallback.health()[0].failures == 0  # not the member's health: its configuration
    served = sum(
        sum(n for status, n in counts.items() if status.startswith("2"))
        for route, counts in service.stats().items()
        if "/prediction/" in route
    )
    assert served == 0


def test_a_429_cools_only_that_member_for_its_retry_after_and_the_next_is_asked_at_once(
    trained: Trained, service: Emulator
) -> None:
    clock = VirtualClock()
    with Emulator(data_dir=trained.data_dir, rate_limit_tps=0.5) as quota:
        primary = custom_vision(quota, trained, retry=RetryPolicy(max_attempts=1))
        fallback = Fallback([primary, custom_vision(service, trained)], cooldown_after=5, clock=clock.now)
        with fallback:
            assert fallback.classify(trained.paths[0]).notes == ()  # within the quota
            second = fallback.classify(trained.paths[1])  # over it: 429 with Retry-After
            assert second.notes[0].startswith("fallback: custom_vision failed (RateLimitError, HTTP 429")
            health = fallback.health()[0]
            assert health.failures == 1 and health.cooling_until is not None and health.cooling_until >= 1.0
            assert "skipped" in fallback.classify(trained.paths[2]).notes[0]


def test_async_fallback_answers_every_image(trained: Trained, failing: Emulator, service: Emulator) -> None:
    async def run() -> list[Prediction | Exception]:
        members = [custom_vision(failing, trained), custom_vision(service, trained)]
        async with Fallback(members, cooldown_after=2) as fallback:
            return [o async for o in fallback.aclassify_many(trained.paths, concurrency=4)]

    outcomes = asyncio.run(run())
    assert all(isinstance(o, Prediction) and o.backend == "custom_vision" for o in outcomes)
    assert len(outcomes) == len(trained.paths)


def test_when_every_member_fails_the_error_is_the_last_ones_own(trained: Trained, failing: Emulator) -> None:
    with Fallback([custom_vision(failing, trained), custom_vision(failing, trained)]) as fallback:
        outcome = next(iter(fallback.classify_many([trained.paths[0]])))
    assert isinstance(outcome, Exception) and not isinstance(outcome, RateLimitError)
    assert type(outcome).__name__ == "ServiceError" and outcome.status_code in (500, 503)  # type: ignore[attr-defined]
