"""Emulated Azure AI Vision: Image Analysis 4.0 and Computer Vision 3.2 ``analyze``.

**This is an emulation, not the service.** It speaks the real wire format (paths, query
parameters, JSON bodies, error envelopes, limits), so ``ImageAnalysisClient`` and plain REST
clients work against it unchanged, but there is no trained model behind it: every answer is
computed from simple pixel statistics (`azvision.emulator._ia_describe`) — tags from dominant
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
import uuid

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from azvision.emulator._context import EmulatorContext
from azvision.emulator._ia_errors import ACCESS_DENIED, ServiceError
from azvision.emulator._ia_input import measure, read_image
from azvision.emulator._ia_query import Query40, features_32
from azvision.emulator._ia_results import result_32, result_40

__all__ = ["routes"]

API_VERSIONS_40 = frozenset({"2023-10-01", "2024-02-01"})
MAX_BYTES_40 = 20_971_520
MAX_BYTES_32 = 4 * 1024 * 1024
FORMATS_40 = frozenset({"JPEG", "PNG", "GIF", "BMP", "WEBP", "ICO", "TIFF", "MPO"})
FORMATS_32 = frozenset({"JPEG", "PNG", "GIF", "BMP"})


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
                raise ServiceError(404, "404", "Resource not found", gateway=True)
            _check_key(request, ctx.vision_key)
            query = Query40.parse(request.query_params)
            data = await read_image(request, MAX_BYTES_40)
            stats = await run_in_threadpool(measure, data, FORMATS_40)
        except ServiceError as error:
            return error.response()
        return JSONResponse(result_40(stats, query), headers=_ok_headers())

    async def analyze_32(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        try:
            _check_key(request, ctx.vision_key)
            features = features_32(request.query_params)
            data = await read_image(request, MAX_BYTES_32)
            stats = await run_in_threadpool(measure, data, FORMATS_32)
        except ServiceError as error:
            return error.response(None if error.gateway else request_id)
        return JSONResponse(result_32(stats, features, request_id), headers=_ok_headers())

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
        raise ServiceError(401, "401", ACCESS_DENIED, gateway=True)
