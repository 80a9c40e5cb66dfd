"""The emulator's classification head: logistic regression on backbone features.

A multinomial (or, for multilabel projects, one-vs-rest) logistic regression on standardised
features; the standardisation is folded into the head's weights, so the exported graph is simply
backbone → Gemm → Softmax/Sigmoid, and `LinearHead.predict_proba` on
`FeatureExtractor.features` equals the exported model run on the same image.

Example:
    >>> import io
    >>> from PIL import Image
    >>> from azvision.emulator._features import get_feature_extractor
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from azvision.emulator._features import FEATURE_DIM

__all__ = ["LinearHead", "check_inputs", "target_matrix", "train_head"]

# Measured on generated shapes and on skimage photos (see tests/integration/test_learner.py):
# 1e-2 keeps held-out accuracy high with ~15 images a class and gives confident probabilities.
_L2 = 1e-2
_ITERATIONS = 300
_HEAD_FORMAT = "azvision.linear_head/1"


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
        """A JSON-serialisable dict that `from_json` turns back into an equal head.

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
        """Rebuild a head from `to_json` output.

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


def target_matrix(targets: Sequence[Sequence[int]], k: int, n: int, *, multilabel: bool) -> np.ndarray:
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


def check_inputs(features: np.ndarray, labels: Sequence[str]) -> np.ndarray:
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
        features: ``(n, 512)`` from `FeatureExtractor.features`.
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
    x = check_inputs(features, labels)
    n, k = len(x), len(labels)
    if n == 0:
        raise ValueError("no training images")
    y = target_matrix(targets, k, n, multilabel=multilabel)
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
