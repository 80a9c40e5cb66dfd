"""The one answer every backend gives: `Prediction` of `Label` (optionally boxed)."""

from __future__ import annotations

import base64
import html
import io
import math
import numbers
import os
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from ._errors import ServiceError
from ._images import DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_PIXELS

__all__ = ["CONFIDENCE_TOLERANCE", "BoundingBox", "Label", "Prediction", "service_confidence"]

#: How far outside [0, 1] a confidence may be and still count as rounding (it is then clipped). Float32
#: softmax outputs and services' own rounding overshoot by a few ulps (about 1e-7); anything further out is
#: not a probability (a logit, a percentage) and is refused.
CONFIDENCE_TOLERANCE = 1e-6


def _clip_confidence(value: object) -> float | None:
    """The rule: a real number within `CONFIDENCE_TOLERANCE` of [0, 1], clipped; else ``None``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    if math.isnan(number) or not -CONFIDENCE_TOLERANCE <= number <= 1.0 + CONFIDENCE_TOLERANCE:
        return None
    return min(max(number, 0.0), 1.0)


def service_confidence(value: object, *, backend: str, what: str) -> float:
    """A confidence a service (or model) gave, checked by the one rule every backend applies.

    Values within `CONFIDENCE_TOLERANCE` of [0, 1] are clipped into it; anything else (out of range,
    NaN, infinite, not a number) is a `ServiceError` that names the backend and the value.

    Example:
        >>> service_confidence(1.0000001, backend="onnx", what="'cat'")
        1.0
        >>> service_confidence(1.7, backend="custom_vision", what="tag 'cat'")
        Traceback (most recent call last):
        ...
        azvision._errors.ServiceError: the custom_vision backend got the confidence 1.7 for tag 'cat': \
