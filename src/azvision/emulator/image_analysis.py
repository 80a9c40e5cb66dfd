"""Emulated Azure AI Vision: Image Analysis 4.0 and Computer Vision 3.2 ``analyze``.

**This is an emulation, not the service.** It speaks the real wire format (paths, query
parameters, JSON bodies, error envelopes, limits), so ``ImageAnalysisClient`` and plain REST
clients work against it unchanged, but there is no trained model behind it: every answer is
computed from simple pixel statistics (:mod:`azvision.emulator._pixels`) — tags from dominant
colours, brightness, saturation, texture and where blue or green sits in the frame; objects from
regions that contrast with the background; a caption composed from the top tags; v3.2 categories
drawn only from the service's 86-category taxonomy. The same image always gets the same answer.
Everything is named in English; ``read`` finds no text (well-formed, empty blocks), and v3.2
``Faces``/``Brands`` are always empty.

Routes:

* ``POST /computervision/imageanalysis:analyze?api-version=2023-10-01&features=tags,caption,...``
  with an ``application/octet-stream`` (or ``multipart/form-data``) image or ``{"url": ...}``.
* ``POST /vision/v3.2/analyze?visualFeatures=Categories,Tags,Description,Objects``.

Image URLs are fetched only from loopback hosts (the emulator never leaves the machine); any other
URL gets the service's "Image URL is badly formatted or not accessible" error.

Example::

    from azure.ai.vision.imageanalysis import ImageAnalysisClient
    from azure.core.credentials import AzureKeyCredential

    client = ImageAnalysisClient(emulator.endpoint, AzureKeyCredential(emulator.vision_key))
    result = client.analyze(image_data=png_bytes, visual_features=["tags", "caption"])
    print(result.caption.text, [t.name for t in result.tags.list])
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import json
import uuid
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..backends._taxonomy import CATEGORIES
from ._context import EmulatorContext
from ._pixels import ANALYSIS_SIDE, Blob, PixelStats, analyse

__all__ = ["CATEGORY_TAXONOMY", "routes"]

# The 86 category names of Computer Vision 3.2 (one copy in the package, shared with the backend).
CATEGORY_TAXONOMY: tuple[str, ...] = CATEGORIES

API_VERSIONS_40 = frozenset({"2023-10-01", "2024-02-01"})
MODEL_VERSION_40 = "2023-10-01"
MODEL_VERSION_32 = "2021-05-01"
FEATURES_40 = ("tags", "caption", "denseCaptions", "objects", "read", "smartCrops", "people")
FEATURES_32 = (
    "Categories",
    "Adult",
    "Color",
    "ImageType",
    "Tags",
    "Description",
    "Faces",
    "Objects",
    "Brands",
)
MAX_BYTES_40 = 20_971_520
MAX_BYTES_32 = 4 * 1024 * 1024
MIN_SIDE, MAX_SIDE = 50, 16_000
FORMATS_40 = frozenset({"JPEG", "PNG", "GIF", "BMP", "WEBP", "ICO", "TIFF", "MPO"})
FORMATS_32 = frozenset({"JPEG", "PNG", "GIF", "BMP"})
_URL_FETCH_SECONDS = 10.0

_ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
    "valid key for an active subscription and use a correct regional API endpoint for your resource."
)
_BAD_URL = "Image URL is badly formatted or not accessible."
_BAD_FORMAT = "Image format is not valid."
_BAD_DIMENSIONS = (
    f"The image dimension is not allowed to be smaller than {MIN_SIDE} and larger than {MAX_SIDE}."
)
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


class _ServiceError(Exception):
    """An error answer; ``gateway`` ones come from the API gateway (APIM) and carry no inner code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        inner: str | None = None,
        inner_message: str | None = None,
        *,
        gateway: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner
        self.inner_message = inner_message or message
        self.gateway = gateway

    def response(self, request_id: str | None = None) -> Response:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner, "message": self.inner_message}
        if request_id:
            error["requestId"] = request_id
        headers = {"apim-request-id": str(uuid.uuid4())}
        if not self.gateway:
            headers["x-ms-error-code"] = self.code
        return JSONResponse({"error": error}, status_code=self.status, headers=headers)


def _invalid(message: str, inner: str, inner_message: str | None = None) -> _ServiceError:
    return _ServiceError(400, "InvalidRequest", message, inner, inner_message)


