"""Backend registry and the :func:`create_classifier` factory.

Built-in backends are registered by import path and imported only when asked for, so ``import azvision``
stays fast; third parties add theirs through the ``azvision.backends`` entry-point group.

Example:
    >>> sorted(available_backends())[:2]
    ['azure_ml', 'azure_openai']
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from typing import Any

from ._errors import ConfigurationError
from ._protocol import Classifier

__all__ = ["available_backends", "create_classifier", "register_backend"]

_BUILTIN: dict[str, str] = {
    "custom_vision": "azvision.backends.custom_vision:CustomVisionBackend",
    "image_analysis": "azvision.backends.image_analysis:ImageAnalysisBackend",
    "azure_ml": "azvision.backends.azure_ml:AzureMLEndpointBackend",
    "onnx": "azvision.backends.onnx:OnnxBackend",
    "azure_openai": "azvision.backends.azure_openai:AzureOpenAIBackend",
}
_ALIASES = {
    "customvision": "custom_vision",
    "custom-vision": "custom_vision",
    "imageanalysis": "image_analysis",
    "image-analysis": "image_analysis",
    "vision": "image_analysis",
    "azureml": "azure_ml",
    "azure-ml": "azure_ml",
    "aml": "azure_ml",
    "azureopenai": "azure_openai",
    "azure-openai": "azure_openai",
    "aoai": "azure_openai",
    "openai": "azure_openai",
}
_registered: dict[str, str | type[Any]] = {}


def register_backend(name: str, target: str | type[Any]) -> None:
    """Register a backend class (or ``"module:Class"`` path) under ``name``.

    Example:
        >>> register_backend("my_backend", "my_package.backend:MyBackend")  # doctest: +SKIP
    """
    _registered[name] = target


def _entry_point_backends() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group="azvision.backends")}


def available_backends() -> dict[str, str | type[Any]]:
    """Every backend name the factory knows, mapped to its class or import path."""
    return {**_BUILTIN, **_entry_point_backends(), **_registered}


def _resolve(target: str | type[Any]) -> type[Any]:
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    cls: type[Any] = getattr(module, attr)
    return cls


def create_classifier(backend: str | None = None, /, **options: Any) -> Classifier:
    """Build a classifier by backend name; options missing here come from the environment.

    ``backend=None`` reads ``AZVISION_BACKEND``. Names: ``custom_vision``, ``image_analysis``,
    ``azure_ml``, ``onnx`` and any registered through the ``azvision.backends`` entry points.

    Example:
        >>> clf = create_classifier("onnx", model_path="export.zip")  # doctest: +SKIP
        >>> clf.classify("cat.jpg").label  # doctest: +SKIP
        'cat'
    """
    name = backend if backend is not None else os.environ.get("AZVISION_BACKEND", "").strip() or None
    if name is None:
        raise ConfigurationError(
            "missing backend: pass create_classifier('custom_vision' | 'image_analysis' | 'azure_ml' | "
            "'onnx', ...) or set the environment variable AZVISION_BACKEND"
        )
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    known = available_backends()
    if key not in known:
        raise ConfigurationError(f"unknown backend {name!r}; choose one of: {', '.join(sorted(known))}")
    cls = _resolve(known[key])
    instance: Classifier = cls(**options)
    return instance
