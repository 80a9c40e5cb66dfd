"""min_confidence and class-wise NMS over the labels a detector returned."""

from __future__ import annotations

import pytest

from azvision import BoundingBox, ConfigurationError, CustomVisionBackend, Label
from azvision._detections import filter_detections

A = BoundingBox(left=0.1, top=0.1, width=0.4, height=0.4)
A2 = BoundingBox(left=0.12, top=0.1, width=0.4, height=0.4)  # IoU with A ≈ 0.9
FAR = BoundingBox(left=0.6, top=0.6, width=0.3, height=0.3)


def lab(name: str, confidence: float, box: BoundingBox | None) -> Label:
    return Label(name=name, confidence=confidence, box=box)


def test_nms_is_class_wise_and_keeps_distant_boxes() -> None:
    labels = [lab("cat", 0.9, A), lab("cat", 0.8, A2), lab("dog", 0.7, A2), lab("cat", 0.6, FAR)]
    kept = filter_detections(labels, nms_iou=0.5)
    assert [(k.name, k.confidence) for k in kept] == [("cat", 0.9), ("dog", 0.7), ("cat", 0.6)]


def test_min_confidence_alone_keeps_overlaps() -> None:
    labels = [lab("cat", 0.9, A), lab("cat", 0.8, A2), lab("cat", 0.2, FAR), lab("tag", 0.1, None)]
    assert [k.confidence for k in filter_detections(labels, min_confidence=0.5)] == [0.9, 0.8]


def test_bad_options_are_configuration_errors() -> None:
    args = ("http://127.0.0.1:9", "key", "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b", "it")
    with pytest.raises(ConfigurationError, match="min_confidence"):
        CustomVisionBackend(*args, task="detection", min_confidence=1.5)
    with pytest.raises(ConfigurationError, match="nms_iou"):
        CustomVisionBackend(*args, task="detection", nms_iou=0.0)
