"""Stored predictions in the emulated Custom Vision service, driven by the official training client:
storage unless ``nostore``/``store=False``, ``predictions/query`` (paging, filters), ``images/predictions``
and ``DELETE predictions``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import (
    CustomVisionErrorException,
    ImageFileCreateBatch,
    ImageFileCreateEntry,
    ImageIdCreateBatch,
    ImageIdCreateEntry,
    PredictionQueryTag,
    PredictionQueryToken,
)
from msrest.authentication import ApiKeyCredentials

from azvision.emulator import Emulator, _cv_stored

if TYPE_CHECKING:
    from conftest import ShapeDataset

KNOWN = ("circle", "stripes")  # trained on; "checker" is the class the model never saw


def clients(emu: Emulator) -> tuple[CustomVisionTrainingClient, CustomVisionPredictionClient]:
    trainer = CustomVisionTrainingClient(
        emu.endpoint, ApiKeyCredentials(in_headers={"Training-key": emu.training_key})
    )
    predictor = CustomVisionPredictionClient(
        emu.endpoint, ApiKeyCredentials(in_headers={"Prediction-key": emu.prediction_key})
    )
    return trainer, predictor


@dataclass
class Project:
    emu: Emulator
    trainer: CustomVisionTrainingClient
    predictor: CustomVisionPredictionClient
    id: str
    iteration_id: str
    tags: dict[str, str]


def trained_project(emu: Emulator, shape_dataset: ShapeDataset, name: str) -> Project:
    trainer, predictor = clients(emu)
    project = trainer.create_project(name)
    tags = {label: trainer.create_tag(project.id, label).id for label in KNOWN}
    entries = [
        ImageFileCreateEntry(name=f"{label}-{i}.png", contents=data, tag_ids=[tags[label]])
        for label in KNOWN
        for i, data in enumerate(shape_dataset.train[label])
    ]
    assert trainer.create_images_from_files(
        project.id, ImageFileCreateBatch(images=entries)
    ).is_batch_successful
    iteration = trainer.train_project(project.id)
    deadline = time.monotonic() + 120
    while iteration.status == "Training":
        assert time.monotonic() < deadline
        time.sleep(0.1)
        iteration = trainer.get_iteration(project.id, iteration.id)
    assert iteration.status == "Completed"
    trainer.publish_iteration(project.id, iteration.id, "prod", emu.prediction_resource_id)
    return Project(emu, trainer, predictor, project.id, iteration.id, tags)


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(training_seconds=0.1) as emulator:
        yield emulator


@pytest.fixture
def project(emu: Emulator, shape_dataset: ShapeDataset, request: pytest.FixtureRequest) -> Project:
    return trained_project(emu, shape_dataset, request.node.name[:40])


def query_all(project: Project, **filters: object) -> list[str]:
    """Every stored prediction id the query gives, page by page (2 a page)."""
    token = PredictionQueryToken(max_count=2, **filters)  # type: ignore[arg-type]
    ids: list[str] = []
    for _ in range(100):
        result = project.trainer.query_predictions(project.id, token)
        ids += [r.id for r in result.results]
        if not result.token.continuation:
            return ids
        assert len(result.results) == 2
        token = result.token
    raise AssertionError("the continuation never ended")


def test_predictions_are_stored_unless_nostore(project: Project, shape_dataset: ShapeDataset) -> None:
    stored = [
        project.predictor.classify_image(project.id, "prod", data).id for data in shape_dataset.test["circle"]
    ]
    for data in shape_dataset.test["stripes"]:
        project.predictor.classify_image_with_no_store(project.id, "prod", data)
    quick = project.trainer.quick_test_image(project.id, shape_dataset.test["checker"][0]).id
    project.trainer.quick_test_image(project.id, shape_dataset.test["checker"][1], store=False)
    url = project.trainer.get_tagged_images(project.id, take=1)[0].original_image_uri
    by_url = project.trainer.quick_test_image_url(project.id, url=url, iteration_id=project.iteration_id).id
    project.trainer.quick_test_image_url(project.id, url=url, store=False)

    ids = query_all(project)
    assert sorted(ids) == sorted([*stored, quick, by_url])
    assert len(ids) == len(set(ids))
    assert query_all(project, order_by="Oldest") == [*stored, quick, by_url]
    assert query_all(project, order_by="Newest") == [by_url, quick, *stored[::-1]]

    result = project.trainer.query_predictions(project.id, PredictionQueryToken())
    first = next(r for r in result.results if r.id == stored[0])
    assert first.iteration == project.iteration_id and first.project == project.id
    assert first.created is not None
    assert first.predictions[0].tag_name == "circle"
    assert {p.tag_name for p in first.predictions} == set(KNOWN)
    image = httpx.get(first.original_image_uri, timeout=10)
    assert image.status_code == 200 and image.content == shape_dataset.test["circle"][0]


def test_query_filters_by_threshold_iteration_and_time(project: Project, shape_dataset: ShapeDataset) -> None:
    made = {
        label: [
            project.predictor.classify_image(project.id, "prod", data).id
            for data in shape_dataset.test[label]
        ]
        for label in KNOWN
    }
    circle, stripes = project.tags["circle"], project.tags["stripes"]

    def ids(*tags: PredictionQueryTag) -> set[str]:
        token = PredictionQueryToken(tags=list(tags), max_count=256)
        return {r.id for r in project.trainer.query_predictions(project.id, token).results}

    assert ids(PredictionQueryTag(id=stripes, max_threshold=0.5)) == set(made["circle"])
    assert ids(PredictionQueryTag(id=circle, min_threshold=0.5)) == set(made["circle"])
    assert ids(PredictionQueryTag(id=stripes, min_threshold=0.5, max_threshold=1.0)) == set(made["stripes"])
    # Every listed tag must pass: no image is both.
    both = (
        PredictionQueryTag(id=circle, min_threshold=0.5),
        PredictionQueryTag(id=stripes, min_threshold=0.5),
    )
    assert ids(*both) == set()

    assert len(query_all(project, iteration_id=project.iteration_id)) == 10
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    assert query_all(project, start_time=future) == []
    with pytest.raises(CustomVisionErrorException) as excinfo:
        project.trainer.query_predictions(
            project.id, PredictionQueryToken(iteration_id="00000000-0000-0000-0000-000000000000")
        )
    assert excinfo.value.error.code == "NotFoundIteration"
    with pytest.raises(CustomVisionErrorException) as excinfo:
        project.trainer.query_predictions(project.id, PredictionQueryToken(continuation="garbage!"))
    assert excinfo.value.error.code == "BadRequest"


def test_images_from_predictions_reuse_the_stored_image_once(
    project: Project, shape_dataset: ShapeDataset
) -> None:
    checker = project.trainer.create_tag(project.id, "checker").id
    ids = [
        project.predictor.classify_image(project.id, "prod", data).id
        for data in shape_dataset.test["checker"]
    ]
    before = project.trainer.get_tagged_image_count(project.id)
    batch = ImageIdCreateBatch(images=[ImageIdCreateEntry(id=i, tag_ids=[checker]) for i in ids[:3]])
    summary = project.trainer.create_images_from_predictions(project.id, batch)
    assert summary.is_batch_successful
    assert [r.status for r in summary.images] == ["OK"] * 3
    assert [r.image.id for r in summary.images] == ids[:3]  # the image takes the prediction's id
    assert project.trainer.get_tagged_image_count(project.id) == before + 3
    made = project.trainer.get_images_by_ids(project.id, image_ids=ids[:1])[0]
    assert [t.tag_name for t in made.tags] == ["checker"]
    assert httpx.get(made.original_image_uri, timeout=10).content == shape_dataset.test["checker"][0]
    # Made into training images, they leave the queue; the others stay.
    assert sorted(query_all(project)) == sorted(ids[3:])

    again = ImageIdCreateBatch(
        images=[ImageIdCreateEntry(id=i, tag_ids=[checker]) for i in ids[:4]]
        + [ImageIdCreateEntry(id="00000000-0000-0000-0000-000000000000", tag_ids=[checker])]
    )
    summary = project.trainer.create_images_from_predictions(project.id, again)
    assert not summary.is_batch_successful
    assert [r.status for r in summary.images] == ["OKDuplicate"] * 3 + ["OK", "ErrorSource"]
    assert project.trainer.get_tagged_image_count(project.id) == before + 4  # nothing added twice

    stats = httpx.get(
        f"{project.emu.endpoint}/_emulator/stats",
        headers={"Training-Key": project.emu.training_key},
        timeout=10,
    ).json()
    assert not any(route.endswith("/images") and "POST" in route for route in stats)  # no upload


def test_deleted_predictions_are_gone(project: Project, shape_dataset: ShapeDataset) -> None:
    results = [
        project.predictor.classify_image(project.id, "prod", data) for data in shape_dataset.test["stripes"]
    ]
    ids = [r.id for r in results]
    oldest = PredictionQueryToken(order_by="Oldest")
    uri = project.trainer.query_predictions(project.id, oldest).results[0].original_image_uri
    assert httpx.get(uri, timeout=10).status_code == 200
    project.trainer.delete_prediction(project.id, ids=ids[:-1])
    assert query_all(project) == ids[-1:]
    assert httpx.get(uri, timeout=10).status_code == 404
    project.trainer.delete_prediction(project.id, ids=ids[:-1])  # deleting twice is fine
    batch = ImageIdCreateBatch(images=[ImageIdCreateEntry(id=ids[0], tag_ids=[project.tags["stripes"]])])
    summary = project.trainer.create_images_from_predictions(project.id, batch)
    assert [r.status for r in summary.images] == ["ErrorSource"]


def test_stored_predictions_survive_a_restart(tmp_path: Path, shape_dataset: ShapeDataset) -> None:
    with Emulator(training_seconds=0.1, data_dir=tmp_path) as emu:
        project = trained_project(emu, shape_dataset, "persisted")
        kept = project.predictor.classify_image(project.id, "prod", shape_dataset.test["circle"][0]).id
    with Emulator(training_seconds=0.1, data_dir=tmp_path) as emu:
        trainer, _ = clients(emu)
        result = trainer.query_predictions(project.id, PredictionQueryToken())
        assert [r.id for r in result.results] == [kept]
        image = httpx.get(result.results[0].original_image_uri, timeout=10).content
        assert image == shape_dataset.test["circle"][0]


def test_the_oldest_go_first_past_the_cap(
    project: Project, shape_dataset: ShapeDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_cv_stored, "MAX_STORED", 3)
    ids = [
        project.predictor.classify_image(project.id, "prod", data).id for data in shape_dataset.test["circle"]
    ]
    assert query_all(project, order_by="Oldest") == ids[-3:]
