"""Review: the stored predictions a model was unsure of, and turning reviewed ones into training images.

Custom Vision keeps every prediction made without ``nostore`` (30 days). `ReviewMixin.review_queue`
asks ``predictions/query`` for those whose best probability is at most ``max_confidence``;
`ReviewMixin.accept` turns decisions about them into tagged training images with
``images/predictions``: the service reuses the stored image, so nothing is uploaded again, and the new
image takes the prediction's id, which is what makes accepting idempotent (an id already made into an
image is reported in ``already_added`` and not sent again).

Example:
    >>> queue = trainer.review_queue("flowers", max_confidence=0.6)  # doctest: +SKIP
    >>> result = trainer.accept("flowers", {queue[0].prediction_id: "rose"})  # doctest: +SKIP
    >>> result.counts()  # doctest: +SKIP
    {'added': 1, 'already_added': 0, 'duplicates': 0, 'skipped': 0, 'failed': 0}
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from azure.cognitiveservices.vision.customvision.training.models import (
    ImageIdCreateBatch,
    ImageIdCreateEntry,
    PredictionQueryTag,
    PredictionQueryToken,
    Region,
)
from pydantic import BaseModel, ConfigDict

from .._errors import AzVisionError, ConfigurationError, NotFoundError
from .._models import BoundingBox, Label
from ._core import NAME, TrainerCore
from ._decisions import NONE_OF_THESE, Choice, Decision, checked
from ._projects import ProjectsMixin
from .models import ProjectInfo

__all__ = ["NONE_OF_THESE", "AcceptResult", "Decision", "FailedDecision", "ReviewItem", "ReviewMixin"]

BATCH = 64  # images per images/predictions request (the service's limit)
_PAGE = 256
_IDS_PER_LOOKUP = 256
_NEGATIVE = "Negative"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
_FROZEN = ConfigDict(frozen=True)


class ReviewItem(BaseModel):
    """A stored prediction to review: its id, the stored image's URL, the model's suggestions (best
    first), when it was made and by which iteration.

    Example:
        >>> item = ReviewItem(prediction_id="p1", image_uri="https://x/p1",
        ...                   suggestions=(Label(name="rose", confidence=0.55),))
        >>> item.label, item.confidence
        ('rose', 0.55)
    """

    model_config = _FROZEN

    prediction_id: str
    image_uri: str
    suggestions: tuple[Label, ...] = ()
    created: str | None = None
    iteration_id: str | None = None

    @property
    def label(self) -> str | None:
        """The best suggestion's name (``None`` when the model suggested nothing)."""
        return self.suggestions[0].name if self.suggestions else None

    @property
    def confidence(self) -> float:
        """The best suggestion's confidence (0 when there is none)."""
        return self.suggestions[0].confidence if self.suggestions else 0.0


class FailedDecision(BaseModel):
    """A decision that did not become a training image, and why.

    Example:
        >>> FailedDecision(prediction_id="p1", reason="no stored prediction", status="ErrorSource").status
        'ErrorSource'
    """

    model_config = _FROZEN

    prediction_id: str
    reason: str
    #: The service's ``ImageCreateStatus`` (``ErrorSource``…) or the error class name.
    status: str | None = None


class AcceptResult(BaseModel):
    """What `accept` did with every decision; each prediction id is
    in exactly one field.

    ``added`` became training images now; ``already_added`` had been made into images before (a re-run,
    another tab), so nothing was sent; ``duplicates`` are images whose bytes the project already had as
    another training image; ``skipped`` were decided ``None``; ``failed`` did not land, with reasons.

    Example:
        >>> AcceptResult(added=("p1",), skipped=("p2",)).counts()
        {'added': 1, 'already_added': 0, 'duplicates': 0, 'skipped': 1, 'failed': 0}
    """

    model_config = _FROZEN

    added: tuple[str, ...] = ()
    already_added: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    failed: tuple[FailedDecision, ...] = ()

    def counts(self) -> dict[str, int]:
        """How many decisions ended up in each field."""
        return {
            "added": len(self.added),
            "already_added": len(self.already_added),
            "duplicates": len(self.duplicates),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
        }