a confidence must be a number in [0, 1] (a logit or a percentage?)
    """
    clipped = _clip_confidence(value)
    if clipped is None:
        raise ServiceError(
            f"the {backend} backend got the confidence {value!r:.60} for {what}: a confidence must be a "
            "number in [0, 1] (a logit or a percentage?)",
            backend=backend,
        )
    return clipped


class BoundingBox(BaseModel):
    """A box normalised to the image: every value in [0, 1], origin at the top-left corner.

    Example:
        >>> BoundingBox(left=0.1, top=0.2, width=0.5, height=0.25).right
        0.6
    """

    model_config = ConfigDict(frozen=True)

    left: float = Field(ge=0.0, le=1.0)
    top: float = Field(ge=0.0, le=1.0)
    width: float = Field(ge=0.0, le=1.0)
    height: float = Field(ge=0.0, le=1.0)

    @property
    def right(self) -> float:
        """``left + width``."""
        return round(self.left + self.width, 12)

    @property
    def bottom(self) -> float:
        """``top + height``."""
        return round(self.top + self.height, 12)

    def iou(self, other: BoundingBox) -> float:
        """Intersection over union with ``other`` (0.0 when they do not overlap).

        Example:
            >>> BoundingBox(left=0, top=0, width=0.5, height=0.5).iou(
            ...     BoundingBox(left=0.25, top=0, width=0.5, height=0.5))
            0.3333333333333333
        """
        width = min(self.right, other.right) - max(self.left, other.left)
        height = min(self.bottom, other.bottom) - max(self.top, other.top)
        if width <= 0 or height <= 0:
            return 0.0
        inter = width * height
        return inter / (self.width * self.height + other.width * other.height - inter)

    @classmethod
    def clipped(cls, left: float, top: float, width: float, height: float) -> BoundingBox:
        """Build a box, clipping it to the image (services round boxes a hair past the edge).

        Example:
            >>> BoundingBox.clipped(-0.01, 0.5, 0.5, 0.6).top
            0.5
        """
        x0, y0 = min(max(left, 0.0), 1.0), min(max(top, 0.0), 1.0)
        x1, y1 = min(max(left + width, 0.0), 1.0), min(max(top + height, 0.0), 1.0)
        return cls(left=x0, top=y0, width=max(x1 - x0, 0.0), height=max(y1 - y0, 0.0))


class Label(BaseModel):
    """One label with its confidence in [0, 1]; ``box`` is set for detections.

    ``confidence`` follows the same rule as every backend (`service_confidence`): within
    `CONFIDENCE_TOLERANCE` of [0, 1] it is clipped, anything else is a validation error.

    Example:
        >>> Label(name="cat", confidence=0.93).name
        'cat'
    """

    model_config = ConfigDict(frozen=True)

    name: str
    confidence: float = Field(ge=0.0, le=1.0)
    box: BoundingBox | None = None
    id: str | None = None

    @field_validator("confidence", mode="before")
    @classmethod
    def _one_rule(cls, value: Any) -> float:
        clipped = _clip_confidence(value)
        if clipped is None:
            raise ValueError(f"a confidence must be a number in [0, 1], got {value!r:.60}")
        return clipped


class Prediction(BaseModel):
    """What a classifier says about one image, whatever the backend.

    ``labels`` are sorted by confidence, highest first. ``raw`` keeps the service's own answer but is left
    out of ``repr``. ``notes`` says what azvision did to the image before sending it (e.g. downscaling).

    Example:
        >>> p = Prediction(labels=[Label(name="dog", confidence=0.2), Label(name="cat", confidence=0.7)],
        ...                backend="onnx")
        >>> p.label, p.confidence
        ('cat', 0.7)
    """

    model_config = ConfigDict(frozen=True)

    labels: tuple[Label, ...] = ()
    backend: str
    model: str | None = None
    source: str | None = None
    caption: str | None = None
    image_size: tuple[int, int] | None = None
    notes: tuple[str, ...] = ()
    latency_ms: float | None = None
    #: Tokens the request used (``prompt_tokens``, ``completion_tokens``, ``total_tokens``), when billed so.
    usage: dict[str, int] | None = None
    raw: Any = Field(default=None, repr=False, exclude=True)

    #: What notebook display shows: a path or URL to read the image again, or a small image (see with_image).
    _preview: bytes | str | None = PrivateAttr(default=None)

    @field_validator("labels", mode="after")
    @classmethod
    def _sorted(cls, labels: tuple[Label, ...]) -> tuple[Label, ...]:
        return tuple(sorted(labels, key=lambda lab: lab.confidence, reverse=True))

    @property
    def top(self) -> Label | None:
        """The most confident label, or ``None`` when there is none."""
        return self.labels[0] if self.labels else None

    @property
    def label(self) -> str | None:
        """Name of the most confident label (``None`` when empty)."""
        return self.labels[0].name if self.labels else None

    @property
    def confidence(self) -> float:
        """Confidence of the most confident label (``0.0`` when empty)."""
        return self.labels[0].confidence if self.labels else 0.0

    def with_image(self, image: bytes | str | None) -> Prediction:
        """Attach what notebook display shows; returns ``self``.

        A ``str`` is a file path or URL, read again only when displayed. Bytes are kept as they are up to
        64 KB; larger images are replaced by a thumbnail at once, so results never hold whole images.

        Example:
            >>> Prediction(backend="onnx").with_image("photos/cat.jpg")._preview
            'photos/cat.jpg'
        """
        if isinstance(image, bytes) and len(image) > _KEEP_BYTES:
            image = _thumbnail(image)
        self._preview = image
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the shape of one ``azvision classify`` output line (without ``error``).

        Example:
            >>> Prediction(labels=[Label(name="cat", confidence=1.0)], backend="onnx").to_dict()["label"]
            'cat'
        """
        return {
            "source": self.source,
            "label": self.label,
            "confidence": self.confidence,
            "labels": [
                {
                    "name": lab.name,
                    "confidence": lab.confidence,
                    "box": lab.box.model_dump() if lab.box else None,
                }
                for lab in self.labels
            ],
            "backend": self.backend,
            "model": self.model,
            "caption": self.caption,
            "notes": list(self.notes),
        }

    def to_supervision(
        self, *, class_names: Sequence[str] | None = None, image_size: tuple[int, int] | None = None
    ) -> Any:
        """Roboflow ``supervision`` objects: ``Detections`` when labels have boxes, else ``Classifications``.

        Needs ``pip install 'azvision[notebook]'``; see `azvision._supervision.to_supervision`.

        Example:
            >>> p.to_supervision(class_names=["cat", "dog"])  # doctest: +SKIP
        """
        from ._supervision import to_supervision

        return to_supervision(self, class_names=class_names, image_size=image_size)

    def _repr_html_(self) -> str:
        """Notebook display: a thumbnail (boxes drawn for detections) and bars for the top labels."""
        return render_html(self)


