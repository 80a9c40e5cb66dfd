"""The service matrix: every way a service fails, through every remote backend, as the user sees it.

Failures the emulator produces on its own (wrong key, unknown project or iteration, a scoring script that
raises, an answer no parser knows, an unknown deployment, throttling, 5xx and dropped connections) run
against it; exact sequences (a 429 then an answer, a hang, HTML, a body cut short) come from the tiny
hostile servers in :mod:`.servers`, with the official vendor clients talking to them unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from azvision import (
    AuthenticationError,
    AzureMLEndpointBackend,
    AzVisionError,
    BackendConnectionError,
    BackendTimeoutError,
    CustomVisionBackend,
    ImageAnalysisBackend,
    NotFoundError,
    Prediction,
    RateLimitError,
    RetryPolicy,
    ServiceError,
)
from azvision.backends._base import BaseBackend
from azvision.emulator import Emulator

from .conftest import NO_RETRY, PUBLISH_NAME, World, encode, stripes
from .servers import HTML, JSON, Behaviour, Drop, Hang, HostileServer, Reply, Truncated

A_UUID = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
WRONG_KEY = "wrong-key-SERVICE-3b8e61f0"
#: The remote backends; ``image_analysis:categories`` is the v3.2 path (httpx, not the vendor SDK).
REMOTE = ("custom_vision", "image_analysis", "image_analysis:categories", "azure_ml")
IMAGE = encode(stripes("horizontal", 31))

_GOOD: dict[str, object] = {
    "custom_vision": {
        "id": "5d9c2a4e-0000-4000-8000-000000000001",
        "project": A_UUID,
        "iteration": "9a7b6c5d-0000-4000-8000-000000000002",
        "created": "2025-01-01T00:00:00.000Z",
        "predictions": [
            {"probability": 0.97, "tagId": "t-1", "tagName": "horizontal"},
            {"probability": 0.03, "tagId": "t-2", "tagName": "vertical"},
        ],
    },
    "image_analysis": {
        "modelVersion": "2023-10-01",
        "metadata": {"width": 96, "height": 96},
        "tagsResult": {"values": [{"name": "horizontal", "confidence": 0.97}]},
    },
    "image_analysis:categories": {
        "categories": [{"name": "abstract_", "score": 0.97}],
        "requestId": "5d9c2a4e-0000-4000-8000-000000000003",
        "metadata": {"width": 96, "height": 96, "format": "Png"},
        "modelVersion": "2021-05-01",
    },
    "azure_ml": [{"probs": [0.97, 0.03], "labels": ["horizontal", "vertical"]}],
}


@dataclass(frozen=True)
class Good:
    """A script step: this backend's correct answer, whole, cut to ``cut`` bytes (a complete but truncated
    JSON body), or announced whole with the connection dropped after ``drop_after`` bytes."""

    cut: int | None = None
    drop_after: int | None = None

    def step(self, backend: str) -> Behaviour:
        body = json.dumps(_GOOD[backend]).encode()
        if self.drop_after is not None:
            return Truncated(200, JSON, body, self.drop_after)
        return Reply(200, JSON, body[: self.cut])


GOOD = Good()
ACCESS_DENIED = json.dumps(
    {
        "error": {
            "code": "401",
            "message": "Access denied due to invalid subscription key or wrong API endpoint.",
        }
    }
).encode()
FLAT_401 = b'{"code": "Unauthorized", "message": "Access denied due to invalid subscription key."}'
THROTTLED = json.dumps(
    {"error": {"code": "429", "message": "Rate limit is exceeded. Try again later."}}
).encode()
OOPS = b'{"error": {"code": "InternalServerError", "message": "An unexpected error occurred."}}'
HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body>Upstream down</body></html>"
)


def _mode(name: str) -> Literal["tags", "categories"]:
    return "categories" if name.endswith(":categories") else "tags"


def _backend(name: str, url: str, **options: Any) -> BaseBackend:
    options.setdefault("retry", NO_RETRY)
    if name == "custom_vision":
        return CustomVisionBackend(url, WRONG_KEY, A_UUID, PUBLISH_NAME, **options)
    if name.startswith("image_analysis"):
        return ImageAnalysisBackend(url, WRONG_KEY, mode=_mode(name), **options)
    return AzureMLEndpointBackend(url + "/score", WRONG_KEY, **options)


@dataclass(frozen=True)
class Answers:
    """A prediction arrives after ``requests`` requests, the last wait between them at least min_gap.

    ``max_gap`` documents the expected wait; it is not asserted (an upper bound on wall-clock time measures
    the machine's load, not the SDK)."""

    requests: int
    min_gap: float = 0.0
    max_gap: float = 0.9


@dataclass(frozen=True)
class Raises:
    """A typed error after ``requests`` requests (a count or a range); ``retry_after`` when the service
    asked for a delay."""

    error: type[AzVisionError]
    says: str = ""
    requests: int | range = 1
    status: int | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class Row:
    id: str
    script: Sequence[Behaviour | Good]
    expect: Answers | Raises
    retry: RetryPolicy = NO_RETRY
    timeout: float = 10.0
    #: How long the call is expected to take at most (documentation; not asserted, see Answers).
    within: float = 10.0
    backends: tuple[str, ...] = REMOTE
    bugs: Mapping[str, str] = field(default_factory=dict)


def _retries(attempts: int, deadline: float = 30.0) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, backoff_base=0.05, backoff_max=0.2, deadline=deadline)


