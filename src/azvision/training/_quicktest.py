"""Any trained iteration as a classifier, published or not, through the training API's quick test.

``quicktest/image`` runs an iteration by id on the training resource, so a challenger can be scored before
it is published; ``store=false`` keeps the scored images out of the project's stored predictions (the
review queue). Everything else — image checks, retries, batches — is
`BaseBackend`, and the answer is mapped by the same function as the
prediction backend's.

Example:
    >>> with QuickTestClassifier(trainer, project_id, iteration_id) as clf:  # doctest: +SKIP
    ...     evaluate(clf, "holdout/").accuracy
    0.93
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .._cv_sdk import training_client
from .._error_mapping import error_from_msrest
from .._errors import AzVisionError
from .._images import COMMON_FORMATS, ImageLimits, LoadedImage
from .._models import Prediction
from ..backends._base import BaseBackend
from ..backends.custom_vision import prediction_from_custom_vision

if TYPE_CHECKING:
    from ._core import TrainerCore

__all__ = ["QuickTestClassifier"]


class QuickTestClassifier(BaseBackend):
    """One iteration of a project, by id, as a `Classifier` (``Prediction.model`` is the
    iteration id). Uses the trainer's endpoint, key, retry policy and timeout; images are never stored.

    Example:
        >>> clf = QuickTestClassifier(trainer, "<project id>", "<iteration id>")  # doctest: +SKIP
        >>> clf.classify("rose.jpg").label  # doctest: +SKIP
        'rose'
    """

    name = "custom_vision"
    image_limits = ImageLimits(
        service="Custom Vision quick test",
        max_bytes=6 * 1024 * 1024,
        max_side=10240,
        formats=COMMON_FORMATS,
        accepts_url=True,
    )

    def __init__(
        self, trainer: TrainerCore, project_id: str, iteration_id: str, *, concurrency: int = 4
    ) -> None:
        self.project_id = project_id
        self.iteration_id = iteration_id
        self._endpoint = trainer.endpoint
        super().__init__(retry=trainer.retry, timeout=trainer.timeout, concurrency=concurrency)
        self._client: Any = training_client(trainer.endpoint, trainer._key, timeout=trainer.timeout)

    def _predict(self, image: LoadedImage) -> Prediction:
        try:
            if image.url is not None:
                answer = self._client.quick_test_image_url(
                    self.project_id, image.url, iteration_id=self.iteration_id, store=False, raw=True
                )
            else:
                if image.data is None:
                    raise AzVisionError("a loaded image has neither bytes nor a URL", backend=self.name)
                answer = self._client.quick_test_image(
                    self.project_id, image.data, iteration_id=self.iteration_id, store=False, raw=True
                )
            body = json.loads(answer.response.content)
        except AzVisionError:
            raise
        except Exception as exc:
            raise error_from_msrest(exc, backend=self.name, source=image.source) from exc
        return prediction_from_custom_vision(body, iteration=self.iteration_id, source=image.source)

    def _close_clients(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(endpoint={self._endpoint!r}, project_id={self.project_id!r}, "
            f"iteration_id={self.iteration_id!r})"
        )
