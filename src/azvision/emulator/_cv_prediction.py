"""Emulated Custom Vision Prediction API (``/customvision/v3.0|v3.1/prediction/...``).

``classify`` and ``detect``, each on ``/image`` (multipart ``imageData`` or raw bytes, ≤ 4 MB)
and ``/url`` (JSON ``{"url"}``; the emulator only fetches loopback URLs), with and without
``/nostore``: without it the image and the answer are stored (see ``_cv_stored``) for
``predictions/query`` and ``images/predictions``, as the service does. An unknown project, an
unknown or unpublished publish name, or an iteration published to another prediction resource
answer ``404 {"code": "NotFoundIteration", "message": "Invalid iteration"}`` like the service.
Predictions are sorted by probability, highest first; ``tagType`` appears in v3.1 only.

Example::

    from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
    from msrest.authentication import ApiKeyCredentials

    predictor = CustomVisionPredictionClient(
        emu.endpoint, ApiKeyCredentials(in_headers={"Prediction-key": emu.prediction_key}))
    result = predictor.classify_image(project_id, "production", image_bytes)
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from azvision.emulator._cv_http import (
    MAX_PREDICTION_IMAGE_BYTES,
    PREDICTION,
    CustomVisionService,
    Handler,
    cv_route,
    fetch_image,
    json_body,
    prediction_image,
    read_images,
)
from azvision.emulator._cv_store import CVError, IterationRecord, is_detection, new_id, now_iso

VERSIONS = ("v3.0", "v3.1")

# (SDK operation, task, source, nostore)
_OPERATIONS = (
    ("classify_image", "classify", "image", False),
    ("classify_image_with_no_store", "classify", "image", True),
    ("classify_image_url", "classify", "url", False),
    ("classify_image_url_with_no_store", "classify", "url", True),
    ("detect_image", "detect", "image", False),
    ("detect_image_with_no_store", "detect", "image", True),
    ("detect_image_url", "detect", "url", False),
    ("detect_image_url_with_no_store", "detect", "url", True),
)


def prediction_routes(service: CustomVisionService) -> list[Route]:
    """Routes of the Prediction API for both versions."""
    routes = []
    for version in VERSIONS:
        for name, task, source, nostore in _OPERATIONS:
            base = f"/customvision/{version}/prediction/{{projectId}}/{task}/iterations/{{publishedName}}"
            path = f"{base}/{source}"
            handler = _handler(
                service,
                name,
                detect=task == "detect",
                by_url=source == "url",
                version=version,
                store=not nostore,
            )
            routes.append(
                cv_route(service, path + ("/nostore" if nostore else ""), "POST", handler, PREDICTION)
            )
    return routes


def _handler(
    service: CustomVisionService, name: str, *, detect: bool, by_url: bool, version: str, store: bool
) -> Handler:
    async def predict(request: Request) -> Response:
        with service.store.lock:
            iteration = published_iteration(
                service, request.path_params["projectId"], request.path_params["publishedName"]
            )
        check_task(iteration, detect=detect)
        if by_url:
            data = await image_from_url(service, request, MAX_PREDICTION_IMAGE_BYTES)
        else:
            uploads = await read_images(request, MAX_PREDICTION_IMAGE_BYTES, first_only=True)
            data = uploads[0].data if uploads else b""
        prediction_image(data)
        body = await run_in_threadpool(
            image_prediction, service, iteration, data, detect=detect, with_tag_type=version != "v3.0"
        )
        if store:
            application = request.query_params.get("application")
            service.predictions.add(iteration, data, body, application=application)
        return JSONResponse(body)

    predict.__name__ = name
    return predict


def published_iteration(service: CustomVisionService, project_id: str, publish_name: str) -> IterationRecord:
    """The iteration published under ``publish_name`` to the emulator's prediction resource."""
    project = service.store.projects.get(project_id.lower())
    target = service.ctx.prediction_resource_id.lower()
    for iteration in project.iterations.values() if project else ():
        if (
            iteration.publish_name
            and iteration.publish_name == publish_name
            and iteration.publish_resource_id.lower() == target
        ):
            return iteration
    raise CVError(404, "NotFoundIteration", "Invalid iteration")


def check_task(iteration: IterationRecord, *, detect: bool) -> None:
    if is_detection(iteration.domain_id) != detect:
        task, other = ("detect", "classify") if detect else ("classify", "detect")
        raise CVError(
            400,
            "BadRequestNotSupported",
            f"This iteration is not an {'object detection' if detect else 'image classification'} "
            f"model: call {other} instead of {task}.",
        )


async def image_from_url(service: CustomVisionService, request: Request, max_bytes: int) -> bytes:
    body = await json_body(request)
    url = body.get("url") if isinstance(body, dict) else None
    if not isinstance(url, str) or not url:
        raise CVError(400, "BadRequestImageUrl", 'The request body must be JSON {"url": "..."}.')
    return await fetch_image(service, url, max_bytes)


def image_prediction(
    service: CustomVisionService,
    iteration: IterationRecord,
    data: bytes,
    *,
    detect: bool,
    with_tag_type: bool,
) -> dict[str, Any]:
    """The service's ``ImagePrediction`` body for one image (runs the model; call off the loop)."""
    engine = service.engine
    names = dict(zip(iteration.tag_ids, engine.head(iteration).labels, strict=False))
    with service.store.lock:
        project = service.store.projects.get(iteration.project_id)
        types = {t.id: t.type for t in project.tags.values()} if project else {}
    predictions: list[dict[str, Any]] = []
    if detect:
        for tag_id, probability, (left, top, width, height) in engine.detect(iteration, data):
            predictions.append(
                {
                    "probability": probability,
                    "tagId": tag_id,
                    "tagName": names[tag_id],
                    "boundingBox": {"left": left, "top": top, "width": width, "height": height},
                }
            )
    else:
        for tag_id, probability in engine.classify(iteration, data):
            predictions.append({"probability": probability, "tagId": tag_id, "tagName": names[tag_id]})
    predictions.sort(key=lambda p: -float(p["probability"]))
    if with_tag_type:
        for prediction in predictions:
            prediction["tagType"] = types.get(prediction["tagId"], "Regular")
    return {
        "id": new_id(),
        "project": iteration.project_id,
        "iteration": iteration.id,
        "created": now_iso(),
        "predictions": predictions,
    }
