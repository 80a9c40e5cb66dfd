"""Backend registry and the [create_classifier][azvision.create_classifier] factory.

Built-in backends are registered by import path and imported only when asked for, so `import azvision`
stays fast; third parties add theirs through the `azvision.backends` entry-point group.

Example:
    >>> sorted(available_backends())[:2]
    ['azure_ml', 'azure_openai']
    >>> canonical_name("Image-Analysis"), known_backends()["onnx"].install_hint
    ('image_analysis', "pip install 'azvision[onnx]'")
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from ._errors import ConfigurationError
from ._protocol import Classifier

__all__ = [
    "BackendInfo",
    "available_backends",
    "canonical_name",
    "create_classifier",
    "known_backends",
    "register_backend",
]

_BUILTIN: dict[str, str] = {
    "custom_vision": "azvision.backends.custom_vision:CustomVisionBackend",
    "image_analysis": "azvision.backends.image_analysis:ImageAnalysisBackend",
    "azure_ml": "azvision.backends.azure_ml:AzureMLEndpointBackend",
    "onnx": "azvision.backends.onnx:OnnxBackend",
    "azure_openai": "azvision.backends.azure_openai:AzureOpenAIBackend",
}
#: The extra a built-in backend needs beyond the core install.
_EXTRAS: dict[str, str] = {"onnx": "onnx", "azure_openai": "openai"}
_ALIASES = {
    "customvision": "custom_vision",
    "imageanalysis": "image_analysis",
    "vision": "image_analysis",
    "azureml": "azure_ml",
    "aml": "azure_ml",
    "azureopenai": "azure_openai",
    "azure-openai": "azure_openai",
    "aoai": "azure_openai",
    "openai": "azure_openai",
}
_registered: dict[str, str | type[Any]] = {}


@dataclass(frozen=True)
class BackendInfo:
    """What the registry knows of one backend, without importing it.

    `target` is the class or its `"module:Class"` path; `extra` the azvision extra it needs beyond
    the core install (`None` for none, and for third-party backends), with `install_hint` the command
    that installs it.

    Example:
        >>> info = known_backends()["onnx"]
        >>> info.target, info.extra
        ('azvision.backends.onnx:OnnxBackend', 'onnx')
        >>> known_backends()["custom_vision"].install_hint is None
        True
    """

    name: str
    target: str | type[Any]
    extra: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def install_hint(self) -> str | None:
        """`pip install 'azvision[EXTRA]'` when the backend needs an extra, else `None`."""
        return None if self.extra is None else f"pip install 'azvision[{self.extra}]'"

    @property
    def import_path(self) -> str:
        """`"module:Class"`, also for a backend registered as a class."""
        if isinstance(self.target, str):
            return self.target
        return f"{self.target.__module__}:{self.target.__qualname__}"

    def load(self) -> type[Any]:
        """Import the backend's class; a missing dependency is a `ConfigurationError` with the fix.

        Example:
            >>> known_backends()["custom_vision"].load().__name__
            'CustomVisionBackend'
        """
        if not isinstance(self.target, str):
            return self.target
        module_name, _, attr = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if exc.name and exc.name.split(".")[0] == "azvision":
                raise  # a bug of ours, not a missing dependency
            hint = f": {self.install_hint}" if self.install_hint else ""
            raise ConfigurationError(f"backend {self.name!r} cannot be loaded ({exc}){hint}") from exc
        cls: type[Any] = getattr(module, attr)
        return cls


def register_backend(name: str, target: str | type[Any]) -> None:
    """Register a backend class (or `"module:Class"` path) under `name`.

    Example:
        >>> register_backend("my_backend", "my_package.backend:MyBackend")  # doctest: +SKIP
    """
    _registered[name] = target


def _entry_point_backends() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group="azvision.backends")}


def available_backends() -> dict[str, str | type[Any]]:
    """Every backend name the factory knows, mapped to its class or import path.

    Example:
        >>> available_backends()["onnx"]
        'azvision.backends.onnx:OnnxBackend'
    """
    return {**_BUILTIN, **_entry_point_backends(), **_registered}


def known_backends() -> dict[str, BackendInfo]:
    """Every backend the factory knows, by name, with its aliases and the extra it needs.

    Nothing is imported: `BackendInfo.load()` does that, and says which extra to install when a
    dependency is missing.

    Example:
        >>> sorted(known_backends()["azure_ml"].aliases)
        ['aml', 'azure-ml', 'azureml']
    """
    aliases: dict[str, list[str]] = {}
    for alias, name in _ALIASES.items():
        aliases.setdefault(name, []).append(alias)
    for name in _BUILTIN:
        if "_" in name:
            aliases.setdefault(name, []).append(name.replace("_", "-"))
    infos: dict[str, BackendInfo] = {}
    for name, target in available_backends().items():
        builtin = _BUILTIN.get(name) == target
        infos[name] = BackendInfo(
            name=name,
            target=target,
            extra=_EXTRAS.get(name) if builtin else None,
            aliases=tuple(sorted(aliases.get(name, ()))) if builtin else (),
        )
    return infos


def canonical_name(name: str) -> str:
    """The registry's name for `name`: surrounding space, case and `-`/`_` folded, aliases resolved.

    A name no backend answers to comes back folded; `create_classifier` then says it is unknown.

    Example:
        >>> canonical_name(" AML "), canonical_name("custom-vision"), canonical_name("my-thing")
        ('azure_ml', 'custom_vision', 'my_thing')
    """
    known = available_backends()
    if name in known:
        return name
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in known:
        return key
    folded = key.replace("-", "_")
    return _ALIASES.get(folded, folded)


def create_classifier(backend: str | None = None, /, **options: Any) -> Classifier:
    """Build a classifier by backend name; options missing here come from the environment.

    `backend=None` reads `AZVISION_BACKEND`. Names: `custom_vision`, `image_analysis`, `azure_ml`,
    `onnx` and any registered through the `azvision.backends` entry points (see `known_backends()`).

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
    known = known_backends()
    key = canonical_name(name)
    if key not in known:
        raise ConfigurationError(f"unknown backend {name!r}; choose one of: {', '.join(sorted(known))}")
    cls = known[key].load()
    instance: Classifier = cls(**options)
    return instance
