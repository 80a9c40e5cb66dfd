"""The emulator's learner: real features, honest held-out accuracy, and exports that agree with it."""

from __future__ import annotations

import hashlib
import io
import json
import random
import threading
import zipfile
from datetime import datetime, timedelta, timezone

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from azvision._preprocess import spec_from_model_metadata, to_batch, upright_rgb
from azvision.emulator._cross_validation import cross_validate
from azvision.emulator._features import FEATURE_DIM, FeatureExtractor, get_feature_extractor
from azvision.emulator._head import LinearHead, train_head
from azvision.emulator._onnx_export import build_export_zip
from azvision.emulator._preprocessing import INPUT_SIDE, SQUARE_SIDE

SHAPES = ("circle", "square", "triangle")
EXPORTED_AT = datetime(2024, 2, 19, 0, 38, 41, 880282, tzinfo=timezone.utc)
ITERATION_ID = "3f1c3c8e-7c2a-4c55-9a7e-2f4b8c1d0e9a"
#: train features, train labels, test images, test features, test labels
Shapes = tuple[np.ndarray, list[int], list[bytes], np.ndarray, list[int]]


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def shape_image(kind: str, rng: random.Random) -> Image.Image:
    """A filled shape of random colour, size and place on a random background with clutter lines."""

    def colour() -> tuple[int, int, int]:
        return (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))

    width, height = rng.randint(160, 400), rng.randint(160, 400)
    background = colour()
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        ends = [(rng.randint(0, width), rng.randint(0, height)) for _ in range(2)]
        draw.line(ends, fill=colour(), width=2)
    fill = colour()
    while sum(abs(a - b) for a, b in zip(fill, background, strict=True)) < 150:
        fill = colour()
    side = rng.randint(int(min(width, height) * 0.35), int(min(width, height) * 0.7))
    cx, cy = rng.randint(side // 2, width - side // 2), rng.randint(side // 2, height - side // 2)
    box = (cx - side // 2, cy - side // 2, cx + side // 2, cy + side // 2)
    if kind == "circle":
        draw.ellipse(box, fill=fill)
    elif kind == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(cx, box[1]), (box[0], box[3]), (box[2], box[3])], fill=fill)
    return image


def shape_dataset(
    seed: int, train: int = 15, test: int = 10
) -> tuple[list[bytes], list[int], list[bytes], list[int]]:
    rng = random.Random(seed)
    train_x: list[bytes] = []
    train_y: list[int] = []
    test_x: list[bytes] = []
    test_y: list[int] = []
    for label, kind in enumerate(SHAPES):
        for index in range(train + test):
            xs, ys = (train_x, train_y) if index < train else (test_x, test_y)
            xs.append(encode(shape_image(kind, rng)))
            ys.append(label)
    return train_x, train_y, test_x, test_y


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return get_feature_extractor()


@pytest.fixture(scope="module")
def shapes(extractor: FeatureExtractor) -> Shapes:
    train_x, train_y, test_x, test_y = shape_dataset(seed=0)
    return extractor.features(train_x), train_y, test_x, extractor.features(test_x), test_y


def one_each(labels: list[int]) -> list[list[int]]:
    return [[label] for label in labels]


# --- features ----------------------------------------------------------------------------------


def test_features_are_512_floats_and_batch_independent(extractor: FeatureExtractor) -> None:
    rng = random.Random(1)
    images = [encode(shape_image(kind, rng), "JPEG") for kind in SHAPES * 7]  # 21: crosses a batch
    together = extractor.features(images)
    assert together.shape == (21, FEATURE_DIM)
    assert together.dtype == np.float32
    alone = np.vstack([extractor.features([image]) for image in images[-3:]])
    np.testing.assert_allclose(together[-3:], alone, rtol=1e-5, atol=1e-5)
    assert not np.allclose(together[0], together[1])


def test_decoded_images_give_the_same_features_as_their_bytes(extractor: FeatureExtractor) -> None:
    images = [shape_image(kind, random.Random(2)) for kind in SHAPES]
    np.testing.assert_array_equal(
        extractor.image_features(images), extractor.features([encode(image) for image in images])
    )


def test_undecodable_bytes_name_the_image(extractor: FeatureExtractor) -> None:
    good = encode(Image.new("RGB", (30, 30), (1, 2, 3)))
    with pytest.raises(ValueError, match="image 1 "):
        extractor.features([good, b"certainly not an image"])


