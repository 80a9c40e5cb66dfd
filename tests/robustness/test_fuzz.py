"""Fuzzing (hypothesis): whatever a service answers and whatever bytes a user passes, the parsers and the
image loader either succeed with a well-formed result or raise an :class:`AzVisionError` — never anything
else. Example counts are bounded and the runs derandomized, so the suite stays fast and reproducible;
``AZVISION_FUZZ_EXAMPLES=5000 pytest tests/robustness/test_fuzz.py`` runs a deeper, randomized hunt.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from azvision import AzVisionError, InvalidImageError, Prediction
from azvision._error_mapping import error_from_http
from azvision._images import COMMON_FORMATS, ImageLimits, LoadedImage, load_image
from azvision.backends._aml_formats import PARSERS, parse_answer
from azvision.backends.custom_vision import prediction_from_custom_vision
from azvision.backends.image_analysis import prediction_from_image_analysis

from .conftest import encode, stripes

THROTTLED = b'{"error": {"code": "429", "message": "Rate limit is exceeded."}}'

_DEEP = int(os.environ.get("AZVISION_FUZZ_EXAMPLES", "0") or 0)
FUZZ = settings(
    max_examples=_DEEP or 150,
    deadline=None,
    derandomize=not _DEEP,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# -- strategies --------------------------------------------------------------------------------------------
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
numbers = st.floats() | st.integers(-5, 5) | st.text(max_size=6) | st.none()
names = st.text(max_size=12) | st.none() | st.integers()


def _boxes(keys: tuple[str, ...]) -> st.SearchStrategy[Any]:
    return st.none() | json_values | st.fixed_dictionaries({k: numbers for k in keys})


cv_entries = st.fixed_dictionaries(
    {"tagName": names, "probability": numbers},
    optional={"tagId": names, "boundingBox": _boxes(("left", "top", "width", "height")), "tagType": names},
)
cv_bodies = json_values | st.fixed_dictionaries(
    {"predictions": st.lists(cv_entries | json_values, max_size=5)},
    optional={"id": names, "project": names, "iteration": names, "created": names},
)
ia_scored = st.fixed_dictionaries({"name": names, "confidence": numbers, "score": numbers})
ia_objects = st.fixed_dictionaries(
    {"boundingBox": _boxes(("x", "y", "w", "h")), "tags": st.lists(ia_scored | json_values, max_size=3)}
)
ia_bodies = json_values | st.fixed_dictionaries(
    {},
    optional={
        "modelVersion": names,
        "metadata": st.fixed_dictionaries({"width": numbers, "height": numbers}) | json_values,
        "tagsResult": st.fixed_dictionaries({"values": st.lists(ia_scored | json_values, max_size=4)}),
        "objectsResult": st.fixed_dictionaries({"values": st.lists(ia_objects | json_values, max_size=3)}),
        "captionResult": st.fixed_dictionaries({"text": names, "confidence": numbers}) | json_values,
        "description": json_values,
        "categories": st.lists(ia_scored | json_values, max_size=4),
    },
)
aml_shapes = json_values | st.one_of(
    st.lists(
        st.fixed_dictionaries({"probs": st.lists(numbers, max_size=4), "labels": st.lists(names, max_size=4)})
    ),
    st.fixed_dictionaries({"label": names, "confidence": numbers}),
    st.fixed_dictionaries(
        {"labels": st.lists(names, max_size=4), "probabilities": st.lists(numbers, max_size=4)}
    ),
    st.dictionaries(st.text(max_size=8), numbers, max_size=4),
    st.lists(numbers, max_size=4),
)
aml_bodies = (
    st.binary(max_size=200)
    | aml_shapes.map(lambda v: json.dumps(v).encode())
    | aml_shapes.map(lambda v: json.dumps(json.dumps(v)).encode())  # the inference server's double encoding
)


def _well_formed(prediction: Prediction) -> None:
    confidences = [label.confidence for label in prediction.labels]
    assert all(0.0 <= c <= 1.0 for c in confidences)
    assert confidences == sorted(confidences, reverse=True)
    for label in prediction.labels:
        if label.box is not None:
            box = label.box
            assert 0.0 <= box.left <= 1.0 and 0.0 <= box.top <= 1.0
            assert box.left + box.width <= 1.0 + 1e-9 and box.top + box.height <= 1.0 + 1e-9
    json.dumps(prediction.to_dict())
    repr(prediction)


# -- response parsers ---------------------------------------------------------------------------------------
@FUZZ
@given(cv_bodies)
def test_custom_vision_parser(body: Any) -> None:
    with contextlib.suppress(AzVisionError):
        _well_formed(prediction_from_custom_vision(body, iteration="It"))


@FUZZ
@given(ia_bodies, st.sampled_from(["tags", "objects", "categories"]), st.booleans())
def test_image_analysis_parser(body: Any, mode: str, folded: bool) -> None:
    label_map = {"animal": ["dog", "cat*"], "thing": "*"} if folded else None
    with contextlib.suppress(AzVisionError):
        _well_formed(prediction_from_image_analysis(body, mode=mode, label_map=label_map))  # type: ignore[arg-type]


@FUZZ
@given(aml_bodies, st.sampled_from([None, *PARSERS]), st.none() | st.lists(st.text(max_size=6), max_size=4))
def test_azure_ml_parser(body: bytes, parser: str | None, labels: list[str] | None) -> None:
    with contextlib.suppress(AzVisionError):
        _well_formed(parse_answer(body, parser=parser, labels=labels, model="blue"))


retry_after_names = st.sampled_from(["Retry-After", "retry-after-ms", "x-ms-retry-after-ms"])
valid_retry_after = st.one_of(
    st.integers(0, 10**6).map(str),
    st.floats(0, 1e6).map(repr),
    st.sampled_from(["Wed, 21 Oct 2015 07:28:00 GMT", "Sun, 06 Nov 2044 08:49:37 GMT"]),
)
other_headers = st.dictionaries(
    st.sampled_from(
        ["apim-request-id", "x-ms-request-id", "ms-azureml-model-error-statuscode", "Content-Type"]
    )
    | st.text(max_size=10).filter(lambda name: "retry" not in name.lower()),
    st.text(max_size=30),
    max_size=4,
)
headers = st.builds(
    lambda other, retry: {**other, **retry},
    other_headers,
    st.dictionaries(retry_after_names, valid_retry_after, max_size=2),
)
error_bodies = (
    st.none()
    | st.binary(max_size=120)
    | st.text(max_size=120)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.fixed_dictionaries({"error": json_values}).map(lambda v: json.dumps(v).encode())
)


def _check_error(error: AzVisionError, status: int) -> None:
    assert isinstance(error, AzVisionError) and error.status_code == status
    assert error.retry_after is None or (math.isfinite(error.retry_after) and error.retry_after >= 0)
    assert str(error) and repr(error) and json.dumps(error.to_dict())


@FUZZ
@given(st.integers(0, 999), headers, error_bodies)
def test_error_mapping(status: int, headers: dict[str, str], body: bytes | str | None) -> None:
    _check_error(
        error_from_http(status, headers, body, backend="custom_vision", service="Custom Vision"), status
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [("Retry-After", "soon"), ("Retry-After", "NaN"), ("retry-after-ms", "nan"), ("Retry-After", "1e309")],
)
def test_error_mapping_ignores_a_garbage_retry_after(name: str, value: str) -> None:
    _check_error(error_from_http(429, {name: value}, THROTTLED), 429)


# -- the image loader -------------------------------------------------------------------------------------
LIMITS = [
    ImageLimits(service="Custom Vision prediction", max_bytes=4 * 1024 * 1024, max_side=10240),
    ImageLimits(service="Image Analysis 4.0", max_bytes=20 * 1024 * 1024, max_side=16000, min_side=50,
                formats=frozenset({"JPEG", "PNG", "GIF", "BMP", "WEBP", "ICO", "TIFF", "MPO"})),
    ImageLimits(service="tiny", max_bytes=3000, max_side=64, formats=COMMON_FORMATS, accepts_url=False),
    ImageLimits(service="local", downscale=False, accepts_url=False,
                formats=frozenset({"JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "MPO"})),
]  # fmt: skip


def _seed_images() -> list[bytes]:
    picture = stripes("horizontal", 90, (48, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    return [
        encode(picture),
        encode(picture, "JPEG", quality=90, exif=exif),
        encode(picture.convert("P"), "GIF"),
        encode(picture, "BMP"),
        encode(picture, "TIFF"),
        encode(picture, "WEBP"),
        encode(picture.convert("CMYK"), "JPEG"),
        encode(picture.convert("LA")),
        encode(picture, "PNG", exif=exif),
        encode(picture.convert("I;16")),
        encode(picture.convert("P"), "PNG", transparency=0),
        encode(picture, "GIF", save_all=True, append_images=[picture.rotate(90)]),
        encode(picture, "ICO"),
    ]


SEEDS = _seed_images()


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "zero-run"]))
        at = draw(st.integers(0, len(data) - 1)) if data else 0
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            data[at : at + draw(st.integers(1, 64))] = bytes(min(64, len(data) - at))
    return bytes(data)


def _check_loaded(loaded: LoadedImage, limits: ImageLimits) -> None:
    assert loaded.data
    with Image.open(io.BytesIO(loaded.data)) as decoded:
        decoded.load()
        assert limits.max_side is None or max(decoded.size) <= limits.max_side
    assert limits.max_bytes is None or not limits.downscale or len(loaded.data) <= limits.max_bytes


# Pillow warns about the damage it reads around; only what it raises matters here.
_PIL_WARNINGS = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::PIL.Image.DecompressionBombWarning"
)


@_PIL_WARNINGS
@FUZZ
@given(st.binary(max_size=300), st.sampled_from(LIMITS))
def test_image_loader_on_random_bytes(data: bytes, limits: ImageLimits) -> None:
    with contextlib.suppress(InvalidImageError):
        _check_loaded(load_image(data, limits), limits)


@_PIL_WARNINGS
@FUZZ
@given(mutated_images(), st.sampled_from(LIMITS))
def test_image_loader_on_mutated_real_images(data: bytes, limits: ImageLimits) -> None:
    with contextlib.suppress(InvalidImageError):
        _check_loaded(load_image(data, limits), limits)
