"""Post-processing of detections a service returned: a confidence floor and class-wise NMS.

Pure Python (no numpy: the Custom Vision backend is part of the core install). The ONNX backend's
vectorised NMS over a whole YOLO grid lives in ``backends/_onnx_outputs.py``; this one runs over the
few dozen boxes an answer holds.

Example:
    >>> from azvision import BoundingBox, Label
    >>> box = BoundingBox(left=0.1, top=0.1, width=0.4, height=0.4)
    >>> labels = [Label(name="cat", confidence=0.9, box=box), Label(name="cat", confidence=0.8, box=box),
    ...           Label(name="dog", confidence=0.7, box=box), Label(name="cat", confidence=0.01, box=box)]
    >>> [(lab.name, lab.confidence) for lab in filter_detections(labels, min_confidence=0.05, nms_iou=0.5)]
    [('cat', 0.9), ('dog', 0.7)]
"""

from __future__ import annotations

from collections.abc import Sequence

from ._errors import ConfigurationError
from ._models import Label

__all__ = ["check_detection_options", "filter_detections"]


def check_detection_options(min_confidence: float, nms_iou: float | None, *, backend: str) -> None:
    """Refuse a ``min_confidence`` outside [0, 1] or an ``nms_iou`` outside (0, 1]."""
    if not 0.0 <= min_confidence <= 1.0:
        raise ConfigurationError(f"min_confidence must be in [0, 1], got {min_confidence}", backend=backend)
    if nms_iou is not None and not 0.0 < nms_iou <= 1.0:
        raise ConfigurationError(f"nms_iou must be in (0, 1], got {nms_iou}", backend=backend)


def filter_detections(
    labels: Sequence[Label], *, min_confidence: float = 0.0, nms_iou: float | None = None
) -> tuple[Label, ...]:
    """Drop labels below ``min_confidence``; with ``nms_iou``, also drop every box that overlaps a more
    confident box *of the same label* by more than ``nms_iou`` (greedy, best first). Order is kept."""
    kept: list[Label] = []
    for label in sorted(labels, key=lambda lab: -lab.confidence):
        if label.confidence < min_confidence:
            continue
        if nms_iou is not None and label.box is not None:
            box = label.box
            if any(
                other.name == label.name and other.box is not None and box.iou(other.box) > nms_iou
                for other in kept
            ):
                continue
        kept.append(label)
    chosen = {id(label) for label in kept}
    return tuple(label for label in labels if id(label) in chosen)