def routes(ctx: EmulatorContext) -> list[BaseRoute]:
    """The Image Analysis 4.0 and Computer Vision 3.2 routes, checking ``ctx.vision_key``.

    Example:
        >>> from azvision.emulator._context import EmulatorConfig, EmulatorContext
        >>> sorted(r.path for r in routes(EmulatorContext(EmulatorConfig())))
        ['/computervision/imageanalysis:analyze', '/vision/v3.2/analyze']
    """

    async def analyze_40(request: Request) -> Response:
        try:
            if request.query_params.get("api-version") not in API_VERSIONS_40:
                raise _ServiceError(404, "404", "Resource not found", gateway=True)
            _check_key(request, ctx.vision_key)
            query = _Query40.parse(request.query_params)
            data = await _read_image(request, MAX_BYTES_40)
            stats = await run_in_threadpool(_measure, data, FORMATS_40)
        except _ServiceError as error:
            return error.response()
        return JSONResponse(_result_40(stats, query), headers=_ok_headers())

    async def analyze_32(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        try:
            _check_key(request, ctx.vision_key)
            features = _features_32(request.query_params)
            data = await _read_image(request, MAX_BYTES_32)
            stats = await run_in_threadpool(_measure, data, FORMATS_32)
        except _ServiceError as error:
            return error.response(None if error.gateway else request_id)
        return JSONResponse(_result_32(stats, features, request_id), headers=_ok_headers())

    return [
        Route("/computervision/imageanalysis:analyze", analyze_40, methods=["POST"]),
        Route("/vision/v3.2/analyze", analyze_32, methods=["POST"]),
    ]


def _ok_headers() -> dict[str, str]:
    return {"apim-request-id": str(uuid.uuid4())}


def _check_key(request: Request, key: str) -> None:
    # Entra ID tokens arrive as "Authorization: Bearer ..."; the emulator accepts its key as the token.
    bearer = request.headers.get("authorization", "")
    given = (
        bearer[7:]
        if bearer.lower().startswith("bearer ")
        else request.headers.get("ocp-apim-subscription-key", "")
    )
    if not hmac.compare_digest(given.encode(), key.encode()):
        raise _ServiceError(401, "401", _ACCESS_DENIED, gateway=True)


# --------------------------------------------------------------------------- query parameters


@dataclass(frozen=True)
class _Query40:
    features: tuple[str, ...]
    aspect_ratios: tuple[float, ...]

    @classmethod
    def parse(cls, params: QueryParams) -> _Query40:
        raw = [f.strip() for f in params.get("features", "").split(",") if f.strip()]
        if not raw:
            raise _invalid(
                "Either 'features' or 'model-name' needs to be specified in the query parameter.",
                "BadArgument",
            )
        known = {f.lower(): f for f in FEATURES_40}
        if any(f.lower() not in known for f in raw):
            raise _invalid(
                "Analyze query is invalid.",
                "NotSupportedVisualFeature",
                "Specified feature type is not valid",
            )
        wanted = {known[f.lower()] for f in raw}
        _check_language(params, english_only=bool(wanted - {"tags"}))
        return cls(tuple(f for f in FEATURES_40 if f in wanted), _aspect_ratios(params))


def _check_language(params: QueryParams, *, english_only: bool) -> None:
    # Like the service, only tags may be asked for in another language with 4.0 (they still
    # come back in English here); v3.2 is English-only in the emulator.
    language = params.get("language", "en").lower()
    if language != "en" and (english_only or len(language) < 2):
        raise _invalid(
            "Analyze query is invalid.",
            "NotSupportedLanguage",
            "The input language is not supported",
        )


def _aspect_ratios(params: QueryParams) -> tuple[float, ...]:
    text = params.get("smartcrops-aspect-ratios", "").strip()
    if not text:
        return ()
    bad = _invalid(
        "Analyze query is invalid.",
        "BadArgument",
        "'smartcrops-aspect-ratios' aspect ratio is not in allowed range [0.75 to 1.8]",
    )
    try:
        ratios = tuple(float(r) for r in text.split(","))
    except ValueError:
        raise bad from None
    if not all(0.75 <= r <= 1.8 for r in ratios):
        raise bad
    return ratios


def _features_32(params: QueryParams) -> tuple[str, ...]:
    raw = [f.strip() for f in params.get("visualFeatures", "").split(",") if f.strip()]
    known = {f.lower(): f for f in FEATURES_32}
    if any(f.lower() not in known for f in raw):
        raise _invalid(
            "Analyze query is invalid.",
            "NotSupportedVisualFeature",
            "Specified feature type is not valid",
        )
    details = [d.strip().lower() for d in params.get("details", "").split(",") if d.strip()]
    if any(d not in ("celebrities", "landmarks") for d in details):
        raise _invalid("Analyze query is invalid.", "InvalidDetails", "Invalid details.")
    _check_language(params, english_only=True)
    wanted = {known[f.lower()] for f in raw} or {"Categories"}
    return tuple(f for f in FEATURES_32 if f in wanted)


# --------------------------------------------------------------------------- image input


async def _read_image(request: Request, limit: int) -> bytes:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            url = json.loads(await request.body())["url"]
        except (ValueError, KeyError, TypeError):
            raise _invalid(_BAD_URL, "InvalidImageUrl") from None
        data = await _fetch(url, limit)
    elif content_type == "application/octet-stream":
        data = await _read_capped(request.stream(), limit)
    elif content_type == "multipart/form-data":
        form = await request.form()
        upload = next((v for v in form.values() if isinstance(v, UploadFile)), None)
        data = await upload.read(limit + 1) if upload else b""
    else:
        shown = content_type or "(none)"
        raise _invalid(f"The provided image content type {shown} is not supported.", "UnsupportedMediaType")
    if not data or len(data) > limit:
        message = f"The image size is not allowed to be zero or larger than {limit} bytes."
        raise _invalid(message, "InvalidImageSize")
    return data


async def _read_capped(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """Read at most ``limit + 1`` bytes: enough to tell "too big" without holding it all."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        if len(buffer) > limit:
            break
    return bytes(buffer[: limit + 1])


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _fetch(url: object, limit: int) -> bytes:
    if not isinstance(url, str):
        raise _invalid(_BAD_URL, "InvalidImageUrl")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not _is_loopback(parts.hostname):
        raise _invalid(_BAD_URL, "InvalidImageUrl")
    try:
        async with (
            httpx.AsyncClient(trust_env=False, verify=False, timeout=_URL_FETCH_SECONDS) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise _invalid(_BAD_URL, "InvalidImageUrl")
            return await _read_capped(response.aiter_bytes(), limit)
    except httpx.HTTPError:
        raise _invalid(_BAD_URL, "InvalidImageUrl") from None


def _measure(data: bytes, formats: frozenset[str]) -> tuple[PixelStats, str]:
    """Decode and measure; returns the statistics and the image format name."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        # Pillow will not open more than ~179 M pixels (the service takes up to 256 M); such
        # images get the service's dimension error rather than a process-wide limit change.
        raise _invalid(_BAD_DIMENSIONS, "InvalidImageSize") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise _invalid(_BAD_FORMAT, "InvalidImageFormat") from None
    if image.format not in formats:
        raise _invalid(_BAD_FORMAT, "InvalidImageFormat")
    size = image.size
    if min(size) < MIN_SIDE or max(size) > MAX_SIDE:
        raise _invalid(_BAD_DIMENSIONS, "InvalidImageSize")
    name = image.format
    try:
        # JPEG decoders can scale by 1/2..1/8 while decoding: far faster for big photos.
        image.draft("RGB", (ANALYSIS_SIDE * 2, ANALYSIS_SIDE * 2))
        image.load()
        return analyse(image, size), name
    except (OSError, ValueError, SyntaxError):
        raise _invalid(_BAD_FORMAT, "InvalidImageFormat") from None


# --------------------------------------------------------------------------- interpretation


def _conf(value: float) -> float:
    return round(min(max(value, 0.0), 0.9999), 4)


def _shape(blob: Blob) -> str:
    if blob.skin >= 0.5:
        return "person"
    if blob.uniform < 0.5:
        return "object"  # a textured region of a photo: its outline says little
    squareish = 0.8 <= blob.w / blob.h <= 1.25
    if blob.fill >= 0.9:
        return "square" if squareish else "rectangle"
    if blob.fill >= 0.68:
        return "circle" if squareish else "ellipse"
    if 0.4 <= blob.fill < 0.62:
        return "triangle"
    return "shape"


def _object_confidence(blob: Blob) -> float:
    # The service reports object confidences with three decimals.
    return round(0.5 + 0.45 * blob.contrast, 3)


def _text_score(s: PixelStats) -> float:
    # Glyphs: many small dark-on-light marks, little colour, moderate edge density (noise
    # would have far more edges).
    if s.marks >= 15 and s.saturation < 0.25 and s.brightness > 0.5 and 0.03 <= s.edges <= 0.4:
        return 0.55 + min(0.44, s.marks / 200)
    return 0.0


def _tags(s: PixelStats) -> list[tuple[str, float]]:
    found: dict[str, float] = {}

    def add(name: str, confidence: float) -> None:
        if confidence >= 0.5:
            found[name] = max(found.get(name, 0.0), _conf(confidence))

    for rank, (colour, share) in enumerate(s.colours):
        if share >= 0.12 or rank == 0:
            add(colour.lower(), 0.55 + 0.45 * min(1.0, share / 0.6))
    green = s.share("Green")
    if s.sky >= 0.3:
        add("sky", 0.5 + 0.49 * s.sky)
    if s.clouds >= 0.2 and s.sky >= 0.3:
        add("cloud", 0.5 + 0.45 * s.clouds)
    if s.grass >= 0.3:
        add("grass", 0.5 + 0.45 * s.grass)
        if s.sky >= 0.3:
            add("field", 0.45 + 0.5 * min(s.grass, s.sky))
    # Blue above and below is sky unless the lower part is darker, as water under a sky is.
    if s.water >= 0.3 and s.grass < 0.3 and (s.sky < 0.3 or s.horizon >= 0.05):
        add("water", 0.5 + 0.45 * s.water)
    if green >= 0.3 and s.edges >= 0.08:
        add("plant", 0.5 + 0.4 * green + s.edges)
    scenery = max(s.sky, s.grass, s.water)
    if scenery >= 0.3:
        add("outdoor", 0.6 + 0.39 * scenery)
        if max(s.grass, s.water, green) >= 0.3:
            add("nature", 0.5 + 0.45 * max(s.grass, s.water, green))
    add("text", _text_score(s))
    if s.skin >= 0.12:
        add("person", 0.5 + 0.49 * min(1.0, s.skin / 0.4))
    if s.brightness < 0.25:
        add("dark", 0.5 + 2 * (0.25 - s.brightness))
    if s.saturation < 0.06:
        add("black and white", 0.95 - 5 * s.saturation)
    vivid = sum(1 for c, share in s.colours if c not in ("Black", "White", "Gray") and share >= 0.08)
    if s.saturation >= 0.4 and vivid >= 3:
        add("colorful", 0.5 + 0.5 * s.saturation)
    if s.flat >= 0.85:
        add("graphics", 0.5 + 0.45 * s.flat)
    if s.edges >= 0.25 and s.saturation >= 0.2:
        add("pattern", 0.5 + s.edges)
    if s.blobs:
        add(_shape(s.blobs[0]), _object_confidence(s.blobs[0]))
    if max(s.width / s.height, s.height / s.width) >= 2.2:
        add("panorama", 0.7)
    return sorted(found.items(), key=lambda item: (-item[1], item[0]))[:20]


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _describe_blobs(blobs: tuple[Blob, ...], background: str) -> str:
    shapes = {_shape(b) for b in blobs}
    colours = {b.colour.lower() for b in blobs}
    if len(blobs) == 1:
        thing = _a(f"{blobs[0].colour.lower()} {_shape(blobs[0])}")
    else:
        noun = f"{shapes.pop()}s" if len(shapes) == 1 else "shapes"
        colour = f"{colours.pop()} " if len(colours) == 1 else ""
        thing = f"{_NUMBERS[len(blobs)]} {colour}{noun}"
    return f"{thing} on {_a(background)} background"


def _caption(s: PixelStats, tags: list[tuple[str, float]]) -> tuple[str, float]:
    conf = dict(tags)
    background = s.background.lower()
    scenes: list[tuple[tuple[str, ...], str]] = [
        (("person",), f"a person in front of {_a(background)} background"),
        (("text",), f"text on {_a(background)} background"),
        (("sky", "grass"), "a grassy field under a blue sky"),
        (("sky", "water"), "a body of water under a blue sky"),
        (("sky", "cloud"), "a blue sky with clouds"),
        (("grass",), "a green field"),
        (("water",), "a body of water"),
        (("plant",), "a close up of green plants"),
        (("sky",), "a clear blue sky"),
    ]
    for needs, text in scenes:
        if all(n in conf for n in needs):
            return text, _conf(0.9 * sum(conf[n] for n in needs) / len(needs))
    if s.blobs:
        blobs = s.blobs[: len(_NUMBERS) - 1]
        mean = sum(_object_confidence(b) for b in blobs) / len(blobs)
        return _describe_blobs(blobs, background), _conf(0.9 * mean)
    if "dark" in conf:
        return "a dark scene", _conf(0.9 * conf["dark"])
    colour, share = s.colours[0]
    return f"{_a(colour.lower())} background", _conf(0.45 + 0.5 * share)


def _box(blob: Blob) -> dict[str, int]:
    return {"x": blob.x, "y": blob.y, "w": blob.w, "h": blob.h}


def _smart_crops(s: PixelStats, ratios: tuple[float, ...]) -> list[dict[str, Any]]:
    aspect = s.width / s.height
    wanted = ratios or (round(min(2.0, max(0.5, aspect)), 2),)
    if s.blobs:
        cx = sum((b.x + b.w / 2) * b.area for b in s.blobs) / sum(b.area for b in s.blobs)
        cy = sum((b.y + b.h / 2) * b.area for b in s.blobs) / sum(b.area for b in s.blobs)
    else:
        cx, cy = s.width / 2, s.height / 2
    crops = []
    for ratio in wanted:
        w = min(s.width, round(s.height * ratio))
        h = min(s.height, round(w / ratio))
        x = min(max(0, round(cx - w / 2)), s.width - w)
        y = min(max(0, round(cy - h / 2)), s.height - h)
        crops.append({"aspectRatio": ratio, "boundingBox": {"x": x, "y": y, "w": w, "h": h}})
    return crops


def _result_40(measured: tuple[PixelStats, str], query: _Query40) -> dict[str, Any]:
    s, _ = measured
    tags = _tags(s)
    caption, caption_confidence = _caption(s, tags)
    whole = {"x": 0, "y": 0, "w": s.width, "h": s.height}
    builders: dict[str, Callable[[], tuple[str, Any]]] = {
        "caption": lambda: (
            "captionResult",
            {"text": caption, "confidence": caption_confidence},
        ),
        "denseCaptions": lambda: (
            "denseCaptionsResult",
            {
                "values": [{"text": caption, "confidence": caption_confidence, "boundingBox": whole}]
                + [
                    {
                        "text": _a(f"{b.colour.lower()} {_shape(b)}"),
                        "confidence": _object_confidence(b),
                        "boundingBox": _box(b),
                    }
                    for b in s.blobs[:9]
                ]
            },
        ),
        "tags": lambda: (
            "tagsResult",
            {"values": [{"name": n, "confidence": c} for n, c in tags]},
        ),
        "objects": lambda: (
            "objectsResult",
            {
                "values": [
                    {
                        "boundingBox": _box(b),
                        "tags": [{"name": _shape(b), "confidence": _object_confidence(b)}],
                    }
                    for b in s.blobs
                ]
            },
        ),
        "read": lambda: ("readResult", {"blocks": []}),
        "smartCrops": lambda: (
            "smartCropsResult",
            {"values": _smart_crops(s, query.aspect_ratios)},
        ),
        "people": lambda: (
            "peopleResult",
            {
                "values": [
                    {"boundingBox": _box(b), "confidence": _conf(0.4 + 0.6 * b.skin)}
                    for b in s.blobs
                    if b.skin >= 0.5
                ]
            },
        ),
    }
    body: dict[str, Any] = {
        "modelVersion": MODEL_VERSION_40,
        "metadata": {"width": s.width, "height": s.height},
    }
    body.update(builders[feature]() for feature in query.features)
    return body


# --------------------------------------------------------------------------- v3.2


def _quantise(score: float) -> float:
    # The v3.2 service reports category scores in steps of 1/256.
    return min(255, max(1, round(score * 256))) / 256


def _categories(s: PixelStats, tags: list[tuple[str, float]]) -> list[dict[str, Any]]:
    conf = dict(tags)
    found: dict[str, float] = {}
    if "person" in conf:
        people = [b for b in s.blobs if b.skin >= 0.5]
        if len(people) >= 3:
            found["people_group"] = conf["person"]
        big = max((b.area for b in people), default=0.0)
        found["people_portrait" if big >= 0.2 else "people_"] = conf["person"]
    if "text" in conf:
        found["text_"] = conf["text"]
    if "grass" in conf:
        found["outdoor_field" if "sky" in conf else "outdoor_grass"] = conf["grass"]
    if "water" in conf:
        found["outdoor_oceanbeach" if s.ground >= 0.15 else "outdoor_water"] = conf["water"]
    if "sky" in conf and not {"grass", "water"} & conf.keys():
        if s.rock >= 0.4:
            found["outdoor_mountain"] = 0.5 + 0.45 * s.rock
        found["sky_cloud"] = conf["sky"]
    if "plant" in conf:
        found["plant_leaves" if s.edges >= 0.2 else "plant_"] = conf["plant"]
    if "dark" in conf:
        if s.warm_highlights >= 0.03:
            found["dark_fire"] = conf["dark"]
        elif s.highlights >= 0.02:
            found["dark_light"] = conf["dark"]
        else:
            found["dark_"] = conf["dark"]
    earthy = s.share("Brown") + s.share("Red") + s.share("Orange")
    if earthy >= 0.5 and s.edges >= 0.12:
        found["building_brickwall"] = 0.5 + 0.45 * earthy
    if "pattern" in conf:
        found["abstract_texture"] = conf["pattern"]
    if "graphics" in conf and not found:
        shape = _shape(s.blobs[0]) if s.blobs else ""
        name = {"square": "abstract_rect", "rectangle": "abstract_rect"}.get(shape)
        found[name or ("abstract_shape" if shape else "abstract_")] = conf["graphics"]
    if not found:
        return [{"name": "others_", "score": _quantise(0.3 + 0.2 * s.contrast)}]
    ranked = sorted(found.items(), key=lambda item: (-item[1], item[0]))[:3]
    return [{"name": name, "score": _quantise(score)} for name, score in ranked]


def _result_32(
    measured: tuple[PixelStats, str], features: tuple[str, ...], request_id: str
) -> dict[str, Any]:
    s, image_format = measured
    tags = _tags(s)
    caption, caption_confidence = _caption(s, tags)
    grey = s.saturation < 0.06
    builders: dict[str, Callable[[], tuple[str, Any]]] = {
        "Categories": lambda: ("categories", _categories(s, tags)),
        "Adult": lambda: (
            "adult",
            {
                "isAdultContent": False,
                "isRacyContent": False,
                "isGoryContent": False,
                "adultScore": _conf(0.002 + 0.01 * s.skin),
                "racyScore": _conf(0.003 + 0.02 * s.skin),
                "goreScore": _conf(0.001 + 0.005 * s.share("Red")),
            },
        ),
        "Color": lambda: (
            "color",
            {
                "dominantColorForeground": s.foreground,
                "dominantColorBackground": s.background,
                "dominantColors": [c for c, share in s.colours if share >= 0.1][:3] or [s.colours[0][0]],
                "accentColor": s.accent,
                "isBwImg": grey,
                "isBWImg": grey,
            },
        ),
        "ImageType": lambda: (
            "imageType",
            {
                "clipArtType": 3 if s.flat >= 0.85 else 2 if s.flat >= 0.7 else 0,
                "lineDrawingType": int(grey and s.flat >= 0.85 and s.edges >= 0.02),
            },
        ),
        "Tags": lambda: ("tags", [{"name": n, "confidence": c} for n, c in tags]),
        "Description": lambda: (
            "description",
            {
                "tags": [n for n, _ in tags[:10]],
                "captions": [{"text": caption, "confidence": caption_confidence}],
            },
        ),
        "Faces": lambda: ("faces", []),
        "Objects": lambda: (
            "objects",
            [
                {
                    "rectangle": _box(b),
                    "object": _shape(b),
                    "confidence": _object_confidence(b),
                }
                for b in s.blobs
            ],
        ),
        "Brands": lambda: ("brands", []),
    }
    body: dict[str, Any] = dict(builders[feature]() for feature in features)
    body["requestId"] = request_id
    body["metadata"] = {
        "width": s.width,
        "height": s.height,
        "format": image_format.capitalize(),
    }
    body["modelVersion"] = MODEL_VERSION_32
    return body
