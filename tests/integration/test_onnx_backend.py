"""OnnxBackend on real exports: the 2018 service exports in shared/fixtures, and the emulator's own exports.

The emulator's learner builds a zip laid out like the service's compact-classifier export; run locally,
it must reproduce the learner's own probabilities whatever form the user hands over (zip, folder, bare
``model.onnx`` + ``labels.txt``).
"""

from __future__ import annotations

import io
import shutil
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from azvision import ConfigurationError, InvalidImageError, OnnxBackend, Prediction
from azvision._preprocess import COMPACT_CLASSIFIER
from azvision.emulator._features import get_feature_extractor
from azvision.emulator._head import LinearHead, train_head
from azvision.emulator._onnx_export import build_export_zip
from tests.conftest import REAL_EXPORTS
from tests.integration.conftest import SHAPES, ShapeDataset

real_exports = pytest.mark.needs_shared("fixtures/real-custom-vision-exports")
ITERATION_ID = "7d2c6a8e-1f0b-4c55-9a7e-2f4b8c1d0e9a"


# --- real service exports ----------------------------------------------------------------------


@real_exports
@pytest.mark.parametrize(
    ("model", "image", "expected"),
    [
        ("hemlock-japanese-cherry", "hemlock-japanese-cherry/japanese_cherry_6.jpg", "JapaneseCherry"),
        ("hemlock-japanese-cherry", "hemlock-japanese-cherry/hemlock_test_image.jpg", "hemlock"),
        ("cat-or-dog", "cat-or-dog/kitten_224.png", "cat"),
        ("cat-or-dog", "hemlock-japanese-cherry/hemlock_test_image.jpg", "Negative"),
    ],
)
def test_real_service_exports_give_their_readme_labels(model: str, image: str, expected: str) -> None:
    with OnnxBackend(REAL_EXPORTS / model / "model.onnx") as clf:
        prediction = clf.classify(REAL_EXPORTS / image)
    assert prediction.label == expected
    assert len(prediction.labels) == (2 if model.startswith("hemlock") else 3)  # every label, by name
    assert sum(lab.confidence for lab in prediction.labels) == pytest.approx(1.0, abs=1e-4)
    assert prediction.source == str(REAL_EXPORTS / image)


@real_exports
def test_real_legacy_export_batches_agree_with_single_images() -> None:
    images = [
        REAL_EXPORTS / "hemlock-japanese-cherry" / "hemlock_test_image.jpg",
        REAL_EXPORTS / "hemlock-japanese-cherry" / "missing.jpg",
        REAL_EXPORTS / "hemlock-japanese-cherry" / "japanese_cherry_6.jpg",
    ]
    with OnnxBackend(REAL_EXPORTS / "hemlock-japanese-cherry" / "model.onnx", batch_size=8) as clf:
        assert (clf.family, clf.labels) == ("zipmap", ("JapaneseCherry", "hemlock"))
        batch = list(clf.classify_many(images))
        singles = [clf.classify(images[0]), clf.classify(images[2])]
    assert isinstance(batch[1], InvalidImageError)
    for outcome, single in zip([batch[0], batch[2]], singles, strict=True):
        assert isinstance(outcome, Prediction)
        assert outcome.labels == single.labels


@real_exports
def test_the_2018_onnx_1_0_export_is_refused_with_a_re_export_hint() -> None:
    with pytest.raises(ConfigurationError, match=r"too old for onnxruntime.*export the iteration again"):
        OnnxBackend(REAL_EXPORTS / "onnx10-rejected" / "model.onnx")


@real_exports
def test_a_real_export_with_a_wrong_labels_file_is_refused(tmp_path: Path) -> None:
    shutil.copy(REAL_EXPORTS / "cat-or-dog" / "model.onnx", tmp_path / "model.onnx")
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    with pytest.raises(
        ConfigurationError, match=r"names \['cat', 'dog'\], the model \['Negative', 'cat', 'dog'\]"
    ):
        OnnxBackend(tmp_path)


# --- exports built by the emulator's learner ---------------------------------------------------


@pytest.fixture(scope="module")
def trained(shape_dataset: ShapeDataset) -> tuple[LinearHead, bytes]:
    images = [image for kind in SHAPES for image in shape_dataset.train[kind]]
    targets = [[index] for index, kind in enumerate(SHAPES) for _ in shape_dataset.train[kind]]
    head = train_head(get_feature_extractor().features(images), targets, list(SHAPES))
    export = build_export_zip(
        head, iteration_id=ITERATION_ID, exported_at=datetime(2024, 2, 19, tzinfo=timezone.utc)
    )
    return head, export


