"""The emulated Custom Vision service, driven by the official clients (and httpx where they cannot)."""

from __future__ import annotations

import base64
import io
import json
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import onnxruntime as ort
import pytest
from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
from azure.cognitiveservices.vision.customvision.prediction.models import (
    CustomVisionErrorException as PredictionError,
)
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import (
    CustomVisionErrorException,
    ImageFileCreateBatch,
    ImageFileCreateEntry,
    Iteration,
    Project,
    Region,
    Tag,
)
from msrest.authentication import ApiKeyCredentials
from PIL import Image

from azvision._preprocess import COMPACT_CLASSIFIER, to_tensor, upright_rgb
from azvision.emulator import Emulator

if TYPE_CHECKING:
    from conftest import ShapeDataset

COMPACT_CLASSIFICATION = "0732100f-1a38-4e49-a514-c9b44c697ab5"
COMPACT_DETECTION = "a27d5ca5-bb19-49d8-a70a-fec086c47f5b"
OTHER_RESOURCE = (
    "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/other"
    "/providers/Microsoft.CognitiveServices/accounts/other-prediction"
)
WAIT_S = 120.0
SHAPES = ("circle", "stripes", "checker")  # the classes of the shape_dataset fixture
Box = tuple[float, float, float, float]


def trainer_for(emu: Emulator, key: str | None = None) -> CustomVisionTrainingClient:
    credentials = ApiKeyCredentials(in_headers={"Training-key": key or emu.training_key})
    return CustomVisionTrainingClient(emu.endpoint, credentials)


def predictor_for(emu: Emulator, key: str | None = None) -> CustomVisionPredictionClient:
    credentials = ApiKeyCredentials(in_headers={"Prediction-key": key or emu.prediction_key})
    return CustomVisionPredictionClient(emu.endpoint, credentials)


def wait_trained(trainer: CustomVisionTrainingClient, project_id: str, iteration: Iteration) -> Iteration:
    deadline = time.monotonic() + WAIT_S
    while iteration.status == "Training":
        assert time.monotonic() < deadline, "training did not finish"
        time.sleep(0.1)
        iteration = trainer.get_iteration(project_id, iteration.id)
    return iteration


def upload(
    trainer: CustomVisionTrainingClient, project_id: str, images: dict[str, list[bytes]], tags: dict[str, Tag]
) -> None:
    entries = [
        ImageFileCreateEntry(name=f"{label}-{i}.png", contents=data, tag_ids=[tags[label].id])
        for label, items in images.items()
        for i, data in enumerate(items)
    ]
    result = trainer.create_images_from_files(project_id, ImageFileCreateBatch(images=entries))
    assert result.is_batch_successful, [i.status for i in result.images]


def error_of(
    excinfo: pytest.ExceptionInfo[CustomVisionErrorException] | pytest.ExceptionInfo[PredictionError],
) -> tuple[int, str, str]:
    error = excinfo.value
    return error.response.status_code, error.error.code, error.error.message


def bmp_of_size(min_bytes: int) -> bytes:
    side = int((min_bytes / 3) ** 0.5) + 8
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (10, 200, 30)).save(buffer, "BMP")
    assert len(buffer.getvalue()) > min_bytes
    return buffer.getvalue()


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(training_seconds=0.2) as emulator:
        yield emulator


@dataclass
class Trained:
    trainer: CustomVisionTrainingClient
    predictor: CustomVisionPredictionClient
    project: Project
    iteration: Iteration
    tags: dict[str, Tag]


@pytest.fixture(scope="module")
def trained(emu: Emulator, shape_dataset: ShapeDataset) -> Trained:
    """The quickstart story up to a published iteration: compact project, tags, upload, train, publish."""
    trainer = trainer_for(emu)
    domain = next(
        d for d in trainer.get_domains() if d.name == "General (compact)" and d.type == "Classification"
    )
    assert domain.id == COMPACT_CLASSIFICATION and domain.exportable
    project = trainer.create_project("shapes", domain_id=domain.id)
    tags = {label: trainer.create_tag(project.id, label) for label in SHAPES}
    upload(trainer, project.id, shape_dataset.train, tags)
    iteration = trainer.train_project(project.id)
    assert iteration.status == "Training"
    iteration = wait_trained(trainer, project.id, iteration)
    assert iteration.status == "Completed", iteration.training_error_details
    assert (
        trainer.publish_iteration(project.id, iteration.id, "production", emu.prediction_resource_id) is True
    )
    return Trained(
        trainer, predictor_for(emu), project, trainer.get_iteration(project.id, iteration.id), tags
    )


