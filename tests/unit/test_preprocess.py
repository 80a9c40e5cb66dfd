"""The shared Custom Vision preprocessing: tensors per export family, and the real 2018 exports."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from azvision._preprocess import (
    COMPACT_CLASSIFIER,
    PreprocessSpec,
    spec_from_model_metadata,
    to_batch,
    to_tensor,
    upright_rgb,
)
from tests.conftest import REAL_EXPORTS

MODERN_COMPACT = {
    "Image.BitmapPixelFormat": "Bgr8",
    "Image.ColorSpaceGamma": "SRGB",
    "Image.NominalPixelRange": "NominalRange_0_255",
}


def stripes(size: tuple[int, int], colours: list[tuple[int, int, int]]) -> Image.Image:
    """Vertical stripes of equal width, left to right."""
    image = Image.new("RGB", size)
    width = size[0] // len(colours)
    for index, colour in enumerate(colours):
        image.paste(colour, (index * width, 0, (index + 1) * width, size[1]))
    return image


# --- tensors -----------------------------------------------------------------------------------


def test_compact_tensor_is_bgr_0_255_chw_float32() -> None:
    tensor = to_tensor(Image.new("RGB", (300, 200), (250, 100, 5)), COMPACT_CLASSIFIER)
    assert tensor.shape == (3, 224, 224)
    assert tensor.dtype == np.float32
    assert tensor[:, 10, 10].tolist() == [5.0, 100.0, 250.0]


def test_rgb_order_and_value_ranges() -> None:
    image = Image.new("RGB", (64, 64), (255, 0, 51))
    rgb = PreprocessSpec(size=(32, 32), channel_order="RGB")
    assert to_tensor(image, rgb)[:, 0, 0].tolist() == [255.0, 0.0, 51.0]
    unit = to_tensor(image, replace(rgb, value_range=(0.0, 1.0)))[:, 0, 0]
    np.testing.assert_allclose(unit, [1.0, 0.0, 0.2], atol=1e-6)
    symmetric = to_tensor(image, replace(rgb, value_range=(-1.0, 1.0)))[:, 0, 0]
    np.testing.assert_allclose(symmetric, [1.0, -1.0, -0.6], atol=1e-6)


def test_shorter_side_crop_keeps_only_the_centre_square() -> None:
    image = stripes((600, 200), [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    tensor = to_tensor(image, COMPACT_CLASSIFIER)  # BGR: green is channel 1
    assert np.all(tensor[1] == 255.0)
    assert np.all(tensor[[0, 2]] == 0.0)


def test_stretch_keeps_the_whole_image() -> None:
    image = stripes((600, 200), [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    tensor = to_tensor(image, replace(COMPACT_CLASSIFIER, resize="stretch"))
    assert tensor[:, 100, 5].tolist() == [0.0, 0.0, 255.0]  # red on the left, in BGR
    assert tensor[:, 100, 218].tolist() == [255.0, 0.0, 0.0]  # blue on the right


def test_final_crop_drops_the_border_of_the_256_square() -> None:
    framed = Image.new("RGB", (256, 256), (255, 255, 255))
    framed.paste((0, 0, 0), (16, 16, 240, 240))  # a 16-pixel white frame around a black centre
    assert to_tensor(framed, COMPACT_CLASSIFIER).max() == 0.0
    legacy = replace(COMPACT_CLASSIFIER, size=(227, 227))  # 227 reaches 14 px into the frame
    assert to_tensor(framed, legacy).max() == 255.0


def test_images_larger_than_1600_are_first_scaled_down() -> None:
    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 256, (1700, 3400, 3), dtype=np.uint8))
    capped = big.resize((1600, 800), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(to_tensor(big, COMPACT_CLASSIFIER), to_tensor(capped, COMPACT_CLASSIFIER))
    uncapped = to_tensor(big, replace(COMPACT_CLASSIFIER, max_side=None))
    assert not np.array_equal(uncapped, to_tensor(capped, COMPACT_CLASSIFIER))


def test_float16_spec_gives_float16() -> None:
    tensor = to_tensor(Image.new("RGB", (10, 10), (1, 2, 3)), replace(COMPACT_CLASSIFIER, dtype="float16"))
    assert tensor.dtype == np.float16


def test_to_tensor_converts_other_modes_and_to_batch_stacks() -> None:
    grey = Image.new("L", (50, 40), 77)
    batch = to_batch([grey, Image.new("RGB", (40, 50), (1, 2, 3))], COMPACT_CLASSIFIER)
    assert batch.shape == (2, 3, 224, 224)
    assert batch[0, :, 0, 0].tolist() == [77.0, 77.0, 77.0]
    assert batch[1, :, 0, 0].tolist() == [3.0, 2.0, 1.0]
    assert to_batch([], COMPACT_CLASSIFIER).shape == (0, 3, 224, 224)


def test_upright_rgb_applies_the_exif_orientation() -> None:
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 20, 20))  # blue on the left half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buffer = io.BytesIO()
    image.save(buffer, "PNG", exif=exif)
    upright = upright_rgb(Image.open(io.BytesIO(buffer.getvalue())))
    assert upright.size == (20, 40)
    assert upright.getpixel((10, 5)) == (0, 0, 255)  # the left half is now on top
    assert upright_rgb(Image.new("RGBA", (3, 3), (9, 8, 7, 0))).getpixel((1, 1)) == (9, 8, 7)


@pytest.mark.parametrize(
    "spec",
    [
        {"size": (0, 10)},
        {"size": (10, 10), "channel_order": "GBR"},
        {"size": (10, 10), "resize": "fit"},
        {"size": (10, 10), "dtype": "float64"},
        {"size": (300, 300), "resize_side": 256},
        {"size": (10, 10), "max_side": 0},
    ],
)
def test_invalid_specs_are_rejected(spec: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PreprocessSpec(**spec)  # type: ignore[arg-type]


# --- spec from a model's metadata --------------------------------------------------------------


def test_modern_compact_classifier_spec_is_the_emulators_export_spec() -> None:
    assert spec_from_model_metadata(MODERN_COMPACT, ["None", 3, 224, 224]) == COMPACT_CLASSIFIER


def test_legacy_compact_classifier_without_pixel_range_means_0_255() -> None:
    spec = spec_from_model_metadata({"Image.BitmapPixelFormat": "Bgr8"}, ["None", 3, 227, 227])
    assert (spec.size, spec.channel_order, spec.value_range) == ((227, 227), "BGR", (0.0, 255.0))
    assert (spec.resize, spec.square_side) == ("shorter_side_crop", 256)


def test_no_metadata_defaults_follow_the_input_name() -> None:
    legacy = spec_from_model_metadata({}, [1, 3, 227, 227], "data")
    assert legacy.channel_order == "BGR"
    ssd = spec_from_model_metadata({}, [1, 3, 320, 320], "image_tensor")
    assert (ssd.channel_order, ssd.resize, ssd.size) == ("RGB", "stretch", (320, 320))


def test_s1_classifier_uses_its_own_range_and_a_300_square() -> None:
    spec = spec_from_model_metadata(
        {"Image.BitmapPixelFormat": "Rgb8", "Image.NominalPixelRange": "Normalized_0_1"},
        [1, 3, 300, 300],
        input_type="tensor(float16)",
    )
    assert (spec.channel_order, spec.value_range, spec.dtype) == ("RGB", (0.0, 1.0), "float16")
    assert spec.square_side == 300


def test_detectors_stretch() -> None:
    spec = spec_from_model_metadata(MODERN_COMPACT, [-1, 3, 416, 416], detector=True)
    assert (spec.resize, spec.channel_order, spec.size) == ("stretch", "BGR", (416, 416))


def test_export_metadata_gives_crop_hints_but_never_the_pixel_format() -> None:
    json_props = {
        "Image.BitmapPixelFormat": "Rgb8",  # what every real metadata_properties.json says
        "Image.NominalPixelRange": "Normalized_0_1",
        "CustomVision.Preprocess.CropMethod": "NoCrop",
    }
    spec = spec_from_model_metadata(MODERN_COMPACT, [1, 3, 224, 224], export_metadata=json_props)
    assert (spec.channel_order, spec.value_range, spec.resize) == ("BGR", (0.0, 255.0), "stretch")
    full_square = {"CustomVision.Preprocess.CropMethod": "FullImageShorterSide"}
    spec = spec_from_model_metadata(MODERN_COMPACT, [1, 3, 224, 224], export_metadata=full_square)
    assert spec.square_side == 224


def test_symbolic_height_and_width_fall_back_to_the_export_hints() -> None:
    yolo = {
        "CustomVision.Preprocess.ResizeMethod": "ByPixelCountAlign32",
        "CustomVision.Preprocess.TargetHeight": "512",
        "CustomVision.Preprocess.TargetWidth": "512",
    }
    spec = spec_from_model_metadata({}, [1, 3, "h", "w"], export_metadata=yolo, detector=True)
    assert spec.size == (512, 512)
    with pytest.raises(ValueError, match="no fixed height and width"):
        spec_from_model_metadata({}, [1, 3, "h", "w"])


@pytest.mark.parametrize(
    ("metadata", "shape", "input_type", "message"),
    [
        ({"Image.BitmapPixelFormat": "Gray8"}, [1, 3, 224, 224], "tensor(float)", "Gray8"),
        ({"Image.NominalPixelRange": "Weird"}, [1, 3, 224, 224], "tensor(float)", "Weird"),
        ({}, [1, 1, 224, 224], "tensor(float)", "3-channel"),
        ({}, [1, 224, 224], "tensor(float)", "NCHW"),
        ({}, [1, 3, 224, 224], "tensor(uint8)", "uint8"),
    ],
)
def test_unsupported_models_are_named(
    metadata: dict[str, str], shape: list[int], input_type: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        spec_from_model_metadata(metadata, shape, input_type=input_type)


# --- the real 2018 service exports -------------------------------------------------------------

real_exports = pytest.mark.needs_shared("fixtures/real-custom-vision-exports")


def classify_with_real_export(model: str, image: str, spec_change: dict[str, object] | None = None) -> str:
    import onnx
    import onnxruntime as ort

    path = REAL_EXPORTS / model / "model.onnx"
    metadata = {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    spec = spec_from_model_metadata(
        metadata, model_input.shape, model_input.name, input_type=model_input.type
    )
    if spec_change:
        spec = replace(spec, **spec_change)  # type: ignore[arg-type]
    tensor = to_tensor(upright_rgb(Image.open(REAL_EXPORTS / image)), spec)
    label, scores = session.run(["classLabel", "loss"], {model_input.name: tensor[None]})
    assert max(scores[0], key=scores[0].get) == label[0][0]
    return str(label[0][0])


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
def test_real_exports_give_their_readme_labels(model: str, image: str, expected: str) -> None:
    assert classify_with_real_export(model, image) == expected


@real_exports
def test_real_exports_notice_the_wrong_pixel_range() -> None:
    # What the official sample does when metadata lacks a range (divide by 255): wrong answers.
    wrong = {"value_range": (0.0, 1.0)}
    assert classify_with_real_export("cat-or-dog", "cat-or-dog/kitten_224.png", wrong) != "cat"
    cherry = "hemlock-japanese-cherry/japanese_cherry_6.jpg"
    assert classify_with_real_export("hemlock-japanese-cherry", cherry, wrong) != "JapaneseCherry"


@real_exports
def test_onnx_1_0_export_does_not_load_in_onnxruntime() -> None:
    import onnxruntime as ort

    with pytest.raises(Exception, match="INVALID_GRAPH"):
        ort.InferenceSession(str(REAL_EXPORTS / "onnx10-rejected" / "model.onnx"))
