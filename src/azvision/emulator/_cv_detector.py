"""The emulator's object detector: a YOLOv2-style grid head on the frozen backbone.

The image is stretched to 416×416 (BGR, 0-255: the compact detector's input, reference §2.1), the
backbone runs up to its last fire module (a 25×25 map at stride 16), a 2×2 max-pool brings it to the
13×13 grid of a stride-32 detector, and each cell's feature is its own 512 values plus the mean of its
3×3 neighbourhood (context). A 1×1 convolution then gives the compact detector's ``model_outputs0``:
per anchor ``tx, ty, tw, th, objectness, class logits`` (§3.2), decoded with NMS by the emulator's
own reading of the grid (``emulator/_yolo.py``), which must agree with `azvision.OnnxBackend`'s.

Training is three convex fits on those cell features: a logistic regression for "an object's centre
is in this cell" (the cells next to a centre are left out: they are neither object nor background), a
softmax over the tags on the centre cells, and ridge regressions for the box (centre offset through
the logit, log size). Every anchor gets the same outputs with its own size prior folded into the
bias, so the five anchors decode to the same box and NMS keeps one. Horizontally mirrored copies of
the training images double the data. Because the head is linear, the ONNX export is the backbone
graph plus that one convolution, and the prediction route computes exactly what the export does.

Example:
    >>> head = DetectorHead.untrained(("fork", "scissors"))
    >>> head.weights.shape
    (1024, 35)
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper
from PIL import Image, ImageOps

from azvision.emulator._detection_scores import tag_scores
from azvision.emulator._features import backbone_bytes
from azvision.emulator._preprocessing import DETECTOR_SIDE, detector_input
from azvision.emulator._yolo import ANCHORS, read_grid

__all__ = [
    "CELL_FEATURES",
    "DETECTOR_INPUT",
    "GRID",
    "DetectorHead",
    "cell_graph",
    "detection_performance",
    "grid_features",
    "train_detector",
]

#: Side of the detector's square input (the compact detector's declared 416×416).
DETECTOR_INPUT = DETECTOR_SIDE
GRID = DETECTOR_INPUT // 32
_BACKBONE_MAP = "fire9_concat"
CELL_FEATURES = "detector_cell_features"
_CELL_DIM = 1024
_HEAD_FORMAT = "azvision.grid_detector/1"
_L2_OBJECT, _L2_CLASS, _RIDGE = 3e-3, 3e-2, 30.0
_ITERATIONS = 250
_EDGE = 0.02  # centre offsets are kept this far inside the cell, so their logits stay finite

Box = tuple[float, float, float, float]  # left, top, width, height; normalised


@dataclass(frozen=True, eq=False)
class DetectorHead:
    """The 1×1 convolution over cell features: ``weights`` ``(1024, A·(5+C))``, ``bias`` ``(A·(5+C),)``.

    Channels are anchor-major, ``tx, ty, tw, th, objectness, class logits…`` per anchor.
    """

    labels: tuple[str, ...]
    weights: np.ndarray
    bias: np.ndarray

    @classmethod
    def untrained(cls, labels: Sequence[str]) -> DetectorHead:
        channels = len(ANCHORS) * (5 + len(labels))
        return cls(tuple(labels), np.zeros((_CELL_DIM, channels), np.float32), np.zeros(channels, np.float32))

    def grid(self, cells: np.ndarray) -> np.ndarray:
        """``(n, 13, 13, 1024)`` cell features → ``(n, A·(5+C), 13, 13)``, as ``model_outputs0``."""
        out = cells.astype(np.float32) @ self.weights + self.bias
        grid: np.ndarray = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
        return grid

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _HEAD_FORMAT,
            "labels": list(self.labels),
            "weights": base64.b64encode(self.weights.astype("<f4").tobytes()).decode(),
            "bias": base64.b64encode(self.bias.astype("<f4").tobytes()).decode(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DetectorHead:
        labels = tuple(str(label) for label in data["labels"])
        channels = len(ANCHORS) * (5 + len(labels))
        weights = np.frombuffer(base64.b64decode(data["weights"]), "<f4").reshape(_CELL_DIM, channels)
        bias = np.frombuffer(base64.b64decode(data["bias"]), "<f4").reshape(channels)
        return cls(labels, weights.astype(np.float32), bias.astype(np.float32))

    def detect(self, cells: np.ndarray, *, min_probability: float) -> list[tuple[str, float, Box]]:
        """One image's ``(13, 13, 1024)`` cells → ``(label, probability, box)`` after NMS, best first."""
        found = read_grid(self.grid(cells[None])[0], len(self.labels), min_probability)
        return [(self.labels[tag], probability, box) for tag, probability, box in found]