ROWS = [
    Row("wrong-key-401-wrapped", [Reply(401, JSON, ACCESS_DENIED)],
        Raises(AuthenticationError, "ccess denied", status=401)),
    Row("wrong-key-401-flat", [Reply(401, JSON, FLAT_401)], Raises(AuthenticationError, "ccess denied", status=401)),
    Row("wrong-key-401-no-body", [Reply(401)], Raises(AuthenticationError, "", status=401)),
    Row("invalid-iteration-as-400", [Reply(400, JSON, b'{"code": "BadRequest", "message": "Invalid iteration"}')],
        Raises(NotFoundError, "Invalid iteration", status=400), backends=("custom_vision",)),
    Row("429-with-retry-after", [Reply(429, {**JSON, "Retry-After": "1"}, THROTTLED), GOOD],
        Answers(requests=2, min_gap=1.0, max_gap=2.0), retry=_retries(3)),
    Row("429-with-retry-after-ms", [Reply(429, {**JSON, "retry-after-ms": "400"}, THROTTLED), GOOD],
        Answers(requests=2, min_gap=0.4, max_gap=0.9), retry=_retries(3)),
    Row("429-with-unparseable-retry-after", [Reply(429, {**JSON, "Retry-After": "soon"}, THROTTLED), GOOD],
        Answers(requests=2, max_gap=0.5), retry=_retries(3)),
    Row("429-with-nan-retry-after", [Reply(429, {**JSON, "Retry-After": "NaN"}, THROTTLED), GOOD],
        Answers(requests=2, max_gap=0.5), retry=_retries(3)),
    Row("429-without-retry-after", [Reply(429, JSON, THROTTLED), GOOD], Answers(requests=2, max_gap=0.5),
        retry=_retries(3)),
    Row("429-retries-exhausted", [Reply(429, {**JSON, "Retry-After": "7"}, THROTTLED)],
        Raises(RateLimitError, "Rate limit is exceeded", status=429, retry_after=7.0), within=2.0),
    Row("500-503-burst", [Reply(500, JSON, OOPS), Reply(503, JSON, OOPS), Reply(500, JSON, OOPS), GOOD],
        Answers(requests=4), retry=_retries(5)),
    Row("503-with-retry-after", [Reply(503, {**JSON, "Retry-After": "1"}, OOPS), GOOD],
        Answers(requests=2, min_gap=1.0, max_gap=2.0), retry=_retries(3)),
    Row("503-empty-body-then-answer", [Reply(503), GOOD], Answers(requests=2), retry=_retries(3)),
    Row("503-burst-longer-than-retries", [Reply(503, JSON, OOPS)],
        Raises(ServiceError, "unexpected error", requests=3, status=503), retry=_retries(3)),
    Row("502-html-error-page", [Reply(502, HTML, HTML_PAGE)], Raises(ServiceError, "Service Unavailable", status=502)),
    Row("dropped-connection-once", [Drop(), GOOD], Answers(requests=2), retry=_retries(3)),
    Row("dropped-connection-always", [Drop()], Raises(BackendConnectionError, requests=2), retry=_retries(2)),
    Row("hanging-server", [Hang()], Raises(BackendTimeoutError), timeout=0.5, within=2.0),
    # Ten attempts of 0.5 s would take 5 s: the 1.2 s total deadline ends it after two or three.
    Row("hanging-server-retried-until-the-deadline", [Hang()], Raises(BackendTimeoutError, requests=range(2, 4)),
        retry=RetryPolicy(max_attempts=10, backoff_base=0.05, backoff_max=0.1, deadline=1.2), timeout=0.5,
        within=2.5),
    Row("html-instead-of-json", [Reply(200, HTML, HTML_PAGE)], Raises(ServiceError)),
    Row("truncated-json-body", [Good(cut=30)], Raises(ServiceError)),
    Row("connection-cut-mid-body", [Good(drop_after=30)], Raises(BackendConnectionError)),
    Row("empty-200-body", [Reply(200, JSON, b"")], Raises(ServiceError)),
    Row("json-of-the-wrong-shape", [Reply(200, JSON, b'{"status": "ok", "result": null}')],
        Raises(ServiceError), backends=("custom_vision", "azure_ml")),
]  # fmt: skip


