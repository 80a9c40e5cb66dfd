"""Export a project's labelled data before the service retires: every tagged image, its tags and regions.

Images are listed through the training API (``GetTaggedImages``, 256 a page, oldest first so that images
added meanwhile do not shift the pages), each call under the trainer's quota and retry policy; each image
is downloaded from its ``originalImageUri`` (a blob URL: no key, no quota, the same retry policy) and
written under a temporary name, then renamed, through one pooled HTTP client. A file under its final
name is therefore whole, which is what makes an export resumable: a re-run finds the images already there
(by image id; each is checked, and one a machine crash left broken is downloaded again) and downloads only
the others, so no image is written twice. The annotation files are written last, atomically.

Example:
    >>> with CustomVisionTrainer() as trainer:  # doctest: +SKIP
    ...     report = trainer.export_dataset("flowers", "flowers-export", format="automl",
    ...                                     validation_split=0.2)
    >>> report.exported == report.tagged  # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from .._errors import AzVisionError, ConfigurationError, NotFoundError
from .._models import BoundingBox
from ..datasets import Dataset, DatasetItem
from ._core import NAME
from ._dataset_writers import write_automl, write_coco, write_text_atomic
from ._export import ExportsMixin
from ._export_models import DatasetExport, ExportedImage, ExportedRegion, NotExported, Task
from ._model_exports import download_model_exports
from ._projects import ProjectsMixin
from .models import ProjectInfo

__all__ = ["FORMATS", "DatasetExportMixin"]

#: The export formats.
FORMATS = ("automl", "coco", "folder")
_HEADER = ".azvision-export.json"
_PAGE = 256
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp"}
_ID_FILE = re.compile(r"^([0-9a-fA-F-]{36})\.(jpg|png|gif|bmp)$")


class _Listed:
    """One tagged image as the training API listed it."""

    def __init__(self, image: Any) -> None:
        self.id = str(image.id).lower()
        self.uri = image.original_image_uri or ""
        self.labels = tuple(dict.fromkeys(t.tag_name for t in image.tags or () if t.tag_name))
        self.regions = tuple(
            ExportedRegion(label=r.tag_name, box=BoundingBox.clipped(r.left, r.top, r.width, r.height))
            for r in image.regions or ()
        )


class DatasetExportMixin(ExportsMixin, ProjectsMixin):
    """``export_dataset``: a project's labelled images to AutoML JSONL + MLTable, COCO or label folders."""

    def export_dataset(
        self,
        project: ProjectInfo | str,
        out_dir: str | os.PathLike[str],
        *,
        format: str = "automl",
        validation_split: float | None = None,
        with_exports: bool = False,
        seed: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> DatasetExport:
        """Export every tagged image of ``project`` (name, id or `ProjectInfo`) into ``out_dir``.

        ``format``: ``"automl"`` (AutoML-for-images ``annotations.jsonl`` + ``MLTable``, and an Azure ML
        job ``automl-job.yml`` that trains on them), ``"coco"``
        (``coco.json``) or ``"folder"`` (one sub-folder per label; multi-class projects only). Images go
        to ``out_dir/images/`` (``out_dir/<label>/`` for ``folder``), named by their Custom Vision image
        id. ``validation_split`` (automl, coco) also writes a seeded, stratified train/validation pair
        (``train/`` and ``validation/`` MLTable folders, or ``coco_train.json`` and
        ``coco_validation.json``). ``with_exports`` also downloads every trained iteration's model
        exports to ``out_dir/models/``. ``progress(done, total)`` is called as images settle.

        Re-running into the same folder resumes: images already written are kept, not downloaded again.
        Raises `NotFoundError` for an unknown project and `ConfigurationError` for a bad
        argument or a folder that cannot be written (a full disk included); what was written stays valid.
        A project with no tagged image writes nothing: the report says ``empty``.

        Example:
            >>> report = trainer.export_dataset("flowers", "out", format="folder")  # doctest: +SKIP
            >>> report.exported, [n.reason for n in report.not_exported]  # doctest: +SKIP
            (60, ['untagged'])
        """
        chosen = format.strip().lower()
        if chosen not in FORMATS:
            raise ConfigurationError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
        if validation_split is not None:
            if chosen == "folder":
                raise ConfigurationError(
                    "validation_split works with the automl and coco formats, not folder"
                )
            if not 0.0 < validation_split < 1.0:
                raise ConfigurationError(f"validation_split must be between 0 and 1, got {validation_split}")
        target = Path(out_dir)
        if target.exists() and not target.is_dir():
            raise ConfigurationError(f"{target} is a file; give a folder to export into")
        info = self._resolve_project(project)
        task = self._task(info)
        if chosen == "folder" and task != "multiclass":
            raise ConfigurationError(
                f"project {info.name!r} is {task}: the folder format holds one label per image; "
                "use --format automl or coco"
            )
        tagged = self._call(lambda c: c.get_tagged_image_count(info.id))
        report = DatasetExport(
            project_id=info.id,
            project_name=info.name,
            task=task,
            format=chosen,
            out_dir=target,
            tagged=tagged,
        )
        if tagged == 0:
            return report
        _claim(target, info.id, chosen)
        images, failed, downloaded = self._download_all(info.id, target, chosen, tagged, progress)
        untagged = [NotExported(image_id=i, reason="untagged") for i in self._untagged_ids(info.id)]
        labels = tuple(sorted({label for image in images for label in image.labels}))
        splits = _split(images, target, validation_split, seed) if validation_split else None
        files = _write_annotations(target, chosen, images, task, labels, splits, info.name)
        models = download_model_exports(self, info.id, target / "models") if with_exports else []
        return report.model_copy(
            update={
                "exported": len(images),
                "downloaded": downloaded,
                "labels": labels,
                "not_exported": (*failed, *untagged),
                "files": tuple(files),
                "splits": {name: len(members) for name, members in (splits or {}).items()},
                "models": tuple(models),
            }
        )

    # -- the project ---------------------------------------------------------------------------
    def list_projects(self) -> list[ProjectInfo]:
        """Every project of the training resource, in the service's order (to export them all).

        Example:
            >>> [p.name for p in trainer.list_projects()]  # doctest: +SKIP
            ['flowers', 'parts']
        """
        return [self._project_info(p) for p in self._call(lambda c: c.get_projects())]

    def _resolve_project(self, project: ProjectInfo | str) -> ProjectInfo:
        if isinstance(project, ProjectInfo):
            return project
        wanted = project.strip()
        for candidate in self._call(lambda c: c.get_projects()):
            if candidate.name == wanted or str(candidate.id).lower() == wanted.lower():
                return self._project_info(candidate)
        raise NotFoundError(
            f"no Custom Vision project named {wanted!r} on {self.endpoint}",
            backend=NAME,
            code="NotFoundProject",
        )

    def _task(self, info: ProjectInfo) -> Task:
        domain_id = str(info.domain_id or "").lower()
        row = next((d for d in self._domain_list() if str(d.id).lower() == domain_id), None)
        if row is not None and row.type == "ObjectDetection":
            return "detection"
        return "multilabel" if info.multilabel else "multiclass"

    # -- listing -------------------------------------------------------------------------------
    def _pages(self, project_id: str, method: str) -> Iterator[Any]:
        skip = 0
        while True:
            page: list[Any] = self._call(partial(_page, method=method, project_id=project_id, skip=skip))
            yield from page
            if len(page) < _PAGE:
                return
            skip += len(page)

    def _untagged_ids(self, project_id: str) -> list[str]:
        return [str(image.id).lower() for image in self._pages(project_id, "get_untagged_images")]

    # -- images --------------------------------------------------------------------------------
    def _download_all(
        self,
        project_id: str,
        target: Path,
        chosen: str,
        tagged: int,
        progress: Callable[[int, int], None] | None,
    ) -> tuple[list[ExportedImage], list[NotExported], int]:
        import httpx

        present = _present_files(target)
        images: list[ExportedImage] = []
        failed: list[NotExported] = []
        seen: dict[str, int] = {}  # image id -> listing order
        downloaded = 0
        window = max(1, self.upload_concurrency)
        pending: list[tuple[_Listed, Future[ExportedImage]]] = []

        def settle(listed: _Listed, future: Future[ExportedImage]) -> None:
            nonlocal downloaded
            try:
                images.append(future.result())
                downloaded += 1
            except AzVisionError as exc:
                if isinstance(exc, ConfigurationError):
                    raise
                failed.append(NotExported(image_id=listed.id, reason=f"download failed: {exc}"))
            if progress is not None:
                progress(len(images) + len(failed), tagged)

        limits = httpx.Limits(max_connections=window, max_keepalive_connections=window)
        with (
            httpx.Client(limits=limits, follow_redirects=True) as http,
            ThreadPoolExecutor(max_workers=window, thread_name_prefix="azvision-export") as pool,
        ):
            try:
                for raw in self._pages(project_id, "get_tagged_images"):
                    listed = _Listed(raw)
                    if listed.id in seen:
                        continue
                    seen[listed.id] = len(seen)
                    folder = _folder_of(chosen, listed)
                    existing = present.get(listed.id)
                    reused = _reuse(target, existing, folder, listed) if existing is not None else None
                    if reused is not None:
                        images.append(reused)
                        if progress is not None:
                            progress(len(images) + len(failed), tagged)
                        continue
                    pending.append((listed, pool.submit(self._fetch_image, target, folder, listed, http)))
                    if len(pending) >= 2 * window:
                        settle(*pending.pop(0))
                while pending:
                    settle(*pending.pop(0))
            finally:
                for _, future in pending:
                    future.cancel()
        images.sort(key=lambda image: seen[image.id])
        for image_id, path in present.items():
            if image_id not in seen:  # written by an earlier run, no longer a tagged image of the project
                path.unlink(missing_ok=True)
        return images, failed, downloaded

    def _fetch_image(self, target: Path, folder: str, listed: _Listed, http: Any) -> ExportedImage:
        if not listed.uri:
            raise AzVisionError("the service gave no image URL", backend=NAME)
        directory = target / folder
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".", suffix=".part", delete=False) as out:
                spool = Path(out.name)
                try:
                    self._download_blob(listed.uri, out, service="the image download", http=http)
                except BaseException:
                    out.close()
                    spool.unlink(missing_ok=True)
                    raise
            data = spool.read_bytes()
            try:
                kind, width, height = _inspect(data)
            except ValueError as exc:
                spool.unlink(missing_ok=True)
                raise AzVisionError(str(exc), backend=NAME) from None
            file = f"{folder}/{listed.id}.{_EXTENSIONS[kind]}"
            os.replace(spool, target / file)
        except OSError as exc:
            raise _write_error(directory, exc) from exc
        return _record(listed, file, data, width, height)


