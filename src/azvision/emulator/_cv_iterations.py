"""Training and iteration handlers of the emulated Custom Vision Training API.

Training validates like the service (at least 5 images per tag for classification, 15 for
detection, 2 tags for multiclass, one tag per image in multiclass, ``BadRequestTrainingNotNeeded``
when nothing changed since the last completed iteration) and then learns for real in the
background (``_cv_learning``); iterations go ``Training`` → ``Completed`` or ``Failed`` (with
``trainingErrorDetails``). Publishing needs an ARM-shaped prediction resource id; only iterations
published to the emulator's own resource can be predicted with. Export builds the ONNX zip of
classification iterations and of General (compact) detectors (the YOLOv2 ``model_outputs0``
family); other platforms and S1 detector exports answer ``400 BadRequestNotSupported``.

Example::

    api = IterationsApi(service)
    route = cv_route(service, "/customvision/v3.3/training/projects/{projectId}/train", "POST",
                     api.train_project, TRAINING)
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from azvision.emulator._cv_http import (
    MAX_TRAINING_IMAGE_BYTES,
    ApiBase,
    json_body,
    no_content,
    prediction_image,
    query_bool,
    query_float,
    query_int,
    read_images,
)
from azvision.emulator._cv_learning import DEFAULT_THRESHOLD
from azvision.emulator._cv_prediction import check_task, image_from_url, image_prediction
from azvision.emulator._cv_store import (
    CVError,
    ExportRecord,
    IterationRecord,
    ProjectRecord,
    Sample,
    domain,
    export_json,
    is_detection,
    iteration_json,
    new_id,
    now_iso,
)

MAX_ITERATIONS = 20
MIN_IMAGES = {"classification": 5, "detection": 15}
_ARM_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.CognitiveServices/accounts/[^/]+$",
    re.IGNORECASE,
)


class IterationsApi(ApiBase):
    """Training, iteration, publish, performance, export and quick-test handlers."""

    # -- training ----------------------------------------------------------------------------
    async def train_project(self, request: Request) -> Response:
        body = await json_body(request)
        selected = [str(t).lower() for t in (body or {}).get("selectedTags") or []]
        force = query_bool(request, "forceTrain")
        with self.store.lock:
            project = self.project(request)
            iteration = self._new_iteration(project, selected, force, request)
            project.iterations[iteration.id] = iteration
            self.store.save(project)
            self.service.engine.submit_training(project.id, iteration.id)
            return JSONResponse(iteration_json(iteration))

    def _new_iteration(
        self, project: ProjectRecord, selected: list[str], force: bool, request: Request
    ) -> IterationRecord:
        iterations = list(project.iterations.values())
        if any(i.status == "Training" for i in iterations):
            raise CVError(400, "BadRequestTrainingAlreadyInProgress", "Training is already in progress.")
        if len(iterations) >= MAX_ITERATIONS:
            raise CVError(
                400,
                "BadRequestExceedIterationPerProjectLimit",
                f"A project has at most {MAX_ITERATIONS} iterations; delete one to train again.",
            )
        unknown = [t for t in selected if t not in project.tags]
        if unknown:
            raise CVError(400, "BadRequestInvalidIds", f"Unknown tag ids: {', '.join(unknown)}.")
        detection = is_detection(project.domain_id)
        tag_ids = [
            t.id
            for t in project.tags.values()
            if (not selected or t.id in selected) and not (detection and t.type == "Negative")
        ]
        samples = _samples(project, tag_ids, detection)
        _validate(project, tag_ids, samples, detection)
        fingerprint = hashlib.sha256(
            json.dumps(
                [project.domain_id, project.classification_type, tag_ids, [_sample_key(s) for s in samples]]
            ).encode()
        ).hexdigest()
        completed = [i for i in iterations if i.status == "Completed"]
        if not force and completed and completed[-1].fingerprint == fingerprint:
            raise CVError(400, "BadRequestTrainingNotNeeded", "Nothing changed since last training")
        number = 1 + max(
            (int(m.group(1)) for i in iterations if (m := re.fullmatch(r"Iteration (\d+)", i.name))),
            default=0,
        )
        stamp = now_iso()
        return IterationRecord(
            id=new_id(),
            name=f"Iteration {number}",
            project_id=project.id,
            status="Training",
            created=stamp,
            last_modified=stamp,
            domain_id=project.domain_id,
            classification_type=project.classification_type,
            training_type=request.query_params.get("trainingType") or "Regular",
            reserved_budget_in_hours=query_int(request, "reservedBudgetInHours", 0),
            fingerprint=fingerprint,
            tag_ids=tag_ids,
            samples=samples,
        )

    # -- iterations --------------------------------------------------------------------------
    async def get_iterations(self, request: Request) -> Response:
        with self.store.lock:
            return JSONResponse([iteration_json(i) for i in self.project(request).iterations.values()])

    async def get_iteration(self, request: Request) -> Response:
        with self.store.lock:
            project = self.project(request)
            return JSONResponse(iteration_json(self.iteration(project, request.path_params["iterationId"])))

    async def delete_iteration(self, request: Request) -> Response:
        with self.store.lock:
            project = self.project(request)
            iteration = self.iteration(project, request.path_params["iterationId"])
            if iteration.publish_name:
                raise CVError(
                    400, "BadRequestIterationIsPublished", "Unpublish the iteration before deleting it."
                )
            del project.iterations[iteration.id]
            for export in iteration.exports:
                self.store.delete_blob(project.id, f"exports/{export.id}.zip")
            self.store.save(project)
        return no_content()

    async def update_iteration(self, request: Request) -> Response:
        body = await json_body(request)
        name = str((body or {}).get("name") or "").strip() if isinstance(body, dict) else ""
        if not name:
            raise CVError(400, "BadRequestIterationName", "The iteration name is required.")
        with self.store.lock:
            project = self.project(request)
            iteration = self.iteration(project, request.path_params["iterationId"])
            iteration.name = name
            iteration.last_modified = now_iso()
            self.store.save(project)
            return JSONResponse(iteration_json(iteration))

    async def publish_iteration(self, request: Request) -> Response:
        name = (request.query_params.get("publishName") or "").strip()
        target = request.query_params.get("predictionId") or ""
        if not name or not re.fullmatch(r"[\w.\- ]{1,256}", name):
            raise CVError(400, "BadRequestInvalidPublishName", "Invalid publish name.")
        if not _ARM_ID.match(target):
            raise CVError(
                400,
                "BadRequestInvalidPublishTarget",
                "Invalid prediction resource id: expected /subscriptions/{subscription}/resourceGroups/"
                "{group}/providers/Microsoft.CognitiveServices/accounts/{resource}.",
            )
        with self.store.lock:
            project = self.project(request)
            iteration = self.iteration(project, request.path_params["iterationId"])
            if iteration.status != "Completed":
                raise CVError(400, "BadRequestIterationIsNotTrained", "The iteration is not trained.")
            if iteration.publish_name:
                raise CVError(400, "BadRequestIterationIsPublished", "The iteration is already published.")
            holder = next((i for i in project.iterations.values() if i.publish_name == name), None)
            if holder is not None:
                if not query_bool(request, "overwrite"):
                    raise CVError(
                        400, "BadRequestInvalidPublishName", f"Publish name {name!r} is already in use."
                    )
                holder.publish_name = holder.publish_resource_id = ""
            iteration.publish_name, iteration.publish_resource_id = name, target
            self.store.save(project)
        return JSONResponse(True)

    async def unpublish_iteration(self, request: Request) -> Response:
        with self.store.lock:
            project = self.project(request)
            iteration = self.iteration(project, request.path_params["iterationId"])
            if not iteration.publish_name:
                raise CVError(400, "BadRequestIterationNotPublished", "The iteration is not published.")
            iteration.publish_name = iteration.publish_resource_id = ""
            self.store.save(project)
        return no_content()

    async def get_iteration_performance(self, request: Request) -> Response:
        threshold = query_float(request, "threshold", DEFAULT_THRESHOLD)
        if not 0.0 <= threshold <= 1.0:
            raise CVError(400, "BadRequest", "threshold must be between 0 and 1.")
        with self.store.lock:
            project = self.project(request)
            iteration = self.iteration(project, request.path_params["iterationId"])
            if iteration.status != "Completed":
                raise CVError(400, "BadRequestIterationIsNotTrained", "The iteration is not trained.")
        result = await run_in_threadpool(self.service.engine.performance, project.id, iteration, threshold)
        return JSONResponse(result)

    # -- export ------------------------------------------------------------------------------
    def _download_uri(self, project_id: str, export: ExportRecord) -> str:
        return f"{self.service.blob_base}/{project_id}/exports/{export.id}.zip"

    async def get_exports(self, request: Request) -> Response:
        with self.store.lock:
            project = self.project(request)
            iteration = self.iteration(project, request.path_params["iterationId"])
            return JSONResponse(
                [export_json(e, self._download_uri(project.id, e)) for e in iteration.exports]
            )

    async def export_iteration(self, request: Request) -> Response:
        platform = request.query_params.get("platform") or ""
        flavor = request.query_params.get("flavor") or None
        with self.store.lock:
            project = self.project(request)
            iteration = self.iteration(project, request.path_params["iterationId"])
            _check_exportable(iteration, platform, flavor)
            if any(
                e.platform == platform and e.flavor == flavor and e.status != "Failed"
                for e in iteration.exports
            ):
                raise CVError(
                    400, "BadRequestExportAlreadyInProgress", f"{iteration.id} is already queued for export"
                )
            export = ExportRecord(new_id(), platform, flavor, "Exporting", now_iso())
            iteration.exports = [
                e for e in iteration.exports if (e.platform, e.flavor) != (platform, flavor)
            ] + [export]
            self.store.save(project)
            self.service.engine.submit_export(project.id, iteration.id, export.id)
            return JSONResponse(export_json(export, ""))

    # -- quick test --------------------------------------------------------------------------
    def _quick_test_iteration(self, request: Request) -> IterationRecord:
        with self.store.lock:
            project = self.project(request)
            wanted = request.query_params.get("iterationId")
            if wanted:
                iteration = self.iteration(project, wanted)
            else:
                completed = [i for i in project.iterations.values() if i.status == "Completed"]
                if not completed:
                    raise CVError(404, "NotFoundIteration", "Invalid iteration")
                iteration = completed[-1]
            if iteration.status != "Completed":
                raise CVError(400, "BadRequestIterationIsNotTrained", "The iteration is not trained.")
            return iteration

    async def _quick_test(self, request: Request, iteration: IterationRecord, data: bytes) -> Response:
        detect = is_detection(iteration.domain_id)
        check_task(iteration, detect=detect)
        prediction_image(data, MAX_TRAINING_IMAGE_BYTES)
        body = await run_in_threadpool(
            image_prediction, self.service, iteration, data, detect=detect, with_tag_type=True
        )
        if query_bool(request, "store", default=True):
            self.service.predictions.add(iteration, data, body, application=None)
        return JSONResponse(body)

    async def quick_test_image(self, request: Request) -> Response:
        iteration = self._quick_test_iteration(request)
        uploads = await read_images(request, MAX_TRAINING_IMAGE_BYTES, first_only=True)
        return await self._quick_test(request, iteration, uploads[0].data if uploads else b"")

    async def quick_test_image_url(self, request: Request) -> Response:
        iteration = self._quick_test_iteration(request)
        data = await image_from_url(self.service, request, MAX_TRAINING_IMAGE_BYTES)
        return await self._quick_test(request, iteration, data)


def _samples(project: ProjectRecord, tag_ids: list[str], detection: bool) -> list[Sample]:
    chosen = set(tag_ids)
    samples = []
    for image in project.images.values():
        if detection:
            regions = [r for r in image.regions if r.tag_id in chosen]
            if regions:
                samples.append(Sample(image.id, image.digest, sorted({r.tag_id for r in regions}), regions))
        else:
            tags = [t for t in tag_ids if t in image.tags]
            if tags:
                samples.append(Sample(image.id, image.digest, tags))
    return samples


def _sample_key(sample: Sample) -> list[Any]:
    regions = sorted((r.tag_id, r.left, r.top, r.width, r.height) for r in sample.regions)
    return [sample.image_id, sample.tag_ids, regions]


def _validate(project: ProjectRecord, tag_ids: list[str], samples: list[Sample], detection: bool) -> None:
    """The service's training validation: enough tags, enough images for every tag."""
    if detection:
        code = "BadRequestDetectionTrainingValidationFailed"
    elif project.classification_type == "Multilabel":
        code = "BadRequestMultiLabelClassificationTrainingValidationFailed"
    else:
        code = "BadRequestMultiClassClassificationTrainingValidationFailed"
    minimum = MIN_IMAGES["detection" if detection else "classification"]
    regular = [t for t in tag_ids if project.tags[t].type != "Negative"]
    if not regular:
        raise CVError(400, code, "Not enough tags for training: add at least one tag with images.")
    if project.classification_type == "Multiclass" and not detection and len(tag_ids) < 2:
        raise CVError(400, code, "Not enough tags for training: a multiclass project needs at least 2 tags.")
    for tag_id in tag_ids:
        count = sum(1 for s in samples if tag_id in s.tag_ids)
        if count < minimum:
            raise CVError(
                400,
                code,
                f"Not enough images for training: every tag needs at least {minimum} images "
                f"(tag {project.tags[tag_id].name!r} has {count}).",
            )
    if project.classification_type == "Multiclass" and not detection:
        crowded = next((s for s in samples if len(s.tag_ids) > 1), None)
        if crowded is not None:
            raise CVError(
                400,
                code,
                f"Image {crowded.image_id} has {len(crowded.tag_ids)} tags; a multiclass project "
                "allows one tag per image.",
            )


