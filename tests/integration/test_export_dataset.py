"""CustomVisionTrainer.export_dataset against the emulator: formats, resume, faults, bad input."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from msrest.authentication import ApiKeyCredentials
from PIL import Image

from azvision import ConfigurationError, CustomVisionTrainer, NotFoundError, RetryPolicy
from azvision.datasets import Dataset
from azvision.emulator import Emulator
from azvision.synthetic import make_dataset

SHAPES = ("circle", "square", "triangle")
FAST_RETRY = RetryPolicy(max_attempts=12, backoff_base=0.01, backoff_max=0.2, deadline=60)
IMAGE_ROUTE = "GET /customvision/_blobs/{projectId}/images/{imageId}"


def make_trainer(emulator: Emulator, **options: object) -> CustomVisionTrainer:
    return CustomVisionTrainer(
        emulator.endpoint,
        emulator.training_key,
        prediction_resource_id=emulator.prediction_resource_id,
        retry=FAST_RETRY,
        **options,  # type: ignore[arg-type]
    )


def official_client(emulator: Emulator) -> CustomVisionTrainingClient:
    credentials = ApiKeyCredentials(in_headers={"Training-key": emulator.training_key})
    return CustomVisionTrainingClient(emulator.endpoint, credentials)


def fill(emulator: Emulator, root: Path, name: str, *, per_class: int = 6, untagged: int = 1) -> Dataset:
    """A project with ``per_class`` tagged images per shape and ``untagged`` images without a tag."""
    data = make_dataset(root, classes=SHAPES, per_class=per_class, size=(64, 80), image_format="png")
    with make_trainer(emulator) as trainer:
        project = trainer.project(name)
        assert trainer.upload(project, data).ok
    client = official_client(emulator)
    if untagged:
        other = make_dataset(root / "untagged", classes=("star",), per_class=untagged, seed=99, size=(64, 80))
        for item in other.items:
            client.create_images_from_data(project.id, item.path.read_bytes())
    return data


def content_labels(data: Dataset) -> dict[str, tuple[str, ...]]:
    return {hashlib.sha256(it.path.read_bytes()).hexdigest(): tuple(sorted(it.labels)) for it in data.items}


def image_downloads(emulator: Emulator) -> int:
    stats = httpx.get(
        f"{emulator.endpoint}/_emulator/stats", headers={"Training-Key": emulator.training_key}, timeout=10
    ).json()
    return sum(stats.get(IMAGE_ROUTE, {}).values())


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(training_seconds=0.2) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def shapes(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return fill(emu, tmp_path_factory.mktemp("shapes"), "shapes")


def test_automl_export_writes_every_tagged_image_with_its_label(
    emu: Emulator, shapes: Dataset, tmp_path: Path
) -> None:
    with make_trainer(emu) as trainer:
        report = trainer.export_dataset("shapes", tmp_path / "out")
    assert (report.tagged, report.exported, report.downloaded) == (18, 18, 18)
    assert report.complete and report.task == "multiclass" and report.labels == SHAPES
    assert [n.reason for n in report.not_exported] == ["untagged"]
    assert report.files == ("annotations.jsonl", "MLTable", "automl-job.yml")
    lines = [json.loads(line) for line in (tmp_path / "out" / "annotations.jsonl").read_text().splitlines()]
    assert len(lines) == 18
    expected = content_labels(shapes)
    for line in lines:
        assert line["image_url"].startswith("images/") and line["image_details"]["format"] == "png"
        data = (tmp_path / "out" / line["image_url"]).read_bytes()
        width, height = Image.open(tmp_path / "out" / line["image_url"]).size
        assert (
            line["image_details"]["width"] == f"{width}px"
            and line["image_details"]["height"] == f"{height}px"
        )
        assert expected[hashlib.sha256(data).hexdigest()] == (line["label"],)
    mltable = (tmp_path / "out" / "MLTable").read_text()
    assert "file: ./annotations.jsonl" in mltable and "stream_info" in mltable


def test_validation_split_writes_two_mltable_folders(emu: Emulator, shapes: Dataset, tmp_path: Path) -> None:
    with make_trainer(emu) as trainer:
        report = trainer.export_dataset("shapes", tmp_path, validation_split=0.34, seed=3)
    assert report.splits == {"train": 12, "validation": 6}
    for split, count in report.splits.items():
        lines = (tmp_path / split / "annotations.jsonl").read_text().splitlines()
        assert len(lines) == count and (tmp_path / split / "MLTable").is_file()
        urls = [json.loads(line)["image_url"] for line in lines]
        assert all(url.startswith("../images/") and (tmp_path / split / url).is_file() for url in urls)
        assert {json.loads(line)["label"] for line in lines} == set(SHAPES)  # stratified


def test_folder_and_coco_formats(emu: Emulator, shapes: Dataset, tmp_path: Path) -> None:
    with make_trainer(emu) as trainer:
        folder = trainer.export_dataset("shapes", tmp_path / "folder", format="folder")
        coco = trainer.export_dataset("shapes", tmp_path / "coco", format="coco")
    assert folder.exported == coco.exported == 18
    assert sorted(p.name for p in (tmp_path / "folder").iterdir() if not p.name.startswith(".")) == list(
        SHAPES
    )
    document = json.loads((tmp_path / "coco" / "coco.json").read_text())
    assert [c["name"] for c in document["categories"]] == list(SHAPES)
    assert len(document["images"]) == len(document["annotations"]) == 18


def test_an_interrupted_export_resumes_without_writing_an_image_twice(emu: Emulator, tmp_path: Path) -> None:
    fill(emu, tmp_path / "data", "resume", per_class=8, untagged=0)
    before = image_downloads(emu)
    seen: list[int] = []

    def stop_after_ten(done: int, total: int) -> None:
        seen.append(done)
        if done == 10:
            raise KeyboardInterrupt

    with make_trainer(emu, upload_concurrency=2) as trainer:
        with pytest.raises(KeyboardInterrupt):
            trainer.export_dataset("resume", tmp_path / "out", progress=stop_after_ten)
        assert not (tmp_path / "out" / "annotations.jsonl").exists()
        kept = sorted(p for p in (tmp_path / "out" / "images").iterdir() if not p.name.startswith("."))
        for path in kept:  # only whole images under final names
            Image.open(path).verify()
        kept[0].write_bytes(kept[0].read_bytes()[:200])  # as a machine crash might leave one
        (tmp_path / "out" / "images" / ".abc.part").write_bytes(b"half a download")
        report = trainer.export_dataset("resume", tmp_path / "out")
    assert report.exported == report.tagged == 24 and report.downloaded == 24 - len(kept) + 1
    assert image_downloads(emu) - before == 25  # once each over both runs, plus the broken one
    Image.open(kept[0]).verify()
    assert not [p for p in (tmp_path / "out" / "images").iterdir() if p.name.startswith(".")]


@pytest.mark.azvision_emulator(fail_rate=0.15, drop_rate=0.1, rate_limit_tps=8, seed=5)
def test_faults_lose_nothing(azvision_emulator: Emulator, tmp_path: Path) -> None:
    faulty = azvision_emulator
    data = make_dataset(tmp_path / "data", classes=SHAPES, per_class=10, size=(64, 80), image_format="png")
    with make_trainer(faulty) as trainer:
        project = trainer.project("faulty")
        assert trainer.upload(project, data).ok
        tagged = official_client(faulty).get_tagged_image_count(project.id)
        report = trainer.export_dataset("faulty", tmp_path / "out", format="folder")
    assert report.exported == tagged == 30 and not report.not_exported
    assert Dataset.from_folder(tmp_path / "out").counts() == dict.fromkeys(SHAPES, 10)


def test_unknown_and_empty_projects(emu: Emulator, shapes: Dataset, tmp_path: Path) -> None:
    with make_trainer(emu) as trainer:
        with pytest.raises(NotFoundError, match="'no-such-project'"):
            trainer.export_dataset("no-such-project", tmp_path / "a")
        trainer.project("empty")
        report = trainer.export_dataset("empty", tmp_path / "b")
        assert report.empty and not report.files
        with pytest.raises(ConfigurationError, match="unknown export format"):
            trainer.export_dataset("empty", tmp_path / "c", format="yolo")
        with pytest.raises(ConfigurationError, match="validation_split"):
            trainer.export_dataset("empty", tmp_path / "c", validation_split=1.5)
    with make_trainer(emu) as trainer:
        trainer.export_dataset("shapes", tmp_path / "d")
        with pytest.raises(ConfigurationError, match="holds the automl export of project"):
            trainer.export_dataset("shapes", tmp_path / "d", format="folder")  # another format
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_unwritable_folder_and_full_disk(
    emu: Emulator, shapes: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with make_trainer(emu) as trainer:
        with pytest.raises(ConfigurationError, match="is a file"):
            trainer.export_dataset("shapes", blocker)
        with pytest.raises(ConfigurationError, match="cannot write the export"):
            trainer.export_dataset("shapes", blocker / "inside")

        real_replace = os.replace
        calls = [0]

        def disk_fills_up(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
            calls[0] += 1
            if calls[0] > 6:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", disk_fills_up)
        trainer.upload_concurrency = 1
        with pytest.raises(ConfigurationError, match="No space left on device"):
            trainer.export_dataset("shapes", tmp_path / "out")
        monkeypatch.setattr(os, "replace", real_replace)
        written = [p for p in (tmp_path / "out" / "images").iterdir() if not p.name.startswith(".")]
        assert 0 < len(written) <= 6
        for path in written:
            Image.open(path).verify()  # what was written stays valid
        assert not (tmp_path / "out" / "annotations.jsonl").exists()
        report = trainer.export_dataset("shapes", tmp_path / "out")
    assert report.exported == 18 and report.downloaded == 18 - len(written)


# -- round trips: export, re-import, same images (by content) and labels ---------------------------------
def test_round_trips_give_back_the_same_images_and_labels(
    emu: Emulator, shapes: Dataset, tmp_path: Path
) -> None:
    expected = content_labels(shapes)
    with make_trainer(emu) as trainer:
        trainer.export_dataset("shapes", tmp_path / "automl")
        trainer.export_dataset("shapes", tmp_path / "split", validation_split=0.3)
        trainer.export_dataset("shapes", tmp_path / "folder", format="folder")
        trainer.export_dataset("shapes", tmp_path / "coco", format="coco")
    assert content_labels(Dataset.from_automl_jsonl(tmp_path / "automl" / "annotations.jsonl")) == expected
    assert content_labels(Dataset.from_automl_jsonl(tmp_path / "automl")) == expected  # the MLTable folder
    train = Dataset.from_automl_jsonl(tmp_path / "split" / "train" / "MLTable")
    validation = Dataset.from_automl_jsonl(tmp_path / "split" / "validation")
    assert {**content_labels(train), **content_labels(validation)} == expected
    assert len(train) + len(validation) == 18
    reimported = Dataset.from_folder(tmp_path / "folder")
    assert content_labels(reimported) == expected
    assert [s.path for s in reimported.skipped] == [".azvision-export.json"]
    assert content_labels(Dataset.from_coco(tmp_path / "coco" / "coco.json")) == expected


def test_multilabel_round_trip(emu: Emulator, tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", classes=SHAPES, per_class=5, size=(64, 80), image_format="png")
    rows = ["path,labels"] + [
        f"{it.path.relative_to(tmp_path / 'data').as_posix()},{it.label};{'odd' if n % 2 else 'even'}"
        for n, it in enumerate(data.items)
    ]
    (tmp_path / "data" / "labels.csv").write_text("\n".join(rows) + "\n")
    tagged = Dataset.from_manifest(tmp_path / "data" / "labels.csv")
    assert tagged.multilabel
    with make_trainer(emu) as trainer:
        assert trainer.upload(trainer.project("multi", multilabel=True), tagged).ok
        report = trainer.export_dataset("multi", tmp_path / "automl")
        coco = trainer.export_dataset("multi", tmp_path / "coco", format="coco")
        with pytest.raises(ConfigurationError, match="multilabel"):
            trainer.export_dataset("multi", tmp_path / "folder", format="folder")
    assert report.task == "multilabel" and report.exported == coco.exported == 15
    first = json.loads((tmp_path / "automl" / "annotations.jsonl").read_text().splitlines()[0])
    assert isinstance(first["label"], list) and len(first["label"]) == 2
    back = Dataset.from_automl_jsonl(tmp_path / "automl")
    assert back.multilabel and content_labels(back) == content_labels(tagged)
    assert content_labels(Dataset.from_coco(tmp_path / "coco" / "coco.json")) == content_labels(tagged)


def test_detection_projects_export_their_regions(emu: Emulator, tmp_path: Path) -> None:
    from azure.cognitiveservices.vision.customvision.training.models import (
        ImageFileCreateBatch,
        ImageFileCreateEntry,
        Region,
    )

    from azvision._dataset_formats import read_automl_jsonl

    client = official_client(emu)
    project = client.create_project("objects", domain_id="a27d5ca5-bb19-49d8-a70a-fec086c47f5b")
    ball, box = client.create_tag(project.id, "ball"), client.create_tag(project.id, "box")
    data = make_dataset(
        tmp_path / "data", classes=("circle",), per_class=4, size=(64, 80), image_format="png"
    )
    truth: dict[str, list[tuple[str, float, float, float, float]]] = {}
    entries = []
    for n, item in enumerate(data.items):
        boxes = [("ball", 0.1, round(0.1 * n, 6), 0.25, 0.3), ("box", 0.5, 0.4, 0.5, 0.5)][: 1 + n % 2]
        tags = {"ball": ball.id, "box": box.id}
        regions = [Region(tag_id=tags[t], left=x, top=y, width=w, height=h) for t, x, y, w, h in boxes]
        raw = item.path.read_bytes()
        truth[hashlib.sha256(raw).hexdigest()] = sorted(boxes)
        entries.append(ImageFileCreateEntry(name=item.path.name, contents=raw, regions=regions))
    assert client.create_images_from_files(
        project.id, ImageFileCreateBatch(images=entries)
    ).is_batch_successful
    with make_trainer(emu) as trainer:
        report = trainer.export_dataset("objects", tmp_path / "automl")
        coco = trainer.export_dataset("objects", tmp_path / "coco", format="coco")
        with pytest.raises(ConfigurationError, match="detection"):
            trainer.export_dataset("objects", tmp_path / "folder", format="folder")
    assert report.task == "detection" and report.exported == coco.exported == 4
    found = {}
    for record in read_automl_jsonl(tmp_path / "automl"):
        assert record.problem is None and record.path is not None
        boxes = [(b.label, b.box.left, b.box.top, b.box.width, b.box.height) for b in record.boxes]
        found[hashlib.sha256(record.path.read_bytes()).hexdigest()] = sorted(
            (t, round(x, 6), round(y, 6), round(w, 6), round(h, 6)) for t, x, y, w, h in boxes
        )
    assert found == truth
    document = json.loads((tmp_path / "coco" / "coco.json").read_text())
    assert len(document["annotations"]) == 6
    first = document["images"][0]
    pixel_boxes = [a["bbox"] for a in document["annotations"] if a["image_id"] == first["id"]]
    assert all(x >= 0 and x + w <= first["width"] and y + h <= first["height"] for x, y, w, h in pixel_boxes)


def test_with_exports_downloads_every_trained_iteration_so_the_model_runs_offline(
    emu: Emulator, tmp_path: Path
) -> None:
    from azvision import OnnxBackend

    data = make_dataset(tmp_path / "data", classes=SHAPES, per_class=8, size=(96, 96), image_format="png")
    held_out = make_dataset(tmp_path / "test", classes=SHAPES, per_class=2, seed=7, size=(96, 96))
    with make_trainer(emu) as trainer:
        first = trainer.train_from_folder(data, project="models", domain="General (compact)")
        extra = make_dataset(
            tmp_path / "data", classes=SHAPES, per_class=9, size=(96, 96), image_format="png"
        )
        second = trainer.train_from_folder(extra, project="models", domain="General (compact)")
        assert first.iteration.id != second.iteration.id
        report = trainer.export_dataset("models", tmp_path / "out", with_exports=True)
        again = trainer.export_dataset("models", tmp_path / "out", with_exports=True)  # resumes
        trainer.train_from_folder(data, project="not-compact")
        plain = trainer.export_dataset("not-compact", tmp_path / "plain", with_exports=True)
    assert report.complete and [(m.platform, m.ok) for m in report.models] == [("ONNX", True)] * 2
    assert again.models == report.models and again.downloaded == 0
    assert [m.ok for m in plain.models] == [False] and "not exportable" in (plain.models[0].error or "")
    for model in report.models:
        folder = tmp_path / "out" / (model.folder or "")
        assert (folder / "model.onnx").is_file() and (folder / "labels.txt").is_file()
    newest = tmp_path / "out" / (report.models[0].folder or "")
    with OnnxBackend(newest) as clf:
        outcomes = list(clf.classify_many([str(it.path) for it in held_out.items]))
    right = sum(o.label == it.label for o, it in zip(outcomes, held_out.items, strict=True))
    assert right >= 5  # of 6: the exported model keeps working without the service


def test_the_automl_job_yaml_loads_with_azure_ai_ml_and_points_at_the_export(
    emu: Emulator, shapes: Dataset, tmp_path: Path
) -> None:
    ml = pytest.importorskip("azure.ai.ml")
    with make_trainer(emu) as trainer:
        trainer.export_dataset("shapes", tmp_path / "one")
        trainer.export_dataset("shapes", tmp_path / "two", validation_split=0.3)
    whole = ml.load_job(tmp_path / "one" / "automl-job.yml")
    assert type(whole).__name__ == "ImageClassificationJob" and whole.target_column_name == "label"
    assert (tmp_path / "one" / whole.training_data.path / "MLTable").is_file()
    split = ml.load_job(tmp_path / "two" / "automl-job.yml")
    for data in (split.training_data, split.validation_data):
        assert data.type == "mltable" and (tmp_path / "two" / data.path / "MLTable").is_file()


def test_a_rerun_drops_images_no_longer_tagged(emu: Emulator, tmp_path: Path) -> None:
    fill(emu, tmp_path / "data", "shrinks", per_class=5, untagged=0)
    with make_trainer(emu) as trainer:
        first = trainer.export_dataset("shrinks", tmp_path / "out", format="folder")
        client = official_client(emu)
        gone = client.get_tagged_images(first.project_id, take=2)
        client.delete_images(first.project_id, image_ids=[i.id for i in gone])
        second = trainer.export_dataset("shrinks", tmp_path / "out", format="folder")
    assert (first.exported, second.exported, second.downloaded) == (15, 13, 0)
    assert len(Dataset.from_folder(tmp_path / "out")) == 13
