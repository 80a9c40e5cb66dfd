"""Custom Vision training: from a folder of labelled images to a published, exported model.

:class:`CustomVisionTrainer` drives the official (msrest-based) ``CustomVisionTrainingClient`` — the only
place azvision touches it — with azvision's own retry policy, throttle and error mapping: msrest's
retries are switched off (it never retries a POST anyway), every call goes through one loop that honours
``Retry-After``, and vendor exceptions become :class:`~azvision.AzVisionError` subclasses.

Example:
    >>> from azvision import CustomVisionTrainer
    >>> trainer = CustomVisionTrainer(  # doctest: +SKIP
    ...     "https://myres.cognitiveservices.azure.com/", "<training key>",
    ...     prediction_resource_id="/subscriptions/.../accounts/myres-prediction")
    >>> with trainer:  # doctest: +SKIP
    ...     result = trainer.train_from_folder("flowers/", project="flowers", publish_name="prod",
    ...                                        export_dir="flowers-onnx")
    ...     trainer.classifier(kind="onnx").classify("rose.jpg").label
    'rose'
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar

from azure.cognitiveservices.vision.customvision.training.models import (
    ImageFileCreateBatch,
    ImageFileCreateEntry,
)
from azure.core.exceptions import DeserializationError
from msrest.exceptions import ClientException
from typing_extensions import Self

from .._batch import RetryPolicy, Throttle, wait_before_retry
from .._config import ENV, Secret, endpoint_setting, secret_setting, setting
from .._cv_sdk import training_client
from .._error_mapping import error_from_http, error_from_httpx, error_from_msrest
from .._errors import (
    AzVisionError,
    BackendTimeoutError,
    ConfigurationError,
    ServiceError,
    TrainingError,
)
from ._upload import ExistingImage, OutgoingImage, Uploader, UploadItem
from .datasets import Dataset
from .models import (
    ExportInfo,
    IterationInfo,
    IterationPerformance,
    ProjectInfo,
    TagPerformance,
    TrainProgress,
    TrainResult,
    UploadReport,
)

if TYPE_CHECKING:
    from .._protocol import Classifier

__all__ = ["CustomVisionTrainer", "TrainingJob"]

T = TypeVar("T")
_NAME = "custom_vision_training"
_ARM_ID = re.compile(
    r"^/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourceGroups/[^/]+"
    r"/providers/Microsoft\.CognitiveServices/accounts/[^/]+$",
    re.IGNORECASE,
)
_PLATFORMS = {
    name.lower(): name for name in ("ONNX", "TensorFlow", "CoreML", "DockerFile", "VAIDK", "OpenVino")
}
_PLATFORMS["docker"] = "DockerFile"
_MIN_IMAGES_PER_TAG = 5
_MAX_UNZIPPED = 4 * 1024**3
ProgressCallback = Callable[[TrainProgress], None]


def _project_ref(project: ProjectInfo | str) -> str:
    return project.id if isinstance(project, ProjectInfo) else project


def _iteration_ref(iteration: IterationInfo | str) -> str:
    return iteration.id if isinstance(iteration, IterationInfo) else iteration


def iteration_info(iteration: Any) -> IterationInfo:
    """Map the SDK's ``Iteration`` model to :class:`IterationInfo`."""
    return IterationInfo(
        id=str(iteration.id),
        name=iteration.name or "",
        status=iteration.status or "Unknown",
        project_id=str(iteration.project_id or ""),
        created=_iso(iteration.created),
        trained_at=_iso(iteration.trained_at),
        publish_name=iteration.publish_name or None,
        exportable=bool(iteration.exportable),
        domain_id=iteration.domain_id,
        error=getattr(iteration, "training_error_details", None) or None,
    )


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else (str(value) if value else None)


def performance_info(
    iteration_id: str, threshold: float, performance: Any, image_counts: dict[str, int]
) -> IterationPerformance:
    """Map the SDK's ``IterationPerformance`` (plus per-tag image counts) to the typed model."""
    tags = tuple(
        TagPerformance(
            name=tag.name,
            id=tag.id,
            precision=tag.precision or 0.0,
            recall=tag.recall or 0.0,
            average_precision=tag.average_precision,
            precision_std=tag.precision_std_deviation or 0.0,
            recall_std=tag.recall_std_deviation or 0.0,
            image_count=image_counts.get(tag.name),
        )
        for tag in performance.per_tag_performance or ()
    )
    return IterationPerformance(
        iteration_id=iteration_id,
        threshold=threshold,
        precision=performance.precision or 0.0,
        recall=performance.recall or 0.0,
        average_precision=performance.average_precision,
        tags=tags,
    )


