"""Readers of data set files: CSV/JSONL manifests, AutoML-for-images JSONL (and its ``MLTable``), COCO.

They return plain records, one per image, with the problem of a bad line instead of raising, so that
`Dataset` (classification) and the detection data set can each build on them and
report every offender. Relative image paths resolve against the annotation file's folder (or ``root``);
``azureml://`` and ``http(s)://`` image URLs are reported, not downloaded.

AutoML labels (learn.microsoft.com/azure/machine-learning/reference-automl-images-schema): a string
(multi-class), a list of strings (multi-label) or a list of boxes ``{"label", "topX", "topY", "bottomX",
"bottomY"}`` normalised to [0, 1] (object detection).

Example:
    >>> import json, tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> line = {"image_url": "images/a.png", "label": [{"label": "ball", "topX": 0.1, "topY": 0.2,
    ...         "bottomX": 0.5, "bottomY": 0.6, "isCrowd": 0}]}
    >>> _ = (folder / "annotations.jsonl").write_text(json.dumps(line) + "\\n")
    >>> record = read_automl_jsonl(folder / "annotations.jsonl")[0]
    >>> record.path.name, record.boxes[0].label, round(record.boxes[0].box.width, 3)
    ('a.png', 'ball', 0.4)
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import ConfigurationError
from ._models import BoundingBox

__all__ = [
    "AutomlBox",
    "AutomlRecord",
    "Row",
    "annotation_files",
    "csv_rows",
    "jsonl_rows",
    "read_automl_jsonl",
    "read_coco_labels",
]

_PATH_KEYS = ("path", "image", "file", "filename")
_LABEL_KEYS = ("labels", "label", "tags", "tag")
_LABEL_SEPARATORS = re.compile(r"[;|,]")
_REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_MLTABLE_FILE = re.compile(r"^\s*-?\s*file\s*:\s*(.+?)\s*$")


#: ``(where, image path, labels, problem)``: one image of a manifest; ``problem`` is why it cannot be used.
Row = tuple[str, str, tuple[str, ...], "str | None"]


def csv_rows(path: Path) -> Iterator[Row]:
    """The rows of a CSV manifest (a ``path`` and a ``labels`` column)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = {name.strip().lower(): name for name in reader.fieldnames or ()}
        path_key = next((fields[k] for k in _PATH_KEYS if k in fields), None)
        label_key = next((fields[k] for k in _LABEL_KEYS if k in fields), None)
        if path_key is None or label_key is None:
            raise ConfigurationError(
                f"{path.name} needs a header row with a 'path' and a 'labels' column, "
                f"got {list(reader.fieldnames or [])}"
            )
        for row in reader:
            where = f"line {reader.line_num}"
            raw = (row.get(path_key) or "").strip()
            if not raw:
                yield where, "", (), "no path"
                continue
            yield where, raw, _split_labels(row.get(label_key) or ""), None


def jsonl_rows(path: Path) -> Iterator[Row]:
    """The rows of a JSONL manifest (``{"path": ..., "labels": [...]}`` per line)."""
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            where = f"line {number}"
            if not line.strip():
                continue
            try:
                record: Any = json.loads(line)
            except json.JSONDecodeError as exc:
                yield where, "", (), f"not valid JSON ({exc.msg})"
                continue
            if not isinstance(record, dict):
                yield where, "", (), "not a JSON object"
                continue
            raw = next((record[k] for k in _PATH_KEYS if isinstance(record.get(k), str)), "").strip()
            if not raw:
                yield where, "", (), "no 'path'"
                continue
            value = next((record[k] for k in _LABEL_KEYS if k in record), None)
            if isinstance(value, str):
                yield where, raw, _split_labels(value), None
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                yield where, raw, _unique(v.strip() for v in value), None
            else:
                yield where, raw, (), "'labels' must be a list of strings or a string"


def _split_labels(text: str) -> tuple[str, ...]:
    return _unique(part.strip() for part in _LABEL_SEPARATORS.split(text))


def _unique(labels: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(label for label in labels if label))


@dataclass(frozen=True)
class AutomlBox:
    """One object-detection label of an AutoML line: its label and its normalised box.

    Example:
        >>> AutomlBox("ball", BoundingBox(left=0.1, top=0.2, width=0.3, height=0.4)).box.right
        0.4
    """

    label: str
    box: BoundingBox


@dataclass(frozen=True)
class AutomlRecord:
    """One line of an AutoML JSONL file: where it is, the image, its labels or boxes, or its problem.

    ``labels`` holds the class labels (one for multi-class, several for multi-label; for detection, the
    labels of the boxes); ``boxes`` is empty unless the line is an object-detection line. ``problem`` is
    ``None`` for a usable line, otherwise why it cannot be used (then ``path`` may be ``None``).

    Example:
        >>> AutomlRecord(where="line 1", image_url="a.png", path=Path("a.png"), labels=("cat",)).detection
        False
    """

    where: str
    image_url: str
    path: Path | None
    labels: tuple[str, ...] = ()
    boxes: tuple[AutomlBox, ...] = ()
    problem: str | None = None

    @property
    def detection(self) -> bool:
        """The line labels boxes (object detection)."""
        return bool(self.boxes)


