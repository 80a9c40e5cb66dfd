"""The AutoML JSONL / MLTable and COCO readers: every bad line reported, nothing dropped silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from azvision import ConfigurationError
from azvision._dataset_formats import read_automl_jsonl
from azvision.datasets import Dataset
from azvision.training._dataset_writers import mltable_text
from tests.conftest import make_png


def write_lines(path: Path, *records: object) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_automl_reader_reports_every_bad_line(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(make_png())
    (tmp_path / "images" / "b.png").write_bytes(make_png(color=(1, 2, 3)))
    jsonl = write_lines(
        tmp_path / "annotations.jsonl",
        {"image_url": "images/a.png", "label": "cat"},
        {"image_url": "images/b.png", "label": ["cat", "pet"]},
        {"image_url": "azureml://datastores/x/paths/c.png", "label": "cat"},
        "{not json",
        {"label": "cat"},
        {"image_url": "images/missing.png", "label": "dog"},
        {"image_url": "images/a.png", "label": 3},
    )
    data = Dataset.from_automl_jsonl(jsonl)
    assert data.multilabel and [it.labels for it in data.items] == [("cat",), ("cat", "pet")]
    reasons = [s.reason for s in data.skipped]
    assert reasons[0].startswith("annotations.jsonl line 3: a remote image URL")
    assert "line 4: not valid JSON" in reasons[1] and "line 5: no 'image_url'" in reasons[2]
    assert reasons[3] == "no such file" and "line 7: 'label' must be" in reasons[4]


def test_mltable_folders_and_detection_files(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(make_png())
    box = {"label": "ball", "topX": 0.1, "topY": 0.2, "bottomX": 0.6, "bottomY": 0.7, "isCrowd": 0}
    bad = {"label": "ball", "topX": 0.6, "topY": 0.2, "bottomX": 0.1, "bottomY": 0.7}
    write_lines(
        tmp_path / "annotations.jsonl",
        {"image_url": "a.png", "label": [box]},
        {"image_url": "a.png", "label": [bad]},
    )
    (tmp_path / "MLTable").write_text(mltable_text())
    good, broken = read_automl_jsonl(tmp_path)  # the folder's MLTable lists the JSONL
    assert good.detection and good.labels == ("ball",)
    assert (good.boxes[0].box.left, good.boxes[0].box.top) == (0.1, 0.2)
    assert (round(good.boxes[0].box.width, 6), round(good.boxes[0].box.height, 6)) == (0.5, 0.5)
    assert broken.problem is not None and "not a box" in broken.problem
    with pytest.raises(ConfigurationError, match=r"DetectionDataset\.from_automl_jsonl"):
        Dataset.from_automl_jsonl(tmp_path)
    (tmp_path / "MLTable").write_text("type: mltable\n")
    with pytest.raises(ConfigurationError, match="lists no file"):
        read_automl_jsonl(tmp_path / "MLTable")


def test_coco_classification_reader(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(make_png())
    document = {
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "gone.png"}, {"id": 3}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1},
            {"id": 2, "image_id": 2, "category_id": 9},
        ],
    }
    (tmp_path / "coco.json").write_text(json.dumps(document))
    data = Dataset.from_coco(tmp_path / "coco.json")
    assert [it.labels for it in data.items] == [("cat",)]
    assert [s.reason for s in data.skipped] == [
        "coco.json image 2: unknown category 9",
        "coco.json image 3: no 'file_name'",
    ]
    (tmp_path / "broken.json").write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match="not a COCO file"):
        Dataset.from_coco(tmp_path / "broken.json")


@pytest.mark.parametrize(
    ("task", "kind"),
    [
        ("multiclass", "ImageClassificationJob"),
        ("multilabel", "ImageClassificationMultilabelJob"),
        ("detection", "ImageObjectDetectionJob"),
    ],
)
def test_the_automl_job_of_every_task_loads_offline(task: str, kind: str, tmp_path: Path) -> None:
    ml = pytest.importorskip("azure.ai.ml")
    from azvision.training._dataset_writers import automl_job_yaml

    (tmp_path / "job.yml").write_text(automl_job_yaml(task, 'my "odd" project: v2', split=True))  # type: ignore[arg-type]
    job = ml.load_job(tmp_path / "job.yml")
    assert type(job).__name__ == kind and job.compute == "gpu-cluster"
    assert (job.training_data.path, job.validation_data.path) == ("./train", "./validation")
    assert job.experiment_name == "my-odd-project-v2-automl"