def is_detector_head(data: dict[str, Any] | None) -> bool:
    """Whether a stored head is a `DetectorHead` (``to_json`` form)."""
    return isinstance(data, dict) and data.get("format") == _HEAD_FORMAT


# -- the graph ---------------------------------------------------------------------------------
def cell_graph() -> onnx.ModelProto:
    """Backbone cut at its last fire module, on a 416×416 input, → ``(n, 1024, 13, 13)`` cell features."""
    model = onnx.ModelProto()
    model.ParseFromString(backbone_bytes())
    graph = model.graph
    keep = []
    for node in graph.node:
        if node.op_type in ("GlobalAveragePool", "Flatten"):
            continue
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    graph.node.extend(
        [
            helper.make_node(
                "MaxPool", [_BACKBONE_MAP], ["detector_pooled"], kernel_shape=[2, 2], strides=[2, 2],
                pads=[0, 0, 1, 1],
            ),
            helper.make_node(
                "AveragePool", ["detector_pooled"], ["detector_context"], kernel_shape=[3, 3],
                strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=0,
            ),
            helper.make_node("Concat", ["detector_pooled", "detector_context"], [CELL_FEATURES], axis=1),
        ]
    )  # fmt: skip
    dims = graph.input[0].type.tensor_type.shape.dim
    batch = dims[0].dim_param or "None"
    dims[2].dim_value = dims[3].dim_value = DETECTOR_INPUT
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(CELL_FEATURES, TensorProto.FLOAT, [batch, _CELL_DIM, GRID, GRID])
    )
    return model