def _page(client: Any, *, method: str, project_id: str, skip: int) -> list[Any]:
    return list(getattr(client, method)(project_id, take=_PAGE, skip=skip, order_by="Oldest"))


def _write_error(where: Path, exc: OSError) -> ConfigurationError:
    return ConfigurationError(
        f"cannot write the export into {where}: {exc.strerror or exc}; what was written so far is kept, "
        "and running the export again resumes it"
    )


def _claim(target: Path, project_id: str, chosen: str) -> None:
    """Create ``target`` and mark it as this project's export (a re-run resumes, another project refuses)."""
    header = target / _HEADER
    try:
        if header.exists():
            previous = json.loads(header.read_text("utf-8"))
            if previous.get("project_id") != project_id or previous.get("format") != chosen:
                raise ConfigurationError(
                    f"{target} holds the {previous.get('format')} export of project "
                    f"{previous.get('project_id')}; export into another folder"
                )
            return
        target.mkdir(parents=True, exist_ok=True)
        write_text_atomic(header, json.dumps({"project_id": project_id, "format": chosen}) + "\n")
    except OSError as exc:
        raise _write_error(target, exc) from exc


def _folder_of(chosen: str, listed: _Listed) -> str:
    if chosen != "folder":
        return "images"
    name = re.sub(r"[\\/\x00]", "_", listed.labels[0] if listed.labels else "_").strip()
    return "_" + name if name.startswith(".") or not name else name