def _rows() -> Iterator[Any]:
    for row in ROWS:
        for backend in row.backends:
            bug = row.bugs.get(backend)
            marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
            yield pytest.param(row, backend, id=f"{row.id}/{backend}", marks=marks)


@pytest.mark.parametrize(("row", "backend"), list(_rows()))
def test_hostile_service(row: Row, backend: str) -> None:
    script = [step.step(backend) if isinstance(step, Good) else step for step in row.script]
    with (
        HostileServer(script) as server,
        _backend(backend, server.url, retry=row.retry, timeout=row.timeout) as clf,
    ):
        if isinstance(row.expect, Raises):
            with pytest.raises(row.expect.error) as info:
                clf.classify(IMAGE)
            error = info.value
            assert row.expect.says in str(error)
            assert row.expect.status is None or error.status_code == row.expect.status
            assert row.expect.retry_after is None or error.retry_after == row.expect.retry_after
            assert WRONG_KEY not in str(error) + repr(error)
        else:
            prediction = clf.classify(IMAGE)
            assert prediction.label == ("abstract_" if backend.endswith(":categories") else "horizontal")
    expected = row.expect.requests
    assert len(server.requests) in (expected if isinstance(expected, range) else [expected])
    if isinstance(row.expect, Answers) and row.expect.requests > 1:
        gap = server.requests[-1].at - server.requests[-2].at
        # Only the lower bound: a retry never comes before the server's Retry-After. Upper bounds on
        # wall-clock time would only measure how busy the machine is (speed lives in benchmarks/).
        assert gap >= row.expect.min_gap


# -- against the emulator: the real services' own answers ---------------------------------------------
@dataclass(frozen=True)
class EmulatorRow:
    id: str
    backend: str
    options: Mapping[str, Any]
    expect: Raises


EMULATOR_ROWS = [
    EmulatorRow("wrong-key", "custom_vision", {"key": WRONG_KEY}, Raises(AuthenticationError, "ccess denied", status=401)),
    EmulatorRow("wrong-key", "image_analysis", {"key": WRONG_KEY}, Raises(AuthenticationError, "ccess denied", status=401)),
    EmulatorRow("wrong-key", "image_analysis:categories", {"key": WRONG_KEY},
                Raises(AuthenticationError, "ccess denied", status=401)),
    EmulatorRow("wrong-key", "azure_ml", {"key": WRONG_KEY}, Raises(AuthenticationError, "ccess denied", status=401)),
    EmulatorRow("unknown-project", "custom_vision", {"project_id": A_UUID}, Raises(NotFoundError, status=404)),
    EmulatorRow("unpublished-iteration", "custom_vision", {"iteration": "Iteration 1"},
                Raises(NotFoundError, "Invalid iteration", status=404)),
    EmulatorRow("detect-on-a-classifier", "custom_vision", {"task": "detection"},
                Raises(ServiceError, "not an object detection model", status=400)),
    EmulatorRow("scoring-script-raises", "azure_ml", {"endpoint": "raising", "request_format": "json"},
                Raises(ServiceError, "the scoring script failed", status=424)),
    EmulatorRow("unknown-answer-shape", "azure_ml", {"endpoint": "shapeless", "request_format": "json"},
                Raises(ServiceError, "first bytes '{\"verdict\": \"probably a cat\"")),
    EmulatorRow("unknown-deployment", "azure_ml", {"deployment": "purple"},
                Raises(NotFoundError, "deployment 'purple'", status=404)),
    EmulatorRow("unknown-endpoint", "azure_ml", {"endpoint": "nonexistent"}, Raises(NotFoundError, status=404)),
]  # fmt: skip


