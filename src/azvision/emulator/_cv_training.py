"""Emulated Custom Vision Training API (``/customvision/v3.3|v3.4-preview/training/...``).

Domains, projects, tags, images (multipart or raw bytes, base64 JSON files, loopback URLs),
image tags and regions, training with the service's validation, iterations, per-tag performance
from held-out folds, publishing, ONNX export and quick tests. Errors are the service's flat
``{"code", "message"}`` bodies.

Emulator specifics: training is real transfer learning (see ``_cv_learning``) and takes at least
``training_seconds``; only the ``ONNX`` export platform is built, for classifiers and General
(compact) detectors (other platforms and S1 detectors answer ``400 BadRequestNotSupported``); trainings are
``Regular`` whatever ``trainingType`` says. Stored predictions: see ``_cv_stored_api``.

Example::

    from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
    from msrest.authentication import ApiKeyCredentials

    trainer = CustomVisionTrainingClient(
        emu.endpoint, ApiKeyCredentials(in_headers={"Training-key": emu.training_key}))
    project = trainer.create_project("pets", domain_id="0732100f-1a38-4e49-a514-c9b44c697ab5")
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from azvision.emulator._cv_http import (
    TRAINING,
    ApiBase,
    CustomVisionService,
    Handler,
    cv_route,
    json_body,
    no_content,
)
from azvision.emulator._cv_images import ImagesApi, tag_count
from azvision.emulator._cv_iterations import IterationsApi
from azvision.emulator._cv_store import (
    DOMAINS,
    GENERAL_CLASSIFICATION,
    CVError,
    ProjectRecord,
    TagRecord,
    domain,
    domain_json,
    is_detection,
    new_id,
    now_iso,
    project_json,
    tag_json,
)
from azvision.emulator._cv_stored_api import StoredPredictionsApi

VERSIONS = ("v3.3", "v3.4-preview")
MAX_TAGS = 500
_TAG_TYPES = ("Regular", "Negative", "GeneralProduct")


def training_routes(service: CustomVisionService) -> list[Route]:
    """Routes of the Training API for both versions."""
    api = _ProjectsApi(service)
    images = ImagesApi(service)
    iterations = IterationsApi(service)
    stored = StoredPredictionsApi(service)
    table: list[tuple[str, str, Handler]] = [
        ("/domains", "GET", api.get_domains),
        ("/domains/{domainId}", "GET", api.get_domain),
        ("/projects", "GET", api.get_projects),
        ("/projects", "POST", api.create_project),
        ("/projects/{projectId}", "GET", api.get_project),
        ("/projects/{projectId}", "DELETE", api.delete_project),
        ("/projects/{projectId}", "PATCH", api.update_project),
        ("/projects/{projectId}/tags", "GET", api.get_tags),
        ("/projects/{projectId}/tags", "POST", api.create_tag),
        ("/projects/{projectId}/tags/{tagId}", "GET", api.get_tag),
        ("/projects/{projectId}/tags/{tagId}", "DELETE", api.delete_tag),
        ("/projects/{projectId}/tags/{tagId}", "PATCH", api.update_tag),
        ("/projects/{projectId}/images", "GET", images.get_images),
        ("/projects/{projectId}/images", "POST", images.create_images_from_data),
        ("/projects/{projectId}/images", "DELETE", images.delete_images),
        ("/projects/{projectId}/images/count", "GET", images.get_image_count),
        ("/projects/{projectId}/images/files", "POST", images.create_images_from_files),
        ("/projects/{projectId}/images/urls", "POST", images.create_images_from_urls),
        ("/projects/{projectId}/images/id", "GET", images.get_images_by_ids),
        ("/projects/{projectId}/images/tagged", "GET", images.get_tagged_images),
        ("/projects/{projectId}/images/tagged/count", "GET", images.get_tagged_image_count),
        ("/projects/{projectId}/images/untagged", "GET", images.get_untagged_images),
        ("/projects/{projectId}/images/untagged/count", "GET", images.get_untagged_image_count),
        ("/projects/{projectId}/images/metadata", "POST", images.update_image_metadata),
        ("/projects/{projectId}/images/tags", "POST", images.create_image_tags),
        ("/projects/{projectId}/images/tags", "DELETE", images.delete_image_tags),
        ("/projects/{projectId}/images/regions", "POST", images.create_image_regions),
        ("/projects/{projectId}/images/regions", "DELETE", images.delete_image_regions),
        ("/projects/{projectId}/train", "POST", iterations.train_project),
        ("/projects/{projectId}/iterations", "GET", iterations.get_iterations),
        ("/projects/{projectId}/iterations/{iterationId}", "GET", iterations.get_iteration),
        ("/projects/{projectId}/iterations/{iterationId}", "DELETE", iterations.delete_iteration),
        ("/projects/{projectId}/iterations/{iterationId}", "PATCH", iterations.update_iteration),
        ("/projects/{projectId}/iterations/{iterationId}/export", "GET", iterations.get_exports),
        ("/projects/{projectId}/iterations/{iterationId}/export", "POST", iterations.export_iteration),
        (
            "/projects/{projectId}/iterations/{iterationId}/performance",
            "GET",
            iterations.get_iteration_performance,
        ),
        ("/projects/{projectId}/iterations/{iterationId}/publish", "POST", iterations.publish_iteration),
        ("/projects/{projectId}/iterations/{iterationId}/publish", "DELETE", iterations.unpublish_iteration),
        ("/projects/{projectId}/quicktest/image", "POST", iterations.quick_test_image),
        ("/projects/{projectId}/quicktest/url", "POST", iterations.quick_test_image_url),
        ("/projects/{projectId}/predictions", "DELETE", stored.delete_prediction),
        ("/projects/{projectId}/predictions/query", "POST", stored.query_predictions),
        ("/projects/{projectId}/images/predictions", "POST", stored.create_images_from_predictions),
    ]
    return [
        cv_route(service, f"/customvision/{version}/training{path}", method, handler, TRAINING)
        for version in VERSIONS
        for path, method, handler in table
    ]


class _ProjectsApi(ApiBase):
    """Domain, project and tag handlers; each is named after its SDK operation."""

    # -- domains -----------------------------------------------------------------------------
    async def get_domains(self, request: Request) -> Response:
        return JSONResponse([domain_json(row) for row in DOMAINS])

    async def get_domain(self, request: Request) -> Response:
        row = domain(request.path_params["domainId"])
        if row is None:
            raise CVError(404, "NotFoundDomain", "Domain not found.")
        return JSONResponse(domain_json(row))

    # -- projects ----------------------------------------------------------------------------
    async def get_projects(self, request: Request) -> Response:
        with self.store.lock:
            return JSONResponse([project_json(p) for p in self.store.projects.values()])

    async def create_project(self, request: Request) -> Response:
        query = request.query_params
        name = (query.get("name") or "").strip()
        if not name:
            raise CVError(400, "BadRequestProjectName", "The project name is required.")
        row = domain(query.get("domainId") or GENERAL_CLASSIFICATION)
        if row is None:
            raise CVError(400, "BadRequestProjectUnknownDomain", "Unknown domain.")
        classification = query.get("classificationType")
        if row[2] == "ObjectDetection":
            classification = None
        elif classification is None:
            classification = "Multiclass"
        elif classification not in ("Multiclass", "Multilabel"):
            raise CVError(400, "BadRequestProjectUnknownClassification", "Unknown classification type.")
        platforms = [p for p in (query.get("targetExportPlatforms") or "").split(",") if p]
        with self.store.lock:
            project = self.store.add_project(
                ProjectRecord.new(name, query.get("description"), row[0], classification, platforms)
            )
            return JSONResponse(project_json(project))

    async def get_project(self, request: Request) -> Response:
        with self.store.lock:
            return JSONResponse(project_json(self.project(request)))

    async def delete_project(self, request: Request) -> Response:
        with self.store.lock:
            self.store.delete_project(self.project(request))
        return no_content()

    async def update_project(self, request: Request) -> Response:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise CVError(400, "BadRequest", "The request body must be a Project object.")
        settings = body.get("settings") or {}
        with self.store.lock:
            project = self.project(request)
            if body.get("name"):
                project.name = str(body["name"])
            if "description" in body:
                project.description = body["description"]
            if settings.get("domainId"):
                row = domain(str(settings["domainId"]))
                if row is None:
                    raise CVError(400, "BadRequestProjectUnknownDomain", "Unknown domain.")
                if is_detection(row[0]) != is_detection(project.domain_id):
                    raise CVError(
                        400,
                        "BadRequestProjectUnsupportedDomainTypeChange",
                        "Cannot change between classification and object detection domains.",
                    )
                project.domain_id = row[0]
            kind = settings.get("classificationType")
            if kind and not is_detection(project.domain_id):
                if kind not in ("Multiclass", "Multilabel"):
                    raise CVError(
                        400, "BadRequestProjectUnknownClassification", "Unknown classification type."
                    )
                project.classification_type = kind
            self.store.save(project)
            return JSONResponse(project_json(project))

    # -- tags --------------------------------------------------------------------------------
    async def get_tags(self, request: Request) -> Response:
        with self.store.lock:
            project = self.project(request)
            iteration_id = request.query_params.get("iterationId")
            if iteration_id:
                iteration = self.iteration(project, iteration_id)
                return JSONResponse(
                    [
                        tag_json(project.tags[t], sum(1 for s in iteration.samples if t in s.tag_ids))
                        for t in iteration.tag_ids
                        if t in project.tags
                    ]
                )
            images = list(project.images.values())
            return JSONResponse([tag_json(t, tag_count(images, t.id)) for t in project.tags.values()])

    async def create_tag(self, request: Request) -> Response:
        name = (request.query_params.get("name") or "").strip()
        kind = request.query_params.get("type") or "Regular"
        if not name:
            raise CVError(400, "BadRequestTagName", "The tag name is required.")
        if kind not in _TAG_TYPES:
            raise CVError(400, "BadRequestTagType", f"Unknown tag type {kind!r}.")
        with self.store.lock:
            project = self.project(request)
            self._check_tag(project, name, kind, None)
            if len(project.tags) >= MAX_TAGS:
                raise CVError(
                    400, "BadRequestExceedTagPerProjectLimit", f"A project has at most {MAX_TAGS} tags."
                )
            tag = TagRecord(new_id(), name, request.query_params.get("description"), kind, now_iso())
            project.tags[tag.id] = tag
            self.store.save(project)
            return JSONResponse(tag_json(tag, 0))

    @staticmethod
    def _check_tag(project: ProjectRecord, name: str, kind: str, tag_id: str | None) -> None:
        for other in project.tags.values():
            if other.id == tag_id:
                continue
            if other.name.lower() == name.lower():
                raise CVError(400, "BadRequestTagNameNotUnique", f"Tag name {name!r} is already used.")
            if kind == other.type and kind in ("Negative", "GeneralProduct"):
                raise CVError(400, f"BadRequestMultiple{kind}Tag", f"A project has at most one {kind} tag.")

    async def get_tag(self, request: Request) -> Response:
        with self.store.lock:
            project = self.project(request)
            tag = self.tag(project, request.path_params["tagId"])
            return JSONResponse(tag_json(tag, tag_count(project.images.values(), tag.id)))

    async def delete_tag(self, request: Request) -> Response:
        with self.store.lock:
            project = self.project(request)
            tag = self.tag(project, request.path_params["tagId"])
            del project.tags[tag.id]
            for image in project.images.values():
                image.tags.pop(tag.id, None)
                image.regions = [r for r in image.regions if r.tag_id != tag.id]
            self.store.save(project)
        return no_content()

    async def update_tag(self, request: Request) -> Response:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise CVError(400, "BadRequest", "The request body must be a Tag object.")
        with self.store.lock:
            project = self.project(request)
            tag = self.tag(project, request.path_params["tagId"])
            name = str(body.get("name") or tag.name).strip()
            kind = str(body.get("type") or tag.type)
            if kind not in _TAG_TYPES:
                raise CVError(400, "BadRequestTagType", f"Unknown tag type {kind!r}.")
            self._check_tag(project, name, kind, tag.id)
            tag.name, tag.type = name, kind
            if "description" in body:
                tag.description = body["description"]
            self.store.save(project)
            return JSONResponse(tag_json(tag, tag_count(project.images.values(), tag.id)))
