"""ImageAnalysisBackend without sockets: mapping of every reference answer, LabelMap, settings, and the
v3.2 categories path over httpx (respx)."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import httpx
import pytest
import respx
from azure.core.credentials import AccessToken, AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError
from PIL import Image

from azvision import (
    AuthenticationError,
    BackendConnectionError,
    Classifier,
    ConfigurationError,
    ImageAnalysisBackend,
    InvalidImageError,
    Label,
    RateLimitError,
    RetryPolicy,
    ServiceError,
    create_classifier,
)
from azvision.backends._taxonomy import CATEGORIES
from azvision.backends.image_analysis import LabelMap, prediction_from_image_analysis
from tests.conftest import make_png

ENDPOINT = "https://myvision.cognitiveservices.azure.com"
ANALYZE_V32 = f"{ENDPOINT}/vision/v3.2/analyze"
KEY = "vision-secret-key-0123456789abcdef"
NO_RETRY = RetryPolicy(max_attempts=1)

# Image Analysis 4.0 swagger example AnalyzeFromUrl_MaximumSet (reference §3.2), trimmed.
IA40 = {
    "modelVersion": "2023-10-01",
    "captionResult": {
        "text": "a woman wearing a mask sitting at a table with a laptop",
        "confidence": 0.8498,
    },
    "metadata": {"width": 864, "height": 576},
    "tagsResult": {
        "values": [
            {"name": "furniture", "confidence": 0.9874445199966431},
            {"name": "clothing", "confidence": 0.9792501926422119},
            {"name": "person", "confidence": 0.9427268505096436},
            {"name": "laptop", "confidence": 0.8966},
            {"name": "table", "confidence": 0.712},
        ]
    },
    "objectsResult": {
        "values": [
            {
                "boundingBox": {"x": 603, "y": 225, "w": 152, "h": 224},
                "tags": [{"name": "chair", "confidence": 0.618}],
            },
            {
                "boundingBox": {"x": 0, "y": 380, "w": 880, "h": 200},
                "tags": [{"name": "Laptop", "confidence": 0.501}, {"name": "computer", "confidence": 0.7}],
            },
        ]
    },
    "peopleResult": {
        "values": [{"boundingBox": {"x": 395, "y": 241, "w": 261, "h": 333}, "confidence": 0.96}]
    },
}
# Computer Vision v3.2 swagger example SuccessfulAnalyzeImageWithUrl (reference §3.5).
CV32 = {
    "categories": [
        {"name": "abstract_", "score": 0.00390625},
        {
            "name": "people_",
            "score": 0.83984375,
            "detail": {"celebrities": [{"name": "Satya Nadella", "confidence": 0.999}]},
        },
        {
            "name": "building_",
            "score": 0.984375,
            "detail": {"landmarks": [{"name": "Forbidden City", "confidence": 0.98}]},
        },
    ],
    "requestId": "0dbec5ad-a3d3-4f7e-96b4-dfd57efe967d",
    "metadata": {"width": 1500, "height": 1000, "format": "Jpeg"},
    "modelVersion": "2021-04-01",
}


# -- the mapping ---------------------------------------------------------------------------------


def test_tags_mode_gives_tags_and_the_caption() -> None:
    p = prediction_from_image_analysis(IA40, source="office.jpg")
    assert [lab.name for lab in p.labels] == ["furniture", "clothing", "person", "laptop", "table"]
    assert p.confidence == pytest.approx(0.9874445199966431)
    assert p.caption == "a woman wearing a mask sitting at a table with a laptop"
    assert (p.backend, p.model, p.source) == ("image_analysis", "2023-10-01", "office.jpg")
    assert all(lab.box is None for lab in p.labels)
    assert p.raw == IA40


def test_objects_mode_boxes_are_normalised_and_named_by_the_best_tag() -> None:
    p = prediction_from_image_analysis(IA40, mode="objects")
    assert [lab.name for lab in p.labels] == ["computer", "chair"]
    chair = p.labels[1].box
    assert chair is not None
    assert (chair.left, chair.top, chair.width, chair.height) == pytest.approx(
        (603 / 864, 225 / 576, 152 / 864, 224 / 576)
    )
    wide = p.labels[0].box
    assert wide is not None and wide.right == 1.0  # 880 px on an 864 px image: clipped


def test_objects_mode_without_size_metadata_is_a_service_error() -> None:
    body = {k: v for k, v in IA40.items() if k != "metadata"}
    with pytest.raises(ServiceError, match="metadata"):
        prediction_from_image_analysis(body, mode="objects")


def test_min_confidence_drops_weak_labels() -> None:
    p = prediction_from_image_analysis(IA40, min_confidence=0.95)
    assert [lab.name for lab in p.labels] == ["furniture", "clothing"]


def test_categories_mode_uses_v32_category_scores() -> None:
    p = prediction_from_image_analysis(CV32, mode="categories")
    assert [(lab.name, lab.confidence) for lab in p.labels] == [
        ("building_", 0.984375),
        ("people_", 0.83984375),
        ("abstract_", 0.00390625),
    ]
    assert p.model == "2021-04-01" and p.caption is None
    assert all(lab.name in CATEGORIES for lab in p.labels)


def test_categories_caption_comes_from_the_v32_description() -> None:
    body = {
        **CV32,
        "description": {"tags": ["man"], "captions": [{"text": "a man in a suit", "confidence": 0.9}]},
    }
    assert prediction_from_image_analysis(body, mode="categories").caption == "a man in a suit"


def test_an_answer_without_the_feature_gives_no_labels() -> None:
    p = prediction_from_image_analysis({"modelVersion": "2023-10-01", "metadata": {"width": 9, "height": 9}})
    assert p.labels == () and p.caption is None


@pytest.mark.parametrize(
    ("body", "mode"),
    [
        ([1, 2], "tags"),
        ({"tagsResult": {"values": [{"confidence": 0.5}]}}, "tags"),
        ({"tagsResult": {"values": [{"name": "cat", "confidence": None}]}}, "tags"),
        ({"tagsResult": "cat"}, "tags"),
        ({"categories": {"name": "people_"}}, "categories"),
        (
            {
                "metadata": {"width": 10, "height": 10},
                "objectsResult": {"values": [{"tags": [{"name": "x", "confidence": 1}]}]},
            },
            "objects",
        ),
    ],
)
def test_malformed_answers_raise_service_error(body: Any, mode: Any) -> None:
    with pytest.raises(ServiceError):
        prediction_from_image_analysis(body, mode=mode)


# -- LabelMap ------------------------------------------------------------------------------------


def test_label_map_folds_tags_into_your_labels_with_the_max_confidence() -> None:
    p = prediction_from_image_analysis(
        IA40, label_map={"office": ["furniture", "table", "laptop"], "human": "person", "pet": ["dog"]}
    )
    assert [(lab.name, lab.confidence) for lab in p.labels] == [
        ("office", pytest.approx(0.9874445199966431)),
        ("human", pytest.approx(0.9427268505096436)),
    ]


def test_label_map_matching_ignores_case_and_spacing_and_supports_globs() -> None:
    lm = LabelMap({"screen": ["  LAPTOP "], "animal": "animal_*", "cloth": "cloth?ng"})
    assert lm.targets("laptop") == ["screen"]
    assert lm.targets("animal_dog") == ["animal"] and lm.targets("animal_") == ["animal"]
    assert lm.targets("clothing") == ["cloth"]
    assert lm.targets("person") == []


def test_one_service_label_may_feed_several_of_yours() -> None:
    lm = LabelMap({"pet": ["dog"], "animal": ["dog", "cat"]})
    folded = lm.fold([Label(name="dog", confidence=0.8)])
    assert {(lab.name, lab.confidence) for lab in folded} == {("pet", 0.8), ("animal", 0.8)}


def test_a_callable_label_map_names_or_drops_each_tag() -> None:
    p = prediction_from_image_analysis(IA40, label_map=lambda tag: "thing" if tag != "person" else None)
    assert [(lab.name, lab.confidence) for lab in p.labels] == [("thing", pytest.approx(0.9874445199966431))]


def test_label_map_in_objects_mode_keeps_one_label_per_box() -> None:
    p = prediction_from_image_analysis(
        IA40, mode="objects", label_map={"device": ["laptop", "computer"], "seat": "chair"}
    )
    assert [(lab.name, lab.confidence) for lab in p.labels] == [("device", 0.7), ("seat", 0.618)]
    assert p.labels[0].box is not None and p.labels[0].box.top == pytest.approx(380 / 576)


def test_label_map_in_categories_mode() -> None:
    p = prediction_from_image_analysis(
        CV32, mode="categories", label_map={"person": "people_*", "place": "building_*"}
    )
    assert [lab.name for lab in p.labels] == ["place", "person"]


@pytest.mark.parametrize("bad", [{"pet": [""]}, {"pet": [3]}, ["dog", "cat"]])
def test_malformed_label_maps_are_configuration_errors(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="label_map"):
        LabelMap(bad)


# -- settings ------------------------------------------------------------------------------------


def test_settings_come_from_vision_endpoint_and_vision_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISION_ENDPOINT", ENDPOINT + "/")
    monkeypatch.setenv("VISION_KEY", KEY)
    with create_classifier("image_analysis") as clf:
        assert isinstance(clf, ImageAnalysisBackend) and isinstance(clf, Classifier)
        assert clf.endpoint == ENDPOINT


def test_neither_key_nor_credential_names_both_ways() -> None:
    with pytest.raises(ConfigurationError) as info:
        ImageAnalysisBackend(ENDPOINT)
    assert all(word in str(info.value) for word in ("key", "VISION_KEY", "credential"))


def test_key_and_credential_together_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="either key or credential"):
        ImageAnalysisBackend(ENDPOINT, KEY, credential=AzureKeyCredential(KEY))


class FakeTokenCredential:
    """A TokenCredential: azure-identity's protocol, counting how often a token is fetched."""

    def __init__(self, lifetime: float = 3600.0) -> None:
        self.lifetime = lifetime
        self.calls: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls.append(scopes)
        return AccessToken(f"entra-token-{len(self.calls)}", int(time.time() + self.lifetime))


