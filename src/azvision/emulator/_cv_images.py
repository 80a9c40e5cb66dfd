"""Image handlers of the emulated Custom Vision Training API: uploads, queries, image tags and regions.

Uploads accept what the service accepts — multipart ``imageData`` (with or without a file name),
raw bytes, base64 JSON (``/images/files``) and URLs (loopback only) — at most 64 images a batch,
6 MB an image, and report ``OK``, ``OKDuplicate`` (same bytes already in the project),
``ErrorImageFormat``, ``ErrorImageSize``… per image, with HTTP 207 unless every image is ``OK``.

Example::

    api = ImagesApi(service)
    route = cv_route(service, "/customvision/v3.3/training/projects/{projectId}/images", "POST",
                     api.create_images_from_data, TRAINING)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from azvision.emulator._cv_http import (
    MAX_BASE64_IMAGE_CHARS,
    MAX_BATCH_IMAGES,
    MAX_FILES_BATCH_BYTES,
    MAX_TRAINING_IMAGE_BYTES,
    ApiBase,
    ImageInfo,
    Upload,
    fetch_image,
    inspect_image,
    json_body,
    no_content,
    query_bool,
    query_ids,
    query_int,
    read_images,
)
from azvision.emulator._cv_store import (
    CVError,
    ImageRecord,
    ProjectRecord,
    RegionRecord,
    image_json,
    new_id,
    now_iso,
    region_json,
)

MAX_BATCH = MAX_BATCH_IMAGES
MAX_TAGS_PER_IMAGE = 100
MAX_REGIONS_PER_IMAGE = 300
MAX_METADATA = 10


def tag_count(images: Iterable[ImageRecord], tag_id: str) -> int:
    """How many images carry ``tag_id`` (as a tag or in a region)."""
    return sum(1 for i in images if tag_id in i.tags or any(r.tag_id == tag_id for r in i.regions))


def _is_tagged(image: ImageRecord) -> bool:
    return bool(image.tags or image.regions)


class ImagesApi(ApiBase):
    """Image handlers; each is named after its SDK operation."""

    def _images_json(self, project: ProjectRecord, images: list[ImageRecord]) -> JSONResponse:
        return JSONResponse([image_json(project, i, self.service.blob_base) for i in images])

    # -- images: upload ----------------------------------------------------------------------
    def _batch_entries(self, body: Any) -> list[dict[str, Any]]:
        """The ``images`` of a JSON upload batch, checked like the service (shape and batch size)."""
        entries = body.get("images") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise CVError(400, "BadRequestImageBatch", 'The body must be {"images": [...]}.')
        self._check_batch(entries)
        return [entry if isinstance(entry, dict) else {} for entry in entries]

    async def create_images_from_data(self, request: Request) -> Response:
        uploads = await read_images(request, MAX_TRAINING_IMAGE_BYTES)
        return await self._create(request, uploads)

    async def create_images_from_files(self, request: Request) -> Response:
        body = await json_body(request, MAX_FILES_BATCH_BYTES, string_limit=MAX_BASE64_IMAGE_CHARS)
        uploads = []
        for entry in self._batch_entries(body):
            try:
                data = base64.b64decode(entry.get("contents") or "", validate=True)
            except (binascii.Error, ValueError, TypeError):
                data = b""
            name = entry.get("name")
            uploads.append(
                Upload(
                    f'"{name}"' if name else None,
                    data,
                    [str(t).lower() for t in entry.get("tagIds") or []],
                    list(entry.get("regions") or []),
                )
            )
        return await self._create(request, uploads, body.get("tagIds"), _metadata(body.get("metadata")))

    async def create_images_from_urls(self, request: Request) -> Response:
        body = await json_body(request)
        uploads = []
        for entry in self._batch_entries(body):
            url = str(entry.get("url") or "")
            upload = Upload(url, b"", [str(t).lower() for t in entry.get("tagIds") or []])
            upload.regions = list(entry.get("regions") or [])
            try:
                upload.data = await fetch_image(self.service, url, MAX_TRAINING_IMAGE_BYTES)
            except CVError:
                upload.error = "ErrorSource"
            uploads.append(upload)
        return await self._create(request, uploads, body.get("tagIds"), _metadata(body.get("metadata")))

    @staticmethod
    def _check_batch(entries: list[Any]) -> None:
        if not entries:
            raise CVError(400, "BadRequestImageBatch", "The batch contains no images.")
        if len(entries) > MAX_BATCH:
            raise CVError(
                400,
                "BadRequestImageBatch",
                f"The batch contains {len(entries)} images; the limit is {MAX_BATCH}.",
            )

    async def _create(
        self,
        request: Request,
        uploads: list[Upload],
        batch_tags: Any = None,
        metadata: dict[str, str] | None = None,
    ) -> Response:
        self._check_batch(uploads)
        tags = query_ids(request, "tagIds") + [str(t).lower() for t in batch_tags or []]
        summary = await run_in_threadpool(
            self._add_images, request.path_params["projectId"], uploads, tags, metadata or {}
        )
        return JSONResponse(summary, status_code=200 if summary["isBatchSuccessful"] else 207)

    def _add_images(
        self, project_id: str, uploads: list[Upload], tags: list[str], metadata: dict[str, str]
    ) -> dict[str, Any]:
        infos = [inspect_image(u.data, MAX_TRAINING_IMAGE_BYTES) for u in uploads]
        results = []
        with self.store.lock:
            project = self.store.project(project_id)
            digests = project.digests()
            for upload, info in zip(uploads, infos, strict=True):
                status, image = self._admit(project, upload, info, tags, digests)
                if status == "OK" and image is not None:
                    image.metadata = dict(metadata)
                result: dict[str, Any] = {"sourceUrl": upload.source, "status": status}
                if image is not None:
                    result["image"] = image_json(project, image, self.service.blob_base)
                results.append(result)
            self.store.save(project)
        return {"isBatchSuccessful": all(r["status"] == "OK" for r in results), "images": results}

    def _admit(
        self,
        project: ProjectRecord,
        upload: Upload,
        info: ImageInfo,
        batch_tags: list[str],
        digests: dict[str, str],
    ) -> tuple[str, ImageRecord | None]:
        if upload.error:
            return upload.error, None
        if info.problem is not None:
            return {"size": "ErrorImageSize", "dimensions": "ErrorImageDimensions"}.get(
                info.problem, "ErrorImageFormat"
            ), None
        tag_ids = list(dict.fromkeys(batch_tags + upload.tag_ids))
        regions = [_region(r) for r in upload.regions]
        if any(t not in project.tags for t in tag_ids) or any(
            r is None or r.tag_id not in project.tags for r in regions
        ):
            return "ErrorInvalidTag", None
        if len(tag_ids) > MAX_TAGS_PER_IMAGE:
            return "ErrorTagLimitExceed", None
        if len(regions) > MAX_REGIONS_PER_IMAGE:
            return "ErrorRegionLimitExceed", None
        kinds = {project.tags[t].type for t in tag_ids}
        if "Negative" in kinds and len(kinds) > 1:
            return "ErrorNegativeAndRegularTagOnSameImage", None
        digest = hashlib.sha256(upload.data).hexdigest()
        if digest in digests:
            return "OKDuplicate", project.images[digests[digest]]
        stamp = now_iso()
        image = ImageRecord(
            id=upload.image_id or new_id(),
            created=stamp,
            width=info.width,
            height=info.height,
            digest=digest,
            tags={t: stamp for t in tag_ids},
            regions=[r for r in regions if r is not None],
        )
        self.store.put_blob(project.id, f"images/{digest}", upload.data)
        project.images[image.id] = image
        digests[digest] = image.id
        return "OK", image

    # -- images: queries ---------------------------------------------------------------------
    def _select(self, request: Request, project: ProjectRecord, tagging: str) -> list[ImageRecord]:
        images = list(project.images.values())
        iteration_id = request.query_params.get("iterationId")
        if iteration_id:
            ids = {s.image_id for s in self.iteration(project, iteration_id).samples}
            images = [i for i in images if i.id in ids]
        tag_ids = set(query_ids(request, "tagIds"))
        if tag_ids:
            images = [
                i for i in images if tag_ids & set(i.tags) or any(r.tag_id in tag_ids for r in i.regions)
            ]
        if tagging == "Tagged":
            images = [i for i in images if _is_tagged(i)]
        elif tagging == "Untagged":
            images = [i for i in images if not _is_tagged(i)]
        return images

    @staticmethod
    def _page(request: Request, images: list[ImageRecord]) -> list[ImageRecord]:
        if request.query_params.get("orderBy", "Newest") != "Oldest":
            images = images[::-1]
        take = min(max(query_int(request, "take", 50), 0), 256)
        skip = max(query_int(request, "skip", 0), 0)
        return images[skip : skip + take]

    async def _list(self, request: Request, tagging: str) -> Response:
        with self.store.lock:
            project = self.project(request)
            return self._images_json(project, self._page(request, self._select(request, project, tagging)))

    async def _count(self, request: Request, tagging: str) -> Response:
        with self.store.lock:
            return JSONResponse(len(self._select(request, self.project(request), tagging)))

    async def get_images(self, request: Request) -> Response:
        return await self._list(request, request.query_params.get("taggingStatus", "All"))

    async def get_image_count(self, request: Request) -> Response:
        return await self._count(request, request.query_params.get("taggingStatus", "All"))

    async def get_tagged_images(self, request: Request) -> Response:
        return await self._list(request, "Tagged")

    async def get_tagged_image_count(self, request: Request) -> Response:
        return await self._count(request, "Tagged")

    async def get_untagged_images(self, request: Request) -> Response:
        return await self._list(request, "Untagged")

    async def get_untagged_image_count(self, request: Request) -> Response:
        return await self._count(request, "Untagged")

    async def get_images_by_ids(self, request: Request) -> Response:
        with self.store.lock:
            project = self.project(request)
            wanted = query_ids(request, "imageIds")
            return self._images_json(project, [project.images[i] for i in wanted if i in project.images])

    async def update_image_metadata(self, request: Request) -> Response:
        metadata = _metadata(await json_body(request))
        image_ids = query_ids(request, "imageIds")
        if not image_ids or len(image_ids) > MAX_BATCH:
            raise CVError(400, "BadRequestImageBatch", f"Give 1 to {MAX_BATCH} image ids.")
        results: list[dict[str, Any]] = []
        with self.store.lock:
            project = self.project(request)
            for image_id in image_ids:
                image = project.images.get(image_id)
                if image is None:
                    results.append({"imageId": image_id, "status": "ErrorImageNotFound", "metadata": None})
                elif len({**image.metadata, **metadata}) > MAX_METADATA:
                    results.append({"imageId": image_id, "status": "ErrorLimitExceed", "metadata": None})
                else:
                    image.metadata.update(metadata)
                    results.append({"imageId": image_id, "status": "OK", "metadata": dict(image.metadata)})
            self.store.save(project)
        ok = all(r["status"] == "OK" for r in results)
        return JSONResponse({"isBatchSuccessful": ok, "images": results}, status_code=200 if ok else 207)

    async def delete_images(self, request: Request) -> Response:
        with self.store.lock:
            project = self.project(request)
            if query_bool(request, "allImages"):
                doomed = list(project.images)
            else:
                doomed = [i for i in query_ids(request, "imageIds") if i in project.images]
            for image_id in doomed:
                image = project.images.pop(image_id)
                self.store.delete_blob(project.id, f"images/{image.digest}")
            self.store.save(project)
        return no_content()

    # -- images: tags and regions ------------------------------------------------------------
    async def create_image_tags(self, request: Request) -> Response:
        body = await json_body(request)
        entries = body.get("tags") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise CVError(400, "BadRequest", 'The body must be {"tags": [...]}.')
        if len(entries) > 128:
            raise CVError(400, "BadRequestExceededBatchSize", "At most 128 image tags per request.")
        created, duplicated = [], []
        with self.store.lock:
            project = self.project(request)
            for entry in entries:
                image_id, tag_id = str(entry.get("imageId", "")).lower(), str(entry.get("tagId", "")).lower()
                if image_id not in project.images or tag_id not in project.tags:
                    raise CVError(400, "BadRequestInvalidIds", f"Unknown image {image_id} or tag {tag_id}.")
                pair = {"imageId": image_id, "tagId": tag_id}
                image = project.images[image_id]
                if tag_id in image.tags:
                    duplicated.append(pair)
                else:
                    image.tags[tag_id] = now_iso()
                    created.append(pair)
            self.store.save(project)
        return JSONResponse({"created": created, "duplicated": duplicated, "exceeded": []})

    async def delete_image_tags(self, request: Request) -> Response:
        with self.store.lock:
            project = self.project(request)
            tag_ids = query_ids(request, "tagIds")
            for image_id in query_ids(request, "imageIds"):
                image = project.images.get(image_id)
                if image is not None:
                    for tag_id in tag_ids:
                        image.tags.pop(tag_id, None)
            self.store.save(project)
        return no_content()

    async def create_image_regions(self, request: Request) -> Response:
        body = await json_body(request)
        entries = body.get("regions") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise CVError(400, "BadRequest", 'The body must be {"regions": [...]}.')
        if len(entries) > MAX_BATCH:
            raise CVError(400, "BadRequestExceededBatchSize", f"At most {MAX_BATCH} regions per request.")
        created = []
        with self.store.lock:
            project = self.project(request)
            for entry in entries:
                image = project.images.get(str(entry.get("imageId", "")).lower())
                region = _region(entry)
                if image is None or region is None or region.tag_id not in project.tags:
                    raise CVError(400, "BadRequestImageRegions", "Invalid image, tag or coordinates.")
                image.regions.append(region)
                created.append({"imageId": image.id, **region_json(region, project.tags[region.tag_id].name)})
            self.store.save(project)
        return JSONResponse({"created": created, "duplicated": [], "exceeded": []})

    async def delete_image_regions(self, request: Request) -> Response:
        doomed = set(query_ids(request, "regionIds"))
        with self.store.lock:
            project = self.project(request)
            for image in project.images.values():
                image.regions = [r for r in image.regions if r.id not in doomed]
            self.store.save(project)
        return no_content()


def _metadata(raw: Any) -> dict[str, str]:
    """Image metadata from a request: at most 10 pairs, keys ≤ 128 and values ≤ 256 characters."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > MAX_METADATA:
        raise CVError(
            400, "BadRequestImageMetadataKey", f"Metadata is at most {MAX_METADATA} key-value pairs."
        )
    for key, value in raw.items():
        if not isinstance(key, str) or not 0 < len(key) <= 128:
            raise CVError(400, "BadRequestImageMetadataKey", "Metadata keys are 1 to 128 characters.")
        if not isinstance(value, str) or len(value) > 256:
            raise CVError(
                400, "BadRequestImageMetadataValue", "Metadata values are strings of at most 256 characters."
            )
    return dict(raw)


def _region(raw: Any) -> RegionRecord | None:
    """A region from a request entry, or ``None`` when it is malformed or outside the image."""
    try:
        left, top = float(raw["left"]), float(raw["top"])
        width, height = float(raw["width"]), float(raw["height"])
        tag_id = str(raw["tagId"]).lower()
    except (KeyError, TypeError, ValueError):
        return None
    inside = left >= 0 and top >= 0 and width > 0 and height > 0
    if not inside or left + width > 1.0001 or top + height > 1.0001:
        return None
    return RegionRecord(new_id(), tag_id, left, top, width, height, now_iso())