#: Images up to this size are kept whole for display; larger ones become a thumbnail.
_KEEP_BYTES = 64 * 1024
_THUMBNAIL_SIDE = 224


def _open_upright(image: bytes) -> Any:
    """The image upright, as a small RGB thumbnail; ``None`` when it cannot (or must not) be decoded."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(image)) as opened:
            if opened.width * opened.height > DEFAULT_MAX_PIXELS:  # never decode a bomb for a thumbnail
                return None
            opened.draft("RGB", (_THUMBNAIL_SIDE, _THUMBNAIL_SIDE))  # JPEG: decode at a fraction of the size
            img = ImageOps.exif_transpose(opened).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    img.thumbnail((_THUMBNAIL_SIDE, _THUMBNAIL_SIDE))
    return img


def _thumbnail(image: bytes) -> bytes | None:
    img = _open_upright(image)
    if img is None:
        return None
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _preview_bytes(preview: bytes | str) -> bytes | None:
    """The preview's encoded pixels: the bytes kept, or the file re-read (unless gone or huge)."""
    if isinstance(preview, bytes):
        return preview
    try:
        with open(preview, "rb") as handle:
            if os.fstat(handle.fileno()).st_size > DEFAULT_MAX_INPUT_BYTES:
                return None
            return handle.read()
    except OSError:
        return None


def _thumbnail_data_uri(image: bytes, labels: Iterable[Label]) -> str | None:
    from PIL import ImageDraw

    img = _open_upright(image)
    if img is None:
        return None
    draw = ImageDraw.Draw(img)
    w, h = img.size
    for lab in labels:
        if lab.box is not None:
            b = lab.box
            draw.rectangle([b.left * w, b.top * h, b.right * w, b.bottom * h], outline=(255, 64, 64), width=2)
            draw.text((b.left * w + 2, b.top * h + 1), lab.name, fill=(255, 64, 64))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _image_src(prediction: Prediction) -> str | None:
    preview = prediction._preview
    if preview is None:
        return None
    if isinstance(preview, str) and preview.startswith(("http://", "https://")):
        return preview  # the notebook's browser loads it; boxes are drawn only on local pixels
    data = _preview_bytes(preview)
    return _thumbnail_data_uri(data, prediction.labels) if data else None


def render_html(prediction: Prediction, *, max_labels: int = 5) -> str:
    """HTML for one prediction: optional thumbnail, then one bar per top label."""
    esc = html.escape
    parts = ['<div class="azvision-prediction" style="display:flex;gap:12px;font-family:sans-serif">']
    uri = _image_src(prediction)
    if uri:
        parts.append(
            f'<img src="{esc(uri)}" alt="{esc(prediction.source or "image")}" style="max-width:224px">'
        )
    parts.append("<div>")
    title = esc(prediction.source or "image")
    parts.append(f"<div><b>{title}</b> <small>({esc(prediction.backend)})</small></div>")
    if prediction.caption:
        parts.append(f"<div><i>{esc(prediction.caption)}</i></div>")
    if not prediction.labels:
        parts.append("<div>no labels</div>")
    for lab in prediction.labels[:max_labels]:
        pct = lab.confidence * 100
        parts.append(
            '<div style="display:flex;align-items:center;gap:6px">'
            f'<span style="width:120px">{esc(lab.name)}</span>'
            '<span style="display:inline-block;width:160px;background:#eee">'
            f'<span style="display:block;width:{pct:.1f}%;height:10px;background:#3b82f6"></span></span>'
            f"<span>{pct:.1f}%</span></div>"
        )
    parts.append("</div></div>")
    return "".join(parts)
