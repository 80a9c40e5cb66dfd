"""Request encoders and response parsers for Azure ML online endpoints: pure functions, no I/O.

A scoring script decides its own wire format, so the backend ships the common ones as presets: encoders
turn a `LoadedImage` into ``(content_type, body)``; parsers turn the endpoint's JSON into labels.
`parse_answer` is the one place an answer becomes a `Prediction`.

Example:
    >>> parse_answer(b'[{"probs": [0.1, 0.9], "labels": ["cat", "dog"]}]').label
    'dog'
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._error_mapping import _snippet
from .._errors import AzVisionError, ConfigurationError, InvalidImageError, ServiceError
from .._images import LoadedImage
from .._models import BoundingBox, Label, Prediction, service_confidence

__all__ = [
    "ENCODERS",
    "PARSERS",
    "Encoder",
    "Parser",
    "check_parser",
    "encode_automl",
    "encode_json",
    "encode_raw",
    "parse_answer",
]

#: A request encoder: one image in, ``(content_type, body)`` out.
Encoder = Callable[[LoadedImage], tuple[str, bytes]]
#: A custom response parser: the decoded JSON (or the body text when it is not JSON) in, labels out.
Parser = Callable[[Any], Prediction | Sequence[Label] | Mapping[str, float]]
_Preset = Callable[[Any, Sequence[str] | None], list[Label] | None]

_BACKEND = "azure_ml"
_CONFIDENCE_KEYS = ("confidence", "probability", "score")


class _UnreadableError(ValueError):
    """The answer has a known shape but unusable content; the message says what is wrong."""


# -- request encoders ----------------------------------------------------------------------------------
def _image_bytes(image: LoadedImage) -> bytes:
    if image.data is None:
        raise InvalidImageError("Azure ML endpoints take image bytes, not URLs", source=image.source)
    return image.data


def _base64(image: LoadedImage) -> str:
    return base64.b64encode(_image_bytes(image)).decode("ascii")


def encode_raw(image: LoadedImage) -> tuple[str, bytes]:
    """The image bytes as they are (for a ``@rawhttp`` scoring script reading ``request.get_data()``).

    Example:
        >>> encode_raw(LoadedImage(data=b"\\x89PNG..."))
        ('application/octet-stream', b'\\x89PNG...')
    """
    return "application/octet-stream", _image_bytes(image)


def encode_automl(image: LoadedImage) -> tuple[str, bytes]:
    """The AutoML-for-Images / MLflow input: ``{"input_data": {"columns": ["image"], "data": [b64]}}``.

    Example:
        >>> encode_automl(LoadedImage(data=b"abc"))[1]
        b'{"input_data": {"columns": ["image"], "data": ["YWJj"]}}'
    """
    body = {"input_data": {"columns": ["image"], "data": [_base64(image)]}}
    return "application/json", json.dumps(body).encode()


def encode_json(image: LoadedImage) -> tuple[str, bytes]:
    """A JSON object with the image in base64: ``{"image": "<base64>"}``.

    Example:
        >>> encode_json(LoadedImage(data=b"abc"))
        ('application/json', b'{"image": "YWJj"}')
    """
    return "application/json", json.dumps({"image": _base64(image)}).encode()


#: The ``request_format`` presets.
ENCODERS: dict[str, Encoder] = {"raw": encode_raw, "automl": encode_automl, "json": encode_json}


# -- response parsers ----------------------------------------------------------------------------------
def _confidence(value: Any, where: str) -> float:
    try:
        return service_confidence(value, backend=_BACKEND, what=where)
    except ServiceError as exc:  # said again with the first bytes of the body, by parse_answer
        raise _UnreadableError(exc.message) from None


def _zip(names: Sequence[Any], probs: Any) -> list[Label]:
    if not isinstance(probs, list) or len(probs) != len(names):
        count = len(probs) if isinstance(probs, list) else "no"
        raise _UnreadableError(f"{len(names)} labels but {count} probabilities")
    return [
        Label(name=str(n), confidence=_confidence(p, f"the probability of {n!r}"))
        for n, p in zip(names, probs, strict=True)
    ]


def _only(data: Any) -> Any:
    """The entry for our one image: services answer a list with one entry per input."""
    return data[0] if isinstance(data, list) and len(data) == 1 else data


def _automl(data: Any, names: Sequence[str] | None) -> list[Label] | None:
    """``[{"probs": [...], "labels": [...]}]`` or detection ``[{"boxes": [{"box", "label", "score"}]}]``."""
    entry = _only(data)
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("boxes"), list):
        return [_automl_box(item) for item in entry["boxes"]]
    if "probs" not in entry:
        return None
    labels = entry.get("labels", names)
    if labels is None:
        raise _UnreadableError("the answer has probabilities without label names; pass labels=[...]")
    return _zip(labels, entry["probs"])


def _automl_box(item: Any) -> Label:
    box = item.get("box") if isinstance(item, dict) else None
    if not isinstance(box, dict) or not all(k in box for k in ("topX", "topY", "bottomX", "bottomY")):
        raise _UnreadableError(f"a detection has no topX/topY/bottomX/bottomY box: {item!r:.80}")
    try:
        x0, y0, x1, y1 = (float(box[k]) for k in ("topX", "topY", "bottomX", "bottomY"))
    except (TypeError, ValueError) as exc:
        raise _UnreadableError(f"a detection box is not numeric: {box!r:.80}") from exc
    name = item.get("label")
    return Label(
        name=str(name),
        confidence=_confidence(item.get("score"), f"the score of {name!r}"),
        box=BoundingBox.clipped(x0, y0, x1 - x0, y1 - y0),
    )


def _label_confidence(data: Any, names: Sequence[str] | None) -> list[Label] | None:
    """``{"label": "cat", "confidence": 0.9}`` (also ``probability`` or ``score``)."""
    entry = _only(data)
    if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
        return None
    key = next((k for k in _CONFIDENCE_KEYS if k in entry), None)
    if key is None:
        return None
    return [
        Label(name=entry["label"], confidence=_confidence(entry[key], f"the {key} of {entry['label']!r}"))
    ]


def _named_list(items: list[Any]) -> list[Label]:
    out = []
    for item in items:
        key = next((k for k in _CONFIDENCE_KEYS if k in item), None) if isinstance(item, dict) else None
        if key is None or "name" not in item:
            raise _UnreadableError(f"a label is not {{name, confidence}}: {item!r:.80}")
        out.append(
            Label(name=str(item["name"]), confidence=_confidence(item[key], f"the {key} of {item['name']!r}"))
        )
    return out


def _labels_probabilities(data: Any, names: Sequence[str] | None) -> list[Label] | None:
    """``{"labels": [...], "probabilities": [...]}`` or ``{"labels": [{"name", "confidence"}, ...]}``."""
    entry = _only(data)
    if not isinstance(entry, dict) or not isinstance(entry.get("labels"), list):
        return None
    probs = next((entry[k] for k in ("probabilities", "probs", "scores") if k in entry), None)
    if probs is not None:
        return _zip(entry["labels"], probs)
    return _named_list(entry["labels"])


def _custom_vision(data: Any, names: Sequence[str] | None) -> list[Label] | None:
    """The Custom Vision container's ``{"predictions": [{"tagName", "probability", "boundingBox"?}]}``."""
    if not isinstance(data, dict) or not isinstance(data.get("predictions"), list):
        return None
    out = []
    for item in data["predictions"]:
        if not isinstance(item, dict) or "tagName" not in item:
            raise _UnreadableError(f"a prediction has no tagName: {item!r:.80}")
        name, box = str(item["tagName"]), item.get("boundingBox")
        out.append(
            Label(
                name=name,
                confidence=_confidence(item.get("probability"), f"the probability of {name!r}"),
                id=str(item["tagId"]) if item.get("tagId") is not None else None,
                box=None if box is None else _ltwh_box(box),
            )
        )
    return out


