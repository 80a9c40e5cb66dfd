"""Object detection end to end against the emulator: ``azvision train --task detection`` on the generated
set, ``azvision evaluate``/``compare --task detection`` on a held-out split, the exported ONNX agreeing with
the prediction route, idempotent re-runs and the 15-images-per-tag rule checked before any upload."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from azvision import CustomVisionBackend, CustomVisionTrainer, DetectionDataset, OnnxBackend, TrainingError
from azvision.cli.app import app
from azvision.emulator import Emulator
from azvision.evaluation import box_iou
from azvision.synthetic import make_detection_dataset

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Trained:
    emulator: Emulator
    train: DetectionDataset
    test: DetectionDataset
    project_id: str
    model: Path
    first: dict[str, object]
    rerun: dict[str, object]


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def training_env(emulator: Emulator) -> dict[str, str]:
    return {
        "CUSTOM_VISION_TRAINING_ENDPOINT": emulator.endpoint,
        "CUSTOM_VISION_TRAINING_KEY": emulator.training_key,
        "CUSTOM_VISION_PREDICTION_RESOURCE_ID": emulator.prediction_resource_id,
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    root = tmp_path_factory.mktemp("detection")
    train = make_detection_dataset(root / "train", images=48, seed=0)
    test = make_detection_dataset(root / "test", images=20, seed=1)
    model = root / "model"
    with Emulator() as emulator:
        args = ["train", str(root / "train"), "--project", "shapes", "--task", "detection"]
        args += ["--publish-name", "det", "--export-dir", str(model), "--json", "--quiet"]
        code, out, err = cli(*args, env=training_env(emulator))
        assert code == 0, err
        first = json.loads(out.strip().splitlines()[-1])
        code, out, err = cli(*args, env=training_env(emulator))
        assert code == 0, err
        rerun = json.loads(out.strip().splitlines()[-1])
        yield Trained(emulator, train, test, str(first["project_id"]), model, first, rerun)


def test_training_uploads_every_image_once_and_reruns_upload_nothing(trained: Trained) -> None:
    assert (trained.first["uploaded"], trained.first["failed"]) == (48, 0)
    assert (trained.rerun["uploaded"], trained.rerun["duplicates"]) == (0, 48)
    assert trained.rerun["iteration_id"] == trained.first["iteration_id"]
    labels = (trained.model / "labels.txt").read_text().split()
    assert labels == ["circle", "square", "triangle"]
    manifest = json.loads((trained.model / "cvexport.manifest").read_text())
    assert manifest["DomainType"] == "ObjectDetection"


def test_evaluate_reaches_map50_of_07_on_held_out_images(trained: Trained, tmp_path: Path) -> None:
    emu = trained.emulator
    code, out, err = cli(
        "evaluate", str(trained.test.root), "--report", str(tmp_path), "--backend", "custom_vision",
        "--task", "detection", "--endpoint", emu.endpoint, "--key", emu.prediction_key,
        "--project-id", trained.project_id, "--iteration", "det", "--json", "--min-accuracy", "0.7",
        "--no-plot",
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["map50"] >= 0.7, metrics
    assert 0 < metrics["map50_95"] <= metrics["map50"]
    assert set(metrics["per_label"]) == {"circle", "square", "triangle"}
    lines = (tmp_path / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 20 and all("expected" in json.loads(line) for line in lines)


def test_the_onnx_export_finds_the_same_boxes_as_the_prediction_route(trained: Trained) -> None:
    emu = trained.emulator
    route = CustomVisionBackend(emu.endpoint, emu.prediction_key, trained.project_id, "det", task="detection")
    local = OnnxBackend(trained.model)
    assert local.family == "yolo"
    agree = 0
    with route, local:
        for item in trained.test:
            a = route.classify(str(item.path)).labels[0]
            b = local.classify(str(item.path)).labels[0]
            assert a.box is not None and b.box is not None
            agree += a.name == b.name and box_iou(a.box, b.box) >= 0.8
    assert agree >= 0.95 * len(trained.test)


def test_compare_ranks_detectors_by_map(trained: Trained, tmp_path: Path) -> None:
    emu = trained.emulator
    code, out, err = cli(
        "compare", str(trained.test.root), "--report", str(tmp_path), "--task", "detection",
        "--backend", "custom_vision", "--backend", "onnx", "--endpoint", emu.endpoint,
        "--key", emu.prediction_key, "--project-id", trained.project_id, "--iteration", "det",
        "--model-path", str(trained.model), "--json", "--no-plot",
    )  # fmt: skip
    assert code == 0, err
    comparison = json.loads(out.strip().splitlines()[-1])
    maps = {row["backend"]: row["map50"] for row in comparison["backends"]}
    assert maps["onnx"] == pytest.approx(maps["custom_vision"], abs=0.02)
    assert (tmp_path / "onnx" / "metrics.json").is_file()


def test_fifteen_images_per_tag_are_checked_before_any_upload(trained: Trained, tmp_path: Path) -> None:
    few = make_detection_dataset(tmp_path, images=6, seed=9)
    emu = trained.emulator
    with CustomVisionTrainer(emu.endpoint, emu.training_key) as trainer:
        with pytest.raises(TrainingError, match="at least 15 images per tag") as info:
            trainer.train_from_folder(few, project="too-few", task="detection")
        assert "nothing was uploaded" in str(info.value)
        assert trainer.find_project("too-few") is None


def test_the_services_own_refusal_names_the_rule_and_the_short_tags(trained: Trained, tmp_path: Path) -> None:
    few = make_detection_dataset(tmp_path, images=6, seed=11)
    emu = trained.emulator
    with CustomVisionTrainer(emu.endpoint, emu.training_key) as trainer:
        project = trainer.project("refused", task="detection")
        assert trainer.upload(project, few).failed == ()  # upload() itself does not check the rule
        with pytest.raises(TrainingError) as info:
            trainer.train(project)
    assert info.value.code == "BadRequestDetectionTrainingValidationFailed"
    message = str(info.value)
    assert "training was rejected" in message
    assert "at least 15 images per tag for object detection" in message and "'circle' has" in message


def test_bad_annotations_are_a_usage_error_naming_each(tmp_path: Path) -> None:
    data = make_detection_dataset(tmp_path, images=2)
    coco = json.loads((tmp_path / "annotations.json").read_text())
    coco["annotations"][0]["bbox"] = [400, 10, 50, 50]
    coco["annotations"][1]["category_id"] = 42
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(coco))
    code, _out, err = cli(
        "train", str(data.root), "--annotations", str(bad), "--task", "detection", "--project", "x",
        env={"CUSTOM_VISION_TRAINING_ENDPOINT": "http://127.0.0.1:9", "CUSTOM_VISION_TRAINING_KEY": "k"},
    )  # fmt: skip
    assert code == 2
    assert "2 annotation problems" in err and "outside the image" in err and "unknown category id 42" in err


def test_min_confidence_and_class_wise_nms_on_the_prediction_route(trained: Trained) -> None:
    emu = trained.emulator
    item = trained.test.items[0]

    def backend(**options: object) -> CustomVisionBackend:
        return CustomVisionBackend(
            emu.endpoint, emu.prediction_key, trained.project_id, "det", task="detection", **options
        )  # type: ignore[arg-type]

    with backend() as raw, backend(min_confidence=0.3, nms_iou=0.1) as tidy:
        everything = raw.classify(str(item.path)).labels
        prediction = tidy.classify(str(item.path))
        kept = prediction.labels
    if importlib.util.find_spec("supervision") is not None:
        detections = prediction.to_supervision()
        assert len(detections) == len(kept)
        width = item.size[0]
        assert detections.xyxy[0][0] == pytest.approx(kept[0].box.left * width, abs=1.0)  # type: ignore[union-attr]
    assert len(everything) > len(kept) > 0
    assert all(label.confidence >= 0.3 for label in kept)
    for i, a in enumerate(kept):
        for b in kept[i + 1 :]:
            assert a.name != b.name or a.box.iou(b.box) <= 0.1  # type: ignore[union-attr]
    assert kept[0] == everything[0]


def photo_scenes(root: Path, count: int, seed: int) -> DetectionDataset:
    """Real photo pixels: crops of scikit-image's cat, coffee cup and rocket photos pasted at random sizes
    and brightness on crops of its brick, grass and gravel photos; boxes written as COCO."""
    import random

    from PIL import Image, ImageEnhance

    data = pytest.importorskip("skimage.data")
    objects = {
        "cat": Image.fromarray(data.chelsea()).crop((80, 10, 300, 220)),
        "cup": Image.fromarray(data.coffee()).crop((130, 40, 470, 340)),
        "rocket": Image.fromarray(data.rocket()).crop((200, 0, 340, 420)),
    }
    backgrounds = [Image.fromarray(getattr(data, n)()).convert("RGB") for n in ("brick", "grass", "gravel")]
    root.mkdir(parents=True)
    images, annotations = [], []
    for index in range(count):
        rng = random.Random(f"{seed}/{index}")
        back = rng.choice(backgrounds)
        x0, y0 = rng.randint(0, back.width - 320), rng.randint(0, back.height - 256)
        scene = back.crop((x0, y0, x0 + 320, y0 + 256))
        placed: list[tuple[float, float, float, float]] = []
        for _ in range(rng.randint(1, 3)):
            label = rng.choice(sorted(objects))
            thing = objects[label]
            for _attempt in range(30):
                h = rng.uniform(0.3, 0.6) * 256
                w = h * thing.width / thing.height
                x, y = rng.uniform(0, max(1.0, 320 - w)), rng.uniform(0, 256 - h)
                if w <= 300 and all(
                    x + w < a or a + c < x or y + h < b or b + d < y for a, b, c, d in placed
                ):
                    break
            else:
                continue
            piece = ImageEnhance.Brightness(thing.resize((round(w), round(h)))).enhance(
                rng.uniform(0.75, 1.25)
            )
            scene.paste(piece, (round(x), round(y)))
            placed.append((x, y, w, h))
            annotations.append(
                {"image_id": index, "category_id": sorted(objects).index(label), "bbox": [x, y, w, h]}
            )
        scene.save(root / f"photo_{index:03d}.jpg", quality=92)
        images.append({"id": index, "file_name": f"photo_{index:03d}.jpg", "width": 320, "height": 256})
    categories = [{"id": i, "name": name} for i, name in enumerate(sorted(objects))]
    doc = {"images": images, "annotations": annotations, "categories": categories}
    (root / "coco.json").write_text(json.dumps(doc))
    return DetectionDataset.from_coco(root / "coco.json")


def test_a_detector_trained_on_photo_pixels_finds_the_objects(tmp_path: Path) -> None:
    from azvision.evaluation import evaluate_detection

    train = photo_scenes(tmp_path / "train", 45, seed=0)
    test = photo_scenes(tmp_path / "test", 15, seed=1)
    with (
        Emulator() as emu,
        CustomVisionTrainer(
            emu.endpoint, emu.training_key, prediction_resource_id=emu.prediction_resource_id
        ) as trainer,
    ):
        result = trainer.train_from_folder(train, project="photos", publish_name="photos", task="detection")
        assert result.project.domain_name == "General" and result.project.detection
        with CustomVisionBackend(
            emu.endpoint, emu.prediction_key, result.project.id, "photos", task="detection"
        ) as detector:
            metrics = evaluate_detection(detector, test)
    assert metrics.map50 >= 0.7, metrics.to_dict()