class TrainingJob:
    """A training run on the service: poll it with :meth:`status`, block with :meth:`wait`.

    ``reused`` is ``True`` when the service said nothing changed since the latest completed iteration,
    which this job then stands for.

    Example:
        >>> job = trainer.train(project)  # doctest: +SKIP
        >>> job.wait(timeout=600, progress=lambda it: print(it.status)).status  # doctest: +SKIP
        'Completed'
    """

    def __init__(
        self, trainer: CustomVisionTrainer, iteration: IterationInfo, *, reused: bool = False
    ) -> None:
        self._trainer = trainer
        self.project_id = iteration.project_id
        self.iteration_id = iteration.id
        self.reused = reused
        self.last: IterationInfo = iteration

    def __repr__(self) -> str:
        return f"TrainingJob(iteration={self.last.name!r}, status={self.last.status!r}, reused={self.reused})"

    def status(self) -> IterationInfo:
        """Ask the service for the iteration's current state (one request)."""
        self.last = self._trainer.iteration(self.project_id, self.iteration_id)
        return self.last

    def done(self) -> bool:
        """Whether training has finished, successfully or not (one request)."""
        return self.status().done

    def wait(
        self,
        timeout: float = 3600.0,
        *,
        poll_interval: float | None = None,
        progress: Callable[[IterationInfo], None] | None = None,
    ) -> IterationInfo:
        """Block until training completes; return the completed iteration.

        Raises :class:`TrainingError` (with the service's reason) if it fails, and
        :class:`BackendTimeoutError` if it is still running after ``timeout`` seconds (the job goes on
        on the service; call :meth:`wait` again). ``poll_interval=None`` starts at 0.5 s and backs off
        to 10 s. ``progress`` gets the iteration after every poll.
        """
        deadline = time.monotonic() + timeout
        interval = poll_interval if poll_interval is not None else 0.5
        current = self.last if self.last.done else self.status()
        while True:
            if progress is not None:
                progress(current)
            if current.status == "Failed":
                reason = current.error or "the service gave no reason"
                raise TrainingError(f"training {current.name} failed: {reason}", backend=_NAME)
            if current.completed:
                return current
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendTimeoutError(
                    f"training {current.name} was still {current.status!r} after {timeout:.0f} s; it goes "
                    "on on the service — call wait() again to keep waiting",
                    backend=_NAME,
                )
            time.sleep(min(interval, remaining))
            if poll_interval is None:
                interval = min(interval * 1.5, 10.0)
            current = self.status()

    def result(self, timeout: float = 3600.0) -> IterationInfo:
        """The completed iteration (waits like :meth:`wait`; the poller-style name)."""
        return self.wait(timeout)