def _ltwh_box(box: Any) -> BoundingBox:
    try:
        return BoundingBox.clipped(*(float(box[k]) for k in ("left", "top", "width", "height")))
    except (TypeError, ValueError, KeyError) as exc:
        raise _UnreadableError(f"a boundingBox is not {{left, top, width, height}}: {box!r:.80}") from exc


def _bare_probabilities(data: Any, names: Sequence[str] | None) -> list[Label] | None:
    """``[0.1, 0.9]`` or one row of it, ``[[0.1, 0.9]]`` (what ``predict_proba(...).tolist()`` returns)."""
    row = data[0] if isinstance(data, list) and len(data) == 1 and isinstance(data[0], list) else data
    if not isinstance(row, list) or not row or not all(isinstance(p, (int, float)) for p in row):
        return None
    if names is None:
        raise _UnreadableError("the answer is bare probabilities without label names; pass labels=[...]")
    return _zip(names, row)


def _name_to_probability(data: Any, names: Sequence[str] | None) -> list[Label] | None:
    """``{"cat": 0.9, "dog": 0.1}``."""
    entry = _only(data)
    if not isinstance(entry, dict) or not entry:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry.values()):
        return None
    return [
        Label(name=str(k), confidence=_confidence(v, f"the probability of {k!r}")) for k, v in entry.items()
    ]


