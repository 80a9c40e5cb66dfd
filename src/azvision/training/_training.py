"""Training runs: start one, follow it to the end, read how well the model does.

`TrainingMixin.train` starts (or joins, or reuses) a training run and returns a `TrainingJob`
to poll or wait on; `TrainingMixin.performance` reads the finished iteration's precision and recall.

Example:
    >>> job = trainer.train(project)  # doctest: +SKIP
    >>> trainer.performance(project, job.wait(timeout=1800)).precision  # doctest: +SKIP
    0.97
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._errors import AzVisionError, BackendTimeoutError, ServiceError, TrainingError
from .._retry import PollSchedule, poll
from ._core import NAME, TrainerCore, iteration_info, iteration_ref, project_ref
from .models import IterationInfo, IterationPerformance, ProjectInfo, TagPerformance

__all__ = ["MIN_IMAGES_PER_TAG", "TrainingJob", "TrainingMixin", "performance_info"]

#: The service's minimum of tagged images per tag, by task (reference §1.9).
MIN_IMAGES_PER_TAG = {"classification": 5, "detection": 15}


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
    """A training run on the service: poll it with `status`, block with `wait`.

    ``reused`` is ``True`` when the service said nothing changed since the latest completed iteration,
    which this job then stands for.

    Example:
        >>> job = trainer.train(project)  # doctest: +SKIP
        >>> job.wait(timeout=600, progress=lambda it: print(it.status)).status  # doctest: +SKIP
        'Completed'
    """

    def __init__(self, trainer: TrainerCore, iteration: IterationInfo, *, reused: bool = False) -> None:
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

        Raises `TrainingError` (with the service's reason) if it fails, and
        `BackendTimeoutError` if it is still running after ``timeout`` seconds (the job goes on
        on the service; call `wait` again). ``poll_interval=None`` starts at 0.5 s and backs off
        to 10 s. ``progress`` gets the iteration after every poll.
        """
        schedule = PollSchedule(
            timeout,
            interval=poll_interval if poll_interval is not None else 0.5,
            growth=1.0 if poll_interval is not None else 1.5,
            max_interval=poll_interval if poll_interval is not None else 10.0,
            clock=self._trainer._clock,
        )
        current = self.last if self.last.done else self.status()
        first = True

        def look() -> IterationInfo | None:
            nonlocal current, first
            if not first:
                current = self.status()
            first = False
            if progress is not None:
                progress(current)
            if current.status == "Failed":
                reason = current.error or "the service gave no reason"
                raise TrainingError(f"training {current.name} failed: {reason}", backend=NAME)
            return current if current.completed else None

        def late() -> BackendTimeoutError:
            return BackendTimeoutError(
                f"training {current.name} was still {current.status!r} after {timeout:.0f} s; it goes "
                "on on the service — call wait() again to keep waiting",
                backend=NAME,
            )

        return poll(look, schedule, on_timeout=late, sleep=self._trainer._sleep)

    def result(self, timeout: float = 3600.0) -> IterationInfo:
        """The completed iteration (waits like `wait`; the poller-style name)."""
        return self.wait(timeout)


class TrainingMixin(TrainerCore):
    """Start training and measure the result."""

    def train(
        self, project: ProjectInfo | str, *, force: bool = False, advanced_hours: int = 0
    ) -> TrainingJob:
        """Start training; returns a `TrainingJob` to poll or wait on.

        When the service says nothing changed since the last training, the job stands for the latest
        completed iteration (``job.reused``). A training already running is joined, not restarted.
        Validation failures (e.g. fewer than 5 images on a tag) raise `TrainingError` with the
        service's reason and the rule. ``advanced_hours > 0`` asks for advanced training with that budget.

        Example:
            >>> trainer.train(project).wait(timeout=1800).name  # doctest: +SKIP
            'Iteration 1'
        """
        project_id = project_ref(project)

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
                        str(exc), code=exc.code, status_code=exc.status_code, backend=NAME
                    ) from exc
                return TrainingJob(self, latest, reused=True)
            if code == "BadRequestTrainingAlreadyInProgress" and (job := running()) is not None:
                return TrainingJob(self, job)
            if exc.status_code is not None and 400 <= exc.status_code < 500:
                raise TrainingError(
                    self._explain_rejection(project_id, exc),
                    code=exc.code,
                    status_code=exc.status_code,
                    backend=NAME,
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
        task = "detection" if "Detection" in (exc.code or "") else "classification"
        minimum = MIN_IMAGES_PER_TAG[task]
        short = [f"{name!r} has {n}" for name, n in sorted(counts.items()) if n < minimum]
        if not short:
            return message
        rule = f"Custom Vision needs at least {minimum} images per tag" + (
            " for object detection" if task == "detection" else ""
        )
        return f"{message} — {rule} ({', '.join(short)})"

    def performance(
        self, project: ProjectInfo | str, iteration: IterationInfo | str, *, threshold: float = 0.5
    ) -> IterationPerformance:
        """Precision, recall and average precision, overall and per tag, at ``threshold``.

        Example:
            >>> trainer.performance(project, iteration).tag("rose").recall  # doctest: +SKIP
            0.95
        """
        project_id, iteration_id = project_ref(project), iteration_ref(iteration)
        raw = self._call(lambda c: c.get_iteration_performance(project_id, iteration_id, threshold=threshold))
        tags = self._call(lambda c: c.get_tags(project_id, iteration_id=iteration_id))
        return performance_info(iteration_id, threshold, raw, {t.name: t.image_count or 0 for t in tags})