class CustomVisionTrainer:
    """Project, tags, upload, training, publication, performance and export on a Custom Vision resource.

    Args:
        endpoint: the training resource's endpoint (env ``CUSTOM_VISION_TRAINING_ENDPOINT``).
        training_key: its key (env ``CUSTOM_VISION_TRAINING_KEY``); never shown in repr, logs or errors.
        prediction_resource_id: ARM id of the prediction resource to publish to
            (env ``CUSTOM_VISION_PREDICTION_RESOURCE_ID``); needed only to publish.
        prediction_endpoint: for :meth:`classifier` (env ``CUSTOM_VISION_PREDICTION_ENDPOINT``).
        prediction_key: for :meth:`classifier` (env ``CUSTOM_VISION_PREDICTION_KEY``).
        max_rps: client-side request rate (the service allows 10 per second on S0).
        retry: the retry policy for every call (default :class:`~azvision.RetryPolicy`).
        timeout: seconds per HTTP request.
        upload_concurrency: upload requests in flight at once.

    Example:
        >>> trainer = CustomVisionTrainer("https://x.cognitiveservices.azure.com", "key")
        >>> trainer
        CustomVisionTrainer(endpoint='https://x.cognitiveservices.azure.com', prediction_resource_id=None)
    """

    def __init__(
        self,
        endpoint: str | None = None,
        training_key: str | Secret | None = None,
        *,
        prediction_resource_id: str | None = None,
        prediction_endpoint: str | None = None,
        prediction_key: str | Secret | None = None,
        max_rps: float | None = 10,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        upload_concurrency: int = 4,
    ) -> None:
        env = ENV["custom_vision_training"]
        self.endpoint = endpoint_setting(endpoint, arg="endpoint", env=env["endpoint"])
        key = secret_setting(training_key, arg="training_key", env=env["key"])
        assert key is not None
        self._key: Secret = key
        resource_id = setting(
            prediction_resource_id,
            arg="prediction_resource_id",
            env=env["prediction_resource_id"],
            required=False,
        )
        self.prediction_resource_id = resource_id.strip() if resource_id else None
        self._prediction_endpoint = prediction_endpoint
        self._prediction_key = Secret(prediction_key) if isinstance(prediction_key, str) else prediction_key
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.upload_concurrency = upload_concurrency
        self._throttle = Throttle(max_rps)
        self._rng = random.Random()
        self._vendor: Any = None
        self._vendor_lock = threading.Lock()
        self._domains: list[Any] | None = None
        self._published: tuple[str, str] | None = None
        self._export_dir: Path | None = None
        self._closed = False

    def __repr__(self) -> str:
        resource = self.prediction_resource_id
        return f"CustomVisionTrainer(endpoint={self.endpoint!r}, prediction_resource_id={resource!r})"

    # -- plumbing ------------------------------------------------------------------------------
    def _client(self) -> Any:
        if self._closed:
            raise RuntimeError("this CustomVisionTrainer is closed")
        with self._vendor_lock:
            return self._vendor or self._make_vendor()

    def _make_vendor(self) -> Any:
        client = training_client(self.endpoint, self._key, timeout=self.timeout)
        self._vendor = client
        return client

    def _once(self, fn: Callable[[Any], T]) -> T:
        """One attempt; vendor exceptions mapped at the choke point."""
        try:
            return fn(self._client())
        except DeserializationError as exc:
            raise ServiceError(
                f"Custom Vision sent an answer that cannot be read: {exc}", backend=_NAME
            ) from exc
        except ClientException as exc:
            raise error_from_msrest(exc, backend=_NAME) from exc

    def _call(
        self,
        fn: Callable[[Any], T],
        *,
        recover: Callable[[], T | None] | None = None,
    ) -> T:
        """Call with the shared retry policy and throttle.

        ``recover`` makes a non-idempotent call safe to retry: before each retry it looks for what the
        failed attempt may have created anyway (a dropped answer is not a dropped request).
        """
        state = self.retry.start(self._rng)
        while True:
            time.sleep(self._throttle.reserve())
            try:
                return self._once(fn)
            except AzVisionError as exc:
                time.sleep(wait_before_retry(state, self._throttle, exc))
                if recover is not None:
                    found = recover()
                    if found is not None:
                        return found

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
        self, name: str, *, domain: str | None = None, multilabel: bool = False, exportable: bool = False
    ) -> ProjectInfo:
        """Get the project called ``name``, creating it if missing.

        ``domain`` is a domain name such as ``"General"`` or ``"General (compact)"`` (default: the
        compact one when ``exportable``, else ``"General"``). An existing project must match the
        classification type and, when asked, the domain; otherwise :class:`ConfigurationError`.

        Example:
            >>> trainer.project("flowers", domain="General (compact)").exportable  # doctest: +SKIP
            True
        """
        wanted_domain = self._domain(domain or ("General (compact)" if exportable else "General"))
        kind = "Multilabel" if multilabel else "Multiclass"
        existing = self.find_project(name)
        if existing is not None:
            if existing.classification_type and existing.classification_type != kind:
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

    def _domain(self, name: str) -> Any:
        matches = [
            d
            for d in self._domain_list()
            if d.type == "Classification" and d.name.lower() == name.strip().lower()
        ]
        if not matches:
            names = sorted({d.name for d in self._domain_list() if d.type == "Classification"})
            raise ConfigurationError(
                f"unknown classification domain {name!r}; choose one of: {', '.join(names)}"
            )
        return matches[0]

    def tags(self, project: ProjectInfo | str, names: Sequence[str]) -> dict[str, str]:
        """Tag ids by name, creating the tags that are missing.

        Example:
            >>> trainer.tags(project, ["rose", "tulip"])  # doctest: +SKIP
            {'rose': '…', 'tulip': '…'}
        """
        project_id = _project_ref(project)

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
        dataset: Dataset,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> UploadReport:
        """Upload a data set (tags created as needed); returns what happened to every image.

        Images already in the project (from an earlier, possibly interrupted run) are not sent again;
        see :mod:`azvision.training._upload`. ``progress(done, total)`` is called as images settle.

        Example:
            >>> report = trainer.upload(project, Dataset.from_folder("flowers/"))  # doctest: +SKIP
            >>> report.uploaded, report.failed  # doctest: +SKIP
        """
        project_id = _project_ref(project)
        tag_ids = self.tags(project_id, dataset.labels)
        items = [
            UploadItem(dataset.display_name(it), it.path, tuple(tag_ids[label] for label in it.labels))
            for it in dataset.items
        ]

        def send(images: Sequence[OutgoingImage], metadata: Any) -> list[tuple[str, str]]:
            batch = ImageFileCreateBatch(
                images=[
                    ImageFileCreateEntry(name=i.name, contents=bytearray(i.data), tag_ids=list(i.tag_ids))
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

    # -- training ------------------------------------------------------------------------------
    def iteration(self, project: ProjectInfo | str, iteration: IterationInfo | str) -> IterationInfo:
        """The iteration's current state."""
        project_id, iteration_id = _project_ref(project), _iteration_ref(iteration)
        return iteration_info(self._call(lambda c: c.get_iteration(project_id, iteration_id)))

    def iterations(self, project: ProjectInfo | str) -> list[IterationInfo]:
        """All iterations of the project, newest first."""
        project_id = _project_ref(project)
        found = [iteration_info(it) for it in self._call(lambda c: c.get_iterations(project_id))]
        return sorted(found, key=lambda it: it.created or "", reverse=True)

    def train(
        self, project: ProjectInfo | str, *, force: bool = False, advanced_hours: int = 0
    ) -> TrainingJob:
        """Start training; returns a :class:`TrainingJob` to poll or wait on.

        When the service says nothing changed since the last training, the job stands for the latest
        completed iteration (``job.reused``). A training already running is joined, not restarted.
        Validation failures (e.g. fewer than 5 images on a tag) raise :class:`TrainingError` with the
        service's reason and the rule. ``advanced_hours > 0`` asks for advanced training with that budget.

        Example:
            >>> trainer.train(project).wait(timeout=1800).name  # doctest: +SKIP
            'Iteration 1'
        """
        project_id = _project_ref(project)

        def running() -> IterationInfo | None:
            return next((it for it in self.iterations(project_id) if it.status == "Training"), None)

        try:
            started = self._call(
                lambda c: c.train_project(
                    project_id,
                    training_type="Advanced" if advanced_hours else "Regular",
                    reserved_budget_in_hours=advanced_hours,
                    force_train=force,
                ),
                recover=running,
            )
        except ServiceError as exc:
            code = exc.code or ""
            if code.startswith("BadRequestTrainingNotNeeded"):
                latest = next((it for it in self.iterations(project_id) if it.completed), None)
                if latest is None:
                    raise TrainingError(
                        str(exc), code=exc.code, status_code=exc.status_code, backend=_NAME
                    ) from exc
                return TrainingJob(self, latest, reused=True)
            if code == "BadRequestTrainingAlreadyInProgress" and (job := running()) is not None:
                return TrainingJob(self, job)
            if exc.status_code is not None and 400 <= exc.status_code < 500:
                raise TrainingError(
                    self._explain_rejection(project_id, exc),
                    code=exc.code,
                    status_code=exc.status_code,
                    backend=_NAME,
                ) from exc
            raise
        info = started if isinstance(started, IterationInfo) else iteration_info(started)
        return TrainingJob(self, info)

    def _explain_rejection(self, project_id: str, exc: AzVisionError) -> str:
        """The service's reason plus the rule it applies, naming the tags that break it."""
        message = f"training was rejected: {exc.message}"
        if "ValidationFailed" not in (exc.code or ""):
            return message
        try:
            counts = {t.name: t.image_count or 0 for t in self._call(lambda c: c.get_tags(project_id))}
        except AzVisionError:
            counts = {}
        short = [f"{name!r} has {n}" for name, n in sorted(counts.items()) if n < _MIN_IMAGES_PER_TAG]
        if not short:
            return message
        rule = f"Custom Vision needs at least {_MIN_IMAGES_PER_TAG} images per tag"
        return f"{message} — {rule} ({', '.join(short)})"

    def performance(
        self, project: ProjectInfo | str, iteration: IterationInfo | str, *, threshold: float = 0.5
    ) -> IterationPerformance:
        """Precision, recall and average precision, overall and per tag, at ``threshold``.

        Example:
            >>> trainer.performance(project, iteration).tag("rose").recall  # doctest: +SKIP
            0.95
        """
        project_id, iteration_id = _project_ref(project), _iteration_ref(iteration)
        raw = self._call(lambda c: c.get_iteration_performance(project_id, iteration_id, threshold=threshold))
        tags = self._call(lambda c: c.get_tags(project_id, iteration_id=iteration_id))
        return performance_info(iteration_id, threshold, raw, {t.name: t.image_count or 0 for t in tags})

    # -- publication ---------------------------------------------------------------------------
    def publish(
        self,
        project: ProjectInfo | str,
        iteration: IterationInfo | str,
        publish_name: str,
        *,
        prediction_resource_id: str | None = None,
    ) -> IterationInfo:
        """Publish the iteration under ``publish_name``.

        The prediction resource's ARM id (``/subscriptions/<uuid>/resourceGroups/<group>/providers/
        Microsoft.CognitiveServices/accounts/<name>``) is checked locally first. Publishing an iteration
        already published under that name sends nothing; an iteration published under another name is
        unpublished first, and so is another iteration holding ``publish_name`` (the name moves).

        Example:
            >>> trainer.publish(project, iteration, "prod").publish_name  # doctest: +SKIP
            'prod'
        """
        project_id, iteration_id = _project_ref(project), _iteration_ref(iteration)
        resource_id = self.validated_resource_id(prediction_resource_id)
        if not publish_name or not publish_name.strip():
            raise ConfigurationError("publish_name must not be empty")
        current = self.iteration(project_id, iteration_id)
        if current.publish_name == publish_name:
            self._published = (project_id, publish_name)
            return current
        if not current.completed:
            raise TrainingError(
                f"iteration {current.name} cannot be published: it is {current.status}", backend=_NAME
            )
        if current.published:  # under another name: the service publishes an iteration once
            self.unpublish(project_id, current)
        for other in self.iterations(project_id):
            if other.id != iteration_id and other.publish_name == publish_name:
                self.unpublish(project_id, other)
        try:
            self._call(
                lambda c: c.publish_iteration(project_id, iteration_id, publish_name, resource_id),
                recover=lambda: self.iteration(project_id, iteration_id).publish_name == publish_name or None,
            )
        except ServiceError as exc:
            if exc.status_code is not None and 400 <= exc.status_code < 500:
                raise TrainingError(
                    f"publishing failed: {exc.message}",
                    code=exc.code,
                    status_code=exc.status_code,
                    backend=_NAME,
                ) from exc
            raise
        self._published = (project_id, publish_name)
        return self.iteration(project_id, iteration_id)

    def validated_resource_id(self, explicit: str | None = None) -> str:
        """The prediction resource's ARM id (``explicit``, else configured, else the environment), checked.

        Raises :class:`ConfigurationError` when it is missing or not shaped like an ARM resource id.

        Example:
            >>> CustomVisionTrainer("https://x.example", "k").validated_resource_id("/subscriptions/x")
            Traceback (most recent call last):
            ...
            azvision._errors.ConfigurationError: prediction_resource_id must be the prediction resource's \
ARM id, like /subscriptions/<subscription uuid>/resourceGroups/<group>/providers/\
Microsoft.CognitiveServices/accounts/<name> — got '/subscriptions/x'
        """
        env = ENV["custom_vision_training"]["prediction_resource_id"]
        value = setting(explicit or self.prediction_resource_id, arg="prediction_resource_id", env=env)
        assert value is not None
        value = value.strip()
        if not _ARM_ID.match(value):
            raise ConfigurationError(
                "prediction_resource_id must be the prediction resource's ARM id, like /subscriptions/"
                "<subscription uuid>/resourceGroups/<group>/providers/Microsoft.CognitiveServices/accounts/"
                f"<name> — got {value!r}"
            )
        return value

    def unpublish(self, project: ProjectInfo | str, iteration: IterationInfo | str) -> None:
        """Withdraw the iteration from the prediction endpoint (nothing is sent if it is not published)."""
        project_id, iteration_id = _project_ref(project), _iteration_ref(iteration)
        if not self.iteration(project_id, iteration_id).published:
            return
        self._call(
            lambda c: c.unpublish_iteration(project_id, iteration_id),
            recover=lambda: (not self.iteration(project_id, iteration_id).published) or None,
        )
        if self._published is not None and self._published[0] == project_id:
            self._published = None

    # -- export --------------------------------------------------------------------------------
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
        Raises :class:`TrainingError` if the iteration cannot be exported or the export fails, and
        :class:`BackendTimeoutError` after ``timeout`` seconds.

        Example:
            >>> trainer.export(  # doctest: +SKIP
            ...     project, iteration, "TensorFlow", flavor="TensorFlowLite").done
            True
        """
        project_id, iteration_id = _project_ref(project), _iteration_ref(iteration)
        wanted = _PLATFORMS.get(platform.strip().lower())
        if wanted is None:
            choices = ", ".join(sorted(set(_PLATFORMS.values())))
            raise ConfigurationError(f"unknown export platform {platform!r}; choose one of: {choices}")
        current = self.iteration(project_id, iteration_id)
        if not current.completed:
            raise TrainingError(
                f"iteration {current.name} cannot be exported: it is {current.status}", backend=_NAME
            )
        if not current.exportable:
            raise TrainingError(
                f"iteration {current.name} is not exportable: only projects on a compact domain, such as "
                "'General (compact)', can be exported",
                backend=_NAME,
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
                        backend=_NAME,
                    ) from exc
        deadline = time.monotonic() + timeout
        while True:
            found = self._find_export(project_id, iteration_id, wanted, flavor)
            if found is not None and found.done:
                return found
            if found is not None and found.status == "Failed":
                raise TrainingError(
                    f"the {wanted} export of {current.name} failed on the service", backend=_NAME
                )
            if time.monotonic() >= deadline:
                raise BackendTimeoutError(
                    f"the {wanted} export was not ready after {timeout:.0f} s", backend=_NAME
                )
            time.sleep(min(poll_interval, max(deadline - time.monotonic(), 0.0)))

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
                f"the {export.platform} export is not ready (status {export.status})", backend=_NAME
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
            raise ServiceError(f"the {export.platform} export has no labels.txt", backend=_NAME)
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
        import httpx

        state = self.retry.start(self._rng)
        while True:
            out.seek(0)
            out.truncate()
            try:
                with httpx.stream("GET", uri, timeout=self.timeout, follow_redirects=True) as response:
                    if response.status_code == 200:
                        for chunk in response.iter_bytes(1 << 20):
                            out.write(chunk)
                        return
                    body = response.read()
                error = error_from_http(
                    response.status_code,
                    dict(response.headers),
                    body,
                    backend=_NAME,
                    service="the export download",
                )
            except httpx.HTTPError as exc:
                error = error_from_httpx(exc, backend=_NAME)
                error.__cause__ = exc
            time.sleep(state.next_delay(error))

    # -- classifiers ---------------------------------------------------------------------------
    def classifier(
        self,
        kind: Literal["custom_vision", "onnx"] = "custom_vision",
        *,
        project_id: str | None = None,
        publish_name: str | None = None,
        model_path: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> Classifier:
        """A ready classifier for what this trainer last published (or downloaded, with ``kind="onnx"``).

        ``kind="custom_vision"`` returns a :class:`~azvision.CustomVisionBackend` on the published
        iteration (needs ``prediction_endpoint``/``prediction_key`` or their environment variables);
        ``kind="onnx"`` an :class:`~azvision.OnnxBackend` on the downloaded export. ``options`` go to the
        backend.

        Example:
            >>> trainer.classifier().classify("rose.jpg").label  # doctest: +SKIP
            'rose'
        """
        if kind == "onnx":
            path = model_path if model_path is not None else self._export_dir
            if path is None:
                raise ConfigurationError(
                    "nothing downloaded yet: pass model_path=... or call download() first"
                )
            from ..backends.onnx import OnnxBackend

            onnx_backend: Classifier = OnnxBackend(path, **options)
            return onnx_backend
        if kind != "custom_vision":
            raise ConfigurationError(f"kind must be 'custom_vision' or 'onnx', got {kind!r}")
        published = self._published or (None, None)
        project_id = project_id or published[0]
        publish_name = publish_name or published[1]
        if project_id is None or publish_name is None:
            raise ConfigurationError(
                "nothing published yet: pass project_id= and publish_name=, or call publish() first"
            )
        env = ENV["custom_vision"]
        endpoint = endpoint_setting(self._prediction_endpoint, arg="prediction_endpoint", env=env["endpoint"])
        key = secret_setting(self._prediction_key, arg="prediction_key", env=env["key"])
        from ..backends.custom_vision import CustomVisionBackend

        backend: Classifier = CustomVisionBackend(endpoint, key, project_id, publish_name, **options)
        return backend

    # -- the whole story -----------------------------------------------------------------------
    def train_from_folder(
        self,
        dataset: Dataset | str | os.PathLike[str],
        *,
        project: str,
        publish_name: str | None = None,
        domain: str | None = None,
        multilabel: bool | None = None,
        export: str | None = None,
        export_dir: str | os.PathLike[str] | None = None,
        flavor: str | None = None,
        threshold: float = 0.5,
        timeout: float = 3600.0,
        progress: ProgressCallback | None = None,
    ) -> TrainResult:
        """Folder (or :class:`Dataset`) → project → upload → train → publish → export, idempotently.

        A re-run uploads only what is missing, reuses the latest iteration when the service says no
        training is needed, and publishes or exports only what is not done yet. ``export_dir`` without
        ``export`` means ONNX. ``progress`` gets a :class:`TrainProgress` per step.

        Example:
            >>> result = trainer.train_from_folder(  # doctest: +SKIP
            ...     "flowers/", project="flowers", publish_name="prod")
            >>> result.summary()  # doctest: +SKIP
            {'project_id': '…', 'iteration_id': '…', 'publish_name': 'prod', 'uploaded': 60, …}
        """

        def tell(stage: Any, done: int | None = None, total: int | None = None, message: str = "") -> None:
            if progress is not None:
                progress(TrainProgress(stage=stage, done=done, total=total, message=message))

        data = dataset if isinstance(dataset, Dataset) else Dataset.from_folder(dataset)
        if not data.items:
            raise ConfigurationError(
                f"no usable images in the data set ({len(data.skipped)} file(s) skipped)"
            )
        tell("dataset", len(data), len(data), f"{len(data)} images, {len(data.labels)} labels")
        platform = export or ("ONNX" if export_dir is not None else None)
        info = self.project(
            project,
            domain=domain,
            multilabel=data.multilabel if multilabel is None else multilabel,
            exportable=platform is not None,
        )
        tell("project", message=f"project {info.name} ({info.id})")
        report = self.upload(info, data, progress=lambda done, total: tell("upload", done, total))
        job = self.train(info)
        tell(
            "train",
            message="reusing the latest iteration: nothing changed" if job.reused else "training started",
        )
        iteration = job.wait(timeout, progress=lambda it: tell("train", message=it.status))
        performance = self.performance(info, iteration, threshold=threshold)
        if publish_name:
            iteration = self.publish(info, iteration, publish_name)
            tell("publish", message=f"published as {publish_name}")
        exported: ExportInfo | None = None
        target: Path | None = None
        if platform is not None:
            exported = self.export(info, iteration, platform, flavor=flavor)
            tell("export", message=f"{exported.platform} export ready")
            if export_dir is not None:
                target = self.download(exported, export_dir)
                tell("download", message=f"saved to {target}")
        return TrainResult(
            project=info,
            iteration=iteration,
            upload=report,
            skipped=data.skipped,
            trained=not job.reused,
            publish_name=publish_name,
            performance=performance,
            export=exported,
            export_dir=target,
        )

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the vendor client's connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._vendor is not None:
            self._vendor.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _images_page(client: Any, *, project_id: str, skip: int) -> list[Any]:
    return list(client.get_images(project_id, take=256, skip=skip))


def _safe_extract(source: IO[bytes], target: Path) -> None:
    """Unzip into ``target``, refusing paths that would escape it and archives that expand absurdly."""
    root = target.resolve()
    with zipfile.ZipFile(source) as archive:
        members = archive.infolist()
        if sum(m.file_size for m in members) > _MAX_UNZIPPED:
            raise ServiceError("the export archive would expand to more than 4 GB", backend=_NAME)
        for member in members:
            destination = (root / member.filename).resolve()
            if destination != root and root not in destination.parents:
                raise ServiceError(
                    f"the export archive has an unsafe path {member.filename!r}", backend=_NAME
                )
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
