"""The emulator's learner: transfer learning on a frozen backbone, cross-validation, ONNX export.

The backbone is the MIT-licensed 2018 Custom Vision "General (compact)" export, cut at its 512-d
``pool10_65_flattened`` feature (``assets/README.md`` says where it came from). A multinomial
(or, for multilabel projects, one-vs-rest) logistic regression on standardised features is the
head; the standardisation is folded into the head's weights, so the exported graph is simply
backbone → Gemm → Softmax/Sigmoid, and :meth:`LinearHead.predict_proba` on
:meth:`FeatureExtractor.features` equals the exported model run on
``_preprocess.to_tensor(image, COMPACT_CLASSIFIER)``.

Example:
    >>> import io
    >>> from PIL import Image
    >>> def png(colour):
    ...     buffer = io.BytesIO()
    ...     Image.new("RGB", (64, 64), colour).save(buffer, "PNG")
    ...     return buffer.getvalue()
    >>> images = [png((200, 10 * i, 0)) for i in range(5)] + [png((0, 10 * i, 200)) for i in range(5)]
    >>> features = get_feature_extractor().features(images)
    >>> head = train_head(features, [[0]] * 5 + [[1]] * 5, ["red", "blue"])
    >>> head.predict_proba(get_feature_extractor().features([png((220, 30, 10))])).argmax()
    np.int64(0)
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from typing import Any, TypeVar

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from azvision._preprocess import COMPACT_CLASSIFIER, PreprocessSpec, to_batch, upright_rgb

__all__ = [
    "FEATURE_DIM",
    "FeatureExtractor",
    "LinearHead",
    "Performance",
    "TagScore",
    "build_export_zip",
    "cross_validate",
    "export_model_bytes",
    "get_feature_extractor",
    "train_head",
]

#: Width of the backbone's feature vector.
FEATURE_DIM = 512
_FEATURE_TENSOR = "pool10_65_flattened"
_OUTPUT_TENSOR = "model_output"
_BACKBONE_ASSET = "compact_backbone.onnx"
_LICENSE_ASSET = "LICENSE"
_BATCH = 16
# Measured on generated shapes and on skimage photos (see tests/integration/test_learner.py):
# 1e-2 keeps held-out accuracy high with ~15 images a class and gives confident probabilities.
_L2 = 1e-2
_ITERATIONS = 300
_HEAD_FORMAT = "azvision.linear_head/1"
_T = TypeVar("_T")


def _asset_bytes(name: str) -> bytes:
    return resources.files("azvision.emulator").joinpath("assets", name).read_bytes()


@cache
def _backbone_bytes() -> bytes:
    return _asset_bytes(_BACKBONE_ASSET)


class FeatureExtractor:
    """Frozen pretrained backbone (the MIT-licensed 2018 Custom Vision compact export shipped in
    ``azvision/emulator/assets/``), cut at its 512-d ``pool10_65_flattened`` tensor.

    Thread-safe: onnxruntime sessions may be run from several threads at once.

    Example:
        >>> extractor = get_feature_extractor()
        >>> extractor.input_size, extractor.spec.channel_order
        (224, 'BGR')
    """

    def __init__(self) -> None:
        options = ort.SessionOptions()
        # The emulator shares the machine with the client under test: no busy-waiting threads.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(_backbone_bytes(), options, providers=["CPUExecutionProvider"])
        #: The preprocessing the exported models declare (BGR, 0-255, 256 square, 224 crop).
        self.spec: PreprocessSpec = COMPACT_CLASSIFIER
        #: Side of the square input the export uses.
        self.input_size: int = self.spec.size[0]

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
            batch = to_batch([load(item, start + offset) for offset, item in enumerate(chunk)], self.spec)
            out[start : start + len(chunk)] = self._session.run([_FEATURE_TENSOR], {"data": batch})[0]
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
    """The process-wide :class:`FeatureExtractor`, created on first use (thread-safe).

    Example:
        >>> get_feature_extractor() is get_feature_extractor()
        True
    """
    global _extractor
    with _extractor_lock:
        if _extractor is None:
            _extractor = FeatureExtractor()
        return _extractor


@dataclass(frozen=True, eq=False)
class LinearHead:
    """A trained classification head on raw backbone features (standardisation folded in).

    Attributes:
        labels: class names; column ``j`` of every output is ``labels[j]`` (``labels.txt`` order).
        weights: float32 ``(512, k)``.
        bias: float32 ``(k,)``.
        multilabel: independent sigmoids instead of a softmax.

    Example:
        >>> head = LinearHead(("a", "b"), np.zeros((512, 2), np.float32), np.zeros(2, np.float32), False)
        >>> head.predict_proba(np.ones((1, 512), np.float32)).tolist()
        [[0.5, 0.5]]
    """

    labels: tuple[str, ...]
    weights: np.ndarray
    bias: np.ndarray
    multilabel: bool

    def __post_init__(self) -> None:
        k = len(self.labels)
        if k == 0:
            raise ValueError("a head needs at least one label")
        if self.weights.shape != (FEATURE_DIM, k) or self.bias.shape != (k,):
            raise ValueError(
                f"weights {self.weights.shape} and bias {self.bias.shape} do not fit "
                f"{FEATURE_DIM} features and {k} labels"
            )

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Float32 ``(n, k)`` probabilities: softmax over labels, or a sigmoid per label.

        Example:
            >>> head = LinearHead(("x",), np.zeros((512, 1), np.float32), np.ones(1, np.float32), True)
            >>> round(float(head.predict_proba(np.zeros((1, 512)))[0, 0]), 4)
            0.7311
        """
        logits = np.asarray(features, dtype=np.float64) @ self.weights + self.bias
        probabilities = _sigmoid(logits) if self.multilabel else _softmax(logits)
        return probabilities.astype(np.float32)

    def to_json(self) -> dict[str, object]:
        """A JSON-serialisable dict that :meth:`from_json` turns back into an equal head.

        Example:
            >>> head = LinearHead(("a",), np.ones((512, 1), np.float32), np.zeros(1, np.float32), True)
            >>> LinearHead.from_json(head.to_json()).weights.sum()
            np.float32(512.0)
        """
        return {
            "format": _HEAD_FORMAT,
            "labels": list(self.labels),
            "multilabel": self.multilabel,
            "weights": _encode_array(self.weights),
            "bias": _encode_array(self.bias),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> LinearHead:
        """Rebuild a head from :meth:`to_json` output.

        Raises:
            ValueError: ``data`` is not a serialised head.

        Example:
            >>> LinearHead.from_json({"format": "something else"})
            Traceback (most recent call last):
            ...
            ValueError: not a serialised LinearHead (format 'something else')
        """
        if data.get("format") != _HEAD_FORMAT:
            raise ValueError(f"not a serialised LinearHead (format {data.get('format')!r})")
        labels = data.get("labels")
        multilabel = data.get("multilabel")
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise ValueError("a serialised LinearHead needs a list of string labels")
        if not isinstance(multilabel, bool):
            raise ValueError("a serialised LinearHead needs a boolean 'multilabel'")
        k = len(labels)
        weights = _decode_array(data.get("weights"), (FEATURE_DIM, k))
        bias = _decode_array(data.get("bias"), (k,))
        return cls(tuple(labels), weights, bias, multilabel)


def _encode_array(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def _decode_array(encoded: object, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(encoded, str):
        raise ValueError("a serialised LinearHead stores its arrays as base64 strings")
    raw = base64.b64decode(encoded, validate=True)
    if len(raw) != 4 * int(np.prod(shape)):
        raise ValueError(f"a serialised array has {len(raw)} bytes, expected shape {shape}")
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    result: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
    return result


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.exp(-np.logaddexp(0.0, -logits))
    return result


def _target_matrix(targets: Sequence[Sequence[int]], k: int, n: int, *, multilabel: bool) -> np.ndarray:
    if len(targets) != n:
        raise ValueError(f"{n} feature rows but {len(targets)} target lists")
    matrix = np.zeros((n, k), dtype=np.float64)
    for row, tags in enumerate(targets):
        if not multilabel and len(tags) != 1:
            raise ValueError(f"image {row} has {len(tags)} tags; multiclass needs exactly one")
        for tag in tags:
            if not 0 <= tag < k:
                raise ValueError(f"image {row} has tag index {tag}, outside 0..{k - 1}")
            matrix[row, tag] = 1.0
    return matrix


def _check_inputs(features: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != FEATURE_DIM:
        raise ValueError(f"features must have shape (n, {FEATURE_DIM}), got {array.shape}")
    if not labels:
        raise ValueError("at least one label is needed")
    if len(set(labels)) != len(labels):
        raise ValueError("labels must be unique")
    return array


def train_head(
    features: np.ndarray,
    targets: Sequence[Sequence[int]],
    labels: Sequence[str],
    *,
    multilabel: bool = False,
    seed: int = 0,
) -> LinearHead:
    """Fit a logistic-regression head on backbone features.

    Full-batch Nesterov gradient descent for a fixed number of steps on the L2-regularised
    cross-entropy of standardised features; the standardisation is then folded into the
    returned weights. The objective is strictly convex and the optimiser starts from zero, so
    the result is deterministic; ``seed`` is accepted so that callers can pass one seed to
    every learner function, and does not change it.

    Args:
        features: ``(n, 512)`` from :meth:`FeatureExtractor.features`.
        targets: for each image, the indices (into ``labels``) of its tags; exactly one each
            unless ``multilabel``.
        labels: class names, in output order.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = np.vstack([rng.normal(0, 1, (10, 512)), rng.normal(1, 1, (10, 512))])
        >>> head = train_head(x, [[0]] * 10 + [[1]] * 10, ["low", "high"])
        >>> head.predict_proba(x).argmax(axis=1).tolist() == [0] * 10 + [1] * 10
        True
    """
    del seed
    x = _check_inputs(features, labels)
    n, k = len(x), len(labels)
    if n == 0:
        raise ValueError("no training images")
    y = _target_matrix(targets, k, n, multilabel=multilabel)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)
    standardised = (x - mean) / std
    # Gradients from a zero start stay in the row space of the (centred) features, and so does
    # the penalised optimum: train in its r <= n-1 principal coordinates. Same iterates, much
    # smaller products for the usual n < 512, and a diagonal Gram matrix. The bias column is
    # orthogonal to centred coordinates.
    _, singular, basis = np.linalg.svd(standardised, full_matrices=False)
    rank = int((singular > 1e-9 * singular.max(initial=0.0)).sum())
    basis = basis[:rank]
    design = np.hstack([standardised @ basis.T, np.ones((n, 1))])

    # Step 1/L from the curvature bound of the loss, 1/2 (softmax) or 1/4 (sigmoid) times the
    # largest eigenvalue of the design's Gram matrix, which is diagonal: (s_i^2 / n, 1).
    curvature = 0.25 if multilabel else 0.5
    gram_max = max(float(singular[0]) ** 2 / n if rank else 0.0, 1.0)
    lipschitz = curvature * gram_max + _L2
    step = 1.0 / lipschitz
    momentum = (np.sqrt(lipschitz) - np.sqrt(_L2)) / (np.sqrt(lipschitz) + np.sqrt(_L2))
    penalty = np.ones((rank + 1, 1))
    penalty[-1] = 0.0  # the bias is not regularised

    theta = np.zeros((rank + 1, k))
    lookahead = theta
    for _ in range(_ITERATIONS):
        logits = design @ lookahead
        probabilities = _sigmoid(logits) if multilabel else _softmax(logits)
        gradient = design.T @ (probabilities - y) / n + _L2 * penalty * lookahead
        updated = lookahead - step * gradient
        lookahead = updated + momentum * (updated - theta)
        theta = updated

    scaled = (basis.T @ theta[:-1]) / std[:, None]
    bias = theta[-1] - mean @ scaled
    return LinearHead(
        labels=tuple(labels),
        weights=scaled.astype(np.float32),
        bias=bias.astype(np.float32),
        multilabel=multilabel,
    )


@dataclass(frozen=True)
class TagScore:
    """Held-out quality of one tag at the evaluation threshold (fractions in [0, 1]).

    Example:
        >>> TagScore(1.0, 0.5, 0.75, 0.0, 0.1).recall
        0.5
    """

    precision: float
    recall: float
    average_precision: float
    precision_std: float
    recall_std: float


@dataclass(frozen=True)
class Performance:
    """Held-out quality of a whole iteration, as the service reports it.

    ``precision``/``recall`` are pooled over all tags' predictions at the threshold,
    ``average_precision`` is the mean of the tags' average precisions, and each ``*_std`` is
    the standard deviation of that number across the cross-validation folds.

    Example:
        >>> Performance({}, 1.0, 1.0, 1.0, 0.0, 0.0).average_precision
        1.0
    """

    per_tag: dict[str, TagScore]
    precision: float
    recall: float
    average_precision: float
    precision_std: float
    recall_std: float


def cross_validate(
    features: np.ndarray,
    targets: Sequence[Sequence[int]],
    labels: Sequence[str],
    *,
    multilabel: bool = False,
    threshold: float = 0.5,
    folds: int = 5,
    seed: int = 0,
) -> Performance:
    """Estimate precision, recall and average precision on held-out folds.

    Stratified k-fold (multilabel images are stratified by their rarest tag); ``folds`` drops
    to the image count of the smallest tag when that is lower, and never below 2. Every image
    is predicted once, by a head trained without it.

    Raises:
        ValueError: fewer than 2 images, or malformed targets.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = np.vstack([rng.normal(0, 1, (10, 512)), rng.normal(1, 1, (10, 512))])
        >>> cross_validate(x, [[0]] * 10 + [[1]] * 10, ["low", "high"]).precision
        1.0
    """
    x = _check_inputs(features, labels)
    n, k = len(x), len(labels)
    if n < 2:
        raise ValueError("cross-validation needs at least 2 images")
    y = _target_matrix(targets, k, n, multilabel=multilabel)
    counts = y.sum(axis=0)
    present = counts[counts > 0]
    n_folds = max(2, min(folds, int(present.min()) if present.size else folds, n))
    fold_of = _stratified_folds(y, counts, n_folds, seed)

    scores = np.zeros((n, k))
    for fold in range(n_folds):
        held_out = fold_of == fold
        train_rows = np.flatnonzero(~held_out)
        head = train_head(
            x[train_rows],
            [targets[row] for row in train_rows.tolist()],
            labels,
            multilabel=multilabel,
        )
        scores[held_out] = head.predict_proba(x[held_out])

    predicted = scores >= threshold
    truth = y > 0
    per_tag: dict[str, TagScore] = {}
    for j, label in enumerate(labels):
        fold_precision, fold_recall = _per_fold(predicted[:, j], truth[:, j], fold_of, n_folds)
        per_tag[label] = TagScore(
            precision=_ratio((predicted[:, j] & truth[:, j]).sum(), predicted[:, j].sum()),
            recall=_ratio((predicted[:, j] & truth[:, j]).sum(), truth[:, j].sum()),
            average_precision=_average_precision(scores[:, j], truth[:, j]),
            precision_std=_std(fold_precision),
            recall_std=_std(fold_recall),
        )
    fold_precision, fold_recall = _per_fold(predicted, truth, fold_of, n_folds)
    tags_with_images = [per_tag[label] for j, label in enumerate(labels) if counts[j] > 0]
    return Performance(
        per_tag=per_tag,
        precision=_ratio((predicted & truth).sum(), predicted.sum()),
        recall=_ratio((predicted & truth).sum(), truth.sum()),
        average_precision=float(np.mean([t.average_precision for t in tags_with_images]))
        if tags_with_images
        else 0.0,
        precision_std=_std(fold_precision),
        recall_std=_std(fold_recall),
    )


def _stratified_folds(y: np.ndarray, counts: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Each image's stratum is its rarest tag (its only tag, for multiclass); untagged images
    # form one more stratum.
    rarity = np.where(y > 0, counts[None, :], np.inf)
    stratum = np.where(y.any(axis=1), rarity.argmin(axis=1), y.shape[1])
    fold_of = np.empty(len(y), dtype=np.int64)
    next_fold = 0
    for group in np.unique(stratum):
        members = rng.permutation(np.flatnonzero(stratum == group))
        fold_of[members] = (next_fold + np.arange(len(members))) % n_folds
        next_fold = (next_fold + len(members)) % n_folds
    return fold_of


def _per_fold(
    predicted: np.ndarray, truth: np.ndarray, fold_of: np.ndarray, n_folds: int
) -> tuple[list[float], list[float]]:
    precisions: list[float] = []
    recalls: list[float] = []
    for fold in range(n_folds):
        rows = fold_of == fold
        hits = int((predicted[rows] & truth[rows]).sum())
        if predicted[rows].sum():
            precisions.append(hits / int(predicted[rows].sum()))
        if truth[rows].sum():
            recalls.append(hits / int(truth[rows].sum()))
    return precisions, recalls


def _ratio(numerator: Any, denominator: Any) -> float:
    return float(numerator) / float(denominator) if denominator else 0.0


def _std(values: list[float]) -> float:
    return float(np.std(values)) if values else 0.0


def _average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    positives = int(truth.sum())
    if positives == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    hits = truth[order]
    precision_at_hits = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    return float(precision_at_hits.sum() / positives)


def build_export_zip(
    head: LinearHead,
    *,
    iteration_id: str,
    exported_at: datetime,
    domain_type: str = "Classification",
) -> bytes:
    """A ZIP laid out like the service's compact-classifier ONNX export.

    ``model.onnx`` (backbone + head: input ``data`` float32 ``[None, 3, 224, 224]`` BGR 0-255,
    output ``model_output`` ``[None, k]``), ``labels.txt``, ``cvexport.manifest``,
    ``metadata_properties.json`` and ``LICENSE``, with the byte conventions of the real files
    (reference §1.1). The same arguments always give the same bytes. A naive ``exported_at``
    is taken as UTC.

    Raises:
        ValueError: ``domain_type`` is not ``"Classification"`` (the emulator trains no
            detectors), or a label contains a line break.

    Example:
        >>> head = LinearHead(("a", "b"), np.zeros((512, 2), np.float32), np.zeros(2, np.float32), False)
        >>> blob = build_export_zip(head, iteration_id="0" * 32, exported_at=datetime(2024, 1, 1))
        >>> sorted(zipfile.ZipFile(io.BytesIO(blob)).namelist())
        ['LICENSE', 'cvexport.manifest', 'labels.txt', 'metadata_properties.json', 'model.onnx']
    """
    if domain_type != "Classification":
        raise ValueError(f"the emulator exports classifiers only, not {domain_type!r}")
    if any("\n" in label or "\r" in label for label in head.labels):
        raise ValueError("labels.txt cannot hold a label with a line break")
    when = (
        exported_at.replace(tzinfo=timezone.utc)
        if exported_at.tzinfo is None
        else exported_at.astimezone(timezone.utc)
    )
    model = export_model_bytes(head)
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
        "LICENSE": _asset_bytes(_LICENSE_ASSET),
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
    model.ParseFromString(_backbone_bytes())
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
                [_FEATURE_TENSOR, "model_head_weights", "model_head_bias"],
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


def _export_metadata(head: LinearHead) -> dict[str, str]:
    crop_h, crop_w = COMPACT_CLASSIFIER.size
    side = str(COMPACT_CLASSIFIER.square_side)
    method = "ClassificationMultiLabel" if head.multilabel else "ClassificationMultiClass"
    return {
        "CustomVision.Metadata.AdditionalModelInfo": "",
        "CustomVision.Metadata.Version": "1.2",
        "CustomVision.Postprocess.Method": method,
        "CustomVision.Postprocess.Yolo.Biases": "[]",
        "CustomVision.Postprocess.Yolo.NmsThreshold": "0.0",
        "CustomVision.Preprocess.CropHeight": str(crop_h),
        "CustomVision.Preprocess.CropMethod": "OneCropCenter",
        "CustomVision.Preprocess.CropWidth": str(crop_w),
        "CustomVision.Preprocess.MaxDimension": "0",
        "CustomVision.Preprocess.MaxScale": "0.0",
        "CustomVision.Preprocess.MinDimension": "0",
        "CustomVision.Preprocess.MinScale": "0.0",
        "CustomVision.Preprocess.NormalizeMean": "[0.0, 0.0, 0.0]",
        "CustomVision.Preprocess.NormalizeStd": "[1.0, 1.0, 1.0]",
        "CustomVision.Preprocess.ResizeMethod": "ByShorterSide",
        "CustomVision.Preprocess.TargetHeight": side,
        "CustomVision.Preprocess.TargetWidth": side,
        # The real service writes these three values whatever the model expects (reference
        # §2.2); readers must take them from model.onnx's metadata_props instead.
        "Image.BitmapPixelFormat": "Rgb8",
        "Image.ColorSpaceGamma": "SRGB",
        "Image.NominalPixelRange": "Normalized_0_1",
    }


def _dotnet_utc(moment: datetime) -> str:
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"
