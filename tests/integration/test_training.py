"""CustomVisionTrainer against the emulator: folder → project → upload → train → publish → export → classify."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from azvision import (
    AuthenticationError,
    BackendTimeoutError,
    ConfigurationError,
    CustomVisionTrainer,
    Prediction,
    RetryPolicy,
    TrainingError,
)
from azvision.datasets import Dataset
from azvision.emulator import Emulator
from azvision.synthetic import make_dataset
from azvision.training.models import TrainProgress, TrainResult

SHAPES = ("circle", "square", "triangle")
FAST_RETRY = RetryPolicy(max_attempts=8, backoff_base=0.01, backoff_max=0.1, deadline=30)


def write_shapes(root: Path, per_class: int, *, seed: int = 0, size: tuple[int, int] = (96, 160)) -> Path:
    """One folder of PNG images per shape, from the package's generator."""
    make_dataset(root, classes=SHAPES, per_class=per_class, size=size, seed=seed, image_format="png")
    return root


def upload_requests(emulator: Emulator) -> int:
    stats = httpx.get(
        f"{emulator.endpoint}/_emulator/stats", headers={"Training-Key": emulator.training_key}, timeout=10
    ).json()
    return sum(sum(c.values()) for route, c in stats.items() if route.endswith("/images/files"))


def route_count(emulator: Emulator, method: str, suffix: str) -> int:
    stats = httpx.get(
        f"{emulator.endpoint}/_emulator/stats", headers={"Training-Key": emulator.training_key}, timeout=10
    ).json()
    return sum(
        sum(c.values())
        for route, c in stats.items()
        if route.startswith(method + " ") and route.endswith(suffix)
    )


def make_trainer(emulator: Emulator, **options: object) -> CustomVisionTrainer:
    return CustomVisionTrainer(
        emulator.endpoint,
        emulator.training_key,
        prediction_resource_id=emulator.prediction_resource_id,
        prediction_endpoint=emulator.endpoint,
        prediction_key=emulator.prediction_key,
        **options,  # type: ignore[arg-type]
    )


# -- one trained project shared by the tests of the whole story ------------------------------------------
class Story:
    def __init__(
        self, emulator: Emulator, trainer: CustomVisionTrainer, data: Dataset, test: Dataset
    ) -> None:
        self.emulator, self.trainer, self.data, self.test = emulator, trainer, data, test
        self.events: list[TrainProgress] = []
        self.result: TrainResult | None = None


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    root = write_shapes(tmp_path_factory.mktemp("shapes"), per_class=20)
    (root / "circle" / "notes.txt").write_text("not a picture")
    data = Dataset.from_folder(root)
    train, test = data.split(0.2, seed=0)
    train = Dataset(items=train.items, skipped=data.skipped, root=root)
    with Emulator() as emulator, make_trainer(emulator) as trainer:
        story = Story(emulator, trainer, train, test)
        story.result = trainer.train_from_folder(
            train,
            project="shapes",
            publish_name="prod",
            export_dir=tmp_path_factory.mktemp("export"),
            progress=story.events.append,
        )
        yield story


def test_folder_to_published_model_classifies_held_out_images(story: Story) -> None:
    result = story.result
    assert result is not None
    assert result.trained and result.iteration.completed and result.publish_name == "prod"
    assert len(result.upload.uploaded) == len(story.data) == 48
    assert [s.path for s in result.skipped] == ["circle/notes.txt"]
    assert {t.name for t in result.performance.tags} == set(SHAPES)  # type: ignore[union-attr]
    assert {t.image_count for t in result.performance.tags} == {16}  # type: ignore[union-attr]
    stages = [e.stage for e in story.events]
    assert stages.index("upload") < stages.index("train") < stages.index("publish") < stages.index("download")
    assert story.events[[e.stage for e in story.events].index("upload") + 1].total == 48

    with story.trainer.classifier() as classifier:
        outcomes = list(classifier.classify_many([item.path for item in story.test]))
    assert all(isinstance(o, Prediction) for o in outcomes)
    correct = sum(o.label == item.label for o, item in zip(outcomes, story.test, strict=True))  # type: ignore[union-attr]
    assert correct / len(story.test) >= 0.9, f"{correct}/{len(story.test)} held-out images right"


def test_upload_of_the_story_took_one_request_per_64_images(story: Story) -> None:
    assert story.result is not None
    assert story.result.upload.requests == math.ceil(48 / 64)


