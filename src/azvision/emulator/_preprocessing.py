"""How the emulated service turns an uploaded image into its classifier's input.

Written from the service's documented pipeline for compact classifiers
(``shared/reference/custom-vision-export-format.md`` §2.3), not shared with the SDK, so that the
SDK's own preprocessing is checked against an independent implementation:

1. apply the EXIF orientation and drop any alpha channel;
2. scale an image whose longer side exceeds 1600 px down to 1600 (bilinear);
3. take the largest centred square and resize it to 256 × 256 (bilinear);
4. cut the centred 224 × 224 crop and feed it as BGR, values 0-255, channels first.

A compact detector (§2.1) instead stretches the whole image to 416 × 416 (bilinear), BGR, 0-255.

Example:
    >>> from PIL import Image
    >>> tensor = classifier_input(Image.new("RGB", (640, 480), (255, 0, 0)))
    >>> tensor.shape, tensor[:, 0, 0].tolist()
    ((3, 224, 224), [0.0, 0.0, 255.0])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "DETECTOR_SIDE",
    "INPUT_SIDE",
    "MAX_SIDE",
    "SQUARE_SIDE",
    "classifier_batch",
    "classifier_input",
    "detector_input",
    "upright_rgb",
]

#: Side of the square network input of the compact classifier the emulator trains and exports.
INPUT_SIDE = 224
#: Side of the centred square the input is cropped from.
SQUARE_SIDE = 256
#: Longer side above which the service first scales an image down.
MAX_SIDE = 1600
#: Side of the compact detector's square input.
DETECTOR_SIDE = 416


def upright_rgb(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says, as 3-channel RGB.

    Example:
        >>> upright_rgb(Image.new("LA", (3, 2))).mode
        'RGB'
    """
    turned = ImageOps.exif_transpose(image)
    return turned.convert("RGB") if turned.mode != "RGB" else turned


def classifier_input(image: Image.Image) -> np.ndarray:
    """One upright image → float32 ``(3, 224, 224)``, BGR, 0-255.

    Example:
        >>> classifier_input(Image.new("L", (50, 900))).dtype
        dtype('float32')
    """
    rgb = image.convert("RGB") if image.mode != "RGB" else image
    width, height = rgb.size
    if max(width, height) > MAX_SIDE:
        factor = MAX_SIDE / max(width, height)
        width, height = max(1, round(width * factor)), max(1, round(height * factor))
        rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = rgb.resize(
        (SQUARE_SIDE, SQUARE_SIDE), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side)
    )
    margin = (SQUARE_SIDE - INPUT_SIDE) // 2
    crop = np.asarray(square, dtype=np.float32)[margin : margin + INPUT_SIDE, margin : margin + INPUT_SIDE]
    return np.ascontiguousarray(crop[:, :, ::-1].transpose(2, 0, 1))


def detector_input(image: Image.Image) -> np.ndarray:
    """One upright image → float32 ``(3, 416, 416)``, the whole image stretched, BGR, 0-255.

    Example:
        >>> detector_input(Image.new("RGB", (640, 120), (0, 0, 9)))[:, 5, 5].tolist()
        [9.0, 0.0, 0.0]
    """
    rgb = image.convert("RGB") if image.mode != "RGB" else image
    pixels = np.asarray(rgb.resize((DETECTOR_SIDE, DETECTOR_SIDE), Image.Resampling.BILINEAR), np.float32)
    return np.ascontiguousarray(pixels[:, :, ::-1].transpose(2, 0, 1))


def classifier_batch(images: Sequence[Image.Image]) -> np.ndarray:
    """Several images → float32 ``(n, 3, 224, 224)``.

    Example:
        >>> classifier_batch([]).shape
        (0, 3, 224, 224)
    """
    if not images:
        return np.zeros((0, 3, INPUT_SIDE, INPUT_SIDE), dtype=np.float32)
    return np.stack([classifier_input(image) for image in images])
