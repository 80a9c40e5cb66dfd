"""The emulator's frozen backbone: encoded images → 512-d features.

The backbone is the MIT-licensed 2018 Custom Vision "General (compact)" export, cut at its 512-d
``pool10_65_flattened`` feature (``assets/README.md`` says where it came from). Its input is made
by `azvision.emulator._preprocessing`, the service's documented classifier pipeline.

Example:
    >>> get_feature_extractor().features([]).shape
    (0, 512)
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Sequence
from functools import cache
from importlib import resources
from typing import TypeVar

import numpy as np
import onnxruntime as ort
from PIL import Image

from azvision.emulator._preprocessing import INPUT_SIDE, classifier_batch, upright_rgb

__all__ = [
    "FEATURE_DIM",
    "FEATURE_TENSOR",
    "FeatureExtractor",
    "asset_bytes",
    "backbone_bytes",
    "get_feature_extractor",
]

#: Width of the backbone's feature vector.
FEATURE_DIM = 512
#: Name of the backbone tensor the head reads.
FEATURE_TENSOR = "pool10_65_flattened"
_BACKBONE_ASSET = "compact_backbone.onnx"
_BATCH = 16
_T = TypeVar("_T")


def asset_bytes(name: str) -> bytes:
    """A file shipped in ``azvision/emulator/assets/``."""
    return resources.files("azvision.emulator").joinpath("assets", name).read_bytes()


@cache
def backbone_bytes() -> bytes:
    """The serialised backbone ONNX model (read once)."""
    return asset_bytes(_BACKBONE_ASSET)


class FeatureExtractor:
    """Frozen pretrained backbone (the MIT-licensed 2018 Custom Vision compact export shipped in
    ``azvision/emulator/assets/``), cut at its 512-d ``pool10_65_flattened`` tensor.

    Thread-safe: onnxruntime sessions may be run from several threads at once.

    Example:
        >>> extractor = get_feature_extractor()
        >>> extractor.input_size
        224
    """

    def __init__(self) -> None:
        options = ort.SessionOptions()
        # The emulator shares the machine with the client under test: no busy-waiting threads.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(backbone_bytes(), options, providers=["CPUExecutionProvider"])
        #: Side of the square input the export uses.
        self.input_size: int = INPUT_SIDE

    def features(self, images: Sequence[bytes]) -> np.ndarray:
        """Encoded images (JPEG, PNG, …) → float32 ``(n, 512)`` features.

        Raises:
            ValueError: an image cannot be decoded (the message says which one).

        Example:
            >>> get_feature_extractor().features([]).shape
            (0, 512)
        """
        return self._in_batches(images, _decode)

    def image_features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Decoded, upright images → float32 ``(n, 512)`` features (no re-encoding needed).

        Example:
            >>> get_feature_extractor().image_features([Image.new("RGB", (9, 9))]).shape
            (1, 512)
        """
        return self._in_batches(images, lambda image, _index: image)

    def _in_batches(self, items: Sequence[_T], load: Callable[[_T, int], Image.Image]) -> np.ndarray:
        out = np.zeros((len(items), FEATURE_DIM), dtype=np.float32)
        for start in range(0, len(items), _BATCH):
            chunk = items[start : start + _BATCH]
            batch = classifier_batch([load(item, start + offset) for offset, item in enumerate(chunk)])
            out[start : start + len(chunk)] = self._session.run([FEATURE_TENSOR], {"data": batch})[0]
        return out


def _decode(data: bytes, index: int) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return upright_rgb(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"image {index} is not a decodable image: {exc}") from exc


_extractor: FeatureExtractor | None = None
_extractor_lock = threading.Lock()


def get_feature_extractor() -> FeatureExtractor:
    """The process-wide `FeatureExtractor`, created on first use (thread-safe).

    Example:
        >>> get_feature_extractor() is get_feature_extractor()
        True
    """
    global _extractor
    with _extractor_lock:
        if _extractor is None:
            _extractor = FeatureExtractor()
        return _extractor
