"""HTTP plumbing shared by the emulated Custom Vision Training and Prediction APIs.

`CustomVisionService` bundles the store, the learning engine and the emulator context;
`cv_route` builds key-checked, case-insensitive routes whose errors become the service's
flat ``{"code", "message"}`` bodies; the rest reads images from requests the way the service
accepts them (multipart ``imageData`` with or without a file name, raw bytes, base64 JSON, URLs).

Example::

    service = CustomVisionService(ctx)
    route = cv_route(service, "/customvision/v3.3/training/domains", "GET", get_domains, TRAINING)
"""

from __future__ import annotations

import hmac
import io
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from azvision.emulator._context import EmulatorContext
from azvision.emulator._cv_learning import LearningEngine
from azvision.emulator._cv_store import (
    CustomVisionStore,
    CVError,
    IterationRecord,
    ProjectRecord,
    TagRecord,
)
from azvision.emulator._cv_stored import PredictionStore
from azvision.emulator._image_header import read_header
from azvision.emulator._json_stream import StringCapper

Handler = Callable[[Request], Awaitable[Response]]

TRAINING = "training_key", "training-key"
PREDICTION = "prediction_key", "prediction-key"

MAX_TRAINING_IMAGE_BYTES = 6 * 1024 * 1024
MAX_PREDICTION_IMAGE_BYTES = 4 * 1024 * 1024
MAX_IMAGE_SIDE = 10240
MAX_BATCH_IMAGES = 64
#: Most JSON bodies are small; an ``/images/files`` batch carries up to 64 base64 images, each string kept
#: only up to one byte more than an image may have (so the size check still sees "too big").
MAX_JSON_BYTES = 1024 * 1024
MAX_BASE64_IMAGE_CHARS = (MAX_TRAINING_IMAGE_BYTES + 1 + 2) // 3 * 4
MAX_FILES_BATCH_BYTES = MAX_BATCH_IMAGES * (MAX_BASE64_IMAGE_CHARS + 4096)
_DRAIN_BYTES = 32 * 1024 * 1024
_BODY_CUT = "azvision.emulator.body_cut"
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP"})
_FETCH_TIMEOUT_S = 10.0
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

ACCESS_DENIED = {
    "error": {
        "code": "401",
        "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
        "to provide a valid key for an active subscription and use a correct regional API "
        "endpoint for your resource.",
    }
}


class CustomVisionService:
    """One emulated Custom Vision resource (training and prediction share it)."""

    def __init__(self, ctx: EmulatorContext) -> None:
        data_dir = ctx.config.data_dir
        self.ctx = ctx
        self.store = CustomVisionStore(data_dir / "customvision" if data_dir is not None else None)
        self.engine = LearningEngine(
            self.store, seed=ctx.config.seed, training_seconds=ctx.config.training_seconds
        )
        self.predictions = PredictionStore(self.store)

    @property
    def blob_base(self) -> str:
        """Absolute URL prefix of the emulated blob storage (image and export downloads)."""
        return f"{self.ctx.endpoint}/customvision/_blobs"

    def reset(self) -> None:
        with self.store.lock:
            self.store.reset()
            self.engine.reset()
            self.predictions.reset()

    def close(self) -> None:
        self.engine.close()


def no_content() -> Response:
    return Response(status_code=204)


class ApiBase:
    """Shared look-ups of the Training API handler classes (their methods are the handlers,
    named after the SDK operations)."""

    def __init__(self, service: CustomVisionService) -> None:
        self.service = service
        self.store = service.store

    def project(self, request: Request) -> ProjectRecord:
        return self.store.project(request.path_params["projectId"])

    @staticmethod
    def iteration(project: ProjectRecord, iteration_id: str) -> IterationRecord:
        iteration = project.iterations.get(iteration_id.lower())
        if iteration is None:
            raise CVError(404, "NotFoundIteration", f"Iteration {iteration_id} not found.")
        return iteration

    @staticmethod
    def tag(project: ProjectRecord, tag_id: str) -> TagRecord:
        tag = project.tags.get(tag_id.lower())
        if tag is None:
            raise CVError(404, "NotFoundTag", f"Tag {tag_id} not found.")
        return tag


def cv_error(error: CVError) -> JSONResponse:
    return JSONResponse({"code": error.code, "message": error.message}, status_code=error.status)