# -- the whole story -------------------------------------------------------------------------------
def test_published_iteration_classifies_held_out_images(
    trained: Trained, shape_dataset: ShapeDataset
) -> None:
    correct = 0
    total = 0
    for label, images in shape_dataset.test.items():
        for data in images:
            result = trained.predictor.classify_image(trained.project.id, "production", data)
            probabilities = [p.probability for p in result.predictions]
            assert probabilities == sorted(probabilities, reverse=True)
            assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
            assert {p.tag_name for p in result.predictions} == set(SHAPES)
            assert all(p.tag_type == "Regular" for p in result.predictions)
            assert result.iteration == trained.iteration.id
            correct += result.predictions[0].tag_name == label
            total += 1
    assert correct / total >= 0.9


def test_iteration_reports_its_training(emu: Emulator, trained: Trained) -> None:
    iteration = trained.iteration
    assert iteration.name == "Iteration 1"
    assert iteration.publish_name == "production"
    assert iteration.original_publish_resource_id == emu.prediction_resource_id
    assert iteration.exportable and "ONNX" in iteration.exportable_to
    assert iteration.trained_at is not None and iteration.domain_id == COMPACT_CLASSIFICATION
    tags = trained.trainer.get_tags(trained.project.id)
    assert {t.name: t.image_count for t in tags} == dict.fromkeys(SHAPES, 12)
    assert trained.trainer.get_tagged_image_count(trained.project.id) == 36
    assert trained.trainer.get_untagged_image_count(trained.project.id) == 0
    page = trained.trainer.get_tagged_images(trained.project.id, take=10, skip=30)
    assert len(page) == 6


def test_performance_comes_from_held_out_folds(trained: Trained) -> None:
    performance = trained.trainer.get_iteration_performance(trained.project.id, trained.iteration.id)
    assert {t.name for t in performance.per_tag_performance} == set(SHAPES)
    assert performance.precision >= 0.8 and performance.recall >= 0.8
    for tag in performance.per_tag_performance:
        assert 0.0 <= tag.precision <= 1.0 and 0.0 <= tag.recall <= 1.0
        assert tag.average_precision is not None and tag.average_precision >= 0.8
    strict = trained.trainer.get_iteration_performance(
        trained.project.id, trained.iteration.id, threshold=0.999
    )
    assert strict.recall < performance.recall  # fewer held-out images clear a higher threshold


def test_retraining_without_changes_is_not_needed(trained: Trained) -> None:
    with pytest.raises(CustomVisionErrorException) as excinfo:
        trained.trainer.train_project(trained.project.id)
    assert error_of(excinfo) == (400, "BadRequestTrainingNotNeeded", "Nothing changed since last training")


def test_onnx_export_downloads_a_zip_that_reproduces_predictions(
    trained: Trained, shape_dataset: ShapeDataset, tmp_path: Path
) -> None:
    trainer, project_id, iteration_id = trained.trainer, trained.project.id, trained.iteration.id
    export = trainer.export_iteration(project_id, iteration_id, "ONNX")
    assert (export.platform, export.status, export.download_uri) == ("ONNX", "Exporting", "")
    with pytest.raises(CustomVisionErrorException) as excinfo:
        trainer.export_iteration(project_id, iteration_id, "ONNX")
    assert error_of(excinfo) == (
        400,
        "BadRequestExportAlreadyInProgress",
        f"{iteration_id} is already queued for export",
    )
    deadline = time.monotonic() + WAIT_S
    while (exports := trainer.get_exports(project_id, iteration_id))[0].status == "Exporting":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert exports[0].status == "Done" and exports[0].download_uri.startswith(
        trained.predictor.config.endpoint
    )

    archive = zipfile.ZipFile(io.BytesIO(httpx.get(exports[0].download_uri, timeout=30).content))
    assert set(archive.namelist()) >= {"model.onnx", "labels.txt", "cvexport.manifest", "LICENSE"}
    labels = archive.read("labels.txt").decode().splitlines()
    assert sorted(labels) == sorted(SHAPES)
    assert json.loads(archive.read("cvexport.manifest"))["IterationId"] == iteration_id

    session = ort.InferenceSession(archive.read("model.onnx"), providers=["CPUExecutionProvider"])
    image = shape_dataset.test["checker"][0]
    tensor = to_tensor(upright_rgb(Image.open(io.BytesIO(image))), COMPACT_CLASSIFIER)[None]
    local = dict(zip(labels, session.run(["model_output"], {"data": tensor})[0][0].tolist(), strict=True))
    served = trained.predictor.classify_image(project_id, "production", image)
    for prediction in served.predictions:
        assert local[prediction.tag_name] == pytest.approx(prediction.probability, abs=1e-4)