#: The ``parser`` presets, in the order they are tried when ``parser=None``.
PARSERS: dict[str, _Preset] = {
    "automl": _automl,
    "label": _label_confidence,
    "labels": _labels_probabilities,
    "custom_vision": _custom_vision,
    "probabilities": _bare_probabilities,
    "mapping": _name_to_probability,
}


def _decode(body: bytes) -> Any:
    """The JSON value; strings holding JSON are unwrapped (the inference server `json.dumps` str returns)."""
    data: Any = json.loads(body)
    for _ in range(3):
        if not isinstance(data, str):
            break
        try:
            data = json.loads(data)
        except ValueError:
            break
    return data


def _custom_labels(result: Any) -> list[Label]:
    if isinstance(result, Mapping):
        return [
            Label(name=str(k), confidence=_confidence(v, f"the probability of {k!r}"))
            for k, v in result.items()
        ]
    if (
        isinstance(result, Sequence)
        and not isinstance(result, str)
        and all(isinstance(x, Label) for x in result)
    ):
        return list(result)
    raise ConfigurationError(
        f"the parser returned {type(result).__name__}; it must return a Prediction, a sequence of Label "
        "or a mapping of label name to probability"
    )


def check_parser(parser: str | Parser | None) -> str | Parser | None:
    """Validate a ``parser`` argument: ``None``, a callable, or a preset name from `PARSERS`.

    Example:
        >>> check_parser("automl")
        'automl'
    """
    if parser is None or callable(parser) or parser in PARSERS:
        return parser
    raise ConfigurationError(
        f"unknown parser {parser!r}: pass a callable or one of {', '.join(PARSERS)} (or None to auto-detect)"
    )


def parse_answer(
    body: bytes,
    *,
    parser: str | Parser | None = None,
    labels: Sequence[str] | None = None,
    model: str | None = None,
) -> Prediction:
    """Map an endpoint's answer to a `Prediction`; `ServiceError` when it cannot.

    ``parser`` is a preset name from `PARSERS`, a callable, or ``None`` to try every preset in order.
    ``labels`` names the classes when the model answers bare probabilities.

    Example:
        >>> parse_answer(b'{"label": "cat", "confidence": 0.8}', model="blue").model
        'blue'
    """
    parser = check_parser(parser)
    try:
        data: Any = _decode(body)
    except ValueError:
        if not callable(parser):
            raise _unparseable(body, "it is not JSON") from None
        data = body.decode("utf-8", "replace")
    try:
        if callable(parser):
            return _from_custom(parser, data, model)
        if parser is not None:
            found = PARSERS[parser](data, labels)
        else:
            found = next(
                (got for preset in PARSERS.values() if (got := preset(data, labels)) is not None), None
            )
    except _UnreadableError as exc:
        raise _unparseable(body, str(exc)) from exc.__cause__
    if found is None:
        hint = f"it is not the {parser!r} shape" if parser else "no preset parser knows this shape"
        raise _unparseable(body, hint + "; pass parser=... to read it")
    return Prediction(labels=tuple(found), backend=_BACKEND, model=model, raw=data)


def _from_custom(parser: Parser, data: Any, model: str | None) -> Prediction:
    try:
        result = parser(data)
    except AzVisionError:
        raise
    except Exception as exc:  # the user's parser failed on this body: name the body, keep the cause
        raise _UnreadableError(f"the parser raised {type(exc).__name__}: {exc}") from exc
    if isinstance(result, Prediction):
        raw = result.raw if result.raw is not None else data
        return result.model_copy(update={"backend": _BACKEND, "model": result.model or model, "raw": raw})
    return Prediction(labels=tuple(_custom_labels(result)), backend=_BACKEND, model=model, raw=data)


def _unparseable(body: bytes, reason: str) -> ServiceError:
    return ServiceError(
        f"could not parse the endpoint's answer: first bytes {_snippet(body)} ({reason})", backend=_BACKEND
    )
