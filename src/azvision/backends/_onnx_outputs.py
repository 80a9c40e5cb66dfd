"""A Custom Vision ONNX export's outputs as labels, decoded with numpy (no onnxruntime needed).

The output decoders turn one `session.run` result into `Label` tuples (in class order; `Prediction`
sorts them); the export's files are read by `azvision.backends._onnx_export`. The family is read off
the model's outputs (``shared/reference/custom-vision-export-format.md`` §0, §3):

* ``"classifier"`` — a float ``[n, k]`` output (``model_output``): probabilities in ``labels.txt`` order;
* ``"zipmap"`` — the legacy ``classLabel`` + ``loss`` pair: ``loss`` is one ``{label: probability}`` map
  per image (keys come back sorted, not in class order);
* ``"yolo"`` — the compact detector's one 4-D grid (``model_outputs0``), decoded with its anchors and a
  class-aware non-maximum suppression done here (it is not in the graph);
* ``"ssd"`` — the S1 detector's ``detected_boxes``/``detected_scores``/``detected_classes``, already
  suppressed in the graph.

Example:
    >>> import numpy as np
    >>> decoder = Decoder("classifier", ("cat", "dog"))
    >>> [(label.name, label.confidence) for label in decoder.decode([np.array([[0.25, 0.75]])], 1)[0]]
    [('cat', 0.25), ('dog', 0.75)]
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .._errors import ConfigurationError, ServiceError
from .._models import BoundingBox, Label, service_confidence

__all__ = [
    "DEFAULT_ANCHORS",
    "Decoder",
    "Family",
    "OutputInfo",
    "classifier_labels",
    "decode_yolo",
    "non_max_suppression",
    "output_family",
    "ssd_labels",
    "yolo_settings",
    "zipmap_labels",
]

Family = Literal["classifier", "zipmap", "yolo", "ssd"]
#: ``(name, onnxruntime type string, shape)`` of one model output.
OutputInfo = tuple[str, str, Sequence[Any]]

#: YOLOv2 anchors (width, height in grid cells) of every compact Custom Vision detector (§3.2).
DEFAULT_ANCHORS: tuple[tuple[float, float], ...] = (
    (0.57273, 0.677385),
    (1.87446, 2.06253),
    (3.33843, 5.47434),
    (7.88282, 3.52778),
    (9.77052, 9.16828),
)
#: Detections below this are dropped before suppression, as the official samples do (§3.2, §3.3).
MIN_DETECTION_CONFIDENCE = 0.01
MAX_DETECTIONS = 64
DEFAULT_IOU = 0.45
_SSD_OUTPUTS = ("detected_boxes", "detected_scores", "detected_classes")
_FLOAT_TYPES = ("tensor(float)", "tensor(float16)", "tensor(double)")
_NAME = "onnx"


def yolo_settings(hints: Mapping[str, str]) -> tuple[tuple[tuple[float, float], ...], float]:
    """Anchors and NMS IoU from ``metadata_properties.json`` where it has them (§1.1), else the defaults.

    Example:
        >>> yolo_settings({"CustomVision.Postprocess.Yolo.Biases": "[1, 2, 3, 4]"})
        (((1.0, 2.0), (3.0, 4.0)), 0.45)
    """
    try:
        biases = [float(b) for b in json.loads(hints.get("CustomVision.Postprocess.Yolo.Biases", "[]"))]
        iou = float(hints.get("CustomVision.Postprocess.Yolo.NmsThreshold", "0"))
    except (TypeError, ValueError):
        return DEFAULT_ANCHORS, DEFAULT_IOU
    anchors = tuple(zip(biases[::2], biases[1::2], strict=True)) if len(biases) % 2 == 0 else ()
    return anchors or DEFAULT_ANCHORS, iou if 0.0 < iou < 1.0 else DEFAULT_IOU


def output_family(outputs: Sequence[OutputInfo]) -> tuple[Family, list[str]]:
    """Which export family these outputs belong to, and the output names to fetch, in decoding order.

    Raises:
        ConfigurationError: the outputs match no Custom Vision export.

    Example:
        >>> output_family([("model_output", "tensor(float)", ["None", 3])])
        ('classifier', ['model_output'])
    """
    names = [name for name, _, _ in outputs]
    if all(name in names for name in _SSD_OUTPUTS):
        return "ssd", list(_SSD_OUTPUTS)
    maps = [name for name, kind, _ in outputs if kind.startswith(("seq(map(", "map("))]
    if maps:
        return "zipmap", ["loss" if "loss" in maps else maps[0]]
    floats = [(name, shape) for name, kind, shape in outputs if kind in _FLOAT_TYPES]
    grids = [name for name, shape in floats if len(shape) == 4]
    if grids:
        return "yolo", ["model_outputs0" if "model_outputs0" in grids else grids[0]]
    vectors = [name for name, shape in floats if len(shape) == 2]
    if vectors:
        return "classifier", ["model_output" if "model_output" in vectors else vectors[0]]
    described = ", ".join(f"{name} {kind}" for name, kind, _ in outputs) or "none"
    raise ConfigurationError(
        f"the model's outputs ({described}) are not those of a Custom Vision ONNX export: expected "
        "model_output, classLabel/loss, model_outputs0 or detected_boxes/detected_scores/detected_classes",
        backend=_NAME,
    )


def _confidences(values: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    checked = [
        service_confidence(v, backend=_NAME, what=f"{what}[{i}]") for i, v in enumerate(array.tolist())
    ]
    return np.asarray(checked, dtype=np.float64)


def classifier_labels(
    probabilities: np.ndarray, labels: Sequence[str], threshold: float
) -> tuple[Label, ...]:
    """One image's ``[k]`` probabilities → a label per class at or above ``threshold``.

    Example:
        >>> [lab.name for lab in classifier_labels(np.array([0.1, 0.9]), ["a", "b"], 0.5)]
        ['b']
    """
    scores = _confidences(np.ravel(probabilities), "probabilities")
    if scores.size != len(labels):
        raise ConfigurationError(
            f"the model gives {scores.size} probabilities but there are {len(labels)} labels", backend=_NAME
        )
    return tuple(
        Label(name=name, confidence=float(score))
        for name, score in zip(labels, scores.tolist(), strict=True)
        if score >= threshold
    )


def zipmap_labels(scores: Mapping[Any, float], threshold: float) -> tuple[Label, ...]:
    """A legacy ``loss`` map ``{label: probability}`` → labels at or above ``threshold``.

    Example:
        >>> [label.name for label in zipmap_labels({"Negative": 0.1, "cat": 0.9}, 0.5)]
        ['cat']
    """
    names = [str(name) for name in scores]
    values = _confidences(np.array([scores[name] for name in scores], dtype=np.float64), "probabilities")
    return tuple(
        Label(name=name, confidence=float(value))
        for name, value in zip(names, values.tolist(), strict=True)
        if value >= threshold
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.exp(-np.logaddexp(0.0, -x))
    return result


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one ``(left, top, width, height)`` box with each of ``others``."""
    left = np.maximum(box[0], others[:, 0])
    top = np.maximum(box[1], others[:, 1])
    right = np.minimum(box[0] + box[2], others[:, 0] + others[:, 2])
    bottom = np.minimum(box[1] + box[3], others[:, 1] + others[:, 3])
    overlap = np.clip(right - left, 0.0, None) * np.clip(bottom - top, 0.0, None)
    union = box[2] * box[3] + others[:, 2] * others[:, 3] - overlap
    iou: np.ndarray = np.where(union > 0, overlap / np.where(union > 0, union, 1.0), 0.0)
    return iou