def test_quick_test_predicts_with_the_latest_iteration(trained: Trained, shape_dataset: ShapeDataset) -> None:
    result = trained.trainer.quick_test_image(trained.project.id, shape_dataset.test["stripes"][1])
    assert result.iteration == trained.iteration.id
    assert result.predictions[0].tag_name == "stripes"


def test_classify_by_url_fetches_only_loopback_urls(trained: Trained) -> None:
    image = trained.trainer.get_tagged_images(
        trained.project.id, tag_ids=[trained.tags["circle"].id], take=1
    )[0]
    assert image.original_image_uri.startswith(trained.predictor.config.endpoint)
    result = trained.predictor.classify_image_url(
        trained.project.id, "production", url=image.original_image_uri
    )
    assert result.predictions[0].tag_name == "circle"
    with pytest.raises(PredictionError) as excinfo:
        trained.predictor.classify_image_url_with_no_store(
            trained.project.id, "production", url="https://example.com/cat.jpg"
        )
    assert error_of(excinfo)[:2] == (400, "BadRequestImageUrl")


def test_prediction_paths_versions_and_raw_bodies(
    emu: Emulator, trained: Trained, shape_dataset: ShapeDataset
) -> None:
    data = shape_dataset.test["circle"][2]
    headers = {"Prediction-Key": emu.prediction_key, "Content-Type": "application/octet-stream"}
    base = f"{emu.endpoint}/customvision/{{}}/Prediction/{trained.project.id}/classify/iterations/production/image/nostore"
    v30 = httpx.post(base.format("v3.0"), content=data, headers=headers, timeout=30)
    v31 = httpx.post(base.format("v3.1"), content=data, headers=headers, timeout=30)
    assert v30.status_code == v31.status_code == 200
    assert "tagType" not in v30.json()["predictions"][0]
    assert v31.json()["predictions"][0]["tagType"] == "Regular"
    assert v30.json()["predictions"][0]["tagName"] == "circle"


def test_prediction_rejects_bad_images(trained: Trained) -> None:
    project_id = trained.project.id
    with pytest.raises(PredictionError) as excinfo:
        trained.predictor.classify_image(project_id, "production", bmp_of_size(4 * 1024 * 1024))
    assert error_of(excinfo)[:2] == (400, "BadRequestImageSizeBytes")
    with pytest.raises(PredictionError) as excinfo:
        trained.predictor.classify_image(project_id, "production", b"this is not an image")
    assert error_of(excinfo)[:2] == (400, "BadRequestImageFormat")


def test_unknown_or_unpublished_names_are_invalid_iterations(
    emu: Emulator, trained: Trained, shape_dataset: ShapeDataset
) -> None:
    image = shape_dataset.test["circle"][0]
    with pytest.raises(PredictionError) as excinfo:
        trained.predictor.classify_image(trained.project.id, "Iteration 1", image)
    assert error_of(excinfo) == (404, "NotFoundIteration", "Invalid iteration")

    trainer, project_id, iteration_id = trained.trainer, trained.project.id, trained.iteration.id
    trainer.unpublish_iteration(project_id, iteration_id)
    try:
        with pytest.raises(PredictionError) as excinfo:
            trained.predictor.classify_image(project_id, "production", image)
        assert error_of(excinfo)[2] == "Invalid iteration"
        # Published to a prediction resource that is not the emulator's: the service answers the same.
        assert trainer.publish_iteration(project_id, iteration_id, "production", OTHER_RESOURCE)
        with pytest.raises(PredictionError) as excinfo:
            trained.predictor.classify_image(project_id, "production", image)
        assert error_of(excinfo)[2] == "Invalid iteration"
    finally:
        if trainer.get_iteration(project_id, iteration_id).publish_name:
            trainer.unpublish_iteration(project_id, iteration_id)
        trainer.publish_iteration(project_id, iteration_id, "production", emu.prediction_resource_id)
    assert trained.predictor.classify_image(project_id, "production", image).predictions