def _emulator_backend(world: World, name: str, options: Mapping[str, Any]) -> BaseBackend:
    options = dict(options)
    emu = world.emulator
    key = options.pop("key", None)
    if name == "custom_vision":
        args: dict[str, Any] = {"key": key or emu.prediction_key, "project_id": world.project_id}
        args["iteration"] = PUBLISH_NAME
        return CustomVisionBackend(emu.endpoint, **(args | options), retry=NO_RETRY)
    if name.startswith("image_analysis"):
        return ImageAnalysisBackend(emu.endpoint, key or emu.vision_key, mode=_mode(name), retry=NO_RETRY)
    aml = world.aml
    endpoint = options.pop("endpoint", "classifier")
    uri = (
        f"{aml.endpoint}/aml/{endpoint}/score" if endpoint == "nonexistent" else aml.aml_scoring_uri(endpoint)
    )
    return AzureMLEndpointBackend(uri, key or aml.aml_key, **options, retry=NO_RETRY)


@pytest.mark.parametrize("row", EMULATOR_ROWS, ids=[f"{row.id}/{row.backend}" for row in EMULATOR_ROWS])
def test_emulated_service_failure(row: EmulatorRow, world: World) -> None:
    with _emulator_backend(world, row.backend, row.options) as clf, pytest.raises(row.expect.error) as info:
        clf.classify(IMAGE)
    error = info.value
    assert row.expect.says in str(error)
    assert row.expect.status is None or error.status_code == row.expect.status
    assert not (isinstance(error, ServiceError) and error.status_code == 424 and error.retryable)
    text = str(error) + repr(error)
    assert WRONG_KEY not in text
    assert all(key not in text for key in world.secret_keys())


@pytest.mark.azvision_emulator(fail_rate=0.3, drop_rate=0.15, seed=11)
def test_a_batch_through_5xx_and_dropped_connections_gets_every_answer(azvision_emulator: Emulator) -> None:
    images = [encode(stripes("horizontal" if i % 2 else "vertical", 40 + i)) for i in range(16)]
    patient = RetryPolicy(max_attempts=8, backoff_base=0.05, backoff_max=0.2, deadline=30)
    with ImageAnalysisBackend(azvision_emulator.endpoint, azvision_emulator.vision_key, retry=patient) as clf:
        outcomes = list(clf.classify_many(images, concurrency=4))
    assert all(isinstance(o, Prediction) for o in outcomes), [
        o for o in outcomes if not isinstance(o, Prediction)
    ]
    [counts] = azvision_emulator.stats().values()
    assert (
        counts["200"] == 16
        and counts.get("500", 0) + counts.get("503", 0) > 0
        and counts.get("dropped", 0) > 0
    )


@pytest.mark.azvision_emulator(rate_limit_tps=4, seed=5)
def test_a_batch_over_the_quota_waits_as_told_and_gets_every_answer(azvision_emulator: Emulator) -> None:
    images = [encode(stripes("horizontal", 60 + i)) for i in range(10)]
    patient = RetryPolicy(max_attempts=10, deadline=30)
    with ImageAnalysisBackend(azvision_emulator.endpoint, azvision_emulator.vision_key, retry=patient) as clf:
        outcomes = list(clf.classify_many(images, concurrency=6))
    assert all(isinstance(o, Prediction) for o in outcomes)
    [counts] = azvision_emulator.stats().values()
    assert counts["200"] == 10 and counts.get("429", 0) > 0
