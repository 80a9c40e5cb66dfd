"""Label spaces: which labels a classifier answers in, and a per-member map into one shared space.

A classifier states its label space with a ``labels`` attribute (a tuple of names): `OnnxBackend` reads
it from the export, `AzureOpenAIBackend` is given it, `CustomVisionBackend` takes ``labels=...`` (the
project's tags; `CustomVisionTrainer.classifier()` fills it in), routers derive theirs from their members.
Where a member does not say, its answers are checked as they come.

Example:
    >>> fold = LabelFold({"kitty": "cat", "blur": None})
    >>> sorted(fold.space(("kitty", "dog", "blur")))
    ['cat', 'dog']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._errors import ConfigurationError
from .._models import Label, Prediction

__all__ = ["LabelFold", "SharedLabels", "folds_for", "label_space", "mismatch"]


def label_space(member: object) -> frozenset[str] | None:
    """The labels ``member`` answers in, when it says (a ``labels`` tuple of names); else ``None``.

    Example:
        >>> class Fake:
        ...     labels = ("cat", "dog")
        >>> sorted(label_space(Fake()))
        ['cat', 'dog']
    """
    labels = getattr(member, "labels", None)
    if (
        isinstance(labels, tuple | list | frozenset | set)
        and labels
        and all(isinstance(x, str) for x in labels)
    ):
        return frozenset(labels)
    return None


class LabelFold:
    """One member's map into the shared labels: ``{its_label: shared_label}``; ``None`` drops a label.

    Labels not in the map pass unchanged. Two labels folded into one keep the higher confidence.
    """

    def __init__(self, mapping: Mapping[str, str | None] | None = None) -> None:
        self.mapping: dict[str, str | None] = dict(mapping or {})

    def name(self, label: str) -> str | None:
        """The shared name of ``label`` (``None``: dropped)."""
        return self.mapping.get(label, label)

    def space(self, labels: Iterable[str]) -> frozenset[str]:
        """The shared labels that ``labels`` fold into."""
        return frozenset(n for n in (self.name(label) for label in labels) if n is not None)

    def apply(self, prediction: Prediction) -> Prediction:
        """``prediction`` in the shared labels (unchanged without a map)."""
        if not self.mapping:
            return prediction
        best: dict[str, Label] = {}
        for lab in prediction.labels:
            name = self.name(lab.name)
            if name is not None and (name not in best or lab.confidence > best[name].confidence):
                best[name] = lab.model_copy(update={"name": name})
        return prediction.model_copy(update={"labels": tuple(best.values())})

    def __repr__(self) -> str:
        return f"LabelFold({self.mapping!r})"


def folds_for(
    names: Sequence[str], label_map: Mapping[int | str, Mapping[str, str | None]] | None
) -> tuple[LabelFold, ...]:
    """One `LabelFold` per member, from a ``label_map`` keyed by member index or name."""
    label_map = dict(label_map or {})
    folds = []
    for index, name in enumerate(names):
        mapping = label_map.pop(index, None) or label_map.pop(name, None)
        folds.append(LabelFold(mapping))
    if label_map:
        raise ConfigurationError(
            f"label_map names {sorted(map(str, label_map))}, which are not members; use a member's index "
            f"or one of {list(names)}"
        )
    return tuple(folds)


def mismatch(name: str, space: frozenset[str], expected: frozenset[str], reference: str) -> str:
    """Why ``name``'s labels ``space`` are not ``expected`` (those of ``reference``)."""
    extra, missing = sorted(space - expected), sorted(expected - space)
    parts = []
    if extra:
        parts.append(f"answers {extra}, which {reference} does not")
    if missing:
        parts.append(f"never answers {missing}")
    return f"{name} {' and '.join(parts)}"


LabelMapping = Mapping[int | str, Mapping[str, str | None]]


class SharedLabels:
    """The one label space of a router's members, checked at construction and on every answer.

    ``label_map`` folds a member's labels into the others' (keyed by member index or name); ``labels``
    states the space. Members that say their labels (`label_space`) must agree after folding, else
    `ConfigurationError`; an answer outside the space is one too.
    """

    def __init__(
        self,
        kind: str,
        names: Sequence[str],
        members: Sequence[object],
        label_map: LabelMapping | None = None,
        labels: Sequence[str] | None = None,
    ) -> None:
        self.kind, self.names = kind, tuple(names)
        self.folds = folds_for(self.names, label_map)
        given = frozenset(labels) if labels is not None else None
        expected, reference = given, "the labels given"
        problems = []
        for name, member, fold in zip(self.names, members, self.folds, strict=True):
            own = label_space(member)
            if own is None:
                continue
            space = fold.space(own)
            if expected is None:
                expected, reference = space, name
            elif space != expected:
                problems.append(mismatch(name, space, expected, reference))
        if problems:
            raise ConfigurationError(
                f"the {kind}'s members answer in different labels: "
                + "; ".join(problems)
                + ". Pass label_map={member: {its_label: shared_label}} to fold them into one set"
            )
        #: The shared labels, when a member or ``labels=`` says them.
        self.space: frozenset[str] | None = expected

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The shared label space, sorted (``None``: no member says)."""
        return tuple(sorted(self.space)) if self.space is not None else None

    def answer(self, index: int, prediction: Prediction) -> Prediction:
        """Member ``index``'s answer in the shared labels; `ConfigurationError` for a label outside them."""
        folded = self.folds[index].apply(prediction)
        if self.space is not None and folded.label is not None and folded.label not in self.space:
            name = self.names[index]
            raise ConfigurationError(
                f"the {self.kind}'s member {name} answered {folded.label!r}, which is not one of its "
                f"labels {sorted(self.space)}: pass label_map={{{name!r}: {{...}}}}",
                backend=name,
            )
        return folded

    def settings(self) -> dict[str, Any]:
        """What changes answers, for a cache key."""
        return {"label_map": [fold.mapping for fold in self.folds], "labels": self.labels}
