"""``--with-exports``: every trained iteration's model exports, downloaded so a model outlives the service.

For each completed iteration: every export the service already holds (``Done``: ONNX, TensorFlow,
CoreML, Docker…) is downloaded, and an ONNX export is requested first when the iteration can be exported
and has none (ONNX is what `OnnxBackend` runs offline). Each lands in
``models/<iteration name>/<platform>[-<flavor>]/``, unzipped; a folder already there (from an interrupted
run) is kept, not downloaded again. An iteration that cannot be exported (not a compact domain) or an
export that fails is reported with its reason, and the others go on.

Example:
    >>> models = download_model_exports(trainer, project_id, Path("out/models"))  # doctest: +SKIP
    >>> [(m.iteration, m.platform, m.ok) for m in models]  # doctest: +SKIP
    [('Iteration 1', 'ONNX', True)]
"""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import AzVisionError
from ._export_models import ExportedModel
from .models import ExportInfo, IterationInfo

if TYPE_CHECKING:
    from ._export import ExportsMixin

__all__ = ["download_model_exports"]


def _safe(name: str) -> str:
    cleaned = re.sub(r"[^\w .()+-]", "_", name).strip(" .")
    return cleaned or "iteration"


def download_model_exports(trainer: ExportsMixin, project_id: str, folder: Path) -> list[ExportedModel]:
    """Download every completed iteration's exports under ``folder``; one `ExportedModel` each."""
    results: list[ExportedModel] = []
    for iteration in trainer.iterations(project_id):
        if not iteration.completed:
            continue
        exports = _exports(trainer, project_id, iteration)
        if iteration.exportable and not any(e.platform == "ONNX" for e in exports):
            try:
                exports.append(trainer.export(project_id, iteration, "ONNX"))
            except AzVisionError as exc:
                results.append(ExportedModel(iteration=iteration.name, platform="ONNX", error=str(exc)))
        if not exports and not iteration.exportable:
            results.append(
                ExportedModel(
                    iteration=iteration.name,
                    platform="ONNX",
                    error="not exportable: only iterations trained on a compact domain can be exported",
                )
            )
        for export in exports:
            results.append(_download(trainer, folder / _safe(iteration.name), iteration, export))
    return results


def _exports(trainer: ExportsMixin, project_id: str, iteration: IterationInfo) -> list[ExportInfo]:
    found: list[Any] = trainer._call(lambda c: c.get_exports(project_id, iteration.id))
    return [
        ExportInfo(
            platform=e.platform,
            status=e.status,
            flavor=e.flavor,
            download_uri=e.download_uri or None,
            project_id=project_id,
            iteration_id=iteration.id,
        )
        for e in found
    ]


def _download(
    trainer: ExportsMixin, base: Path, iteration: IterationInfo, export: ExportInfo
) -> ExportedModel:
    name = export.platform.lower() + (f"-{export.flavor.lower()}" if export.flavor else "")
    target = base / name
    relative = f"{base.parent.name}/{base.name}/{name}"
    entry = ExportedModel(iteration=iteration.name, platform=export.platform, flavor=export.flavor)
    if target.is_dir() and any(target.iterdir()):
        return entry.model_copy(update={"folder": relative})
    if not export.done:
        return entry.model_copy(update={"error": f"the export is {export.status}, not ready"})
    staging = base / f".{name}.{uuid.uuid4().hex}.part"
    try:
        trainer.download(export, staging)
        staging.rename(target)  # whole or not at all: a re-run never finds half an export
    except AzVisionError as exc:
        return entry.model_copy(update={"error": str(exc)})
    except OSError as exc:
        return entry.model_copy(update={"error": f"cannot write {target}: {exc.strerror or exc}"})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entry.model_copy(update={"folder": relative})
