"""AzureOpenAIBackend without a server: configuration, token rules, answer parsing and error mapping."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

openai = pytest.importorskip("openai")
httpx2 = pytest.importorskip("httpx2")

from azvision import (  # noqa: E402
    AuthenticationError,
    AzureOpenAIBackend,
    ConfigurationError,
    InvalidImageError,
    NotFoundError,
    RateLimitError,
    ServiceError,
    create_classifier,
)
from azvision._retry import Pacer, Throttle, VirtualClock  # noqa: E402
from azvision.backends._aoai_answer import (  # noqa: E402
    CONFIDENCE_FROM_LOGPROBS,
    CONFIDENCE_WITHOUT_LOGPROBS,
    parse_completion,
)
from azvision.backends._aoai_errors import error_from_openai  # noqa: E402
from azvision.backends._aoai_tokens import image_tokens  # noqa: E402

from ..conftest import make_png  # noqa: E402

ENDPOINT = "https://res.openai.azure.com"


def backend(**options: Any) -> AzureOpenAIBackend:
    settings: dict[str, Any] = {"key": "secret-key-123", "deployment": "gpt-4o", "labels": ["cat", "dog"]}
    return AzureOpenAIBackend(ENDPOINT, **{**settings, **options})


@pytest.mark.parametrize(
    ("size", "detail", "tokens"),
    [
        ((4000, 3000), "low", 85),
        ((1024, 1024), "high", 765),  # 768x768: 4 tiles
        ((2048, 4096), "high", 1105),  # 1024x2048 -> 768x1536: 6 tiles
        ((512, 512), "high", 255),
        ((300, 200), "auto", 85),
    ],
)
def test_image_tokens_follow_the_documented_rules(size: tuple[int, int], detail: str, tokens: int) -> None:
    assert image_tokens(*size, detail) == tokens


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", ENDPOINT + "/")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "env-key-456")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT", "gpt-4.1")
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
    clf = create_classifier("azure_openai", labels="cat,dog")
    assert isinstance(clf, AzureOpenAIBackend)
    assert (clf.endpoint, clf.deployment, clf.style) == (ENDPOINT, "gpt-4.1", "classic")
    assert "env-key-456" not in repr(clf)
    clf.close()


def test_missing_settings_name_argument_and_variable() -> None:
    with pytest.raises(ConfigurationError, match="AZURE_OPENAI_DEPLOYMENT"):
        AzureOpenAIBackend(ENDPOINT, key="k", labels=["a", "b"])
    with pytest.raises(ConfigurationError, match="AZURE_OPENAI_API_KEY"):
        AzureOpenAIBackend(ENDPOINT, deployment="gpt-4o", labels=["a", "b"])
    with pytest.raises(ConfigurationError, match="at least two"):
        backend(labels=["cat"])
    with pytest.raises(ConfigurationError, match="detail"):
        backend(detail="medium")


def test_examples_are_checked_before_any_call() -> None:
    with pytest.raises(ConfigurationError, match="'bird'"):
        backend(examples={"bird": [make_png()]})
    with pytest.raises(InvalidImageError):
        backend(examples={"cat": [b"not an image"]})


def test_more_than_nine_examples_are_chosen_in_turn_per_label_and_noted() -> None:
    def shade(label: str, i: int) -> bytes:
        return make_png((16, 16), (i * 20, 0, 0) if label == "cat" else (0, i * 20, 0))

    given = {"cat": [shade("cat", i) for i in range(7)], "dog": [shade("dog", i) for i in range(3)]}
    labels = ["cat", "dog", "bird"]
    clf = backend(labels=labels, examples={**given, "bird": [make_png((16, 16), (0, 0, 200))]})
    assert clf.prompt.example_count == 9  # 11 given: 9 fit beside the image to classify
    request = clf._request(clf._load(make_png()))
    content = request["messages"][1]["content"]
    images = [part["image_url"]["url"] for part in content if part["type"] == "image_url"]
    assert len(images) == 10
    texts = [part["text"] for part in content if part["type"] == "text"]
    assert texts.count('Example of "cat":') == 5 and texts.count('Example of "dog":') == 3
    assert texts.count('Example of "bird":') == 1
    again = backend(labels=labels, examples={**given, "bird": [make_png((16, 16), (0, 0, 200))]})
    assert again._request(again._load(make_png()))["messages"] == request["messages"]  # deterministic
    assert clf.prompt.note == (
        "few-shot: 9 of 11 examples sent (cat 5, dog 3, bird 1): a request holds at most 10 images, "
        "the one to classify included; the labels take turns, first examples first"
    )
    nine = backend(examples={"cat": [make_png()] * 5, "dog": [make_png()] * 4})
    assert nine.prompt.example_count == 9 and nine.prompt.note is None


def test_request_cost_counts_images_text_and_the_completion_budget() -> None:
    zero = backend()
    few = backend(examples={"cat": [make_png((900, 700))], "dog": [make_png()]})
    image = zero._load(make_png((3000, 2000)))
    assert image.size == (512, 341)  # downscaled first, as detail=low would
    assert few._request_cost(image) - zero._request_cost(image) >= 2 * 85
    assert zero._request_cost(image) > zero.prompt.max_tokens + 85
    high = backend(detail="high")
    assert high._request_cost(high._load(make_png((1024, 1024)))) - zero._request_cost(image) == 765 - 85


def test_request_forces_the_labels_with_a_strict_schema() -> None:
    clf = backend(multilabel=True, instructions="Pets only.")
    request = clf._request(clf._load(make_png()))
    schema = request["response_format"]["json_schema"]
    assert schema["strict"] is True
    assert schema["schema"]["properties"]["labels"]["items"]["enum"] == ["cat", "dog"]
    assert schema["schema"]["additionalProperties"] is False
    assert request["logprobs"] is True and request["top_logprobs"] == 2
    assert "Pets only." in request["messages"][0]["content"]


def completion(
    content: str, tokens: list[tuple[str, float, list[tuple[str, float]]]] | None
) -> dict[str, Any]:
    logprobs = None
    if tokens is not None:
        logprobs = {
            "content": [
                {"token": t, "logprob": lp, "top_logprobs": [{"token": a, "logprob": b} for a, b in top]}
                for t, lp, top in tokens
            ]
        }
    return {
        "model": "gpt-4o-2024-11-20",
        "choices": [{"finish_reason": "stop", "message": {"content": content}, "logprobs": logprobs}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 6, "total_tokens": 126},
    }


def test_confidence_comes_from_the_label_tokens() -> None:
    body = completion(
        '{"label": "dogfish"}',
        [
            ('{"', 0.0, []),
            ("label", 0.0, []),
            ('":', 0.0, []),
            (' "', 0.0, []),
            ("dog", math.log(0.6), [("dog", math.log(0.6)), ("cat", math.log(0.3))]),
            ("fish", math.log(0.5), []),
            ('"}', 0.0, []),
        ],
    )
    labels = ("cat", "dogfish", "doge")
    prediction = parse_completion(body, labels=labels, multilabel=False, backend="azure_openai")
    assert prediction.label == "dogfish"
    assert prediction.confidence == pytest.approx(0.3)
    assert dict((lab.name, lab.confidence) for lab in prediction.labels)["cat"] == pytest.approx(0.3)
    assert prediction.notes == (CONFIDENCE_FROM_LOGPROBS,)
    assert prediction.usage == {"prompt_tokens": 120, "completion_tokens": 6, "total_tokens": 126}


def test_without_logprobs_the_fallback_is_documented_in_notes() -> None:
    body = completion(json.dumps({"labels": ["dog", "cat"]}), None)
    prediction = parse_completion(body, labels=("cat", "dog"), multilabel=True, backend="azure_openai")
    assert {lab.name for lab in prediction.labels} == {"cat", "dog"}
    assert all(lab.confidence == 1.0 for lab in prediction.labels)
    assert prediction.notes == (CONFIDENCE_WITHOUT_LOGPROBS,)


@pytest.mark.parametrize(
    ("content", "code"),
    [
        ('{"label": "bird"}', "label_not_in_labels"),
        ("a cat", "invalid_answer"),
        ('{"other": 1}', "invalid_answer"),
    ],
)
def test_an_answer_outside_the_labels_is_a_typed_error(content: str, code: str) -> None:
    with pytest.raises(ServiceError) as caught:
        parse_completion(completion(content, None), labels=("cat", "dog"), multilabel=False, backend="x")
    assert caught.value.code == code


def test_a_cut_off_or_filtered_answer_is_a_typed_error() -> None:
    for finish, code in (("length", "length"), ("content_filter", "content_filter")):
        body = completion('{"label": "ca', None)
        body["choices"][0]["finish_reason"] = finish
        with pytest.raises(ServiceError) as caught:
            parse_completion(body, labels=("cat", "dog"), multilabel=False, backend="x")
        assert caught.value.code == code


def status_error(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Exception:
    response = httpx2.Response(
        status, headers=headers or {}, json={"error": body}, request=httpx2.Request("POST", ENDPOINT)
    )
    client = openai.OpenAI(base_url=ENDPOINT, api_key="x", max_retries=0)
    return client._make_status_error_from_response(response)


def test_errors_keep_the_service_code_and_message() -> None:
    throttled = error_from_openai(
        status_error(
            429, {"code": "429", "message": "slow down"}, {"retry-after": "7", "retry-after-ms": "250"}
        ),
        backend="azure_openai",
    )
    assert isinstance(throttled, RateLimitError) and throttled.retry_after == 0.25
    only_seconds = error_from_openai(
        status_error(429, {"code": "429", "message": "x"}, {"retry-after": "3"}), backend="b"
    )
    assert only_seconds.retry_after == 3.0
    blocked = error_from_openai(
        status_error(
            400,
            {
                "code": "content_filter",
                "message": "filtered",
                "innererror": {"content_filter_result": {"violence": {"filtered": True}}},
            },
        ),
        backend="b",
    )
    assert isinstance(blocked, ServiceError) and blocked.code == "content_filter"
    assert "violence" in blocked.message and not blocked.retryable
    missing = error_from_openai(
        status_error(404, {"code": "DeploymentNotFound", "message": "nope"}), backend="b"
    )
    assert isinstance(missing, NotFoundError) and missing.code == "DeploymentNotFound"
    denied = error_from_openai(status_error(401, {"code": "401", "message": "Access denied"}), backend="b")
    assert isinstance(denied, AuthenticationError)
    long = error_from_openai(
        status_error(400, {"code": "context_length_exceeded", "message": "too long"}), backend="b"
    )
    assert isinstance(long, ServiceError) and long.code == "context_length_exceeded"


def test_examples_may_be_a_labelled_folder(tmp_path: Any) -> None:
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "1.png").write_bytes(make_png())
    assert backend(examples=tmp_path).prompt.example_count == 2
    with pytest.raises(ConfigurationError, match="not a folder"):
        backend(examples=str(tmp_path / "missing"))


# -- x-ratelimit-remaining-*: slowing down before the 429 -----------------------------------------------
def answering(clf: AzureOpenAIBackend, *reports: dict[str, str]) -> VirtualClock:
    """Serve ``clf`` one completion per report (its x-ratelimit headers); waits run in virtual time."""
    replies = iter(reports)

    def handler(request: Any) -> Any:
        return httpx2.Response(200, json=completion('{"label": "cat"}', None), headers=next(replies))

    clf._client = openai.OpenAI(
        base_url=ENDPOINT + "/openai/v1/",
        api_key="x",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    clock = VirtualClock()
    clf._clock, clf._sleep = clock.now, clock.sleep
    clf._throttle = Throttle(clf._throttle.max_rps, clock=clock.now)
    clf._cost_pacers = [Pacer(pacer.rate, clock=clock.now) for pacer in clf._cost_pacers]
    return clock


def test_a_known_quota_too_spent_for_the_next_request_holds_it() -> None:
    clf = backend(max_rpm=600, max_tpm=60_000)
    clock = answering(
        clf,
        {"x-ratelimit-remaining-tokens": "3000"},  # low, but the next request fits: the pacer has it
        {"x-ratelimit-remaining-tokens": "50", "x-ratelimit-remaining-requests": "400"},
    )
    png = make_png()
    assert clf.classify(png).label == "cat"
    assert clf._throttle.gate_until < clock.now()
    clf.classify(png)
    image = clf._load(png)
    # 50 tokens left, fewer than a request needs: new sends wait for the rest at 1,000 a second
    hold = (clf._request_cost(image) - 50) / 1000
    assert clf._throttle.gate_until == pytest.approx(clock.now() + hold)
    assert clf._state(image, None).send_wait() >= hold


def test_a_nearly_spent_unknown_quota_starts_the_learned_rate_without_a_429() -> None:
    clf = backend()
    answering(
        clf,
        {"x-ratelimit-remaining-requests": "300"},
        {"x-ratelimit-remaining-requests": "-1"},  # a gateway that does not know: ignored
        {"x-ratelimit-remaining-requests": "n/a", "x-ratelimit-remaining-tokens": ""},  # unreadable: ignored
        {"x-ratelimit-remaining-requests": "120"},
        {"x-ratelimit-remaining-requests": "20"},  # under a tenth of the most seen
    )
    for _ in range(4):
        clf.classify(make_png())
    assert clf._throttle.learned_rps is None
    clf.classify(make_png())
    assert clf._throttle.learned_rps is not None


def test_a_200_that_is_not_json_is_a_typed_error() -> None:
    clf = backend()
    clf._client = openai.OpenAI(
        base_url=ENDPOINT + "/openai/v1/",
        api_key="x",
        max_retries=0,
        http_client=httpx2.Client(
            transport=httpx2.MockTransport(lambda request: httpx2.Response(200, text="<html>proxy</html>"))
        ),
    )
    with pytest.raises(ServiceError) as caught:
        clf.classify(make_png())
    assert caught.value.code == "invalid_answer" and "not JSON" in caught.value.message
