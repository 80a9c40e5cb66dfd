"""Detection metrics against hand-computed cases: perfect, shifted, duplicates, ranking, mAP@[.5:.95]."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from azvision import BoundingBox
from azvision.evaluation import (
    IOU_THRESHOLDS,
    box_iou,
    compute_detection_metrics,
    write_detection_report,
)


def box(left: float, top: float, width: float = 0.2, height: float = 0.2) -> BoundingBox:
    return BoundingBox(left=left, top=top, width=width, height=height)


A, B = box(0.1, 0.1), box(0.6, 0.6)


def test_a_perfect_detector_scores_one() -> None:
    truths = [[("cat", A), ("dog", B)], [("cat", B)]]
    found = [[("cat", 0.9, A), ("dog", 0.8, B)], [("cat", 0.7, B)]]
    m = compute_detection_metrics(truths, found)
    assert m.map50 == 1.0 and m.map50_95 == 1.0
    assert {label: (s.precision, s.recall) for label, s in m.per_label.items()} == {
        "cat": (1.0, 1.0),
        "dog": (1.0, 1.0),
    }


def test_a_box_shifted_below_iou_half_is_a_miss_and_a_false_positive() -> None:
    shifted = box(0.1 + 0.2 * 0.4, 0.1)  # overlap 0.6 of the width: IoU = 0.12 / 0.28 ≈ 0.43
    assert box_iou(A, shifted) == pytest.approx(0.12 / 0.28)
    m = compute_detection_metrics([[("cat", A)]], [[("cat", 0.9, shifted)]])
    cat = m.per_label["cat"]
    assert (cat.ap50, cat.precision, cat.recall) == (0.0, 0.0, 0.0)


def test_a_box_shifted_to_iou_two_thirds_counts_at_half_but_not_at_075() -> None:
    shifted = box(0.1 + 0.2 * 0.2, 0.1)  # IoU = 0.16 / 0.24 = 2/3
    m = compute_detection_metrics([[("cat", A)]], [[("cat", 0.9, shifted)]])
    cat = m.per_label["cat"]
    assert cat.ap50 == 1.0
    passing = sum(1 for t in IOU_THRESHOLDS if t <= 2 / 3)  # 0.50, 0.55, 0.60, 0.65
    assert cat.ap50_95 == pytest.approx(passing / len(IOU_THRESHOLDS))


def test_duplicates_are_false_positives() -> None:
    m = compute_detection_metrics([[("cat", A)]], [[("cat", 0.9, A), ("cat", 0.8, A), ("cat", 0.7, A)]])
    cat = m.per_label["cat"]
    assert cat.ap50 == 1.0  # the best one comes first: full recall at precision 1
    assert cat.precision == pytest.approx(1 / 3) and cat.recall == 1.0
    # A duplicate ranked above the only hit of another image costs AP: P-R points (0.5, 1), (0.5, 0.5), (1, 2/3)
    truths = [[("cat", A)], [("cat", B)]]
    found = [[("cat", 0.9, A), ("cat", 0.8, A)], [("cat", 0.7, B)]]
    assert compute_detection_metrics(truths, found).per_label["cat"].ap50 == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_wrong_label_and_missed_boxes() -> None:
    truths = [[("cat", A), ("cat", B)]]
    found = [[("dog", 0.9, A), ("cat", 0.6, B)]]
    m = compute_detection_metrics(truths, found)
    assert m.per_label["cat"].ap50 == 0.5 and m.per_label["cat"].recall == 0.5
    assert m.per_label["dog"].support == 0 and m.per_label["dog"].precision == 0.0
    assert m.map50 == 0.5  # labels without true boxes do not count in the mean


def test_threshold_drops_unsure_detections_from_precision_and_recall_only() -> None:
    m = compute_detection_metrics([[("cat", A)]], [[("cat", 0.3, A)]], threshold=0.5)
    cat = m.per_label["cat"]
    assert (cat.ap50, cat.precision, cat.recall) == (1.0, 0.0, 0.0)


def test_report_json(tmp_path: Path) -> None:
    m = compute_detection_metrics([[("cat", A)]], [[("cat", 0.9, A)]], failures=["ServiceError"])
    (path,) = write_detection_report(m, tmp_path, plot=False, extra={"dataset": "x"})
    body = json.loads(path.read_text())
    assert body["map50"] == 1.0 and body["map50_95"] == 1.0 and body["interpolation"] == "all-point"
    assert body["per_label"]["cat"]["ap50"] == 1.0 and body["failed"] == 1 and body["dataset"] == "x"


def test_pr_curve_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    m = compute_detection_metrics([[("cat", A)], [("dog", B)]], [[("cat", 0.9, A)], [("dog", 0.4, A)]])
    written = write_detection_report(m, tmp_path)
    assert written[1].name == "pr_curve.png" and written[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