@pytest.fixture
def export_zip(trained: tuple[LinearHead, bytes], tmp_path: Path) -> Path:
    path = tmp_path / "shapes-export.zip"
    path.write_bytes(trained[1])
    return path


def held_out(shape_dataset: ShapeDataset) -> list[bytes]:
    return [image for kind in SHAPES for image in shape_dataset.test[kind]]


@pytest.mark.parametrize("layout", ["zip", "folder", "bare model + labels.txt"])
def test_emulator_export_reproduces_the_learners_probabilities(
    layout: str,
    trained: tuple[LinearHead, bytes],
    export_zip: Path,
    shape_dataset: ShapeDataset,
    tmp_path: Path,
) -> None:
    head, _ = trained
    if layout == "zip":
        model_path, expected_model = export_zip, ITERATION_ID
    else:
        folder = tmp_path / "unzipped"
        zipfile.ZipFile(export_zip).extractall(folder)
        model_path, expected_model = folder, ITERATION_ID
        if layout.startswith("bare"):
            (folder / "cvexport.manifest").unlink()
            (folder / "metadata_properties.json").unlink()
            model_path, expected_model = folder / "model.onnx", "model.onnx"
    images = held_out(shape_dataset)
    expected = head.predict_proba(get_feature_extractor().features(images))
    with OnnxBackend(model_path) as clf:
        assert clf.labels == SHAPES
        assert clf.spec == COMPACT_CLASSIFIER
        predictions = [clf.classify(image) for image in images]
    for prediction, row in zip(predictions, expected, strict=True):
        assert prediction.model == expected_model
        got = {lab.name: lab.confidence for lab in prediction.labels}
        np.testing.assert_allclose([got[name] for name in SHAPES], row, atol=1e-4)
    truth = [kind for kind in SHAPES for _ in shape_dataset.test[kind]]
    assert sum(p.label == kind for p, kind in zip(predictions, truth, strict=True)) >= len(truth) - 2


def test_emulator_export_batches_equal_single_images_with_failures_in_place(
    export_zip: Path, shape_dataset: ShapeDataset, tmp_path: Path
) -> None:
    images: list[object] = list(held_out(shape_dataset))
    images.insert(3, tmp_path / "nope.png")
    images.insert(9, b"GIF89a-but-not-really")
    with OnnxBackend(export_zip, batch_size=4) as clf:
        batch = list(clf.classify_many(images))  # type: ignore[arg-type]
        singles = [clf.classify(image) for image in held_out(shape_dataset)]
    assert len(batch) == len(images)
    assert isinstance(batch[3], InvalidImageError) and batch[3].source == str(tmp_path / "nope.png")
    assert isinstance(batch[9], InvalidImageError)
    predictions = [outcome for outcome in batch if isinstance(outcome, Prediction)]
    for batched, single in zip(predictions, singles, strict=True):
        assert [lab.name for lab in batched.labels] == [lab.name for lab in single.labels]
        np.testing.assert_allclose(
            [lab.confidence for lab in batched.labels], [lab.confidence for lab in single.labels], atol=1e-5
        )


def test_emulator_export_without_its_labels_file_is_a_clear_error(export_zip: Path, tmp_path: Path) -> None:
    archive = zipfile.ZipFile(export_zip)
    (tmp_path / "model.onnx").write_bytes(archive.read("model.onnx"))
    with pytest.raises(ConfigurationError, match=r"no labels\.txt.*labels_path"):
        OnnxBackend(tmp_path / "model.onnx")
    (tmp_path / "labels.txt").write_text("circle\nstripes\nchecker\nextra")
    with pytest.raises(ConfigurationError, match="3 probabilities but there are 4 labels"):
        OnnxBackend(tmp_path / "model.onnx")


def test_export_zip_with_the_files_in_a_subfolder_is_accepted(export_zip: Path, tmp_path: Path) -> None:
    nested = io.BytesIO()
    with zipfile.ZipFile(export_zip) as source, zipfile.ZipFile(nested, "w") as target:
        for name in source.namelist():
            target.writestr(f"shapes-export/{name}", source.read(name))
    (tmp_path / "nested.zip").write_bytes(nested.getvalue())
    with OnnxBackend(tmp_path / "nested.zip") as clf:
        assert clf.model_name == ITERATION_ID and clf.labels == SHAPES
