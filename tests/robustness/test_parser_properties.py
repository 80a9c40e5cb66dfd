"""Properties of the response parsers on VALID bodies (hypothesis): what they must return, not only that
they raise nothing but :class:`AzVisionError` (that is `test_fuzz.py`).

For every well-formed Custom Vision, Image Analysis (4.0 tags and objects, v3.2 categories) and Azure ML
body, the prediction holds exactly the body's labels (names, confidences, ids, boxes), sorted by
confidence with the highest first, and the body's model and caption. Every confidence goes through the
one rule: within `CONFIDENCE_TOLERANCE` of [0, 1] it is clipped, anything else is a `ServiceError` that
names the value.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from azvision import Prediction, ServiceError
from azvision._models import CONFIDENCE_TOLERANCE
from azvision.backends._aml_formats import parse_answer
from azvision.backends.custom_vision import prediction_from_custom_vision
from azvision.backends.image_analysis import prediction_from_image_analysis

from .test_fuzz import FUZZ

Triple = tuple[str, float, Any]

# -- valid pieces ---------------------------------------------------------------------------------------
confidences = st.floats(0.0, 1.0, allow_nan=False)
rounded = st.floats(1.0, 1.0 + CONFIDENCE_TOLERANCE, exclude_min=True) | st.floats(
    -CONFIDENCE_TOLERANCE, 0.0, exclude_max=True
)
not_probabilities = (
    st.floats(1.0 + 2 * CONFIDENCE_TOLERANCE, 1e9)
    | st.floats(-1e9, -2 * CONFIDENCE_TOLERANCE)
    | st.sampled_from([math.nan, math.inf, -math.inf, 57, 100, -1])
)
tag_names = st.text(min_size=1, max_size=12)
ids = st.uuids().map(str)


@st.composite
def unit_boxes(draw: st.DrawFn) -> dict[str, float]:
    """A Custom Vision ``boundingBox``: left/top/width/height normalised, inside the image."""
    left, top = draw(st.floats(0.0, 1.0)), draw(st.floats(0.0, 1.0))
    return {
        "left": left,
        "top": top,
        "width": draw(st.floats(0.0, 1.0 - left)),
        "height": draw(st.floats(0.0, 1.0 - top)),
    }


def cv_entry(box: bool) -> st.SearchStrategy[dict[str, Any]]:
    fields: dict[str, st.SearchStrategy[Any]] = {
        "tagId": ids,
        "tagName": tag_names,
        "probability": confidences,
    }
    if box:
        fields["boundingBox"] = unit_boxes()
    return st.fixed_dictionaries(fields)


cv_bodies = st.booleans().flatmap(
    lambda detection: st.fixed_dictionaries(
        {
            "id": ids,
            "project": ids,
            "iteration": ids,
            "created": st.just("2026-12-03T09:00:00.000Z"),
            "predictions": st.lists(cv_entry(detection), max_size=8),
        }
    )
)


def expected(triples: list[Triple]) -> Counter[Triple]:
    return Counter(triples)


def assert_sorted_labels(prediction: Prediction, triples: list[Triple], extra: str = "id") -> None:
    """The prediction's labels are the body's, nothing added or lost, highest confidence first."""
    got = [(lab.name, lab.confidence, getattr(lab, extra)) for lab in prediction.labels]
    assert Counter(got) == expected(triples)
    scores = [lab.confidence for lab in prediction.labels]
    assert scores == sorted(scores, reverse=True)
    if triples:
        assert prediction.confidence == max(score for _, score, _ in triples)
        assert prediction.label in {name for name, score, _ in triples if score == prediction.confidence}
    else:
        assert prediction.label is None


# -- Custom Vision ---------------------------------------------------------------------------------------
@FUZZ
@given(cv_bodies)
def test_a_valid_custom_vision_body_gives_its_labels_sorted(body: dict[str, Any]) -> None:
    prediction = prediction_from_custom_vision(body, iteration="production", source="a.jpg")
    entries = body["predictions"]
    assert_sorted_labels(prediction, [(e["tagName"], e["probability"], e["tagId"]) for e in entries])
    assert (prediction.backend, prediction.model, prediction.source) == (
        "custom_vision",
        "production",
        "a.jpg",
    )
    boxes = {(e["tagId"], tuple(e["boundingBox"].values())) for e in entries if "boundingBox" in e}
    got = {
        (lab.id, (lab.box.left, lab.box.top, lab.box.width, lab.box.height))
        for lab in prediction.labels
        if lab.box
    }
    assert len(got) == len(boxes)
    for (tag, box), (tag_got, box_got) in zip(sorted(boxes), sorted(got), strict=True):
        assert tag == tag_got and box_got == pytest.approx(box, abs=1e-9)
    assert prediction.raw == body


@FUZZ
@given(rounded, tag_names)
def test_a_confidence_a_rounding_error_outside_0_1_is_clipped(value: float, name: str) -> None:
    body = {"predictions": [{"tagName": name, "probability": value}]}
    (label,) = prediction_from_custom_vision(body).labels
    assert label.confidence == (1.0 if value > 1 else 0.0)


@FUZZ
@given(not_probabilities, st.sampled_from(["custom_vision", "image_analysis", "azure_ml"]))
def test_a_confidence_outside_0_1_is_a_service_error_naming_backend_and_value(
    value: float, backend: str
) -> None:
    parse = {
        "custom_vision": lambda: prediction_from_custom_vision(
            {"predictions": [{"tagName": "cat", "probability": value}]}
        ),
        "image_analysis": lambda: prediction_from_image_analysis(
            {"tagsResult": {"values": [{"name": "cat", "confidence": value}]}}
        ),
        "azure_ml": lambda: parse_answer(json.dumps({"label": "cat", "confidence": value}).encode()),
    }[backend]
    with pytest.raises(ServiceError) as caught:
        parse()
    assert caught.value.backend == backend
    assert repr(value)[:8] in str(caught.value) or str(value)[:8] in str(caught.value)


# -- Image Analysis --------------------------------------------------------------------------------------
ia_tags = st.lists(st.fixed_dictionaries({"name": tag_names, "confidence": confidences}), max_size=8)


@FUZZ
@given(
    ia_tags,
    st.none() | st.text(max_size=30),
    st.sampled_from([0.0, 0.25, 0.5, 0.9]),
)
def test_a_valid_image_analysis_tags_body_gives_its_tags_sorted(
    tags: list[dict[str, Any]], caption: str | None, floor: float
) -> None:
    body: dict[str, Any] = {
        "modelVersion": "2023-10-01",
        "metadata": {"width": 640, "height": 480},
        "tagsResult": {"values": tags},
    }
    if caption is not None:
        body["captionResult"] = {"text": caption, "confidence": 0.5}
    prediction = prediction_from_image_analysis(body, mode="tags", min_confidence=floor)
    kept = [(t["name"], t["confidence"], None) for t in tags if t["confidence"] >= floor]
    assert_sorted_labels(prediction, kept, extra="box")
    assert (prediction.backend, prediction.model, prediction.caption) == (
        "image_analysis",
        "2023-10-01",
        caption,
    )


@st.composite
def ia_objects_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """An Image Analysis 4.0 answer with objects: pixel boxes inside a ``metadata`` width × height image."""
    width, height = draw(st.integers(50, 4000)), draw(st.integers(50, 4000))
    objects = []
    for _ in range(draw(st.integers(0, 5))):
        x, y = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
        box = {"x": x, "y": y, "w": draw(st.integers(1, width - x)), "h": draw(st.integers(1, height - y))}
        objects.append({"boundingBox": box, "tags": draw(ia_tags.filter(bool))})
    return {
        "modelVersion": "2023-10-01",
        "metadata": {"width": width, "height": height},
        "objectsResult": {"values": objects},
    }


@FUZZ
@given(ia_objects_bodies())
def test_a_valid_image_analysis_objects_body_gives_one_boxed_label_per_object(body: dict[str, Any]) -> None:
    prediction = prediction_from_image_analysis(body, mode="objects")
    width, height = body["metadata"]["width"], body["metadata"]["height"]
    objects = body["objectsResult"]["values"]
    assert len(prediction.labels) == len(objects)
    wanted = []
    for obj in objects:
        best = max(tag["confidence"] for tag in obj["tags"])
        b = obj["boundingBox"]
        wanted.append((best, (b["x"] / width, b["y"] / height, b["w"] / width, b["h"] / height), obj["tags"]))
    got = sorted(
        (
            (lab.confidence, (lab.box.left, lab.box.top, lab.box.width, lab.box.height), lab.name)
            for lab in prediction.labels
            if lab.box
        ),
        key=lambda row: (row[0], row[1]),
    )
    assert len(got) == len(objects)
    scores = [lab.confidence for lab in prediction.labels]
    assert scores == sorted(scores, reverse=True)
    for (score, box, tags), (score_got, box_got, name) in zip(
        sorted(wanted, key=lambda row: (row[0], row[1])), got, strict=True
    ):
        assert score_got == score and box_got == pytest.approx(box, abs=1e-9)
        assert name in {tag["name"] for tag in tags if tag["confidence"] == score}  # its best tag


@FUZZ
@given(st.lists(st.fixed_dictionaries({"name": tag_names, "score": confidences}), max_size=6))
def test_a_valid_v32_categories_body_gives_its_categories_sorted(categories: list[dict[str, Any]]) -> None:
    body = {"categories": categories, "requestId": "r", "metadata": {"width": 64, "height": 64}}
    prediction = prediction_from_image_analysis(body, mode="categories")
    assert_sorted_labels(prediction, [(c["name"], c["score"], None) for c in categories], extra="box")


# -- Azure ML --------------------------------------------------------------------------------------------
AML_RESERVED = {"probs", "labels", "label", "predictions", "boxes", "probabilities", "scores"}
aml_names = st.text(min_size=1, max_size=10).filter(lambda name: name not in AML_RESERVED)


@st.composite
def aml_answers(draw: st.DrawFn) -> tuple[str, Any, list[Triple], list[str] | None]:
    """``(preset, JSON value, expected labels, labels= argument)`` for one valid answer of each shape."""
    names = draw(st.lists(aml_names, min_size=1, max_size=5, unique=True))
    scores = draw(st.lists(confidences, min_size=len(names), max_size=len(names)))
    triples: list[Triple] = [(n, s, None) for n, s in zip(names, scores, strict=True)]
    shape = draw(
        st.sampled_from(["automl", "label", "labels", "named", "custom_vision", "probabilities", "mapping"])
    )
    given_labels: list[str] | None = None
    if shape == "automl":
        value: Any = [{"probs": scores, "labels": names}]
    elif shape == "label":
        key = draw(st.sampled_from(["confidence", "probability", "score"]))
        value, triples = {"label": names[0], key: scores[0]}, triples[:1]
    elif shape in ("labels", "named"):
        value = (
            {"labels": names, draw(st.sampled_from(["probabilities", "scores"])): scores}
            if shape == "labels"
            else {"labels": [{"name": n, "confidence": s} for n, s in zip(names, scores, strict=True)]}
        )
        shape = "labels"
    elif shape == "custom_vision":
        tag_ids = draw(st.lists(ids, min_size=len(names), max_size=len(names)))
        value = {
            "predictions": [
                {"tagId": i, "tagName": n, "probability": s}
                for i, n, s in zip(tag_ids, names, scores, strict=True)
            ]
        }
    elif shape == "probabilities":
        value, given_labels = draw(st.sampled_from([scores, [scores]])), names
    else:
        value = dict(zip(names, scores, strict=True))
    return shape, value, triples, given_labels


@FUZZ
@given(aml_answers(), st.booleans(), st.booleans())
def test_a_valid_azure_ml_answer_gives_its_labels_sorted_with_or_without_the_parser_named(
    answer: tuple[str, Any, list[Triple], list[str] | None], double_encoded: bool, named: bool
) -> None:
    preset, value, triples, labels = answer
    body = json.dumps(json.dumps(value) if double_encoded else value).encode()  # the inference server's str
    prediction = parse_answer(body, parser=preset if named else None, labels=labels, model="blue")
    got = [(lab.name, lab.confidence, None) for lab in prediction.labels]
    assert Counter(got) == expected(triples)
    scores = [lab.confidence for lab in prediction.labels]
    assert scores == sorted(scores, reverse=True)
    assert (prediction.backend, prediction.model, prediction.raw) == ("azure_ml", "blue", value)
