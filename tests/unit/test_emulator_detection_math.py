"""The emulator's own detector maths agrees with the SDK's, which it is written independently of."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from azvision import BoundingBox
from azvision._detection_metrics import compute_detection_metrics
from azvision._preprocess import PreprocessSpec, to_tensor
from azvision.backends._onnx_outputs import decode_yolo, yolo_settings
from azvision.emulator._detection_scores import tag_scores
from azvision.emulator._preprocessing import detector_input
from azvision.emulator._yolo import ANCHORS, NMS_IOU, read_grid


def test_the_export_tells_the_sdk_the_anchors_and_iou_the_emulator_decodes_with() -> None:
    from azvision.emulator._cv_detector import DetectorHead
    from azvision.emulator._onnx_export import _export_metadata

    hints = _export_metadata(DetectorHead.untrained(("fork",)))
    assert yolo_settings(hints) == (ANCHORS, NMS_IOU)


@pytest.mark.parametrize("seed", range(12))
def test_the_grid_reads_as_the_onnx_backend_reads_it(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = [f"tag{i}" for i in range(1 + seed % 4)]
    grid = rng.normal(0.0, 2.0, (len(ANCHORS) * (5 + len(labels)), 13, 13))
    threshold = (0.01, 0.05, 0.3)[seed % 3]
    mine = read_grid(grid, len(labels), threshold)
    theirs = decode_yolo(grid, labels, threshold, anchors=ANCHORS, iou_threshold=NMS_IOU)
    assert [labels[tag] for tag, _, _ in mine] == [lab.name for lab in theirs]
    assert len(mine) > 0
    for (_, probability, box), lab in zip(mine, theirs, strict=True):
        assert lab.box is not None
        assert probability == pytest.approx(lab.confidence, abs=1e-9)
        assert box == pytest.approx((lab.box.left, lab.box.top, lab.box.width, lab.box.height), abs=1e-9)


def test_a_box_seen_by_two_anchors_is_reported_once_per_tag() -> None:
    per_anchor = 5 + 2
    grid = np.full((len(ANCHORS) * per_anchor, 1, 1), -30.0)
    for a in (0, 1):  # anchors 0 and 1 both see an object, sized alike
        base = a * per_anchor
        grid[base : base + 2] = 0.0
        grid[base + 2] = np.log(0.5 / ANCHORS[a][0])
        grid[base + 3] = np.log(0.5 / ANCHORS[a][1])
        grid[base + 4] = 30.0
        grid[base + 5] = 30.0  # tag 0
    assert [tag for tag, _, _ in read_grid(grid, 2, 0.5)] == [0]
    grid[per_anchor + 5], grid[per_anchor + 6] = -30.0, 30.0  # anchor 1 now says tag 1
    assert sorted(tag for tag, _, _ in read_grid(grid, 2, 0.5)) == [0, 1]


def test_detector_input_is_the_sdks_stretch() -> None:
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (90, 300, 3), dtype=np.uint8))
    spec = PreprocessSpec(size=(416, 416), channel_order="BGR", resize="stretch")
    np.testing.assert_array_equal(detector_input(image), to_tensor(image, spec))


def _random_boxes(rng: np.random.Generator, n: int) -> list[tuple[float, float, float, float]]:
    corner = rng.uniform(-0.05, 0.7, (n, 2))
    size = rng.uniform(0.05, 0.4, (n, 2))
    return [(float(x), float(y), float(w), float(h)) for (x, y), (w, h) in zip(corner, size, strict=True)]


@pytest.mark.parametrize("seed", range(8))
def test_iteration_scores_match_the_sdks_metrics(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tags = 3
    truths, found = [], []
    for _ in range(6):
        boxes = _random_boxes(rng, int(rng.integers(0, 4)))
        truth = [(int(rng.integers(0, tags)), box) for box in boxes]
        guesses = [
            (tag, float(rng.uniform(0.01, 1.0)), tuple(float(v + rng.normal(0, 0.03)) for v in box))
            for tag, box in truth
            if rng.uniform() < 0.8
        ]
        guesses += [
            (int(rng.integers(0, tags)), float(rng.uniform(0.01, 1.0)), b) for b in _random_boxes(rng, 2)
        ]
        truths.append(truth)
        found.append(guesses)
    mine = tag_scores(truths, found, tags=tags, threshold=0.5)
    names = [f"t{i}" for i in range(tags)]
    theirs = compute_detection_metrics(
        [[(names[t], BoundingBox.clipped(*b)) for t, b in image] for image in truths],
        [[(names[t], p, BoundingBox.clipped(*b)) for t, p, b in image] for image in found],
        labels=names,
        threshold=0.5,
    )
    for tag, score in enumerate(mine):
        expected = theirs.per_label[names[tag]]
        assert score.support == expected.support
        assert score.precision == pytest.approx(expected.precision)
        assert score.recall == pytest.approx(expected.recall)
        assert score.average_precision == pytest.approx(expected.ap50)