def _check_exportable(iteration: IterationRecord, platform: str, flavor: str | None) -> None:
    if iteration.status == "Training":
        raise CVError(400, "BadRequestExportWhileTraining", "The iteration is still training.")
    if iteration.status != "Completed":
        raise CVError(400, "BadRequestIterationIsNotTrained", "The iteration is not trained.")
    row = domain(iteration.domain_id)
    if row is None or not row[3]:
        raise CVError(
            400,
            "BadRequestExportValidationFailed",
            "Only iterations trained on a compact domain can be exported.",
        )
    if platform not in ("CoreML", "TensorFlow", "DockerFile", "ONNX", "VAIDK", "OpenVino"):
        raise CVError(400, "BadRequestExportValidationFailed", f"Unknown export platform {platform!r}.")
    s1_detector = row[2] == "ObjectDetection" and "[S1]" in row[1]
    if platform != "ONNX" or s1_detector:
        raise CVError(
            400,
            "BadRequestNotSupported",
            f"The azvision emulator only exports classifiers and General (compact) detectors to ONNX; "
            f"{platform} exports of {row[1]} {row[2]} iterations are not supported by the emulator.",
        )
    if flavor not in (None, "ONNX10", "ONNX12"):
        raise CVError(400, "BadRequestExportValidationFailed", f"Flavor {flavor!r} is not valid for ONNX.")
