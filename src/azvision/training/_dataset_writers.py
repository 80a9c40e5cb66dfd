"""The annotation files of a data set export: AutoML-for-images JSONL + ``MLTable``, COCO JSON.

Image paths are relative to the annotation file's folder, so the export folder can be moved or uploaded
whole. Every file is written atomically (a temporary file, then a rename): an interrupted or failed
export leaves the previous version or the new one, never half a file.

AutoML JSONL follows learn.microsoft.com/azure/machine-learning/reference-automl-images-schema:
``{"image_url", "image_details": {"format", "width": "400px", "height": "258px"}, "label"}`` with a
string label (multi-class), a list of strings (multi-label) or a list of boxes ``{"label", "topX",
"topY", "bottomX", "bottomY", "isCrowd"}`` normalised to [0, 1] (object detection).

Example:
    >>> image = ExportedImage(id="i1", file="images/i1.png", sha256="ab", width=40, height=30,
    ...                       labels=("cat",))
    >>> automl_line(image, "multiclass", "images/i1.png")["label"]
    'cat'
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._export_models import ExportedImage, Task

__all__ = [
    "ANNOTATIONS",
    "JOB_FILE",
    "automl_job_yaml",
    "automl_line",
    "coco_document",
    "mltable_text",
    "write_automl",
    "write_coco",
    "write_text_atomic",
]

#: The AutoML JSONL file in each MLTable folder.
ANNOTATIONS = "annotations.jsonl"
#: The Azure ML AutoML job written next to an AutoML export.
JOB_FILE = "automl-job.yml"
_JOBS = {  # task: (AutoML task, schema name, primary metric)
    "multiclass": ("image_classification", "autoMLImageClassificationJob", "accuracy"),
    "multilabel": ("image_classification_multilabel", "autoMLImageClassificationMultilabelJob", "iou"),
    "detection": ("image_object_detection", "autoMLImageObjectDetectionJob", "mean_average_precision"),
}


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _relative(file: str, folder: str) -> str:
    """``file`` (relative to the export root) as seen from ``folder`` (also relative to the root)."""
    return Path(os.path.relpath(file, folder or ".")).as_posix()


def automl_line(image: ExportedImage, task: Task, image_url: str) -> dict[str, Any]:
    """One AutoML-for-images JSONL record.

    Example:
        >>> from azvision.training._export_models import ExportedRegion
        >>> from azvision import BoundingBox
        >>> box = ExportedRegion(label="ball", box=BoundingBox(left=0.1, top=0.2, width=0.3, height=0.4))
        >>> image = ExportedImage(id="i", file="images/i.jpg", sha256="x", width=4, height=3,
        ...                       labels=("ball",), regions=(box,))
        >>> automl_line(image, "detection", "images/i.jpg")["label"][0]["bottomX"]
        0.4
    """
    label: Any
    if task == "detection":
        label = [
            {
                "label": r.label,
                "topX": r.box.left,
                "topY": r.box.top,
                "bottomX": r.box.right,
                "bottomY": r.box.bottom,
                "isCrowd": 0,
            }
            for r in image.regions
        ]
    elif task == "multilabel":
        label = list(image.labels)
    else:
        label = image.labels[0]
    return {
        "image_url": image_url,
        "image_details": {
            "format": image.format,
            "width": f"{image.width}px",
            "height": f"{image.height}px",
        },
        "label": label,
    }


def mltable_text(jsonl_name: str = ANNOTATIONS) -> str:
    """An ``MLTable`` file that reads the JSONL beside it and turns ``image_url`` into image streams.

    Example:
        >>> "stream_info" in mltable_text()
        True
    """
    return (
        "$schema: https://azuremlschemas.azureedge.net/latest/MLTable.schema.json\n"
        "type: mltable\n"
        "paths:\n"
        f"  - file: ./{jsonl_name}\n"
        "transformations:\n"
        "  - read_json_lines:\n"
        "      encoding: utf8\n"
        "      invalid_lines: error\n"
        "      include_path_column: false\n"
        "  - convert_column_types:\n"
        "      - columns: image_url\n"
        "        column_type: stream_info\n"
    )


def automl_job_yaml(task: Task, name: str, *, split: bool) -> str:
    """An Azure ML AutoML-for-images job (``az ml job create --file``) on the exported MLTable folders.

    ``compute`` is a placeholder for your GPU cluster. Without a split, AutoML holds out its own
    validation share of the one table.

    Example:
        >>> print(automl_job_yaml("multiclass", "flowers", split=False).splitlines()[5])
        task: image_classification
    """
    automl_task, schema, metric = _JOBS[task]
    data = (
        "training_data:\n  type: mltable\n  path: ./train\n"
        "validation_data:\n  type: mltable\n  path: ./validation\n"
        if split
        else "training_data:\n  type: mltable\n  path: .\n"
    )
    experiment = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "custom-vision"
    return (
        f"$schema: https://azuremlsdkschemas.azureedge.net/latest/{schema}.schema.json\n"
        "type: automl\n"
        f"experiment_name: {experiment}-automl\n"
        f"description: {json.dumps(f'{automl_task} on Custom Vision project {name}, exported by azvision')}\n"
        "compute: azureml:gpu-cluster  # your GPU compute cluster\n"
        f"task: {automl_task}\n"
        "log_verbosity: info\n"
        f"primary_metric: {metric}\n"
        "target_column_name: label\n"
        f"{data}"
        "limits:\n  timeout_minutes: 120\n  max_trials: 1\n  max_concurrent_trials: 1\n"
        "training_parameters:\n  early_stopping: true\n  evaluation_frequency: 1\n"
    )


def _parts(
    images: Sequence[ExportedImage], splits: Mapping[str, Sequence[ExportedImage]] | None
) -> dict[str, Sequence[ExportedImage]]:
    return dict(splits) if splits else {"": images}


def write_automl(
    out_dir: Path,
    images: Sequence[ExportedImage],
    task: Task,
    splits: Mapping[str, Sequence[ExportedImage]] | None = None,
    *,
    name: str = "custom-vision",
) -> list[str]:
    """``annotations.jsonl`` + ``MLTable`` in ``out_dir`` (or one folder per split) and the AutoML job
    YAML; returns the files.

    Example:
        >>> write_automl(Path("out"), images, "multiclass")  # doctest: +SKIP
        ['annotations.jsonl', 'MLTable', 'automl-job.yml']
    """
    written = []
    for name, members in _parts(images, splits).items():
        lines = (
            json.dumps(automl_line(image, task, _relative(image.file, name)), ensure_ascii=False)
            for image in members
        )
        folder = out_dir / name if name else out_dir
        write_text_atomic(folder / ANNOTATIONS, "".join(line + "\n" for line in lines))
        write_text_atomic(folder / "MLTable", mltable_text())
        prefix = f"{name}/" if name else ""
        written += [f"{prefix}{ANNOTATIONS}", f"{prefix}MLTable"]
    write_text_atomic(out_dir / JOB_FILE, automl_job_yaml(task, name, split=bool(splits)))
    return [*written, JOB_FILE]


def coco_document(
    images: Iterable[ExportedImage], task: Task, labels: Sequence[str], folder: str = ""
) -> dict[str, Any]:
    """A COCO JSON document; classification images get one box-less annotation per label.

    Example:
        >>> image = ExportedImage(id="i", file="images/i.png", sha256="x", width=4, height=3,
        ...                       labels=("cat",))
        >>> doc = coco_document([image], "multiclass", ["cat"])
        >>> doc["annotations"][0]["category_id"], doc["images"][0]["file_name"]
        (1, 'images/i.png')
    """
    category = {name: number for number, name in enumerate(labels, start=1)}
    coco_images, annotations = [], []
    for number, image in enumerate(images, start=1):
        coco_images.append(
            {
                "id": number,
                "file_name": _relative(image.file, folder),
                "width": image.width,
                "height": image.height,
                "custom_vision_id": image.id,
            }
        )
        if task == "detection":
            for r in image.regions:
                box = [
                    r.box.left * image.width,
                    r.box.top * image.height,
                    r.box.width * image.width,
                    r.box.height * image.height,
                ]
                box = [round(v, 3) for v in box]
                annotations.append(
                    {
                        "image_id": number,
                        "category_id": category[r.label],
                        "bbox": box,
                        "area": round(box[2] * box[3], 3),
                        "iscrowd": 0,
                    }
                )
        else:
            annotations += [{"image_id": number, "category_id": category[lab]} for lab in image.labels]
    for number, annotation in enumerate(annotations, start=1):
        annotation["id"] = number
    return {
        "info": {"description": "exported from Azure Custom Vision by azvision"},
        "images": coco_images,
        "categories": [{"id": number, "name": name} for name, number in category.items()],
        "annotations": annotations,
    }


def write_coco(
    out_dir: Path,
    images: Sequence[ExportedImage],
    task: Task,
    labels: Sequence[str],
    splits: Mapping[str, Sequence[ExportedImage]] | None = None,
) -> list[str]:
    """``coco.json`` (or ``coco_<split>.json`` per split) in ``out_dir``; returns the files.

    Example:
        >>> write_coco(Path("out"), images, "detection", ["ball"])  # doctest: +SKIP
        ['coco.json']
    """
    written = []
    for name, members in _parts(images, splits).items():
        file = f"coco_{name}.json" if name else "coco.json"
        text = json.dumps(coco_document(members, task, labels), indent=1, ensure_ascii=False) + "\n"
        write_text_atomic(out_dir / file, text)
        written.append(file)
    return written
