"""Images with labelled boxes (object detection): COCO JSON, Pascal VOC XML or YOLO txt annotations.

Every reader checks the whole data set before anything is uploaded and raises one
`AnnotationError` listing *every* offender: a box outside the image (one that pokes out
by no more than rounding, `EDGE_TOLERANCE` of the image, is clipped), a box with no area, an
unknown category, a missing or unreadable image. An image with no boxes is kept as a negative and
counted (`DetectionDataset.negatives`). Labels are stripped of surrounding blanks, as in
`Dataset`; items are sorted by their path relative to the data set's root, so
the order is the same on every machine.

Example:
    >>> import json, tempfile, pathlib
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> Image.new("RGB", (200, 100)).save(root / "a.png")
    >>> coco = {"images": [{"id": 1, "file_name": "a.png", "width": 200, "height": 100}],
    ...         "categories": [{"id": 7, "name": " fork "}],
    ...         "annotations": [{"image_id": 1, "category_id": 7, "bbox": [20, 10, 100, 50]}]}
    >>> _ = (root / "coco.json").write_text(json.dumps(coco))
    >>> data = DetectionDataset.from_path(root / "coco.json")
    >>> data.labels, data.items[0].regions[0].box
    (('fork',), BoundingBox(left=0.1, top=0.1, width=0.5, height=0.5))
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._annotations import (
    EDGE_TOLERANCE,
    YOLO_NAME_FILES,
    Checker,
    DetectionItem,
    Region,
    _int,
    _is_float,
    _is_number,
    _label,
    _looks_like_coco,
    _yolo_names,
)
from ._errors import ConfigurationError
from .datasets import SkippedFile, _relative, _split_key

__all__ = ["EDGE_TOLERANCE", "DetectionDataset", "DetectionItem", "Region"]

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class DetectionDataset:
    """Images with labelled boxes. Build one with `from_coco`, `from_voc`, `from_yolo` or `from_path`.

    ``skipped`` lists annotation-less files that were not taken (e.g. a stray text file), with reasons;
    bad annotations are not skipped: the readers raise `AnnotationError` naming all of them.

    Example:
        >>> from azvision import BoundingBox
        >>> box = BoundingBox(left=0.0, top=0.0, width=0.5, height=0.5)
        >>> data = DetectionDataset(items=(DetectionItem(Path("a.png"), (10, 10), (Region("cat", box),)),))
        >>> data.counts(), data.region_counts(), data.negatives
        ({'cat': 1}, {'cat': 1}, 0)
    """

    items: tuple[DetectionItem, ...]
    skipped: tuple[SkippedFile, ...] = ()
    root: Path | None = None
    #: The label names the annotations declared (COCO categories, YOLO class names), used or not.
    categories: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[DetectionItem]:
        return iter(self.items)

    @property
    def labels(self) -> tuple[str, ...]:
        """Every label with at least one region, sorted."""
        return tuple(sorted({r.label for item in self.items for r in item.regions}))

    @property
    def negatives(self) -> int:
        """Images with no region (kept: they show what is not an object)."""
        return sum(1 for item in self.items if not item.regions)

    def counts(self) -> dict[str, int]:
        """Images per label (an image counts once per label, as the service's 15-image rule does)."""
        counter = Counter(label for item in self.items for label in item.labels)
        return {label: counter[label] for label in self.labels}

    def region_counts(self) -> dict[str, int]:
        """Regions (boxes) per label."""
        counter = Counter(r.label for item in self.items for r in item.regions)
        return {label: counter[label] for label in self.labels}

    def display_name(self, item: DetectionItem) -> str:
        """The item's path relative to `root` (POSIX separators), or as given."""
        return _relative(item.path, self.root)

    def split(
        self, test_fraction: float = 0.2, *, seed: int = 0
    ) -> tuple[DetectionDataset, DetectionDataset]:
        """A seeded, deterministic ``(train, test)`` split keyed on each file's relative path.

        Example:
            >>> items = tuple(DetectionItem(Path(f"{i}.png"), (9, 9)) for i in range(10))
            >>> train, test = DetectionDataset(items=items).split(0.3)
            >>> len(train), len(test)
            (7, 3)
        """
        if not 0.0 <= test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
        ranked = sorted(self.items, key=lambda it: _split_key(seed, self.display_name(it)))
        n_test = round(len(ranked) * test_fraction)
        if test_fraction > 0 and len(ranked) >= 2:
            n_test = min(max(n_test, 1), len(ranked) - 1)
        test_ids = {id(it) for it in ranked[:n_test]}
        parts = (
            tuple(it for it in self.items if id(it) not in test_ids),
            tuple(it for it in self.items if id(it) in test_ids),
        )
        return (
            DetectionDataset(items=parts[0], root=self.root, categories=self.categories),
            DetectionDataset(items=parts[1], root=self.root, categories=self.categories),
        )

    # -- readers --------------------------------------------------------------------------------
    @classmethod
    def from_coco(
        cls, json_path: str | os.PathLike[str], images_dir: str | os.PathLike[str] | None = None
    ) -> DetectionDataset:
        """A COCO ``instances`` JSON: ``images``, ``categories`` and ``annotations`` with pixel
        ``bbox: [x, y, width, height]``. Image files are looked up in ``images_dir`` (default: the JSON
        file's folder, then its ``images/`` sub-folder).

        Example:
            >>> DetectionDataset.from_coco("/no/such.json")
            Traceback (most recent call last):
            ...
            azvision._errors.ConfigurationError: the COCO file /no/such.json does not exist
        """
        path = Path(json_path)
        if not path.is_file():
            raise ConfigurationError(f"the COCO file {path} does not exist")
        try:
            doc = json.loads(path.read_text("utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{path.name} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
            raise ConfigurationError(f"{path.name} is not a COCO file: it has no 'images' list")
        root = Path(images_dir) if images_dir is not None else path.parent
        folders = [root] if images_dir is not None else [root, root / "images"]
        check = Checker(root)
        categories: dict[Any, str] = {}
        for entry in doc.get("categories") or []:
            if isinstance(entry, dict) and "id" in entry:
                categories[entry["id"]] = _label(entry.get("name"))
        boxes: dict[Any, list[tuple[Any, Any, str]]] = {}
        for number, ann in enumerate(doc.get("annotations") or []):
            where = f"{path.name}: annotation {ann.get('id', number) if isinstance(ann, dict) else number}"
            if not isinstance(ann, dict):
                check.problem(f"{where}: not a JSON object")
                continue
            boxes.setdefault(ann.get("image_id"), []).append((ann.get("category_id"), ann.get("bbox"), where))
        for image in doc["images"]:
            if not isinstance(image, dict) or not isinstance(image.get("file_name"), str):
                check.problem(f"{path.name}: an image entry without a file_name: {image!r:.80}")
                continue
            file = next((f / image["file_name"] for f in folders if (f / image["file_name"]).exists()), None)
            file = file or folders[0] / image["file_name"]
            regions = []
            for category, bbox, where in boxes.pop(image.get("id"), []):
                if category not in categories:
                    check.problem(f"{where} ({image['file_name']}): unknown category id {category!r}")
                    continue
                if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
                    check.problem(f"{where} ({image['file_name']}): bbox must be [x, y, width, height]")
                    continue
                regions.append((categories[category], "pixels", (bbox[0], bbox[1], bbox[2], bbox[3]), where))
            check.image(file, regions, declared=(image.get("width"), image.get("height")))
        for image_id, orphans in boxes.items():
            check.problem(f"{orphans[0][2]}: image id {image_id!r} is not in 'images'")
        return cls(
            items=check.finish(), root=check.root, categories=tuple(dict.fromkeys(categories.values()))
        )

    @classmethod
    def from_voc(cls, folder: str | os.PathLike[str]) -> DetectionDataset:
        """Pascal VOC: one ``.xml`` per image (in ``folder`` or its ``Annotations/``), each naming its
        ``filename`` and its ``object``s with a ``bndbox`` in pixels. Images are found beside the XML, in
        ``JPEGImages/`` or by the XML's stem.

        Example:
            >>> DetectionDataset.from_voc("/no/such/folder")
            Traceback (most recent call last):
            ...
            azvision._errors.ConfigurationError: the VOC folder /no/such/folder does not exist
        """
        base = Path(folder)
        if not base.is_dir():
            raise ConfigurationError(f"the VOC folder {base} does not exist")
        annotations = base / "Annotations" if (base / "Annotations").is_dir() else base
        check = Checker(base)
        for xml_file in sorted(annotations.glob("*.xml")):
            where = _relative(xml_file, base)
            try:
                tree = ElementTree.parse(xml_file).getroot()
            except ElementTree.ParseError as exc:
                check.problem(f"{where}: not valid XML ({exc})")
                continue
            name = (tree.findtext("filename") or "").strip()
            candidates = [annotations / name, base / "JPEGImages" / name, base / name] if name else []
            candidates += [xml_file.with_suffix(s) for s in _IMAGE_SUFFIXES]
            file = next((c for c in candidates if c.is_file()), candidates[0] if candidates else None)
            if file is None:
                check.problem(f"{where}: no <filename> and no image named like the XML")
                continue
            regions = []
            for index, obj in enumerate(tree.findall("object")):
                label, box = _label(obj.findtext("name")), obj.find("bndbox")
                edges = [
                    box.findtext(k) if box is not None else None for k in ("xmin", "ymin", "xmax", "ymax")
                ]
                try:
                    x0, y0, x1, y1 = (float(e) for e in edges if e is not None)
                except ValueError:
                    check.problem(f"{where}: object {index + 1} ({label}): bndbox needs xmin ymin xmax ymax")
                    continue
                regions.append((label, "pixels", (x0, y0, x1 - x0, y1 - y0), f"{where}: object {index + 1}"))
            size = tree.find("size")
            declared = (
                (_int(size.findtext("width")), _int(size.findtext("height")))
                if size is not None
                else (None, None)
            )
            check.image(file, regions, declared=declared)
        if not check.seen and not check.problems:
            raise ConfigurationError(f"no Pascal VOC .xml annotations in {annotations}")
        return cls(items=check.finish(), root=check.root)

    @classmethod
    def from_yolo(
        cls, folder: str | os.PathLike[str], *, names: Sequence[str] | None = None
    ) -> DetectionDataset:
        """YOLO txt: per image a ``.txt`` of the same stem (beside it, or in ``labels/`` for
        ``images/``), one ``class cx cy width height`` line per box, normalised. Class names come from
        ``names`` or ``classes.txt`` / ``obj.names`` / ``data.yaml`` (``names:``) in ``folder``. An image
        without a ``.txt`` is a negative.

        Example:
            >>> DetectionDataset.from_yolo("/no/such/folder")
            Traceback (most recent call last):
            ...
            azvision._errors.ConfigurationError: the YOLO folder /no/such/folder does not exist
        """
        base = Path(folder)
        if not base.is_dir():
            raise ConfigurationError(f"the YOLO folder {base} does not exist")
        classes = list(names) if names is not None else _yolo_names(base)
        if classes is None:
            raise ConfigurationError(
                f"no class names for {base}: add classes.txt (one name per line), obj.names or data.yaml"
            )
        classes = [_label(c) for c in classes]
        check = Checker(base)
        images_dir = base / "images" if (base / "images").is_dir() else base
        for file in sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES):
            relative = file.relative_to(images_dir).with_suffix(".txt")
            txt = base / "labels" / relative if images_dir != base else file.with_suffix(".txt")
            regions = []
            lines = txt.read_text("utf-8-sig").splitlines() if txt.is_file() else []
            for number, line in enumerate(lines, start=1):
                where = f"{_relative(txt, base)}: line {number}"
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 5 or not fields[0].isdigit() or not all(_is_float(f) for f in fields[1:]):
                    check.problem(f"{where}: expected 'class cx cy width height', got {line.strip()!r:.60}")
                    continue
                index = int(fields[0])
                if index >= len(classes):
                    check.problem(f"{where}: unknown class {index} (there are {len(classes)} class names)")
                    continue
                cx, cy, w, h = (float(f) for f in fields[1:])
                regions.append((classes[index], "normalised", (cx - w / 2, cy - h / 2, w, h), where))
            check.image(file, regions)
        return cls(items=check.finish(), root=check.root, categories=tuple(dict.fromkeys(classes)))

    @classmethod
    def from_path(
        cls, path: str | os.PathLike[str], *, images_dir: str | os.PathLike[str] | None = None
    ) -> DetectionDataset:
        """Recognise the format: a ``.json`` file (or a folder holding one COCO JSON) → `from_coco`; a
        folder of ``.xml`` (or with ``Annotations/``) → `from_voc`; a folder with YOLO class names →
        `from_yolo`. A ``.xml``/``.txt`` annotation file is read from its folder.

        Example:
            >>> DetectionDataset.from_path("/no/such/thing")
            Traceback (most recent call last):
            ...
            azvision._errors.ConfigurationError: /no/such/thing does not exist
        """
        target = Path(path)
        if not target.exists():
            raise ConfigurationError(f"{target} does not exist")
        if target.is_file():
            if target.suffix.lower() == ".json":
                return cls.from_coco(target, images_dir)
            if target.suffix.lower() == ".xml":
                return cls.from_voc(target.parent)
            if target.name in YOLO_NAME_FILES:
                return cls.from_yolo(target.parent)
            raise ConfigurationError(f"{target.name}: not a COCO .json, VOC .xml or YOLO class-names file")
        coco = [p for p in sorted(target.glob("*.json")) if _looks_like_coco(p)]
        if coco:
            return cls.from_coco(coco[0], images_dir)
        if (target / "Annotations").is_dir() or any(target.glob("*.xml")):
            return cls.from_voc(target)
        if _yolo_names(target) is not None:
            return cls.from_yolo(target)
        raise ConfigurationError(
            f"{target}: no annotations found (a COCO .json, Pascal VOC .xml files, or YOLO .txt files with "
            "classes.txt)"
        )
