"""Background work of the emulated Custom Vision resource: training, evaluation, export, inference.

Training is transfer learning through `azvision.emulator._features` / ``_head`` (a frozen pretrained
backbone and a trained linear head), on one worker thread so that trainings queue instead of
competing for the CPU. Features are cached per image digest, so re-training is cheap. An
iteration turns ``Completed`` (or ``Failed``) no sooner than ``training_seconds`` after it
started, and an export turns ``Done`` half that time after it was requested.

Object detection uses the same backbone under a YOLOv2-style grid head
(`azvision.emulator._cv_detector`), which is also what a detector's ONNX export contains.

The learner (numpy, onnxruntime) is imported on first use, so the emulator starts fast.

Example::

    engine = LearningEngine(store, seed=0, training_seconds=0.5)
    engine.submit_training(project.id, iteration.id)
"""

from __future__ import annotations

import io
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from PIL import Image

from azvision.emulator._cv_store import (
    CustomVisionStore,
    IterationRecord,
    Sample,
    is_detection,
    now_iso,
)

if TYPE_CHECKING:
    import numpy as np

    from azvision.emulator._cross_validation import Performance
    from azvision.emulator._cv_detector import DetectorHead
    from azvision.emulator._head import LinearHead

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5
_CHUNK = 32  # images per feature batch: bounds memory and lets close() interrupt a long job
_MIN_PROBABILITY = 0.01  # the official samples keep boxes of 1 % or more

Box = tuple[float, float, float, float]  # left, top, width, height; normalised to [0, 1]


