"""Background work of the emulated Custom Vision resource: training, evaluation, export, inference.

Training is transfer learning through :mod:`azvision.emulator._features` / ``_head`` (a frozen pretrained
backbone and a trained linear head), on one worker thread so that trainings queue instead of
competing for the CPU. Features are cached per image digest, so re-training is cheap. An
iteration turns ``Completed`` (or ``Failed``) no sooner than ``training_seconds`` after it
started, and an export turns ``Done`` half that time after it was requested.

Object detection is emulated with the same backbone: the head learns the labelled regions
against background crops, and prediction scores square windows at a few scales, keeping the
best windows per tag after non-maximum suppression.

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
import random
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
    from azvision.emulator._head import LinearHead

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5
_CHUNK = 32  # images per feature batch: bounds memory and lets close() interrupt a long job
_BACKGROUND = "<background>"
_BACKGROUND_CROPS = 3
_WINDOW_SCALES = (0.35, 0.55, 0.8, 1.0)
_NMS_IOU = 0.3
_MIN_DETECTION_PROBABILITY = 0.05
_MAX_DETECTIONS = 20

Box = tuple[float, float, float, float]  # left, top, width, height; normalised to [0, 1]


class LearningEngine:
    """Runs trainings and exports for one store; predicts with trained iterations."""

    def __init__(self, store: CustomVisionStore, *, seed: int, training_seconds: float) -> None:
        self._store = store
        self._seed = seed
        self._training_seconds = max(0.0, training_seconds)
        self._features: dict[str, np.ndarray] = {}
        self._heads: dict[str, LinearHead] = {}
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

            features, targets, labels = self._dataset(
                project_id, samples, iteration.tag_ids, names, detection
            )
            multi = multilabel and not detection
            head = train_head(features, targets, labels, multilabel=multi, seed=self._seed)
            perf = cross_validate(
                features, targets, labels, multilabel=multi, threshold=DEFAULT_THRESHOLD, seed=self._seed
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
        self,
        project_id: str,
        samples: Sequence[Sample],
        tag_ids: Sequence[str],
        names: Sequence[str],
        detection: bool,
    ) -> tuple[np.ndarray, list[list[int]], list[str]]:
        """Features, label indices and labels of what an iteration learns from."""
        if detection:
            return self._crop_features(project_id, samples, tag_ids, names)
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

        detection = is_detection(iteration.domain_id)
        features, targets, labels = self._dataset(
            project_id, iteration.samples, iteration.tag_ids, names, detection
        )
        perf = cross_validate(
            features,
            targets,
            labels,
            multilabel=iteration.classification_type == "Multilabel" and not detection,
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

    def _crop_features(
        self, project_id: str, samples: Sequence[Sample], tag_ids: Sequence[str], names: Sequence[str]
    ) -> tuple[np.ndarray, list[list[int]], list[str]]:
        index = {tag_id: i for i, tag_id in enumerate(tag_ids)}
        background = len(names)
        rng = random.Random(self._seed)
        crops: list[bytes] = []
        targets: list[list[int]] = []
        for sample in samples:
            image = _open(self._store.get_blob(project_id, f"images/{sample.digest}"))
            boxes = [(r.left, r.top, r.width, r.height) for r in sample.regions]
            for region in sample.regions:
                crops.append(_crop(image, (region.left, region.top, region.width, region.height)))
                targets.append([index[region.tag_id]])
            for box in _background_boxes(boxes, rng) + _near_misses(boxes):
                crops.append(_crop(image, box))
                targets.append([background])
        return self._extract(crops), targets, [*names, _background_label(names)]

    # -- inference ---------------------------------------------------------------------------
    def head(self, iteration: IterationRecord) -> LinearHead:
        from azvision.emulator._head import LinearHead

        with self._lock:
            head = self._heads.get(iteration.id)
        if head is None:
            if iteration.head is None:
                raise RuntimeError(f"iteration {iteration.id} has no trained model")
            head = LinearHead.from_json(iteration.head)
            with self._lock:
                self._heads[iteration.id] = head
        return head

    def classify(self, iteration: IterationRecord, data: bytes) -> list[tuple[str, float]]:
        """``(tag id, probability)`` for every tag of the iteration, in tag order."""
        probabilities = self.head(iteration).predict_proba(self._extract([data]))[0]
        return [(tag_id, float(p)) for tag_id, p in zip(iteration.tag_ids, probabilities, strict=True)]

    def detect(self, iteration: IterationRecord, data: bytes) -> list[tuple[str, float, Box]]:
        """``(tag id, probability, box)`` per detected object, best first."""
        image = _open(data)
        boxes = _windows(image.width, image.height)
        probabilities = self.head(iteration).predict_proba(self._extract([_crop(image, b) for b in boxes]))
        found: list[tuple[str, float, Box]] = []
        for j, tag_id in enumerate(iteration.tag_ids):
            order = sorted(range(len(boxes)), key=lambda i: -float(probabilities[i, j]))
            kept: list[int] = []
            for i in order:
                if float(probabilities[i, j]) < _MIN_DETECTION_PROBABILITY:
                    break
                if all(_iou(boxes[i], boxes[k]) < _NMS_IOU for k in kept):
                    kept.append(i)
            scores = [float(p) for p in probabilities[:, j]]
            found += [(tag_id, scores[i], _fuse(boxes, scores, i)) for i in kept]
        found.sort(key=lambda item: -item[1])
        return found[:_MAX_DETECTIONS]

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
            )
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
    """The service's ``IterationPerformance`` body for a learner :class:`Performance`."""
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