def _present_files(target: Path) -> dict[str, Path]:
    """Images a previous run wrote (whole: they were renamed into place), by image id."""
    found: dict[str, Path] = {}
    if not target.is_dir():
        return found
    for folder in target.iterdir():
        if folder.is_dir() and not folder.name.startswith(".") and folder.name != "models":
            for path in folder.iterdir():
                match = _ID_FILE.match(path.name)
                if match:
                    found[match.group(1).lower()] = path
                elif path.name.startswith(".") and path.name.endswith(".part"):
                    path.unlink(missing_ok=True)  # a download an interrupted run left unfinished
    return found


def _reuse(target: Path, existing: Path, folder: str, listed: _Listed) -> ExportedImage | None:
    """The record of an image already written (moved when its label, hence folder, changed), or
    ``None`` when the file is not a whole image (a crash of the machine can leave one): it is removed,
    to be downloaded again."""
    file = f"{folder}/{existing.name}"
    try:
        data = existing.read_bytes()
        try:
            _, width, height = _inspect(data, verify=True)
        except ValueError:
            existing.unlink()
            return None
        if existing != target / file:
            (target / folder).mkdir(parents=True, exist_ok=True)
            os.replace(existing, target / file)
    except OSError as exc:
        raise _write_error(target / folder, exc) from exc
    return _record(listed, file, data, width, height)