def test_onnx_export_is_downloaded_and_agrees_with_the_service(story: Story) -> None:
    result = story.result
    assert result is not None and result.export_dir is not None
    files = {p.name for p in result.export_dir.iterdir()}
    assert {"model.onnx", "labels.txt"} <= files
    assert (result.export_dir / "labels.txt").read_text().split() == sorted(SHAPES)
    pytest.importorskip("azvision.backends.onnx", reason="OnnxBackend is not written yet")
    paths = [item.path for item in story.test]
    with story.trainer.classifier() as service, story.trainer.classifier(kind="onnx") as local:
        remote = [p.label for p in service.classify_many(paths)]  # type: ignore[union-attr]
        offline = [p.label for p in local.classify_many(paths)]  # type: ignore[union-attr]
    agree = sum(a == b for a, b in zip(remote, offline, strict=True))
    assert agree / len(paths) >= 0.95, f"ONNX agrees with the service on {agree}/{len(paths)}"


def test_rerun_uploads_nothing_and_reuses_the_iteration(story: Story, tmp_path: Path) -> None:
    before = upload_requests(story.emulator)
    trains = route_count(story.emulator, "POST", "/train")
    again = story.trainer.train_from_folder(
        story.data, project="shapes", publish_name="prod", export_dir=tmp_path / "again"
    )
    assert story.result is not None
    assert upload_requests(story.emulator) == before  # not one upload request
    assert again.upload.requests == 0 and not again.upload.uploaded
    assert len(again.upload.already_present) == 48
    assert not again.trained and again.iteration.id == story.result.iteration.id
    assert route_count(story.emulator, "POST", "/train") == trains + 1  # answered "not needed"
    assert again.summary()["duplicates"] == 48 and again.summary()["uploaded"] == 0


def test_an_export_already_queued_is_waited_for_not_requested_again(story: Story) -> None:
    assert story.result is not None
    project, iteration = story.result.project, story.result.iteration
    posts = route_count(story.emulator, "POST", "/export")
    first = story.trainer.export(project, iteration, "onnx", flavor="ONNX12")
    second = story.trainer.export(project, iteration, "ONNX", flavor="ONNX12")
    assert first.done and second.done and second.flavor == "ONNX12"
    assert route_count(story.emulator, "POST", "/export") == posts + 1


def test_publish_checks_the_resource_id_before_calling(story: Story) -> None:
    assert story.result is not None
    publishes = route_count(story.emulator, "POST", "/publish")
    with pytest.raises(ConfigurationError, match="ARM id"):
        story.trainer.publish(
            story.result.project, story.result.iteration, "other", prediction_resource_id="my-resource"
        )
    assert route_count(story.emulator, "POST", "/publish") == publishes


def test_publish_moves_the_name_and_unpublish_withdraws_it(story: Story) -> None:
    result = story.result
    assert result is not None
    trainer = story.trainer
    published = trainer.publish(result.project, result.iteration, "staging")
    assert published.publish_name == "staging"
    trainer.unpublish(result.project, result.iteration)
    assert not trainer.iteration(result.project, result.iteration).published
    restored = trainer.publish(result.project, result.iteration, "prod")
    assert restored.publish_name == "prod"


# -- uploads ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = write_shapes(tmp_path_factory.mktemp("many"), per_class=50, seed=1, size=(24, 40))
    return Dataset.from_folder(root)


def test_upload_batches_of_64_and_a_resumed_upload_sends_only_what_is_missing(many: Dataset) -> None:
    with Emulator() as emulator, make_trainer(emulator) as trainer:
        project = trainer.project("resume")
        first_part = Dataset(items=many.items[:70], root=many.root)
        partial = trainer.upload(project, first_part)  # as if the first run had crashed after 70 images
        assert upload_requests(emulator) == partial.requests == math.ceil(70 / 64)

        resumed = trainer.upload(project, many)
        assert len(resumed.already_present) == 70 and len(resumed.uploaded) == 80
        assert resumed.requests == math.ceil(80 / 64)

        rerun = trainer.upload(project, many)
        assert rerun.requests == 0 and len(rerun.already_present) == 150
        assert upload_requests(emulator) == 2 + 2


def test_upload_with_injected_faults_accounts_for_every_image(many: Dataset) -> None:
    names = {many.display_name(item) for item in many}
    with (
        Emulator(fail_rate=0.25, drop_rate=0.15, seed=11) as emulator,
        make_trainer(emulator, retry=FAST_RETRY) as trainer,
    ):
        project = trainer.project("faults")
        report = trainer.upload(project, many)
    settled = [
        *report.uploaded,
        *report.duplicates,
        *report.already_present,
        *(f.path for f in report.failed),
    ]
    assert sorted(settled) == sorted(names)
    assert report.accounted_for
    assert report.requests >= math.ceil(len(names) / 64)