def non_max_suppression(
    boxes: np.ndarray,
    scores: np.ndarray,
    *,
    iou_threshold: float = DEFAULT_IOU,
    min_score: float = MIN_DETECTION_CONFIDENCE,
    max_detections: int = MAX_DETECTIONS,
) -> list[tuple[int, int, float]]:
    """Class-aware greedy NMS: ``(box index, class index, score)`` kept, best first.

    ``boxes`` is ``[n, 4]`` (left, top, width, height), ``scores`` ``[n, classes]``. A box is dropped
    when it overlaps a better kept box of the same class by more than ``iou_threshold``.

    Example:
        >>> boxes = np.array([[0, 0, 1, 1], [0.05, 0, 1, 1], [0, 0, 1, 1]], dtype=float)
        >>> non_max_suppression(boxes, np.array([[0.9, 0.0], [0.8, 0.0], [0.0, 0.7]]))
        [(0, 0, 0.9), (2, 1, 0.7)]
    """
    rows, classes = np.nonzero(scores >= min_score)
    order = np.argsort(-scores[rows, classes], kind="stable")
    kept: list[tuple[int, int, float]] = []
    kept_by_class: dict[int, list[int]] = {}
    for index in order.tolist():
        row, cls = int(rows[index]), int(classes[index])
        same_class = kept_by_class.setdefault(cls, [])
        if same_class and _iou(boxes[row], boxes[same_class]).max() > iou_threshold:
            continue
        same_class.append(row)
        kept.append((row, cls, float(scores[row, cls])))
        if len(kept) >= max_detections:
            break
    return kept