def test_tokens_are_never_sent_over_plain_http_except_to_loopback() -> None:
    with pytest.raises(ConfigurationError, match="https"):
        ImageAnalysisBackend("http://vision.example.com", credential=FakeTokenCredential())
    ImageAnalysisBackend("http://127.0.0.1:8123", credential=FakeTokenCredential()).close()
    ImageAnalysisBackend("http://vision.example.com", KEY).close()  # a key over http is the user's call


def test_features_are_normalised_and_the_mode_feature_added() -> None:
    with ImageAnalysisBackend(ENDPOINT, KEY, features=["Caption", "dense_captions"], mode="objects") as clf:
        assert clf.features == ("caption", "denseCaptions", "objects")
    with pytest.raises(ConfigurationError, match="smartCrops"):
        ImageAnalysisBackend(ENDPOINT, KEY, features=["colour"])
    with pytest.raises(ConfigurationError, match="mode"):
        ImageAnalysisBackend(ENDPOINT, KEY, mode="faces")  # type: ignore[arg-type]


def test_a_categories_label_map_typo_is_caught_before_any_call() -> None:
    with pytest.raises(ConfigurationError, match="did you mean animal_dog"):
        ImageAnalysisBackend(ENDPOINT, KEY, mode="categories", label_map={"pet": ["dog"]})