def test_publish_validates_the_request(emu: Emulator, trained: Trained) -> None:
    trainer, project_id, iteration_id = trained.trainer, trained.project.id, trained.iteration.id
    with pytest.raises(CustomVisionErrorException) as excinfo:
        trainer.publish_iteration(project_id, iteration_id, "other", "00000000-0000-0000-0000-000000000000")
    assert error_of(excinfo)[:2] == (400, "BadRequestInvalidPublishTarget")
    with pytest.raises(CustomVisionErrorException) as excinfo:
        trainer.publish_iteration(project_id, iteration_id, "again", emu.prediction_resource_id)
    assert error_of(excinfo)[:2] == (400, "BadRequestIterationIsPublished")
    with pytest.raises(CustomVisionErrorException) as excinfo:
        trainer.delete_iteration(project_id, iteration_id)
    assert error_of(excinfo)[:2] == (400, "BadRequestIterationIsPublished")


def test_wrong_keys_get_the_gateway_401(emu: Emulator, trained: Trained, shape_dataset: ShapeDataset) -> None:
    with pytest.raises(CustomVisionErrorException) as excinfo:
        trainer_for(emu, key="wrong").get_projects()
    assert str(excinfo.value) == "Operation returned an invalid status code 'Access Denied'"
    assert excinfo.value.response.status_code == 401
    assert excinfo.value.response.json()["error"]["code"] == "401"
    with pytest.raises(PredictionError) as excinfo:
        predictor_for(emu, key=emu.training_key).classify_image(
            trained.project.id, "production", shape_dataset.test["circle"][0]
        )
    assert str(excinfo.value) == "Operation returned an invalid status code 'Access Denied'"
    assert emu.training_key not in excinfo.value.response.text


# -- uploads ---------------------------------------------------------------------------------------
@pytest.fixture
def project(emu: Emulator) -> Iterator[tuple[CustomVisionTrainingClient, Project, Tag]]:
    trainer = trainer_for(emu)
    project = trainer.create_project("uploads", domain_id=COMPACT_CLASSIFICATION)
    yield trainer, project, trainer.create_tag(project.id, "thing")
    trainer.delete_project(project.id)


def test_upload_statuses_and_207(
    project: tuple[CustomVisionTrainingClient, Project, Tag], make_shape_image: Callable[..., bytes]
) -> None:
    trainer, created, tag = project
    good, other = make_shape_image("circle", 501), make_shape_image("circle", 502)
    first = trainer.create_images_from_data(created.id, good, tag_ids=[tag.id])
    assert first.is_batch_successful and first.images[0].status == "OK"
    assert first.images[0].image.width == 128 and first.images[0].image.tags[0].tag_name == "thing"

    batch = ImageFileCreateBatch(
        images=[
            ImageFileCreateEntry(name="again.png", contents=good),
            ImageFileCreateEntry(name="new.png", contents=other),
            ImageFileCreateEntry(name="huge.bmp", contents=bmp_of_size(6 * 1024 * 1024)),
            ImageFileCreateEntry(name="notes.txt", contents=b"not an image at all"),
        ],
        tag_ids=[tag.id],
    )
    raw = trainer.create_images_from_files(created.id, batch, raw=True)
    assert raw.response.status_code == 207
    summary = raw.output
    assert not summary.is_batch_successful
    assert [(i.source_url, i.status) for i in summary.images] == [
        ('"again.png"', "OKDuplicate"),
        ('"new.png"', "OK"),
        ('"huge.bmp"', "ErrorImageSize"),
        ('"notes.txt"', "ErrorImageFormat"),
    ]
    assert summary.images[0].image.id == first.images[0].image.id
    assert trainer.get_image_count(created.id) == 2


