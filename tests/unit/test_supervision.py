"""``to_supervision``: predictions as Roboflow supervision objects, boxes in pixels, names kept."""

from __future__ import annotations

import sys

import pytest

from azvision import BoundingBox, ConfigurationError, Label, Prediction
from azvision._supervision import to_supervision

sv = pytest.importorskip("supervision")


def detection() -> Prediction:
    return Prediction(
        labels=[
            Label(name="cat", confidence=0.9, box=BoundingBox(left=0.25, top=0.5, width=0.5, height=0.25)),
            Label(name="dog", confidence=0.6, box=BoundingBox(left=0.0, top=0.0, width=0.1, height=0.2)),
            Label(name="pet", confidence=0.95),  # an image-level label next to the boxes
        ],
        backend="custom_vision",
        image_size=(200, 100),
    )


def test_a_classification_becomes_classifications_in_confidence_order() -> None:
    p = Prediction(
        labels=[Label(name="dog", confidence=0.3), Label(name="cat", confidence=0.7)], backend="onnx"
    )
    result = to_supervision(p)
    assert isinstance(result, sv.Classifications)
    assert result.class_id.tolist() == [0, 1]  # cat first: the labels' own order
    assert result.confidence.tolist() == pytest.approx([0.7, 0.3])
    fixed = to_supervision(p, class_names=["dog", "cat", "bird"])
    assert fixed.class_id.tolist() == [1, 0]


def test_detections_get_pixel_boxes_names_and_only_the_boxed_labels() -> None:
    result = to_supervision(detection())
    assert isinstance(result, sv.Detections)
    assert result.xyxy.tolist() == [[50.0, 50.0, 150.0, 75.0], [0.0, 0.0, 20.0, 20.0]]
    assert result.data["class_name"].tolist() == ["cat", "dog"]
    assert result.confidence.tolist() == pytest.approx([0.9, 0.6])
    assert result.class_id.tolist() == [0, 1]
    assert to_supervision(detection(), class_names=["dog", "cat"]).class_id.tolist() == [1, 0]
    assert to_supervision(detection(), image_size=(400, 200)).xyxy[0].tolist() == [100.0, 100.0, 300.0, 150.0]


def test_boxes_without_an_image_size_or_unknown_names_are_configuration_errors() -> None:
    sizeless = detection().model_copy(update={"image_size": None})
    with pytest.raises(ConfigurationError, match="image_size"):
        to_supervision(sizeless)
    with pytest.raises(ConfigurationError, match=r"\['dog'\] are not in class_names"):
        to_supervision(detection(), class_names=["cat"])


def test_without_supervision_installed_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "supervision", None)  # what an absent package looks like to import
    with pytest.raises(ConfigurationError, match=r"pip install 'azvision\[notebook\]'"):
        to_supervision(detection())