class ReviewMixin(ProjectsMixin, TrainerCore):
    """The review queue of stored predictions and accepting decisions about them."""

    def _resolve(self, project: ProjectInfo | str) -> ProjectInfo:
        if isinstance(project, ProjectInfo):
            return project
        if _UUID.match(project):
            return self._project_info(self._call(lambda c: c.get_project(project)))
        found = self.find_project(project)
        if found is None:
            raise NotFoundError(f"no Custom Vision project called {project!r}", backend=NAME)
        return found

    def review_queue(
        self,
        project: ProjectInfo | str,
        *,
        max_confidence: float = 0.6,
        limit: int | None = None,
        iteration: str | None = None,
    ) -> list[ReviewItem]:
        """The stored predictions whose best confidence is at most ``max_confidence``, least sure first.

        ``project`` is a `ProjectInfo`, a project id or a project name; ``iteration`` keeps only
        the predictions of that iteration id. Predictions already made into training images are not
        listed.

        Example:
            >>> [(i.label, i.confidence) for i in trainer.review_queue("flowers", limit=2)]  # doctest: +SKIP
            [('rose', 0.41), ('tulip', 0.52)]
        """
        if isinstance(max_confidence, bool) or not 0.0 <= float(max_confidence) <= 1.0:
            raise ConfigurationError(f"max_confidence must be between 0 and 1, got {max_confidence!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ConfigurationError(f"limit must be a positive integer or None, got {limit!r}")
        project_id = self._resolve(project).id
        tags = [
            PredictionQueryTag(id=str(t.id), max_threshold=float(max_confidence))
            for t in self._call(lambda c: c.get_tags(project_id))
        ]
        items = [
            item
            for item in self._stored(project_id, tags, iteration)
            if item.confidence <= max_confidence  # whatever the service's tag filter means exactly
        ]
        items.sort(key=lambda item: item.confidence)
        return items[:limit] if limit is not None else items

    def _stored(
        self, project_id: str, tags: list[PredictionQueryTag], iteration: str | None
    ) -> Iterator[ReviewItem]:
        # Every page is read and sorted here, so the service's default order is enough.
        token = PredictionQueryToken(max_count=_PAGE, order_by="Newest", tags=tags or None)
        if iteration:
            token.iteration_id = iteration
        seen: set[str] = set()
        while True:
            result = self._call(partial(_query, project_id=project_id, token=token))
            for stored in result.results or ():
                if stored.id not in seen:
                    seen.add(stored.id)
                    yield review_item(stored)
            token = result.token
            if token is None or not token.continuation or not result.results:
                return

    def accept(
        self, project: ProjectInfo | str, decisions: Mapping[str, Decision], *, batch_size: int = BATCH
    ) -> AcceptResult:
        """Turn reviewed predictions into tagged training images, in batches; safe to run again.

        Batches go ``upload_concurrency`` at a time under the trainer's rate limit.

        ``decisions`` maps a prediction id to a label (created as a tag if the project lacks it), a list
        of labels (multi-label projects), a list of `Label` with boxes (object detection:
        the suggestions a reviewer confirms become the image's regions), `NONE_OF_THESE` (``()``: a
        ``Negative`` image) or ``None`` (skip). Malformed decisions raise `ConfigurationError`
        before anything is sent; a batch the service refuses fails its decisions (with the reason) and the
        next batch still goes.

        Example:
            >>> trainer.accept("flowers", {"3f1c…": "rose", "9a2e…": None}).counts()  # doctest: +SKIP
            {'added': 1, 'already_added': 0, 'duplicates': 0, 'skipped': 1, 'failed': 0}
        """
        wanted = checked(decisions)
        if not 1 <= batch_size <= BATCH:
            raise ConfigurationError(f"batch_size must be between 1 and {BATCH}, got {batch_size!r}")
        info = self._resolve(project)
        detection = self.is_detection(info)
        skipped = tuple(pid for pid, choice in wanted.items() if choice is None)
        chosen: dict[str, Choice] = {}
        failed: list[FailedDecision] = []
        for pid, choice in wanted.items():
            if choice is None:
                continue
            problem = choice.problem(detection=detection, multiclass=info.classification_type == "Multiclass")
            if problem is None:
                chosen[pid] = choice
            else:
                failed.append(FailedDecision(prediction_id=pid, reason=problem, status="ConfigurationError"))
        already = self._made_into_images(info.id, list(chosen))
        todo = {pid: choice for pid, choice in chosen.items() if pid not in already}
        tag_ids, negative = self._tag_ids(info.id, list(todo.values()))
        added: list[str] = []
        duplicates: list[str] = []
        ids = list(todo)
        batches = [ids[start : start + batch_size] for start in range(0, len(ids), batch_size)]

        def send(batch: list[str]) -> list[tuple[str, str | None]] | AzVisionError:
            entries = [_entry(pid, todo[pid], tag_ids, negative) for pid in batch]
            try:
                return _outcomes(
                    self._call(partial(_create, project_id=info.id, entries=entries)), len(batch)
                )
            except AzVisionError as exc:
                return exc

        workers = max(1, min(self.upload_concurrency, len(batches)))
        with ThreadPoolExecutor(workers, thread_name_prefix="azvision-accept") as pool:
            answers = list(pool.map(send, batches))  # the trainer's throttle paces them
        for batch, answer in zip(batches, answers, strict=True):
            if isinstance(answer, AzVisionError):
                reason, kind = f"the batch was refused: {answer}", type(answer).__name__
                failed += [FailedDecision(prediction_id=pid, reason=reason, status=kind) for pid in batch]
                continue
            for pid, (status, image_id) in zip(batch, answer, strict=True):
                if status == "OK" or (status == "OKDuplicate" and image_id == pid):
                    added.append(pid)  # OKDuplicate under its own id: an earlier attempt of this call landed
                elif status == "OKDuplicate":
                    duplicates.append(pid)
                else:
                    failed.append(FailedDecision(prediction_id=pid, reason=_reason(status), status=status))
        return AcceptResult(
            added=tuple(added),
            already_added=tuple(pid for pid in chosen if pid in already),
            duplicates=tuple(duplicates),
            skipped=skipped,
            failed=tuple(failed),
        )

    def _made_into_images(self, project_id: str, prediction_ids: list[str]) -> set[str]:
        """The ids among ``prediction_ids`` that are training images already (made from them before)."""
        found: set[str] = set()
        for start in range(0, len(prediction_ids), _IDS_PER_LOOKUP):
            chunk = prediction_ids[start : start + _IDS_PER_LOOKUP]
            images = self._call(partial(_images_by_ids, project_id=project_id, image_ids=chunk))
            found |= {str(i.id).lower() for i in images or ()}
        return {pid for pid in prediction_ids if pid.lower() in found}

    def _tag_ids(self, project_id: str, chosen: list[Choice]) -> tuple[dict[str, str], str]:
        """Tag ids by label (missing tags created) and the Negative tag's id ("" when none is needed)."""
        labels = list(dict.fromkeys(name for choice in chosen for name in choice.names))
        ids = self.tags(project_id, labels) if labels else {}
        negative = self._negative_tag(project_id) if any(not choice.names for choice in chosen) else ""
        return ids, negative

    def is_detection(self, project: ProjectInfo) -> bool:
        """Whether the project detects objects (its domain is an object detection one).

        Example:
            >>> trainer.is_detection(trainer.project("flowers"))  # doctest: +SKIP
            False
        """
        wanted = str(project.domain_id).lower()
        domain = next((d for d in self._domain_list() if str(d.id).lower() == wanted), None)
        return domain is not None and domain.type == "ObjectDetection"

    def _negative_tag(self, project_id: str) -> str:
        for tag in self._call(lambda c: c.get_tags(project_id)):
            if tag.type == "Negative":
                return str(tag.id)
        return str(
            self._call(
                lambda c: c.create_tag(project_id, _NEGATIVE, type="Negative"),
                recover=lambda: next(
                    (t for t in self._call(lambda c: c.get_tags(project_id)) if t.type == "Negative"), None
                ),
            ).id
        )


def review_item(stored: Any) -> ReviewItem:
    """Map the SDK's ``StoredImagePrediction`` to a `ReviewItem`."""
    suggestions = []
    for p in stored.predictions or ():
        box = p.bounding_box
        suggestions.append(
            Label(
                name=p.tag_name or "",
                confidence=float(p.probability or 0.0),
                id=str(p.tag_id) if p.tag_id else None,
                box=BoundingBox.clipped(box.left, box.top, box.width, box.height)
                if box is not None
                else None,
            )
        )
    suggestions.sort(key=lambda label: -label.confidence)
    created = stored.created
    return ReviewItem(
        prediction_id=str(stored.id),
        image_uri=stored.original_image_uri or stored.resized_image_uri or "",
        suggestions=tuple(suggestions),
        created=created.isoformat() if hasattr(created, "isoformat") else (str(created) if created else None),
        iteration_id=str(stored.iteration) if stored.iteration else None,
    )


def _entry(pid: str, choice: Choice, tag_ids: dict[str, str], negative: str) -> ImageIdCreateEntry:
    regions = [
        Region(tag_id=tag_ids[name], left=box.left, top=box.top, width=box.width, height=box.height)
        for name, box in choice.regions
    ]
    tags = [tag_ids[name] for name in choice.labels] or ([] if regions else [negative])
    return ImageIdCreateEntry(id=pid, tag_ids=tags or None, regions=regions or None)


def _outcomes(summary: Any, count: int) -> list[tuple[str, str | None]]:
    """``(status, image id)`` per entry of a batch, in order (the service answers in request order)."""
    images = list(summary.images or ())
    outcomes = [
        (str(r.status or "ErrorUnknown"), str(r.image.id) if r.image is not None else None) for r in images
    ]
    return (outcomes + [("ErrorUnknown", None)] * count)[:count]


def _reason(status: str) -> str:
    if status == "ErrorSource":
        return "no stored prediction has this id (deleted, expired after 30 days, or made with nostore)"
    if status == "ErrorInvalidTag":
        return "a tag of this decision does not exist in the project"
    if status == "ErrorNegativeAndRegularTagOnSameImage":
        return "a Negative image cannot also carry a regular tag"
    return f"the service said {status}"


def _query(client: Any, *, project_id: str, token: PredictionQueryToken) -> Any:
    return client.query_predictions(project_id, token)


def _create(client: Any, *, project_id: str, entries: list[ImageIdCreateEntry]) -> Any:
    return client.create_images_from_predictions(project_id, ImageIdCreateBatch(images=entries))


def _images_by_ids(client: Any, *, project_id: str, image_ids: list[str]) -> list[Any]:
    return list(client.get_images_by_ids(project_id, image_ids=image_ids) or ())