class _Cells:
    def __init__(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            cell_graph().SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

    def run(self, images: Sequence[Image.Image]) -> np.ndarray:
        out = np.zeros((len(images), GRID, GRID, _CELL_DIM), np.float32)
        for start in range(0, len(images), 8):
            chunk = images[start : start + 8]
            batch = np.stack([detector_input(image) for image in chunk])
            result = self._session.run([CELL_FEATURES], {"data": batch})[0]
            out[start : start + len(chunk)] = result.transpose(0, 2, 3, 1)
        return out


_lock = threading.Lock()


@cache
def _cells() -> _Cells:
    return _Cells()


def grid_features(images: Sequence[Image.Image]) -> np.ndarray:
    """Upright RGB images → ``(n, 13, 13, 1024)`` cell features (what the exported graph computes)."""
    with _lock:
        extractor = _cells()
    return extractor.run(images)


# -- training ----------------------------------------------------------------------------------
def _logistic(
    x: np.ndarray, y: np.ndarray, l2: float, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression (``y`` one-hot ``(n, k)``, ``k ≥ 2``) or, with ``k == 1``, a sigmoid; Nesterov
    gradient descent from zero on standardised ``x`` (deterministic)."""
    n, d = x.shape
    k = y.shape[1]
    sample = np.ones(n) if weight is None else weight
    sample = sample / sample.sum()
    w, b = np.zeros((d, k), np.float32), np.zeros(k, np.float32)
    sample = sample.astype(np.float32)
    y = y.astype(np.float32)
    vw, vb = w.copy(), b.copy()
    step = min(5.0, 1.0 / (0.25 * _top_eigenvalue(x) * sample.max() + l2 + 1e-9))
    for t in range(_ITERATIONS):
        momentum = t / (t + 3)
        lw, lb = w + momentum * (w - vw), b + momentum * (b - vb)
        logits = x @ lw + lb
        if k == 1:
            p = 1.0 / (1.0 + np.exp(-logits))
        else:
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
        residual = (p - y) * sample[:, None]
        vw, vb = w, b
        w = lw - step * (x.T @ residual + l2 * lw)
        b = lb - step * residual.sum(axis=0)
    return w, b


def _top_eigenvalue(x: np.ndarray) -> float:
    """Largest eigenvalue of ``xᵀx`` by power iteration (an SVD of the cell matrix takes far longer)."""
    v = np.ones(x.shape[1], x.dtype) / np.sqrt(x.shape[1])
    value = 0.0
    for _ in range(30):
        u = x.T @ (x @ v)
        value = float(np.linalg.norm(u))
        v = u / (value or 1.0)
    return value * 1.05


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    mean = y.mean(axis=0)
    w = np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ (y - mean))
    return w, mean


def _logit(value: float) -> float:
    value = min(max(value, _EDGE), 1.0 - _EDGE)
    return float(np.log(value / (1.0 - value)))


def train_detector(
    images: Sequence[Image.Image], regions: Sequence[Sequence[tuple[int, Box]]], labels: Sequence[str]
) -> tuple[DetectorHead, np.ndarray]:
    """Fit the grid head on images and their ``(label index, box)`` regions (mirrored copies added);
    returns the head and the cell features of ``images``."""
    flipped = [ImageOps.mirror(image) for image in images]
    mirrored = [
        [(c, (1.0 - left - width, top, width, height)) for c, (left, top, width, height) in rs]
        for rs in regions
    ]
    cells = grid_features([*images, *flipped])
    all_regions = [*regions, *mirrored]
    n = len(cells)
    flat = cells.reshape(n * GRID * GRID, _CELL_DIM)
    mean, std = flat.mean(axis=0), flat.std(axis=0) + 1e-3
    x = ((flat - mean) / std).astype(np.float32)
    objectness = np.zeros(n * GRID * GRID)
    weight = np.ones(n * GRID * GRID)
    centre_rows: list[int] = []
    classes: list[int] = []
    boxes: list[list[float]] = []
    for i, rs in enumerate(all_regions):
        for label, (left, top, width, height) in rs:
            cx, cy = (left + width / 2) * GRID, (top + height / 2) * GRID
            col, row = min(int(cx), GRID - 1), min(int(cy), GRID - 1)
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    r, c = row + dr, col + dc
                    if 0 <= r < GRID and 0 <= c < GRID and objectness[(i * GRID + r) * GRID + c] == 0:
                        weight[(i * GRID + r) * GRID + c] = 0.0  # next to a centre: neither
            index = (i * GRID + row) * GRID + col
            objectness[index], weight[index] = 1.0, 1.0
            centre_rows.append(index)
            classes.append(label)
            boxes.append(
                [
                    _logit(cx - col),
                    _logit(cy - row),
                    float(np.log(width * GRID)),
                    float(np.log(height * GRID)),
                ]
            )
    w_obj, b_obj = _logistic(x, objectness[:, None], _L2_OBJECT, weight)
    centres = x[centre_rows]
    k = len(labels)
    if k >= 2:
        w_cls, b_cls = _logistic(centres, np.eye(k)[classes], _L2_CLASS)
    else:
        w_cls, b_cls = np.zeros((_CELL_DIM, 1)), np.zeros(1)
    w_box, b_box = _ridge(centres.astype(np.float64), np.asarray(boxes), _RIDGE)
    per_anchor = 5 + k
    weights = np.zeros((_CELL_DIM, len(ANCHORS) * per_anchor))
    bias = np.zeros(len(ANCHORS) * per_anchor)
    for a, (aw, ah) in enumerate(ANCHORS):
        base = a * per_anchor
        weights[:, base : base + 4] = w_box
        bias[base : base + 4] = b_box - np.array([0.0, 0.0, np.log(aw), np.log(ah)])
        weights[:, base + 4] = w_obj[:, 0]
        bias[base + 4] = b_obj[0]
        weights[:, base + 5 : base + per_anchor] = w_cls
        bias[base + 5 : base + per_anchor] = b_cls
    # Fold the standardisation in: the head reads raw cell features.
    mean64, std64 = mean.astype(np.float64), std.astype(np.float64)
    folded_w = weights / std64[:, None]
    folded_b = bias - (mean64 / std64) @ weights
    head = DetectorHead(tuple(labels), folded_w.astype(np.float32), folded_b.astype(np.float32))
    return head, cells[: len(images)]


def detection_performance(
    head: DetectorHead,
    cells: np.ndarray,
    regions: Sequence[Sequence[tuple[int, Box]]],
    tag_ids: Sequence[str],
    threshold: float,
) -> dict[str, Any]:
    """The service's ``IterationPerformance`` body: per-tag precision and recall at IoU 0.5 for boxes
    of probability ≥ ``threshold``, and AP@0.5.

    The emulator measures on the training images (the service holds some out; with 15 images per tag
    there is little to hold out), so these numbers are optimistic: evaluate on held-out images."""
    labels = list(head.labels)
    found = [read_grid(head.grid(cell[None])[0], len(labels), 0.01) for cell in cells]
    scores = tag_scores(regions, found, tags=len(labels), threshold=threshold)
    per_tag = [
        {
            "id": tag_id,
            "name": label,
            "precision": score.precision,
            "precisionStdDeviation": 0.0,
            "recall": score.recall,
            "recallStdDeviation": 0.0,
            "averagePrecision": score.average_precision,
        }
        for tag_id, label, score in zip(tag_ids, labels, scores, strict=True)
        if score.support
    ]
    scored = [score for score in scores if score.support]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    return {
        "perTagPerformance": per_tag,
        "precision": mean([s.precision for s in scored]),
        "precisionStdDeviation": 0.0,
        "recall": mean([s.recall for s in scored]),
        "recallStdDeviation": 0.0,
        "averagePrecision": mean([s.average_precision for s in scored]),
    }


def open_image(data: bytes) -> Image.Image:
    """Decode bytes into an upright RGB image."""
    from azvision.emulator._preprocessing import upright_rgb

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return upright_rgb(image)
