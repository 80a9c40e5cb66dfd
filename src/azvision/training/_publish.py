"""Publication: put an iteration on the prediction endpoint under a name, or take it off.

Example:
    >>> trainer.publish(project, iteration, "prod").publish_name  # doctest: +SKIP
    'prod'
"""

from __future__ import annotations

import re

from .._config import ENV, setting
from .._errors import ConfigurationError, ServiceError, TrainingError
from ._core import NAME, TrainerCore, iteration_ref, project_ref
from .models import IterationInfo, ProjectInfo

__all__ = ["PublishingMixin"]

_ARM_ID = re.compile(
    r"^/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourceGroups/[^/]+"
    r"/providers/Microsoft\.CognitiveServices/accounts/[^/]+$",
    re.IGNORECASE,
)


class PublishingMixin(TrainerCore):
    """Publish and unpublish iterations on the configured prediction resource."""

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
        project_id, iteration_id = project_ref(project), iteration_ref(iteration)
        resource_id = self.validated_resource_id(prediction_resource_id)
        if not publish_name or not publish_name.strip():
            raise ConfigurationError("publish_name must not be empty")
        current = self.iteration(project_id, iteration_id)
        if current.publish_name == publish_name:
            self._published = (project_id, publish_name)
            return current
        if not current.completed:
            raise TrainingError(
                f"iteration {current.name} cannot be published: it is {current.status}", backend=NAME
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
                    backend=NAME,
                ) from exc
            raise
        self._published = (project_id, publish_name)
        return self.iteration(project_id, iteration_id)

    def validated_resource_id(self, explicit: str | None = None) -> str:
        """The prediction resource's ARM id (``explicit``, else configured, else the environment), checked.

        Raises `ConfigurationError` when it is missing or not shaped like an ARM resource id.

        Example:
            >>> from azvision import CustomVisionTrainer
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
        project_id, iteration_id = project_ref(project), iteration_ref(iteration)
        if not self.iteration(project_id, iteration_id).published:
            return
        self._call(
            lambda c: c.unpublish_iteration(project_id, iteration_id),
            recover=lambda: (not self.iteration(project_id, iteration_id).published) or None,
        )
        if self._published is not None and self._published[0] == project_id:
            self._published = None
