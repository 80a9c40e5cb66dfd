"""Custom Vision training: from a folder of labelled images to a published, exported model.

`CustomVisionTrainer` drives the official (msrest-based) ``CustomVisionTrainingClient`` — the only
place azvision touches it — with azvision's own retry policy, throttle and error mapping: msrest's
retries are switched off (it never retries a POST anyway), every call goes through one loop that honours
``Retry-After``, and vendor exceptions become `AzVisionError` subclasses.

The trainer is put together from one part per concept: the client and call loop (``_core``),
projects, tags and uploads (``_projects``), training runs (``_training``), publication
(``_publish``), export (``_export``), the review of stored predictions (``_review``) and the
retraining gate (``_gate``); this module adds the settings, the classifiers and the whole story,
`train_from_folder`.

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

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from typing_extensions import Self

from .._config import ENV, Secret, endpoint_setting, secret_setting, setting
from .._errors import AzVisionError, ConfigurationError, TrainingError
from .._retry import RetryPolicy, Throttle
from ..datasets import Dataset
from ..detection_datasets import DetectionDataset
from ._export import ExportsMixin
from ._export_dataset import DatasetExportMixin
from ._gate import RetrainMixin
from ._projects import ProjectsMixin, Task
from ._publish import PublishingMixin
from ._training import MIN_IMAGES_PER_TAG, TrainingJob, TrainingMixin
from .models import ExportInfo, TrainProgress, TrainResult

if TYPE_CHECKING:
    from .._protocol import Classifier

__all__ = ["CustomVisionTrainer", "TrainingJob"]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[TrainProgress], None]


class CustomVisionTrainer(
    RetrainMixin, DatasetExportMixin, ExportsMixin, PublishingMixin, TrainingMixin, ProjectsMixin
):
    """Project, tags, upload, training, publication, performance and export on a Custom Vision resource.

    Before the service retires, `export_dataset` takes a project's labelled images out (AutoML
    JSONL + MLTable, COCO or label folders) with its trained models.

    Args:
        endpoint: the training resource's endpoint (env ``CUSTOM_VISION_TRAINING_ENDPOINT``).
        training_key: its key (env ``CUSTOM_VISION_TRAINING_KEY``); never shown in repr, logs or errors.
        prediction_resource_id: ARM id of the prediction resource to publish to
            (env ``CUSTOM_VISION_PREDICTION_RESOURCE_ID``); needed only to publish.
        prediction_endpoint: for `classifier` (env ``CUSTOM_VISION_PREDICTION_ENDPOINT``).
        prediction_key: for `classifier` (env ``CUSTOM_VISION_PREDICTION_KEY``).
        max_rps: client-side request rate (the service allows 10 per second on S0).
        retry: the retry policy for every call (default `RetryPolicy`).
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
        self._clock = time.monotonic
        self._sleep = time.sleep
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

        ``kind="custom_vision"`` returns a `CustomVisionBackend` on the published
        iteration (needs ``prediction_endpoint``/``prediction_key`` or their environment variables);
        ``kind="onnx"`` an `OnnxBackend` on the downloaded export. ``options`` go to the
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

        if "labels" not in options and options.get("task", "classification") == "classification":
            # The project's tags are the label space a Cascade checks; the prediction API cannot list them.
            try:
                options["labels"] = sorted(self.tags(project_id, ()))
            except AzVisionError as exc:  # optional: without it a Cascade checks each answer instead
                logger.warning("could not list the tags, so the classifier states no labels: %s", exc)
        backend: Classifier = CustomVisionBackend(endpoint, key, project_id, publish_name, **options)
        return backend

    # -- the whole story -----------------------------------------------------------------------
    def train_from_folder(
        self,
        dataset: Dataset | DetectionDataset | str | os.PathLike[str],
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
        task: Task = "classification",
        annotations: str | os.PathLike[str] | None = None,
    ) -> TrainResult:
        """Folder (or `Dataset`) → project → upload → train → publish → export, idempotently.

        A re-run uploads only what is missing, reuses the latest iteration when the service says no
        training is needed, and publishes or exports only what is not done yet. ``export_dir`` without
        ``export`` means ONNX. ``progress`` gets a `TrainProgress` per step.

        ``task="detection"`` makes an object-detection project from a `DetectionDataset` (or a path
        `DetectionDataset.from_path` reads; ``annotations`` names the annotation file when it is not in
        the folder): its images go up with their regions, and the service's rule of at least 15 images
        per tag is checked before anything is uploaded.

        Example:
            >>> result = trainer.train_from_folder(  # doctest: +SKIP
            ...     "flowers/", project="flowers", publish_name="prod")
            >>> result.summary()  # doctest: +SKIP
            {'project_id': '…', 'iteration_id': '…', 'publish_name': 'prod', 'uploaded': 60, …}
            >>> trainer.train_from_folder("tools/", project="tools", task="detection",  # doctest: +SKIP
            ...                           annotations="tools/coco.json", export_dir="tools-onnx")
        """

        def tell(stage: Any, done: int | None = None, total: int | None = None, message: str = "") -> None:
            if progress is not None:
                progress(TrainProgress(stage=stage, done=done, total=total, message=message))

        data = _load_dataset(dataset, task=task, annotations=annotations)
        if not data.items:
            raise ConfigurationError(
                f"no usable images in the data set ({len(data.skipped)} file(s) skipped)"
            )
        described = f"{len(data)} images, {len(data.labels)} labels"
        if isinstance(data, DetectionDataset):
            regions = sum(data.region_counts().values())
            described += f", {regions} regions, {data.negatives} without regions"
            _check_minimum(data)
        tell("dataset", len(data), len(data), described)
        platform = export or ("ONNX" if export_dir is not None else None)
        info = self.project(
            project,
            domain=domain,
            multilabel=data.multilabel
            if isinstance(data, Dataset) and multilabel is None
            else bool(multilabel),
            exportable=platform is not None,
            task=task,
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


def _load_dataset(
    dataset: Dataset | DetectionDataset | str | os.PathLike[str],
    *,
    task: Task,
    annotations: str | os.PathLike[str] | None,
) -> Dataset | DetectionDataset:
    if task not in ("classification", "detection"):
        raise ConfigurationError(f"task must be 'classification' or 'detection', got {task!r}")
    detection = task == "detection"
    if isinstance(dataset, (Dataset, DetectionDataset)):
        if isinstance(dataset, DetectionDataset) != detection:
            want = "a DetectionDataset" if detection else "a Dataset"
            raise ConfigurationError(f"task={task!r} needs {want}, got {type(dataset).__name__}")
        return dataset
    if not detection:
        return Dataset.from_folder(dataset)
    if annotations is not None:
        return DetectionDataset.from_path(annotations, images_dir=dataset)
    return DetectionDataset.from_path(dataset)


def _check_minimum(data: DetectionDataset) -> None:
    """The service's rule (at least 15 images per tag), checked before anything is uploaded."""
    minimum = MIN_IMAGES_PER_TAG["detection"]
    short = [f"{label!r} has {n}" for label, n in data.counts().items() if n < minimum]
    if short:
        raise TrainingError(
            f"Custom Vision needs at least {minimum} images per tag for object detection: "
            f"{', '.join(short)}; nothing was uploaded",
            backend="custom_vision",
        )
