"""Training API handlers over stored predictions: ``predictions/query``, ``DELETE predictions`` and
``images/predictions``.

``predictions/query`` takes a ``PredictionQueryToken`` and answers ``{"token", "results"}``: at most
``maxCount`` (default 50, at most 256) ``StoredImagePrediction``s, ``Newest`` first by default
(``Oldest``; ``Suggested`` puts the least sure answers first), filtered by ``iterationId``,
``startTime``/``endTime``, ``application`` and ``tags``. A prediction passes the ``tags`` filter when
*every* listed tag's probability lies in its ``[minThreshold, maxThreshold]`` (a tag the answer does
not list counts as 0), so ``maxThreshold=0.6`` on every tag selects the unsure answers. When more
results remain, the answered token carries a ``continuation``: send that token back for the next page.
Predictions already made into training images are not listed any more.

``images/predictions`` creates training images from stored predictions, by prediction id: the image
is the stored one (nothing is uploaded again) and takes the prediction's id; a prediction already
made into an image answers ``OKDuplicate`` with that image, an unknown id ``ErrorSource``.

Example::

    api = StoredPredictionsApi(service)
    route = cv_route(service, "/customvision/v3.3/training/projects/{projectId}/predictions/query",
                     "POST", api.query_predictions, TRAINING)
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from azvision.emulator._cv_http import MAX_BATCH_IMAGES, ApiBase, Upload, json_body, no_content, query_ids
from azvision.emulator._cv_images import ImagesApi, _metadata
from azvision.emulator._cv_store import CVError, ProjectRecord, image_json, new_id
from azvision.emulator._cv_stored import StoredPrediction, stored_prediction_json

__all__ = ["StoredPredictionsApi"]

DEFAULT_MAX_COUNT = 50
MAX_COUNT = 256
_ORDERS = ("Newest", "Oldest", "Suggested")


class StoredPredictionsApi(ApiBase):
    """Handlers named after the SDK operations."""

    async def query_predictions(self, request: Request) -> Response:
        body = await json_body(request)
        token = dict(body) if isinstance(body, dict) else {}
        offset = _offset(token.get("continuation"))
        max_count = token.get("maxCount") or DEFAULT_MAX_COUNT
        if not isinstance(max_count, int) or max_count < 0:
            raise CVError(400, "BadRequest", "maxCount must be a positive integer.")
        max_count = min(max_count, MAX_COUNT)
        order = token.get("orderBy") or "Newest"
        if order not in _ORDERS:
            raise CVError(400, "BadRequest", f"orderBy must be one of {', '.join(_ORDERS)}.")
        with self.store.lock:
            project = self.project(request)
            if token.get("iterationId"):
                self.iteration(project, str(token["iterationId"]))
            matches = [r for r in self._live(project) if _matches(r, token)]
            if order == "Newest":
                matches.reverse()
            elif order == "Suggested":
                matches.sort(key=lambda r: r.top)
            page = matches[offset : offset + max_count]
            results = [stored_prediction_json(r, self.service.blob_base) for r in page]
        more = offset + len(page) < len(matches)
        token.update(
            session=token.get("session") or new_id(),
            continuation=_continuation(offset + len(page)) if more else None,
            maxCount=max_count,
            orderBy=order,
        )
        return JSONResponse({"token": token, "results": results})

    def _live(self, project: ProjectRecord) -> list[StoredPrediction]:
        """Stored predictions not (or no longer) made into training images, oldest first."""
        records = self.service.predictions.records(project.id).values()
        return [r for r in records if r.image_id is None or r.image_id not in project.images]

    async def delete_prediction(self, request: Request) -> Response:
        ids = query_ids(request, "ids")
        if len(ids) > MAX_BATCH_IMAGES:
            raise CVError(
                400, "BadRequestExceededBatchSize", f"At most {MAX_BATCH_IMAGES} prediction ids per request."
            )
        with self.store.lock:
            project = self.project(request)
            self.service.predictions.delete(project.id, ids)
        return no_content()

    async def create_images_from_predictions(self, request: Request) -> Response:
        body = await json_body(request)
        entries = body.get("images") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise CVError(400, "BadRequestImageBatch", 'The body must be {"images": [...]}.')
        if not entries or len(entries) > MAX_BATCH_IMAGES:
            raise CVError(
                400,
                "BadRequestImageBatch",
                f"A batch holds 1 to {MAX_BATCH_IMAGES} images, not {len(entries)}.",
            )
        batch_tags = [str(t).lower() for t in body.get("tagIds") or []]
        metadata = body.get("metadata")
        project_id = request.path_params["projectId"]
        summary = await run_in_threadpool(self._create, project_id, entries, batch_tags, metadata)
        return JSONResponse(summary, status_code=200 if summary["isBatchSuccessful"] else 207)

    def _create(
        self, project_id: str, entries: list[Any], batch_tags: list[str], metadata: Any
    ) -> dict[str, Any]:
        with self.store.lock:
            project = self.store.project(project_id)
            records = self.service.predictions.records(project.id)
            made: list[StoredPrediction | None] = []
            uploads: list[Upload] = []
            already: list[dict[str, Any] | None] = []  # results of images made from it before
            for entry in entries:
                raw = entry if isinstance(entry, dict) else {}
                record = records.get(str(raw.get("id") or "").lower())
                made.append(record)
                upload = Upload(None, b"", [str(t).lower() for t in raw.get("tagIds") or []])
                upload.regions = list(raw.get("regions") or [])
                existing = project.images.get(record.image_id or record.id) if record else None
                if record is None:
                    upload.error = "ErrorSource"
                else:
                    upload.source = stored_prediction_json(record, self.service.blob_base)["originalImageUri"]
                    upload.image_id = record.id
                if existing is not None:
                    image = image_json(project, existing, self.service.blob_base)
                    already.append({"sourceUrl": upload.source, "status": "OKDuplicate", "image": image})
                    continue
                if record is not None:
                    upload.data = self.service.predictions.image(record)
                already.append(None)
                uploads.append(upload)
            fresh = iter(
                ImagesApi(self.service)._add_images(project.id, uploads, batch_tags, _metadata(metadata))[
                    "images"
                ]
                if uploads
                else ()
            )
            results = [found if found is not None else next(fresh) for found in already]
            for record, result in zip(made, results, strict=True):
                if record is not None and result.get("image"):
                    record.image_id = str(result["image"]["id"])
                    self.service.predictions.save(record)
        return {"isBatchSuccessful": all(r["status"] == "OK" for r in results), "images": results}


def _matches(record: StoredPrediction, token: dict[str, Any]) -> bool:
    iteration_id = token.get("iterationId")
    if iteration_id and record.iteration_id != str(iteration_id).lower():
        return False
    application = token.get("application")
    if application and record.application != application:
        return False
    created = _time(record.created)
    start, end = _time(token.get("startTime")), _time(token.get("endTime"))
    if created is not None and ((start and created < start) or (end and created > end)):
        return False
    for tag in token.get("tags") or []:
        if not isinstance(tag, dict):
            raise CVError(400, "BadRequest", 'tags must be [{"id", "minThreshold", "maxThreshold"}].')
        probability = record.probability(str(tag.get("id") or "").lower())
        low = tag.get("minThreshold")
        high = tag.get("maxThreshold")
        if (low is not None and probability < float(low)) or (high is not None and probability > float(high)):
            return False
    return True


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise CVError(400, "BadRequest", f"Not an ISO 8601 time: {value!r}.") from None


def _continuation(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(continuation: Any) -> int:
    if not continuation:
        return 0
    try:
        text = base64.urlsafe_b64decode(str(continuation).encode()).decode()
        kind, _, number = text.partition(":")
        if kind == "offset" and int(number) >= 0:
            return int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise CVError(400, "BadRequest", "The continuation token is not valid.")
