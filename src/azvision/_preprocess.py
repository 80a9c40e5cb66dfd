"""Image → input tensor for each Custom Vision ONNX export family.

Shared by the emulator's learner and by `azvision.OnnxBackend`, so that the emulator's own
predictions and its exported model run locally see exactly the same pixels. Pure functions over
numpy and Pillow; nothing here imports onnxruntime.

The families (``shared/reference/custom-vision-export-format.md`` §0, §2, §6):

* compact classifiers (``data``, BGR 0-255, 224 or legacy 227): crop the largest centre square,
  resize it to 256×256 (bilinear), centre-crop the network size — the service's own pipeline;
* S1 classifiers (``data``, RGB, 300): centre square resized straight to the network size;
* detectors (compact YOLO ``data`` BGR, S1 SSD ``image_tensor`` RGB): plain stretch.

Example:
    >>> from PIL import Image
    >>> spec = spec_from_model_metadata({"Image.BitmapPixelFormat": "Bgr8"}, [None, 3, 227, 227])
    >>> to_tensor(Image.new("RGB", (640, 480), (255, 0, 0)), spec)[:, 0, 0].tolist()
    [0.0, 0.0, 255.0]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "COMPACT_CLASSIFIER",
    "ChannelOrder",
    "PreprocessSpec",
    "ResizeMethod",
    "spec_from_model_metadata",
    "to_batch",
    "to_tensor",
    "upright_rgb",
]

ChannelOrder = Literal["BGR", "RGB"]
ResizeMethod = Literal["shorter_side_crop", "stretch"]
TensorDtype = Literal["float32", "float16"]

#: The service scales anything larger down to this longest side before classifying (§2.3).
SERVICE_MAX_SIDE = 1600
#: Side of the centre square that compact classifiers crop their input from (§2.3).
SERVICE_SQUARE_SIDE = 256

_PIXEL_FORMATS: dict[str, ChannelOrder] = {"Bgr8": "BGR", "Rgb8": "RGB"}
_PIXEL_RANGES: dict[str, tuple[float, float]] = {
    "NominalRange_0_255": (0.0, 255.0),
    "Normalized_0_1": (0.0, 1.0),
    "Normalized_1_1": (-1.0, 1.0),
    "NominalRange_16_235": (16.0, 235.0),
}
_DTYPES: dict[str, TensorDtype] = {"tensor(float)": "float32", "tensor(float16)": "float16"}


@dataclass(frozen=True)
class PreprocessSpec:
    """How to turn an upright RGB image into one ``(3, H, W)`` input tensor.

    Attributes:
        size: ``(height, width)`` of the network input.
        channel_order: ``"BGR"`` (compact family) or ``"RGB"`` (S1 family).
        value_range: what pixel values 0 and 255 map to; ``(0, 255)`` leaves them as they are.
        resize: ``"shorter_side_crop"`` (largest centre square → ``resize_side`` square →
            centre crop of ``size``) or ``"stretch"`` (resize the whole image to ``size``).
        resize_side: side of the intermediate square for ``"shorter_side_crop"``; ``None``
            (resolved on construction) means ``max(256, height, width)``.
        dtype: ``"float32"`` or ``"float16"`` (the ``ONNXFloat16`` flavor).
        max_side: images whose longest side exceeds it are first scaled down to it, as the
            service does; ``None`` disables that step.

    Example:
        >>> PreprocessSpec(size=(300, 300), channel_order="RGB").square_side
        300
    """

    size: tuple[int, int]
    channel_order: ChannelOrder = "BGR"
    value_range: tuple[float, float] = (0.0, 255.0)
    resize: ResizeMethod = "shorter_side_crop"
    resize_side: int | None = None
    dtype: TensorDtype = "float32"
    max_side: int | None = SERVICE_MAX_SIDE

    def __post_init__(self) -> None:
        height, width = self.size
        if height <= 0 or width <= 0:
            raise ValueError(f"input size must be positive, got {self.size}")
        if self.channel_order not in ("BGR", "RGB"):
            raise ValueError(f"channel_order must be 'BGR' or 'RGB', got {self.channel_order!r}")
        if self.resize not in ("shorter_side_crop", "stretch"):
            raise ValueError(f"unknown resize method {self.resize!r}")
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be 'float32' or 'float16', got {self.dtype!r}")
        if self.resize_side is not None and self.resize_side < max(height, width):
            raise ValueError(f"resize_side {self.resize_side} is smaller than the input {self.size}")
        if self.max_side is not None and self.max_side <= 0:
            raise ValueError(f"max_side must be positive, got {self.max_side}")
        if self.resize_side is None:  # resolved here so that equal specs compare equal
            object.__setattr__(self, "resize_side", max(SERVICE_SQUARE_SIDE, height, width))

    @property
    def square_side(self) -> int:
        """Side of the intermediate centre square used by ``"shorter_side_crop"``."""
        assert self.resize_side is not None  # resolved in __post_init__
        return self.resize_side


#: The modern compact classifier the emulator exports: 224×224, BGR, 0-255, from a 256 square.
COMPACT_CLASSIFIER = PreprocessSpec(size=(224, 224))


def upright_rgb(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation and convert to 3-channel RGB (alpha is dropped).

    Example:
        >>> upright_rgb(Image.new("RGBA", (4, 2))).mode
        'RGB'
    """
    rotated = ImageOps.exif_transpose(image)
    return rotated if rotated.mode == "RGB" else rotated.convert("RGB")