def test_repr_never_shows_the_key() -> None:
    with ImageAnalysisBackend(ENDPOINT, KEY, mode="categories") as clf:
        assert KEY not in repr(clf) and KEY not in str(vars(clf))
        assert ENDPOINT in repr(clf) and "categories" in repr(clf)


# -- the v3.2 categories path over httpx ---------------------------------------------------------


@pytest.fixture
def router() -> Any:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


def categories(**options: Any) -> ImageAnalysisBackend:
    options.setdefault("retry", NO_RETRY)
    return ImageAnalysisBackend(ENDPOINT, options.pop("key", KEY), mode="categories", **options)


def test_categories_request_sends_the_image_bytes_with_the_key(router: Any) -> None:
    route = router.post(ANALYZE_V32).mock(return_value=httpx.Response(200, json=CV32))
    image = make_png((80, 60))
    with categories(features=("tags", "caption"), language="es") as clf:
        p = clf.classify(image)
    assert p.label == "building_" and p.backend == "image_analysis"
    sent = route.calls.last.request
    assert sent.url.params["visualFeatures"] == "Categories,Description"
    assert sent.url.params["language"] == "es"
    assert sent.headers["Ocp-Apim-Subscription-Key"] == KEY
    assert sent.headers["Content-Type"] == "application/octet-stream"
    assert sent.content == image


