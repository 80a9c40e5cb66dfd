"""State of the emulated Custom Vision resource: projects, tags, images, iterations, exports.

Records are plain dataclasses guarded by one re-entrant lock. With a ``data_dir`` every project
is one JSON file (rewritten atomically after each change) and every image or export one blob
file; without it everything stays in memory. ``*_json`` functions render records in the
service's wire shapes (camelCase).

Example::

    store = CustomVisionStore(None)
    with store.lock:
        project = store.add_project(ProjectRecord.new("demo", None, GENERAL_COMPACT, "Multiclass"))
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# Domain table: (id, name, type, compact). IDs are global constants of the real service.
DOMAINS: tuple[tuple[str, str, str, bool], ...] = (
    ("ee85a74c-405e-4adc-bb47-ffa8ca0c9f31", "General", "Classification", False),
    ("a8e3c40f-fb4a-466f-832a-5e457ae4a344", "General [A1]", "Classification", False),
    ("2e37d7fb-3a54-486a-b4d6-cfc369af0018", "General [A2]", "Classification", False),
    ("c151d5b5-dd07-472a-acc8-15d29dea8518", "Food", "Classification", False),
    ("ca455789-012d-4b50-9fec-5bb63841c793", "Landmarks", "Classification", False),
    ("b30a91ae-e3c1-4f73-a81e-c270bff27c39", "Retail", "Classification", False),
    ("0732100f-1a38-4e49-a514-c9b44c697ab5", "General (compact)", "Classification", True),
    ("a1db07ca-a19a-4830-bae8-e004a42dc863", "General (compact) [S1]", "Classification", True),
    ("da2e3a8a-40a5-4171-82f4-58522f70fbc1", "General", "ObjectDetection", False),
    ("9c616dff-2e7d-ea11-af59-1866da359ce6", "General [A1]", "ObjectDetection", False),
    ("1d8ffafe-ec40-4fb2-8f90-72b3b6cecea4", "Logo", "ObjectDetection", False),
    ("3780a898-81c3-4516-81ae-3a139614e1f3", "Products on shelves", "ObjectDetection", False),
    ("a27d5ca5-bb19-49d8-a70a-fec086c47f5b", "General (compact)", "ObjectDetection", True),
    ("7ec2ac80-887b-48a6-8df9-8b1357765430", "General (compact) [S1]", "ObjectDetection", True),
)
GENERAL_CLASSIFICATION = DOMAINS[0][0]
GENERAL_COMPACT = DOMAINS[6][0]
_CLASSIFIER_PLATFORMS = ["CoreML", "TensorFlow", "DockerFile", "ONNX", "VAIDK", "OpenVino"]
_DETECTOR_PLATFORMS = ["CoreML", "TensorFlow", "DockerFile", "ONNX", "OpenVino"]


class CVError(Exception):
    """A Custom Vision error: HTTP ``status`` and the flat ``{"code", "message"}`` body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def now_iso() -> str:
    """UTC now as the service writes it: ``2024-05-01T12:00:00.123Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


def domain(domain_id: str) -> tuple[str, str, str, bool] | None:
    """The `DOMAINS` row for an id (case-insensitive), or ``None``."""
    wanted = domain_id.lower()
    return next((row for row in DOMAINS if row[0] == wanted), None)


def is_detection(domain_id: str) -> bool:
    row = domain(domain_id)
    return row is not None and row[2] == "ObjectDetection"


def domain_json(row: tuple[str, str, str, bool]) -> dict[str, Any]:
    domain_id, name, kind, compact = row
    platforms = (
        (_DETECTOR_PLATFORMS if kind == "ObjectDetection" else _CLASSIFIER_PLATFORMS) if compact else []
    )
    return {
        "id": domain_id,
        "name": name,
        "type": kind,
        "exportable": compact,
        "enabled": True,
        "exportablePlatforms": platforms,
        "modelInformation": {
            "estimatedModelSizeInMegabytes": 6 if compact else 0,
            "description": f"{name} {kind.lower()} domain (emulated by azvision).",
        },
    }


@dataclass
class TagRecord:
    id: str
    name: str
    description: str | None
    type: str  # Regular | Negative | GeneralProduct
    created: str


@dataclass
class RegionRecord:
    id: str
    tag_id: str
    left: float
    top: float
    width: float
    height: float
    created: str


@dataclass
class ImageRecord:
    id: str
    created: str
    width: int
    height: int
    digest: str  # sha256 of the bytes: duplicate detection and blob name
    tags: dict[str, str] = field(default_factory=dict)  # tag id -> when it was attached
    regions: list[RegionRecord] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class Sample:
    """One image as an iteration saw it when it was trained."""

    image_id: str
    digest: str
    tag_ids: list[str]
    regions: list[RegionRecord] = field(default_factory=list)


@dataclass
class ExportRecord:
    id: str
    platform: str
    flavor: str | None
    status: str  # Exporting | Done | Failed
    created: str


@dataclass
class IterationRecord:
    id: str
    name: str
    project_id: str
    status: str  # Training | Completed | Failed
    created: str
    last_modified: str
    domain_id: str
    classification_type: str | None
    training_type: str
    reserved_budget_in_hours: int
    fingerprint: str
    tag_ids: list[str]  # class order of the head
    samples: list[Sample]
    trained_at: str | None = None
    training_minutes: int = 0
    publish_name: str = ""
    publish_resource_id: str = ""
    training_error: str | None = None
    head: dict[str, Any] | None = None
    performance: dict[str, dict[str, Any]] = field(default_factory=dict)  # by threshold
    exports: list[ExportRecord] = field(default_factory=list)


@dataclass
class ProjectRecord:
    id: str
    name: str
    description: str | None
    domain_id: str
    classification_type: str | None
    target_export_platforms: list[str]
    created: str
    last_modified: str
    tags: dict[str, TagRecord] = field(default_factory=dict)
    images: dict[str, ImageRecord] = field(default_factory=dict)
    iterations: dict[str, IterationRecord] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
        name: str,
        description: str | None,
        domain_id: str,
        classification_type: str | None,
        target_export_platforms: list[str] | None = None,
    ) -> ProjectRecord:
        stamp = now_iso()
        return cls(
            id=new_id(),
            name=name,
            description=description,
            domain_id=domain_id,
            classification_type=classification_type,
            target_export_platforms=target_export_platforms or [],
            created=stamp,
            last_modified=stamp,
        )

    def digests(self) -> dict[str, str]:
        return {image.digest: image.id for image in self.images.values()}


def _load_project(data: dict[str, Any]) -> ProjectRecord:
    def regions(items: list[dict[str, Any]]) -> list[RegionRecord]:
        return [RegionRecord(**item) for item in items]

    project = ProjectRecord(**{k: v for k, v in data.items() if k not in ("tags", "images", "iterations")})
    project.tags = {t["id"]: TagRecord(**t) for t in data["tags"].values()}
    for raw in data["images"].values():
        image = ImageRecord(**{**raw, "regions": regions(raw["regions"])})
        project.images[image.id] = image
    for raw in data["iterations"].values():
        samples = [Sample(**{**s, "regions": regions(s["regions"])}) for s in raw["samples"]]
        exports = [ExportRecord(**e) for e in raw["exports"]]
        iteration = IterationRecord(**{**raw, "samples": samples, "exports": exports})
        project.iterations[iteration.id] = iteration
    return project


class CustomVisionStore:
    """All projects of one emulated resource, optionally persisted under ``root``.

    Callers hold `lock` while they read or change records and call `save` after a
    change. Work interrupted by a restart (training, exports) is marked ``Failed`` on load.
    """

    def __init__(self, root: Path | None) -> None:
        self.lock = threading.RLock()
        self.root = root
        self.projects: dict[str, ProjectRecord] = {}
        self._blobs: dict[str, bytes] = {}
        if root is not None:
            (root / "projects").mkdir(parents=True, exist_ok=True)
            for path in sorted((root / "projects").glob("*.json")):
                project = _load_project(json.loads(path.read_text("utf-8")))
                self._fail_interrupted(project)
                self.projects[project.id] = project

    @staticmethod
    def _fail_interrupted(project: ProjectRecord) -> None:
        for iteration in project.iterations.values():
            if iteration.status == "Training":
                iteration.status = "Failed"
                iteration.training_error = "Training was interrupted by an emulator restart."
            for export in iteration.exports:
                if export.status == "Exporting":
                    export.status = "Failed"

    # -- projects ----------------------------------------------------------------------------
    def add_project(self, project: ProjectRecord) -> ProjectRecord:
        self.projects[project.id] = project
        self.save(project)
        return project

    def project(self, project_id: str) -> ProjectRecord:
        project = self.projects.get(project_id.lower())
        if project is None:
            raise CVError(404, "NotFoundProject", f"Project {project_id} not found.")
        return project

    def delete_project(self, project: ProjectRecord) -> None:
        del self.projects[project.id]
        if self.root is not None:
            (self.root / "projects" / f"{project.id}.json").unlink(missing_ok=True)
            shutil.rmtree(self.root / "blobs" / project.id, ignore_errors=True)
        for name in [n for n in self._blobs if n.startswith(project.id + "/")]:
            del self._blobs[name]

    def save(self, project: ProjectRecord) -> None:
        """Persist one project (no-op in memory); atomic: a crash leaves the old or new file."""
        project.last_modified = now_iso()
        if self.root is None:
            return
        path = self.root / "projects" / f"{project.id}.json"
        _write_atomic(path, json.dumps(asdict(project)).encode("utf-8"))

    def reset(self) -> None:
        """Forget everything, including what is persisted."""
        self.projects.clear()
        self._blobs.clear()
        if self.root is not None:
            shutil.rmtree(self.root / "projects", ignore_errors=True)
            shutil.rmtree(self.root / "blobs", ignore_errors=True)
            (self.root / "projects").mkdir(parents=True, exist_ok=True)

    # -- blobs -------------------------------------------------------------------------------
    def put_blob(self, project_id: str, name: str, data: bytes) -> None:
        key = f"{project_id}/{name}"
        if self.root is None:
            self._blobs[key] = data
        else:
            _write_atomic(self.root / "blobs" / key, data)

    def get_blob(self, project_id: str, name: str) -> bytes:
        """Raises ``KeyError`` when the blob does not exist."""
        key = f"{project_id}/{name}"
        if self.root is None:
            return self._blobs[key]
        try:
            return (self.root / "blobs" / key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def delete_blob(self, project_id: str, name: str) -> None:
        key = f"{project_id}/{name}"
        self._blobs.pop(key, None)
        if self.root is not None:
            (self.root / "blobs" / key).unlink(missing_ok=True)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# -- wire shapes -------------------------------------------------------------------------------
def project_json(project: ProjectRecord) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "description": project.description or "",
        "settings": {
            "domainId": project.domain_id,
            "classificationType": project.classification_type,
            "targetExportPlatforms": project.target_export_platforms,
            "useNegativeSet": True,
            "detectionParameters": None,
            "imageProcessingSettings": {"augmentationMethods": {}},
            "exportModelContainerUri": None,
            "notificationQueueUri": None,
        },
        "created": project.created,
        "lastModified": project.last_modified,
        "thumbnailUri": None,
        "drModeEnabled": False,
        "status": "Succeeded",
    }


def tag_json(tag: TagRecord, image_count: int) -> dict[str, Any]:
    return {
        "id": tag.id,
        "name": tag.name,
        "description": tag.description,
        "type": tag.type,
        "imageCount": image_count,
    }


def region_json(region: RegionRecord, tag_name: str) -> dict[str, Any]:
    return {
        "regionId": region.id,
        "tagName": tag_name,
        "created": region.created,
        "tagId": region.tag_id,
        "left": region.left,
        "top": region.top,
        "width": region.width,
        "height": region.height,
    }


def image_json(project: ProjectRecord, image: ImageRecord, blob_base: str) -> dict[str, Any]:
    def tag_name(tag_id: str) -> str:
        tag = project.tags.get(tag_id)
        return tag.name if tag else ""

    uri = f"{blob_base}/{project.id}/images/{image.id}"
    return {
        "id": image.id,
        "created": image.created,
        "width": image.width,
        "height": image.height,
        "resizedImageUri": f"{uri}/resized",
        "thumbnailUri": f"{uri}/thumbnail",
        "originalImageUri": uri,
        "tags": [
            {"tagId": tag_id, "tagName": tag_name(tag_id), "created": created}
            for tag_id, created in image.tags.items()
        ]
        or None,
        "regions": [region_json(r, tag_name(r.tag_id)) for r in image.regions] or None,
        "metadata": image.metadata or None,
    }


def iteration_json(iteration: IterationRecord) -> dict[str, Any]:
    row = domain(iteration.domain_id)
    compact = row is not None and row[3]
    exportable = compact and iteration.status == "Completed"
    platforms = domain_json(row)["exportablePlatforms"] if row is not None else []
    return {
        "id": iteration.id,
        "name": iteration.name,
        "status": iteration.status,
        "created": iteration.created,
        "lastModified": iteration.last_modified,
        "trainedAt": iteration.trained_at,
        "projectId": iteration.project_id,
        "exportable": exportable,
        "exportableTo": platforms if exportable else [],
        "domainId": iteration.domain_id,
        "classificationType": iteration.classification_type,
        "trainingType": iteration.training_type,
        "reservedBudgetInHours": iteration.reserved_budget_in_hours,
        "trainingTimeInMinutes": iteration.training_minutes,
        "publishName": iteration.publish_name,
        "originalPublishResourceId": iteration.publish_resource_id,
        "customBaseModelInfo": None,
        "trainingErrorDetails": iteration.training_error,
    }


def export_json(export: ExportRecord, download_uri: str) -> dict[str, Any]:
    return {
        "platform": export.platform,
        "status": export.status,
        "downloadUri": download_uri if export.status == "Done" else "",
        "flavor": export.flavor,
        "newerVersionAvailable": False,
    }