def decode_yolo(
    grid: np.ndarray,
    labels: Sequence[str],
    threshold: float,
    *,
    anchors: Sequence[tuple[float, float]] = DEFAULT_ANCHORS,
    iou_threshold: float = DEFAULT_IOU,
) -> tuple[Label, ...]:
    """One image's compact-detector grid ``[A·(5+C), H, W]`` → boxed labels after NMS.

    Per anchor the channels are ``tx, ty, tw, th, objectness, class logits…``; the box centre is
    ``(σ(tx) + column) / W``, its width ``exp(tw) · anchor_w / W``, and a class's confidence is
    ``softmax(logits) · σ(objectness)`` (reference §3.2).

    Example:
        >>> grid = np.zeros((5 * 6, 2, 2))  # 5 anchors x (4 box + objectness + 1 class), 2x2 cells
        >>> grid[4::6] = -10.0  # no anchor sees an object ...
        >>> grid[4] = 10.0  # ... but the first, in every cell
        >>> [(lab.name, round(lab.box.left, 3)) for lab in decode_yolo(grid, ["thing"], 0.5)][:2]
        [('thing', 0.107), ('thing', 0.607)]
    """
    channels, height, width = grid.shape
    per_anchor = 5 + len(labels)
    if channels != len(anchors) * per_anchor:
        raise ConfigurationError(
            f"the detector's grid has {channels} channels; {len(anchors)} anchors and {len(labels)} labels "
            f"need {len(anchors) * per_anchor}: is labels.txt the one exported with this model?",
            backend=_NAME,
        )
    cells = np.asarray(grid, dtype=np.float64).reshape(len(anchors), per_anchor, height, width)
    if not np.isfinite(cells).all():
        raise ServiceError("the detector produced non-finite values", backend=_NAME)
    anchor = np.asarray(anchors, dtype=np.float64)
    columns = np.arange(width)[None, None, :]
    rows = np.arange(height)[None, :, None]
    centre_x = (_sigmoid(cells[:, 0]) + columns) / width
    centre_y = (_sigmoid(cells[:, 1]) + rows) / height
    box_w = np.exp(np.minimum(cells[:, 2], 50.0)) * anchor[:, 0, None, None] / width
    box_h = np.exp(np.minimum(cells[:, 3], 50.0)) * anchor[:, 1, None, None] / height
    logits = cells[:, 5:]
    class_probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    class_probs /= class_probs.sum(axis=1, keepdims=True)
    scores = class_probs * _sigmoid(cells[:, 4])[:, None]
    boxes = np.stack([centre_x - box_w / 2, centre_y - box_h / 2, box_w, box_h], axis=-1).reshape(-1, 4)
    flat_scores = scores.transpose(0, 2, 3, 1).reshape(-1, len(labels))
    kept = non_max_suppression(
        boxes, flat_scores, iou_threshold=iou_threshold, min_score=max(threshold, MIN_DETECTION_CONFIDENCE)
    )
    return tuple(
        Label(
            name=labels[cls],
            confidence=service_confidence(score, backend=_NAME, what=f"a {labels[cls]!r} box"),
            box=BoundingBox.clipped(*boxes[row].tolist()),
        )
        for row, cls, score in kept
    )


