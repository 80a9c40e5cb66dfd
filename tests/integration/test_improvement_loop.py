"""The improvement loop end to end against the emulator: a model trained on a biased set meets a class it
never saw; the review queue holds mostly those images; accepting them and ``azvision retrain`` raise holdout
accuracy by at least 10 points; a deliberately mislabelled batch of accepts gives a challenger the gate
refuses, and the publish name stays where it was."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from azvision import CustomVisionTrainer
from azvision.cli.app import app
from azvision.emulator import Emulator
from tests.integration.loop_helpers import KNOWN, NEW, classify_stream, make_trainer, stream, train_biased


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(training_seconds=0.1) as emulator:
        monkeypatch.setenv("CUSTOM_VISION_TRAINING_ENDPOINT", emulator.endpoint)
        monkeypatch.setenv("CUSTOM_VISION_TRAINING_KEY", emulator.training_key)
        monkeypatch.setenv("CUSTOM_VISION_PREDICTION_RESOURCE_ID", emulator.prediction_resource_id)
        yield emulator


def retrain(*args: str) -> tuple[int, dict[str, object], str]:
    result = CliRunner().invoke(app, ["retrain", *args, "--json"])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    lines = result.stdout.strip().splitlines()
    return result.exit_code, json.loads(lines[-1]) if lines else {}, result.stderr


def published_iteration(trainer: CustomVisionTrainer, project: str) -> str:
    info = trainer.find_project(project)
    assert info is not None
    return next(it.id for it in trainer.iterations(info) if it.publish_name == "prod")


@pytest.mark.slow
def test_review_accept_retrain_gate(env: Emulator, tmp_path: Path) -> None:
    holdout = str(stream(tmp_path / "holdout", 10, seed=99).root)
    with make_trainer(env) as trainer:
        first = train_biased(trainer, tmp_path, "loop")

        # The stream holds a class the training set had no images of: the queue is mostly those.
        truth = classify_stream(trainer, stream(tmp_path / "stream", 25, seed=7))
        queue = trainer.review_queue("loop", max_confidence=0.6)
        new_share = sum(truth[item.prediction_id] == NEW for item in queue) / len(queue)
        assert len(queue) >= 8 and new_share >= 0.8, (len(queue), new_share)

        # A reviewer names what each image shows; the new tag is created on the way.
        result = trainer.accept("loop", {item.prediction_id: truth[item.prediction_id] for item in queue})
        assert result.counts()["added"] == len(queue) and not result.failed

        code, line, err = retrain("--project", "loop", "--holdout", holdout, "--publish-name", "prod")
        assert code == 0, err
        champion, challenger = line["champion"], line["challenger"]
        assert isinstance(champion, dict) and isinstance(challenger, dict)
        assert champion["iteration_id"] == first.iteration.id
        assert line["published"] == "challenger"
        assert challenger["metric"] >= champion["metric"] + 0.10, line
        assert published_iteration(trainer, "loop") == challenger["iteration_id"]
        assert trainer.iteration(first.project, first.iteration.id).completed  # the old one stays available

        # Nothing changed since: no new iteration, the champion stays.
        code, again, _ = retrain("--project", "loop", "--holdout", holdout)
        assert code == 3 and again["published"] == "champion" and "nothing changed" in str(again["reason"])

        # A deliberately mislabelled batch of accepts: the gate refuses the challenger it gives.
        truth = classify_stream(trainer, stream(tmp_path / "stream2", 12, seed=8))
        wrong = {shape: (*KNOWN, NEW)[((*KNOWN, NEW).index(shape) + 1) % 4] for shape in (*KNOWN, NEW)}
        everything = [i for i in trainer.review_queue("loop", max_confidence=1.0) if i.prediction_id in truth]
        result = trainer.accept("loop", {i.prediction_id: wrong[truth[i.prediction_id]] for i in everything})
        assert result.counts()["added"] == len(everything) == 48

        code, refused, _ = retrain("--project", "loop", "--holdout", holdout, "--publish-name", "prod")
        assert code == 3, refused
        assert refused["published"] == "champion" and "worse" in str(refused["reason"])
        assert refused["champion"]["iteration_id"] == challenger["iteration_id"]  # type: ignore[index]
        assert refused["challenger"]["metric"] < refused["champion"]["metric"]  # type: ignore[index]
        assert published_iteration(trainer, "loop") == challenger["iteration_id"]


def test_retrain_usage_errors_exit_2(env: Emulator, tmp_path: Path) -> None:
    code, _, err = retrain("--project", "loop", "--holdout", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in err
    holdout = str(stream(tmp_path / "holdout", 2, seed=1).root)
    code, _, err = retrain("--project", "no-such-project", "--holdout", holdout)
    assert code == 1 and "no Custom Vision project called 'no-such-project'" in err
    with make_trainer(env) as trainer:
        trainer.project("unpublished")
    code, _, err = retrain("--project", "unpublished", "--holdout", holdout)
    assert code == 2 and "pass --publish-name to choose: the project has none published" in err


@pytest.mark.skipif(
    importlib.util.find_spec("azvision._detection_metrics") is not None,
    reason="the detection evaluation is installed: retrain scores detection projects by mAP",
)
def test_retrain_of_a_detection_project_needs_the_detection_evaluation(env: Emulator, tmp_path: Path) -> None:
    with make_trainer(env) as trainer:
        detection = next(d for d in trainer._domain_list() if d.type == "ObjectDetection")
        project = trainer._client().create_project("boxes", domain_id=detection.id)
        holdout = str(stream(tmp_path / "holdout", 2, seed=1).root)
        code, _, err = retrain("--project", "boxes", "--holdout", holdout, "--publish-name", "prod")
        assert code == 2 and "object detection project" in err and "mAP" in err
        assert trainer.iterations(project.id) == []
