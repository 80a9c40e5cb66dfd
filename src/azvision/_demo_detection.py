"""A deterministic object-detection data set: several shapes per image, their boxes in a COCO JSON.

Each image holds two to four objects of the requested classes (shapes from `azvision.synthetic`, each
class with its own hue), of varied sizes, apart from one another, plus distractors: clutter lines and,
in about half the images, a shape of another kind that is *not* annotated (the detector must learn to
leave it alone). Every image is drawn from its own seeded ``random.Random``, so the same arguments give
the same pixels and boxes on every machine; different ``seed`` values give disjoint sets (a held-out
split is ``seed + 1``).

Example:
    >>> import tempfile
    >>> data = make_detection_dataset(tempfile.mkdtemp(), images=4, seed=1)
    >>> len(data), data.labels, sum(len(item.regions) for item in data) >= 8
    (4, ('circle', 'square', 'triangle'), True)
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from .detection_datasets import DetectionDataset
from .synthetic import SHAPES, _hsv, draw_clutter, draw_shape, shape_bounds

__all__ = ["ANNOTATIONS_FILE", "detection_scene", "make_detection_dataset"]

#: The COCO file `make_detection_dataset` writes beside the images.
ANNOTATIONS_FILE = "annotations.json"
_DISTRACTOR = "ring"
_NOISE_ALPHA = 0.06

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
    return Image.blend(image, noise, _NOISE_ALPHA), found


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
