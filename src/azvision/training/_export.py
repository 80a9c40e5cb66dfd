"""Export: have the service build an iteration for a platform (ONNX, TensorFlow…), then download it.

Exports are requested once and polled until ready; the download streams to a temporary file (never held
in memory whole) and is unzipped safely: no path may escape the target folder, and an archive may not
expand past 4 GB. The training key is never sent to the download URL.

Example:
    >>> folder = trainer.download(trainer.export(project, iteration), "model/")  # doctest: +SKIP
    >>> sorted(p.name for p in folder.iterdir())  # doctest: +SKIP
    ['cvexport.manifest', 'labels.txt', 'metadata_properties.json', 'model.onnx']
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Any

from .._error_mapping import error_from_http, error_from_httpx
from .._errors import BackendTimeoutError, ConfigurationError, ServiceError, TrainingError
from .._retry import PollSchedule, call, poll
from ._core import NAME, TrainerCore, iteration_ref, project_ref
from .models import ExportInfo, IterationInfo, ProjectInfo

__all__ = ["ExportsMixin"]

_PLATFORMS = {
    name.lower(): name for name in ("ONNX", "TensorFlow", "CoreML", "DockerFile", "VAIDK", "OpenVino")
}
_PLATFORMS["docker"] = "DockerFile"
_MAX_UNZIPPED = 4 * 1024**3


class ExportsMixin(TrainerCore):
    """Export iterations and download the exports."""

    def export(
        self,
        project: ProjectInfo | str,
        iteration: IterationInfo | str,
        platform: str = "ONNX",
        *,
        flavor: str | None = None,
        timeout: float = 900.0,
        poll_interval: float = 1.0,
    ) -> ExportInfo:
        """Export the iteration (``ONNX``, ``TensorFlow``, ``CoreML``, ``DockerFile``…) and wait until done.

        An existing export of the same platform and flavor is reused; one already queued is waited for.
        Raises `TrainingError` if the iteration cannot be exported or the export fails, and
        `BackendTimeoutError` after ``timeout`` seconds.

        Example:
            >>> trainer.export(  # doctest: +SKIP
            ...     project, iteration, "TensorFlow", flavor="TensorFlowLite").done
            True
        """
        project_id, iteration_id = project_ref(project), iteration_ref(iteration)
        wanted = _PLATFORMS.get(platform.strip().lower())
        if wanted is None:
            choices = ", ".join(sorted(set(_PLATFORMS.values())))
            raise ConfigurationError(f"unknown export platform {platform!r}; choose one of: {choices}")
        current = self.iteration(project_id, iteration_id)
        if not current.completed:
            raise TrainingError(
                f"iteration {current.name} cannot be exported: it is {current.status}", backend=NAME
            )
        if not current.exportable:
            raise TrainingError(
                f"iteration {current.name} is not exportable: only projects on a compact domain, such as "
                "'General (compact)', can be exported",
                backend=NAME,
            )
        found = self._find_export(project_id, iteration_id, wanted, flavor)
        if found is None or found.status == "Failed":
            try:
                self._call(lambda c: c.export_iteration(project_id, iteration_id, wanted, flavor=flavor))
            except ServiceError as exc:
                already = (
                    exc.code == "BadRequestExportAlreadyInProgress" or "already queued" in exc.message.lower()
                )
                if not already:
                    raise TrainingError(
                        f"export failed: {exc.message}",
                        code=exc.code,
                        status_code=exc.status_code,
                        backend=NAME,
                    ) from exc

        def look() -> ExportInfo | None:
            found = self._find_export(project_id, iteration_id, wanted, flavor)
            if found is not None and found.status == "Failed":
                raise TrainingError(
                    f"the {wanted} export of {current.name} failed on the service", backend=NAME
                )
            return found if found is not None and found.done else None

        return poll(
            look,
            PollSchedule(timeout, interval=poll_interval, max_interval=poll_interval, clock=self._clock),
            on_timeout=lambda: BackendTimeoutError(
                f"the {wanted} export was not ready after {timeout:.0f} s", backend=NAME
            ),
            sleep=self._sleep,
        )

    def _find_export(
        self, project_id: str, iteration_id: str, platform: str, flavor: str | None
    ) -> ExportInfo | None:
        for export in self._call(lambda c: c.get_exports(project_id, iteration_id)):
            if export.platform == platform and (export.flavor or None) == flavor:
                return ExportInfo(
                    platform=export.platform,
                    status=export.status,
                    flavor=export.flavor,
                    download_uri=export.download_uri or None,
                    project_id=project_id,
                    iteration_id=iteration_id,
                )
        return None

    def download(self, export: ExportInfo, destination: str | os.PathLike[str]) -> Path:
        """Download a finished export into the folder ``destination``, unzipped; returns the folder.

        The training key is never sent to the download URL (on Azure it is a pre-signed blob URL).
        ONNX and TensorFlow exports must contain ``labels.txt``.

        Example:
            >>> folder = trainer.download(trainer.export(project, iteration), "model/")  # doctest: +SKIP
            >>> sorted(p.name for p in folder.iterdir())  # doctest: +SKIP
            ['cvexport.manifest', 'labels.txt', 'metadata_properties.json', 'model.onnx']
        """
        if not export.done or not export.download_uri:
            raise TrainingError(
                f"the {export.platform} export is not ready (status {export.status})", backend=NAME
            )
        target = Path(destination)
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile() as spool:  # exports can be large: never held in memory whole
            self._fetch(export, spool)
            if zipfile.is_zipfile(spool):
                _safe_extract(spool, target)
            else:
                spool.seek(0)
                name = Path(export.download_uri.split("?", 1)[0]).name or f"export.{export.platform.lower()}"
                with (target / name).open("wb") as out:
                    shutil.copyfileobj(spool, out)
        if export.platform in {"ONNX", "TensorFlow"} and not any(target.rglob("labels.txt")):
            raise ServiceError(f"the {export.platform} export has no labels.txt", backend=NAME)
        self._export_dir = target
        return target

    def _fetch(self, export: ExportInfo, out: IO[bytes]) -> None:
        uri = export.download_uri or ""
        if "://" not in uri:  # VNET resources hand out an artifact path instead of a URL
            project_id = export.project_id or ""

            def artifact(client: Any) -> None:
                out.seek(0)
                out.truncate()
                for chunk in client.get_artifact(project_id, uri):
                    out.write(chunk)

            self._call(artifact)
            return
        self._download_blob(uri, out, service="the export download")

    def _download_blob(self, uri: str, out: IO[bytes], *, service: str, http: Any = None) -> None:
        """GET a blob URL (an export, an image) into ``out``, retried by the retry policy.

        A blob download is not a call against the training quota: no throttle, only the retry policy;
        the training key is never sent. ``http``: an ``httpx.Client`` to reuse (its connection pool).
        """
        import httpx

        stream = http.stream if http is not None else httpx.stream

        def attempt() -> None:
            out.seek(0)
            out.truncate()
            try:
                with stream("GET", uri, timeout=self.timeout, follow_redirects=True) as response:
                    if response.status_code == 200:
                        for chunk in response.iter_bytes(1 << 20):
                            out.write(chunk)
                        return
                    body = response.read()
            except httpx.HTTPError as exc:
                raise error_from_httpx(exc, backend=NAME) from exc
            raise error_from_http(
                response.status_code, dict(response.headers), body, backend=NAME, service=service
            )

        call(attempt, self.retry.start(self._rng, clock=self._clock, backend=NAME), sleep=self._sleep)


def _safe_extract(source: IO[bytes], target: Path) -> None:
    """Unzip into ``target``, refusing paths that would escape it and archives that expand absurdly."""
    root = target.resolve()
    with zipfile.ZipFile(source) as archive:
        members = archive.infolist()
        if sum(m.file_size for m in members) > _MAX_UNZIPPED:
            raise ServiceError("the export archive would expand to more than 4 GB", backend=NAME)
        for member in members:
            destination = (root / member.filename).resolve()
            if destination != root and root not in destination.parents:
                raise ServiceError(f"the export archive has an unsafe path {member.filename!r}", backend=NAME)
            if member.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with (
                archive.open(member) as source,
                tempfile.NamedTemporaryFile(dir=destination.parent, delete=False) as out,
            ):
                shutil.copyfileobj(source, out)
            os.replace(out.name, destination)