def annotation_files(path: str | os.PathLike[str]) -> list[Path]:
    """The JSONL files behind ``path``: the file itself, or those an ``MLTable`` (file or folder) lists.

    Example:
        >>> annotation_files("/no/such/file.jsonl")
        Traceback (most recent call last):
        ...
        azvision._errors.ConfigurationError: /no/such/file.jsonl does not exist
    """
    given = Path(path)
    table = given / "MLTable" if given.is_dir() else given
    if not table.exists():
        raise ConfigurationError(f"{given} does not exist")
    if table.name != "MLTable":
        return [table]
    files = []
    for line in table.read_text("utf-8").splitlines():
        match = _MLTABLE_FILE.match(line)
        if match:
            files.append(table.parent / match.group(1).strip("'\""))
    if not files:
        raise ConfigurationError(f"{table} lists no file (paths: - file: ...)")
    return files


def read_automl_jsonl(
    path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
) -> list[AutomlRecord]:
    """Every line of an AutoML-for-images JSONL file (or of the files an ``MLTable`` lists), in order.

    Example:
        >>> read_automl_jsonl("/no/such/MLTable")
        Traceback (most recent call last):
        ...
        azvision._errors.ConfigurationError: /no/such/MLTable does not exist
    """
    records: list[AutomlRecord] = []
    for file in annotation_files(path):
        base = Path(root) if root is not None else file.parent
        records += _records(file, base)
    return records


def _records(file: Path, base: Path) -> Iterator[AutomlRecord]:
    if not file.is_file():
        raise ConfigurationError(f"the AutoML JSONL file {file} does not exist")
    with file.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield _record(f"{file.name} line {number}", line, base)


def _record(where: str, line: str, base: Path) -> AutomlRecord:
    try:
        raw: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        return AutomlRecord(where, "", None, problem=f"not valid JSON ({exc.msg})")
    url = raw.get("image_url") if isinstance(raw, dict) else None
    if not isinstance(url, str) or not url.strip():
        return AutomlRecord(where, "", None, problem="no 'image_url'")
    url = url.strip()
    if _REMOTE.match(url):
        return AutomlRecord(where, url, None, problem="a remote image URL: download the images and use paths")
    file = Path(url)
    path = file if file.is_absolute() else base / file
    label = raw.get("label")
    if isinstance(label, str):
        return AutomlRecord(where, url, path, labels=(label.strip(),) if label.strip() else ())
    if isinstance(label, list) and all(isinstance(v, str) for v in label):
        return AutomlRecord(
            where, url, path, labels=tuple(dict.fromkeys(v.strip() for v in label if v.strip()))
        )
    if isinstance(label, list) and all(isinstance(v, dict) for v in label):
        try:
            boxes = tuple(_box(v) for v in label)
        except (KeyError, TypeError, ValueError) as exc:
            return AutomlRecord(where, url, path, problem=f"a box is malformed: {exc}")
        labels = tuple(dict.fromkeys(b.label for b in boxes))
        return AutomlRecord(where, url, path, labels=labels, boxes=boxes)
    return AutomlRecord(where, url, path, problem="'label' must be a string, a list of strings or of boxes")


def _box(raw: dict[str, Any]) -> AutomlBox:
    left, top = float(raw["topX"]), float(raw["topY"])
    right, bottom = float(raw["bottomX"]), float(raw["bottomY"])
    if not 0.0 <= left < right <= 1.0 or not 0.0 <= top < bottom <= 1.0:
        raise ValueError(f"({left}, {top}, {right}, {bottom}) is not a box inside [0, 1]")
    return AutomlBox(
        str(raw["label"]), BoundingBox(left=left, top=top, width=right - left, height=bottom - top)
    )


def read_coco_labels(
    json_path: str | os.PathLike[str], images_dir: str | os.PathLike[str] | None = None
) -> Iterator[Row]:
    """``(where, image path, labels, problem)`` per image of a COCO file, for classification data sets.

    Each annotation's ``category_id`` gives the image a label (boxes, if any, are ignored). Image paths
    (``file_name``) resolve against ``images_dir`` (default: the JSON file's folder).

    Example:
        >>> next(read_coco_labels("/no/such/coco.json"))
        Traceback (most recent call last):
        ...
        azvision._errors.ConfigurationError: the COCO file /no/such/coco.json does not exist
    """
    path = Path(json_path)
    if not path.is_file():
        raise ConfigurationError(f"the COCO file {path} does not exist")
    try:
        document = json.loads(path.read_text("utf-8"))
        categories = {c["id"]: str(c["name"]) for c in document.get("categories", [])}
        images = list(document.get("images", []))
        annotations = list(document.get("annotations", []))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigurationError(f"{path.name} is not a COCO file: {exc}") from None
    base = Path(images_dir) if images_dir is not None else path.parent
    labels: dict[Any, list[str]] = {}
    problems: dict[Any, str] = {}
    for annotation in annotations:
        image_id = annotation.get("image_id")
        name = categories.get(annotation.get("category_id"))
        if name is None:
            problems[image_id] = f"unknown category {annotation.get('category_id')!r}"
        else:
            labels.setdefault(image_id, []).append(name)
    for number, image in enumerate(images, start=1):
        where = f"{path.name} image {number}"
        file = str(image.get("file_name") or "")
        if not file:
            yield where, "", (), "no 'file_name'"
            continue
        found = tuple(dict.fromkeys(labels.get(image.get("id"), ())))
        yield where, str(base / file), found, problems.get(image.get("id"))