def test_a_files_batch_is_judged_image_by_image_without_holding_an_oversized_image(
    emu: Emulator,
    project: tuple[CustomVisionTrainingClient, Project, Tag],
    make_shape_image: Callable[..., bytes],
) -> None:
    trainer, created, tag = project
    good = base64.b64encode(make_shape_image("circle", 601)).decode()
    chunk, chunks = b"Qk02" * 16384, 1280  # 80 MB of base64 (a "BMP" of 60 MB), sent as it is made

    def body() -> Iterator[bytes]:
        yield b'{"images": [{"name": "huge.bmp", "contents": "'
        for _ in range(chunks):
            yield chunk
        yield f'"}}, {{"name": "fine.png", "contents": "{good}"}}], "tagIds": ["{tag.id}"]}}'.encode()

    tracemalloc.start()
    try:
        answer = httpx.post(
            f"{emu.endpoint}/customvision/v3.3/Training/projects/{created.id}/images/files",
            content=body(),
            headers={"Training-Key": emu.training_key, "Content-Type": "application/json"},
            timeout=60,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 207, answer.text
    statuses = [(image["sourceUrl"], image["status"]) for image in answer.json()["images"]]
    assert statuses == [('"huge.bmp"', "ErrorImageSize"), ('"fine.png"', "OK")]
    # Never held whole (8 MB of it is: enough to tell it is too big); before, the peak was 3 times its size.
    assert peak < len(chunk) * chunks
    assert trainer.get_image_count(created.id) == 1


def test_upload_encodings(
    emu: Emulator,
    project: tuple[CustomVisionTrainingClient, Project, Tag],
    make_shape_image: Callable[..., bytes],
) -> None:
    trainer, created, tag = project
    # The SDK sends bytes as a form field without a file name, and a file object with one.
    without_name = trainer.create_images_from_data(created.id, make_shape_image("stripes", 1))
    with_name = trainer.create_images_from_data(
        created.id, io.BufferedReader(io.BytesIO(make_shape_image("stripes", 2)))
    )
    assert without_name.images[0].status == with_name.images[0].status == "OK"
    raw = httpx.post(
        f"{emu.endpoint}/customvision/v3.3/Training/projects/{created.id}/images",
        params={"tagIds": tag.id},
        content=make_shape_image("stripes", 3),
        headers={"Training-Key": emu.training_key, "Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert raw.status_code == 200 and raw.json()["images"][0]["image"]["tags"][0]["tagId"] == tag.id
    assert trainer.get_untagged_image_count(created.id) == 2
    assert trainer.get_tagged_image_count(created.id) == 1
    assert {t.image_count for t in trainer.get_tags(created.id)} == {1}


def test_image_metadata_is_kept_and_updated(
    project: tuple[CustomVisionTrainingClient, Project, Tag], make_shape_image: Callable[..., bytes]
) -> None:
    trainer, created, tag = project
    batch = ImageFileCreateBatch(
        images=[ImageFileCreateEntry(name="a.png", contents=make_shape_image("circle", 40))],
        tag_ids=[tag.id],
        metadata={"source": "camera-1"},
    )
    image_id = trainer.create_images_from_files(created.id, batch).images[0].image.id
    assert trainer.get_images(created.id)[0].metadata == {"source": "camera-1"}
    raw = trainer.update_image_metadata(
        created.id, [image_id, "00000000-0000-0000-0000-000000000000"], {"checked": "yes"}, raw=True
    )
    assert raw.response.status_code == 207
    assert [(i.status, i.metadata) for i in raw.output.images] == [
        ("OK", {"source": "camera-1", "checked": "yes"}),
        ("ErrorImageNotFound", None),
    ]
    assert trainer.get_images_by_ids(created.id, [image_id])[0].metadata["checked"] == "yes"


def test_batches_over_64_images_are_rejected(
    project: tuple[CustomVisionTrainingClient, Project, Tag], make_shape_image: Callable[..., bytes]
) -> None:
    trainer, created, _ = project
    image = make_shape_image("checker", 0, size=32)
    entries = [ImageFileCreateEntry(name=f"{i}.png", contents=image) for i in range(65)]
    with pytest.raises(CustomVisionErrorException) as excinfo:
        trainer.create_images_from_files(created.id, ImageFileCreateBatch(images=entries))
    assert error_of(excinfo)[:2] == (400, "BadRequestImageBatch")
    assert trainer.get_image_count(created.id) == 0


def test_training_needs_five_images_per_tag_and_two_tags(
    project: tuple[CustomVisionTrainingClient, Project, Tag], make_shape_image: Callable[..., bytes]
) -> None:
    trainer, created, thing = project
    upload(
        trainer,
        created.id,
        {"thing": [make_shape_image("circle", 600 + i) for i in range(5)]},
        {"thing": thing},
    )
    with pytest.raises(CustomVisionErrorException) as excinfo:
        trainer.train_project(created.id)
    assert error_of(excinfo)[:2] == (400, "BadRequestMultiClassClassificationTrainingValidationFailed")
    assert "at least 2 tags" in error_of(excinfo)[2]

    other = trainer.create_tag(created.id, "other")
    upload(
        trainer,
        created.id,
        {"other": [make_shape_image("stripes", 600 + i) for i in range(4)]},
        {"other": other},
    )
    with pytest.raises(CustomVisionErrorException) as excinfo:
        trainer.train_project(created.id)
    status, code, message = error_of(excinfo)
    assert (status, code) == (400, "BadRequestMultiClassClassificationTrainingValidationFailed")
    assert message.startswith("Not enough images for training") and "'other' has 4" in message
    assert trainer.get_iterations(created.id) == []


def test_projects_and_tags_crud(emu: Emulator) -> None:
    trainer = trainer_for(emu)
    created = trainer.create_project("crud", description="first", classification_type="Multilabel")
    assert created.settings.domain_id == "ee85a74c-405e-4adc-bb47-ffa8ca0c9f31"
    assert created.settings.classification_type == "Multilabel"
    created.name, created.description = "renamed", "second"
    updated = trainer.update_project(created.id, created)
    assert (updated.name, trainer.get_project(created.id).description) == ("renamed", "second")

    tag = trainer.create_tag(created.id, "cat", description="meow")
    with pytest.raises(CustomVisionErrorException) as excinfo:
        trainer.create_tag(created.id, "Cat")
    assert error_of(excinfo)[:2] == (400, "BadRequestTagNameNotUnique")
    tag.name = "kitten"
    assert trainer.update_tag(created.id, tag.id, tag).name == "kitten"
    trainer.delete_tag(created.id, tag.id)
    assert trainer.get_tags(created.id) == []

    trainer.delete_project(created.id)
    with pytest.raises(CustomVisionErrorException) as excinfo:
        trainer.get_project(created.id)
    assert error_of(excinfo)[:2] == (404, "NotFoundProject")


# -- object detection ------------------------------------------------------------------------------
def iou(a: Box, b: Box) -> float:
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    return width * height / (a[2] * a[3] + b[2] * b[3] - width * height)


@pytest.mark.slow
def test_detection_story(emu: Emulator, make_object_scene: Callable[..., tuple[bytes, Box]]) -> None:
    trainer = trainer_for(emu)
    project = trainer.create_project("objects", domain_id=COMPACT_DETECTION)
    assert project.settings.classification_type is None
    tags = {kind: trainer.create_tag(project.id, kind) for kind in ("ball", "box")}
    entries = []
    for kind, tag in tags.items():
        for i in range(15):
            data, (left, top, width, height) = make_object_scene(kind, i)
            region = Region(tag_id=tag.id, left=left, top=top, width=width, height=height)
            entries.append(ImageFileCreateEntry(name=f"{kind}{i}.png", contents=data, regions=[region]))
    trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries[:14] + entries[15:]))
    with pytest.raises(CustomVisionErrorException) as excinfo:
        trainer.train_project(project.id)  # 14 balls: detection needs 15 images per tag
    assert error_of(excinfo)[:2] == (400, "BadRequestDetectionTrainingValidationFailed")
    trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries[14:15]))
    iteration = wait_trained(trainer, project.id, trainer.train_project(project.id))
    assert iteration.status == "Completed", iteration.training_error_details
    trainer.publish_iteration(project.id, iteration.id, "detector", emu.prediction_resource_id)

    predictor = predictor_for(emu)
    right_tag = overlapping = 0
    for kind in tags:
        for i in range(3):
            data, box = make_object_scene(kind, 500 + i)
            top = predictor.detect_image(project.id, "detector", data).predictions[0]
            found = top.bounding_box
            right_tag += top.tag_name == kind
            overlapping += iou((found.left, found.top, found.width, found.height), box) >= 0.3
    assert right_tag >= 5 and overlapping >= 4
    with pytest.raises(PredictionError) as excinfo:
        predictor.classify_image(project.id, "detector", data)
    assert error_of(excinfo)[:2] == (400, "BadRequestNotSupported")
    with pytest.raises(CustomVisionErrorException) as excinfo:
        trainer.export_iteration(project.id, iteration.id, "TensorFlow")
    assert error_of(excinfo)[:2] == (400, "BadRequestNotSupported")
    assert trainer.export_iteration(project.id, iteration.id, "ONNX").status == "Exporting"


