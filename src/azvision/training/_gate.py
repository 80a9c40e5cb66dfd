"""Retraining behind a champion/challenger gate: a new iteration replaces the published one only when it
is not worse on a holdout set.

The champion is the iteration published under the publish name; the challenger is a new training of the
project as it is now (with the images accepted from review). Both are scored on the same holdout folder
with `azvision.evaluation.evaluate` — the code behind ``azvision evaluate`` — through the training
API's quick test, so the challenger needs no publication to be measured and no holdout image lands in the
review queue. The publish name moves only when ``challenger >= champion - max_drop``; otherwise nothing
is published or unpublished and the result says why. No iteration is deleted: an old champion can be
published again.

Example:
    >>> result = trainer.retrain("flowers", "holdout/", publish_name="prod")  # doctest: +SKIP
    >>> result.published, result.reason  # doctest: +SKIP
    ('challenger', 'challenger accuracy 95.0% is not below champion 72.5% by more than 0.0 points')
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .._errors import ConfigurationError, TrainingError
from ..datasets import Dataset
from ._core import NAME
from ._publish import PublishingMixin
from ._quicktest import QuickTestClassifier
from ._review import ReviewMixin
from ._training import TrainingMixin
from .models import IterationInfo, ProjectInfo

__all__ = ["Contender", "RetrainMixin", "RetrainResult"]

_FROZEN = ConfigDict(frozen=True)
#: Scores a classifier on the holdout: metrics with ``accuracy`` (mAP for detection), ``scored``, ``failed``.
Scorer = Callable[[Any], Any]


class Contender(BaseModel):
    """One side of the gate: the iteration and its score on the holdout (``metric`` in [0, 1]).

    Example:
        >>> Contender(iteration_id="i1", iteration_name="Iteration 1", metric=0.9).to_dict()
        {'iteration_id': 'i1', 'metric': 0.9}
    """

    model_config = _FROZEN

    iteration_id: str
    iteration_name: str = ""
    metric: float | None = None
    failed: int = 0
    scored: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``azvision retrain --json``."""
        return {"iteration_id": self.iteration_id, "metric": self.metric}


