"""Cascade against the emulator: the trained project's ONNX export first, its Custom Vision iteration second."""

from __future__ import annotations

import asyncio

import pytest

from azvision import Cascade, ConfigurationError, InvalidImageError, Prediction
from azvision.emulator import Emulator

from .conftest import CLASSES, Trained, custom_vision, onnx, prediction_calls


def local_confidences(trained: Trained) -> list[float]:
    with onnx(trained) as local:
        return [p.confidence for p in local.classify_many(trained.paths)]  # type: ignore[union-attr]


def test_only_the_images_the_local_model_is_unsure_of_reach_the_cloud(
    trained: Trained, service: Emulator
) -> None:
    paths = trained.paths
    confidences = local_confidences(trained)
    threshold = 0.999
    unsure = [i for i, c in enumerate(confidences) if c < threshold]
    assert 0 < len(unsure) < len(paths)  # the data gives both kinds

    with Cascade([onnx(trained), custom_vision(service, trained)], threshold=threshold) as cascade:
        outcomes = list(cascade.classify_many(paths, concurrency=4))
        stats = cascade.stats()

    assert all(isinstance(o, Prediction) for o in outcomes)
    predictions = [o for o in outcomes if isinstance(o, Prediction)]
    assert [p.source for p in predictions] == paths  # input order
    assert [i for i, p in enumerate(predictions) if p.backend == "custom_vision"] == unsure
    for i, p in enumerate(predictions):
        if i in unsure:
            assert "below threshold" in p.notes[0] and "asked custom_vision" in p.notes[0]
        else:
            assert p.backend == "onnx" and p.confidence >= threshold
            assert p.notes[-1].startswith("cascade: onnx answered at")
    assert prediction_calls(service) == len(unsure)
    assert [(s.name, s.calls, s.answered) for s in stats.stages] == [
        ("onnx", len(paths), len(paths) - len(unsure)),
        ("custom_vision", len(unsure), len(unsure)),
    ]
    assert stats.usage.calls == {"onnx": len(paths), "custom_vision": len(unsure)}
    assert stats.usage.cost_usd == pytest.approx(0.002 * len(unsure))


def test_threshold_zero_never_calls_the_cloud_and_one_always_does(
    trained: Trained, service: Emulator
) -> None:
    paths = trained.paths[:6]
    with Cascade([onnx(trained), custom_vision(service, trained)], threshold=0.0) as cascade:
        assert {p.backend for p in cascade.classify_many(paths)} == {"onnx"}  # type: ignore[union-attr]
    assert prediction_calls(service) == 0
    with Cascade([onnx(trained), custom_vision(service, trained)], threshold=1.0) as cascade:
        labels = [p.label for p in cascade.classify_many(paths)]  # type: ignore[union-attr]
        assert cascade.stats().stages[1].answered == 6
    assert prediction_calls(service) == 6 and set(labels) <= set(CLASSES)


def test_async_batches_answer_like_sync_ones(trained: Trained, service: Emulator) -> None:
    paths = trained.paths

    async def run() -> list[tuple[str | None, str]]:
        async with Cascade([onnx(trained), custom_vision(service, trained)], threshold=0.999) as cascade:
            single = await cascade.aclassify(paths[0])
            outcomes = [o async for o in cascade.aclassify_many(paths, concurrency=3)]
        assert single.source == paths[0]
        return [(o.label, o.backend) for o in outcomes if isinstance(o, Prediction)]

    with Cascade([onnx(trained), custom_vision(service, trained)], threshold=0.999) as cascade:
        sync = [(o.label, o.backend) for o in cascade.classify_many(paths) if isinstance(o, Prediction)]
    assert asyncio.run(run()) == sync and len(sync) == len(paths)


def test_stages_in_other_labels_are_refused_unless_a_label_map_folds_them(
    trained: Trained, service: Emulator
) -> None:
    cloud = custom_vision(service, trained, labels=("round", "square", "triangle"))
    with pytest.raises(
        ConfigurationError, match=r"custom_vision answers \['round'\].*never answers \['circle'\]"
    ):
        Cascade([onnx(trained), cloud], threshold=0.9)
    folded = Cascade([onnx(trained), cloud], threshold=1.0, label_map={1: {"round": "circle"}})
    assert folded.labels == CLASSES
    folded.close()
    with pytest.raises(ConfigurationError, match="label_map names"):
        Cascade([onnx(trained), custom_vision(service, trained)], label_map={"azure_ml": {}})


def test_a_stage_that_does_not_name_its_labels_is_checked_on_its_answers(
    trained: Trained, service: Emulator
) -> None:
    cloud = custom_vision(service, trained, labels=None)
    with pytest.raises(ConfigurationError, match="the labels given"):  # onnx's labels are not these
        Cascade([onnx(trained), cloud], labels=("cat", "dog"))
    renamed = Cascade([onnx(trained), cloud], threshold=1.0, label_map={0: {"square": "box"}})
    outcome = next(iter(renamed.classify_many([str(trained.paths[6])])))  # a square
    assert isinstance(outcome, ConfigurationError) and "'square'" in str(outcome)
    renamed.close()


def test_a_bad_image_fails_before_any_cloud_call_and_the_batch_goes_on(
    trained: Trained, service: Emulator
) -> None:
    good = str(trained.paths[0])
    with Cascade([onnx(trained), custom_vision(service, trained)], threshold=1.0) as cascade:
        outcomes = list(cascade.classify_many([b"not an image", good, "missing.jpg"]))
    assert isinstance(outcomes[0], InvalidImageError) and isinstance(outcomes[2], InvalidImageError)
    assert isinstance(outcomes[1], Prediction) and outcomes[1].backend == "custom_vision"
    assert prediction_calls(service) == 1


def test_thresholds_are_checked_per_stage() -> None:
    from azvision.routing._cascade import _thresholds

    assert _thresholds([0.5, 0.9], 3) == (0.5, 0.9)
    with pytest.raises(ConfigurationError, match="one per stage but the last"):
        _thresholds([0.5, 0.9, 0.9], 3)
    with pytest.raises(ConfigurationError, match=r"in \[0, 1\]"):
        _thresholds(1.5, 2)


def test_the_trainers_classifier_names_its_labels_so_a_cascade_can_check_them(
    trained: Trained, service: Emulator
) -> None:
    from azvision import CustomVisionTrainer

    with CustomVisionTrainer(
        service.endpoint,
        service.training_key,
        prediction_endpoint=service.endpoint,
        prediction_key=service.prediction_key,
    ) as trainer:
        cloud = trainer.classifier(project_id=trained.project_id, publish_name="prod")
    assert cloud.labels == CLASSES  # type: ignore[attr-defined]
    with Cascade([onnx(trained), cloud]) as cascade:
        assert cascade.labels == CLASSES
