"""Emulated Azure Custom Vision: the Training API, the Prediction API and their blob downloads.

What is emulated: the REST paths (``v3.3``/``v3.4-preview`` training, ``v3.0``/``v3.1``
prediction, path segments case-insensitive), key headers, status codes and JSON bodies that the
official ``azure-cognitiveservices-vision-customvision`` clients use, with real learning behind
them (a frozen pretrained backbone and a trained head), honest cross-validated performance and a
real ONNX export. Images and exports are downloadable from absolute URLs on the emulator
(``/customvision/_blobs/...``), as the service's blob URLs would be, without a key: an image's
``originalImageUri`` gives back the stored bytes, ``resizedImageUri`` and ``thumbnailUri`` the
image scaled to at most `VARIANT_SIDES` px on its longer side (the stored bytes when it is
smaller already; the service's own sizes are not documented).

What is not: pricing tiers and quotas other than the documented per-request limits, advanced
training, non-ONNX export platforms, detector exports, the 30-day expiry of stored predictions,
suggested tags, region proposals, project import/export.

Example::

    from azvision.emulator import Emulator

    with Emulator() as emu:
        ...  # point CustomVisionTrainingClient / CustomVisionPredictionClient at emu.endpoint
"""

from __future__ import annotations

import io

from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from azvision.emulator._context import EmulatorContext
from azvision.emulator._cv_http import CustomVisionService, cv_route
from azvision.emulator._cv_prediction import prediction_routes
from azvision.emulator._cv_store import CVError
from azvision.emulator._cv_training import training_routes

__all__ = ["CustomVisionService", "routes"]

_MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "BMP": "image/bmp"}
#: Longest side of the scaled image variants the blob routes serve.
VARIANT_SIDES = {"resized": 1024, "thumbnail": 200}


def _variant(data: bytes, variant: str | None) -> tuple[bytes, str]:
    """The stored image, or its ``variant`` scaled down (JPEG stays JPEG, the rest becomes PNG)."""
    with Image.open(io.BytesIO(data)) as decoded:
        kind = decoded.format or ""
        side = VARIANT_SIDES.get(variant or "")
        if side is None or max(decoded.size) <= side:
            return data, _MEDIA_TYPES.get(kind, "application/octet-stream")
        image = decoded.convert("RGB") if kind == "JPEG" else decoded.convert("RGBA")
        image.thumbnail((side, side))
        out = io.BytesIO()
        image.save(out, format="JPEG" if kind == "JPEG" else "PNG")
        return out.getvalue(), "image/jpeg" if kind == "JPEG" else "image/png"


def routes(ctx: EmulatorContext) -> list[BaseRoute]:
    """Every Custom Vision route; the service's state is kept in ``ctx.services["custom_vision"]``.

    Example::

        app = Starlette(routes=routes(EmulatorContext(config=EmulatorConfig())))
    """
    service = CustomVisionService(ctx)
    ctx.services["custom_vision"] = service

    async def download_image(request: Request) -> Response:
        variant = request.path_params.get("variant")
        if variant is not None and variant not in VARIANT_SIDES:
            raise CVError(404, "NotFound", "Blob not found.")
        with service.store.lock:
            project = service.store.project(request.path_params["projectId"])
            image = project.images.get(request.path_params["imageId"].lower())
            if image is None:
                raise CVError(404, "NotFoundImage", "Image not found.")
            data = service.store.get_blob(project.id, f"images/{image.digest}")
        body, media_type = await run_in_threadpool(_variant, data, variant)
        return Response(body, media_type=media_type)

    async def download_export(request: Request) -> Response:
        export_id = request.path_params["exportId"].lower()
        with service.store.lock:
            project = service.store.project(request.path_params["projectId"])
            try:
                data = service.store.get_blob(project.id, f"exports/{export_id}.zip")
            except KeyError:
                raise CVError(404, "NotFound", "Export not found.") from None
        return Response(
            data,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{export_id}.zip"'},
        )

    async def download_prediction_image(request: Request) -> Response:
        with service.store.lock:
            project = service.store.project(request.path_params["projectId"])
            record = service.predictions.records(project.id).get(request.path_params["predictionId"].lower())
            try:
                data = service.predictions.image(record) if record is not None else None
            except KeyError:
                data = None
        if data is None:
            raise CVError(404, "NotFound", "Prediction image not found.")
        body, media_type = _variant(data, None)
        return Response(body, media_type=media_type)

    blobs: list[BaseRoute] = [
        cv_route(service, "/customvision/_blobs/{projectId}/images/{imageId}", "GET", download_image, None),
        cv_route(
            service,
            "/customvision/_blobs/{projectId}/images/{imageId}/{variant:str}",
            "GET",
            download_image,
            None,
        ),
        cv_route(
            service,
            "/customvision/_blobs/{projectId}/predictions/{predictionId}",
            "GET",
            download_prediction_image,
            None,
        ),
        cv_route(
            service, "/customvision/_blobs/{projectId}/exports/{exportId}.zip", "GET", download_export, None
        ),
    ]
    return [*training_routes(service), *prediction_routes(service), *blobs]
