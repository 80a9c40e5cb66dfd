"""CustomVisionBackend without sockets: the answer mapping on every reference shape, settings, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from azure.cognitiveservices.vision.customvision.prediction.models import CustomVisionErrorException
from msrest import Deserializer
from msrest.exceptions import ClientRequestError, DeserializationError

from azvision import (
    AuthenticationError,
    BackendConnectionError,
    BackendTimeoutError,
    Classifier,
    ConfigurationError,
    CustomVisionBackend,
    NotFoundError,
    RateLimitError,
    ServiceError,
    create_classifier,
)
from azvision._error_mapping import error_from_msrest
from azvision.backends.custom_vision import prediction_from_custom_vision

ENDPOINT = "https://westeurope.api.cognitive.microsoft.com/"
KEY = "cv-prediction-secret-0123456789abcdef"
PROJECT = "64b822c5-8082-4b36-a426-27225f4aa18c"

# Swagger examples (reference/azure-wire-formats.md §2.3): v3.0 classify, v3.1 detect.
CLASSIFY = {
    "id": "951098b2-9b69-427b-bddb-d5cb618874e3",
    "project": PROJECT,
    "iteration": "fe1e83c4-6f50-4899-9544-6bb08cf0e15a",
    "created": "2019-03-06T02:15:00Z",
    "predictions": [
        {"tagId": "e31ff107-5505-4753-be42-b369b21b026c", "tagName": "Hemlock", "probability": 0.05149666},
        {
            "tagId": "349d72ac-0948-4d51-b1e4-c14a1f9b848a",
            "tagName": "Japanese Cherry",
            "probability": 0.000193528482,
        },
    ],
}
DETECT = {
    "id": "64615ba1-b53f-e911-b05b-f8633f7a2ef1",
    "project": "fb5bc587-b53f-e911-b05b-f8633f7a2ef1",
    "iteration": "45c79472-7198-46e1-8ed7-bad2ca111957",
    "created": "2019-03-10T06:10:28Z",
    "predictions": [
        {
            "tagId": "7e703b80-3c7a-4c3c-bf48-9673c6891a75",
            "tagName": "Tag 1",
            "probability": 0.05149666,
            "boundingBox": {"left": 0.955476165, "top": 0, "width": 0.0412225723, "height": 0.156851858},
        },
        {
            "tagId": "a0d06a54-18e4-4787-a9f9-27a9c13a91e8",
            "tagName": "Tag 2",
            "probability": 0.000193528482,
            "boundingBox": {"left": 0.062178582, "top": 0, "width": 0.9378114, "height": 0.6830492},
        },
    ],
}


def test_classify_answer_maps_tags_probabilities_and_ids() -> None:
    p = prediction_from_custom_vision(CLASSIFY, iteration="Iteration1", source="tree.jpg")
    assert p.label == "Hemlock" and p.confidence == pytest.approx(0.05149666)
    assert [lab.name for lab in p.labels] == ["Hemlock", "Japanese Cherry"]
    assert p.labels[0].id == "e31ff107-5505-4753-be42-b369b21b026c"
    assert all(lab.box is None for lab in p.labels)
    assert (p.backend, p.model, p.source) == ("custom_vision", "Iteration1", "tree.jpg")
    assert p.raw == CLASSIFY


def test_labels_are_sorted_even_when_the_service_does_not_sort() -> None:
    body = {**CLASSIFY, "predictions": list(reversed(CLASSIFY["predictions"]))}
    assert prediction_from_custom_vision(body).label == "Hemlock"


def test_detect_answer_gives_boxes_clipped_to_the_image() -> None:
    p = prediction_from_custom_vision(DETECT, iteration="prod")
    first = p.labels[0]
    assert first.name == "Tag 1" and first.box is not None
    assert first.box.left == pytest.approx(0.955476165)
    assert first.box.right <= 1.0  # 0.955 + 0.041 overshoots the edge: clipped
    second = p.labels[1].box
    assert second is not None
    assert (second.top, second.height) == pytest.approx((0.0, 0.6830492))


def test_v31_tag_type_is_accepted_and_negative_tags_stay_labels() -> None:
    body = {
        **CLASSIFY,
        "predictions": [
            {"tagId": "a", "tagName": "Negative", "probability": 0.7, "tagType": "Negative"},
            {"tagId": "b", "tagName": "cat", "probability": 0.3, "tagType": "Regular"},
        ],
    }
    assert prediction_from_custom_vision(body).label == "Negative"


def test_empty_predictions_give_an_empty_prediction() -> None:
    p = prediction_from_custom_vision({**CLASSIFY, "predictions": []})
    assert p.labels == () and p.label is None and p.confidence == 0.0


def test_probability_rounding_past_one_is_clamped() -> None:
    body = {"predictions": [{"tagId": "a", "tagName": "cat", "probability": 1.0000004}]}
    assert prediction_from_custom_vision(body).confidence == 1.0


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"id": "x"},
        {"predictions": None},
        {"predictions": [{"probability": 0.5}]},
        {"predictions": [{"tagName": "cat", "probability": "high"}]},
        {"predictions": [{"tagName": "cat", "probability": float("nan")}]},
        {"predictions": [{"tagName": "cat", "probability": 0.5, "boundingBox": {"left": 0.1}}]},
    ],
)
def test_malformed_answers_raise_service_error(body: Any) -> None:
    with pytest.raises(ServiceError) as info:
        prediction_from_custom_vision(body)
    assert info.value.backend == "custom_vision"
    assert not info.value.retryable


# -- settings ------------------------------------------------------------------------------------


def test_settings_come_from_the_sample_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOM_VISION_PREDICTION_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("CUSTOM_VISION_PREDICTION_KEY", KEY)
    monkeypatch.setenv("CUSTOM_VISION_PROJECT_ID", PROJECT.upper())
    monkeypatch.setenv("CUSTOM_VISION_ITERATION_NAME", "Iteration7")
    with create_classifier("custom_vision") as clf:
        assert isinstance(clf, CustomVisionBackend) and isinstance(clf, Classifier)
        assert clf.endpoint == ENDPOINT.rstrip("/")
        assert clf.project_id == PROJECT  # normalised
        assert clf.iteration == "Iteration7"


def test_explicit_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOM_VISION_ITERATION_NAME", "from-env")
    with CustomVisionBackend(ENDPOINT, KEY, PROJECT, "explicit") as clf:
        assert clf.iteration == "explicit"


@pytest.mark.parametrize(
    ("missing", "variable"),
    [
        ("endpoint", "CUSTOM_VISION_PREDICTION_ENDPOINT"),
        ("key", "CUSTOM_VISION_PREDICTION_KEY"),
        ("project_id", "CUSTOM_VISION_PROJECT_ID"),
        ("iteration", "CUSTOM_VISION_ITERATION_NAME"),
    ],
)
def test_a_missing_setting_names_the_argument_and_the_variable(missing: str, variable: str) -> None:
    options: dict[str, Any] = {"endpoint": ENDPOINT, "key": KEY, "project_id": PROJECT, "iteration": "it"}
    del options[missing]
    with pytest.raises(ConfigurationError) as info:
        CustomVisionBackend(**options)
    assert missing in str(info.value) and variable in str(info.value)


def test_project_id_must_be_a_uuid_and_task_must_be_known() -> None:
    with pytest.raises(ConfigurationError, match="UUID"):
        CustomVisionBackend(ENDPOINT, KEY, "my-project", "it")
    with pytest.raises(ConfigurationError, match="classification"):
        CustomVisionBackend(ENDPOINT, KEY, PROJECT, "it", task="segmentation")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="https://"):
        CustomVisionBackend("westeurope.api.cognitive.microsoft.com", KEY, PROJECT, "it")


def test_repr_shows_where_it_points_but_never_the_key() -> None:
    with CustomVisionBackend(ENDPOINT, KEY, PROJECT, "prod", task="detection", store=False) as clf:
        text = repr(clf)
        assert KEY not in text and KEY not in str(vars(clf))
        assert PROJECT in text and "'prod'" in text and "detection" in text and "store=False" in text


def test_the_vendor_client_never_retries_and_uses_our_timeout() -> None:
    with CustomVisionBackend(ENDPOINT, KEY, PROJECT, "it", timeout=7.5) as clf:
        policy = clf._client.config.retry_policy()
        assert (policy.total, policy.connect, policy.read) == (0, 0, 0)
        assert policy.is_retry("POST", 503, False) is False
        assert policy.is_retry("GET", 429, True) is False
        assert clf._client.config.connection.timeout == 7.5


# -- errors at the choke point (real msrest exceptions around real requests responses) -------------


def _response(status: int, body: object, reason: str = "", **headers: str) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp.reason = reason
    resp._content = json.dumps(body).encode()
    resp.headers.update({"Content-Type": "application/json", **headers})
    return resp


def _service_error(resp: requests.Response) -> CustomVisionErrorException:
    return CustomVisionErrorException(Deserializer({}), resp)


def test_wrong_key_is_an_authentication_error_with_the_gateway_message() -> None:
    body = {"error": {"code": "401", "message": "Access denied due to invalid subscription key."}}
    err = error_from_msrest(_service_error(_response(401, body, "Access Denied")), backend="custom_vision")
    assert isinstance(err, AuthenticationError)
    assert err.status_code == 401 and "invalid subscription key" in str(err)


def test_invalid_iteration_is_not_found() -> None:
    body = {"code": "NotFoundIteration", "message": "Invalid iteration"}
    err = error_from_msrest(_service_error(_response(404, body)), backend="custom_vision")
    assert isinstance(err, NotFoundError) and "Invalid iteration" in str(err)
    bad_request = error_from_msrest(
        _service_error(_response(400, {"code": "BadRequest", "message": body["message"]}))
    )
    assert isinstance(bad_request, NotFoundError)


def test_throttling_carries_retry_after() -> None:
    body = {
        "error": {
            "code": "429",
            "message": "Requests ... have exceeded rate limit. Please retry after 1 second.",
        }
    }
    err = error_from_msrest(_service_error(_response(429, body, **{"Retry-After": "2"})))
    assert isinstance(err, RateLimitError) and err.retry_after == 2.0 and err.retryable


def test_server_errors_are_retryable_service_errors() -> None:
    err = error_from_msrest(_service_error(_response(503, {"code": "ErrorUnknown", "message": "busy"})))
    assert isinstance(err, ServiceError) and err.retryable and err.code == "ErrorUnknown"


def test_transport_failures_are_connection_and_timeout_errors() -> None:
    dropped = ClientRequestError(
        "Error occurred in request.", inner_exception=requests.ConnectionError("reset")
    )
    slow = ClientRequestError("Error occurred in request.", inner_exception=requests.ReadTimeout("slow"))
    assert isinstance(error_from_msrest(dropped), BackendConnectionError)
    assert isinstance(error_from_msrest(slow), BackendTimeoutError)


def test_an_unreadable_200_body_is_a_service_error() -> None:
    response = _response(200, None)
    response._content = b"<html>gateway page</html>"
    with pytest.raises(DeserializationError) as raised:
        Deserializer({})("ImagePrediction", response)
    err = error_from_msrest(raised.value, backend="custom_vision")
    assert isinstance(err, ServiceError) and not err.retryable and "cannot be read" in str(err)
