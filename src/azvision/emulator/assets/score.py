"""Azure ML online-endpoint scoring script for a Custom Vision ONNX classifier export.

Deploy it with the export's ``model.onnx`` and ``labels.txt`` as the model (they are looked up
under ``AZUREML_MODEL_DIR``, in any sub-folder). Current compact exports answer in a
``model_output`` tensor; 2018-19 exports (``classLabel`` + ``loss`` maps, labels inside the graph,
no ``labels.txt``) work too. It runs inside the inference server's own environment (numpy, pillow,
onnxruntime), so it imports nothing from azvision.

Requests (one answer per image, AutoML-for-Images multiclass shape):

* raw image bytes, ``Content-Type: application/octet-stream`` (or any image/* type), or a
  multipart upload (every file part is one image);
* JSON ``{"input_data": {"columns": ["image"], "data": ["<base64>", ...]}}``.

Response: ``[{"probs": [0.91, 0.09], "labels": ["cat", "dog"]}, ...]``.

Try it locally::

    azmlinfsrv --entry_script score.py --model_dir ./export
    curl -H "Content-Type: application/octet-stream" --data-binary @cat.jpg 127.0.0.1:5001/score
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse
from PIL import Image, ImageOps

logger = logging.getLogger("azmlinfsrv.score")

# Custom Vision compact exports resize the shorter side to 256, then centre-crop (metadata
# "ByShorterSide 256" + "OneCropCenter 224").
RESIZE_SHORTER_SIDE = 256

_session: ort.InferenceSession | None = None
_labels: list[str] = []
_input_name = ""
_output_name = ""
_legacy = False  # output is a list of {label: probability} maps ("loss"), not a tensor
_size = (224, 224)  # (height, width), replaced by the model's own input shape
_bgr = True
_scale = 1.0


def _find(model_dir: Path, *patterns: str) -> Path | None:
    for pattern in patterns:
        matches = sorted(model_dir.rglob(pattern))
        if matches:
            return matches[0]
    return None


def init() -> None:
    """Load ``model.onnx`` and ``labels.txt`` once per worker."""
    global _session, _labels, _input_name, _output_name, _legacy, _size, _bgr, _scale
    model_dir = Path(os.environ.get("AZUREML_MODEL_DIR", "."))
    model_path = _find(model_dir, "model.onnx", "*.onnx")
    if model_path is None:
        raise FileNotFoundError(f"no model.onnx under {model_dir}")
    _session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    outputs = [o.name for o in _session.get_outputs()]
    _legacy = "model_output" not in outputs and "loss" in outputs
    _output_name = "loss" if _legacy else "model_output" if "model_output" in outputs else outputs[0]
    labels_path = _find(model_dir, "labels.txt")
    if labels_path is not None:
        text = labels_path.read_text(encoding="utf-8")
        _labels = [line.strip() for line in text.replace("\r", "").split("\n") if line.strip()]
    elif not _legacy:
        raise FileNotFoundError(f"no labels.txt under {model_dir}")
    model_input = _session.get_inputs()[0]
    _input_name = model_input.name
    height, width = model_input.shape[2:4]
    _size = (height if isinstance(height, int) else 224, width if isinstance(width, int) else 224)
    # The model's own metadata says how it wants its pixels; compact exports without it
    # take BGR 0-255.
    meta = _session.get_modelmeta().custom_metadata_map
    _bgr = meta.get("Image.BitmapPixelFormat", "Bgr8") != "Rgb8"
    _scale = 1 / 255 if meta.get("Image.NominalPixelRange") == "Normalized_0_1" else 1.0
    logger.info("loaded %s: input %s %s, %d labels", model_path, _input_name, _size, len(_labels))


def preprocess(image: Image.Image) -> np.ndarray:
    """Resize the shorter side to 256, centre-crop to the model's size, NCHW float32."""
    image = ImageOps.exif_transpose(image).convert("RGB")
    height, width = _size
    target = max(RESIZE_SHORTER_SIDE, height, width)
    scale = target / min(image.size)
    resized = image.resize(
        (max(width, round(image.width * scale)), max(height, round(image.height * scale))),
        Image.Resampling.BILINEAR,
    )
    left = (resized.width - width) // 2
    top = (resized.height - height) // 2
    pixels = np.asarray(resized.crop((left, top, left + width, top + height)), dtype=np.float32)
    if _bgr:
        pixels = pixels[:, :, ::-1]
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[np.newaxis] * _scale)


def classify(image_bytes: bytes) -> dict[str, list[float] | list[str]]:
    """Probabilities for one encoded image, in ``labels.txt`` order (one image per model run:
    legacy exports give wrong shapes for batches)."""
    assert _session is not None, "init() has not run"
    with Image.open(io.BytesIO(image_bytes)) as image:
        tensor = preprocess(image)
    (scores,) = _session.run([_output_name], {_input_name: tensor})
    if _legacy:
        by_label = scores[0]  # onnxruntime sorts the map's keys, not in class order
        labels = _labels or sorted(by_label)
        return {"probs": [float(by_label[label]) for label in labels], "labels": labels}
    probs = [float(p) for p in np.asarray(scores, dtype=np.float64).reshape(-1)]
    if len(probs) != len(_labels):
        raise ValueError(f"model returned {len(probs)} scores for {len(_labels)} labels")
    return {"probs": probs, "labels": list(_labels)}


def _images(request: AMLRequest) -> list[bytes]:
    content_type = (request.content_type or "").split(";")[0].strip().lower()
    if content_type == "application/json":
        payload = json.loads(request.get_data(cache=False))
        return [base64.b64decode(item, validate=True) for item in payload["input_data"]["data"]]
    if content_type == "multipart/form-data":
        return [part.read() for part in request.files.values()]
    return [request.get_data(cache=False)]


def _error(status: int, message: str) -> AMLResponse:
    return AMLResponse({"message": message}, status, json_str=True)


@rawhttp
def run(request: AMLRequest) -> list[dict[str, list[float] | list[str]]] | AMLResponse:
    """Score the request's image(s); malformed input gets a 400 with a JSON message."""
    if request.method != "POST":
        return _error(405, "POST an image (octet-stream) or AutoML-for-Images JSON.")
    try:
        images = _images(request)
    except (ValueError, KeyError, TypeError) as exc:
        return _error(400, f"Expected {{'input_data': {{'data': [<base64>]}}}}: {exc}")
    if not images or not all(images):
        return _error(400, "The request holds no image.")
    try:
        return [classify(image) for image in images]
    except (OSError, Image.DecompressionBombError) as exc:
        return _error(400, f"Not a readable image: {exc}")