def ssd_labels(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, labels: Sequence[str], threshold: float
) -> tuple[Label, ...]:
    """One image's S1 detections (``[N, 4]`` x1 y1 x2 y2, ``[N]`` scores, ``[N]`` class ids) → labels.

    Example:
        >>> corners = np.array([[0.25, 0.25, 0.75, 0.5]])
        >>> found = ssd_labels(corners, np.array([0.9]), np.array([1]), ["a", "b"], 0.0)
        >>> found[0].name, found[0].box
        ('b', BoundingBox(left=0.25, top=0.25, width=0.5, height=0.25))
    """
    corners = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    confidences = _confidences(np.ravel(scores), "detection scores")
    ids = np.ravel(classes).astype(np.int64)
    if not len(corners) == len(confidences) == len(ids):
        raise ServiceError(
            f"the detector gave {len(corners)} boxes, {len(confidences)} scores and {len(ids)} classes",
            backend=_NAME,
        )
    found: list[Label] = []
    for (x1, y1, x2, y2), score, cls in zip(
        corners.tolist(), confidences.tolist(), ids.tolist(), strict=True
    ):
        if score < max(threshold, MIN_DETECTION_CONFIDENCE):
            continue
        if not 0 <= cls < len(labels):
            raise ConfigurationError(
                f"the detector found class {cls} but there are only {len(labels)} labels", backend=_NAME
            )
        found.append(
            Label(name=labels[cls], confidence=score, box=BoundingBox.clipped(x1, y1, x2 - x1, y2 - y1))
        )
    return tuple(found)


@dataclass(frozen=True)
class Decoder:
    """Turns one ``session.run`` result of a family into one label tuple per image.

    Example:
        >>> Decoder("zipmap", ()).decode([[{"cat": 0.7, "dog": 0.3}]], 1)[0][0].name
        'cat'
    """

    family: Family
    labels: tuple[str, ...]
    threshold: float = 0.0
    anchors: tuple[tuple[float, float], ...] = DEFAULT_ANCHORS
    iou_threshold: float = DEFAULT_IOU

    def decode(self, outputs: Sequence[Any], count: int) -> list[tuple[Label, ...]]:
        """Labels for the first ``count`` images of a batch (the rest is padding)."""
        if self.family == "zipmap":
            return [zipmap_labels(outputs[0][i], self.threshold) for i in range(count)]
        if self.family == "classifier":
            probabilities = np.asarray(outputs[0])
            return [classifier_labels(probabilities[i], self.labels, self.threshold) for i in range(count)]
        if self.family == "yolo":
            grids = np.asarray(outputs[0])
            return [
                decode_yolo(
                    grids[i],
                    self.labels,
                    self.threshold,
                    anchors=self.anchors,
                    iou_threshold=self.iou_threshold,
                )
                for i in range(count)
            ]
        boxes, scores, classes = (np.asarray(output) for output in outputs)
        return [
            ssd_labels(boxes[i], scores[i], classes[i], self.labels, self.threshold) for i in range(count)
        ]
