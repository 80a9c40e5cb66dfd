"""Typed results of the Custom Vision training helper: upload reports, iterations, performance, exports.

All models are frozen pydantic models, so they print readably, compare by value and dump to JSON.

Example:
    >>> report = UploadReport(total=3, uploaded=("a.png", "b.png"), duplicates=("c.png",))
    >>> report.ok, report.accounted_for
    (True, True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..datasets import SkippedFile

__all__ = [
    "ExportInfo",
    "FailedImage",
    "IterationInfo",
    "IterationPerformance",
    "ProjectInfo",
    "SkippedFile",
    "TagPerformance",
    "TrainProgress",
    "TrainResult",
    "UploadReport",
]

_FROZEN = ConfigDict(frozen=True)


class FailedImage(BaseModel):
    """An image that did not land in the project: its file, the reason, and the service's status if any.

    Example:
        >>> FailedImage(path="cats/1.png", reason="the service said ErrorImageFormat",
        ...             status="ErrorImageFormat").status
        'ErrorImageFormat'
    """

    model_config = _FROZEN

    path: str
    reason: str
    #: The per-image ``ImageCreateStatus`` (``ErrorImageSize``…) or the error class name.
    status: str | None = None


class UploadReport(BaseModel):
    """What an upload did with every image of the data set.

    ``uploaded`` landed now; ``duplicates`` were already in the project (the service answered
    ``OKDuplicate``, or the same bytes appear twice in the data set); ``already_present`` were found in the
    project before uploading, so nothing was sent for them; ``failed`` did not land. Every image is in
    exactly one of the four. ``requests`` counts the upload requests sent (retries included).

    Example:
        >>> UploadReport(total=2, uploaded=("a.png",),
        ...              failed=(FailedImage(path="b.png", reason="corrupt"),)).ok
        False
    """

    model_config = _FROZEN

    total: int = 0
    uploaded: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()
    already_present: tuple[str, ...] = ()
    failed: tuple[FailedImage, ...] = ()
    requests: int = 0

    @property
    def ok(self) -> bool:
        """``True`` when no image failed."""
        return not self.failed

    @property
    def present(self) -> int:
        """Images that are in the project now (uploaded, duplicate or already present)."""
        return len(self.uploaded) + len(self.duplicates) + len(self.already_present)

    @property
    def accounted_for(self) -> bool:
        """Every image of the data set is in exactly one outcome list."""
        return self.present + len(self.failed) == self.total


class ProjectInfo(BaseModel):
    """A Custom Vision project as the trainer sees it.

    Example:
        >>> ProjectInfo(id="p1", name="flowers", domain_id="d", domain_name="General (compact)",
        ...             classification_type="Multiclass", exportable=True).multilabel
        False
    """

    model_config = _FROZEN

    id: str
    name: str
    domain_id: str | None = None
    domain_name: str | None = None
    classification_type: str | None = None
    #: Whether the domain is a compact one (only compact models can be exported).
    exportable: bool = False
    #: The domain's type: ``"Classification"`` or ``"ObjectDetection"`` (``None`` when unknown).
    domain_type: str | None = None

    @property
    def detection(self) -> bool:
        """``True`` for an object-detection project."""
        return self.domain_type == "ObjectDetection"

    @property
    def multilabel(self) -> bool:
        """``True`` for a ``Multilabel`` project."""
        return (self.classification_type or "").lower() == "multilabel"


class IterationInfo(BaseModel):
    """One training iteration: its status (``Training``, ``Completed``, ``Failed``) and publication.

    Example:
        >>> IterationInfo(id="i1", name="Iteration 1", status="Completed", project_id="p1").done
        True
    """

    model_config = _FROZEN

    id: str
    name: str
    status: str
    project_id: str
    created: str | None = None
    trained_at: str | None = None
    publish_name: str | None = None
    exportable: bool = False
    domain_id: str | None = None
    #: The service's reason when training failed (``trainingErrorDetails``).
    error: str | None = None

    @property
    def done(self) -> bool:
        """Training finished, successfully or not."""
        return self.status in {"Completed", "Failed"}

    @property
    def completed(self) -> bool:
        """Training finished successfully."""
        return self.status == "Completed"

    @property
    def published(self) -> bool:
        """The iteration is published under `publish_name`."""
        return bool(self.publish_name)


class TagPerformance(BaseModel):
    """How well one tag is recognised, measured by the service at a probability threshold.

    Example:
        >>> TagPerformance(name="cat", precision=0.9, recall=0.8, image_count=20).f1
        0.847
    """

    model_config = _FROZEN

    name: str
    id: str | None = None
    precision: float = 0.0
    recall: float = 0.0
    average_precision: float | None = None
    precision_std: float = 0.0
    recall_std: float = 0.0
    #: Training images carrying this tag in the iteration.
    image_count: int | None = None

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall, rounded to 3 places."""
        total = self.precision + self.recall
        return round(2 * self.precision * self.recall / total, 3) if total else 0.0


