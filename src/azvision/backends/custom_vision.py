"""Prediction on a published Custom Vision iteration, through the official ``CustomVisionPredictionClient``.

The vendor client runs unchanged; this module only switches its own retries off (the SDK has exactly one
retry layer, in `BaseBackend`), sets its timeout, picks the route
(classify/detect, image/url, stored/nostore) and maps the service's JSON to a `Prediction` in one
pure function, `prediction_from_custom_vision`.

Example:
    >>> from azvision import CustomVisionBackend
    >>> with CustomVisionBackend(  # doctest: +SKIP
    ...     "https://myres.cognitiveservices.azure.com/", "<prediction key>",
    ...     "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b", "Iteration1", store=False,
    ... ) as clf:
    ...     clf.classify("cat.jpg").label
    'cat'
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from .._config import ENV, Secret, endpoint_setting, secret_setting, setting, uuid_setting
from .._cv_sdk import prediction_client
from .._detections import check_detection_options, filter_detections
from .._error_mapping import error_from_msrest
from .._errors import AzVisionError, ConfigurationError, ServiceError
from .._images import COMMON_FORMATS, ImageLimits, LoadedImage
from .._models import BoundingBox, Label, Prediction, service_confidence
from .._retry import RetryPolicy
from ._base import BaseBackend

if TYPE_CHECKING:
    from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient

__all__ = ["CustomVisionBackend", "prediction_from_custom_vision"]

Task = Literal["classification", "detection"]
_TASKS: dict[str, str] = {"classification": "classify", "detection": "detect"}
_NAME = "custom_vision"


def _box(value: Any, tag: str) -> BoundingBox | None:
    if value is None:
        return None
    try:
        left, top = float(value["left"]), float(value["top"])
        width, height = float(value["width"]), float(value["height"])
    except (TypeError, KeyError, ValueError) as exc:
        raise ServiceError(
            f"Custom Vision sent a malformed boundingBox for tag {tag!r}: {value!r}", backend=_NAME
        ) from exc
    return BoundingBox.clipped(left, top, width, height)


def prediction_from_custom_vision(
    body: Mapping[str, Any], *, iteration: str | None = None, source: str | None = None
) -> Prediction:
    """Map a Custom Vision ``ImagePrediction`` JSON body to a `Prediction`.

    Every ``predictions[]`` entry becomes a `Label` (``tagName``, ``probability``, ``tagId``); a
    ``boundingBox`` (detection) becomes ``Label.box``, clipped to the image. ``model`` is the publish name
    asked for (the body only carries the iteration id). Raises `ServiceError` on a malformed body.

    Example:
        >>> body = {"id": "9510", "predictions": [
        ...     {"tagId": "e31f", "tagName": "Hemlock", "probability": 0.05},
        ...     {"tagId": "349d", "tagName": "Japanese Cherry", "probability": 0.93}]}
        >>> p = prediction_from_custom_vision(body, iteration="Iteration1")
        >>> p.label, p.confidence, p.labels[0].id, p.model
        ('Japanese Cherry', 0.93, '349d', 'Iteration1')
    """
    if not isinstance(body, Mapping):
        raise ServiceError(
            f"Custom Vision sent {type(body).__name__} instead of a JSON object", backend=_NAME
        )
    entries = body.get("predictions")
    if not isinstance(entries, list):
        raise ServiceError("Custom Vision sent an answer without a 'predictions' list", backend=_NAME)
    labels = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("tagName"), str):
            raise ServiceError(f"Custom Vision sent a malformed prediction entry: {entry!r}", backend=_NAME)
        name = entry["tagName"]
        tag_id = entry.get("tagId")
        labels.append(
            Label(
                name=name,
                confidence=service_confidence(entry.get("probability"), backend=_NAME, what=f"tag {name!r}"),
                box=_box(entry.get("boundingBox"), name),
                id=str(tag_id) if tag_id is not None else None,
            )
        )
    return Prediction(labels=tuple(labels), backend=_NAME, model=iteration, source=source, raw=dict(body))


class CustomVisionBackend(BaseBackend):
    """A published Custom Vision iteration as a `Classifier`.

    Args:
        endpoint: the prediction resource's endpoint (env ``CUSTOM_VISION_PREDICTION_ENDPOINT``).
        key: its prediction key (env ``CUSTOM_VISION_PREDICTION_KEY``); never shown in repr or errors.
        project_id: the project's UUID (env ``CUSTOM_VISION_PROJECT_ID``).
        iteration: the iteration's *publish name* (env ``CUSTOM_VISION_ITERATION_NAME``); also
            ``Prediction.model``.
        task: ``"classification"`` (classify routes) or ``"detection"`` (detect routes; ``Label.box`` set).
        min_confidence: labels (and boxes) below this confidence are dropped from the answer.
        nms_iou: with ``task="detection"``, also drop each box that overlaps a more confident box of the
            same label by more than this IoU (class-wise NMS, for detectors that return overlapping
            boxes); ``None`` keeps the service's boxes as they are.
        store: ``False`` uses the ``/nostore`` routes: the service keeps no copy of the image.
        application: optional application name the service records with stored predictions.
        max_rps: client-side request rate limit for this backend (``None``: unlimited).
        retry: the retry policy (default `RetryPolicy`).
        timeout: seconds per HTTP request.
        concurrency: requests in flight in ``classify_many`` (default: sized from ``max_rps``).
        labels: the project's tag names, when known: the label space a `Cascade` checks at construction
            (the prediction API cannot list them; `CustomVisionTrainer.classifier()` fills them in).

    Images are checked before sending (JPEG/PNG/GIF/BMP, 4 MB, at most 10240 px per side: larger ones are
    downscaled and ``Prediction.notes`` says so); ``http(s)://`` URLs go to the service's URL routes as URLs.

    Example:
        >>> clf = CustomVisionBackend(  # doctest: +SKIP
        ...     "https://myres.cognitiveservices.azure.com/", "<key>",
        ...     "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b", "Iteration1", task="detection")
        >>> [(lab.name, lab.box) for lab in clf.classify("shelf.jpg").labels[:2]]  # doctest: +SKIP
        >>> tidy = CustomVisionBackend(task="detection", min_confidence=0.3, nms_iou=0.5)  # doctest: +SKIP
    """

    name = _NAME
    image_limits = ImageLimits(
        service="Custom Vision prediction",
        max_bytes=4 * 1024 * 1024,
        max_side=10240,
        formats=COMMON_FORMATS,
        accepts_url=True,
    )

    def __init__(
        self,
        endpoint: str | None = None,
        key: str | Secret | None = None,
        project_id: str | None = None,
        iteration: str | None = None,
        *,
        task: Task = "classification",
        min_confidence: float = 0.0,
        nms_iou: float | None = None,
        store: bool = True,
        application: str | None = None,
        max_rps: float | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        concurrency: int | None = None,
        labels: Sequence[str] | None = None,
    ) -> None:
        if task not in _TASKS:
            raise ConfigurationError(f"task must be 'classification' or 'detection', got {task!r}")
        env = ENV["custom_vision"]
        self.endpoint = endpoint_setting(endpoint, arg="endpoint", env=env["endpoint"])
        key_secret = secret_setting(key, arg="key", env=env["key"])
        assert key_secret is not None
        self._key: Secret = key_secret
        self.project_id = uuid_setting(project_id, arg="project_id", env=env["project_id"])
        resolved_iteration = setting(iteration, arg="iteration", env=env["iteration"])
        assert resolved_iteration is not None
        self.iteration: str = resolved_iteration.strip()
        self.task: Task = task
        check_detection_options(min_confidence, nms_iou, backend=_NAME)
        self.min_confidence = min_confidence
        self.nms_iou = nms_iou
        self.store = store
        self.application = application
        #: The tag names this iteration answers in, when given (``None``: unknown).
        if isinstance(labels, str):  # the command line's --labels a,b,c
            labels = [part.strip() for part in labels.split(",") if part.strip()]
        self.labels: tuple[str, ...] | None = tuple(labels) if labels is not None else None
        super().__init__(max_rps=max_rps, retry=retry, timeout=timeout, concurrency=concurrency)
        self._client = self._make_client()

    def _make_client(self) -> CustomVisionPredictionClient:
        return prediction_client(self.endpoint, self._key, timeout=self.timeout)

    def _operation(self, *, url: bool) -> str:
        name = f"{_TASKS[self.task]}_image"
        if url:
            name += "_url"
        if not self.store:
            name += "_with_no_store"
        return name

    def _predict(self, image: LoadedImage) -> Prediction:
        payload: str | bytes | None = image.url if image.url is not None else image.data
        if payload is None:
            raise AzVisionError("a loaded image has neither bytes nor a URL", backend=self.name)
        call = getattr(self._client, self._operation(url=image.url is not None))
        try:
            answer = call(self.project_id, self.iteration, payload, application=self.application, raw=True)
            body = json.loads(answer.response.content)
        except Exception as exc:
            raise error_from_msrest(exc, backend=self.name, source=image.source) from exc
        prediction = prediction_from_custom_vision(body, iteration=self.iteration, source=image.source)
        if self.min_confidence == 0.0 and self.nms_iou is None:
            return prediction
        labels = filter_detections(
            prediction.labels, min_confidence=self.min_confidence, nms_iou=self.nms_iou
        )
        return prediction.model_copy(update={"labels": labels})

    def _close_clients(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(endpoint={self.endpoint!r}, project_id={self.project_id!r}, "
            f"iteration={self.iteration!r}, task={self.task!r}, store={self.store!r})"
        )
