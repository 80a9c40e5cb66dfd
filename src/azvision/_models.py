"""The one answer every backend gives: :class:`Prediction` of :class:`Label` (optionally boxed)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

__all__ = ["BoundingBox", "Label", "Prediction"]


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
    def _clip_rounding(cls, value: Any) -> Any:
        # Services and float32 softmax outputs overshoot 1.0 by an ulp now and then.
        if isinstance(value, float) and 1.0 < value <= 1.0 + 1e-6:
            return 1.0
        return value


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

    _image: bytes | None = PrivateAttr(default=None)

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

    def with_image(self, image: bytes | None) -> Prediction:
        """Attach the image bytes (kept privately, for notebook display only); returns ``self``."""
        self._image = image
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

        Needs ``pip install 'azvision[notebook]'``; see :func:`azvision._supervision.to_supervision`.

        Example:
            >>> p.to_supervision(class_names=["cat", "dog"])  # doctest: +SKIP
        """
        from ._supervision import to_supervision

        return to_supervision(self, class_names=class_names, image_size=image_size)

    def _repr_html_(self) -> str:
        """Notebook display: a thumbnail (boxes drawn for detections) and bars for the top labels."""
        return render_html(self)


def _thumbnail_data_uri(image: bytes, labels: Iterable[Label], size: int = 224) -> str | None:
    from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(image)) as opened:
            img = ImageOps.exif_transpose(opened).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    img.thumbnail((size, size))
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


def render_html(prediction: Prediction, *, max_labels: int = 5) -> str:
    """HTML for one prediction: optional thumbnail, then one bar per top label."""
    esc = html.escape
    parts = ['<div class="azvision-prediction" style="display:flex;gap:12px;font-family:sans-serif">']
    if prediction._image is not None:
        uri = _thumbnail_data_uri(prediction._image, prediction.labels)
        if uri:
            parts.append(
                f'<img src="{uri}" alt="{esc(prediction.source or "image")}" style="max-width:224px">'
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
