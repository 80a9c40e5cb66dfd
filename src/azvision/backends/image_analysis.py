"""Azure AI Vision: Image Analysis 4.0 tags, objects and captions, and the v3.2 86-category taxonomy.

Tags and objects go through the official ``ImageAnalysisClient`` with its retries off (the SDK has one retry
layer, in `BaseBackend`); ``mode="categories"`` calls Computer Vision v3.2
``analyze`` with httpx (`azvision.backends._vision32`), since 4.0 has no categories. Answers become a
`Prediction` in one pure function, `prediction_from_image_analysis`; a `LabelMap`
folds the open vocabulary into your own labels.

Example:
    >>> from azvision import ImageAnalysisBackend
    >>> clf = ImageAnalysisBackend(  # doctest: +SKIP
    ...     "https://myres.cognitiveservices.azure.com/", "<key>", features=("tags", "caption"),
    ...     label_map={"pet": ["dog", "cat", "puppy", "kitten"], "vehicle": ["car", "truck", "bus"]})
    >>> p = clf.classify("photo.jpg")  # doctest: +SKIP
    >>> p.label, p.caption  # doctest: +SKIP
    ('pet', 'a dog lying on a couch')
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import httpx
import requests
from azure.ai.vision.imageanalysis import ImageAnalysisClient
from azure.ai.vision.imageanalysis.models import VisualFeatures
from azure.core.credentials import AzureKeyCredential, TokenCredential
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .._config import ENV, Secret, endpoint_setting, secret_setting
from .._error_mapping import error_from_azure_core
from .._errors import ConfigurationError, ServiceError
from .._images import ImageLike, ImageLimits, LoadedImage, load_image
from .._models import BoundingBox, Label, Prediction, service_confidence
from .._retry import RetryPolicy
from ._base import BaseBackend
from ._taxonomy import CATEGORIES, LabelMap, LabelMapLike
from ._vision32 import V32_LIMITS, Vision32Client

__all__ = ["ImageAnalysisBackend", "LabelMap", "prediction_from_image_analysis"]

Mode = Literal["tags", "objects", "categories"]

_NAME = "image_analysis"
_MB = 1024 * 1024
_FEATURES = ("tags", "caption", "denseCaptions", "objects", "read", "smartCrops", "people")


def _scored(items: Any, name_key: str, score_key: str) -> list[Label]:
    if not isinstance(items, list):
        raise ServiceError(f"Image Analysis sent {items!r} where a list was expected", backend=_NAME)
    labels = []
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get(name_key), str):
            raise ServiceError(f"Image Analysis sent a malformed entry: {item!r}", backend=_NAME)
        labels.append(
            Label(
                name=item[name_key],
                confidence=service_confidence(item.get(score_key), backend=_NAME, what=repr(item[name_key])),
            )
        )
    return labels


def _section(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = body.get(key) or {}
    if not isinstance(value, Mapping):
        raise ServiceError(f"Image Analysis sent a malformed {key!r}: {value!r}", backend=_NAME)
    return value


def _caption(body: Mapping[str, Any]) -> str | None:
    """``captionResult.text`` (4.0) or the first ``description.captions`` text (v3.2)."""
    text = _section(body, "captionResult").get("text")
    captions = _section(body, "description").get("captions")
    if text is None and isinstance(captions, list) and captions and isinstance(captions[0], Mapping):
        text = captions[0].get("text")
    return text if isinstance(text, str) else None


def _objects(body: Mapping[str, Any]) -> list[tuple[BoundingBox, list[Label]]]:
    """Each detected object's box (normalised by the image size in ``metadata``) and its tags."""
    meta = _section(body, "metadata")
    width, height = meta.get("width"), meta.get("height")
    if (
        not isinstance(width, (int, float))
        or not isinstance(height, (int, float))
        or width <= 0
        or height <= 0
    ):
        raise ServiceError("Image Analysis sent objects without the image size in 'metadata'", backend=_NAME)
    found = []
    for obj in _section(body, "objectsResult").get("values", []):
        tags = _scored(obj.get("tags", []) if isinstance(obj, Mapping) else None, "name", "confidence")
        try:
            b = obj["boundingBox"]
            box = BoundingBox.clipped(b["x"] / width, b["y"] / height, b["w"] / width, b["h"] / height)
        except (KeyError, TypeError) as exc:
            raise ServiceError(
                f"Image Analysis sent an object without a box: {obj!r}", backend=_NAME
            ) from exc
        found.append((box, tags))
    return found


