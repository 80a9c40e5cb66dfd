"""Every backend passes the same checks the same way: the `Classifier` contract, end to end.

One Custom Vision model is trained in the emulator, published, exported to ONNX, and the export deployed behind
the emulated Azure ML endpoint (the real inference server running ``examples/aml/score.py``). Then each of
the five backends is held to one list of promises.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

import azvision
from azvision import Classifier, InvalidImageError, Prediction
from azvision.emulator import AmlEndpointSpec, Emulator, EmulatorConfig
from tests.integration.conftest import SHAPES, shape_image

REPO = Path(__file__).resolve().parents[2]
SCORE_PY = REPO / "examples" / "aml" / "score.py"


@dataclass
class World:
    cv: Emulator
    aml: Emulator
    project_id: str
    export_dir: Path
    held_out: list[tuple[bytes, str]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, inference_python: Path) -> Iterator[World]:
    root = tmp_path_factory.mktemp("conformance")
    dataset = root / "dataset"
    for kind in SHAPES:
        (dataset / kind).mkdir(parents=True)
        for i in range(12):
            (dataset / kind / f"{kind}_{i}.png").write_bytes(shape_image(kind, i))
    held_out = [(shape_image(kind, 2000 + i), kind) for kind in SHAPES for i in range(3)]
    with Emulator(training_seconds=0.1) as cv:
        with azvision.CustomVisionTrainer(
            endpoint=cv.endpoint,
            training_key=cv.training_key,
            prediction_resource_id=cv.prediction_resource_id,
        ) as trainer:
            result = trainer.train_from_folder(
                dataset, project="conformance", publish_name="prod", export="onnx", export_dir=root / "export"
            )
        assert result.export_dir is not None
        spec = AmlEndpointSpec(
            score_script=SCORE_PY, model_dir=Path(result.export_dir), deployments=("blue",)
        )
        with Emulator.from_config(EmulatorConfig(aml_endpoints={"shapes": spec})) as aml:  # type: ignore[dict-item]
            yield World(cv, aml, result.project.id, Path(result.export_dir), held_out)


def _custom_vision(w: World) -> Classifier:
    return azvision.create_classifier(
        "custom_vision",
        endpoint=w.cv.endpoint,
        key=w.cv.prediction_key,
        project_id=w.project_id,
        iteration="prod",
    )


def _image_analysis(w: World) -> Classifier:
    return azvision.create_classifier("image_analysis", endpoint=w.cv.endpoint, key=w.cv.vision_key)


def _azure_ml(w: World) -> Classifier:
    return azvision.create_classifier(
        "azure_ml", scoring_uri=w.aml.aml_scoring_uri("shapes"), key=w.aml.aml_key, request_format="raw"
    )


def _onnx(w: World) -> Classifier:
    return azvision.create_classifier("onnx", model_path=w.export_dir)


def _azure_openai(w: World) -> Classifier:
    examples = {kind: [shape_image(kind, i) for i in range(3)] for kind in SHAPES}  # few-shot, in context
    return azvision.create_classifier(
        "azure_openai",
        endpoint=w.cv.endpoint,
        key=w.cv.openai_key,
        deployment="gpt-4o",
        labels=list(SHAPES),
        examples=examples,
    )


BACKENDS: dict[str, Callable[[World], Classifier]] = {
    "custom_vision": _custom_vision,
    "image_analysis": _image_analysis,
    "azure_ml": _azure_ml,
    "onnx": _onnx,
    "azure_openai": _azure_openai,
}
#: Backends whose answers are our own trained labels (Image Analysis answers with its own vocabulary).
TRAINED = {"custom_vision", "azure_ml", "onnx"}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, world: World) -> Iterator[tuple[str, Classifier]]:
    clf = BACKENDS[request.param](world)
    yield request.param, clf
    clf.close()


def _check_prediction(name: str, p: Prediction) -> None:
    assert p.backend == name
    assert p.labels, "a prediction has at least one label"
    confidences = [lab.confidence for lab in p.labels]
    assert confidences == sorted(confidences, reverse=True)
    assert all(0.0 <= c <= 1.0 for c in confidences)
    assert p.label == p.labels[0].name and p.confidence == confidences[0]


def test_satisfies_the_protocol(backend: tuple[str, Classifier]) -> None:
    assert isinstance(backend[1], Classifier)


def test_classify_answers_with_the_common_model(backend: tuple[str, Classifier], world: World) -> None:
    name, clf = backend
    right = 0
    for image, expected in world.held_out:
        p = clf.classify(image)
        _check_prediction(name, p)
        right += p.label == expected
    if name in TRAINED:
        assert right / len(world.held_out) >= 0.9


def test_every_input_kind_gives_the_same_answer(
    backend: tuple[str, Classifier], world: World, tmp_path: Path
) -> None:
    _name, clf = backend
    image, _ = world.held_out[0]
    path = tmp_path / "held out.png"
    path.write_bytes(image)
    answers = [
        clf.classify(image),
        clf.classify(path),
        clf.classify(str(path)),
        clf.classify(io.BytesIO(image)),
        clf.classify(Image.open(io.BytesIO(image))),
    ]
    assert len({(p.label, round(p.confidence, 4)) for p in answers}) == 1
    assert answers[1].source == str(path)  # the path as given


def test_batches_keep_order_and_put_errors_in_place(backend: tuple[str, Classifier], world: World) -> None:
    _name, clf = backend
    images: list[object] = [
        world.held_out[0][0],
        b"",
        world.held_out[4][0],
        b"not an image",
        world.held_out[8][0],
    ]
    out = list(clf.classify_many(images))  # type: ignore[arg-type]
    assert [type(o).__name__ for o in out] == [
        "Prediction",
        "InvalidImageError",
        "Prediction",
        "InvalidImageError",
        "Prediction",
    ]
    singles = [clf.classify(images[i]) for i in (0, 2, 4)]  # type: ignore[arg-type]
    assert [o.label for o in out if isinstance(o, Prediction)] == [s.label for s in singles]
    assert isinstance(out[1], InvalidImageError)


def test_async_matches_sync(backend: tuple[str, Classifier], world: World) -> None:
    _name, clf = backend
    images = [img for img, _ in world.held_out[:4]]

    async def run() -> tuple[list[str | None], list[str | None]]:
        one = [(await clf.aclassify(img)).label for img in images]
        many = [o.label async for o in clf.aclassify_many(images) if isinstance(o, Prediction)]
        return one, many

    one, many = asyncio.run(run())
    assert one == many == [clf.classify(img).label for img in images]


def test_repr_shows_no_secret(backend: tuple[str, Classifier], world: World) -> None:
    _name, clf = backend
    for secret in (world.cv.prediction_key, world.cv.vision_key, world.aml.aml_key):
        assert secret not in repr(clf)
        assert secret not in str(vars(clf))


def test_context_manager_closes(world: World) -> None:
    for make in BACKENDS.values():
        with make(world) as clf:
            assert clf.classify(world.held_out[0][0]).labels
        with pytest.raises(RuntimeError, match="closed"):
            clf.classify(world.held_out[0][0])