def _record(listed: _Listed, file: str, data: bytes, width: int, height: int) -> ExportedImage:
    labels = listed.labels or tuple(dict.fromkeys(r.label for r in listed.regions))
    return ExportedImage(
        id=listed.id,
        file=file,
        sha256=hashlib.sha256(data).hexdigest(),
        width=width,
        height=height,
        labels=labels,
        regions=listed.regions,
    )


def _inspect(data: bytes, *, verify: bool = False) -> tuple[str, int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, width, height = image.format or "", image.width, image.height
            if verify:
                image.verify()  # a truncated file fails here
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"the downloaded file is not a readable image: {exc}") from None
    if kind not in _EXTENSIONS:
        raise ValueError(f"the downloaded image is {kind or 'of an unknown format'}, not JPEG/PNG/GIF/BMP")
    return kind, width, height


def _split(
    images: list[ExportedImage], target: Path, fraction: float, seed: int
) -> dict[str, list[ExportedImage]]:
    """Train/validation by the data sets' one stratified, seeded split rule (keyed on the file names)."""
    by_path = {target / image.file: image for image in images}
    dataset = Dataset(
        items=tuple(DatasetItem(path, image.labels or ("_",)) for path, image in by_path.items()),
        root=target,
        multilabel=True,
    )
    train, validation = dataset.split(fraction, seed=seed)
    return {
        "train": [by_path[item.path] for item in train],
        "validation": [by_path[item.path] for item in validation],
    }


def _write_annotations(
    target: Path,
    chosen: str,
    images: list[ExportedImage],
    task: Task,
    labels: tuple[str, ...],
    splits: dict[str, list[ExportedImage]] | None,
    name: str,
) -> list[str]:
    try:
        if chosen == "automl":
            return write_automl(target, images, task, splits, name=name)
        if chosen == "coco":
            return write_coco(target, images, task, labels, splits)
    except OSError as exc:
        raise _write_error(target, exc) from exc
    return sorted({image.file.split("/", 1)[0] + "/" for image in images})