def prediction_from_image_analysis(
    body: Mapping[str, Any],
    *,
    mode: Mode = "tags",
    label_map: LabelMapLike | None = None,
    min_confidence: float = 0.0,
    source: str | None = None,
) -> Prediction:
    """Map an Image Analysis 4.0 answer (``mode`` tags/objects) or a v3.2 one (categories) to a Prediction.

    ``tags``: ``tagsResult.values``; ``objects``: one boxed label per object, named by its best tag (with
    a ``label_map``: one per your label it matched), boxes normalised by ``metadata`` width/height;
    ``categories``: the v3.2 ``categories`` (names from the 86-category taxonomy, ``score`` as
    confidence). ``caption`` comes from ``captionResult`` (4.0) or ``description.captions`` (v3.2).
    ``label_map`` (see `LabelMap`) applies before ``min_confidence``.

    Example:
        >>> body = {"modelVersion": "2023-10-01", "metadata": {"width": 864, "height": 576},
        ...         "captionResult": {"text": "a cat on a sofa", "confidence": 0.8},
        ...         "tagsResult": {"values": [{"name": "cat", "confidence": 0.97},
        ...                                   {"name": "sofa", "confidence": 0.6}]}}
        >>> p = prediction_from_image_analysis(body, min_confidence=0.7)
        >>> p.label, len(p.labels), p.caption, p.model
        ('cat', 1, 'a cat on a sofa', '2023-10-01')
    """
    if not isinstance(body, Mapping):
        raise ServiceError(
            f"Image Analysis sent {type(body).__name__} instead of a JSON object", backend=_NAME
        )
    lm = None if label_map is None else LabelMap.of(label_map)
    if mode == "objects":
        labels = []
        for box, tags in _objects(body):
            named = lm.fold(tags) if lm is not None else sorted(tags, key=lambda t: -t.confidence)[:1]
            labels += [lab.model_copy(update={"box": box}) for lab in named]
    else:
        if mode == "categories":
            labels = _scored(body.get("categories", []), "name", "score")
        else:
            labels = _scored(_section(body, "tagsResult").get("values", []), "name", "confidence")
        labels = lm.fold(labels) if lm is not None else labels
    labels = [lab for lab in labels if lab.confidence >= min_confidence]
    model = body.get("modelVersion")
    return Prediction(
        labels=tuple(labels),
        backend=_NAME,
        model=str(model) if model is not None else None,
        source=source,
        caption=_caption(body),
        raw=dict(body),
    )


def _feature(name: str) -> str:
    known = {f.casefold(): f for f in _FEATURES}
    wire = known.get(str(name).replace("_", "").replace("-", "").casefold())
    if wire is None:
        raise ConfigurationError(
            f"unknown Image Analysis feature {name!r}; choose from {', '.join(_FEATURES)}"
        )
    return wire


def _transport(timeout: float) -> RequestsTransport:
    """azure-core's transport on a session whose pool holds a whole batch (its default keeps only 10)."""
    session = requests.Session()
    adapter = HTTPAdapter(
        pool_maxsize=64, max_retries=Retry(total=False, redirect=False, raise_on_status=False)
    )
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    return RequestsTransport(
        session=session, session_owner=True, connection_timeout=timeout, read_timeout=timeout
    )


def _is_loopback(endpoint: str) -> bool:
    host = httpx.URL(endpoint).host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _raw_json(pipeline_response: Any, _deserialized: Any, _headers: Any) -> Any:
    return pipeline_response.http_response.json()


