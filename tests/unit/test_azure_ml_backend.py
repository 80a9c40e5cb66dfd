"""AzureMLEndpointBackend without sockets: every request format, answer shape, auth mode and error (respx)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
from typing import Any

import httpx
import numpy as np
import pytest
import respx
from azure.core.credentials import AccessToken
from PIL import Image

from azvision import (
    AuthenticationError,
    BackendConnectionError,
    BackendTimeoutError,
    ConfigurationError,
    Label,
    NotFoundError,
    Prediction,
    RateLimitError,
    RetryPolicy,
    ServiceError,
    create_classifier,
)
from azvision._images import LoadedImage
from azvision.backends._aml_formats import parse_answer
from azvision.backends.azure_ml import TOKEN_SCOPE, AzureMLEndpointBackend
from tests.conftest import make_png

URI = "https://dogs.westeurope.inference.ml.azure.com/score"
KEY = "aml-secret-key-0123456789"
NO_RETRY = RetryPolicy(max_attempts=1)
FAST_RETRY = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_max=0.02)
AUTOML = [
    {"probs": [2.098e-06, 4.783e-08, 0.999, 8.637e-06], "labels": ["can", "carton", "milk_bottle", "water"]}
]


@pytest.fixture
def router() -> Any:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


def backend(**options: Any) -> AzureMLEndpointBackend:
    options.setdefault("retry", NO_RETRY)
    return AzureMLEndpointBackend(URI, options.pop("key", KEY), **options)


def _answer(router: Any, *responses: httpx.Response) -> Any:
    route = router.post(URI)
    route.side_effect = list(responses)
    return route


# -- answer shapes ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (AUTOML, ("milk_bottle", 0.999)),
        ([{"probs": [0.997, 0.96, 0.025], "labels": ["a", "b", "c"]}], ("a", 0.997)),  # multilabel
        ({"label": "cat", "confidence": 0.8}, ("cat", 0.8)),
        ({"label": "cat", "probability": 0.7}, ("cat", 0.7)),
        ({"labels": ["cat", "dog"], "probabilities": [0.3, 0.7]}, ("dog", 0.7)),
        ({"labels": [{"name": "cat", "confidence": 0.9}, {"name": "dog", "confidence": 0.1}]}, ("cat", 0.9)),
        (
            {"predictions": [{"tagName": "dog", "probability": 0.6, "tagId": "t1"}], "project": ""},
            ("dog", 0.6),
        ),
        ({"cat": 0.25, "dog": 0.75}, ("dog", 0.75)),
        (json.dumps({"label": "cat", "confidence": 0.8}), ("cat", 0.8)),  # score.py returned a JSON str
        (json.dumps(json.dumps(AUTOML)), ("milk_bottle", 0.999)),
    ],
)
def test_every_preset_shape_is_read(body: Any, expected: tuple[str, float]) -> None:
    prediction = parse_answer(json.dumps(body).encode(), model="blue")
    assert (prediction.label, prediction.confidence) == expected
    assert prediction.backend == "azure_ml" and prediction.model == "blue"
    confidences = [lab.confidence for lab in prediction.labels]
    assert confidences == sorted(confidences, reverse=True)


def test_automl_detection_boxes_become_normalised_label_boxes() -> None:
    body = [{"boxes": [{"box": {"topX": 0.224, "topY": 0.285, "bottomX": 0.399, "bottomY": 0.620},
                        "label": "milk_bottle", "score": 0.937}]}]  # fmt: skip
    top = parse_answer(json.dumps(body).encode()).labels[0]
    assert top.name == "milk_bottle" and top.confidence == 0.937
    assert top.box is not None
    assert (top.box.left, top.box.top) == (0.224, 0.285)
    assert top.box.right == pytest.approx(0.399) and top.box.bottom == pytest.approx(0.620)


def test_custom_vision_container_boxes_are_kept() -> None:
    body = {"predictions": [{"tagName": "cat", "probability": 0.9, "tagId": "42",
                             "boundingBox": {"left": 0.1, "top": 0.2, "width": 0.3, "height": 0.95}}]}  # fmt: skip
    top = parse_answer(json.dumps(body).encode()).labels[0]
    assert top.id == "42" and top.box is not None
    assert top.box.height == pytest.approx(0.8)  # clipped to the image


def test_bare_probabilities_need_labels_and_get_them() -> None:
    for body in ([0.2, 0.8], [[0.2, 0.8]]):
        raw = json.dumps(body).encode()
        assert parse_answer(raw, labels=["cat", "dog"]).label == "dog"
        with pytest.raises(ServiceError, match=r"pass labels=\["):
            parse_answer(raw)
    with pytest.raises(ServiceError, match="2 labels but 3 probabilities"):
        parse_answer(b"[0.1, 0.2, 0.7]", labels=["cat", "dog"])
    assert parse_answer(b'[{"probs": [0.4, 0.6]}]', labels=["cat", "dog"]).label == "dog"


def test_a_named_preset_reads_only_its_shape() -> None:
    assert parse_answer(json.dumps(AUTOML).encode(), parser="automl").label == "milk_bottle"
    with pytest.raises(ServiceError, match="not the 'label' shape"):
        parse_answer(json.dumps(AUTOML).encode(), parser="label")
    with pytest.raises(ConfigurationError, match="unknown parser 'yaml'"):
        parse_answer(b"{}", parser="yaml")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "not JSON"),
        (b'[{"probs": [0.1, 0.9], "labels": ["cat", "do', "not JSON"),  # truncated
        (b'{"result": "ok", "items": []}', "no preset parser knows this shape"),
        (b"[]", "no preset parser knows this shape"),
        (b'{"label": "cat", "confidence": 4.2}', "must be a number in [0, 1]"),
        (b'{"labels": ["cat"], "probabilities": ["high"]}', "must be a number in [0, 1]"),
        (b'[{"boxes": [{"label": "cat", "score": 0.5}]}]', "no topX/topY"),
    ],
)
def test_unreadable_answers_raise_service_error_showing_the_first_bytes(body: bytes, reason: str) -> None:
    with pytest.raises(ServiceError) as info:
        parse_answer(body)
    message = str(info.value)
    assert message.startswith("could not parse the endpoint's answer: first bytes")
    assert body[:12].decode() in message and reason in message
    assert not info.value.retryable


def test_custom_parser_results_of_each_kind() -> None:
    def as_mapping(data: Any) -> dict[str, float]:
        return {c["class"]: c["p"] for c in data["classes"]}

    body = b'{"classes": [{"class": "cat", "p": 0.3}, {"class": "dog", "p": 0.7}]}'
    assert parse_answer(body, parser=as_mapping).label == "dog"
    assert parse_answer(body, parser=lambda d: [Label(name="x", confidence=0.5)]).label == "x"
    mine = parse_answer(
        body, parser=lambda d: Prediction(labels=[Label(name="y", confidence=1)], backend="me")
    )
    assert (mine.label, mine.backend, mine.raw) == ("y", "azure_ml", json.loads(body))
    assert parse_answer(b"cat", parser=lambda text: {text: 1.0}).label == "cat"  # non-JSON reaches it as text
    with pytest.raises(ServiceError, match="the parser raised KeyError") as info:
        parse_answer(body, parser=lambda d: d["missing"])
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(ConfigurationError, match="returned int"):
        parse_answer(body, parser=lambda d: 3)


# -- requests -----------------------------------------------------------------------------------------
def test_raw_request_sends_the_bytes_with_key_and_deployment(router: Any) -> None:
    route = _answer(router, httpx.Response(200, json=AUTOML))
    image = make_png()
    with backend(deployment="blue") as clf:
        prediction = clf.classify(image)
    sent = route.calls.last.request
    assert sent.content == image
    assert sent.headers["content-type"] == "application/octet-stream"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["azureml-model-deployment"] == "blue"
    assert prediction.label == "milk_bottle" and prediction.model == "blue"
    assert prediction.raw == AUTOML and prediction.latency_ms is not None


@pytest.mark.parametrize("fmt", ["automl", "json"])
def test_json_request_formats_carry_the_image_in_base64(router: Any, fmt: str) -> None:
    route = _answer(router, httpx.Response(200, json={"label": "cat", "confidence": 0.9}))
    image = make_png()
    with backend(request_format=fmt) as clf:
        clf.classify(image)
    sent = route.calls.last.request
    assert sent.headers["content-type"] == "application/json"
    assert "azureml-model-deployment" not in sent.headers  # endpoint traffic rules apply
    payload = json.loads(sent.content)
    encoded = payload["input_data"]["data"][0] if fmt == "automl" else payload["image"]
    if fmt == "automl":
        assert payload["input_data"]["columns"] == ["image"]
    assert base64.b64decode(encoded) == image


def test_callable_encoder_and_deployment_answered_by_the_service(router: Any) -> None:
    route = _answer(
        router, httpx.Response(200, json=[0.9, 0.1], headers={"azureml-model-deployment": "green"})
    )

    def as_csv(image: LoadedImage) -> tuple[str, bytes]:
        return "text/csv", f"{image.size[0] if image.size else 0},{len(image.data or b'')}".encode()

    with backend(request_format=as_csv, labels="cat, dog", deployment="blue") as clf:
        prediction = clf.classify(make_png((64, 48)))
        assert "request_format='as_csv'" in repr(clf)
    assert route.calls.last.request.content.startswith(b"64,")
    assert (prediction.label, prediction.model) == ("cat", "green")


def _noise_png(side: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_size_limit_depends_on_the_request_format(router: Any) -> None:
    route = _answer(router, *[httpx.Response(200, json={"cat": 1.0})] * 2)
    image = _noise_png(660)  # ~1.3 MB: fits a raw body, not a base64 one
    assert 1_100_000 < len(image) < 1_500_000
    with backend() as raw, backend(request_format="automl") as automl:
        raw.classify(image)
        automl.classify(image)
    assert route.calls[0].request.content == image
    sent = base64.b64decode(json.loads(route.calls[1].request.content)["input_data"]["data"][0])
    assert len(sent) <= 1_100_000
    assert Image.open(io.BytesIO(sent)).size == (660, 660)  # re-encoded smaller, same pixels count


# -- errors -------------------------------------------------------------------------------------------
def test_401_is_an_authentication_error_that_never_shows_the_key(router: Any) -> None:
    _answer(router, httpx.Response(401, text=""))
    with backend() as clf, pytest.raises(AuthenticationError) as info:
        clf.classify(make_png())
    assert "access denied" in str(info.value)
    assert KEY not in str(info.value) + repr(info.value) + repr(clf)


def test_404_names_the_unknown_deployment(router: Any) -> None:
    _answer(router, httpx.Response(404, json={"message": "No valid deployments to route to."}))
    with backend(deployment="purple") as clf, pytest.raises(NotFoundError) as info:
        clf.classify(make_png())
    assert "'purple'" in str(info.value) and "No valid deployments" in str(info.value)


def test_408_is_a_timeout_that_is_retried(router: Any) -> None:
    route = _answer(
        router, httpx.Response(408, text="upstream request timeout"), httpx.Response(200, json=AUTOML)
    )
    with backend(retry=FAST_RETRY) as clf:
        assert clf.classify(make_png()).label == "milk_bottle"
    assert route.call_count == 2
    _answer(router, httpx.Response(408, text="upstream request timeout"))
    with backend() as clf, pytest.raises(BackendTimeoutError):
        clf.classify(make_png())


def test_424_reports_the_model_status_and_is_not_retried(router: Any) -> None:
    route = _answer(
        router,
        httpx.Response(
            424,
            json={"message": "An unexpected error occurred in scoring script. Check the logs for more info."},
            headers={
                "ms-azureml-model-error-statuscode": "500",
                "ms-azureml-model-error-reason": "model_error",
            },
        ),
    )
    with backend(retry=FAST_RETRY) as clf, pytest.raises(ServiceError) as info:
        clf.classify(make_png())
    assert "status 500" in str(info.value) and "scoring script" in str(info.value)
    assert info.value.status_code == 424 and route.call_count == 1


def test_429_with_retry_after_is_honoured_then_succeeds(router: Any) -> None:
    route = _answer(
        router, httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(200, json=AUTOML)
    )
    with backend(retry=FAST_RETRY) as clf:
        assert clf.classify(make_png()).label == "milk_bottle"
    assert route.call_count == 2
    _answer(router, httpx.Response(429, headers={"Retry-After": "7"}))
    with backend() as clf, pytest.raises(RateLimitError) as info:
        clf.classify(make_png())
    assert info.value.retry_after == 7.0


def test_429_without_retry_after_backs_off(router: Any) -> None:
    route = _answer(router, *[httpx.Response(429, json={"message": "Too many pending requests"})] * 4)
    with backend(retry=FAST_RETRY) as clf, pytest.raises(RateLimitError) as info:
        clf.classify(make_png())
    assert info.value.retry_after is None and route.call_count == 4


def test_html_error_page_and_html_success_page(router: Any) -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    _answer(router, httpx.Response(502, text=page), httpx.Response(200, text=page))
    with backend() as clf:
        with pytest.raises(ServiceError, match="HTTP 502 with '<html>") as info:
            clf.classify(make_png())
        assert info.value.retryable
        with pytest.raises(ServiceError, match="could not parse the endpoint's answer: first bytes '<html>"):
            clf.classify(make_png())


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (httpx.ConnectError("refused"), BackendConnectionError),
        (httpx.ReadTimeout("slow"), BackendTimeoutError),
    ],
)
def test_transport_failures_are_typed(router: Any, failure: Exception, expected: type[Exception]) -> None:
    router.post(URI).mock(side_effect=failure)
    with backend() as clf, pytest.raises(expected) as info:
        clf.classify(make_png())
    assert isinstance(info.value.__cause__, httpx.HTTPError)


# -- configuration and auth ---------------------------------------------------------------------------
def test_settings_come_from_the_environment(router: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZUREML_SCORING_URI", URI)
    monkeypatch.setenv("AZUREML_ENDPOINT_KEY", KEY)
    monkeypatch.setenv("AZUREML_DEPLOYMENT", "blue")
    route = _answer(router, httpx.Response(200, json=AUTOML))
    with create_classifier("azure_ml", retry=NO_RETRY) as clf:
        assert clf.classify(make_png()).model == "blue"
    assert route.calls.last.request.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(clf)


def test_configuration_errors_name_argument_and_variable() -> None:
    with pytest.raises(ConfigurationError, match=r"scoring_uri.*AZUREML_SCORING_URI"):
        AzureMLEndpointBackend(key=KEY)
    for kwargs in ({}, {"key": KEY, "credential": FakeCredential()}):
        with pytest.raises(ConfigurationError) as info:
            AzureMLEndpointBackend(URI, **kwargs)
        assert all(word in str(info.value) for word in ("key=", "AZUREML_ENDPOINT_KEY", "credential="))
        assert KEY not in str(info.value)
    with pytest.raises(ConfigurationError, match="request_format 'xml'"):
        AzureMLEndpointBackend(URI, KEY, request_format="xml")


class FakeCredential:
    """A TokenCredential with a controllable clock: Entra ID itself cannot run offline."""

    def __init__(self, lifetime: float = 3600.0) -> None:
        self.lifetime = lifetime
        self.scopes: list[tuple[str, ...]] = []
        self._lock = threading.Lock()

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        import time

        with self._lock:
            self.scopes.append(scopes)
            time.sleep(0.02)  # a real token request takes a while; concurrent callers pile up here
            return AccessToken(f"entra-token-{len(self.scopes)}", int(time.time() + self.lifetime))


def test_entra_token_is_fetched_once_and_shared_by_threads(router: Any) -> None:
    route = _answer(router, *[httpx.Response(200, json=AUTOML)] * 8)
    credential = FakeCredential()
    with backend(key=None, credential=credential) as clf:
        outcomes = list(clf.classify_many([make_png()] * 8, concurrency=8))
        assert "auth='entra'" in repr(clf)
    assert all(isinstance(o, Prediction) for o in outcomes)
    assert credential.scopes == [(TOKEN_SCOPE,)]
    assert {c.request.headers["authorization"] for c in route.calls} == {"Bearer entra-token-1"}


def test_entra_token_is_renewed_five_minutes_before_expiry(router: Any) -> None:
    route = _answer(router, *[httpx.Response(200, json=AUTOML)] * 2)
    credential = FakeCredential(lifetime=240.0)  # already inside the 5-minute margin
    with backend(key=None, credential=credential) as clf:
        clf.classify(make_png())
        clf.classify(make_png())
    assert len(credential.scopes) == 2
    assert route.calls[1].request.headers["authorization"] == "Bearer entra-token-2"


def test_a_401_makes_the_next_request_fetch_a_new_token(router: Any) -> None:
    route = _answer(router, httpx.Response(401), httpx.Response(200, json=AUTOML))
    credential = FakeCredential()
    with backend(key=None, credential=credential) as clf:
        with pytest.raises(AuthenticationError):
            clf.classify(make_png())
        assert clf.classify(make_png()).label == "milk_bottle"
    assert [c.request.headers["authorization"] for c in route.calls] == [
        "Bearer entra-token-1",
        "Bearer entra-token-2",
    ]


def test_a_failing_credential_is_an_authentication_error(router: Any) -> None:
    class Broken:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            raise RuntimeError("no managed identity here")

    route = _answer(router, httpx.Response(200, json=AUTOML))
    with (
        backend(key=None, credential=Broken()) as clf,
        pytest.raises(AuthenticationError, match="Entra token"),
    ):
        clf.classify(make_png())
    assert route.call_count == 0

    class AsyncCredential:
        async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            raise AssertionError("never called")

    with pytest.raises(ConfigurationError, match=r"azure\.identity\.aio"):
        AzureMLEndpointBackend(URI, credential=AsyncCredential())  # type: ignore[arg-type]


# -- async and event loops ----------------------------------------------------------------------------
def test_native_async_path_across_event_loops(router: Any) -> None:
    route = _answer(router, *[httpx.Response(200, json=AUTOML)] * 6)
    credential = FakeCredential()
    clf = backend(key=None, credential=credential)

    async def twice() -> list[str | None]:
        return [(await clf.aclassify(make_png())).label for _ in range(2)]

    assert asyncio.run(twice()) == ["milk_bottle"] * 2
    assert asyncio.run(twice()) == ["milk_bottle"] * 2  # a new loop gets its own connections
    assert [type(o) for o in clf.classify_many([make_png(), make_png()])] == [Prediction] * 2
    asyncio.run(clf.aclose())
    assert route.call_count == 6 and len(credential.scopes) == 1
    with pytest.raises(RuntimeError, match="closed"):
        clf.classify(make_png())