class LearningEngine:
    """Runs trainings and exports for one store; predicts with trained iterations."""

    def __init__(self, store: CustomVisionStore, *, seed: int, training_seconds: float) -> None:
        self._store = store
        self._seed = seed
        self._training_seconds = max(0.0, training_seconds)
        self._features: dict[str, np.ndarray] = {}
        self._heads: dict[str, LinearHead | DetectorHead] = {}
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the worker and pending status changes (work in flight is abandoned)."""
        with self._lock:
            self._closed = True
            timers, self._timers = self._timers, set()
            worker = self._worker
        for timer in timers:
            timer.cancel()
        if worker is not None:
            self._jobs.put(None)

    def reset(self) -> None:
        with self._lock:
            self._heads.clear()
            self._features.clear()

    def _submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:
                return
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._run, name="azvision-emulator-training", daemon=True
                )
                self._worker.start()
        self._jobs.put(job)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:  # a job records its own failure; this is a last resort
                logger.exception("emulator background job failed")

    def _at(self, deadline: float, action: Callable[[], None]) -> None:
        """Run ``action`` at monotonic time ``deadline`` (now if it has passed)."""
        delay = deadline - time.monotonic()
        if delay <= 0:
            action()
            return
        timer = threading.Timer(delay, lambda: self._fire(timer, action))
        timer.daemon = True
        with self._lock:
            if self._closed:
                return
            self._timers.add(timer)
        timer.start()

    def _fire(self, timer: threading.Timer, action: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:
                return
            self._timers.discard(timer)
        action()

    # -- training ----------------------------------------------------------------------------
    def submit_training(self, project_id: str, iteration_id: str) -> None:
        started = time.monotonic()
        self._submit(lambda: self._train(project_id, iteration_id, started))

    def _train(self, project_id: str, iteration_id: str, started: float) -> None:
        with self._store.lock:
            iteration = self._iteration(project_id, iteration_id)
            if iteration is None:
                return
            project = self._store.projects[project_id]
            names = [project.tags[t].name for t in iteration.tag_ids]
            samples = list(iteration.samples)
            multilabel = iteration.classification_type == "Multilabel"
            detection = is_detection(iteration.domain_id)
        head_json: dict[str, Any] | None = None
        performance: dict[str, Any] | None = None
        error: str | None = None
        try:
            from azvision.emulator._cross_validation import cross_validate
            from azvision.emulator._head import train_head

            if detection:
                head_json, performance = self._train_detector(project_id, samples, iteration.tag_ids, names)
            else:
                features, targets, labels = self._dataset(project_id, samples, iteration.tag_ids, names)
                head = train_head(features, targets, labels, multilabel=multilabel, seed=self._seed)
                perf = cross_validate(
                    features,
                    targets,
                    labels,
                    multilabel=multilabel,
                    threshold=DEFAULT_THRESHOLD,
                    seed=self._seed,
                )
                head_json = dict(head.to_json())
                performance = performance_json(perf, iteration.tag_ids, names)
        except Exception as exc:
            logger.warning("emulated training of iteration %s failed", iteration_id, exc_info=True)
            error = f"Training failed: {exc}"
        elapsed = time.monotonic() - started

        def finish() -> None:
            with self._store.lock:
                current = self._iteration(project_id, iteration_id)
                if current is None:
                    return
                current.status = "Failed" if error else "Completed"
                current.training_error = error
                current.head = head_json
                if performance is not None:
                    current.performance[str(DEFAULT_THRESHOLD)] = performance
                current.trained_at = now_iso()
                current.training_minutes = max(1, math.ceil(max(elapsed, self._training_seconds) / 60))
                current.last_modified = current.trained_at
                self._store.save(self._store.projects[project_id])

        self._at(started + self._training_seconds, finish)

    def _iteration(self, project_id: str, iteration_id: str) -> IterationRecord | None:
        project = self._store.projects.get(project_id)
        return project.iterations.get(iteration_id) if project else None

    def _dataset(
        self, project_id: str, samples: Sequence[Sample], tag_ids: Sequence[str], names: Sequence[str]
    ) -> tuple[np.ndarray, list[list[int]], list[str]]:
        """Features, label indices and labels of what a classification iteration learns from."""
        index = {tag_id: i for i, tag_id in enumerate(tag_ids)}
        targets = [[index[t] for t in s.tag_ids] for s in samples]
        return self._sample_features(project_id, samples), targets, list(names)

    def performance(self, project_id: str, iteration: IterationRecord, threshold: float) -> dict[str, Any]:
        """Cross-validated performance at ``threshold`` (cached on the iteration)."""
        key = str(threshold)
        cached = iteration.performance.get(key)
        if cached is not None:
            return cached
        with self._store.lock:
            project = self._store.projects[project_id]
            names = [project.tags[t].name if t in project.tags else t for t in iteration.tag_ids]
        from azvision.emulator._cross_validation import cross_validate

        if is_detection(iteration.domain_id):
            result = self._detector_performance(project_id, iteration, threshold)
        else:
            features, targets, labels = self._dataset(project_id, iteration.samples, iteration.tag_ids, names)
            perf = cross_validate(
                features,
                targets,
                labels,
                multilabel=iteration.classification_type == "Multilabel",
                threshold=threshold,
                seed=self._seed,
            )
            result = performance_json(perf, iteration.tag_ids, names)
        with self._store.lock:
            iteration.performance[key] = result
            self._store.save(self._store.projects[project_id])
        return result

    # -- features ----------------------------------------------------------------------------
    def _extract(self, images: Sequence[bytes]) -> np.ndarray:
        import numpy as np

        from azvision.emulator._features import FEATURE_DIM, get_feature_extractor

        extractor = get_feature_extractor()
        parts = [np.zeros((0, FEATURE_DIM), np.float32)]
        for start in range(0, len(images), _CHUNK):
            if self._closed:
                raise RuntimeError("the emulator is shutting down")
            parts.append(extractor.features(images[start : start + _CHUNK]))
        return np.concatenate(parts)

    def _sample_features(self, project_id: str, samples: Sequence[Sample]) -> np.ndarray:
        import numpy as np

        missing = sorted({s.digest for s in samples} - self._features.keys())
        blobs = [self._store.get_blob(project_id, f"images/{digest}") for digest in missing]
        for digest, row in zip(missing, self._extract(blobs), strict=True):
            self._features[digest] = row
        return np.stack([self._features[s.digest] for s in samples])

    # -- object detection ---------------------------------------------------------------------
    def _regions(
        self, project_id: str, samples: Sequence[Sample], tag_ids: Sequence[str]
    ) -> tuple[list[Image.Image], list[list[tuple[int, Box]]]]:
        index = {tag_id: i for i, tag_id in enumerate(tag_ids)}
        images = [_open(self._store.get_blob(project_id, f"images/{s.digest}")) for s in samples]
        regions = [
            [(index[r.tag_id], (r.left, r.top, r.width, r.height)) for r in s.regions if r.tag_id in index]
            for s in samples
        ]
        return images, regions

    def _train_detector(
        self, project_id: str, samples: Sequence[Sample], tag_ids: Sequence[str], names: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        from azvision.emulator._cv_detector import detection_performance, train_detector

        images, regions = self._regions(project_id, samples, tag_ids)
        head, cells = train_detector(images, regions, names)
        return head.to_json(), detection_performance(head, cells, regions, tag_ids, DEFAULT_THRESHOLD)

    def _detector_performance(
        self, project_id: str, iteration: IterationRecord, threshold: float
    ) -> dict[str, Any]:
        from azvision.emulator._cv_detector import DetectorHead, detection_performance, grid_features

        head = self.head(iteration)
        assert isinstance(head, DetectorHead)
        images, regions = self._regions(project_id, iteration.samples, iteration.tag_ids)
        return detection_performance(head, grid_features(images), regions, iteration.tag_ids, threshold)

    # -- inference ---------------------------------------------------------------------------
    def head(self, iteration: IterationRecord) -> LinearHead | DetectorHead:
        """The iteration's trained head: a classifier's `LinearHead` or a detector's `DetectorHead`."""
        from azvision.emulator._cv_detector import DetectorHead, is_detector_head
        from azvision.emulator._head import LinearHead

        with self._lock:
            head = self._heads.get(iteration.id)
        if head is None:
            if iteration.head is None:
                raise RuntimeError(f"iteration {iteration.id} has no trained model")
            head = (
                DetectorHead.from_json(iteration.head)
                if is_detector_head(iteration.head)
                else LinearHead.from_json(iteration.head)
            )
            with self._lock:
                self._heads[iteration.id] = head
        return head

    def classify(self, iteration: IterationRecord, data: bytes) -> list[tuple[str, float]]:
        """``(tag id, probability)`` for every tag of the iteration, in tag order."""
        from azvision.emulator._head import LinearHead

        head = self.head(iteration)
        if not isinstance(head, LinearHead):
            raise RuntimeError(f"iteration {iteration.id} is a detector")
        probabilities = head.predict_proba(self._extract([data]))[0]
        return [(tag_id, float(p)) for tag_id, p in zip(iteration.tag_ids, probabilities, strict=True)]

    def detect(self, iteration: IterationRecord, data: bytes) -> list[tuple[str, float, Box]]:
        """``(tag id, probability, box)`` per detected object, best first (at most 64, NMS applied)."""
        from azvision.emulator._cv_detector import DetectorHead, grid_features

        head = self.head(iteration)
        if not isinstance(head, DetectorHead):
            raise RuntimeError(
                f"iteration {iteration.id} has no detector model (trained before detectors were grid models?)"
            )
        cells = grid_features([_open(data)])[0]
        ids = dict(zip(head.labels, iteration.tag_ids, strict=True))
        return [
            (ids[label], p, box) for label, p, box in head.detect(cells, min_probability=_MIN_PROBABILITY)
        ]

    # -- export ------------------------------------------------------------------------------
    def submit_export(self, project_id: str, iteration_id: str, export_id: str) -> None:
        started = time.monotonic()
        self._submit(lambda: self._export(project_id, iteration_id, export_id, started))

    def _export(self, project_id: str, iteration_id: str, export_id: str, started: float) -> None:
        from azvision.emulator._onnx_export import build_export_zip

        with self._store.lock:
            iteration = self._iteration(project_id, iteration_id)
            if iteration is None:
                return
        status = "Done"
        try:
            blob = build_export_zip(
                self.head(iteration), iteration_id=iteration_id, exported_at=datetime.now(timezone.utc)
            )  # a LinearHead or a DetectorHead: the zip's family follows
            self._store.put_blob(project_id, f"exports/{export_id}.zip", blob)
        except Exception:
            logger.warning("emulated export of iteration %s failed", iteration_id, exc_info=True)
            status = "Failed"

        def finish() -> None:
            with self._store.lock:
                current = self._iteration(project_id, iteration_id)
                export = next((e for e in current.exports if e.id == export_id), None) if current else None
                if export is not None:
                    export.status = status
                    self._store.save(self._store.projects[project_id])

        self._at(started + self._training_seconds / 2, finish)


def performance_json(perf: Performance, tag_ids: Sequence[str], names: Sequence[str]) -> dict[str, Any]:
    """The service's ``IterationPerformance`` body for a learner `Performance`."""
    per_tag = []
    for tag_id, name in zip(tag_ids, names, strict=False):
        score = perf.per_tag.get(name)
        if score is None:
            continue
        per_tag.append(
            {
                "id": tag_id,
                "name": name,
                "precision": score.precision,
                "precisionStdDeviation": score.precision_std,
                "recall": score.recall,
                "recallStdDeviation": score.recall_std,
                "averagePrecision": score.average_precision,
            }
        )
    return {
        "perTagPerformance": per_tag,
        "precision": perf.precision,
        "precisionStdDeviation": perf.precision_std,
        "recall": perf.recall,
        "recallStdDeviation": perf.recall_std,
        "averagePrecision": perf.average_precision,
    }


def _open(data: bytes) -> Image.Image:
    from azvision.emulator._preprocessing import upright_rgb

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return upright_rgb(image)