def _background_label(names: Sequence[str]) -> str:
    label = _BACKGROUND
    while label in names:
        label = f"<{label}>"
    return label


def _open(data: bytes) -> Image.Image:
    from azvision.emulator._preprocessing import upright_rgb

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return upright_rgb(image)


def _crop(image: Image.Image, box: Box) -> bytes:
    left, top, width, height = box
    pixels = (
        round(left * image.width),
        round(top * image.height),
        max(round((left + width) * image.width), round(left * image.width) + 1),
        max(round((top + height) * image.height), round(top * image.height) + 1),
    )
    buffer = io.BytesIO()
    image.crop(pixels).save(buffer, "BMP")
    return buffer.getvalue()


def _iou(a: Box, b: Box) -> float:
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _fuse(boxes: Sequence[Box], scores: Sequence[float], best: int) -> Box:
    """Average of the windows that agree with window ``best``, weighted by their scores: a
    finer box than any single window of the coarse grid."""
    close = [
        i for i in range(len(boxes)) if scores[i] >= scores[best] / 2 and _iou(boxes[i], boxes[best]) > 0.3
    ]
    total = sum(scores[i] for i in close)

    def weighted(edge: int, far: bool) -> float:
        return sum(scores[i] * (boxes[i][edge] + (boxes[i][edge + 2] if far else 0.0)) for i in close) / total

    left, top, right, bottom = weighted(0, False), weighted(1, False), weighted(0, True), weighted(1, True)
    return (left, top, right - left, bottom - top)


def _covered(box: Box, other: Box) -> float:
    """Fraction of ``other`` inside ``box``."""
    width = min(box[0] + box[2], other[0] + other[2]) - max(box[0], other[0])
    height = min(box[1] + box[3], other[1] + other[3]) - max(box[1], other[1])
    return max(0.0, width) * max(0.0, height) / (other[2] * other[3]) if width > 0 and height > 0 else 0.0


def _background_boxes(objects: Sequence[Box], rng: random.Random) -> list[Box]:
    """Random crops that hold at most a quarter of any labelled object."""
    found: list[Box] = []
    for _ in range(_BACKGROUND_CROPS * 20):
        if len(found) == _BACKGROUND_CROPS:
            break
        side_w, side_h = rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.6)
        box = (rng.uniform(0, 1 - side_w), rng.uniform(0, 1 - side_h), side_w, side_h)
        if all(_covered(box, obj) <= 0.25 for obj in objects):
            found.append(box)
    return found


def _near_misses(objects: Sequence[Box]) -> list[Box]:
    """Windows that are too loose or off-centre around an object (IoU < 0.4 with it), as
    background: they teach the head to prefer windows that fit."""
    found: list[Box] = []
    for left, top, width, height in objects:
        grown_w, grown_h = min(1.0, 2 * width), min(1.0, 2 * height)
        grown = (
            min(max(0.0, left - width / 2), 1.0 - grown_w),
            min(max(0.0, top - height / 2), 1.0 - grown_h),
            grown_w,
            grown_h,
        )
        shift = 0.6 * width if left + 1.6 * width <= 1.0 else -0.6 * width
        shifted = (min(max(0.0, left + shift), 1.0 - width), top, width, height)
        found += [box for box in (grown, shifted) if all(_iou(box, obj) < 0.4 for obj in objects)]
    return found


def _windows(width: int, height: int) -> list[Box]:
    """Square windows at a few scales over the image, half a window apart."""
    boxes: list[Box] = []
    for scale in _WINDOW_SCALES:
        side = scale * min(width, height)
        w, h = side / width, side / height
        for top in _positions(h):
            for left in _positions(w):
                boxes.append((left, top, w, h))
    return boxes


def _positions(extent: float) -> list[float]:
    if extent >= 1.0:
        return [0.0]
    steps = max(1, math.ceil((1.0 - extent) / (extent / 2)))
    return [i * (1.0 - extent) / steps for i in range(steps + 1)]
