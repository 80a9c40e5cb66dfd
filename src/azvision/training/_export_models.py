"""What `export_dataset` reports: every image exported or not, and why.

Example:
    >>> report = DatasetExport(project_id="p", project_name="flowers", task="multiclass", format="automl",
    ...                        out_dir=Path("out"), tagged=2, exported=2)
    >>> report.complete
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .._models import BoundingBox

__all__ = ["DatasetExport", "ExportedImage", "ExportedModel", "ExportedRegion", "NotExported", "Task"]

_FROZEN = ConfigDict(frozen=True)
#: The kind of Custom Vision project.
Task = Literal["multiclass", "multilabel", "detection"]


class ExportedRegion(BaseModel):
    """One labelled box, normalised to [0, 1] like the service's regions.

    Example:
        >>> ExportedRegion(label="ball", box=BoundingBox(left=0.1, top=0.2, width=0.3, height=0.4)).box.right
        0.4
    """

    model_config = _FROZEN

    label: str
    box: BoundingBox


class ExportedImage(BaseModel):
    """One image written by an export: its file (relative to the export folder), labels and regions.

    Example:
        >>> ExportedImage(id="i1", file="images/i1.png", sha256="ab", width=4, height=3,
        ...               labels=("cat",)).format
        'png'
    """

    model_config = _FROZEN

    id: str
    file: str
    sha256: str
    width: int
    height: int
    labels: tuple[str, ...]
    regions: tuple[ExportedRegion, ...] = ()

    @property
    def format(self) -> str:
        """The file's format, from its extension (``jpg``, ``png``, ``gif``, ``bmp``)."""
        return self.file.rsplit(".", 1)[-1]


class NotExported(BaseModel):
    """An image of the project that is not in the export, and why (untagged, a broken download…).

    Example:
        >>> NotExported(image_id="i9", reason="untagged").reason
        'untagged'
    """

    model_config = _FROZEN

    image_id: str
    reason: str


class ExportedModel(BaseModel):
    """A trained iteration's model export (``--with-exports``): where it went, or why it did not.

    Example:
        >>> ExportedModel(iteration="Iteration 1", platform="ONNX", folder="models/Iteration 1/onnx").ok
        True
    """

    model_config = _FROZEN

    iteration: str
    platform: str
    flavor: str | None = None
    folder: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Downloaded."""
        return self.error is None


class DatasetExport(BaseModel):
    """The outcome of a data set export: counts, the images not exported with reasons, the files written.

    ``tagged`` is the project's tagged image count when the export started; ``exported`` counts the
    images in the export (``downloaded`` of them by this run, the rest by an earlier, interrupted one).
    Every tagged image is exported or listed in ``not_exported``; untagged images are listed there too.

    Example:
        >>> DatasetExport(project_id="p", project_name="x", task="multiclass", format="folder",
        ...               out_dir=Path("out"), tagged=0).empty
        True
    """

    model_config = _FROZEN

    project_id: str
    project_name: str
    task: Task
    format: str
    out_dir: Path
    tagged: int
    exported: int = 0
    downloaded: int = 0
    labels: tuple[str, ...] = ()
    not_exported: tuple[NotExported, ...] = ()
    files: tuple[str, ...] = ()
    splits: dict[str, int] = {}
    models: tuple[ExportedModel, ...] = ()

    @property
    def empty(self) -> bool:
        """The project has no tagged image: nothing was written."""
        return self.tagged == 0

    @property
    def complete(self) -> bool:
        """Every tagged image is in the export, and every model export asked for was downloaded."""
        return self.exported >= self.tagged > 0 and all(m.ok for m in self.models)

    def summary(self) -> dict[str, Any]:
        """The JSON line of ``azvision export-dataset --json``.

        Example:
            >>> DatasetExport(project_id="p", project_name="x", task="multiclass", format="automl",
            ...               out_dir=Path("out"), tagged=1, exported=1).summary()["exported"]
            1
        """
        reasons: dict[str, int] = {}
        for item in self.not_exported:
            key = "untagged" if item.reason == "untagged" else "failed"
            reasons[key] = reasons.get(key, 0) + 1
        return {
            "project_id": self.project_id,
            "project": self.project_name,
            "task": self.task,
            "format": self.format,
            "out_dir": str(self.out_dir),
            "tagged": self.tagged,
            "exported": self.exported,
            "downloaded": self.downloaded,
            "untagged": reasons.get("untagged", 0),
            "failed": reasons.get("failed", 0),
            "not_exported": [item.model_dump() for item in self.not_exported],
            "labels": list(self.labels),
            "splits": dict(self.splits),
            "files": list(self.files),
            "models": [m.model_dump() for m in self.models],
        }