def cv_route(
    service: CustomVisionService,
    path: str,
    method: str,
    handler: Handler,
    key: tuple[str, str] | None,
) -> Route:
    """A route for ``handler`` that checks the key header (``key``: context attribute, header),
    matches the path case-insensitively (the docs use ``/Training/`` and ``/Prediction/``) and
    turns `CVError` into the flat error body. The route is named after the handler, which
    names the operation in throttling messages."""

    async def endpoint(request: Request) -> Response:
        if key is not None:
            expected = getattr(service.ctx, key[0])
            given = request.headers.get(key[1], "")
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return JSONResponse(ACCESS_DENIED, status_code=401)
        try:
            response = await handler(request)
        except CVError as error:
            response = cv_error(error)
        if request.scope.get(_BODY_CUT):
            response.headers["Connection"] = "close"
        return response

    route = Route(path, endpoint, methods=[method], name=handler.__name__)
    route.path_regex = re.compile(route.path_regex.pattern, re.IGNORECASE)
    return route


# -- request parsing ---------------------------------------------------------------------------
def query_ids(request: Request, name: str) -> list[str]:
    raw = request.query_params.get(name) or ""
    return [part.strip().lower() for part in raw.split(",") if part.strip()]


def query_bool(request: Request, name: str, default: bool = False) -> bool:
    raw = request.query_params.get(name)
    return default if raw is None else raw.strip().lower() == "true"


def query_int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise CVError(400, "BadRequest", f"Query parameter {name!r} must be an integer.") from None


def query_float(request: Request, name: str, default: float) -> float:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise CVError(400, "BadRequest", f"Query parameter {name!r} must be a number.") from None


async def json_body(request: Request, limit: int = MAX_JSON_BYTES, *, string_limit: int | None = None) -> Any:
    """The request's JSON, read as a stream and refused beyond ``limit`` bytes.

    With ``string_limit``, every string value is cut to that many bytes as it arrives (see
    `StringCapper`): a batch of images is judged image by image without holding an oversized one. A
    body still longer than ``limit`` once cut, or of more than ``limit`` bytes plus the drain allowance
    as sent, is refused.
    """
    too_big = CVError(400, "BadRequest", f"The request body is larger than {limit} bytes.")
    if string_limit is None:
        body = await read_capped(request, limit)
    else:
        capper = StringCapper(string_limit)
        async for chunk in request.stream():
            capper.feed(chunk)
            if capper.kept > limit or capper.seen > limit + _DRAIN_BYTES:
                cut_body(request)
                raise too_big
        body = capper.body()
    if len(body) > limit:
        raise too_big
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        raise CVError(400, "BadRequest", "The request body is not valid JSON.") from None