def test_categories_sends_urls_as_urls(router: Any) -> None:
    route = router.post(ANALYZE_V32).mock(return_value=httpx.Response(200, json=CV32))
    with categories() as clf:
        p = clf.classify("https://example.com/forbidden-city.jpg")
    assert json.loads(route.calls.last.request.content) == {"url": "https://example.com/forbidden-city.jpg"}
    assert route.calls.last.request.url.params["visualFeatures"] == "Categories"
    assert p.source == "https://example.com/forbidden-city.jpg"


def test_categories_with_a_token_credential_sends_a_cached_bearer_token(router: Any) -> None:
    route = router.post(ANALYZE_V32).mock(return_value=httpx.Response(200, json=CV32))
    credential = FakeTokenCredential()
    with ImageAnalysisBackend(ENDPOINT, credential=credential, mode="categories", retry=NO_RETRY) as clf:
        clf.classify(make_png((80, 60)))
        clf.classify(make_png((80, 60)))
    assert credential.calls == [("https://cognitiveservices.azure.com/.default",)]
    assert route.calls.last.request.headers["Authorization"] == "Bearer entra-token-1"
    assert "Ocp-Apim-Subscription-Key" not in route.calls.last.request.headers


def test_a_token_about_to_expire_is_refreshed(router: Any) -> None:
    route = router.post(ANALYZE_V32).mock(return_value=httpx.Response(200, json=CV32))
    credential = FakeTokenCredential(lifetime=60)  # inside the five-minute margin
    with ImageAnalysisBackend(ENDPOINT, credential=credential, mode="categories", retry=NO_RETRY) as clf:
        clf.classify(make_png((80, 60)))
        clf.classify(make_png((80, 60)))
    assert len(credential.calls) == 2
    assert route.calls.last.request.headers["Authorization"] == "Bearer entra-token-2"


def test_categories_images_over_4_mb_are_shrunk_to_fit_v32(router: Any) -> None:
    route = router.post(ANALYZE_V32).mock(return_value=httpx.Response(200, json=CV32))
    buf = io.BytesIO()
    Image.new("RGB", (1200, 1200), (90, 120, 200)).save(buf, format="BMP")
    assert len(buf.getvalue()) > 4 * 1024 * 1024  # fine for 4.0 (20 MB), too big for v3.2
    with categories() as clf:
        clf.classify(buf.getvalue())
    sent = route.calls.last.request.content
    assert 0 < len(sent) <= 4 * 1024 * 1024
    assert Image.open(io.BytesIO(sent)).size == (1200, 1200)  # re-encoded, not cropped