def test_exif_rotated_photo_has_the_features_of_the_upright_one(extractor: FeatureExtractor) -> None:
    upright = shape_image("triangle", random.Random(3))
    exif = Image.Exif()
    exif[0x0112] = 8  # stored turned, "rotate 270° clockwise to display"
    stored = upright.transpose(Image.Transpose.ROTATE_270)
    buffer = io.BytesIO()
    stored.save(buffer, "PNG", exif=exif)
    rotated_features, upright_features, stored_features = extractor.features(
        [buffer.getvalue(), encode(upright), encode(stored)]
    )
    np.testing.assert_allclose(rotated_features, upright_features, rtol=1e-5, atol=1e-5)
    assert not np.allclose(rotated_features, stored_features, atol=1e-2)


def test_the_extractor_is_one_shared_instance_across_threads() -> None:
    seen: list[FeatureExtractor] = []
    threads = [threading.Thread(target=lambda: seen.append(get_feature_extractor())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(seen) == 8
    assert all(instance is seen[0] for instance in seen)


# --- the head ----------------------------------------------------------------------------------


def test_generated_shapes_are_learned_from_15_images_a_class(extractor: FeatureExtractor) -> None:
    correct = total = 0
    for seed in range(4):
        train_x, train_y, test_x, test_y = shape_dataset(seed)
        head = train_head(extractor.features(train_x), one_each(train_y), SHAPES)
        predicted = head.predict_proba(extractor.features(test_x)).argmax(axis=1)
        correct += int((predicted == np.array(test_y)).sum())
        total += len(test_y)
    assert correct / total >= 0.9


def test_multiclass_probabilities_sum_to_one_and_are_confident(shapes: Shapes) -> None:
    train_features, train_y, _, test_features, _ = shapes
    probabilities = train_head(train_features, one_each(train_y), SHAPES).predict_proba(test_features)
    assert probabilities.shape == (len(test_features), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert float(np.median(probabilities.max(axis=1))) > 0.8


def test_multilabel_head_scores_each_tag_independently(shapes: Shapes) -> None:
    train_features, train_y, _, test_features, test_y = shapes
    # "round" on circles, "pointy" on triangles, and squares carry no tag at all.
    targets = [[0] if label == 0 else [1] if label == 2 else [] for label in train_y]
    head = train_head(train_features, targets, ["round", "pointy"], multilabel=True)
    probabilities = head.predict_proba(test_features)
    truth = np.array(test_y)
    assert ((probabilities[:, 0] >= 0.5) == (truth == 0)).mean() >= 0.9
    assert ((probabilities[:, 1] >= 0.5) == (truth == 2)).mean() >= 0.9
    assert (probabilities[truth == 1].max(axis=1) < 0.5).mean() >= 0.8  # squares: neither tag


def test_training_is_deterministic(shapes: Shapes) -> None:
    train_features, train_y, *_ = shapes
    features = np.tile(train_features, (7, 1))  # 315 images
    first = train_head(features, one_each(train_y * 7), SHAPES)
    second = train_head(features, one_each(train_y * 7), SHAPES, seed=99)
    np.testing.assert_array_equal(first.weights, second.weights)
    np.testing.assert_array_equal(first.bias, second.bias)


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([[0, 1]] + [[0]] * 44, "exactly one"),
        ([[3]] + [[0]] * 44, "outside"),
        ([[0]] * 44, "target lists"),
    ],
)
def test_bad_targets_are_rejected(shapes: Shapes, targets: list[list[int]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        train_head(shapes[0], targets, SHAPES)


def test_bad_features_and_labels_are_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        train_head(np.zeros((3, 10)), [[0]] * 3, ["a"])
    with pytest.raises(ValueError, match="unique"):
        train_head(np.zeros((2, FEATURE_DIM)), [[0], [1]], ["a", "a"])


def test_head_json_round_trip_is_exact(shapes: Shapes) -> None:
    train_features, train_y, _, test_features, _ = shapes
    head = train_head(train_features, one_each(train_y), SHAPES)
    restored = LinearHead.from_json(json.loads(json.dumps(head.to_json())))
    assert restored.labels == head.labels
    assert restored.multilabel is False
    np.testing.assert_array_equal(restored.predict_proba(test_features), head.predict_proba(test_features))
    broken = head.to_json() | {"weights": head.to_json()["bias"]}
    with pytest.raises(ValueError, match="expected shape"):
        LinearHead.from_json(broken)


# --- cross-validation --------------------------------------------------------------------------


def test_cross_validation_reports_high_scores_for_learnable_tags(shapes: Shapes) -> None:
    train_features, train_y, *_ = shapes
    performance = cross_validate(train_features, one_each(train_y), SHAPES)
    assert set(performance.per_tag) == set(SHAPES)
    assert performance.precision >= 0.8
    assert performance.recall >= 0.8
    assert performance.average_precision >= 0.9
    for score in performance.per_tag.values():
        assert 0.0 <= score.precision <= 1.0
        assert 0.0 <= score.recall <= 1.0
        assert score.precision_std >= 0.0
        assert score.recall_std >= 0.0


def test_cross_validation_is_honest_about_unlearnable_tags(shapes: Shapes) -> None:
    train_features, train_y, *_ = shapes
    shuffled = list(np.random.default_rng(5).permutation(train_y))
    # A head on 512 features fits 45 random labels perfectly; held-out folds must not be fooled.
    assert (
        train_head(train_features, one_each(shuffled), SHAPES).predict_proba(train_features).argmax(1)
        == shuffled
    ).all()
    performance = cross_validate(train_features, one_each(shuffled), SHAPES)
    assert performance.average_precision < 0.7
    assert performance.recall < 0.7


def test_cross_validation_with_few_images_and_multilabel(shapes: Shapes) -> None:
    train_features, train_y, *_ = shapes
    rows = [0, 1, 15, 16, 30, 31, 32]  # two images on two tags, three on the third
    few = cross_validate(train_features[rows], one_each([train_y[r] for r in rows]), SHAPES, seed=3)
    assert set(few.per_tag) == set(SHAPES)
    multilabel_targets = [[0] if label == 0 else [1, 2] if label == 1 else [] for label in train_y]
    performance = cross_validate(
        train_features, multilabel_targets, ["round", "cornered", "square"], multilabel=True
    )
    assert performance.per_tag["round"].recall >= 0.8
    with pytest.raises(ValueError, match="at least 2"):
        cross_validate(train_features[:1], [[0]], SHAPES)


# --- real photos (scikit-image ships a few) -----------------------------------------------------


def augmented_crops(
    image: Image.Image, count: int, rng: random.Random, region: tuple[float, float, float, float]
) -> list[bytes]:
    width, height = image.size
    left, top, right, bottom = (
        int(f * s) for f, s in zip(region, (width, height, width, height), strict=True)
    )
    crops = []
    for _ in range(count):
        side = int(min(right - left, bottom - top) * rng.uniform(0.4, 0.8))
        x, y = rng.randint(left, right - side), rng.randint(top, bottom - side)
        crop = image.crop((x, y, x + side, y + side))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crop = ImageEnhance.Brightness(crop).enhance(rng.uniform(0.8, 1.2))
        crops.append(encode(crop.resize((rng.randint(200, 320),) * 2), "JPEG"))
    return crops


def held_out_accuracy(
    extractor: FeatureExtractor,
    photos: dict[str, Image.Image],
    train_region: tuple[float, float, float, float],
    test_region: tuple[float, float, float, float],
) -> float:
    rng = random.Random(0)
    train_x: list[bytes] = []
    test_x: list[bytes] = []
    for photo in photos.values():
        train_x += augmented_crops(photo, 15, rng, train_region)
        test_x += augmented_crops(photo, 10, rng, test_region)
    train_y = [label for label in range(len(photos)) for _ in range(15)]
    test_y = np.repeat(np.arange(len(photos)), 10)
    head = train_head(extractor.features(train_x), one_each(train_y), list(photos))
    return float((head.predict_proba(extractor.features(test_x)).argmax(axis=1) == test_y).mean())


def test_photo_crops_are_told_apart(extractor: FeatureExtractor) -> None:
    data = pytest.importorskip("skimage.data")
    photos = {
        name: Image.fromarray(getattr(data, name)()) for name in ("astronaut", "chelsea", "coffee", "rocket")
    }
    assert held_out_accuracy(extractor, photos, (0, 0, 1, 1), (0, 0, 1, 1)) >= 0.9


def test_textures_generalise_to_unseen_halves(extractor: FeatureExtractor) -> None:
    data = pytest.importorskip("skimage.data")
    textures = {
        name: Image.fromarray(getattr(data, name)()).convert("RGB") for name in ("brick", "grass", "gravel")
    }
    assert held_out_accuracy(extractor, textures, (0, 0, 0.5, 1), (0.5, 0, 1, 1)) >= 0.9


def test_faces_and_non_faces_from_15_examples_each(extractor: FeatureExtractor) -> None:
    data = pytest.importorskip("skimage.data")
    patches = data.lfw_subset()  # 100 faces, then 100 non-faces, 25×25 grey
    order = np.random.default_rng(0).permutation(100)
    train_rows = [*order[:15], *(order[:15] + 100)]
    test_rows = [*order[15:], *(order[15:] + 100)]

    def features(rows: list[int]) -> np.ndarray:
        images = [
            encode(Image.fromarray((patches[row] * 255).astype(np.uint8)).convert("RGB")) for row in rows
        ]
        return extractor.features(images)

    head = train_head(
        features(train_rows), one_each([row // 100 for row in train_rows]), ["face", "not face"]
    )
    predicted = head.predict_proba(features(test_rows)).argmax(axis=1)
    assert (predicted == np.array([row // 100 for row in test_rows])).mean() >= 0.9


# --- export ------------------------------------------------------------------------------------


@pytest.mark.parametrize("multilabel", [False, True])
def test_exported_model_reproduces_the_emulators_predictions(shapes: Shapes, multilabel: bool) -> None:
    train_features, train_y, test_images, test_features, _ = shapes
    targets = one_each(train_y) if not multilabel else [[label, 2] if label < 2 else [2] for label in train_y]
    head = train_head(train_features, targets, SHAPES, multilabel=multilabel)
    archive = zipfile.ZipFile(
        io.BytesIO(build_export_zip(head, iteration_id=ITERATION_ID, exported_at=EXPORTED_AT))
    )
    model_bytes = archive.read("model.onnx")
    model = onnx.load_from_string(model_bytes)
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    spec = spec_from_model_metadata(
        {prop.key: prop.value for prop in model.metadata_props},
        model_input.shape,
        model_input.name,
        input_type=model_input.type,
        export_metadata=json.loads(archive.read("metadata_properties.json")),
    )
    # The SDK reads back from the export the pipeline the emulator's own preprocessing runs.
    assert (spec.size, spec.channel_order, spec.square_side) == ((INPUT_SIDE, INPUT_SIDE), "BGR", SQUARE_SIDE)
    batch = to_batch([upright_rgb(Image.open(io.BytesIO(data))) for data in test_images], spec)
    (exported,) = session.run(["model_output"], {model_input.name: batch})  # the whole batch at once
    np.testing.assert_allclose(exported, head.predict_proba(test_features), atol=1e-4, rtol=0)


def test_export_model_has_the_compact_classifier_interface(shapes: Shapes) -> None:
    head = train_head(shapes[0], one_each(shapes[1]), SHAPES)
    archive = zipfile.ZipFile(
        io.BytesIO(build_export_zip(head, iteration_id=ITERATION_ID, exported_at=EXPORTED_AT))
    )
    model = onnx.load_from_string(archive.read("model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert [(opset.domain, opset.version) for opset in model.opset_import] == [("", 7)]
    assert {prop.key: prop.value for prop in model.metadata_props} == {
        "Image.BitmapPixelFormat": "Bgr8",
        "Image.ColorSpaceGamma": "SRGB",
        "Image.NominalPixelRange": "NominalRange_0_255",
    }
    session = ort.InferenceSession(archive.read("model.onnx"), providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    (model_output,) = session.get_outputs()
    assert (model_input.name, model_input.type, model_input.shape[1:]) == (
        "data",
        "tensor(float)",
        [3, 224, 224],
    )
    assert isinstance(model_input.shape[0], str)  # symbolic batch
    assert (model_output.name, model_output.shape[1:]) == ("model_output", [3])
    assert [node.op_type for node in model.graph.node[-2:]] == ["Gemm", "Softmax"]


def test_export_zip_side_files_follow_the_service_byte_conventions(shapes: Shapes) -> None:
    head = train_head(shapes[0], one_each(shapes[1]), ["circle", "square", "triangle ▲"])
    blob = build_export_zip(head, iteration_id=ITERATION_ID, exported_at=EXPORTED_AT)
    archive = zipfile.ZipFile(io.BytesIO(blob))
    assert sorted(archive.namelist()) == [
        "LICENSE",
        "cvexport.manifest",
        "labels.txt",
        "metadata_properties.json",
        "model.onnx",
    ]

    manifest_bytes = archive.read("cvexport.manifest")
    assert manifest_bytes.startswith(b'{\r\n  "DomainType": "Classification",\r\n')
    assert b"\n" not in manifest_bytes.replace(b"\r\n", b"") and not manifest_bytes.endswith(b"\n")
    manifest = json.loads(manifest_bytes)
    assert list(manifest) == [
        "DomainType", "Platform", "Flavor", "ExporterVersion", "ExportedDate", "IterationId",
        "ModelFileName", "LabelFileName", "MetadataPropsFileName", "ModelFileSHA1", "SchemaVersion",
    ]  # fmt: skip
    assert manifest["Platform"] == "ONNX" and manifest["Flavor"] is None
    assert manifest["ExportedDate"] == "2024-02-19T00:38:41.880282Z"
    assert manifest["IterationId"] == ITERATION_ID
    assert manifest["ModelFileSHA1"] == hashlib.sha1(archive.read("model.onnx")).hexdigest()

    assert archive.read("labels.txt") == "circle\nsquare\ntriangle ▲".encode()

    metadata_bytes = archive.read("metadata_properties.json")
    assert metadata_bytes.startswith(b'{\n    "CustomVision.Metadata.AdditionalModelInfo": ""')
    assert b"\r" not in metadata_bytes and not metadata_bytes.endswith(b"\n")
    metadata = json.loads(metadata_bytes)
    assert list(metadata) == sorted(metadata) and len(metadata) == 20
    assert all(isinstance(value, str) for value in metadata.values())
    assert metadata["CustomVision.Postprocess.Method"] == "ClassificationMultiClass"
    assert metadata["CustomVision.Preprocess.CropWidth"] == "224"
    assert b"MIT License" in archive.read("LICENSE") and b"Microsoft" in archive.read("LICENSE")

    assert build_export_zip(head, iteration_id=ITERATION_ID, exported_at=EXPORTED_AT) == blob


def test_export_dates_are_written_like_dotnet_round_trip_utc(shapes: Shapes) -> None:
    head = train_head(shapes[0], one_each(shapes[1]), SHAPES)

    def exported_date(moment: datetime) -> str:
        archive = zipfile.ZipFile(
            io.BytesIO(build_export_zip(head, iteration_id=ITERATION_ID, exported_at=moment))
        )
        return str(json.loads(archive.read("cvexport.manifest"))["ExportedDate"])

    assert exported_date(datetime(2022, 12, 5, 20, 5, 55, 505000)) == "2022-12-05T20:05:55.505Z"
    assert exported_date(datetime(2022, 12, 5, 20, 5, 55)) == "2022-12-05T20:05:55Z"
    plus_two = timezone(timedelta(hours=2))
    assert exported_date(datetime(2022, 12, 5, 22, 5, 55, tzinfo=plus_two)) == "2022-12-05T20:05:55Z"


def test_multilabel_export_and_unsupported_exports(shapes: Shapes) -> None:
    head = train_head(shapes[0], [[0]] * 45, ["anything"], multilabel=True)
    archive = zipfile.ZipFile(
        io.BytesIO(build_export_zip(head, iteration_id=ITERATION_ID, exported_at=EXPORTED_AT))
    )
    metadata = json.loads(archive.read("metadata_properties.json"))
    assert metadata["CustomVision.Postprocess.Method"] == "ClassificationMultiLabel"
    assert onnx.load_from_string(archive.read("model.onnx")).graph.node[-1].op_type == "Sigmoid"
    with pytest.raises(ValueError, match="ObjectDetection"):
        build_export_zip(
            head, iteration_id=ITERATION_ID, exported_at=EXPORTED_AT, domain_type="ObjectDetection"
        )
    two_lines = LinearHead(("a\nb",), head.weights, head.bias, True)
    with pytest.raises(ValueError, match="line break"):
        build_export_zip(two_lines, iteration_id=ITERATION_ID, exported_at=EXPORTED_AT)
