"""Deterministic labelled images: one folder of generated shapes per label, laid out like a real data set.

Use it to try azvision without data of your own, to test code that takes a folder of labelled images, or
to check a model end to end (the demo, the examples and azvision's own tests use it). Every image is one
filled shape (its label) of random size, place and rotation on a background with a few clutter lines and a
little pixel noise. With `colours="per_class"` each label also has its own hue (shape and colour both tell
the classes apart, as classes of real photos differ in several ways); with `colours="random"` only the shape
does (a harder test of what a model learned). The same arguments give the same pixels on every machine:
everything is drawn from seeded `random.Random` instances, one per image, so an image does not change when
`per_class` or the other classes change. Pillow is the only dependency.

Example:
    >>> import tempfile
    >>> from azvision.synthetic import make_dataset
    >>> with tempfile.TemporaryDirectory() as root:
    ...     data = make_dataset(root, classes=("circle", "star"), per_class=3, seed=1)
    ...     len(data), data.labels
    (6, ('circle', 'star'))

For object detection, `make_detection_dataset` writes scenes of two to four shapes of varied sizes (each
class with its own hue) with clutter lines and, in about half the images, an unannotated distractor shape,
plus their boxes as COCO JSON; a held-out split is `seed + 1`.

    >>> with tempfile.TemporaryDirectory() as root:
    ...     scenes = make_detection_dataset(root, images=4, seed=1)
    ...     len(scenes), scenes.labels, sum(len(item.regions) for item in scenes) >= 8
    (4, ('circle', 'square', 'triangle'), True)
"""

from __future__ import annotations

import colorsys
import json
import math
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw

from .datasets import Dataset, DatasetItem
from .detection_datasets import DetectionDataset

__all__ = [
    "ANNOTATIONS_FILE",
    "SHAPES",
    "Colours",
    "detection_scene",
    "make_dataset",
    "make_detection_dataset",
    "shape_image",
]

#: The shapes `shape_image` draws; each is a class name `make_dataset` accepts.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring", "hexagon")

Colours = Literal["per_class", "random"]
Size = int | tuple[int, int]
RGB = tuple[int, int, int]
Point = tuple[float, float]

_NOISE_ALPHA = 0.08
_MIN_CONTRAST = 180  # sum of channel differences between the shape and its background
_CROP_MARGIN = 0.07
_SUFFIX = {"png": ".png", "jpeg": ".jpg"}


def _hsv(hue: float, saturation: float, value: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return round(r * 255), round(g * 255), round(b * 255)


def _contrast(a: RGB, b: RGB) -> int:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True))


def _regular(n: int, radii: Sequence[float] = (1.0,)) -> list[Point]:
    """``n`` vertices of a unit polygon, the radii taken in turn (two radii make a star), first one up."""
    return [
        (
            radii[i % len(radii)] * math.sin(2 * math.pi * i / n),
            radii[i % len(radii)] * math.cos(2 * math.pi * i / n),
        )
        for i in range(n)
    ]


_ARM = 0.34
_OUTLINES: dict[str, list[Point]] = {
    "square": [(x * math.sqrt(0.5), y * math.sqrt(0.5)) for x, y in ((1, 1), (1, -1), (-1, -1), (-1, 1))],
    "triangle": _regular(3),
    "hexagon": _regular(6),
    "star": _regular(10, (1.0, 0.42)),
    "cross": [
        (_ARM, 1), (_ARM, _ARM), (1, _ARM), (1, -_ARM), (_ARM, -_ARM), (_ARM, -1),
        (-_ARM, -1), (-_ARM, -_ARM), (-1, -_ARM), (-1, _ARM), (-_ARM, _ARM), (-_ARM, 1),
    ],
}  # fmt: skip


def _place(outline: Sequence[Point], cx: float, cy: float, radius: float, angle: float) -> list[Point]:
    """Scale a unit outline (y up) by ``radius``, rotate it by ``angle`` radians, centre it on the image."""
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + radius * (x * cos - y * sin), cy - radius * (x * sin + y * cos)) for x, y in outline]


def draw_shape(
    draw: ImageDraw.ImageDraw, kind: str, centre: Point, radius: float, angle: float, ink: RGB
) -> None:
    """Draw a filled ``kind`` (one of `SHAPES`) of ``radius`` around ``centre``, tilted ``angle``."""
    cx, cy = centre
    if kind == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=ink)
    elif kind == "ring":
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        draw.ellipse(box, outline=ink, width=max(3, round(radius * 0.3)))
    else:
        draw.polygon(_place(_OUTLINES[kind], cx, cy, radius, angle), fill=ink)


def draw_clutter(
    draw: ImageDraw.ImageDraw, rng: random.Random, background: RGB, size: tuple[int, int], *, lines: int
) -> None:
    """Draw ``lines`` random 2-px lines in tints of ``background`` across an image of ``size``."""
    width, height = size
    for _ in range(lines):
        ends = [(rng.uniform(0, width), rng.uniform(0, height)) for _ in range(2)]
        clutter = tuple(round(c * 0.6 + 255 * 0.4 * rng.random()) for c in background)
        draw.line(ends, fill=(clutter[0], clutter[1], clutter[2]), width=2)