def test_throttled_uploads_wait_as_told_and_all_land(many: Dataset) -> None:
    with Emulator(rate_limit_tps=3) as emulator, make_trainer(emulator, max_rps=None) as trainer:
        project = trainer.project("throttled")
        report = trainer.upload(project, many)
        stats = httpx.get(
            f"{emulator.endpoint}/_emulator/stats",
            headers={"Training-Key": emulator.training_key},
            timeout=10,
        ).json()
    throttled = sum(c.get("429", 0) for route, c in stats.items() if route.endswith("/images/files"))
    # The quota was hit (by the uploads or the calls before them, which then taught the throttle a rate)
    assert sum(c.get("429", 0) for c in stats.values() if isinstance(c, dict)) > 0
    assert len(report.uploaded) == len(many) and report.requests == 3 + throttled


def test_unreadable_images_are_reported_by_name_not_sent(tmp_path: Path) -> None:
    root = write_shapes(tmp_path / "data", per_class=5, size=(24, 32))
    (root / "square" / "broken.png").write_bytes(Image.new("RGB", (4, 4)).tobytes()[:8] + b"\x89PNG" * 4)
    (root / "square" / "truncated.png").write_bytes((root / "square" / "square_000.png").read_bytes()[:60])
    data = Dataset.from_folder(root)
    assert [s.path for s in data.skipped] == ["square/broken.png"]
    with Emulator() as emulator, make_trainer(emulator) as trainer:
        report = trainer.upload(trainer.project("broken"), data)
    assert [f.path for f in report.failed] == ["square/truncated.png"]
    assert "truncated" in report.failed[0].reason or "corrupt" in report.failed[0].reason
    assert len(report.uploaded) == 15 and report.accounted_for


# -- training failures -----------------------------------------------------------------------------------
def test_training_with_two_images_on_a_tag_raises_training_error_naming_the_rule(tmp_path: Path) -> None:
    root = write_shapes(tmp_path / "data", per_class=6, size=(24, 32))
    for extra in sorted((root / "triangle").iterdir())[2:]:
        extra.unlink()
    with (
        Emulator() as emulator,
        make_trainer(emulator) as trainer,
        pytest.raises(TrainingError, match="at least 5 images") as caught,
    ):
        trainer.train_from_folder(root, project="few")
    assert "'triangle' has 2" in str(caught.value)


def test_waiting_past_the_timeout_raises_and_the_job_can_be_resumed(tmp_path: Path) -> None:
    root = write_shapes(tmp_path / "data", per_class=5, size=(24, 32))
    with Emulator(training_seconds=1.5) as emulator, make_trainer(emulator) as trainer:
        project = trainer.project("slow")
        trainer.upload(project, Dataset.from_folder(root))
        job = trainer.train(project)
        with pytest.raises(BackendTimeoutError, match="still"):
            job.wait(timeout=0.3, poll_interval=0.1)
        joined = trainer.train(project)  # a second start joins the running training
        assert joined.iteration_id == job.iteration_id
        assert job.wait(timeout=30, poll_interval=0.2).completed


def test_a_wrong_training_key_is_an_authentication_error_that_never_shows_the_key() -> None:
    with Emulator() as emulator:
        trainer = CustomVisionTrainer(emulator.endpoint, "wrong-key-1234567890")
        with trainer, pytest.raises(AuthenticationError) as caught:
            trainer.find_project("anything")
    assert "wrong-key-1234567890" not in f"{caught.value!s}{caught.value!r}{trainer!r}"


def test_a_multilabel_manifest_trains_a_multilabel_project(tmp_path: Path) -> None:
    root = write_shapes(tmp_path / "data", per_class=6, size=(32, 48))
    lines = ["path,labels"]
    for item in Dataset.from_folder(root):
        tags = [item.label] + (["pointy"] if item.label in {"square", "triangle"} else ["round"])
        lines.append(f"{item.path.relative_to(root).as_posix()},{';'.join(tags)}")
    (root / "labels.csv").write_text("\n".join(lines))
    data = Dataset.from_manifest(root / "labels.csv")
    assert data.multilabel and data.counts()["pointy"] == 12
    with Emulator() as emulator, make_trainer(emulator) as trainer:
        result = trainer.train_from_folder(data, project="multi")
    assert result.project.multilabel and result.iteration.completed
    assert {t.name for t in result.performance.tags} == {*SHAPES, "pointy", "round"}  # type: ignore[union-attr]
