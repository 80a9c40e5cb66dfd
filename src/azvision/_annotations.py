"""The parts of the annotation readers: regions, items, and the checker that collects every problem.

`azvision.detection_datasets` re-exports `Region` and `DetectionItem`; the readers feed boxes to a
`Checker`, which normalises and clips them, reads each image's size, and raises one `AnnotationError`
naming every offender.

Example:
    >>> box = _checked_box(-0.005, 0.2, 0.5, 0.5)
    >>> box.left, box.width
    (0.0, 0.495)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import AnnotationError
from ._models import BoundingBox
from .datasets import _relative

__all__ = ["EDGE_TOLERANCE", "YOLO_NAME_FILES", "Checker", "DetectionItem", "Region"]

#: How far (as a fraction of the image side) a box may poke out of the image and still be clipped into
#: it: annotation tools round to whole pixels and sometimes write the pixel *after* the last one.
EDGE_TOLERANCE = 0.01
#: Files that name a YOLO data set's classes, in the order they are looked for.
YOLO_NAME_FILES = ("classes.txt", "obj.names", "classes.names", "names.txt", "data.yaml", "dataset.yaml")


@dataclass(frozen=True)
class Region:
    """One labelled box of an image; ``box`` is normalised to the image (see `BoundingBox`).

    Example:
        >>> Region("fork", BoundingBox(left=0.1, top=0.2, width=0.3, height=0.4)).label
        'fork'
    """

    label: str
    box: BoundingBox


@dataclass(frozen=True)
class DetectionItem:
    """One image file, its pixel size ``(width, height)`` and its regions (none: a negative image).

    Example:
        >>> DetectionItem(Path("a.png"), (640, 480), ()).labels
        ()
    """

    path: Path
    size: tuple[int, int]
    regions: tuple[Region, ...] = ()

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels of the image's regions, each once, sorted."""
        return tuple(sorted({r.label for r in self.regions}))


_Raw = tuple[str, str, tuple[float, float, float, float], str]  # label, units, (x, y, w, h), where


class Checker:
    """Collects items and every problem; `dataset` raises one error naming them all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.items: list[DetectionItem] = []
        self.problems: list[str] = []
        self.seen: set[Path] = set()

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def image(self, file: Path, raw: Iterable[_Raw], *, declared: tuple[Any, Any] = (None, None)) -> None:
        shown = _relative(file, self.root)
        resolved = file.resolve()
        if resolved in self.seen:
            self.problem(f"{shown}: annotated twice")
            return
        self.seen.add(resolved)
        size, reason = _image_size(file)
        if size is None:
            self.problem(f"{shown}: {reason}")
            return
        width, height = size
        if isinstance(declared[0], int) and isinstance(declared[1], int) and declared[0] > 0 < declared[1]:
            width, height = declared  # pixel boxes were drawn on the size the annotation states
        regions = []
        for label, units, (x, y, w, h), where in raw:
            if not label:
                self.problem(f"{where} ({shown}): empty label")
                continue
            if units == "pixels":
                x, y, w, h = x / width, y / height, w / width, h / height
            box = _checked_box(x, y, w, h)
            if isinstance(box, str):
                self.problem(f"{where} ({shown}): {label}: {box}")
                continue
            regions.append(Region(label, box))
        self.items.append(DetectionItem(file, size, tuple(regions)))

    def finish(self) -> tuple[DetectionItem, ...]:
        """The items sorted by relative path; raises one `AnnotationError` naming every problem."""
        if self.problems:
            raise AnnotationError(self.problems)
        return tuple(sorted(self.items, key=lambda it: _relative(it.path, self.root)))


def _checked_box(x: float, y: float, w: float, h: float) -> BoundingBox | str:
    """The box clipped to the image, or why it cannot be used."""
    if w <= 0 or h <= 0:
        return f"the box has no area (width {w:.4g}, height {h:.4g} of the image)"
    tol = EDGE_TOLERANCE
    if x < -tol or y < -tol or x + w > 1 + tol or y + h > 1 + tol:
        return (
            f"the box ({x:.3f}, {y:.3f}, {x + w:.3f}, {y + h:.3f} as fractions of the image) lies outside "
            "the image"
        )
    box = BoundingBox.clipped(x, y, w, h)
    if box.width <= 0 or box.height <= 0:
        return "the box has no area inside the image"
    return box


def _image_size(file: Path) -> tuple[tuple[int, int] | None, str]:
    from PIL import Image, UnidentifiedImageError

    if not file.is_file():
        return None, "no such image file"
    try:
        with Image.open(file) as image:
            return image.size, ""
    except UnidentifiedImageError:
        return None, "not an image Pillow can read"
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        return None, f"unreadable image: {exc}"


def _yolo_names(folder: Path) -> list[str] | None:
    for name in YOLO_NAME_FILES:
        file = folder / name
        if not file.is_file():
            continue
        text = file.read_text("utf-8-sig")
        if file.suffix == ".yaml":
            return _yaml_names(text)
        return [line.strip() for line in text.splitlines() if line.strip()]
    return None


def _yaml_names(text: str) -> list[str] | None:
    """``names:`` of an Ultralytics ``data.yaml``: an inline list, a block list or an index mapping."""
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if not line.startswith("names:"):
            continue
        inline = line.partition(":")[2].strip()
        if inline.startswith("["):
            return [n.strip().strip("'\"") for n in inline.strip("[]").split(",") if n.strip()]
        found: list[str] = []
        for entry in lines[number + 1 :]:
            if entry and not entry[0].isspace():
                break
            item = entry.strip()
            if item.startswith("- "):
                found.append(item[2:].strip().strip("'\""))
            elif ":" in item:
                found.append(item.partition(":")[2].strip().strip("'\""))
        return found
    return None


def _looks_like_coco(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text("utf-8-sig"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "images" in doc and "annotations" in doc


def _label(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _int(text: str | None) -> int | None:
    try:
        return int(float(text)) if text is not None else None
    except ValueError:
        return None
