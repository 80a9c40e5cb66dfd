"""The emulator's ONNX export: a ZIP laid out like the service's compact classifier or detector export.

Example:
    >>> import numpy as np
    >>> head = LinearHead(("a",), np.zeros((512, 1), np.float32), np.zeros(1, np.float32), True)
    >>> onnx.load_from_string(export_model_bytes(head)).graph.input[0].name
    'data'
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import datetime, timezone

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from azvision.emulator._cv_detector import CELL_FEATURES, DETECTOR_INPUT, GRID, DetectorHead, cell_graph
from azvision.emulator._features import FEATURE_TENSOR, asset_bytes, backbone_bytes
from azvision.emulator._head import LinearHead
from azvision.emulator._preprocessing import INPUT_SIDE, SQUARE_SIDE
from azvision.emulator._yolo import ANCHORS, NMS_IOU

__all__ = ["build_export_zip", "detector_model", "export_model_bytes"]

_OUTPUT_TENSOR = "model_output"
_DETECTOR_OUTPUT = "model_outputs0"
_LICENSE_ASSET = "LICENSE"


def build_export_zip(
    head: LinearHead | DetectorHead,
    *,
    iteration_id: str,
    exported_at: datetime,
    domain_type: str | None = None,
) -> bytes:
    """A ZIP laid out like the service's compact-classifier ONNX export.

    ``model.onnx`` (backbone + head: input ``data`` float32 ``[None, 3, 224, 224]`` BGR 0-255,
    output ``model_output`` ``[None, k]``), ``labels.txt``, ``cvexport.manifest``,
    ``metadata_properties.json`` and ``LICENSE``, with the byte conventions of the real files
    (reference §1.1). The same arguments always give the same bytes. A naive ``exported_at``
    is taken as UTC.

    A `DetectorHead` gives the compact detector's export instead: ``model.onnx`` with input ``data``
    ``[None, 3, 416, 416]`` (BGR 0-255) and the YOLOv2 grid ``model_outputs0`` ``[None, 5·(5+k), 13,
    13]``, ``DomainType`` ``ObjectDetection``, and the anchors and NMS threshold in
    ``metadata_properties.json`` (reference §3.2).

    Raises:
        ValueError: ``domain_type`` does not match the head, or a label contains a line break.

    Example:
        >>> head = LinearHead(("a", "b"), np.zeros((512, 2), np.float32), np.zeros(2, np.float32), False)
        >>> blob = build_export_zip(head, iteration_id="0" * 32, exported_at=datetime(2024, 1, 1))
        >>> sorted(zipfile.ZipFile(io.BytesIO(blob)).namelist())
        ['LICENSE', 'cvexport.manifest', 'labels.txt', 'metadata_properties.json', 'model.onnx']
    """
    detector = isinstance(head, DetectorHead)
    expected = "ObjectDetection" if detector else "Classification"
    if domain_type not in (None, expected):
        raise ValueError(f"a {type(head).__name__} exports as {expected}, not {domain_type!r}")
    domain_type = expected
    if any("\n" in label or "\r" in label for label in head.labels):
        raise ValueError("labels.txt cannot hold a label with a line break")
    when = (
        exported_at.replace(tzinfo=timezone.utc)
        if exported_at.tzinfo is None
        else exported_at.astimezone(timezone.utc)
    )
    model = detector_model(head) if isinstance(head, DetectorHead) else export_model_bytes(head)
    manifest = {
        "DomainType": domain_type,
        "Platform": "ONNX",
        "Flavor": None,
        "ExporterVersion": "2.0",
        "ExportedDate": _dotnet_utc(when),
        "IterationId": iteration_id,
        "ModelFileName": "model.onnx",
        "LabelFileName": "labels.txt",
        "MetadataPropsFileName": "metadata_properties.json",
        "ModelFileSHA1": hashlib.sha1(model).hexdigest(),
        "SchemaVersion": "1.0",
    }
    files = {
        "LICENSE": asset_bytes(_LICENSE_ASSET),
        "cvexport.manifest": json.dumps(manifest, indent=2).replace("\n", "\r\n").encode(),
        "labels.txt": "\n".join(head.labels).encode("utf-8"),
        "metadata_properties.json": json.dumps(_export_metadata(head), indent=4, sort_keys=True).encode(),
        "model.onnx": model,
    }
    stamp = max(when, datetime(1980, 1, 1, tzinfo=timezone.utc)).timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, content)
    return buffer.getvalue()


def export_model_bytes(head: LinearHead) -> bytes:
    """The serialised ``model.onnx`` of an export: backbone → Gemm → Softmax (or Sigmoid).

    Opset 7 like the backbone; carries the ``Image.*`` metadata_props that tell readers to feed
    BGR 0-255.

    Example:
        >>> head = LinearHead(("a",), np.zeros((512, 1), np.float32), np.zeros(1, np.float32), True)
        >>> onnx.load_from_string(export_model_bytes(head)).graph.output[0].name
        'model_output'
    """
    model = onnx.ModelProto()
    model.ParseFromString(backbone_bytes())
    graph = model.graph
    graph.initializer.extend(
        [
            numpy_helper.from_array(head.weights.astype(np.float32), "model_head_weights"),
            numpy_helper.from_array(head.bias.astype(np.float32), "model_head_bias"),
        ]
    )
    activation = (
        helper.make_node("Sigmoid", ["model_logits"], [_OUTPUT_TENSOR])
        if head.multilabel
        else helper.make_node("Softmax", ["model_logits"], [_OUTPUT_TENSOR], axis=1)
    )
    graph.node.extend(
        [
            helper.make_node(
                "Gemm",
                [FEATURE_TENSOR, "model_head_weights", "model_head_bias"],
                ["model_logits"],
            ),
            activation,
        ]
    )
    batch = graph.input[0].type.tensor_type.shape.dim[0].dim_param
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(_OUTPUT_TENSOR, TensorProto.FLOAT, [batch, len(head.labels)])
    )
    graph.name = "custom_vision_compact_classifier"
    return _finish(model)


def detector_model(head: DetectorHead) -> bytes:
    """A detector's ``model.onnx``: backbone cell features → 1×1 Conv → ``model_outputs0``
    ``[None, A·(5+C), 13, 13]`` (the compact YOLOv2 family, reference §3.2)."""
    model = cell_graph()
    graph = model.graph
    channels = head.weights.shape[1]
    kernel = head.weights.T.reshape(channels, head.weights.shape[0], 1, 1).astype(np.float32)
    graph.initializer.extend(
        [
            numpy_helper.from_array(kernel, "detector_head_weights"),
            numpy_helper.from_array(head.bias.astype(np.float32), "detector_head_bias"),
        ]
    )
    graph.node.append(
        helper.make_node(
            "Conv", [CELL_FEATURES, "detector_head_weights", "detector_head_bias"], [_DETECTOR_OUTPUT]
        )
    )
    batch = graph.output[0].type.tensor_type.shape.dim[0].dim_param or "None"
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(_DETECTOR_OUTPUT, TensorProto.FLOAT, [batch, channels, GRID, GRID])
    )
    graph.name = "custom_vision_compact_detector"
    return _finish(model)


def _finish(model: onnx.ModelProto) -> bytes:
    """Add the ``Image.*`` metadata_props that tell readers to feed BGR 0-255; check; serialise."""
    helper.set_model_props(
        model,
        {
            "Image.BitmapPixelFormat": "Bgr8",
            "Image.ColorSpaceGamma": "SRGB",
            "Image.NominalPixelRange": "NominalRange_0_255",
        },
    )
    onnx.checker.check_model(model)
    serialised: bytes = model.SerializeToString()
    return serialised


def _export_metadata(head: LinearHead | DetectorHead) -> dict[str, str]:
    if isinstance(head, DetectorHead):
        side = str(DETECTOR_INPUT)
        specific = {
            "CustomVision.Postprocess.Method": "Yolo",
            "CustomVision.Postprocess.Yolo.Biases": json.dumps([v for pair in ANCHORS for v in pair]),
            "CustomVision.Postprocess.Yolo.NmsThreshold": str(NMS_IOU),
            "CustomVision.Preprocess.CropHeight": "0",
            "CustomVision.Preprocess.CropMethod": "NoCrop",
            "CustomVision.Preprocess.CropWidth": "0",
            "CustomVision.Preprocess.ResizeMethod": "Stretch",
        }
    else:
        side = str(SQUARE_SIDE)
        specific = {
            "CustomVision.Postprocess.Method": "ClassificationMultiLabel"
            if head.multilabel
            else "ClassificationMultiClass",
            "CustomVision.Postprocess.Yolo.Biases": "[]",
            "CustomVision.Postprocess.Yolo.NmsThreshold": "0.0",
            "CustomVision.Preprocess.CropHeight": str(INPUT_SIDE),
            "CustomVision.Preprocess.CropMethod": "OneCropCenter",
            "CustomVision.Preprocess.CropWidth": str(INPUT_SIDE),
            "CustomVision.Preprocess.ResizeMethod": "ByShorterSide",
        }
    common = {
        "CustomVision.Metadata.AdditionalModelInfo": "",
        "CustomVision.Metadata.Version": "1.2",
        "CustomVision.Preprocess.MaxDimension": "0",
        "CustomVision.Preprocess.MaxScale": "0.0",
        "CustomVision.Preprocess.MinDimension": "0",
        "CustomVision.Preprocess.MinScale": "0.0",
        "CustomVision.Preprocess.NormalizeMean": "[0.0, 0.0, 0.0]",
        "CustomVision.Preprocess.NormalizeStd": "[1.0, 1.0, 1.0]",
        "CustomVision.Preprocess.TargetHeight": side,
        "CustomVision.Preprocess.TargetWidth": side,
        # The real service writes these three values whatever the model expects (reference
        # §2.2); readers must take them from model.onnx's metadata_props instead.
        "Image.BitmapPixelFormat": "Rgb8",
        "Image.ColorSpaceGamma": "SRGB",
        "Image.NominalPixelRange": "Normalized_0_1",
    }
    return dict(sorted({**common, **specific}.items()))


def _dotnet_utc(moment: datetime) -> str:
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"
