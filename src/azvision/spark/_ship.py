"""Shipping a local model to the executors once, with ``SparkContext.addFile``, and finding it there.

A model file (or export folder, zipped first) is staged under a name made of its content hash, so the same
model is added once per application however often a job uses it, and two different models that share a
file name (every export is ``model.onnx``) never collide in ``SparkFiles``.

Example:
    >>> Shipped("azvision-0123456789abcdef-model.zip").name
    'azvision-0123456789abcdef-model.zip'
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError

__all__ = ["SHIPPED_OPTIONS", "Shipped", "resolve", "ship"]

#: The options of a backend that name local files the executors need.
SHIPPED_OPTIONS: dict[str, tuple[str, ...]] = {"onnx": ("model_path", "labels_path")}

_added: set[tuple[str, str]] = set()
_lock = threading.Lock()


@dataclass(frozen=True)
class Shipped:
    """A file added with ``SparkContext.addFile``: executors read it at ``SparkFiles.get(name)``."""

    name: str


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        sha.update(str(file.relative_to(path)).encode() if path.is_dir() else b"")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
    return sha.hexdigest()[:16]


def _stage(path: Path) -> Path:
    """A copy of ``path`` (a folder becomes a zip of its files) named by its content."""
    digest = _digest(path)
    name = f"azvision-{digest}-{path.name}{'.zip' if path.is_dir() else ''}"
    staged = Path(tempfile.gettempdir()) / "azvision-spark-files" / name
    if staged.exists():
        return staged
    staged.parent.mkdir(parents=True, exist_ok=True)
    partial = staged.with_name(f".{name}.{os.getpid()}.partial")
    if path.is_dir():
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                archive.write(file, str(file.relative_to(path)))
    else:
        shutil.copyfile(path, partial)
    os.replace(partial, staged)
    return staged


def ship(spark_context: Any, backend: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with each local file the backend reads replaced by a `Shipped` reference to it.

    Raises:
        ConfigurationError: a model path that is not a file or folder on the driver.
    """
    shipped = dict(options)
    for option in SHIPPED_OPTIONS.get(backend, ()):
        value = options.get(option)
        if value is None:
            continue
        path = Path(os.fspath(value)).expanduser()
        if not path.exists():
            raise ConfigurationError(
                f"{option} {value} is not a file or folder on the driver: copy the model to a path the "
                "driver reads (on Databricks /dbfs/... or a volume, on Fabric /lakehouse/default/Files/...)",
                backend=backend,
            )
        staged = _stage(path)
        key = (str(spark_context.applicationId), str(staged))
        with _lock:
            if key not in _added:
                spark_context.addFile(str(staged))
                _added.add(key)
        shipped[option] = Shipped(staged.name)
    return shipped


def resolve(options: dict[str, Any]) -> dict[str, Any]:
    """On an executor: each `Shipped` option replaced by the local path of its copy."""
    if not any(isinstance(v, Shipped) for v in options.values()):
        return options
    from pyspark import SparkFiles

    return {k: SparkFiles.get(v.name) if isinstance(v, Shipped) else v for k, v in options.items()}
