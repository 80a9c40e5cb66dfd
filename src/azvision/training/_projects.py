"""Projects, tags and uploads: the parts of `CustomVisionTrainer` that fill a project.

A project is found by name or created on the right classification domain; tags are created as needed;
uploads go through the `azvision.training._upload` engine, which sends only what is not in the
project yet.

Example:
    >>> from azvision import CustomVisionTrainer
    >>> trainer = CustomVisionTrainer("https://x.cognitiveservices.azure.com", "key")
    >>> trainer.tags(trainer.project("flowers"), ["rose", "tulip"])  # doctest: +SKIP
    {'rose': '…', 'tulip': '…'}
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, Literal

from azure.cognitiveservices.vision.customvision.training.models import (
    ImageFileCreateBatch,
    ImageFileCreateEntry,
    Region,
)

from .._errors import ConfigurationError, ServiceError
from ..datasets import Dataset
from ..detection_datasets import DetectionDataset
from ._core import TrainerCore, project_ref
from ._upload import ExistingImage, OutgoingImage, Uploader, UploadItem
from .models import ProjectInfo, UploadReport

__all__ = ["ProjectsMixin", "Task"]

Task = Literal["classification", "detection"]
_DOMAIN_TYPES: dict[str, str] = {"classification": "Classification", "detection": "ObjectDetection"}


class ProjectsMixin(TrainerCore):
    """Find or create projects and tags, and upload data sets into them."""

    # -- projects and tags ---------------------------------------------------------------------
    def _domain_list(self) -> list[Any]:
        if self._domains is None:
            self._domains = list(self._call(lambda c: c.get_domains()))
        return self._domains

    def _project_info(self, project: Any) -> ProjectInfo:
        settings = project.settings
        domain_id = getattr(settings, "domain_id", None)
        row = next((d for d in self._domain_list() if str(d.id).lower() == str(domain_id).lower()), None)
        return ProjectInfo(
            id=str(project.id),
            name=project.name,
            domain_id=domain_id,
            domain_name=row.name if row is not None else None,
            classification_type=getattr(settings, "classification_type", None),
            exportable=bool(row is not None and row.exportable),
            domain_type=row.type if row is not None else None,
        )

    def find_project(self, name: str) -> ProjectInfo | None:
        """The project called ``name``, or ``None``.

        Example:
            >>> trainer.find_project("flowers")  # doctest: +SKIP
            ProjectInfo(id='…', name='flowers', …)
        """
        for project in self._call(lambda c: c.get_projects()):
            if project.name == name:
                return self._project_info(project)
        return None

    def project(
        self,
        name: str,
        *,
        domain: str | None = None,
        multilabel: bool = False,
        exportable: bool = False,
        task: Task = "classification",
    ) -> ProjectInfo:
        """Get the project called ``name``, creating it if missing.

        ``domain`` is a domain name such as ``"General"`` or ``"General (compact)"`` (default: the
        compact one when ``exportable``, else ``"General"``), of the classification domains or, with
        ``task="detection"``, of the object-detection ones. An existing project must match the task, the
        classification type and, when asked, the domain; otherwise `ConfigurationError`.

        Example:
            >>> trainer.project("tools", task="detection", exportable=True).domain_name  # doctest: +SKIP
            'General (compact)'
        """
        if task not in _DOMAIN_TYPES:
            raise ConfigurationError(f"task must be 'classification' or 'detection', got {task!r}")
        detection = task == "detection"
        wanted_domain = self._domain(
            domain or ("General (compact)" if exportable else "General"), _DOMAIN_TYPES[task]
        )
        kind = None if detection else "Multilabel" if multilabel else "Multiclass"
        existing = self.find_project(name)
        if existing is not None:
            if existing.domain_type is not None and existing.detection != detection:
                raise ConfigurationError(
                    f"project {name!r} is an {'object detection' if existing.detection else 'classification'}"
                    f" project, not {'object detection' if detection else 'classification'}; "
                    "use another project name"
                )
            if kind and existing.classification_type and existing.classification_type != kind:
                raise ConfigurationError(
                    f"project {name!r} exists as {existing.classification_type}, not {kind}; "
                    "use another project name"
                )
            if domain is not None and existing.domain_id != wanted_domain.id:
                raise ConfigurationError(
                    f"project {name!r} uses the domain {existing.domain_name!r}, not {wanted_domain.name!r}"
                )
            if exportable and not existing.exportable:
                raise ConfigurationError(
                    f"project {name!r} uses the domain {existing.domain_name!r}, which cannot be exported; "
                    "exports need a compact domain such as 'General (compact)'"
                )
            return existing
        created = self._call(
            lambda c: c.create_project(name, domain_id=wanted_domain.id, classification_type=kind),
            recover=lambda: self.find_project(name),
        )
        return created if isinstance(created, ProjectInfo) else self._project_info(created)

    def _domain(self, name: str, kind: str = "Classification") -> Any:
        matches = [
            d for d in self._domain_list() if d.type == kind and d.name.lower() == name.strip().lower()
        ]
        if not matches:
            names = sorted({d.name for d in self._domain_list() if d.type == kind})
            what = "object detection" if kind == "ObjectDetection" else "classification"
            raise ConfigurationError(f"unknown {what} domain {name!r}; choose one of: {', '.join(names)}")
        return matches[0]

    def tags(self, project: ProjectInfo | str, names: Sequence[str]) -> dict[str, str]:
        """Tag ids by name, creating the tags that are missing.

        Example:
            >>> trainer.tags(project, ["rose", "tulip"])  # doctest: +SKIP
            {'rose': '…', 'tulip': '…'}
        """
        project_id = project_ref(project)

        def current() -> dict[str, str]:
            return {t.name: str(t.id) for t in self._call(lambda c: c.get_tags(project_id))}

        ids = current()
        for name in names:
            if name not in ids:
                ids[name] = self._create_tag(project_id, name, current)
        return ids

    def _create_tag(self, project_id: str, name: str, current: Callable[[], dict[str, str]]) -> str:
        def create(client: Any) -> str:
            return str(client.create_tag(project_id, name).id)

        try:
            return self._call(create, recover=lambda: current().get(name))
        except ServiceError as exc:
            if exc.code != "BadRequestTagNameNotUnique":
                raise
            return current()[name]

    # -- upload --------------------------------------------------------------------------------
    def upload(
        self,
        project: ProjectInfo | str,
        dataset: Dataset | DetectionDataset,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> UploadReport:
        """Upload a data set (tags created as needed); returns what happened to every image.

        A `DetectionDataset` is uploaded with its regions (images without regions go untagged).

        Images already in the project (from an earlier, possibly interrupted run) are not sent again;
        see `azvision.training._upload`. ``progress(done, total)`` is called as images settle.

        Example:
            >>> report = trainer.upload(project, Dataset.from_folder("flowers/"))  # doctest: +SKIP
            >>> report.uploaded, report.failed  # doctest: +SKIP
        """
        project_id = project_ref(project)
        tag_ids = self.tags(project_id, dataset.labels)
        if isinstance(dataset, DetectionDataset):
            items = [
                UploadItem(
                    dataset.display_name(it),
                    it.path,
                    (),
                    tuple(
                        (tag_ids[r.label], r.box.left, r.box.top, r.box.width, r.box.height)
                        for r in it.regions
                    ),
                )
                for it in dataset.items
            ]
        else:
            items = [
                UploadItem(dataset.display_name(it), it.path, tuple(tag_ids[label] for label in it.labels))
                for it in dataset.items
            ]

        def send(images: Sequence[OutgoingImage], metadata: Any) -> list[tuple[str, str]]:
            batch = ImageFileCreateBatch(
                images=[
                    ImageFileCreateEntry(
                        name=i.name,
                        contents=bytearray(i.data),
                        tag_ids=list(i.tag_ids) or None,
                        regions=[
                            Region(tag_id=t, left=x, top=y, width=w, height=h) for t, x, y, w, h in i.regions
                        ]
                        or None,
                    )
                    for i in images
                ],
                metadata=dict(metadata),
            )
            summary = self._once(lambda c: c.create_images_from_files(project_id, batch))
            return [(r.source_url or "", r.status or "") for r in summary.images or ()]

        uploader = Uploader(
            send,
            throttle=self._throttle,
            retry=self.retry,
            concurrency=self.upload_concurrency,
            progress=progress,
            sleep=self._sleep,
        )
        return uploader.run(items, self._existing_images(project_id))

    def _existing_images(self, project_id: str) -> Iterator[ExistingImage]:
        skip = 0
        while True:
            page: list[Any] = self._call(partial(_images_page, project_id=project_id, skip=skip))
            for image in page:
                yield ExistingImage(image.width or 0, image.height or 0, image.metadata or {})
            if len(page) < 256:
                return
            skip += len(page)


def _images_page(client: Any, *, project_id: str, skip: int) -> list[Any]:
    return list(client.get_images(project_id, take=256, skip=skip))
