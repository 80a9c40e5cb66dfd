"""One rule for confidences, on every backend's path: rounding is clipped, anything else is a ServiceError.

Each backend's parser is fed the same values. Within ``CONFIDENCE_TOLERANCE`` of [0, 1] the value is
clipped; out of range, NaN, infinite or non-numeric values are a :class:`ServiceError` naming the backend
and the value. ``Label`` applies the same rule (as a validation error, since users build labels too).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from azvision import Label, Prediction, ServiceError
from azvision._models import CONFIDENCE_TOLERANCE
from azvision.backends._aml_formats import parse_answer
from azvision.backends._onnx_outputs import classifier_labels, ssd_labels, zipmap_labels
from azvision.backends.custom_vision import prediction_from_custom_vision
from azvision.backends.image_analysis import prediction_from_image_analysis


def _ia_tags(value: Any) -> Prediction:
    return prediction_from_image_analysis({"tagsResult": {"values": [{"name": "cat", "confidence": value}]}})


def _ia_objects(value: Any) -> Prediction:
    obj = {"boundingBox": {"x": 0, "y": 0, "w": 5, "h": 5}, "tags": [{"name": "cat", "confidence": value}]}
    body = {"metadata": {"width": 10, "height": 10}, "objectsResult": {"values": [obj]}}
    return prediction_from_image_analysis(body, mode="objects")


def _aml(shape: Callable[[str], str]) -> Callable[[Any], Prediction]:
    # json.dumps writes NaN and Infinity as Python's json (the inference server's) reads them back
    return lambda value: parse_answer(shape(json.dumps(value)).encode())


def _onnx(decode: Callable[[Any], tuple[Label, ...]]) -> Callable[[Any], Prediction]:
    return lambda value: Prediction(labels=decode(value), backend="onnx")


#: (backend name, how one confidence reaches its parser). Non-numbers go only where the wire can carry them.
PATHS: dict[str, tuple[str, Callable[[Any], Prediction]]] = {
    "custom-vision": (
        "custom_vision",
        lambda v: prediction_from_custom_vision({"predictions": [{"tagName": "cat", "probability": v}]}),
    ),
    "image-analysis-tags": ("image_analysis", _ia_tags),
    "image-analysis-objects": ("image_analysis", _ia_objects),
    "image-analysis-v32-categories": (
        "image_analysis",
        lambda v: prediction_from_image_analysis({"categories": [{"name": "animal_", "score": v}]}, mode="categories"),
    ),
    "azure-ml-automl": ("azure_ml", _aml(lambda v: f'[{{"probs": [{v}], "labels": ["cat"]}}]')),
    "azure-ml-label": ("azure_ml", _aml(lambda v: f'{{"label": "cat", "confidence": {v}}}')),
    "azure-ml-labels": ("azure_ml", _aml(lambda v: f'{{"labels": [{{"name": "cat", "score": {v}}}]}}')),
    "azure-ml-custom-vision": ("azure_ml", _aml(lambda v: f'{{"predictions": [{{"tagName": "cat", "probability": {v}}}]}}')),
    "onnx-classifier": ("onnx", _onnx(lambda v: classifier_labels(np.array([v], dtype=np.float64), ["cat"], 0.0))),
    "onnx-zipmap": ("onnx", _onnx(lambda v: zipmap_labels({"cat": v}, 0.0))),
    "onnx-detector": (
        "onnx",
        _onnx(lambda v: ssd_labels(np.array([[0.1, 0.1, 0.5, 0.5]]), np.array([v]), np.array([0]), ["cat"], 0.0)),
    ),
}  # fmt: skip
NUMERIC_ONLY = {"onnx-classifier", "onnx-zipmap", "onnx-detector"}
HAIR = CONFIDENCE_TOLERANCE / 2


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("given", "expected"), [(1.0 + HAIR, 1.0), (-HAIR, 0.0), (0.25, 0.25), (1, 1.0)])
def test_rounding_is_clipped_on_every_backend(path: str, given: float, expected: float) -> None:
    _, parse = PATHS[path]
    assert parse(given).confidence == expected


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "given", [1.7, -0.5, 1.0 + 10 * CONFIDENCE_TOLERANCE, 42.0, math.nan, math.inf, "0.5", True, None]
)
def test_anything_else_is_a_service_error_naming_backend_and_value(path: str, given: Any) -> None:
    backend, parse = PATHS[path]
    if path in NUMERIC_ONLY and not isinstance(given, float):
        pytest.skip("a model's output tensor only holds numbers")
    with pytest.raises(ServiceError) as info:
        parse(given)
    error = info.value
    assert error.backend == backend
    assert f"the {backend} backend got the confidence" in error.message
    assert repr(given) in error.message
    assert not error.retryable


@pytest.mark.parametrize("given", [1.0 + HAIR, -HAIR])
def test_label_clips_rounding_like_the_backends(given: float) -> None:
    assert Label(name="x", confidence=given).confidence == min(max(given, 0.0), 1.0)


@pytest.mark.parametrize("given", [1.7, -0.5, math.nan, math.inf, "0.5", True, None])
def test_label_refuses_what_the_backends_refuse(given: Any) -> None:
    with pytest.raises(ValidationError, match=r"a confidence must be a number in \[0, 1\]"):
        Label(name="x", confidence=given)


def test_a_float32_model_output_is_a_confidence() -> None:
    assert Label(name="x", confidence=np.float32(0.5)).confidence == 0.5