async def read_capped(request: Request, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of the body (enough to tell "too big"), never all of a huge one.

    What lies beyond is read and dropped up to `_DRAIN_BYTES`, so that a client sending a
    slightly oversized image gets the service's error rather than a reset; a body larger than
    that is cut (the connection closes after the answer).
    """
    kept = bytearray()
    dropped = 0
    async for chunk in request.stream():
        room = limit + 1 - len(kept)
        if room > 0:
            kept += chunk[:room]
        dropped += max(0, len(chunk) - max(room, 0))
        if dropped > _DRAIN_BYTES:
            cut_body(request)
            break
    return bytes(kept)


def cut_body(request: Request) -> None:
    """Mark the request as not read to its end: its answer closes the connection (``Connection:
    close``), so the server does not go on reading what the client still sends."""
    request.scope[_BODY_CUT] = True


@dataclass
class Upload:
    """One image of a request: its ``sourceUrl`` (quoted file name, or URL; ``None`` when the
    request gives no name), bytes, tags, regions, a per-image status forced by the caller
    (``ErrorSource`` for a URL that could not be fetched) and the id the image is to take (an image
    made from a stored prediction takes the prediction's id; others get a new one)."""

    source: str | None
    data: bytes
    tag_ids: list[str] = field(default_factory=list)
    regions: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    image_id: str | None = None


async def read_images(request: Request, limit: int, *, first_only: bool = False) -> list[Upload]:
    """Images of a ``multipart/form-data`` body (every part; ``imageData`` with or without a file
    name) or of a raw body (``application/octet-stream`` or an image type), read as a stream.

    Each image keeps at most ``limit + 1`` bytes, so an oversized one is still told apart (the
    service's size error) without being held. ``first_only`` (prediction) keeps the first part
    only and stops reading once it is over ``limit``; a batch stops at more than 64 parts.
    """
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("multipart/"):
        return await _multipart_images(request, content_type, limit, first_only)
    body = await read_capped(request, limit)
    return [Upload(None, body)] if body else []


async def _multipart_images(
    request: Request, content_type: str, limit: int, first_only: bool
) -> list[Upload]:
    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        raise CVError(400, "BadRequestImageStream", "The multipart body has no boundary.")
    uploads: list[Upload] = []
    part = bytearray()
    header: list[bytes] = [b"", b""]  # field name, value
    filename: list[str | None] = [None]
    keep = [1 if first_only else MAX_BATCH_IMAGES + 1]  # parts whose bytes are kept

    def on_part_begin() -> None:
        part.clear()
        filename[0] = None

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        if header[0].lower() == b"content-disposition":
            raw = parse_options_header(header[1])[1].get(b"filename")
            filename[0] = f'"{raw.decode("utf-8", "replace")}"' if raw is not None else None
        header[0] = header[1] = b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        room = limit + 1 - len(part)
        if room > 0 and len(uploads) < keep[0]:
            part.extend(data[start : min(end, start + room)])

    def on_part_end() -> None:
        uploads.append(Upload(filename[0], bytes(part)))
        part.clear()

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    read = 0
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            read += len(chunk)
            if first_only and (len(part) > limit or read > limit + _DRAIN_BYTES):
                cut_body(request)  # the image is already too big: the rest is not needed
                break
            if len(uploads) > MAX_BATCH_IMAGES:
                cut_body(request)  # the batch check answers; nothing more is read
                break
        else:
            parser.finalize()
    except Exception as exc:
        raise CVError(400, "BadRequestImageStream", f"The multipart body is malformed: {exc}") from None
    if first_only and not uploads and part:
        uploads.append(Upload(filename[0], bytes(part)))
    return uploads


async def fetch_image(service: CustomVisionService, url: str, limit: int) -> bytes:
    """Download an image by URL. The emulator has no internet: only loopback URLs (such as its
    own image URLs) are fetched; anything else is the service's ``BadRequestImageUrl``."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise CVError(400, "BadRequestImageUrl", "The image URL is not a valid URL.") from None
    own_host = httpx.URL(service.ctx.endpoint).host if service.ctx.endpoint else ""
    if parsed.scheme not in ("http", "https") or parsed.host not in _LOOPBACK_HOSTS | {own_host}:
        raise CVError(
            400,
            "BadRequestImageUrl",
            "Unable to download the image from the URL: the emulator only fetches loopback "
            "(127.0.0.1 / localhost) URLs.",
        )
    try:
        async with (
            httpx.AsyncClient(timeout=_FETCH_TIMEOUT_S) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise CVError(
                    400,
                    "BadRequestImageUrl",
                    f"Unable to download the image from the URL (HTTP {response.status_code}).",
                )
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > limit:
                    break
            return bytes(data)
    except httpx.HTTPError as exc:
        raise CVError(400, "BadRequestImageUrl", f"Unable to download the image: {exc}") from None


# -- images ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageInfo:
    """What validation learned about an image: ``problem`` is ``None`` for a usable image."""

    problem: str | None
    width: int = 0
    height: int = 0
    format: str = ""


def inspect_image(data: bytes, max_bytes: int) -> ImageInfo:
    """Check an image against the service's limits; ``problem`` names the failure:
    ``size`` (too many bytes), ``format`` (not a readable JPEG/PNG/GIF/BMP) or ``dimensions``."""
    if len(data) > max_bytes:
        return ImageInfo("size")
    if not data:
        return ImageInfo("format")
    header = read_header(data)
    if header is not None and max(header.width, header.height) > MAX_IMAGE_SIDE:
        # Refused from the header, as the service does, before Pillow allocates anything.
        return ImageInfo("dimensions", header.width, header.height, header.format)
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, width, height = image.format or "", image.width, image.height
            if kind not in ACCEPTED_FORMATS:
                return ImageInfo("format")
            if max(width, height) > MAX_IMAGE_SIDE:
                return ImageInfo("dimensions", width, height, kind)
            image.verify()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return ImageInfo("format")
    return ImageInfo(None, width, height, kind)


def prediction_image(data: bytes, max_bytes: int = MAX_PREDICTION_IMAGE_BYTES) -> bytes:
    """Validate an image sent for prediction (4 MB; 6 MB for quick tests) and return it, or raise
    the service's error."""
    if not data:
        raise CVError(400, "BadRequestImageStream", "No image data was found in the request.")
    info = inspect_image(data, max_bytes)
    if info.problem == "size":
        raise CVError(
            400,
            "BadRequestImageSizeBytes",
            f"Image size must be {max_bytes // (1024 * 1024)} MB or less.",
        )
    if info.problem == "dimensions":
        raise CVError(
            400, "BadRequestImageDimensions", f"Image dimensions must not exceed {MAX_IMAGE_SIDE} px."
        )
    if info.problem is not None:
        raise CVError(
            400, "BadRequestImageFormat", "Bad image format. Supported formats: JPEG, PNG, GIF, BMP."
        )
    return data