def test_v32_rejects_webp_that_40_would_take(router: Any) -> None:
    route = router.post(ANALYZE_V32).mock(return_value=httpx.Response(200, json=CV32))
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 10)).save(buf, format="WEBP")
    with categories() as clf:
        p = clf.classify(buf.getvalue())
    assert route.calls.last.request.content.startswith(b"\x89PNG")  # converted, not sent as WEBP
    assert p.notes


def test_v32_error_envelopes_become_typed_errors(router: Any) -> None:
    router.post(ANALYZE_V32).mock(
        side_effect=[
            httpx.Response(
                401,
                json={"error": {"code": "401", "message": "Access denied due to invalid subscription key."}},
            ),
            httpx.Response(
                400,
                json={
                    "error": {
                        "code": "InvalidRequest",
                        "message": "Image format is not valid.",
                        "innererror": {
                            "code": "InvalidImageFormat",
                            "message": "Input data is not a valid image.",
                        },
                    }
                },
                headers={"apim-request-id": "req-123"},
            ),
            httpx.Response(500, text="<html>oops</html>"),
        ]
    )
    with categories() as clf:
        with pytest.raises(AuthenticationError) as auth:
            clf.classify(make_png((80, 60)))
        with pytest.raises(InvalidImageError) as image:
            clf.classify(make_png((80, 60)))
        with pytest.raises(ServiceError) as server:
            clf.classify(make_png((80, 60)))
    assert KEY not in str(auth.value) and "invalid subscription key" in str(auth.value)
    assert image.value.code == "InvalidImageFormat" and image.value.request_id == "req-123"
    assert server.value.status_code == 500 and server.value.retryable


def test_v32_throttling_is_retried_after_the_time_the_service_asks(router: Any) -> None:
    route = router.post(ANALYZE_V32).mock(
        side_effect=[
            httpx.Response(
                429, json={"error": {"code": "429", "message": "Rate limit"}}, headers={"Retry-After": "0.2"}
            ),
            httpx.Response(200, json=CV32),
        ]
    )
    with categories(retry=RetryPolicy(max_attempts=3)) as clf:
        started = time.monotonic()
        p = clf.classify(make_png((80, 60)))
        elapsed = time.monotonic() - started
    assert p.label == "building_" and route.call_count == 2 and elapsed >= 0.2


def test_v32_throttling_that_outlasts_the_retries_is_a_rate_limit_error(router: Any) -> None:
    router.post(ANALYZE_V32).mock(
        return_value=httpx.Response(
            429, json={"error": {"code": "429", "message": "slow"}}, headers={"Retry-After": "7"}
        )
    )
    with categories() as clf, pytest.raises(RateLimitError) as info:
        clf.classify(make_png((80, 60)))
    assert info.value.retry_after == 7.0


def test_v32_dropped_connections_and_non_json_answers(router: Any) -> None:
    router.post(ANALYZE_V32).mock(
        side_effect=[httpx.ConnectError("connection refused"), httpx.Response(200, text="not json")]
    )
    with categories() as clf:
        with pytest.raises(BackendConnectionError):
            clf.classify(make_png((80, 60)))
        with pytest.raises(ServiceError, match="not JSON"):
            clf.classify(make_png((80, 60)))


class FailingCredential:
    """A TokenCredential that cannot get a token, as azure-identity reports it."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")


@pytest.mark.parametrize("mode", ["tags", "categories"])
def test_a_credential_that_cannot_get_a_token_is_an_authentication_error(router: Any, mode: Any) -> None:
    route = router.post(ANALYZE_V32).mock(return_value=httpx.Response(200, json=CV32))
    clf = ImageAnalysisBackend(ENDPOINT, credential=FailingCredential(), mode=mode, retry=NO_RETRY)
    with clf, pytest.raises(AuthenticationError, match="could not get a token"):
        clf.classify(make_png((80, 60)))
    assert route.call_count == 0  # nothing was sent