def shape_bounds(kind: str, centre: Point, radius: float, angle: float) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` in pixels of what `draw_shape` draws with the same arguments."""
    cx, cy = centre
    if kind in ("circle", "ring"):
        return cx - radius, cy - radius, cx + radius, cy + radius
    points = _place(_OUTLINES[kind], cx, cy, radius, angle)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _side(size: Size, rng: random.Random) -> int:
    return size if isinstance(size, int) else rng.randint(*size)


def _palette(kind_index: int, n_kinds: int, colours: Colours, rng: random.Random) -> tuple[RGB, RGB]:
    """``(background, ink)`` with enough contrast to see the shape."""
    while True:
        if colours == "per_class":
            # Hues spread around the wheel; pale, unsaturated backgrounds.
            ink = _hsv(
                kind_index / n_kinds + rng.uniform(-0.03, 0.03), rng.uniform(0.6, 0.9), rng.uniform(0.6, 0.9)
            )
            background = _hsv(rng.random(), rng.uniform(0.0, 0.15), rng.uniform(0.85, 1.0))
        else:
            ink = _hsv(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0))
            background = _hsv(rng.random(), rng.uniform(0.0, 1.0), rng.uniform(0.2, 1.0))
        if _contrast(ink, background) >= _MIN_CONTRAST:
            return background, ink


def shape_image(
    kind: str,
    *,
    seed: int | str = 0,
    size: Size = (224, 320),
    colours: Colours = "per_class",
    classes: Sequence[str] = SHAPES,
) -> Image.Image:
    """One RGB image of a `kind` shape (one of `SHAPES`), drawn from `seed` alone.

    `size` is the side in pixels, or a `(min, max)` range each side is drawn from. With
    `colours="per_class"` the hue depends on `kind`'s place in `classes`. Raises `ValueError` for a kind
    not in `SHAPES`.

    Example:
        >>> from azvision.synthetic import shape_image
        >>> image = shape_image("star", seed=3, size=128)
        >>> image.size, image.mode
        ((128, 128), 'RGB')
    """
    if kind not in SHAPES:
        raise ValueError(f"unknown shape {kind!r}; choose from {', '.join(SHAPES)}")
    rng = random.Random(f"{kind}/{seed}")
    width, height = _side(size, rng), _side(size, rng)
    index = list(classes).index(kind) if kind in classes else SHAPES.index(kind)
    background, ink = _palette(index, len(classes) if kind in classes else len(SHAPES), colours, rng)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    draw_clutter(draw, rng, background, (width, height), lines=3)
    # Inside the centred square, clear of its edges: models centre-crop (Custom Vision keeps 224 of 256).
    short = min(width, height)
    radius = rng.uniform(0.22, 0.38) * short
    margin = _CROP_MARGIN * short + radius
    cx = rng.uniform((width - short) / 2 + margin, (width + short) / 2 - margin)
    cy = rng.uniform((height - short) / 2 + margin, (height + short) / 2 - margin)
    angle = rng.uniform(-math.pi / 12, math.pi / 12)  # tilted, still recognisably upright
    draw_shape(draw, kind, (cx, cy), radius, angle, ink)
    noise = Image.frombytes("L", (width, height), rng.randbytes(width * height)).convert("RGB")
    return Image.blend(image, noise, _NOISE_ALPHA)


def make_dataset(
    root: str | os.PathLike[str],
    *,
    classes: Sequence[str] = ("circle", "square", "triangle"),
    per_class: int = 20,
    size: Size = (224, 320),
    seed: int = 0,
    colours: Colours = "per_class",
    image_format: Literal["jpeg", "png"] = "jpeg",
) -> Dataset:
    """Write `per_class` images of each class to `root/<class>/<class>_NNN.jpg` and return them.

    `classes` are names from `SHAPES`. Different `seed` values give disjoint images, so a held-out set is
    `make_dataset(other_root, seed=seed + 1, ...)`. Existing files of the same names are overwritten (with
    the same pixels); nothing else in `root` is touched or returned. The result is a
    `azvision.datasets.Dataset`, ready for `CustomVisionTrainer.train_from_folder` or
    `azvision.evaluation.evaluate`. Bad arguments raise `ValueError` before anything is written.

    Example:
        >>> import tempfile
        >>> from azvision.synthetic import make_dataset
        >>> with tempfile.TemporaryDirectory() as root:
        ...     train = make_dataset(root, per_class=5, seed=0)
        ...     train.counts()
        {'circle': 5, 'square': 5, 'triangle': 5}
    """
    unknown = [name for name in classes if name not in SHAPES]
    if unknown or len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"classes must be distinct names from {', '.join(SHAPES)}; got {list(classes)}")
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    if image_format not in _SUFFIX:
        raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
    base = Path(root)
    items = []
    for kind in classes:
        folder = base / kind
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            image = shape_image(kind, seed=f"{seed}/{index}", size=size, colours=colours, classes=classes)
            path = folder / f"{kind}_{index:03d}{_SUFFIX[image_format]}"
            if image_format == "png":
                image.save(path, "PNG")
            else:
                image.save(path, "JPEG", quality=90)
            items.append(DatasetItem(path, (kind,)))
    return Dataset(items=tuple(items), root=base)


# ---- object-detection scenes ------------------------------------------------------------------------

ANNOTATIONS_FILE = "annotations.json"
_DISTRACTOR = "ring"
_SCENE_NOISE_ALPHA = 0.06

Scene = tuple[Image.Image, list[tuple[str, tuple[float, float, float, float]]]]


def detection_scene(
    seed: int | str,
    *,
    classes: Sequence[str] = ("circle", "square", "triangle"),
    size: tuple[int, int] = (320, 256),
    objects: tuple[int, int] = (2, 4),
) -> Scene:
    """One image and its ``(label, (x, y, width, height) in pixels)`` objects, drawn from ``seed``.

    Example:
        >>> image, boxes = detection_scene(3)
        >>> image.size, 2 <= len(boxes) <= 4
        ((320, 256), True)
    """
    rng = random.Random(f"detection/{seed}")
    width, height = size
    background = _hsv(rng.random(), rng.uniform(0.0, 0.12), rng.uniform(0.82, 1.0))
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    draw_clutter(draw, rng, background, (width, height), lines=4)
    short = min(width, height)
    wanted = [rng.choice(list(classes)) for _ in range(rng.randint(*objects))]
    distractor = next((k for k in (_DISTRACTOR, *SHAPES) if k not in classes), None)
    if distractor is not None and rng.random() < 0.5:
        wanted.append(distractor)
    placed: list[tuple[float, float, float]] = []
    found: list[tuple[str, tuple[float, float, float, float]]] = []
    for kind in wanted:
        for _attempt in range(40):
            radius = rng.uniform(0.09, 0.22) * short
            cx, cy = rng.uniform(radius + 2, width - radius - 2), rng.uniform(radius + 2, height - radius - 2)
            if all(math.hypot(cx - x, cy - y) > 1.1 * (radius + r) for x, y, r in placed):
                break
        else:
            continue
        placed.append((cx, cy, radius))
        index = list(classes).index(kind) if kind in classes else len(classes)
        hue = index / (len(classes) + 1) + rng.uniform(-0.03, 0.03)
        ink = _hsv(hue, rng.uniform(0.65, 0.9), rng.uniform(0.55, 0.85))
        angle = rng.uniform(-math.pi / 12, math.pi / 12)
        draw_shape(draw, kind, (cx, cy), radius, angle, ink)
        if kind in classes:
            x0, y0, x1, y1 = shape_bounds(kind, (cx, cy), radius, angle)
            x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1)
            found.append((kind, (round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2))))
    noise = Image.frombytes("L", (width, height), rng.randbytes(width * height)).convert("RGB")
    return Image.blend(image, noise, _SCENE_NOISE_ALPHA), found


def make_detection_dataset(
    root: str | os.PathLike[str],
    *,
    classes: Sequence[str] = ("circle", "square", "triangle"),
    images: int = 48,
    size: tuple[int, int] = (320, 256),
    seed: int = 0,
) -> DetectionDataset:
    """Write ``images`` scenes to ``root/scene_NNN.jpg`` and their boxes to ``root/annotations.json``
    (COCO), and return the data set read back from them.

    Example:
        >>> import tempfile
        >>> make_detection_dataset(tempfile.mkdtemp(), images=2).items[0].path.name
        'scene_000.jpg'
    """
    unknown = [name for name in classes if name not in SHAPES]
    if unknown or len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"classes must be distinct names from {', '.join(SHAPES)}; got {list(classes)}")
    if images < 1:
        raise ValueError(f"images must be at least 1, got {images}")
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(classes)]
    ids = {name: i + 1 for i, name in enumerate(classes)}
    coco_images: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    for index in range(images):
        image, boxes = detection_scene(f"{seed}/{index}", classes=classes, size=size)
        name = f"scene_{index:03d}.jpg"
        image.save(base / name, "JPEG", quality=92)
        coco_images.append({"id": index + 1, "file_name": name, "width": size[0], "height": size[1]})
        for label, bbox in boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": ids[label],
                    "bbox": list(bbox),
                    "area": round(bbox[2] * bbox[3], 2),
                    "iscrowd": 0,
                }
            )
    document = {"images": coco_images, "annotations": annotations, "categories": categories}
    (base / ANNOTATIONS_FILE).write_text(json.dumps(document, indent=1) + "\n", "utf-8")
    return DetectionDataset.from_coco(base / ANNOTATIONS_FILE)
