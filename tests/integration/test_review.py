"""CustomVisionTrainer.review_queue and accept against the emulator: the unsure predictions, and the
decisions that turn them into training images (confirm, correct, skip, none of these), idempotently."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from azure.cognitiveservices.vision.customvision.training.models import (
    ImageFileCreateBatch,
    ImageFileCreateEntry,
    Region,
)

from azvision import ConfigurationError, CustomVisionBackend, CustomVisionTrainer, NotFoundError
from azvision.datasets import Dataset
from azvision.emulator import Emulator
from azvision.review_app import ReviewSession
from azvision.training import NONE_OF_THESE, ReviewItem
from tests.integration.loop_helpers import KNOWN, NEW, classify_stream, make_trainer, stream, train_biased


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(training_seconds=0.1) as emulator:
        yield emulator


@dataclass
class Classified:
    trainer: CustomVisionTrainer
    project: str
    stream: Dataset
    truth: dict[str, str]  # prediction id -> the shape really drawn


@pytest.fixture
def classified(emu: Emulator, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Classified]:
    name = request.node.name[:40]
    with make_trainer(emu) as trainer:
        train_biased(trainer, tmp_path, name)
        data = stream(tmp_path / "stream", 10, seed=7)
        truth = classify_stream(trainer, data)
        yield Classified(trainer, name, data, truth)


def requests_to(emu: Emulator, suffix: str) -> int:
    stats = httpx.get(
        f"{emu.endpoint}/_emulator/stats", headers={"Training-Key": emu.training_key}, timeout=10
    ).json()
    return sum(sum(c.values()) for route, c in stats.items() if route.endswith(suffix))


def test_the_queue_holds_the_unsure_predictions_least_sure_first(classified: Classified) -> None:
    queue = classified.trainer.review_queue(classified.project, max_confidence=0.6)
    assert queue, "hexagons leave the model unsure"
    assert all(isinstance(item, ReviewItem) for item in queue)
    assert all(item.confidence <= 0.6 for item in queue)
    assert [item.confidence for item in queue] == sorted(item.confidence for item in queue)
    assert sum(classified.truth[item.prediction_id] == NEW for item in queue) >= 0.8 * len(queue)
    first = queue[0]
    assert {s.name for s in first.suggestions} == set(KNOWN)
    assert [s.confidence for s in first.suggestions] == sorted(
        (s.confidence for s in first.suggestions), reverse=True
    )
    assert first.created and first.iteration_id
    assert httpx.get(first.image_uri, timeout=10).status_code == 200

    everything = classified.trainer.review_queue(classified.project, max_confidence=1.0)
    assert len(everything) == len(classified.truth)
    assert classified.trainer.review_queue(classified.project, max_confidence=1.0, limit=3) == everything[:3]


def test_bad_arguments_fail_before_any_request(classified: Classified, emu: Emulator) -> None:
    before = requests_to(emu, "/predictions/query")
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ConfigurationError, match="max_confidence"):
            classified.trainer.review_queue(classified.project, max_confidence=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="limit"):
        classified.trainer.review_queue(classified.project, limit=0)
    with pytest.raises(ConfigurationError, match="bad decisions"):
        classified.trainer.accept(classified.project, {"p1": 3, "": "circle"})  # type: ignore[dict-item]
    assert requests_to(emu, "/predictions/query") == before
    assert requests_to(emu, "/images/predictions") == 0
    with pytest.raises(NotFoundError, match="no-such-project"):
        classified.trainer.review_queue("no-such-project")


def test_accept_confirms_corrects_skips_and_rejects(classified: Classified, emu: Emulator) -> None:
    trainer, project = classified.trainer, classified.project
    queue = trainer.review_queue(project, max_confidence=1.0)
    hexagons = [i for i in queue if classified.truth[i.prediction_id] == NEW]
    circles = [i for i in queue if classified.truth[i.prediction_id] == "circle"]
    decisions = {
        **{i.prediction_id: NEW for i in hexagons[:6]},  # corrected to a tag the project lacks
        **{i.prediction_id: i.label for i in circles[:2]},  # confirmed
        hexagons[6].prediction_id: None,  # skipped
        hexagons[7].prediction_id: NONE_OF_THESE,  # none of these: a Negative image
        "00000000-0000-0000-0000-000000000000": "circle",  # no such stored prediction
        circles[2].prediction_id: ["circle", "square"],  # two labels in a multiclass project
    }
    tagged_before = len(list(trainer._existing_images(trainer.find_project(project).id)))  # type: ignore[union-attr]
    uploads, creates = requests_to(emu, "/images/files"), requests_to(emu, "/images/predictions")
    result = trainer.accept(project, decisions, batch_size=4)
    assert result.counts() == {"added": 9, "already_added": 0, "duplicates": 0, "skipped": 1, "failed": 2}
    assert set(result.added) == {i.prediction_id for i in hexagons[:6] + circles[:2]} | {
        hexagons[7].prediction_id
    }
    reasons = {f.prediction_id: (f.status, f.reason) for f in result.failed}
    assert reasons["00000000-0000-0000-0000-000000000000"][0] == "ErrorSource"
    assert "one label per image" in reasons[circles[2].prediction_id][1]
    assert requests_to(emu, "/images/predictions") - creates == 3  # 9 images in batches of 4
    assert requests_to(emu, "/images/files") == uploads  # nothing uploaded

    info = trainer.find_project(project)
    assert info is not None
    tags = {t.name: t for t in trainer._client().get_tags(info.id)}
    assert tags[NEW].image_count == 6 and tags["Negative"].type == "Negative"
    assert len(list(trainer._existing_images(info.id))) == tagged_before + 9
    remaining = {i.prediction_id for i in trainer.review_queue(project, max_confidence=1.0)}
    assert remaining.isdisjoint(result.added)

    again = trainer.accept(project, decisions, batch_size=4)  # a reload, a second tab, a re-run
    assert again.counts() == {"added": 0, "already_added": 9, "duplicates": 0, "skipped": 1, "failed": 2}
    assert len(list(trainer._existing_images(info.id))) == tagged_before + 9


def test_detection_decisions_become_regions(
    emu: Emulator, make_object_scene: Callable[..., tuple[bytes, tuple[float, float, float, float]]]
) -> None:
    with make_trainer(emu) as trainer:
        client = trainer._client()
        detection = next(d for d in trainer._domain_list() if d.type == "ObjectDetection" and d.exportable)
        project = client.create_project("boxes", domain_id=detection.id)
        tags = {kind: client.create_tag(project.id, kind).id for kind in ("ball", "box")}
        entries = []
        for kind, tag_id in tags.items():
            for i in range(15):
                data, (left, top, width, height) = make_object_scene(kind, i)
                region = Region(tag_id=tag_id, left=left, top=top, width=width, height=height)
                entries.append(ImageFileCreateEntry(name=f"{kind}{i}.png", contents=data, regions=[region]))
        client.create_images_from_files(project.id, ImageFileCreateBatch(images=entries))
        iteration = trainer.train(project.id).wait(120)
        trainer.publish(project.id, iteration, "prod")
        with CustomVisionBackend(
            emu.endpoint, emu.prediction_key, project.id, "prod", task="detection"
        ) as detector:
            balls = [detector.classify(make_object_scene("ball", 600 + i)[0]).raw["id"] for i in range(3)]
            on_page = detector.classify(make_object_scene("box", 700)[0]).raw["id"]

        queue = [i for i in trainer.review_queue("boxes", max_confidence=1.0) if i.prediction_id in balls]
        assert len(queue) == 3 and all(s.box is not None for s in queue[0].suggestions)
        confirmed = {item.prediction_id: [item.suggestions[0]] for item in queue[:2]}
        result = trainer.accept("boxes", {**confirmed, queue[2].prediction_id: "ball"})
        assert result.counts()["added"] == 2
        assert "needs boxes" in result.failed[0].reason
        made = client.get_images_by_ids(project.id, image_ids=list(confirmed))
        for image in made:
            (suggestion,) = confirmed[image.id]
            (region,) = image.regions
            assert region.tag_name == suggestion.name
            assert region.left == pytest.approx(suggestion.box.left, abs=1e-6)  # type: ignore[union-attr]
        session = ReviewSession(trainer, "boxes", max_confidence=1.0)  # what the review page does
        session.load()
        assert session.detection
        assert session.decide(on_page, {"label": "box"})["outcome"] == "added"
        (image,) = client.get_images_by_ids(project.id, image_ids=[on_page])
        assert [r.tag_name for r in image.regions] == ["box"]