def to_tensor(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """Turn an upright RGB image into the ``(3, H, W)`` tensor ``spec`` describes.

    Non-RGB images are converted to RGB; apply `upright_rgb` first for photos with an
    EXIF orientation.

    Example:
        >>> to_tensor(Image.new("RGB", (500, 300)), COMPACT_CLASSIFIER).shape
        (3, 224, 224)
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    height, width = spec.size
    if spec.resize == "stretch":
        pixels = np.asarray(rgb.resize((width, height), Image.Resampling.BILINEAR))
    else:
        pixels = _centre_square(_cap_longest_side(rgb, spec.max_side), spec.square_side)
        top = (spec.square_side - height) // 2
        left = (spec.square_side - width) // 2
        pixels = pixels[top : top + height, left : left + width]
    chw = pixels.transpose(2, 0, 1).astype(np.float32)
    if spec.channel_order == "BGR":
        chw = chw[::-1]
    low, high = spec.value_range
    if (low, high) != (0.0, 255.0):
        chw = chw * np.float32((high - low) / 255.0) + np.float32(low)
    return np.ascontiguousarray(chw, dtype=spec.dtype)


def to_batch(images: Iterable[Image.Image], spec: PreprocessSpec) -> np.ndarray:
    """Stack `to_tensor` of several images into one ``(n, 3, H, W)`` batch.

    Example:
        >>> to_batch([Image.new("RGB", (8, 8))] * 2, PreprocessSpec(size=(4, 4))).shape
        (2, 3, 4, 4)
    """
    tensors = [to_tensor(image, spec) for image in images]
    if not tensors:
        return np.zeros((0, 3, *spec.size), dtype=spec.dtype)
    return np.stack(tensors)


def spec_from_model_metadata(
    metadata_props: Mapping[str, str],
    input_shape: Sequence[int | str | None],
    input_name: str = "data",
    *,
    input_type: str = "tensor(float)",
    export_metadata: Mapping[str, str] | None = None,
    detector: bool = False,
) -> PreprocessSpec:
    """Work out the preprocessing an exported model expects.

    Args:
        metadata_props: the ONNX model's own ``metadata_props`` (the ``Image.*`` keys decide
            channel order and value range).
        input_shape: the NCHW input shape as onnxruntime reports it (symbolic dims allowed
            for the batch; height and width come from here when they are fixed).
        input_name: the input tensor's name; used when the model carries no ``Image.*`` keys
            (``image_tensor`` is the RGB S1 detector, everything else the BGR compact family).
        input_type: onnxruntime's type string, ``"tensor(float)"`` or ``"tensor(float16)"``.
        export_metadata: the export's ``metadata_properties.json`` if there is one. Only its
            ``CustomVision.Preprocess.*`` hints are used: its ``Image.*`` values are wrong in
            every real export (reference §2.2).
        detector: the model is an object detector (detectors stretch the whole image).

    Raises:
        ValueError: the model needs something this module does not produce (a pixel format
            other than BGR/RGB, a non-float input, not 3 channels, or an unknown input size).

    Example:
        >>> spec_from_model_metadata(
        ...     {"Image.BitmapPixelFormat": "Rgb8", "Image.NominalPixelRange": "Normalized_0_1"},
        ...     [1, 3, 300, 300],
        ... ).value_range
        (0.0, 1.0)
    """
    hints = export_metadata or {}
    if len(input_shape) != 4:
        raise ValueError(f"expected an NCHW image input, got shape {list(input_shape)}")
    channels = input_shape[1]
    if isinstance(channels, int) and channels != 3:
        raise ValueError(f"expected a 3-channel image input, got {channels} channels")
    dtype = _DTYPES.get(input_type)
    if dtype is None:
        raise ValueError(f"unsupported input type {input_type!r}; expected a float tensor")

    pixel_format = metadata_props.get("Image.BitmapPixelFormat")
    if pixel_format is None:
        channel_order: ChannelOrder = "RGB" if input_name == "image_tensor" else "BGR"
    elif pixel_format in _PIXEL_FORMATS:
        channel_order = _PIXEL_FORMATS[pixel_format]
    else:
        raise ValueError(f"unsupported Image.BitmapPixelFormat {pixel_format!r}")

    pixel_range = metadata_props.get("Image.NominalPixelRange", "NominalRange_0_255")
    if pixel_range not in _PIXEL_RANGES:
        raise ValueError(f"unsupported Image.NominalPixelRange {pixel_range!r}")

    size = _input_size(input_shape, hints)
    crop_method = hints.get("CustomVision.Preprocess.CropMethod")
    stretch = detector or input_name == "image_tensor" or crop_method == "NoCrop"
    resize_side: int | None = None
    if crop_method == "FullImageShorterSide":
        resize_side = max(size)
    elif crop_method == "OneCropCenter":
        target = _positive_int(hints.get("CustomVision.Preprocess.TargetWidth"))
        resize_side = target if target is not None and target >= max(size) else None
    return PreprocessSpec(
        size=size,
        channel_order=channel_order,
        value_range=_PIXEL_RANGES[pixel_range],
        resize="stretch" if stretch else "shorter_side_crop",
        resize_side=None if stretch else resize_side,
        dtype=dtype,
    )


def _input_size(shape: Sequence[int | str | None], hints: Mapping[str, str]) -> tuple[int, int]:
    height, width = shape[2], shape[3]
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        return height, width
    # A relaxed (symbolic) input: fall back to what the export says it was trained at.
    for prefix in ("Crop", "Target"):
        hint_h = _positive_int(hints.get(f"CustomVision.Preprocess.{prefix}Height"))
        hint_w = _positive_int(hints.get(f"CustomVision.Preprocess.{prefix}Width"))
        if hint_h is not None and hint_w is not None:
            return hint_h, hint_w
    raise ValueError(f"the model input {list(shape)} has no fixed height and width")


def _positive_int(value: str | None) -> int | None:
    try:
        number = int(value) if value is not None else 0
    except ValueError:
        return None
    return number if number > 0 else None


def _cap_longest_side(image: Image.Image, max_side: int | None) -> Image.Image:
    width, height = image.size
    longest = max(width, height)
    if max_side is None or longest <= max_side:
        return image
    scale = max_side / longest
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(new_size, Image.Resampling.BILINEAR)


def _centre_square(image: Image.Image, side: int) -> np.ndarray:
    width, height = image.size
    square = min(width, height)
    left, top = (width - square) // 2, (height - square) // 2
    box = (left, top, left + square, top + square)
    return np.asarray(image.resize((side, side), Image.Resampling.BILINEAR, box=box))