class RetrainResult(BaseModel):
    """What the gate decided: ``published`` says which iteration holds the publish name now.

    Example:
        >>> r = RetrainResult(champion=Contender(iteration_id="i1", metric=0.9),
        ...                   challenger=Contender(iteration_id="i2", metric=0.7), published="champion",
        ...                   reason="worse", publish_name="prod")
        >>> r.to_dict()["published"]
        'champion'
    """

    model_config = _FROZEN

    champion: Contender | None
    challenger: Contender
    published: Literal["champion", "challenger"]
    reason: str
    publish_name: str
    metric_name: str = "accuracy"
    max_drop: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The last line of ``azvision retrain --json``."""
        return {
            "champion": self.champion.to_dict() if self.champion is not None else None,
            "challenger": self.challenger.to_dict(),
            "published": self.published,
            "reason": self.reason,
            "publish_name": self.publish_name,
            "metric_name": self.metric_name,
            "max_drop": self.max_drop,
        }


class RetrainMixin(PublishingMixin, TrainingMixin, ReviewMixin):
    """Train a challenger and let it replace the champion only when it is not worse."""

    def retrain(
        self,
        project: ProjectInfo | str,
        holdout: Dataset | str | os.PathLike[str],
        *,
        publish_name: str | None = None,
        max_drop: float = 0.0,
        timeout: float = 3600.0,
    ) -> RetrainResult:
        """Train a new iteration and move ``publish_name`` to it only if its holdout accuracy is at least the
        champion's minus ``max_drop`` (a fraction: 0.02 is two points).

        ``publish_name`` defaults to the name the project's published iteration carries (there must be
        exactly one then). With no champion yet, the challenger is published. When the service says nothing
        changed since the last training, the champion stays and the result says so.

        Example:
            >>> trainer.retrain("flowers", "holdout/", publish_name="prod", max_drop=0.01).published
            ...  # doctest: +SKIP
            'challenger'
        """
        if not 0.0 <= max_drop <= 1.0:
            raise ConfigurationError(f"max_drop must be between 0 and 1, got {max_drop!r}")
        if not isinstance(holdout, Dataset) and not os.path.exists(holdout):
            raise ConfigurationError(f"the holdout {os.fspath(holdout)} does not exist")
        self.validated_resource_id()  # before training: a missing resource id would only fail at the end
        info = self._resolve(project)
        scorer, metric_name = self._scorer(info, holdout)  # the holdout is read before training too
        name, champion = self._champion(info.id, publish_name)
        job = self.train(info)
        challenger = job.wait(timeout)
        if champion is not None and challenger.id == champion.id:
            scored = self._score(info.id, champion, scorer)
            return RetrainResult(
                champion=scored,
                challenger=scored,
                published="champion",
                reason="nothing changed since the champion was trained: no new iteration",
                publish_name=name,
                metric_name=metric_name,
                max_drop=max_drop,
            )
        new = self._score(info.id, challenger, scorer)
        old = self._score(info.id, champion, scorer) if champion is not None else None
        if old is None:
            self.publish(info, challenger, name)
            reason = "there was no champion: the challenger is published"
            return RetrainResult(
                champion=None,
                challenger=new,
                published="challenger",
                reason=reason,
                publish_name=name,
                metric_name=metric_name,
            )
        better = _not_worse(new, old, max_drop)
        comparison = (
            f"challenger {new.iteration_name} {metric_name} {_pct(new.metric)} vs champion "
            f"{old.iteration_name} {_pct(old.metric)} on {new.scored} holdout images "
            f"(max drop {max_drop * 100:.1f} points)"
        )
        if better:
            self.publish(info, challenger, name)
            reason = f"{comparison}: not worse, {name!r} now points to the challenger"
        else:
            reason = f"{comparison}: worse, {name!r} stays on the champion"
        return RetrainResult(
            champion=old,
            challenger=new,
            published="challenger" if better else "champion",
            reason=reason,
            publish_name=name,
            metric_name=metric_name,
            max_drop=max_drop,
        )

    def _champion(self, project_id: str, publish_name: str | None) -> tuple[str, IterationInfo | None]:
        published = [it for it in self.iterations(project_id) if it.published]
        if publish_name:
            return publish_name, next((it for it in published if it.publish_name == publish_name), None)
        if len(published) != 1:
            names = sorted(str(it.publish_name) for it in published)
            found = f"{len(published)} iterations ({', '.join(names)})" if published else "none"
            raise ConfigurationError(f"pass publish_name=... to choose: the project has {found} published")
        champion = published[0]
        return str(champion.publish_name), champion

    def _scorer(self, info: ProjectInfo, holdout: Dataset | str | os.PathLike[str]) -> tuple[Scorer, str]:
        """How to score an iteration on the holdout: classification accuracy with
        `azvision.evaluation.evaluate`, or mAP at IoU 0.5 for a detection project."""
        domain = next(
            (d for d in self._domain_list() if str(d.id).lower() == str(info.domain_id).lower()), None
        )
        if domain is not None and domain.type == "ObjectDetection":
            try:  # the detection evaluation (mAP) lives in its own module
                evaluate_detection = importlib.import_module("azvision._detection_metrics").evaluate_detection
            except (ImportError, AttributeError):
                raise ConfigurationError(
                    f"{info.name} is an object detection project: scoring it needs the detection "
                    "evaluation (mAP), which this installation of azvision does not have"
                ) from None
            if isinstance(holdout, Dataset):
                raise ConfigurationError("a detection holdout is an annotation file or folder, not a Dataset")
            return (lambda clf: evaluate_detection(clf, holdout)), "mAP@0.5"
        from ..evaluation import evaluate

        data = holdout if isinstance(holdout, Dataset) else Dataset.from_folder(holdout)
        if not data.items:
            raise ConfigurationError(f"the holdout {data.root} has no images in label folders")
        return (lambda clf: evaluate(clf, data)), "accuracy"

    def _score(self, project_id: str, iteration: IterationInfo, scorer: Scorer) -> Contender:
        with QuickTestClassifier(self, project_id, iteration.id) as classifier:
            metrics = scorer(classifier)
        if not metrics.scored:
            raise TrainingError(
                f"no holdout image could be scored with {iteration.name}: {metrics.failed} failed",
                backend=NAME,
            )
        return Contender(
            iteration_id=iteration.id,
            iteration_name=iteration.name,
            metric=float(metrics.accuracy),
            failed=int(metrics.failed),
            scored=int(metrics.scored),
        )


def _not_worse(new: Contender, old: Contender, max_drop: float) -> bool:
    # A tiny tolerance: accuracies are ratios of small counts and must not flip on float noise.
    return (new.metric or 0.0) + 1e-9 >= (old.metric or 0.0) - max_drop


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"