# -- persistence -----------------------------------------------------------------------------------
def test_data_dir_keeps_everything_across_a_restart(
    tmp_path: Path, make_shape_image: Callable[..., bytes]
) -> None:
    probe = make_shape_image("stripes", 900)
    with Emulator(data_dir=tmp_path, training_seconds=0.1) as first:
        trainer = trainer_for(first)
        project = trainer.create_project("kept", domain_id=COMPACT_CLASSIFICATION)
        tags = {kind: trainer.create_tag(project.id, kind) for kind in ("circle", "stripes")}
        upload(trainer, project.id, {k: [make_shape_image(k, 700 + i) for i in range(5)] for k in tags}, tags)
        iteration = wait_trained(trainer, project.id, trainer.train_project(project.id))
        trainer.publish_iteration(project.id, iteration.id, "kept", first.prediction_resource_id)
        trainer.export_iteration(project.id, iteration.id, "ONNX")
        while trainer.get_exports(project.id, iteration.id)[0].status == "Exporting":
            time.sleep(0.05)
        before = predictor_for(first).classify_image(project.id, "kept", probe)
        keys = (first.training_key, first.prediction_key)

    with Emulator(data_dir=tmp_path) as second:
        assert (second.training_key, second.prediction_key) == keys
        trainer = trainer_for(second)
        assert [p.name for p in trainer.get_projects()] == ["kept"]
        assert trainer.get_image_count(project.id) == 10
        assert {t.name for t in trainer.get_tags(project.id)} == {"circle", "stripes"}
        assert trainer.get_iteration(project.id, iteration.id).status == "Completed"
        after = predictor_for(second).classify_image(project.id, "kept", probe)
        assert [(p.tag_name, round(p.probability, 6)) for p in after.predictions] == [
            (p.tag_name, round(p.probability, 6)) for p in before.predictions
        ]
        export = trainer.get_exports(project.id, iteration.id)[0]
        assert export.status == "Done" and export.download_uri.startswith(second.endpoint)
        assert zipfile.ZipFile(io.BytesIO(httpx.get(export.download_uri, timeout=30).content)).namelist()
        with pytest.raises(CustomVisionErrorException) as excinfo:
            trainer.train_project(project.id)
        assert error_of(excinfo)[1] == "BadRequestTrainingNotNeeded"
        second.reset()
        assert trainer.get_projects() == []
    with Emulator(data_dir=tmp_path) as third:
        assert trainer_for(third).get_projects() == []


def test_training_interrupted_by_a_restart_fails(
    tmp_path: Path, make_shape_image: Callable[..., bytes]
) -> None:
    with Emulator(data_dir=tmp_path, training_seconds=60) as first:
        trainer = trainer_for(first)
        project = trainer.create_project("interrupted", domain_id=COMPACT_CLASSIFICATION)
        tags = {kind: trainer.create_tag(project.id, kind) for kind in ("circle", "checker")}
        upload(trainer, project.id, {k: [make_shape_image(k, 800 + i) for i in range(5)] for k in tags}, tags)
        iteration = trainer.train_project(project.id)
        assert trainer.get_iteration(project.id, iteration.id).status == "Training"
    with Emulator(data_dir=tmp_path) as second:
        interrupted = trainer_for(second).get_iteration(project.id, iteration.id)
        assert interrupted.status == "Failed"
        assert "interrupted" in interrupted.training_error_details
