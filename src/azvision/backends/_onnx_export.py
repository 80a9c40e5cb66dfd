"""What a Custom Vision ONNX export holds, read without onnxruntime or numpy: its model, labels and hints.

`read_export` reads the zip, its folder or a bare model file (`cvexport.manifest`, `labels.txt`,
`metadata_properties.json`); `default_opset` spots the 2018 exports onnxruntime cannot load
(`shared/reference/custom-vision-export-format.md` §1). Turning the model's outputs into labels is
`azvision.backends._onnx_outputs`.

Example:
    >>> import pathlib, tempfile
    >>> read_export(pathlib.Path(tempfile.mkdtemp()))
    Traceback (most recent call last):
    ...
    azvision._errors.ConfigurationError: ... has no model.onnx
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .._errors import ConfigurationError

__all__ = ["MIN_OPSET", "Export", "default_opset", "read_export"]

_NAME = "onnx"
#: Opsets below 7 are the 2018 "ONNX 1.0" (WinMLTools) exports modern onnxruntime rejects (§1.3).
MIN_OPSET = 7


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _fields(data: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """Protobuf fields as ``(number, varint or bytes)``; fixed-width fields are skipped."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        wire = key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield key >> 3, value
        elif wire == 2:
            size, pos = _varint(data, pos)
            yield key >> 3, data[pos : pos + size]
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire}")


def default_opset(model: bytes) -> int | None:
    """The ``ai.onnx`` opset a serialised ``ModelProto`` imports (its field 8), read without the onnx package.

    ``None`` when the bytes are not a model that says so.

    Example:
        >>> default_opset(bytes([0x42, 0x02, 0x10, 0x07]))  # opset_import { version: 7 }
        7
    """
    try:
        for number, value in _fields(memoryview(model)):
            if number != 8 or not isinstance(value, memoryview):
                continue
            entry = dict(_fields(value))
            domain, version = entry.get(1, b""), entry.get(2)
            if isinstance(domain, memoryview | bytes) and bytes(domain) in (b"", b"ai.onnx"):
                return version if isinstance(version, int) else None
    except (IndexError, ValueError):
        pass  # not protobuf: onnxruntime will say what is wrong
    return None


def _parse_json(data: bytes | None, what: str) -> dict[str, Any]:
    try:
        parsed = json.loads(data.decode("utf-8-sig")) if data is not None else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{what} is not valid JSON: {exc}", backend=_NAME) from exc
    if not isinstance(parsed, dict):
        raise ConfigurationError(f"{what} is not a JSON object", backend=_NAME)
    return parsed


def _parse_labels(data: bytes, what: str) -> tuple[str, ...]:
    # Exports write LF without a final newline; hand-edited copies add CRLF, a BOM or a last newline.
    lines = [line.strip() for line in data.decode("utf-8-sig").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines or "" in lines:
        where = f"line {lines.index('') + 1} is empty" if lines else "it is empty"
        raise ConfigurationError(f"{what} needs one label per line, but {where}", backend=_NAME)
    return tuple(lines)


@dataclass(frozen=True)
class Export:
    """The parts of an export `OnnxBackend` needs.

    Attributes:
        model: the serialised ``model.onnx``.
        manifest: ``cvexport.manifest`` (empty when absent).
        hints: ``metadata_properties.json`` (empty when absent): resize and YOLO hints only.
        labels: ``labels.txt`` lines, ``None`` when there is no labels file.
        labels_file: where the labels were looked for (for messages).
        name: ``IterationId`` from the manifest, else the file or folder name.

    Example:
        >>> Export(b"", {}, {}, ("cat",), "labels.txt", "model.onnx").labels
        ('cat',)
    """

    model: bytes
    manifest: dict[str, Any]
    hints: dict[str, str]
    labels: tuple[str, ...] | None
    labels_file: str
    name: str


def read_export(path: Path, labels_path: Path | None = None) -> Export:
    """Read an export zip (files at its root or in one folder), its folder, or a bare model file.

    A bare model takes ``labels.txt`` from its folder; ``labels_path`` overrides every labels file.

    Raises:
        ConfigurationError: not an ONNX export, no model file, unreadable side files, or a 2018
            "ONNX 1.0" model (opset < 7) that onnxruntime cannot load.

    Example:
        >>> read_export(Path("flowers-export.zip")).labels  # doctest: +SKIP
        ('daisy', 'rose')
    """
    files: dict[str, bytes] = {}
    folder: Path | None = None
    model_file: str | None = None
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith((".onnx", ".manifest", ".txt", ".json"))]
            tops = [PurePosixPath(n).parent for n in names if n.endswith((".onnx", "cvexport.manifest"))]
            base = str(min(tops, key=lambda p: len(p.parts))) if tops else "."
            prefix = "" if base == "." else f"{base}/"
            files = {n[len(prefix) :]: archive.read(n) for n in names if n.startswith(prefix)}
        names = list(files)
    elif path.is_dir():
        folder, names = path, [p.name for p in path.iterdir()]
    else:
        folder, model_file, names = path.parent, path.name, []

    def read(name: str) -> bytes | None:
        if folder is None:
            return files.get(name)
        return (folder / name).read_bytes() if (folder / name).is_file() else None

    manifest = _parse_json(read("cvexport.manifest"), f"{path} cvexport.manifest")
    if manifest.get("Platform") not in (None, "ONNX"):
        raise ConfigurationError(
            f"{path} is a {manifest['Platform']} export; OnnxBackend runs ONNX exports: export the "
            "iteration again with platform ONNX",
            backend=_NAME,
        )
    onnx_files = [n for n in names if n.endswith(".onnx")]
    fallback = onnx_files[0] if len(onnx_files) == 1 else "model.onnx"
    model_file = model_file or manifest.get("ModelFileName") or fallback
    model = read(model_file)
    if model is None:
        raise ConfigurationError(f"{path} has no {model_file}", backend=_NAME)
    opset = default_opset(model)
    if opset is not None and opset < MIN_OPSET:
        raise ConfigurationError(
            f"{path} is a 2018 'ONNX 1.0' Custom Vision export (opset {opset}), too old for onnxruntime: "
            "export the iteration again from Custom Vision (platform ONNX, current flavor)",
            backend=_NAME,
        )
    hints_file = manifest.get("MetadataPropsFileName") or "metadata_properties.json"
    hints = _parse_json(read(hints_file), f"{path} {hints_file}")
    label_bytes: bytes | None
    if labels_path is not None:
        if not labels_path.is_file():
            raise ConfigurationError(f"labels_path {labels_path} is not a file", backend=_NAME)
        labels_file, label_bytes = str(labels_path), labels_path.read_bytes()
    else:
        labels_file = manifest.get("LabelFileName") or "labels.txt"
        label_bytes = read(labels_file)
    labels = _parse_labels(label_bytes, labels_file) if label_bytes is not None else None
    hint_strings = {str(key): str(value) for key, value in hints.items()}
    name = str(manifest.get("IterationId") or path.name)
    return Export(model, manifest, hint_strings, labels, labels_file, name)
