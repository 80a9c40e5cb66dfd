"""``Prediction`` → Roboflow ``supervision`` objects, to draw or filter results with that library's tools.

``supervision`` is optional (the ``notebook`` extra); it is imported only when a conversion is asked for.

Example:
    >>> from azvision import BoundingBox, Label, Prediction
    >>> box = BoundingBox(left=0.25, top=0.5, width=0.5, height=0.25)
    >>> p = Prediction(labels=[Label(name="cat", confidence=0.9, box=box)], backend="custom_vision",
    ...                image_size=(200, 100))
    >>> detections = to_supervision(p)  # doctest: +SKIP
    >>> detections.xyxy.tolist(), detections.data["class_name"].tolist()  # doctest: +SKIP
    ([[50.0, 50.0, 150.0, 75.0]], ['cat'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError, missing_extra
from ._models import Prediction

if TYPE_CHECKING:
    # An optional extra: type-checks with or without it installed.
    import supervision  # type: ignore[import-not-found, unused-ignore]

__all__ = ["to_supervision"]


def _import_supervision() -> Any:
    try:
        import supervision
    except ImportError as exc:
        raise missing_extra(exc, what="to_supervision()", extra="notebook") from exc
    return supervision


def _class_ids(names: Sequence[str], class_names: Sequence[str] | None) -> list[int]:
    if class_names is None:
        order = list(dict.fromkeys(names))
        return [order.index(name) for name in names]
    index = {name: i for i, name in enumerate(class_names)}
    missing = sorted(set(names) - set(index))
    if missing:
        raise ConfigurationError(f"labels {missing} are not in class_names {list(class_names)}")
    return [index[name] for name in names]


def to_supervision(
    prediction: Prediction,
    *,
    class_names: Sequence[str] | None = None,
    image_size: tuple[int, int] | None = None,
) -> supervision.Detections | supervision.Classifications:
    """``sv.Detections`` when any label has a box (only the boxed labels), else ``sv.Classifications``.

    ``class_id`` values index ``class_names`` when given (so ids agree across images), else the order in
    which names first appear in ``prediction.labels`` (highest confidence first). Detections carry the names
    in ``data["class_name"]`` and pixel boxes (``xyxy``) for ``image_size`` (width, height), which defaults to
    ``prediction.image_size`` — the size of the image as it was sent, so pass the original size if azvision
    downscaled it (``prediction.notes`` says so). Classifications carry no names: look them up with the
    ids.

    Example:
        >>> from azvision import Label, Prediction
        >>> p = Prediction(labels=[Label(name="dog", confidence=0.3), Label(name="cat", confidence=0.7)],
        ...                backend="onnx")
        >>> to_supervision(p, class_names=["cat", "dog"]).class_id.tolist()  # doctest: +SKIP
        [0, 1]
    """
    sv = _import_supervision()
    import numpy as np

    boxed = [label for label in prediction.labels if label.box is not None]
    if not boxed:
        labels = prediction.labels
        classifications: supervision.Classifications = sv.Classifications(
            class_id=np.array(_class_ids([lab.name for lab in labels], class_names), dtype=int),
            confidence=np.array([lab.confidence for lab in labels], dtype=np.float32),
        )
        return classifications
    size = image_size or prediction.image_size
    if size is None:
        raise ConfigurationError(
            "to_supervision() needs the image size for pixel boxes: pass image_size=(width, height)"
        )
    width, height = size
    xyxy = [
        (b.left * width, b.top * height, b.right * width, b.bottom * height)
        for b in (label.box for label in boxed)
        if b is not None
    ]
    names = [label.name for label in boxed]
    detections: supervision.Detections = sv.Detections(
        xyxy=np.array(xyxy, dtype=np.float32).reshape(-1, 4),
        confidence=np.array([label.confidence for label in boxed], dtype=np.float32),
        class_id=np.array(_class_ids(names, class_names), dtype=int),
        data={"class_name": np.array(names)},
    )
    return detections