class IterationPerformance(BaseModel):
    """Overall and per-tag precision, recall and average precision of an iteration.

    Example:
        >>> perf = IterationPerformance(iteration_id="i1", threshold=0.5, precision=1.0, recall=0.9,
        ...                             tags=(TagPerformance(name="cat", precision=1.0, recall=0.9),))
        >>> perf.tag("cat").recall
        0.9
    """

    model_config = _FROZEN

    iteration_id: str
    threshold: float
    precision: float
    recall: float
    average_precision: float | None = None
    tags: tuple[TagPerformance, ...] = ()

    def tag(self, name: str) -> TagPerformance:
        """The performance of the tag called ``name``; ``KeyError`` if there is none."""
        for tag in self.tags:
            if tag.name == name:
                return tag
        raise KeyError(name)


class ExportInfo(BaseModel):
    """One export of an iteration. ``download_uri`` carries a SAS token on Azure: it is kept out of repr.

    Example:
        >>> ExportInfo(platform="ONNX", status="Done", download_uri="https://x/y.zip?sig=s").done
        True
    """

    model_config = _FROZEN

    platform: str
    status: str
    flavor: str | None = None
    download_uri: str | None = Field(default=None, repr=False)
    project_id: str | None = None
    iteration_id: str | None = None

    @property
    def done(self) -> bool:
        """The export is ready to download."""
        return self.status == "Done"


class TrainProgress(BaseModel):
    """One progress event of the training helper, for a ``progress=`` callback.

    ``stage`` says which step; ``done``/``total`` count images for ``upload`` and are ``None`` where the
    service gives no measure (training only reports its status, in ``message``).

    Example:
        >>> TrainProgress(stage="upload", done=64, total=100).fraction
        0.64
    """

    model_config = _FROZEN

    stage: Literal["dataset", "project", "upload", "train", "publish", "export", "download"]
    done: int | None = None
    total: int | None = None
    message: str = ""

    @property
    def fraction(self) -> float | None:
        """``done / total`` when both are known."""
        if self.done is None or not self.total:
            return None
        return self.done / self.total


class TrainResult(BaseModel):
    """Everything `CustomVisionTrainer.train_from_folder` did.

    ``trained`` is ``False`` when the service said no training was needed and the latest completed
    iteration was reused.

    Example:
        >>> result = TrainResult(
        ...     project=ProjectInfo(id="p1", name="flowers"),
        ...     iteration=IterationInfo(id="i1", name="Iteration 1", status="Completed", project_id="p1"),
        ...     upload=UploadReport(total=1, uploaded=("a.png",)), publish_name="prod")
        >>> result.summary()["uploaded"]
        1
    """

    model_config = _FROZEN

    project: ProjectInfo
    iteration: IterationInfo
    upload: UploadReport
    #: Files of the data set that were not used, with reasons.
    skipped: tuple[SkippedFile, ...] = ()
    trained: bool = True
    publish_name: str | None = None
    performance: IterationPerformance | None = None
    export: ExportInfo | None = None
    export_dir: Path | None = None

    def summary(self) -> dict[str, Any]:
        """The ``azvision train --json`` line: ids, publish name, upload counts, export folder.

        ``duplicates`` counts every image that was already in the project (service duplicates and those
        found before uploading).
        """
        return {
            "project_id": self.project.id,
            "iteration_id": self.iteration.id,
            "publish_name": self.publish_name,
            "uploaded": len(self.upload.uploaded),
            "duplicates": len(self.upload.duplicates) + len(self.upload.already_present),
            "failed": len(self.upload.failed),
            "export_dir": str(self.export_dir) if self.export_dir is not None else None,
        }