class ImageAnalysisBackend(BaseBackend):
    """Azure AI Vision Image Analysis as a `Classifier`.

    Args:
        endpoint: the Vision resource endpoint (env ``VISION_ENDPOINT``).
        key: its key (env ``VISION_KEY``); never shown in repr or errors. Give ``key`` or ``credential``.
        credential: an Entra ``TokenCredential`` (e.g. ``azure.identity.DefaultAzureCredential()``) or an
            ``AzureKeyCredential``. Tokens are only sent over https (or to a loopback emulator).
        features: Image Analysis 4.0 features to request (``tags``, ``caption``, ``denseCaptions``,
            ``objects``, ``read``, ``smartCrops``, ``people``); the one ``mode`` needs is added. All of the
            answer is in ``Prediction.raw``; a requested ``caption`` fills ``Prediction.caption``.
        mode: where labels come from: ``"tags"`` (image tags), ``"objects"`` (one boxed label per detected
            object) or ``"categories"`` (the v3.2 86-category taxonomy, e.g. ``animal_dog``; only
            ``caption`` of ``features`` applies there, through v3.2 ``Description``).
        label_map: fold the open vocabulary into your labels, ``{"pet": ["dog", "cat*"]}`` or a callable;
            see `LabelMap`. In categories mode every pattern must match one of the 86 names.
        language: answer language (tags can be non-English; captions need ``"en"``).
        min_confidence: drop labels below this confidence (after ``label_map``).
        max_rps: client-side request rate limit for this backend (``None``: unlimited).
        retry: the retry policy (default `RetryPolicy`).
        timeout: seconds per HTTP request.
        concurrency: requests in flight in ``classify_many`` (default: sized from ``max_rps``).

    Example:
        >>> clf = ImageAnalysisBackend(  # doctest: +SKIP
        ...     "https://myres.cognitiveservices.azure.com/", "<key>", mode="categories",
        ...     label_map={"animal": "animal_*", "people": "people_*"})
        >>> clf.classify("family.jpg").label  # doctest: +SKIP
        'people'
    """

    name = _NAME
    image_limits = ImageLimits(
        service="Image Analysis 4.0",
        max_bytes=20 * _MB,
        max_side=16000,
        min_side=50,
        formats=frozenset({"JPEG", "PNG", "GIF", "BMP", "WEBP", "ICO", "TIFF", "MPO"}),
    )

    def __init__(
        self,
        endpoint: str | None = None,
        key: str | Secret | None = None,
        *,
        credential: TokenCredential | AzureKeyCredential | None = None,
        features: Iterable[str] = ("tags",),
        mode: Mode = "tags",
        label_map: LabelMapLike | None = None,
        language: str = "en",
        min_confidence: float = 0.0,
        max_rps: float | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        concurrency: int | None = None,
    ) -> None:
        env = ENV["image_analysis"]
        if mode not in ("tags", "objects", "categories"):
            raise ConfigurationError(f"mode must be 'tags', 'objects' or 'categories', got {mode!r}")
        if not 0.0 <= min_confidence <= 1.0:
            raise ConfigurationError(f"min_confidence must be in [0, 1], got {min_confidence!r}")
        if key is not None and credential is not None:
            raise ConfigurationError("give either key or credential, not both")
        self.endpoint = endpoint_setting(endpoint, arg="endpoint", env=env["endpoint"])
        self._key: Secret | None = None
        if credential is None:
            self._key = secret_setting(key, arg="key", env=env["key"], required=False)
            if self._key is None:
                raise ConfigurationError(
                    f"missing key: pass key=... or set the environment variable {env['key']}, "
                    "or pass credential=<an azure-identity TokenCredential>"
                )
        self._credential = credential
        # azure-core refuses bearer tokens over plain http; a loopback emulator is the one safe exception.
        self._plain_http_ok = _is_loopback(self.endpoint)
        if self._uses_token and self.endpoint.startswith("http://") and not self._plain_http_ok:
            raise ConfigurationError(
                "a token credential needs an https:// endpoint (tokens are never sent in clear)"
            )
        self.mode: Mode = mode
        self.features = tuple(
            dict.fromkeys([*map(_feature, features), *([] if mode == "categories" else [mode])])
        )
        self._visual_features = [VisualFeatures(f) for f in self.features]
        self.label_map = None if label_map is None else LabelMap.of(label_map)
        if mode == "categories" and self.label_map is not None:
            self.label_map.check_names(CATEGORIES, "the 86 v3.2 categories")
        self.language = language
        self.min_confidence = min_confidence
        super().__init__(max_rps=max_rps, retry=retry, timeout=timeout, concurrency=concurrency)
        self._client: ImageAnalysisClient | None = None
        self._v32: Vision32Client | None = None
        if mode == "categories":
            self._v32 = Vision32Client(
                self.endpoint, key=self._key, credential=credential, timeout=timeout, backend=self.name
            )
        else:
            self._client = ImageAnalysisClient(
                self.endpoint,
                credential
                if credential is not None
                else AzureKeyCredential(self._key.get() if self._key else ""),
                retry_total=0,
                transport=_transport(timeout),
            )

    @property
    def _uses_token(self) -> bool:
        return self._credential is not None and not isinstance(self._credential, AzureKeyCredential)

    def _load(self, image: ImageLike) -> LoadedImage:
        return load_image(image, V32_LIMITS if self.mode == "categories" else self.image_limits)

    def _predict(self, image: LoadedImage) -> Prediction:
        if self.mode == "categories":
            assert self._v32 is not None
            body = self._v32.analyze(image, caption="caption" in self.features, language=self.language)
        else:
            body = self._call_v40(image)
        return prediction_from_image_analysis(
            body,
            mode=self.mode,
            label_map=self.label_map,
            min_confidence=self.min_confidence,
            source=image.source,
        )

    def _call_v40(self, image: LoadedImage) -> dict[str, Any]:
        assert self._client is not None
        # The service's JSON as parsed by azure-core (cached on the response): `result.as_dict()` would walk
        # the SDK's model objects to rebuild the same dict on every call.
        options: dict[str, Any] = {"language": self.language, "cls": _raw_json}
        if self._uses_token and self._plain_http_ok:
            options["enforce_https"] = False
        try:
            if image.url is not None:
                result: Any = self._client.analyze_from_url(image.url, self._visual_features, **options)
            else:
                result = self._client.analyze(image.data or b"", self._visual_features, **options)
        except Exception as exc:
            raise error_from_azure_core(exc, backend=self.name, source=image.source) from exc
        if not isinstance(result, dict):
            raise ServiceError(
                f"Image Analysis answered with a JSON {type(result).__name__}, not an object",
                backend=self.name,
                source=image.source,
            )
        return result

    def _close_clients(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._v32 is not None:
            self._v32.close()

    def __repr__(self) -> str:
        auth = "key" if self._credential is None or not self._uses_token else type(self._credential).__name__
        return (
            f"{type(self).__name__}(endpoint={self.endpoint!r}, mode={self.mode!r}, "
            f"features={self.features!r}, auth={auth!r})"
        )
