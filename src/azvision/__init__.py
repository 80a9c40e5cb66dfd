"""azvision: one typed SDK over Azure Custom Vision, Image Analysis and Azure ML endpoints, plus ONNX.

Example:
    >>> import azvision
    >>> clf = azvision.create_classifier("custom_vision")  # doctest: +SKIP
    >>> clf.classify("cat.jpg").label  # doctest: +SKIP
    'cat'

Backends, the trainer and `Dataset` are imported on first use, so `import azvision` stays fast and never
imports an optional extra (onnxruntime, azure-ai-ml, the emulator's server).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config import Secret
from ._errors import (
    AnnotationError,
    AuthenticationError,
    AzVisionError,
    BackendConnectionError,
    BackendTimeoutError,
    ConfigurationError,
    InvalidImageError,
    NotFoundError,
    RateLimitError,
    ServiceError,
    TrainingError,
)
from ._images import ImageLike, LoadedImage
from ._models import BoundingBox, Label, Prediction
from ._protocol import Classifier
from ._registry import (
    BackendInfo,
    available_backends,
    canonical_name,
    create_classifier,
    known_backends,
    register_backend,
)
from ._retry import RetryPolicy
from ._version import __version__ as __version__

if TYPE_CHECKING:
    from .backends._base import BaseBackend
    from .backends._taxonomy import LabelMap
    from .backends.azure_ml import AzureMLEndpointBackend
    from .backends.azure_openai import AzureOpenAIBackend
    from .backends.custom_vision import CustomVisionBackend
    from .backends.image_analysis import ImageAnalysisBackend
    from .backends.onnx import OnnxBackend
    from .datasets import Dataset
    from .detection_datasets import DetectionDataset
    from .routing import CachedClassifier, Cascade, Fallback
    from .training.custom_vision import CustomVisionTrainer

__all__ = [
    "AnnotationError",
    "AuthenticationError",
    "AzVisionError",
    "AzureMLEndpointBackend",
    "AzureOpenAIBackend",
    "BackendConnectionError",
    "BackendInfo",
    "BackendTimeoutError",
    "BaseBackend",
    "BoundingBox",
    "CachedClassifier",
    "Cascade",
    "Classifier",
    "ConfigurationError",
    "CustomVisionBackend",
    "CustomVisionTrainer",
    "Dataset",
    "DetectionDataset",
    "Fallback",
    "ImageAnalysisBackend",
    "ImageLike",
    "InvalidImageError",
    "Label",
    "LabelMap",
    "LoadedImage",
    "NotFoundError",
    "OnnxBackend",
    "Prediction",
    "RateLimitError",
    "RetryPolicy",
    "Secret",
    "ServiceError",
    "TrainingError",
    "available_backends",
    "canonical_name",
    "create_classifier",
    "known_backends",
    "register_backend",
]

_LAZY = {
    "AzureMLEndpointBackend": "azvision.backends.azure_ml",
    "AzureOpenAIBackend": "azvision.backends.azure_openai",
    "BaseBackend": "azvision.backends._base",
    "CachedClassifier": "azvision.routing",
    "Cascade": "azvision.routing",
    "Fallback": "azvision.routing",
    "Dataset": "azvision.datasets",
    "DetectionDataset": "azvision.detection_datasets",
    "LabelMap": "azvision.backends._taxonomy",
    "CustomVisionBackend": "azvision.backends.custom_vision",
    "ImageAnalysisBackend": "azvision.backends.image_analysis",
    "OnnxBackend": "azvision.backends.onnx",
    "CustomVisionTrainer": "azvision.training.custom_vision",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'azvision' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
